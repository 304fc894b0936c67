//! The control thread: owns the Unix listener at `config.control_socket`, serves one control
//! connection at a time (`proto::ControlConn`), validates commands and routes them to the
//! shard that owns the session (bounded inbox + `Waker`) or to the shared pending registry,
//! answers once the shard acknowledged, forwards shard notifications as `Event`s, and keeps the
//! registry of what exists (sessions, tracks, subscriptions) so `List*` answer resync queries
//! without asking the shards. Rooms are not known here (style.md §1).
//!
//! If the connection drops, shards keep forwarding; the next connection gets a `Hello` and may
//! resync with the list commands. Replies to requests of a dropped connection are discarded.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::net::SocketAddr;
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::Duration;

use crate::proto::{
    AddTrack, Candidate, CandidateProtocol, Command, ControlConn, CreateSession, ErrorBody,
    ErrorCode, Hello, Message, Notification, PriorityTarget, ReplyOk, Role, SessionId, SessionInfo,
    SessionState, Subscribe, SubscriptionId, SubscriptionInfo, TrackId, TrackInfo, TransportMode,
    WorkerStats, MAX_LAYER_INDEX, PROTOCOL_VERSION,
};
use crate::shard::msg::{PendingSession, ShardCmd, ShardMsg, SharedRegistry};
use crate::sys::Waker;

/// How long the control thread waits for socket bytes or shard messages per turn.
const TICK: Duration = Duration::from_millis(5);
/// Entries per `List*` page.
const PAGE: usize = 100;
/// Shard messages handled per turn.
const SHARD_MSG_BUDGET: usize = 4096;
/// ICE host-candidate priority (RFC 8445 §5.1.2.1: type pref 126, local pref 65535, comp 1).
const HOST_PRIORITY: u32 = (126 << 24) | (65535 << 8) | 255;

/// Everything the control thread needs from the runtime.
#[derive(Debug)]
pub struct ControlContext {
    pub listener: UnixListener,
    pub instance: String,
    pub fingerprint: String,
    /// Media address of each worker (announced when configured, else bound).
    pub worker_addrs: Vec<SocketAddr>,
    /// True: each worker has its own port and sessions are placed by the control thread.
    pub port_per_worker: bool,
    pub inboxes: Vec<SyncSender<ShardCmd>>,
    pub wakers: Vec<Waker>,
    pub from_shards: Receiver<ShardMsg>,
    pub registry: Arc<SharedRegistry>,
    pub stop: Arc<AtomicBool>,
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
    latest_stats: Vec<WorkerStats>,
    next_worker: usize,
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
                .map(|w| WorkerStats {
                    worker: w as u16,
                    ..WorkerStats::default()
                })
                .collect(),
            next_worker: 0,
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
        let mut wait_on_shards = true;
        if let Some(conn) = self.conn.as_mut() {
            if let Err(e) = conn.fill(Some(TICK)) {
                tracing::info!(error = %e, "control connection failed");
                self.conn = None;
            }
            wait_on_shards = false;
        }
        while let Some(msg) = self.conn.as_mut().and_then(ControlConn::next_message) {
            match msg {
                Message::Request(req) => self.request(req.id, req.command),
                Message::Hello(h) => {
                    tracing::info!(instance = %h.instance, "control daemon connected");
                }
                _ => {}
            }
        }
        // With no connection, the shards' channel is what we sleep on.
        let first = if wait_on_shards {
            self.ctx.from_shards.recv_timeout(TICK).ok()
        } else {
            self.ctx.from_shards.try_recv().ok()
        };
        if let Some(m) = first {
            self.shard_msg(m);
            for _ in 0..SHARD_MSG_BUDGET {
                match self.ctx.from_shards.try_recv() {
                    Ok(m) => self.shard_msg(m),
                    Err(_) => break,
                }
            }
        }
        if let Some(conn) = self.conn.as_mut() {
            if let Err(e) = conn.flush() {
                tracing::info!(error = %e, "control connection lost");
                self.conn = None;
            } else if conn.is_done() {
                tracing::info!("control connection closed");
                self.conn = None;
            }
        }
    }

    fn accept(&mut self) {
        match self.ctx.listener.accept() {
            Ok((stream, _)) => {
                let hello = Hello {
                    version: PROTOCOL_VERSION,
                    role: Role::Dataplane,
                    instance: self.ctx.instance.clone(),
                    workers: self.ctx.inboxes.len() as u16,
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

    // ---- requests -----------------------------------------------------------------------

    fn request(&mut self, id: u64, command: Command) {
        if let Err(e) = command.validate() {
            self.reply(id, Err(e.into()));
            return;
        }
        let result = match command {
            Command::Ping {} => Ok(Some(ReplyOk::Pong {})),
            Command::Stats {} => Ok(Some(ReplyOk::Stats {
                workers: self.latest_stats.clone(),
            })),
            Command::ListSessions { after } => Ok(Some(self.list_sessions(after))),
            Command::ListTracks { after } => Ok(Some(self.list_tracks(after))),
            Command::ListSubscriptions { after } => Ok(Some(self.list_subs(after))),
            Command::CreateSession(spec) => self.create_session(id, spec),
            Command::CloseSession { session } => self.close_session(id, session),
            Command::SetRemote {
                session,
                remote_ufrag,
                remote_pwd,
                remote_fingerprint,
            } => self.set_remote(id, session, remote_ufrag, remote_pwd, remote_fingerprint),
            Command::IceRestart {
                session,
                ufrag,
                pwd,
                remote_ufrag,
                remote_pwd,
            } => self.ice_restart(id, session, ufrag, pwd, remote_ufrag, remote_pwd),
            Command::AddTrack(spec) => self.add_track(id, spec),
            Command::RemoveTrack { track } => self.remove_track(id, track),
            Command::Subscribe(spec) => self.subscribe(id, spec),
            Command::Unsubscribe { subscription } => self.unsubscribe(id, subscription),
            Command::SetMuted { track, muted } => {
                let Some(rec) = self.tracks.get_mut(&track) else {
                    self.reply(id, Err(not_found(track)));
                    return;
                };
                rec.muted = muted;
                let session = rec.spec.session;
                let cmd = Command::SetMuted { track, muted };
                self.route_apply(id, session, cmd)
            }
            Command::SetLayerCap {
                subscription,
                max_spatial,
                max_temporal,
            } => {
                let Some(rec) = self.subs.get_mut(&subscription) else {
                    self.reply(id, Err(not_found(subscription)));
                    return;
                };
                rec.max_spatial = max_spatial;
                rec.max_temporal = max_temporal;
                let session = rec.spec.session;
                let cmd = Command::SetLayerCap {
                    subscription,
                    max_spatial,
                    max_temporal,
                };
                self.route_apply(id, session, cmd)
            }
            Command::SetPriority { target, priority } => match target {
                PriorityTarget::Subscription(s) => match self.subs.get_mut(&s) {
                    Some(rec) => {
                        rec.priority = priority;
                        Ok(Some(ReplyOk::Done {}))
                    }
                    None => Err(not_found(s)),
                },
                PriorityTarget::Session(s) => match self.sessions.get_mut(&s) {
                    Some(rec) => {
                        rec.spec.quality.priority = priority;
                        Ok(Some(ReplyOk::Done {}))
                    }
                    None => Err(not_found(s)),
                },
            },
        };
        match result {
            Ok(Some(ok)) => self.reply(id, Ok(ok)),
            Ok(None) => {} // a shard answers
            Err(e) => self.reply(id, Err(e)),
        }
    }

    fn create_session(
        &mut self,
        id: u64,
        spec: CreateSession,
    ) -> Result<Option<ReplyOk>, ErrorBody> {
        if self.sessions.contains_key(&spec.session) {
            return Err(rejected(format!("{} exists", spec.session)));
        }
        let workers = self.ctx.inboxes.len();
        if let Some(h) = spec.worker_hint.filter(|&h| usize::from(h) >= workers) {
            return Err(ErrorBody::new(
                ErrorCode::Invalid,
                format!("worker {h} does not exist (0..{workers})"),
            )
            .with_field("worker_hint"));
        }
        let webrtc = matches!(spec.mode, TransportMode::Webrtc {});
        if webrtc
            && self.sessions.values().any(|s| {
                matches!(s.spec.mode, TransportMode::Webrtc {})
                    && s.spec.ice.ufrag == spec.ice.ufrag
            })
        {
            return Err(rejected("ice.ufrag is in use by another session").with_field("ice.ufrag"));
        }
        if let TransportMode::PlainRtp { remote, .. } = spec.mode {
            if self.sessions.values().any(
                |s| matches!(s.spec.mode, TransportMode::PlainRtp { remote: r, .. } if r == remote),
            ) {
                return Err(
                    rejected("mode.remote is in use by another session").with_field("mode.remote")
                );
            }
        }
        let session = spec.session;
        if webrtc && !self.ctx.port_per_worker {
            // Shared port: the session lives where its first STUN binding lands.
            let worker = spec.worker_hint.unwrap_or(0);
            {
                let mut reg = self.ctx.registry.lock();
                reg.by_ufrag.insert(spec.ice.ufrag.clone(), session);
                reg.pending.insert(
                    session,
                    PendingSession {
                        spec: spec.clone(),
                        queued: Vec::new(),
                    },
                );
            }
            self.sessions.insert(
                session,
                SessionRec {
                    spec,
                    worker: None,
                    state: SessionState::New,
                },
            );
            return Ok(Some(ReplyOk::SessionCreated {
                worker,
                local_candidates: self.candidates(None),
            }));
        }
        // Placed now: a port per worker, or plain RTP (whose peer may never send first).
        let worker = match spec.worker_hint {
            Some(h) => h,
            None => {
                let w = self.next_worker % workers;
                self.next_worker += 1;
                w as u16
            }
        };
        {
            let mut reg = self.ctx.registry.lock();
            reg.placed.insert(session, worker);
            if let TransportMode::PlainRtp { remote, .. } = spec.mode {
                reg.plain.insert(remote, worker);
            }
        }
        let token = self.token(
            id,
            OnReply::Created {
                session,
                worker,
                candidates: self.candidates(Some(worker)),
            },
        );
        self.sessions.insert(
            session,
            SessionRec {
                spec: spec.clone(),
                worker: Some(worker),
                state: SessionState::New,
            },
        );
        if !self.send_to(
            worker,
            ShardCmd::Create {
                req: Some(token),
                spec,
            },
        ) {
            self.outstanding.remove(&token);
            self.forget_session(session);
            return Err(rejected(format!("worker {worker} is busy")));
        }
        Ok(None)
    }

    fn candidates(&self, worker: Option<u16>) -> Vec<Candidate> {
        let addrs = match worker {
            Some(w) if self.ctx.port_per_worker => vec![self.ctx.worker_addrs[usize::from(w)]],
            _ => self.media_addrs(),
        };
        addrs
            .into_iter()
            .enumerate()
            .map(|(i, addr)| Candidate {
                foundation: (i + 1).to_string(),
                addr,
                protocol: CandidateProtocol::Udp,
                priority: HOST_PRIORITY - i as u32,
            })
            .collect()
    }

    fn close_session(&mut self, id: u64, session: SessionId) -> Result<Option<ReplyOk>, ErrorBody> {
        if !self.sessions.contains_key(&session) {
            return Err(not_found(session));
        }
        self.cascade_session(session);
        let pending = {
            let mut reg = self.ctx.registry.lock();
            match reg.pending.remove(&session) {
                Some(p) => {
                    reg.by_ufrag.remove(&p.spec.ice.ufrag);
                    true
                }
                None => false,
            }
        };
        if pending {
            self.forget_session(session);
            self.notify(Notification::SessionClosed {
                session,
                reason: crate::proto::CloseReason::Requested,
            });
            return Ok(Some(ReplyOk::Done {}));
        }
        let r = self.route_apply(id, session, Command::CloseSession { session });
        self.forget_session(session);
        r
    }

    /// Ends what hangs off `session` elsewhere: subscriptions to its tracks (on subscriber
    /// shards) and the interest its own subscriptions registered at publisher shards.
    fn cascade_session(&mut self, session: SessionId) {
        let tracks: Vec<TrackId> = self
            .tracks
            .values()
            .filter(|t| t.spec.session == session)
            .map(|t| t.spec.track)
            .collect();
        for t in tracks {
            self.drop_track_subs(t);
            self.tracks.remove(&t);
        }
        let own: Vec<SubscriptionId> = self
            .subs
            .values()
            .filter(|s| s.spec.session == session)
            .map(|s| s.spec.subscription)
            .collect();
        for s in own {
            if let Some(rec) = self.subs.remove(&s) {
                self.update_interest(rec.spec.track, session);
            }
        }
    }

    /// Unsubscribes every subscriber of `track` (their shards drop the DownTracks).
    fn drop_track_subs(&mut self, track: TrackId) {
        let subs: Vec<(SubscriptionId, SessionId)> = self
            .subs
            .values()
            .filter(|s| s.spec.track == track)
            .map(|s| (s.spec.subscription, s.spec.session))
            .collect();
        for (sub, session) in subs {
            self.subs.remove(&sub);
            let _ = self.route(
                session,
                ShardCmd::Apply {
                    req: None,
                    cmd: Command::Unsubscribe { subscription: sub },
                },
            );
        }
    }

    fn forget_session(&mut self, session: SessionId) {
        if let Some(rec) = self.sessions.remove(&session) {
            let mut reg = self.ctx.registry.lock();
            reg.placed.remove(&session);
            if let TransportMode::PlainRtp { remote, .. } = rec.spec.mode {
                reg.plain.remove(&remote);
            }
            if let Some(p) = reg.pending.remove(&session) {
                reg.by_ufrag.remove(&p.spec.ice.ufrag);
            }
        }
    }

    fn set_remote(
        &mut self,
        id: u64,
        session: SessionId,
        remote_ufrag: String,
        remote_pwd: String,
        remote_fingerprint: Option<String>,
    ) -> Result<Option<ReplyOk>, ErrorBody> {
        let Some(rec) = self.sessions.get_mut(&session) else {
            return Err(not_found(session));
        };
        rec.spec.ice.remote_ufrag = Some(remote_ufrag.clone());
        rec.spec.ice.remote_pwd = Some(remote_pwd.clone());
        if remote_fingerprint.is_some() {
            rec.spec.remote_fingerprint = remote_fingerprint.clone();
        }
        let amended = rec.spec.clone();
        if self.amend_pending(session, amended) {
            return Ok(Some(ReplyOk::Done {}));
        }
        self.route_apply(
            id,
            session,
            Command::SetRemote {
                session,
                remote_ufrag,
                remote_pwd,
                remote_fingerprint,
            },
        )
    }

    fn ice_restart(
        &mut self,
        id: u64,
        session: SessionId,
        ufrag: String,
        pwd: String,
        remote_ufrag: Option<String>,
        remote_pwd: Option<String>,
    ) -> Result<Option<ReplyOk>, ErrorBody> {
        let Some(rec) = self.sessions.get_mut(&session) else {
            return Err(not_found(session));
        };
        rec.spec.ice.ufrag = ufrag.clone();
        rec.spec.ice.pwd = pwd.clone();
        rec.spec.ice.remote_ufrag = remote_ufrag.clone();
        rec.spec.ice.remote_pwd = remote_pwd.clone();
        let amended = rec.spec.clone();
        if self.amend_pending(session, amended) {
            return Ok(Some(ReplyOk::Done {}));
        }
        self.route_apply(
            id,
            session,
            Command::IceRestart {
                session,
                ufrag,
                pwd,
                remote_ufrag,
                remote_pwd,
            },
        )
    }

    /// Replaces a pending session's spec (re-keying its ufrag); false if it is placed.
    fn amend_pending(&mut self, session: SessionId, spec: CreateSession) -> bool {
        let mut reg = self.ctx.registry.lock();
        let Some(p) = reg.pending.get_mut(&session) else {
            return false;
        };
        let old = std::mem::replace(&mut p.spec, spec);
        let new_ufrag = p.spec.ice.ufrag.clone();
        reg.by_ufrag.remove(&old.ice.ufrag);
        reg.by_ufrag.insert(new_ufrag, session);
        true
    }

    fn add_track(&mut self, id: u64, spec: AddTrack) -> Result<Option<ReplyOk>, ErrorBody> {
        if !self.sessions.contains_key(&spec.session) {
            return Err(not_found(spec.session));
        }
        if self.tracks.contains_key(&spec.track) {
            return Err(rejected(format!("{} exists", spec.track)));
        }
        let (session, track) = (spec.session, spec.track);
        self.tracks.insert(
            track,
            TrackRec {
                spec: spec.clone(),
                muted: false,
                active_layers: Vec::new(),
            },
        );
        let token = self.token(id, OnReply::Track(track));
        match self.route(
            session,
            ShardCmd::Apply {
                req: Some(token),
                cmd: Command::AddTrack(spec),
            },
        ) {
            Ok(Routed::Sent) => Ok(None),
            Ok(Routed::Queued) => {
                self.outstanding.remove(&token);
                Ok(Some(ReplyOk::Done {}))
            }
            Err(e) => {
                self.outstanding.remove(&token);
                self.tracks.remove(&track);
                Err(e)
            }
        }
    }

    fn remove_track(&mut self, id: u64, track: TrackId) -> Result<Option<ReplyOk>, ErrorBody> {
        let Some(rec) = self.tracks.get(&track) else {
            return Err(not_found(track));
        };
        let session = rec.spec.session;
        self.drop_track_subs(track);
        self.tracks.remove(&track);
        self.route_apply(id, session, Command::RemoveTrack { track })
    }

    fn subscribe(&mut self, id: u64, spec: Subscribe) -> Result<Option<ReplyOk>, ErrorBody> {
        if self.subs.contains_key(&spec.subscription) {
            return Err(rejected(format!("{} exists", spec.subscription)));
        }
        if !self.sessions.contains_key(&spec.session) {
            return Err(not_found(spec.session));
        }
        let Some(track) = self.tracks.get(&spec.track) else {
            return Err(not_found(spec.track));
        };
        let track_spec = track.spec.clone();
        let source = self.worker_of(track_spec.session);
        let (sub, session, track_id) = (spec.subscription, spec.session, spec.track);
        self.subs.insert(
            sub,
            SubRec {
                spec: spec.clone(),
                max_spatial: MAX_LAYER_INDEX,
                max_temporal: MAX_LAYER_INDEX,
                priority: self
                    .sessions
                    .get(&session)
                    .map_or(0, |s| s.spec.quality.priority),
            },
        );
        let token = self.token(id, OnReply::Sub(sub));
        let routed = self.route(
            session,
            ShardCmd::Subscribe {
                req: Some(token),
                spec,
                track: track_spec,
                source,
            },
        );
        match routed {
            Ok(Routed::Sent) => {
                self.update_interest(track_id, session);
                Ok(None)
            }
            Ok(Routed::Queued) => {
                self.outstanding.remove(&token);
                Ok(Some(ReplyOk::Done {}))
            }
            Err(e) => {
                self.outstanding.remove(&token);
                self.subs.remove(&sub);
                Err(e)
            }
        }
    }

    fn unsubscribe(&mut self, id: u64, sub: SubscriptionId) -> Result<Option<ReplyOk>, ErrorBody> {
        let Some(rec) = self.subs.remove(&sub) else {
            return Err(not_found(sub));
        };
        let r = self.route_apply(
            id,
            rec.spec.session,
            Command::Unsubscribe { subscription: sub },
        );
        self.update_interest(rec.spec.track, rec.spec.session);
        r
    }

    /// Tells the publisher's shard whether the shard of `subscriber` (still) has subscribers
    /// of `track`.
    fn update_interest(&mut self, track: TrackId, subscriber: SessionId) {
        let (Some(sub_shard), Some(pub_session)) = (
            self.worker_of(subscriber),
            self.tracks.get(&track).map(|t| t.spec.session),
        ) else {
            return;
        };
        let Some(pub_shard) = self.worker_of(pub_session) else {
            return;
        };
        if pub_shard == sub_shard {
            return;
        }
        let on = self
            .subs
            .values()
            .any(|s| s.spec.track == track && self.worker_of(s.spec.session) == Some(sub_shard));
        self.send_to(
            pub_shard,
            ShardCmd::Interest {
                track,
                shard: sub_shard,
                on,
            },
        );
    }

    fn worker_of(&self, session: SessionId) -> Option<u16> {
        self.sessions.get(&session).and_then(|s| s.worker)
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
        match self.route(
            session,
            ShardCmd::Apply {
                req: Some(token),
                cmd,
            },
        ) {
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
            if let Some(p) = reg.pending.get_mut(&session) {
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
            match reg.placed.get(&session) {
                Some(&s) => s,
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

    // ---- shard messages -----------------------------------------------------------------

    fn shard_msg(&mut self, msg: ShardMsg) {
        match msg {
            ShardMsg::Reply { req, result } => {
                let Some(o) = self.outstanding.remove(&req) else {
                    return;
                };
                let result = match (o.on_reply, result) {
                    (
                        OnReply::Created {
                            worker, candidates, ..
                        },
                        Ok(_),
                    ) => Ok(ReplyOk::SessionCreated {
                        worker,
                        local_candidates: candidates,
                    }),
                    (OnReply::Created { session, .. }, Err(e)) => {
                        self.forget_session(session);
                        Err(e)
                    }
                    (OnReply::Track(t), Err(e)) => {
                        self.tracks.remove(&t);
                        Err(e)
                    }
                    (OnReply::Sub(s), Err(e)) => {
                        self.subs.remove(&s);
                        Err(e)
                    }
                    (_, r) => r,
                };
                if o.conn_gen == self.conn_gen {
                    self.reply(o.id, result);
                }
            }
            ShardMsg::Claimed { session, shard } => self.claimed(session, shard),
            ShardMsg::Event(n) => {
                self.observe(&n);
                self.notify(n);
            }
            ShardMsg::Stats(s) => {
                if let Some(slot) = self.latest_stats.get_mut(usize::from(s.worker)) {
                    *slot = s.clone();
                }
                self.notify(Notification::StatsSnapshot(s));
            }
        }
    }

    /// A pending session got placed: wire cross-shard interest both ways.
    fn claimed(&mut self, session: SessionId, shard: u16) {
        let Some(rec) = self.sessions.get_mut(&session) else {
            return;
        };
        rec.worker = Some(shard);
        let published: Vec<TrackId> = self
            .tracks
            .values()
            .filter(|t| t.spec.session == session)
            .map(|t| t.spec.track)
            .collect();
        for track in published {
            let subscribers: Vec<SessionId> = self
                .subs
                .values()
                .filter(|s| s.spec.track == track)
                .map(|s| s.spec.session)
                .collect();
            for sub in subscribers {
                if let Some(w) = self.worker_of(sub) {
                    self.send_to(
                        w,
                        ShardCmd::Source {
                            track,
                            shard: Some(shard),
                        },
                    );
                }
                self.update_interest(track, sub);
            }
        }
        let subscribed: Vec<TrackId> = self
            .subs
            .values()
            .filter(|s| s.spec.session == session)
            .map(|s| s.spec.track)
            .collect();
        for track in subscribed {
            let source = self
                .tracks
                .get(&track)
                .and_then(|t| self.worker_of(t.spec.session));
            self.send_to(
                shard,
                ShardCmd::Source {
                    track,
                    shard: source,
                },
            );
            self.update_interest(track, session);
        }
    }

    /// Keeps the registry's view of state in step with events.
    fn observe(&mut self, n: &Notification) {
        match n {
            Notification::IceConnected { session, .. } => {
                self.set_state(*session, SessionState::Connecting)
            }
            Notification::DtlsConnected { session, .. } => {
                self.set_state(*session, SessionState::Connected)
            }
            Notification::IceDisconnected { session } => {
                self.set_state(*session, SessionState::Disconnected)
            }
            Notification::FirstPacket { track, layer } => {
                if let Some(t) = self.tracks.get_mut(track) {
                    if !t.active_layers.contains(layer) {
                        t.active_layers.push(*layer);
                        t.active_layers.sort_unstable();
                    }
                }
            }
            Notification::SessionClosed { session, .. } if self.sessions.contains_key(session) => {
                self.cascade_session(*session);
                self.forget_session(*session);
            }
            _ => {}
        }
    }

    fn set_state(&mut self, session: SessionId, state: SessionState) {
        if let Some(s) = self.sessions.get_mut(&session) {
            s.state = state;
        }
    }

    // ---- lists --------------------------------------------------------------------------

    fn list_sessions(&self, after: Option<SessionId>) -> ReplyOk {
        let (sessions, next) = page(&self.sessions, after, |s| SessionInfo {
            spec: s.spec.clone(),
            worker: s.worker.unwrap_or(u16::MAX),
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

/// Creates the parent directory, removes a stale socket file and binds.
pub fn bind_listener(path: &Path) -> io::Result<UnixListener> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    UnixListener::bind(path)
}
