//! Messages between the control thread and the shards (in-process; the control socket's
//! `Command`s travel inside them, already validated). The shared registry of sessions not yet
//! placed is in `registry.rs`.

use std::sync::mpsc::{Sender, SyncSender};

use crate::proto::{
    AddTrack, Command, CreateSession, ErrorBody, MediaKind, Notification, ReplyOk, SessionId,
    ShardStats, Subscribe, TrackId,
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
        /// A trunk relay of this layer (`relay_track`), not a subscription.
        relay_layer: Option<u8>,
    },
    /// Shard `shard` has (`on`) or no longer has subscribers of `track`, published here.
    Interest {
        track: TrackId,
        kind: MediaKind,
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

/// A shard's two ways to the control thread. Replies, claims and a session's life-cycle events
/// (`SessionClosed`, ICE/DTLS connected or failed, first packet) go on the **reliable** channel:
/// unbounded, so the shard never blocks on it, and bounded in practice by what causes them (one
/// reply per command from a bounded inbox, a few events per session). Keyframe notices, pair
/// changes and stats snapshots go on the **lossy** one: bounded and preallocated, `try_send`, a
/// full queue drops the message and counts it (`control_backlog`). Neither ever stalls forwarding
/// (aesthetics review, redesign 5).
#[derive(Debug, Clone)]
pub struct ControlTx {
    reliable: Sender<ShardMsg>,
    lossy: SyncSender<ShardMsg>,
}

impl ControlTx {
    pub fn new(reliable: Sender<ShardMsg>, lossy: SyncSender<ShardMsg>) -> Self {
        Self { reliable, lossy }
    }

    /// Never blocks; only fails when the control thread is gone (the process is stopping).
    pub fn reliable(&self, msg: ShardMsg) {
        let _ = self.reliable.send(msg);
    }

    /// Never blocks or allocates; false when the queue was full (the message is dropped).
    #[must_use]
    pub fn lossy(&self, msg: ShardMsg) -> bool {
        self.lossy.try_send(msg).is_ok()
    }
}
