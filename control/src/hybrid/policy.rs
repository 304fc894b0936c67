//! [`ModePolicy`]: one room's topology state machine (seed 004 "Transition Mechanisms" and
//! "Edge Cases & Solutions"). Deterministic and sans-IO: every call takes `now_ms` (unix
//! millis) and returns the [`Action`]s the server must carry out, in order; the server arms
//! its timer from [`ModePolicy::poll_timeout`] and calls [`ModePolicy::handle_timeout`].
//!
//! A migration is acknowledged in two steps: `mode_ack` only stops the resends (the message
//! arrived), `mode_ready` says the client switched its media. The room's mode changes when
//! every admitted participant is ready; joins arriving meanwhile are queued and admitted
//! afterwards, so nobody joins into a half-switched room. A failure or timeout resets the
//! room to the source mode at once (a new `mode_change` the clients only ack) and starts the
//! cooldown, so a broken SFU cannot make the room flap.

mod migration;

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use super::{HybridConfig, Reason, Strategy, Topology};
use crate::room::RoomMode;

/// One room's topology policy.
#[derive(Debug, Clone)]
pub struct ModePolicy {
    config: HybridConfig,
    setting: RoomMode,
    mode: Topology,
    /// Admitted participants by identity → whether their client can do P2P.
    members: BTreeMap<String, bool>,
    /// Joins waiting for the migration to end, in arrival order: (identity, p2p capable).
    queue: VecDeque<(String, bool)>,
    migration: Option<Migration>,
    /// The `mode_change` of the last reset, resent to non-ackers for a while.
    announce: Option<Announce>,
    /// No automatic migration before this.
    cooldown_until: u64,
    /// The cooldown also holds setting/capability-driven migrations (after a failure).
    cooldown_after_failure: bool,
    /// A timer is armed for the cooldown's end (to re-evaluate then).
    cooldown_armed: bool,
    /// Pre-warm fired for the current P2P stretch at or above `prewarm_at`.
    warm: bool,
    sfu_healthy: bool,
    /// "SFU unavailable" was reported for the current outage (once, not on every tick).
    unhealthy_noticed: bool,
    /// Something that cannot do P2P (WHIP/WHEP, an SFU offer) used this room: stays SFU
    /// until the room empties.
    sfu_required: bool,
    next_id: u64,
}

/// What a `mode_change` message carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModeChange {
    pub id: u64,
    pub from: Topology,
    pub to: Topology,
    pub strategy: Strategy,
    pub reason: Reason,
    pub grace_ms: u64,
}

/// The migration in progress, as `joined.mode.migrating` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MigrationInfo {
    pub id: u64,
    pub from: Topology,
    pub to: Topology,
    pub strategy: Strategy,
}

/// The answer to a join request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// Counted as a member now; the server joins it to the room.
    Admit,
    /// Waits for the migration; an [`Action::Admit`] follows (or nothing, if the joiner
    /// gives up first: [`ModePolicy::cancel_join`]).
    Queued {
        /// 1-based place in the queue.
        position: usize,
        /// Upper bound: the time left before the migration times out.
        estimated_wait_ms: u64,
    },
    Rejected(PolicyError),
}

/// Something the server must do, in the order returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send `mode_change` to these identities (first send: everyone; then the non-ackers).
    SendModeChange { to: Vec<String>, change: ModeChange },
    /// A migration started: event `room_migration_started`.
    MigrationStarted { change: ModeChange },
    /// A migration finished (every participant ready): event `room_mode_changed`, metrics.
    MigrationCompleted {
        change: ModeChange,
        duration_ms: u64,
    },
    /// A migration failed (`reason` sfu_failed/p2p_failed) or timed out (`reason` timeout):
    /// event `room_migration_failed`, metrics. A reset `SendModeChange` + `Settled` follows.
    MigrationFailed {
        change: ModeChange,
        reason: Reason,
        duration_ms: u64,
    },
    /// The room's mode is now `mode`: send everyone `mode_changed {id, mode}`.
    Settled { id: u64, mode: Topology },
    /// The room is P2P now: close all its dataplane sessions.
    CloseSessions,
    /// A queued join is admitted (counted now): send its `joined`.
    Admit { identity: String },
    /// Pre-warm: the SFU is healthy; send everyone `mode_prewarm {}`.
    Prewarm,
    /// Tell everyone `notice {code, message}` (and log it as an event).
    Notice { code: &'static str, message: String },
    /// The setting changed: send everyone `mode_setting {setting}`.
    SettingChanged { setting: RoomMode },
}

/// A request the policy refuses; `field` is the protocol error's field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
#[non_exhaustive]
pub struct PolicyError {
    pub field: &'static str,
    pub message: String,
}

#[derive(Debug, Clone)]
struct Migration {
    change: ModeChange,
    unacked: BTreeSet<String>,
    not_ready: BTreeSet<String>,
    started_ms: u64,
    next_retry_ms: u64,
    deadline_ms: u64,
}

#[derive(Debug, Clone)]
struct Announce {
    change: ModeChange,
    unacked: BTreeSet<String>,
    next_retry_ms: u64,
    until_ms: u64,
}

impl ModePolicy {
    /// A room with nobody in it. An auto room starts in P2P (it is small).
    pub fn new(config: HybridConfig, setting: RoomMode, sfu_healthy: bool) -> Self {
        let mode = match setting {
            RoomMode::Sfu => Topology::Sfu,
            RoomMode::P2p | RoomMode::Auto => Topology::P2p,
        };
        Self {
            config,
            setting,
            mode,
            members: BTreeMap::new(),
            queue: VecDeque::new(),
            migration: None,
            announce: None,
            cooldown_until: 0,
            cooldown_after_failure: false,
            cooldown_armed: false,
            warm: false,
            sfu_healthy,
            unhealthy_noticed: false,
            sfu_required: false,
            next_id: 1,
        }
    }

    pub fn config(&self) -> &HybridConfig {
        &self.config
    }

    pub fn setting(&self) -> RoomMode {
        self.setting
    }

    /// The settled mode (the source mode while migrating).
    pub fn mode(&self) -> Topology {
        self.mode
    }

    pub fn migrating(&self) -> Option<MigrationInfo> {
        self.migration.as_ref().map(|m| MigrationInfo {
            id: m.change.id,
            from: m.change.from,
            to: m.change.to,
            strategy: m.change.strategy,
        })
    }

    /// Participants counted (admitted, not queued).
    pub fn members(&self) -> usize {
        self.members.len()
    }

    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// Whether `p2p_signal` may be relayed now.
    pub fn relay_allowed(&self) -> bool {
        self.mode == Topology::P2p || self.migration.is_some()
    }

    /// Whether dataplane sessions may be created now.
    pub fn sessions_allowed(&self) -> bool {
        self.mode == Topology::Sfu || self.migration.is_some()
    }

    /// A participant asks to join. An identity already admitted (a resume) is admitted
    /// again without counting twice; during a migration it is sent the current `mode_change`.
    pub fn request_join(
        &mut self,
        now_ms: u64,
        identity: &str,
        p2p_capable: bool,
    ) -> (Admission, Vec<Action>) {
        if let Some(capable) = self.members.get_mut(identity) {
            *capable = p2p_capable;
            let mut actions = Vec::new();
            if let Some(m) = &mut self.migration {
                m.unacked.insert(identity.to_owned());
                m.not_ready.insert(identity.to_owned());
                actions.push(Action::SendModeChange {
                    to: vec![identity.to_owned()],
                    change: m.change,
                });
            }
            actions.extend(self.evaluate(now_ms));
            return (Admission::Admit, actions);
        }
        if self.setting == RoomMode::P2p {
            if self.members.len() >= self.config.p2p_limit as usize {
                return (
                    Admission::Rejected(PolicyError {
                        field: "room",
                        message: format!(
                            "room is pinned to p2p and full (p2p_limit = {})",
                            self.config.p2p_limit
                        ),
                    }),
                    Vec::new(),
                );
            }
            if !p2p_capable {
                return (
                    Admission::Rejected(PolicyError {
                        field: "mode",
                        message: "room is pinned to p2p and this client cannot do p2p".into(),
                    }),
                    Vec::new(),
                );
            }
        }
        if let Some(m) = &self.migration {
            if let Some(pos) = self.queue.iter().position(|(i, _)| i == identity) {
                self.queue[pos].1 = p2p_capable;
            } else {
                self.queue.push_back((identity.to_owned(), p2p_capable));
            }
            let position = self
                .queue
                .iter()
                .position(|(i, _)| i == identity)
                .unwrap_or(0)
                + 1;
            return (
                Admission::Queued {
                    position,
                    estimated_wait_ms: m.deadline_ms.saturating_sub(now_ms),
                },
                Vec::new(),
            );
        }
        self.members.insert(identity.to_owned(), p2p_capable);
        (Admission::Admit, self.evaluate(now_ms))
    }

    /// A queued joiner went away before it was admitted.
    pub fn cancel_join(&mut self, identity: &str) {
        self.queue.retain(|(i, _)| i != identity);
    }

    /// An admitted participant left.
    pub fn leave(&mut self, now_ms: u64, identity: &str) -> Vec<Action> {
        self.cancel_join(identity);
        if self.members.remove(identity).is_none() {
            return Vec::new();
        }
        if self.members.is_empty() {
            self.sfu_required = false;
        }
        if let Some(a) = &mut self.announce {
            a.unacked.remove(identity);
        }
        if let Some(m) = &mut self.migration {
            m.unacked.remove(identity);
            m.not_ready.remove(identity);
            if m.not_ready.is_empty() {
                return self.complete(now_ms);
            }
            return Vec::new();
        }
        self.evaluate(now_ms)
    }

    /// `mode_ack {id}`: stop resending to `identity`.
    pub fn ack(&mut self, identity: &str, id: u64) {
        if let Some(m) = self.migration.as_mut().filter(|m| m.change.id == id) {
            m.unacked.remove(identity);
        }
        if let Some(a) = self.announce.as_mut().filter(|a| a.change.id == id) {
            a.unacked.remove(identity);
            if a.unacked.is_empty() {
                self.announce = None;
            }
        }
    }

    /// `mode_ready {id}`: `identity` switched. The last one completes the migration.
    pub fn ready(&mut self, now_ms: u64, identity: &str, id: u64) -> Vec<Action> {
        self.ack(identity, id);
        let Some(m) = self.migration.as_mut().filter(|m| m.change.id == id) else {
            return Vec::new();
        };
        m.not_ready.remove(identity);
        if m.not_ready.is_empty() {
            return self.complete(now_ms);
        }
        Vec::new()
    }

    /// `mode_failed {id}`: `identity` cannot switch; the room falls back to the source mode.
    pub fn failed(&mut self, now_ms: u64, identity: &str, id: u64) -> Vec<Action> {
        let Some(m) = self.migration.as_ref().filter(|m| m.change.id == id) else {
            return Vec::new();
        };
        if !self.members.contains_key(identity) {
            return Vec::new();
        }
        let reason = match m.change.to {
            Topology::Sfu => Reason::SfuFailed,
            Topology::P2p => Reason::P2pFailed,
        };
        self.fail(now_ms, reason)
    }

    /// The dataplane link went up or down. Down during a move to SFU fails it.
    pub fn set_sfu_health(&mut self, now_ms: u64, healthy: bool) -> Vec<Action> {
        let was = std::mem::replace(&mut self.sfu_healthy, healthy);
        if was == healthy {
            return Vec::new();
        }
        if healthy {
            self.unhealthy_noticed = false;
            return self.evaluate(now_ms);
        }
        if self
            .migration
            .as_ref()
            .is_some_and(|m| m.change.to == Topology::Sfu)
        {
            return self.fail(now_ms, Reason::SfuFailed);
        }
        Vec::new()
    }

    /// The host (`set_mode`) or the API changes the setting.
    pub fn set_setting(
        &mut self,
        now_ms: u64,
        setting: RoomMode,
    ) -> Result<Vec<Action>, PolicyError> {
        if setting == RoomMode::P2p {
            if self.members.len() > self.config.p2p_limit as usize {
                return Err(PolicyError {
                    field: "mode",
                    message: format!(
                        "{} participants exceed p2p_limit = {}",
                        self.members.len(),
                        self.config.p2p_limit
                    ),
                });
            }
            if self.sfu_required || self.members.values().any(|c| !c) {
                return Err(PolicyError {
                    field: "mode",
                    message: "a participant in this room cannot do p2p".into(),
                });
            }
        }
        self.setting = setting;
        let mut actions = vec![Action::SettingChanged { setting }];
        actions.extend(self.evaluate(now_ms));
        Ok(actions)
    }

    /// Something that cannot do P2P needs this room (a WHIP/WHEP session, or `identity`'s
    /// SDP offer to the SFU): an auto room moves to SFU; a P2P-pinned room refuses.
    pub fn require_sfu(
        &mut self,
        now_ms: u64,
        identity: Option<&str>,
    ) -> Result<Vec<Action>, PolicyError> {
        if self.sessions_allowed() {
            return Ok(Vec::new());
        }
        if self.setting == RoomMode::P2p {
            return Err(PolicyError {
                field: "mode",
                message: "room is pinned to p2p: no SFU sessions".into(),
            });
        }
        match identity.and_then(|i| self.members.get_mut(i)) {
            Some(capable) => *capable = false,
            None => self.sfu_required = true,
        }
        Ok(self.evaluate(now_ms))
    }

    pub fn handle_timeout(&mut self, now_ms: u64) -> Vec<Action> {
        let mut actions = Vec::new();
        if let Some(m) = &mut self.migration {
            if now_ms >= m.deadline_ms {
                return self.fail(now_ms, Reason::Timeout);
            }
            if now_ms >= m.next_retry_ms {
                m.next_retry_ms = now_ms + self.config.ack_retry_ms;
                if !m.unacked.is_empty() {
                    actions.push(Action::SendModeChange {
                        to: m.unacked.iter().cloned().collect(),
                        change: m.change,
                    });
                }
            }
        }
        if let Some(a) = &mut self.announce {
            if now_ms >= a.until_ms {
                self.announce = None;
            } else if now_ms >= a.next_retry_ms {
                a.next_retry_ms = now_ms + self.config.ack_retry_ms;
                actions.push(Action::SendModeChange {
                    to: a.unacked.iter().cloned().collect(),
                    change: a.change,
                });
            }
        }
        if self.cooldown_armed && now_ms >= self.cooldown_until {
            self.cooldown_armed = false;
            actions.extend(self.evaluate(now_ms));
        }
        actions
    }

    /// When [`ModePolicy::handle_timeout`] next has work (unix millis).
    pub fn poll_timeout(&self) -> Option<u64> {
        let migration = self.migration.as_ref().map(|m| {
            if m.unacked.is_empty() {
                m.deadline_ms
            } else {
                m.next_retry_ms.min(m.deadline_ms)
            }
        });
        let announce = self
            .announce
            .as_ref()
            .map(|a| a.next_retry_ms.min(a.until_ms));
        let cooldown = self.cooldown_armed.then_some(self.cooldown_until);
        [migration, announce, cooldown].into_iter().flatten().min()
    }
}

#[cfg(test)]
#[path = "policy_tests.rs"]
mod tests;
