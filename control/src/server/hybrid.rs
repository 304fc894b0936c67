//! The server side of hybrid P2P/SFU (docs/protocol.md "Hybrid P2P/SFU"): one
//! [`ModePolicy`] per room, driven by signaling and a timer, and its [`Action`]s carried out
//! here (messages, events, metrics, closing a room's dataplane sessions, admitting queued
//! joins). The policy decides; this file only does.
//!
//! Lock order: `media`, then `rooms`, then `hybrid`; the `hybrid` lock is held only for
//! synchronous policy calls, never across an await.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use sluice_proto::{Command, TrackId};
use tokio::sync::oneshot;

use super::error::ApiError;
use super::hub::ClientMsg;
use super::media::{Peer, PeerKey};
use super::App;
use crate::hybrid::turn::TurnConfig;
use crate::hybrid::{Action, Admission, HybridConfig, ModeChange, ModePolicy, Reason, Topology};
use crate::room::{MediaKind, RoomMode};

/// Hybrid state of the node.
#[derive(Debug)]
pub(crate) struct Hybrid {
    /// The `[hybrid]` configuration (rooms may override it).
    pub(crate) config: HybridConfig,
    pub(crate) turn: Option<TurnConfig>,
    policies: HashMap<String, ModePolicy>,
    /// Queued joiners waiting for their [`Action::Admit`].
    waiters: HashMap<PeerKey, oneshot::Sender<()>>,
    metrics: Metrics,
}

/// Migration metrics (docs/api.md "Metrics").
#[derive(Debug, Default)]
struct Metrics {
    /// (direction, result) → count.
    migrations: BTreeMap<(&'static str, &'static str), u64>,
    seconds: Histogram,
    audio_gap_ms: Histogram,
}

#[derive(Debug)]
struct Histogram {
    bounds: &'static [f64],
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

/// What a join gets from the policy.
pub(crate) enum JoinTicket {
    /// Admitted; run these actions once the client is registered with the hub.
    Admitted(Vec<Action>),
    /// Wait on the receiver for admission.
    Queued {
        position: usize,
        estimated_wait_ms: u64,
        admitted: oneshot::Receiver<()>,
    },
}

impl Hybrid {
    pub(crate) fn new(config: HybridConfig, turn: Option<TurnConfig>) -> Self {
        Self {
            config,
            turn,
            policies: HashMap::new(),
            waiters: HashMap::new(),
            metrics: Metrics::default(),
        }
    }
}

impl App {
    /// Runs `f` on `room`'s policy, creating it from the room's setting if needed.
    pub(crate) fn with_policy<R>(&self, room: &str, f: impl FnOnce(&mut ModePolicy) -> R) -> R {
        let (setting, override_cfg) = {
            let rooms = self.rooms.lock().expect("rooms lock");
            match rooms.room(room) {
                Some(r) => (r.config.mode, r.config.hybrid.clone()),
                None => (rooms.config().default_room.mode, None),
            }
        };
        let healthy = self.sfu_healthy();
        let mut h = self.hybrid.lock().expect("hybrid lock");
        let config = override_cfg.unwrap_or_else(|| h.config.clone());
        let policy = h
            .policies
            .entry(room.to_owned())
            .or_insert_with(|| ModePolicy::new(config, setting, healthy));
        f(policy)
    }

    /// The room's policy if one exists (read-only).
    pub(crate) fn policy_view<R>(&self, room: &str, f: impl FnOnce(&ModePolicy) -> R) -> Option<R> {
        self.hybrid
            .lock()
            .expect("hybrid lock")
            .policies
            .get(room)
            .map(f)
    }

    pub(crate) fn forget_policy(&self, room: &str) {
        self.hybrid
            .lock()
            .expect("hybrid lock")
            .policies
            .remove(room);
    }

    fn sfu_healthy(&self) -> bool {
        self.link.as_ref().is_some_and(|l| l.current().is_some())
    }

    /// Asks `room`'s policy to admit `identity`.
    pub(crate) fn hybrid_join(
        &self,
        key: &PeerKey,
        p2p_capable: bool,
    ) -> Result<JoinTicket, ApiError> {
        let now = self.now_ms();
        let (admission, actions) =
            self.with_policy(&key.0, |p| p.request_join(now, &key.1, p2p_capable));
        match admission {
            Admission::Admit => Ok(JoinTicket::Admitted(actions)),
            Admission::Rejected(e) => Err(ApiError::rejected(e.message).with_field(e.field)),
            Admission::Queued {
                position,
                estimated_wait_ms,
            } => {
                let (tx, rx) = oneshot::channel();
                self.hybrid
                    .lock()
                    .expect("hybrid lock")
                    .waiters
                    .insert(key.clone(), tx);
                Ok(JoinTicket::Queued {
                    position,
                    estimated_wait_ms,
                    admitted: rx,
                })
            }
        }
    }

    /// A queued joiner gave up (socket closed or waited too long).
    pub(crate) fn hybrid_cancel_join(&self, key: &PeerKey) {
        let mut h = self.hybrid.lock().expect("hybrid lock");
        h.waiters.remove(key);
        if let Some(p) = h.policies.get_mut(&key.0) {
            p.cancel_join(&key.1);
        }
    }

    /// `identity` left `room` (any way): the policy stops counting it.
    pub(crate) async fn hybrid_leave(&self, key: &PeerKey) {
        let now = self.now_ms();
        let actions = {
            let mut h = self.hybrid.lock().expect("hybrid lock");
            h.waiters.remove(key);
            h.policies
                .get_mut(&key.0)
                .map(|p| p.leave(now, &key.1))
                .unwrap_or_default()
        };
        self.run_actions(&key.0, actions).await;
    }

    /// Something that needs the SFU in `room` (a publisher offer from `identity`, or a
    /// WHIP/WHEP/sidecar session when `identity` is `None`). `Err` when the room cannot
    /// have dataplane sessions now.
    pub(crate) async fn hybrid_require_sfu(
        &self,
        room: &str,
        identity: Option<&str>,
    ) -> Result<(), ApiError> {
        let now = self.now_ms();
        let (result, allowed) = self.with_policy(room, |p| {
            let r = p.require_sfu(now, identity);
            (r, p.sessions_allowed())
        });
        let actions = result.map_err(|e| ApiError::rejected(e.message).with_field(e.field))?;
        self.run_actions(room, actions).await;
        if !allowed {
            return Err(
                ApiError::rejected("the room is in p2p mode and the SFU is unavailable")
                    .with_field("mode"),
            );
        }
        Ok(())
    }

    /// `mode_ack`, `mode_ready`, `mode_failed` from `key`.
    pub(crate) async fn hybrid_client(
        &self,
        key: &PeerKey,
        ty: &str,
        id: u64,
        audio_gap_ms: Option<f64>,
    ) {
        let now = self.now_ms();
        let actions = {
            let mut h = self.hybrid.lock().expect("hybrid lock");
            if let Some(gap) = audio_gap_ms.filter(|g| g.is_finite() && *g >= 0.0) {
                h.metrics.audio_gap_ms.observe(gap);
            }
            match h.policies.get_mut(&key.0) {
                Some(p) => match ty {
                    "mode_ack" => {
                        p.ack(&key.1, id);
                        Vec::new()
                    }
                    "mode_ready" => p.ready(now, &key.1, id),
                    _ => p.failed(now, &key.1, id),
                },
                None => Vec::new(),
            }
        };
        self.run_actions(&key.0, actions).await;
    }

    /// Changes `room`'s setting (host `set_mode` or `PUT /api/rooms/{room}/mode`) and
    /// persists it with the room.
    pub(crate) async fn hybrid_set_mode(&self, room: &str, mode: RoomMode) -> Result<(), ApiError> {
        let now = self.now_ms();
        let actions = self
            .with_policy(room, |p| p.set_setting(now, mode))
            .map_err(|e| ApiError::rejected(e.message).with_field(e.field))?;
        if let Ok(r) = self.rooms.lock().expect("rooms lock").room_mut(room) {
            r.config.mode = mode;
        }
        self.mark_dirty();
        self.run_actions(room, actions).await;
        Ok(())
    }

    /// `ModeInfo` for `joined` and the API.
    pub(crate) fn mode_info(&self, room: &str) -> Value {
        self.with_policy(room, |p| {
            json!({
                "mode": p.mode().as_str(),
                "setting": p.setting().as_str(),
                "migrating": p.migrating().map(|m| json!({
                    "id": m.id,
                    "from": m.from.as_str(),
                    "to": m.to.as_str(),
                    "strategy": m.strategy.as_str(),
                })),
            })
        })
    }

    /// `joined.ice_servers`: TURN REST credentials for `identity`, or `[]`.
    pub(crate) fn ice_servers(&self, identity: &str) -> Value {
        let now_s = self.now_ms() / 1000;
        match &self.hybrid.lock().expect("hybrid lock").turn {
            Some(t) => json!([t.credentials(identity, now_s)]),
            None => json!([]),
        }
    }

    /// Dataplane sessions the room's participants hold now.
    pub(crate) async fn dataplane_sessions(&self, room: &str) -> usize {
        let media = self.media.lock().await;
        media
            .peers
            .iter()
            .filter(|(k, _)| k.0 == room)
            .map(|(_, p)| {
                usize::from(p.publisher.is_some())
                    + usize::from(p.subscriber.as_ref().is_some_and(|s| s.session.is_some()))
            })
            .sum()
    }

    /// Carries out a policy's actions for `room`, in order.
    pub(crate) async fn run_actions(&self, room: &str, actions: Vec<Action>) {
        if actions.is_empty() {
            return;
        }
        for action in actions {
            self.run_action(room, action).await;
        }
        // The policy may have armed a sooner deadline (a resend, a timeout).
        self.hybrid_wake.notify_one();
    }

    async fn run_action(&self, room: &str, action: Action) {
        let now = self.now_ms();
        match action {
            Action::SendModeChange { to, change } => {
                let msg = mode_change_json(&change);
                for identity in to {
                    self.hub
                        .send_to(room, &identity, ClientMsg::Json(msg.clone()));
                }
            }
            Action::MigrationStarted { change } => {
                tracing::info!(
                    room,
                    id = change.id,
                    from = change.from.as_str(),
                    to = change.to.as_str(),
                    reason = change.reason.as_str(),
                    "migration started"
                );
                self.hub.log(
                    room,
                    "room_migration_started",
                    event_json(room, &change, None),
                    now,
                );
            }
            Action::MigrationCompleted {
                change,
                duration_ms,
            } => {
                tracing::info!(
                    room,
                    id = change.id,
                    to = change.to.as_str(),
                    duration_ms,
                    "migration done"
                );
                {
                    let mut h = self.hybrid.lock().expect("hybrid lock");
                    *h.metrics
                        .migrations
                        .entry((direction(&change), "ok"))
                        .or_default() += 1;
                    h.metrics.seconds.observe(duration_ms as f64 / 1000.0);
                }
                self.hub.log(
                    room,
                    "room_mode_changed",
                    event_json(room, &change, Some(duration_ms)),
                    now,
                );
            }
            Action::MigrationFailed {
                change,
                reason,
                duration_ms,
            } => {
                tracing::warn!(
                    room,
                    id = change.id,
                    reason = reason.as_str(),
                    "migration failed"
                );
                let result = if reason == Reason::Timeout {
                    "timeout"
                } else {
                    "failed"
                };
                *self
                    .hybrid
                    .lock()
                    .expect("hybrid lock")
                    .metrics
                    .migrations
                    .entry((direction(&change), result))
                    .or_default() += 1;
                let mut body = event_json(room, &change, Some(duration_ms));
                body["reason"] = json!(reason.as_str());
                self.hub.log(room, "room_migration_failed", body, now);
            }
            Action::Settled { id, mode } => {
                self.hub.broadcast(
                    room,
                    None,
                    &json!({"type": "mode_changed", "id": id, "mode": mode.as_str()}),
                );
            }
            Action::CloseSessions => self.close_room_sessions(room).await,
            Action::Admit { identity } => {
                let waiter = self
                    .hybrid
                    .lock()
                    .expect("hybrid lock")
                    .waiters
                    .remove(&(room.to_owned(), identity));
                if let Some(w) = waiter {
                    let _ = w.send(());
                }
            }
            Action::Prewarm => {
                // The policy believes the link is up; ask the dataplane itself.
                let ping =
                    tokio::time::timeout(Duration::from_secs(2), self.dp(Command::Ping {})).await;
                if matches!(ping, Ok(Ok(_))) {
                    self.hub
                        .broadcast(room, None, &json!({"type": "mode_prewarm"}));
                    self.hub
                        .log(room, "room_prewarm", json!({"room": room}), now);
                } else {
                    tracing::warn!(room, "pre-warm: the dataplane did not answer a ping");
                    let message = "pre-warm: the SFU did not answer a ping";
                    self.hub.broadcast(
                        room,
                        None,
                        &json!({"type": "notice", "code": "sfu_unavailable", "message": message}),
                    );
                    self.hub.log(
                        room,
                        "room_notice",
                        json!({"room": room, "code": "sfu_unavailable", "message": message}),
                        now,
                    );
                }
            }
            Action::Notice { code, message } => {
                self.hub.broadcast(
                    room,
                    None,
                    &json!({"type": "notice", "code": code, "message": message}),
                );
                self.hub.log(
                    room,
                    "room_notice",
                    json!({"room": room, "code": code, "message": message}),
                    now,
                );
            }
            Action::SettingChanged { setting } => {
                self.hub.broadcast(
                    room,
                    None,
                    &json!({"type": "mode_setting", "setting": setting.as_str()}),
                );
            }
        }
    }

    /// The room is P2P now: close every dataplane session of its participants and drop its
    /// dataplane tracks. Published tracks stay in the room state; each participant's own
    /// tracks become "pending" again, so its next publisher offer (after a move back to SFU)
    /// reuses the same track sids.
    async fn close_room_sessions(&self, room: &str) {
        let (old, dead) = {
            let mut media = self.media.lock().await;
            let keys: Vec<PeerKey> = media
                .peers
                .keys()
                .filter(|k| k.0 == room)
                .cloned()
                .collect();
            let mut old = Vec::new();
            for key in keys {
                let own: Vec<(String, String, MediaKind)> = self
                    .rooms
                    .lock()
                    .expect("rooms lock")
                    .participant(&key.0, &key.1)
                    .map(|p| {
                        p.tracks
                            .values()
                            .map(|t| (String::new(), t.id.clone(), t.kind))
                            .collect()
                    })
                    .unwrap_or_default();
                let peer = media.peers.get_mut(&key).expect("listed above");
                if !peer.signaling {
                    continue;
                }
                let mut fresh = Peer::default();
                fresh.participant_sid = peer.participant_sid.clone();
                fresh.signaling = peer.signaling;
                fresh.pending = own;
                old.push(std::mem::replace(peer, fresh));
            }
            let dead: Vec<(String, TrackId)> = media
                .tracks
                .iter()
                .filter(|(_, t)| t.room == room)
                .map(|(sid, t)| (sid.clone(), t.dp))
                .collect();
            for (sid, dp) in &dead {
                media.tracks.remove(sid);
                media.dp_tracks.remove(dp);
                media.subs.retain(|_, s| s.track != *dp);
            }
            (old, dead)
        };
        for (sid, dp) in dead {
            self.track_index.lock().expect("index lock").remove(&sid);
            if let Err(e) = self.dp(Command::RemoveTrack { track: dp }).await {
                tracing::debug!(track = %dp, error = %e, "remove_track");
            }
        }
        let n = old.len();
        for peer in old {
            self.close_peer_sessions(peer).await;
        }
        tracing::info!(room, peers = n, "p2p: dataplane sessions closed");
        self.mark_dirty();
    }

    /// Metrics text for `/metrics`.
    pub(crate) fn hybrid_metrics(&self, out: &mut String) {
        let rooms: Vec<(String, RoomMode)> = self
            .rooms
            .lock()
            .expect("rooms lock")
            .list()
            .map(|r| (r.name.clone(), r.config.mode))
            .collect();
        let h = self.hybrid.lock().expect("hybrid lock");
        let (mut p2p, mut sfu) = (0, 0);
        for (name, setting) in rooms {
            let mode = match h.policies.get(&name) {
                Some(p) => p.mode(),
                None if setting == RoomMode::Sfu => Topology::Sfu,
                None => Topology::P2p,
            };
            match mode {
                Topology::P2p => p2p += 1,
                Topology::Sfu => sfu += 1,
            }
        }
        let _ = writeln!(out, "# HELP sluice_rooms_by_mode Rooms by current topology.\n# TYPE sluice_rooms_by_mode gauge\nsluice_rooms_by_mode{{mode=\"p2p\"}} {p2p}\nsluice_rooms_by_mode{{mode=\"sfu\"}} {sfu}");
        let _ = writeln!(out, "# HELP sluice_migrations_total Topology migrations by direction and result.\n# TYPE sluice_migrations_total counter");
        for dir in ["p2p_to_sfu", "sfu_to_p2p"] {
            for result in ["ok", "failed", "timeout"] {
                let v = h
                    .metrics
                    .migrations
                    .get(&(dir, result))
                    .copied()
                    .unwrap_or(0);
                let _ = writeln!(
                    out,
                    "sluice_migrations_total{{direction=\"{dir}\",result=\"{result}\"}} {v}"
                );
            }
        }
        h.metrics.seconds.write(
            out,
            "sluice_migration_seconds",
            "Migration time, start to mode_changed.",
        );
        h.metrics.audio_gap_ms.write(
            out,
            "sluice_migration_audio_gap_ms",
            "Longest remote-audio gap during a switch, as clients measured it.",
        );
    }
}

/// Drives every room's policy timers, and feeds them the dataplane link's health.
pub(crate) async fn hybrid_loop(app: Arc<App>) {
    let mut healthy = app.sfu_healthy();
    loop {
        let next = {
            let h = app.hybrid.lock().expect("hybrid lock");
            h.policies
                .values()
                .filter_map(ModePolicy::poll_timeout)
                .min()
        };
        let now = app.now_ms();
        // Wake at the earliest deadline, and at least every 250 ms to notice link changes.
        let wait = next.map_or(250, |t| t.saturating_sub(now).min(250));
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(wait)) => {}
            _ = app.hybrid_wake.notified() => {}
        }
        let now = app.now_ms();
        let up = app.sfu_healthy();
        let changed = up != healthy;
        healthy = up;
        let work: Vec<(String, Vec<Action>)> = {
            let mut h = app.hybrid.lock().expect("hybrid lock");
            h.policies
                .iter_mut()
                .map(|(room, p)| {
                    let mut actions = if changed {
                        p.set_sfu_health(now, up)
                    } else {
                        Vec::new()
                    };
                    if p.poll_timeout().is_some_and(|t| t <= now) {
                        actions.extend(p.handle_timeout(now));
                    }
                    (room.clone(), actions)
                })
                .filter(|(_, a)| !a.is_empty())
                .collect()
        };
        for (room, actions) in work {
            app.run_actions(&room, actions).await;
        }
    }
}

pub(crate) fn mode_change_json(c: &ModeChange) -> Value {
    json!({
        "type": "mode_change",
        "id": c.id,
        "from": c.from.as_str(),
        "to": c.to.as_str(),
        "strategy": c.strategy.as_str(),
        "reason": c.reason.as_str(),
        "grace_ms": c.grace_ms,
    })
}

fn event_json(room: &str, c: &ModeChange, duration_ms: Option<u64>) -> Value {
    let mut v = json!({
        "room": room,
        "id": c.id,
        "from": c.from.as_str(),
        "to": c.to.as_str(),
        "reason": c.reason.as_str(),
        "strategy": c.strategy.as_str(),
    });
    if let Some(d) = duration_ms {
        v["duration_ms"] = json!(d);
    }
    v
}

fn direction(c: &ModeChange) -> &'static str {
    match c.to {
        Topology::Sfu => "p2p_to_sfu",
        Topology::P2p => "sfu_to_p2p",
    }
}

impl Default for Histogram {
    fn default() -> Self {
        Self::new(&[
            0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0,
            2500.0,
        ])
    }
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            counts: vec![0; bounds.len()],
            sum: 0.0,
            count: 0,
        }
    }

    fn observe(&mut self, v: f64) {
        for (i, b) in self.bounds.iter().enumerate() {
            if v <= *b {
                self.counts[i] += 1;
            }
        }
        self.sum += v;
        self.count += 1;
    }

    fn write(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        for (b, c) in self.bounds.iter().zip(&self.counts) {
            let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {c}");
        }
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", self.count);
        let _ = writeln!(out, "{name}_sum {}", self.sum);
        let _ = writeln!(out, "{name}_count {}", self.count);
    }
}
