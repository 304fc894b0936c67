//! The server side of hybrid P2P/SFU (docs/protocol.md "Hybrid P2P/SFU"): the room's
//! [`ModePolicy`], driven by signaling, the room actor's timer and the dataplane link's health,
//! and its [`Action`]s carried out here (messages, events, metrics, closing the room's dataplane
//! sessions, admitting queued joins). The policy decides; this file only does.

use crate::lock::Locked;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::time::Duration;

use serde_json::{json, Value};
use sluice_proto::Command;
use tokio::sync::oneshot;

use super::RoomCtx;
use crate::hybrid::turn::IceServer;
use crate::hybrid::{Action, Admission, ModeChange, ModePolicy, Reason, Topology};
use crate::room::RoomMode;
use crate::server::error::ApiError;
use crate::server::hub::ClientMsg;
use crate::server::App;
use crate::signal::{Migrating, ModeInfo, ServerMessage};

/// A room's hybrid state.
#[derive(Debug, Default)]
pub(crate) struct RoomHybrid {
    pub(crate) policy: Option<ModePolicy>,
    /// Queued joiners waiting for their [`Action::Admit`].
    pub(crate) waiters: HashMap<String, oneshot::Sender<()>>,
}

/// What a join gets from the policy.
#[derive(Debug)]
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

/// A client's answer to a `mode_change` (docs/protocol.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ModeReply {
    Ack,
    Ready,
    Failed,
}

/// Migration metrics of the node (docs/api.md "Metrics").
#[derive(Debug, Default)]
pub(crate) struct HybridMetrics {
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

impl RoomCtx {
    /// Runs `f` on the room's policy, creating it from the room's setting if needed.
    pub(crate) fn with_policy<R>(&mut self, f: impl FnOnce(&mut ModePolicy) -> R) -> R {
        if self.hybrid.policy.is_none() {
            let (setting, override_cfg) = match self.room() {
                Some(r) => (r.config.mode, r.config.hybrid.clone()),
                None => (self.rooms.config().default_room.mode, None),
            };
            let config = override_cfg.unwrap_or_else(|| self.app.hybrid_config.clone());
            self.hybrid.policy = Some(ModePolicy::new(config, setting, self.app.sfu_healthy()));
        }
        f(self.hybrid.policy.as_mut().expect("created above"))
    }

    /// Asks the policy to admit `identity`.
    pub(crate) fn request_join(
        &mut self,
        identity: &str,
        p2p_capable: bool,
    ) -> Result<JoinTicket, ApiError> {
        let now = self.app.now_ms();
        let (admission, actions) = self.with_policy(|p| p.request_join(now, identity, p2p_capable));
        match admission {
            Admission::Admit => Ok(JoinTicket::Admitted(actions)),
            Admission::Rejected(e) => Err(ApiError::rejected(e.message).with_field(e.field)),
            Admission::Queued {
                position,
                estimated_wait_ms,
            } => {
                let (tx, rx) = oneshot::channel();
                self.hybrid.waiters.insert(identity.to_owned(), tx);
                Ok(JoinTicket::Queued {
                    position,
                    estimated_wait_ms,
                    admitted: rx,
                })
            }
        }
    }

    /// A queued joiner gave up (socket closed or waited too long).
    pub(crate) fn cancel_join(&mut self, identity: &str) {
        self.hybrid.waiters.remove(identity);
        if let Some(p) = self.hybrid.policy.as_mut() {
            p.cancel_join(identity);
        }
        self.forget_policy_if_roomless();
    }

    /// The policy of a room that does not exist (a refused first join) goes.
    pub(crate) fn forget_policy_if_roomless(&mut self) {
        if self.room().is_none() && self.hybrid.waiters.is_empty() {
            self.hybrid.policy = None;
        }
    }

    /// `identity` left (any way): the policy stops counting it.
    pub(crate) async fn hybrid_leave(&mut self, identity: &str) {
        let now = self.app.now_ms();
        self.hybrid.waiters.remove(identity);
        let actions = self
            .hybrid
            .policy
            .as_mut()
            .map(|p| p.leave(now, identity))
            .unwrap_or_default();
        self.run_actions(actions).await;
    }

    /// Something needs the SFU: a publisher offer from `identity`, or a WHIP/WHEP/sidecar
    /// session when `identity` is `None`. `Err` when the room cannot have dataplane sessions.
    pub(crate) async fn require_sfu(&mut self, identity: Option<&str>) -> Result<(), ApiError> {
        let now = self.app.now_ms();
        let (result, allowed) = self.with_policy(|p| {
            let r = p.require_sfu(now, identity);
            (r, p.sessions_allowed())
        });
        let actions = result.map_err(|e| ApiError::rejected(e.message).with_field(e.field))?;
        self.run_actions(actions).await;
        if !allowed {
            return Err(
                ApiError::rejected("the room is in p2p mode and the SFU is unavailable")
                    .with_field("mode"),
            );
        }
        Ok(())
    }

    /// `mode_ack`, `mode_ready`, `mode_failed` from `identity`.
    pub(crate) async fn mode_reply(
        &mut self,
        identity: &str,
        reply: ModeReply,
        id: u64,
        audio_gap_ms: Option<f64>,
    ) {
        let now = self.app.now_ms();
        // A client-reported figure: only plausible values reach the histogram (finding #27).
        if let Some(gap) = audio_gap_ms.filter(|g| g.is_finite() && (0.0..=60_000.0).contains(g)) {
            self.app.hybrid_metrics.locked().audio_gap_ms.observe(gap);
        }
        let actions = match self.hybrid.policy.as_mut() {
            Some(p) => match reply {
                ModeReply::Ack => {
                    p.ack(identity, id);
                    Vec::new()
                }
                ModeReply::Ready => p.ready(now, identity, id),
                ModeReply::Failed => p.failed(now, identity, id),
            },
            None => Vec::new(),
        };
        self.run_actions(actions).await;
    }

    /// Changes the room's setting (host `set_mode` or `PUT /api/rooms/{room}/mode`); it is
    /// persisted with the room.
    pub(crate) async fn set_mode(&mut self, mode: RoomMode) -> Result<(), ApiError> {
        let now = self.app.now_ms();
        let actions = self
            .with_policy(|p| p.set_setting(now, mode))
            .map_err(|e| ApiError::rejected(e.message).with_field(e.field))?;
        let name = self.name.clone();
        if let Ok(r) = self.rooms.room_mut(&name) {
            r.config.mode = mode;
        }
        self.run_actions(actions).await;
        Ok(())
    }

    /// `ModeInfo` for `joined` and the API.
    pub(crate) fn mode_info(&mut self) -> ModeInfo {
        self.with_policy(|p| ModeInfo {
            mode: p.mode(),
            setting: p.setting(),
            migrating: p.migrating().map(|m| Migrating {
                id: m.id,
                from: m.from,
                to: m.to,
                strategy: m.strategy,
            }),
        })
    }

    /// The policy's deadlines.
    pub(crate) async fn hybrid_timeout(&mut self, now: u64) {
        let due = self
            .hybrid
            .policy
            .as_ref()
            .and_then(|p| p.poll_timeout())
            .is_some_and(|t| t <= now);
        if due {
            let actions = self
                .hybrid
                .policy
                .as_mut()
                .map(|p| p.handle_timeout(now))
                .unwrap_or_default();
            self.run_actions(actions).await;
        }
    }

    /// The dataplane link went up or down.
    pub(crate) async fn on_sfu_health(&mut self) {
        let now = self.app.now_ms();
        let up = self.app.sfu_healthy();
        let actions = self
            .hybrid
            .policy
            .as_mut()
            .map(|p| p.set_sfu_health(now, up))
            .unwrap_or_default();
        self.run_actions(actions).await;
    }

    /// Carries out the policy's actions, in order.
    pub(crate) async fn run_actions(&mut self, actions: Vec<Action>) {
        for action in actions {
            self.run_action(action).await;
        }
    }

    async fn run_action(&mut self, action: Action) {
        let now = self.app.now_ms();
        let room = self.name.clone();
        let app = std::sync::Arc::clone(&self.app);
        match action {
            Action::SendModeChange { to, change } => {
                let msg = mode_change(&change);
                for identity in to {
                    app.hub
                        .send_to(&room, &identity, ClientMsg::Msg(msg.clone()));
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
                app.events.emit(
                    &room,
                    "room_migration_started",
                    event_json(&room, &change, None),
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
                    let mut m = app.hybrid_metrics.locked();
                    *m.migrations.entry((direction(&change), "ok")).or_default() += 1;
                    m.seconds.observe(duration_ms as f64 / 1000.0);
                }
                app.events.emit(
                    &room,
                    "room_mode_changed",
                    event_json(&room, &change, Some(duration_ms)),
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
                *app.hybrid_metrics
                    .locked()
                    .migrations
                    .entry((direction(&change), result))
                    .or_default() += 1;
                let mut body = event_json(&room, &change, Some(duration_ms));
                body["reason"] = json!(reason.as_str());
                app.events.emit(&room, "room_migration_failed", body, now);
            }
            Action::Settled { id, mode } => {
                app.hub
                    .broadcast(&room, None, &ServerMessage::ModeChanged { id, mode });
            }
            Action::CloseSessions => self.close_room_sessions().await,
            Action::Admit { identity } => {
                if let Some(w) = self.hybrid.waiters.remove(&identity) {
                    let _ = w.send(());
                }
            }
            Action::Prewarm => {
                // The policy believes the link is up; ask the dataplane itself.
                let ping =
                    tokio::time::timeout(Duration::from_secs(2), app.dp(Command::Ping {})).await;
                if matches!(ping, Ok(Ok(_))) {
                    app.hub
                        .broadcast(&room, None, &ServerMessage::ModePrewarm {});
                    app.events
                        .emit(&room, "room_prewarm", json!({"room": room}), now);
                } else {
                    tracing::warn!(room, "pre-warm: the dataplane did not answer a ping");
                    self.notice("sfu_unavailable", "pre-warm: the SFU did not answer a ping");
                }
            }
            Action::Notice { code, message } => self.notice(code, &message),
            Action::SettingChanged { setting } => {
                app.hub
                    .broadcast(&room, None, &ServerMessage::ModeSetting { setting });
            }
        }
    }

    fn notice(&self, code: &str, message: &str) {
        let now = self.app.now_ms();
        self.app.hub.broadcast(
            &self.name,
            None,
            &ServerMessage::Notice {
                code: code.to_owned(),
                message: message.to_owned(),
            },
        );
        self.app.events.emit(
            &self.name,
            "room_notice",
            json!({"room": self.name, "code": code, "message": message}),
            now,
        );
    }
}

impl App {
    /// `joined.ice_servers`: TURN REST credentials for `identity`, or `[]`.
    pub(crate) fn ice_servers(&self, identity: &str) -> Vec<IceServer> {
        let now_s = self.now_ms() / 1000;
        self.turn
            .iter()
            .map(|t| t.credentials(identity, now_s))
            .collect()
    }

    /// Hybrid metrics text for `/metrics`.
    pub(crate) fn hybrid_metrics(&self, out: &mut String) {
        let (mut p2p, mut sfu) = (0, 0);
        for s in self.registry.summaries() {
            let Some(room) = &s.room else { continue };
            let mode = s.mode.unwrap_or(match room.config.mode {
                RoomMode::Sfu => Topology::Sfu,
                _ => Topology::P2p,
            });
            match mode {
                Topology::P2p => p2p += 1,
                Topology::Sfu => sfu += 1,
            }
        }
        let m = self.hybrid_metrics.locked();
        let _ = writeln!(out, "# HELP sluice_rooms_by_mode Rooms by current topology.\n# TYPE sluice_rooms_by_mode gauge\nsluice_rooms_by_mode{{mode=\"p2p\"}} {p2p}\nsluice_rooms_by_mode{{mode=\"sfu\"}} {sfu}");
        let _ = writeln!(out, "# HELP sluice_migrations_total Topology migrations by direction and result.\n# TYPE sluice_migrations_total counter");
        for dir in ["p2p_to_sfu", "sfu_to_p2p"] {
            for result in ["ok", "failed", "timeout"] {
                let v = m.migrations.get(&(dir, result)).copied().unwrap_or(0);
                let _ = writeln!(
                    out,
                    "sluice_migrations_total{{direction=\"{dir}\",result=\"{result}\"}} {v}"
                );
            }
        }
        m.seconds.write(
            out,
            "sluice_migration_seconds",
            "Migration time, start to mode_changed.",
        );
        m.audio_gap_ms.write(
            out,
            "sluice_migration_audio_gap_ms",
            "Longest remote-audio gap during a switch, as clients measured it.",
        );
    }
}

fn mode_change(c: &ModeChange) -> ServerMessage {
    ServerMessage::ModeChange {
        id: c.id,
        from: c.from,
        to: c.to,
        strategy: c.strategy,
        reason: c.reason,
        grace_ms: c.grace_ms,
    }
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
