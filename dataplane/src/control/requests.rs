//! The control thread's request handlers: every command's dispatch (validation against the
//! registry of what exists, routing to shards or the pending registry) and the session
//! handlers, with their cascades (closing a session ends the subscriptions to its tracks
//! elsewhere). Track and subscription handlers are in `tracks`, `update_data` in `data`, the
//! `List*` pages for resync in the parent module.

use super::*;

impl ControlThread {
    // ---- requests -----------------------------------------------------------------------

    pub(super) fn request(&mut self, id: u64, command: Command) {
        if let Err(e) = command.validate() {
            self.reply(id, Err(e.into()));
            return;
        }
        let result = match command {
            Command::Ping {} => Ok(Some(ReplyOk::Pong {})),
            Command::Shutdown {} => {
                tracing::info!("shutdown requested by the control daemon");
                // The receiver is the process that embeds us (the binary stops; a test may
                // not listen at all).
                let _ = self.ctx.shutdown.send(());
                Ok(Some(ReplyOk::Done {}))
            }
            Command::Stats {} => {
                // The latest snapshots now; each worker also sends a fresh one, so the next
                // `stats` (or the next `stats_snapshot` event) is current even with a long
                // stats interval.
                for w in 0..self.ctx.inboxes.len() {
                    self.send_to(w as u16, ShardCmd::Stats);
                }
                Ok(Some(ReplyOk::Stats {
                    shards: self.latest_stats.clone(),
                }))
            }
            Command::ListSessions { after } => Ok(Some(self.list_sessions(after))),
            Command::ListTracks { after } => Ok(Some(self.list_tracks(after))),
            Command::ListSubscriptions { after } => Ok(Some(self.list_subs(after))),
            Command::CreateSession(spec) => self.create_session(id, spec),
            Command::CloseSession { session } => self.close_session(id, session),
            Command::SendData(d) => {
                // Any worker will do: it relays to its own members and every other worker.
                let msg = crate::shard::data::DataMsg::from_server(d, std::time::Instant::now());
                if self.send_to(0, ShardCmd::Data(Box::new(msg))) {
                    Ok(Some(ReplyOk::Done {}))
                } else {
                    Err(rejected("worker 0's command queue is full; retry"))
                }
            }
            Command::UpdateData(u) => self.update_data(id, u),
            Command::SessionStats { session } => {
                if !self.sessions.contains_key(&session) {
                    Err(not_found(session))
                } else if self.ctx.registry.lock().placed(session).is_none() {
                    Ok(Some(ReplyOk::SessionStats(SessionStatsReport::unplaced(
                        session,
                    ))))
                } else {
                    self.route_apply(id, session, Command::SessionStats { session })
                }
            }
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
            Command::Subscribe(spec) => self.subscribe(id, spec, None),
            Command::RelayTrack(spec) => self.relay_track(id, spec),
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

    pub(super) fn create_session(
        &mut self,
        id: u64,
        spec: CreateSession,
    ) -> Result<Option<ReplyOk>, ErrorBody> {
        if self.sessions.contains_key(&spec.session) {
            return Err(rejected(format!("{} exists", spec.session)));
        }
        let workers = self.ctx.inboxes.len();
        if let Some(h) = spec.shard_hint.filter(|&h| usize::from(h) >= workers) {
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
        if let Some(remote) = fixed_remote(&spec.mode) {
            if self
                .sessions
                .values()
                .any(|s| fixed_remote(&s.spec.mode) == Some(remote))
            {
                return Err(
                    rejected("mode.remote is in use by another session").with_field("mode.remote")
                );
            }
        }
        let session = spec.session;
        if webrtc && !self.ctx.port_per_worker {
            // Shared port: the session lives where its first STUN binding lands.
            let worker = spec.shard_hint.unwrap_or(0);
            self.ctx.registry.lock().add_pending(spec.clone());
            self.sessions.insert(
                session,
                SessionRec {
                    spec,
                    worker: None,
                    state: SessionState::New,
                },
            );
            return Ok(Some(ReplyOk::SessionCreated {
                shard: worker,
                local_candidates: self.candidates(None),
            }));
        }
        // Placed now: a port per worker, or plain RTP (whose peer may never send first).
        let worker = match spec.shard_hint {
            Some(h) => h,
            None => {
                let w = self.next_worker % workers;
                self.next_worker += 1;
                w as u16
            }
        };
        {
            let mut reg = self.ctx.registry.lock();
            reg.place(session, worker);
            if let Some(remote) = fixed_remote(&spec.mode) {
                reg.set_remote(remote, worker);
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

    pub(super) fn candidates(&self, worker: Option<u16>) -> Vec<Candidate> {
        let addrs = match worker {
            Some(w) if self.ctx.port_per_worker => vec![self.ctx.worker_addrs[usize::from(w)]],
            _ => self.media_addrs(),
        };
        let tcp = match worker {
            Some(w) if self.ctx.port_per_worker => self
                .ctx
                .tcp_addrs
                .get(usize::from(w))
                .copied()
                .into_iter()
                .collect(),
            _ => self.tcp_media_addrs(),
        };
        let udp = addrs.into_iter().enumerate().map(|(i, addr)| Candidate {
            foundation: (i + 1).to_string(),
            addr,
            protocol: CandidateProtocol::Udp,
            priority: HOST_PRIORITY - i as u32,
        });
        let tcp = tcp.into_iter().enumerate().map(|(i, addr)| Candidate {
            foundation: (i + 101).to_string(),
            addr,
            protocol: CandidateProtocol::Tcp,
            priority: TCP_PRIORITY - i as u32,
        });
        udp.chain(tcp).collect()
    }

    pub(super) fn close_session(
        &mut self,
        id: u64,
        session: SessionId,
    ) -> Result<Option<ReplyOk>, ErrorBody> {
        if !self.sessions.contains_key(&session) {
            return Err(not_found(session));
        }
        self.cascade_session(session);
        let pending = self.ctx.registry.lock().remove_pending(session).is_some();
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
    pub(super) fn cascade_session(&mut self, session: SessionId) {
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
    pub(super) fn drop_track_subs(&mut self, track: TrackId) {
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

    pub(super) fn forget_session(&mut self, session: SessionId) {
        if let Some(rec) = self.sessions.remove(&session) {
            let mut reg = self.ctx.registry.lock();
            reg.unplace(session);
            if let Some(remote) = fixed_remote(&rec.spec.mode) {
                reg.remove_remote(remote, None);
            }
            reg.remove_pending(session);
        }
    }

    pub(super) fn set_remote(
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

    pub(super) fn ice_restart(
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
    pub(super) fn amend_pending(&mut self, session: SessionId, spec: CreateSession) -> bool {
        self.ctx.registry.lock().amend_pending(session, spec)
    }
}

/// The fixed remote of a plain-RTP or trunk session (which the media demux routes by address).
fn fixed_remote(mode: &TransportMode) -> Option<std::net::SocketAddr> {
    match mode {
        TransportMode::PlainRtp { remote, .. } | TransportMode::Trunk { remote, .. } => {
            Some(*remote)
        }
        TransportMode::Webrtc {} => None,
    }
}
