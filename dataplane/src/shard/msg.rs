//! Messages between the control thread and the shards (in-process; the control socket's
//! `Command`s travel inside them, already validated), and the shared registry of sessions not
//! yet placed on a shard.
//!
//! Placement: with one shared media port the kernel's SO_REUSEPORT hash decides which shard
//! sees a peer's packets, so a WebRTC session is registered here by its local ICE ufrag and the
//! shard that receives its first STUN binding claims it. The registry is a `Mutex` touched only
//! on slow paths: by the control thread per command, by a shard per datagram from an unknown
//! address (its own maps answer every later one).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;

use crate::proto::{
    AddTrack, Command, CreateSession, ErrorBody, Notification, ReplyOk, SessionId, ShardStats,
    Subscribe, TrackId,
};

/// Control thread → shard (bounded channel + the shard's `Waker`).
#[derive(Debug)]
pub enum ShardCmd {
    /// Build a session on this shard now. `req` is the control thread's token to answer.
    Create {
        req: Option<u64>,
        spec: CreateSession,
    },
    /// A command about a session (or its tracks/subscriptions) that lives on this shard:
    /// `CloseSession`, `SetRemote`, `IceRestart`, `AddTrack`, `RemoveTrack`, `Unsubscribe`,
    /// `SetMuted`, `SetLayerCap`, `SetPriority`.
    Apply { req: Option<u64>, cmd: Command },
    /// Add a DownTrack for `spec` on its subscriber session, which lives here. `track` is the
    /// published track's spec (codec, kind); `source` the publisher's shard when placed.
    Subscribe {
        req: Option<u64>,
        spec: Subscribe,
        track: AddTrack,
        source: Option<u16>,
    },
    /// Shard `shard` has (`on`) or no longer has subscribers of `track`, published here.
    Interest {
        track: TrackId,
        shard: u16,
        on: bool,
    },
    /// `track`, which has subscribers here, is published on shard `shard` (None: not placed).
    Source { track: TrackId, shard: Option<u16> },
    /// Send a stats snapshot now.
    Stats,
}

/// Shard → control thread.
#[derive(Debug)]
pub enum ShardMsg {
    Reply {
        req: u64,
        result: Result<ReplyOk, ErrorBody>,
    },
    /// The shard built `session` from the pending registry (its first packet arrived there).
    Claimed {
        session: SessionId,
        shard: u16,
    },
    Event(Notification),
    Stats(ShardStats),
}

/// A session waiting for its first packet.
#[derive(Debug)]
pub struct PendingSession {
    pub spec: CreateSession,
    /// Commands for it that arrived before it was placed, applied in order by the claimer.
    pub queued: Vec<ShardCmd>,
}

/// Shared between the control thread and every shard. See the module docs.
#[derive(Debug, Default)]
pub struct Registry {
    /// Local ICE ufrag → pending session.
    pub by_ufrag: HashMap<String, SessionId>,
    pub pending: HashMap<SessionId, PendingSession>,
    /// Where each placed session lives.
    pub placed: HashMap<SessionId, u16>,
    /// Remote addresses and the shard their session lives on, so a shard that receives such a
    /// datagram (by the kernel's SO_REUSEPORT choice) hands it over. Plain-RTP remotes are
    /// entered by the control thread when it places the session; WebRTC remotes by the owning
    /// shard when the first valid packet (an ICE check) arrives from them. The kernel's choice
    /// is not stable per remote: with `SO_INCOMING_CPU` set it follows the CPU the packet was
    /// processed on, which on loopback is the sender's current CPU.
    pub remotes: HashMap<SocketAddr, u16>,
}

/// The registry behind its lock. A poisoned lock means a thread panicked while holding it;
/// the data (plain maps) is still consistent at every await-free step, so keep going.
#[derive(Debug, Default)]
pub struct SharedRegistry(Mutex<Registry>);

impl SharedRegistry {
    pub fn lock(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}
