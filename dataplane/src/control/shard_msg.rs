//! What the shards send the control thread (`ShardMsg`): replies to routed requests (answered
//! to the connection that asked, or forgotten when it dropped), claims of pending sessions
//! (cross-shard interest wired both ways), life-cycle events (forwarded as notifications, the
//! registry's view kept in step) and stats snapshots.

use super::*;

impl ControlThread {
    /// What the shards sent, both channels, within the turn's budget.
    pub(super) fn shard_msgs(&mut self) {
        for _ in 0..SHARD_MSG_BUDGET {
            match self.ctx.from_shards.try_recv() {
                Ok(m) => self.shard_msg(m),
                Err(_) => break,
            }
        }
        for _ in 0..SHARD_MSG_BUDGET {
            match self.ctx.from_shards_lossy.try_recv() {
                Ok(m) => self.shard_msg(m),
                Err(_) => break,
            }
        }
    }

    pub(super) fn shard_msg(&mut self, msg: ShardMsg) {
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
                        shard: worker,
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
                if let Some(slot) = self.latest_stats.get_mut(usize::from(s.shard)) {
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
}
