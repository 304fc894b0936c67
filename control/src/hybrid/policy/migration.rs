//! The mechanics of a migration, behind [`ModePolicy`]'s public calls: where the room should
//! be, starting, completing and failing a migration, the cooldown and the join queue.

use super::*;

impl ModePolicy {
    /// Where the room should be, why, and whether the cooldown may hold it back.
    pub(super) fn desired(&self) -> (Topology, Reason, bool) {
        match self.setting {
            RoomMode::Sfu => (Topology::Sfu, Reason::Setting, false),
            RoomMode::P2p => (Topology::P2p, Reason::Setting, false),
            RoomMode::Auto => {
                let n = self.members.len();
                let incapable = self.sfu_required || self.members.values().any(|c| !c);
                match self.mode {
                    Topology::P2p if incapable => (Topology::Sfu, Reason::P2pIncapable, false),
                    Topology::P2p if n >= self.config.sfu_at as usize => {
                        (Topology::Sfu, Reason::Threshold, true)
                    }
                    Topology::Sfu if !incapable && n <= self.config.p2p_at as usize => {
                        (Topology::P2p, Reason::Threshold, true)
                    }
                    mode => (mode, Reason::Threshold, true),
                }
            }
        }
    }

    /// Starts a migration if the room should move and may now; else checks pre-warm.
    pub(super) fn evaluate(&mut self, now_ms: u64) -> Vec<Action> {
        if self.migration.is_some() {
            return Vec::new();
        }
        let mut actions = Vec::new();
        let (want, reason, cooldown_holds) = self.desired();
        if want == self.mode {
            self.prewarm(&mut actions);
            return actions;
        }
        if (cooldown_holds || self.cooldown_after_failure) && now_ms < self.cooldown_until {
            self.prewarm(&mut actions);
            return actions;
        }
        if want == Topology::Sfu && !self.sfu_healthy {
            if !self.unhealthy_noticed {
                self.unhealthy_noticed = true;
                actions.push(Action::Notice {
                    code: "sfu_unavailable",
                    message: "the SFU is unavailable; the room stays p2p".into(),
                });
            }
            return actions;
        }
        self.start(now_ms, want, reason, &mut actions);
        actions
    }

    /// Pre-warm once per P2P stretch at or above `prewarm_at` (auto rooms only).
    pub(super) fn prewarm(&mut self, actions: &mut Vec<Action>) {
        if self.setting != RoomMode::Auto || self.mode != Topology::P2p {
            return;
        }
        if self.members.len() < self.config.prewarm_at as usize {
            self.warm = false;
            return;
        }
        if self.warm {
            return;
        }
        self.warm = true;
        if self.sfu_healthy {
            actions.push(Action::Prewarm);
        } else if !self.unhealthy_noticed {
            self.unhealthy_noticed = true;
            actions.push(Action::Notice {
                code: "sfu_unavailable",
                message: "pre-warm: the SFU is unavailable; the room stays p2p".into(),
            });
        }
    }

    pub(super) fn start(
        &mut self,
        now_ms: u64,
        to: Topology,
        reason: Reason,
        actions: &mut Vec<Action>,
    ) {
        let change = self.new_change(self.mode, to, reason);
        self.announce = None;
        let everyone: BTreeSet<String> = self.members.keys().cloned().collect();
        self.migration = Some(Migration {
            change,
            unacked: everyone.clone(),
            not_ready: everyone.clone(),
            started_ms: now_ms,
            next_retry_ms: now_ms + self.config.ack_retry_ms,
            deadline_ms: now_ms + self.config.migration_timeout_ms,
        });
        actions.push(Action::MigrationStarted { change });
        if everyone.is_empty() {
            actions.extend(self.complete(now_ms));
            return;
        }
        actions.push(Action::SendModeChange {
            to: everyone.into_iter().collect(),
            change,
        });
    }

    pub(super) fn complete(&mut self, now_ms: u64) -> Vec<Action> {
        let m = self
            .migration
            .take()
            .expect("complete() only while migrating");
        self.mode = m.change.to;
        self.start_cooldown(now_ms, false);
        self.warm = false;
        let mut actions = vec![
            Action::MigrationCompleted {
                change: m.change,
                duration_ms: now_ms.saturating_sub(m.started_ms),
            },
            Action::Settled {
                id: m.change.id,
                mode: self.mode,
            },
        ];
        if self.mode == Topology::P2p {
            actions.push(Action::CloseSessions);
        }
        self.admit_queued(&mut actions);
        actions.extend(self.evaluate(now_ms));
        actions
    }

    /// Back to the source mode at once; clients get a new `mode_change` to ack.
    pub(super) fn fail(&mut self, now_ms: u64, reason: Reason) -> Vec<Action> {
        let m = self.migration.take().expect("fail() only while migrating");
        let back = m.change.from;
        self.mode = back;
        let change = self.new_change(m.change.to, back, reason);
        let everyone: BTreeSet<String> = self.members.keys().cloned().collect();
        let mut actions = vec![Action::MigrationFailed {
            change: m.change,
            reason,
            duration_ms: now_ms.saturating_sub(m.started_ms),
        }];
        if !everyone.is_empty() {
            actions.push(Action::SendModeChange {
                to: everyone.iter().cloned().collect(),
                change,
            });
        }
        actions.push(Action::Settled {
            id: change.id,
            mode: back,
        });
        if reason == Reason::SfuFailed {
            actions.push(Action::Notice {
                code: "sfu_failed",
                message: "the SFU could not take over; the room stays p2p".into(),
            });
        }
        if back == Topology::P2p {
            actions.push(Action::CloseSessions);
        }
        self.announce = (!everyone.is_empty()).then(|| Announce {
            change,
            unacked: everyone,
            next_retry_ms: now_ms + self.config.ack_retry_ms,
            until_ms: now_ms + self.config.migration_timeout_ms,
        });
        self.start_cooldown(now_ms, true);
        self.warm = false;
        self.admit_queued(&mut actions);
        actions.extend(self.evaluate(now_ms));
        actions
    }

    pub(super) fn start_cooldown(&mut self, now_ms: u64, after_failure: bool) {
        self.cooldown_until = now_ms + self.config.cooldown_ms;
        self.cooldown_after_failure = after_failure;
        self.cooldown_armed = self.config.cooldown_ms > 0;
    }

    pub(super) fn admit_queued(&mut self, actions: &mut Vec<Action>) {
        while let Some((identity, capable)) = self.queue.pop_front() {
            self.members.insert(identity.clone(), capable);
            actions.push(Action::Admit { identity });
        }
    }

    pub(super) fn new_change(
        &mut self,
        from: Topology,
        to: Topology,
        reason: Reason,
    ) -> ModeChange {
        let id = self.next_id;
        self.next_id += 1;
        ModeChange {
            id,
            from,
            to,
            strategy: self.config.strategy,
            reason,
            grace_ms: self.config.grace_ms,
        }
    }
}
