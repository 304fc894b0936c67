//! The control thread: owns the Unix listener at `config.control_socket`, serves one control
//! connection at a time (`proto::ControlConn`), validates commands and routes them to the
//! shard that owns the session (bounded inbox + `Waker`) or to the shared pending registry,
//! answers once the shard acknowledged, forwards shard notifications as `Event`s, and keeps the
//! registry of what exists (sessions, tracks, subscriptions) so `List*` answer resync queries
//! without asking the shards. Rooms are not known here (style.md §1).
//!
//! If the connection drops, shards keep forwarding; the next connection gets a `Hello` and may
//! resync with the list commands. Replies to requests of a dropped connection are discarded.
//!
//! Files: `requests` (command dispatch, session handlers), `tracks` (track and subscription
//! handlers), `data` (`update_data`), `shard_msg` (what the shards send), `socket` (binding the
//! control socket); routing and the `List*` pages are here.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::net::SocketAddr;
use std::os::unix::net::UnixListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::Duration;

use crate::proto::{
    AddTrack, Candidate, CandidateProtocol, Command, ControlConn, CreateSession, ErrorBody,
    ErrorCode, Hello, Message, Notification, PriorityTarget, RelayTrack, ReplyOk, Role, SessionId,
    SessionInfo, SessionState, SessionStatsReport, ShardStats, Subscribe, SubscriptionId,
    SubscriptionInfo, TrackId, TrackInfo, TransportMode, MAX_LAYER_INDEX, PROTOCOL_VERSION,
};
use crate::shard::msg::{ShardCmd, ShardMsg};
use crate::shard::registry::SharedRegistry;
use crate::sys::Waker;

mod data;
mod requests;
mod shard_msg;
mod socket;
mod tracks;

pub use socket::bind_listener;

/// How long the control thread waits for socket bytes or shard messages per turn.
const TICK: Duration = Duration::from_millis(5);
/// Entries per `List*` page.
const PAGE: usize = 100;
/// Shard messages handled per turn.
const SHARD_MSG_BUDGET: usize = 4096;
/// ICE host-candidate priority (RFC 8445 §5.1.2.1: type pref 126, local pref 65535, comp 1).
const HOST_PRIORITY: u32 = (126 << 24) | (65535 << 8) | 255;
/// A passive TCP host candidate (RFC 6544 §4.2): type preference 90, as libwebrtc gives TCP host
/// candidates, so a working UDP pair always ranks first (a browser checks TCP pairs alongside
/// UDP, not after it); local preference (direction 4 = passive) << 13 | 8191.
const TCP_PRIORITY: u32 = (90 << 24) | (((4 << 13) | 8191) << 8) | 255;

/// Everything the control thread needs from the runtime.
#[derive(Debug)]
pub struct ControlContext {
    pub listener: UnixListener,
    pub instance: String,
    pub fingerprint: String,
    /// Media address of each worker (announced when configured, else bound).
    pub worker_addrs: Vec<SocketAddr>,
    /// Each worker's ICE-TCP candidate address (empty: ICE-TCP off).
    pub tcp_addrs: Vec<SocketAddr>,
    /// True: each worker has its own port and sessions are placed by the control thread.
    pub port_per_worker: bool,
    pub inboxes: Vec<SyncSender<ShardCmd>>,
    pub wakers: Vec<Waker>,
    /// Replies, claims and life-cycle events (unbounded: shards never block on it).
    pub from_shards: Receiver<ShardMsg>,
    /// Keyframe notices, pair changes and stats snapshots (bounded: shards drop when full).
    pub from_shards_lossy: Receiver<ShardMsg>,
    pub registry: Arc<SharedRegistry>,
    pub stop: Arc<AtomicBool>,
    /// Told when the control daemon asks the process to stop (`Command::Shutdown`).
    pub shutdown: std::sync::mpsc::Sender<()>,
}

#[derive(Debug)]
struct SessionRec {
    spec: CreateSession,
    worker: Option<u16>,
    state: SessionState,
}

#[derive(Debug)]
struct TrackRec {
    spec: AddTrack,
    muted: bool,
    active_layers: Vec<u8>,
}

#[derive(Debug)]
struct SubRec {
    spec: Subscribe,
    max_spatial: u8,
    max_temporal: u8,
    priority: u8,
}

/// What to do when a shard answers a routed request.
#[derive(Debug)]
enum OnReply {
    /// Forward the shard's answer.
    Forward,
    /// `SessionCreated` with these candidates; on error forget the session.
    Created {
        session: SessionId,
        worker: u16,
        candidates: Vec<Candidate>,
    },
    /// On error forget the track.
    Track(TrackId),
    /// On error forget the subscription.
    Sub(SubscriptionId),
}

#[derive(Debug)]
struct Outstanding {
    conn_gen: u64,
    id: u64,
    on_reply: OnReply,
}

/// Where a command for a session went.
enum Routed {
    Sent,
    Queued,
}

/// See the module docs.
#[derive(Debug)]
pub struct ControlThread {
    ctx: ControlContext,
    conn: Option<ControlConn>,
    conn_gen: u64,
    sessions: BTreeMap<SessionId, SessionRec>,
    tracks: BTreeMap<TrackId, TrackRec>,
    subs: BTreeMap<SubscriptionId, SubRec>,
    outstanding: HashMap<u64, Outstanding>,
    next_token: u64,
    latest_stats: Vec<ShardStats>,
    next_worker: usize,
    /// Control connections refused: another user, no hello in time, replies never read.
    refused_peers: u64,
}

impl ControlThread {
    pub fn new(ctx: ControlContext) -> io::Result<Self> {
        ctx.listener.set_nonblocking(true)?;
        let workers = ctx.inboxes.len();
        Ok(Self {
            ctx,
            conn: None,
            conn_gen: 0,
            sessions: BTreeMap::new(),
            tracks: BTreeMap::new(),
            subs: BTreeMap::new(),
            outstanding: HashMap::new(),
            next_token: 1,
            latest_stats: (0..workers)
                .map(|w| ShardStats {
                    shard: w as u16,
                    ..ShardStats::default()
                })
                .collect(),
            next_worker: 0,
            refused_peers: 0,
        })
    }

    /// Runs until the stop flag is set.
    pub fn run(mut self) {
        while !self.ctx.stop.load(Ordering::Acquire) {
            self.turn();
        }
    }

    fn turn(&mut self) {
        if self.conn.is_none() {
            self.accept();
        }
        // While a request waits for a shard's answer, the answer is what we sleep on (below), not
        // the socket: a client that waits for each reply before its next request would otherwise
        // pay a whole TICK per request (400 sessions took 14 s to set up).
        let awaiting_shards = !self.outstanding.is_empty();
        if let Some(conn) = self.conn.as_mut() {
            let wait = if awaiting_shards { None } else { Some(TICK) };
            if let Err(e) = conn.fill(wait) {
                tracing::info!(error = %e, "control connection failed");
                self.conn = None;
            } else if conn.hello_overdue(crate::proto::HELLO_DEADLINE) {
                self.refused_peers += 1;
                tracing::warn!(
                    refused = self.refused_peers,
                    "control peer sent no hello in time: dropped"
                );
                self.conn = None;
            }
        }
        // What the shards already reported goes first, so a `List*` answer reflects it (a
        // session's claim, say, reported before the request arrived).
        self.shard_msgs();
        while let Some(msg) = self.conn.as_mut().and_then(ControlConn::next_message) {
            match msg {
                Message::Request(req) => self.request(req.id, req.command),
                Message::Hello(h) => {
                    tracing::info!(instance = %h.instance, "control daemon connected");
                }
                _ => {}
            }
        }
        // With no connection, or with requests waiting for their shard, the shards' channel is
        // what we sleep on.
        let first = if self.conn.is_none() || !self.outstanding.is_empty() {
            self.ctx.from_shards.recv_timeout(TICK).ok()
        } else {
            self.ctx.from_shards.try_recv().ok()
        };
        if let Some(m) = first {
            self.shard_msg(m);
        }
        self.shard_msgs();
        if let Some(conn) = self.conn.as_mut() {
            if let Err(e) = conn.flush() {
                tracing::info!(error = %e, "control connection lost");
                self.conn = None;
            } else if conn.is_done() {
                if conn.abandoned() {
                    self.refused_peers += 1;
                    tracing::warn!(
                        refused = self.refused_peers,
                        "control peer does not read its replies: dropped"
                    );
                } else {
                    tracing::info!("control connection closed");
                }
                self.conn = None;
            }
        }
    }

    fn accept(&mut self) {
        match self.ctx.listener.accept() {
            Ok((stream, _)) => {
                // Only our own user may drive the dataplane (finding #9).
                let ours = crate::sys::cred::effective_uid();
                match crate::sys::cred::peer_uid(&stream) {
                    Ok(uid) if uid == ours => {}
                    peer => {
                        self.refused_peers += 1;
                        tracing::warn!(
                            ?peer,
                            ours,
                            refused = self.refused_peers,
                            "control connection from another user refused"
                        );
                        return;
                    }
                }
                let hello = Hello {
                    version: PROTOCOL_VERSION,
                    role: Role::Dataplane,
                    instance: self.ctx.instance.clone(),
                    shards: self.ctx.inboxes.len() as u16,
                    media_addrs: self.media_addrs(),
                    fingerprint: Some(self.ctx.fingerprint.clone()),
                };
                match ControlConn::new(stream, &hello) {
                    Ok(conn) => {
                        self.conn_gen += 1;
                        self.conn = Some(conn);
                    }
                    Err(e) => tracing::warn!(error = %e, "control accept failed"),
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => tracing::warn!(error = %e, "control accept failed"),
        }
    }

    fn tcp_media_addrs(&self) -> Vec<SocketAddr> {
        let mut v: Vec<SocketAddr> = Vec::new();
        for a in &self.ctx.tcp_addrs {
            if !v.contains(a) {
                v.push(*a);
            }
        }
        v
    }

    fn media_addrs(&self) -> Vec<SocketAddr> {
        let mut v: Vec<SocketAddr> = Vec::new();
        for a in &self.ctx.worker_addrs {
            if !v.contains(a) {
                v.push(*a);
            }
        }
        v
    }

    fn reply(&mut self, id: u64, result: Result<ReplyOk, ErrorBody>) {
        if let Some(conn) = self.conn.as_mut() {
            conn.reply(id, result);
        }
    }

    fn notify(&mut self, n: Notification) {
        if let Some(conn) = self.conn.as_mut() {
            conn.notify(n);
        }
    }

    // ---- routing ------------------------------------------------------------------------

    fn token(&mut self, id: u64, on_reply: OnReply) -> u64 {
        let token = self.next_token;
        self.next_token += 1;
        self.outstanding.insert(
            token,
            Outstanding {
                conn_gen: self.conn_gen,
                id,
                on_reply,
            },
        );
        token
    }

    /// Routes `cmd` (with a reply token) to the session's shard; answers later.
    fn route_apply(
        &mut self,
        id: u64,
        session: SessionId,
        cmd: Command,
    ) -> Result<Option<ReplyOk>, ErrorBody> {
        let token = self.token(id, OnReply::Forward);
        let routed = self.route(
            session,
            ShardCmd::Apply {
                req: Some(token),
                cmd,
            },
        );
        self.settle(token, routed)
    }

    /// The request's answer from where its command went: sent to a shard, the shard's reply
    /// answers it later; queued for a session no shard has claimed yet, it is done now;
    /// refused, the error answers it now. The last two retire the reply token.
    fn settle(
        &mut self,
        token: u64,
        routed: Result<Routed, ErrorBody>,
    ) -> Result<Option<ReplyOk>, ErrorBody> {
        match routed {
            Ok(Routed::Sent) => Ok(None),
            Ok(Routed::Queued) => {
                self.outstanding.remove(&token);
                Ok(Some(ReplyOk::Done {}))
            }
            Err(e) => {
                self.outstanding.remove(&token);
                Err(e)
            }
        }
    }

    /// To the session's shard, or into its pending queue. Decided under the registry lock so
    /// a concurrent claim cannot miss the command.
    fn route(&mut self, session: SessionId, mut cmd: ShardCmd) -> Result<Routed, ErrorBody> {
        let shard = {
            let mut reg = self.ctx.registry.lock();
            if let Some(p) = reg.pending_mut(session) {
                // Queued commands are answered now; the claimer applies them silently.
                match &mut cmd {
                    ShardCmd::Create { req, .. }
                    | ShardCmd::Apply { req, .. }
                    | ShardCmd::Subscribe { req, .. } => *req = None,
                    _ => {}
                }
                p.queued.push(cmd);
                return Ok(Routed::Queued);
            }
            match reg.placed(session) {
                Some(s) => s,
                None => return Err(not_found(session)),
            }
        };
        if self.send_to(shard, cmd) {
            Ok(Routed::Sent)
        } else {
            Err(rejected(format!("worker {shard} is busy")))
        }
    }

    fn send_to(&self, shard: u16, cmd: ShardCmd) -> bool {
        let i = usize::from(shard);
        match self.ctx.inboxes[i].try_send(cmd) {
            Ok(()) => {
                self.ctx.wakers[i].wake();
                true
            }
            Err(TrySendError::Full(_)) => false,
            Err(TrySendError::Disconnected(_)) => false,
        }
    }

    // ---- lists --------------------------------------------------------------------------

    fn list_sessions(&self, after: Option<SessionId>) -> ReplyOk {
        let (sessions, next) = page(&self.sessions, after, |s| SessionInfo {
            spec: s.spec.clone(),
            shard: s.worker.unwrap_or(u16::MAX),
            state: s.state,
        });
        ReplyOk::Sessions { sessions, next }
    }

    fn list_tracks(&self, after: Option<TrackId>) -> ReplyOk {
        let (tracks, next) = page(&self.tracks, after, |t| TrackInfo {
            spec: t.spec.clone(),
            muted: t.muted,
            active_layers: t.active_layers.clone(),
        });
        ReplyOk::Tracks { tracks, next }
    }

    fn list_subs(&self, after: Option<SubscriptionId>) -> ReplyOk {
        let (subscriptions, next) = page(&self.subs, after, |s| SubscriptionInfo {
            spec: s.spec.clone(),
            max_spatial: s.max_spatial,
            max_temporal: s.max_temporal,
            priority: s.priority,
        });
        ReplyOk::Subscriptions {
            subscriptions,
            next,
        }
    }
}

/// One page of `map` after `after`; `next` is the last key when more follow.
fn page<K: Ord + Copy, V, T>(
    map: &BTreeMap<K, V>,
    after: Option<K>,
    f: impl Fn(&V) -> T,
) -> (Vec<T>, Option<K>) {
    let iter: Box<dyn Iterator<Item = (&K, &V)>> = match after {
        Some(a) => Box::new(map.range((std::ops::Bound::Excluded(a), std::ops::Bound::Unbounded))),
        None => Box::new(map.iter()),
    };
    let mut out = Vec::new();
    let mut last = None;
    let mut more = false;
    for (k, v) in iter {
        if out.len() == PAGE {
            more = true;
            break;
        }
        out.push(f(v));
        last = Some(*k);
    }
    (out, if more { last } else { None })
}

fn not_found(what: impl std::fmt::Display) -> ErrorBody {
    ErrorBody::new(ErrorCode::NotFound, format!("{what} does not exist"))
}

fn rejected(msg: impl Into<String>) -> ErrorBody {
    ErrorBody::new(ErrorCode::Rejected, msg)
}
