//! The shard's slow path: control commands from its inbox, claiming a pending session, building
//! and closing sessions. Allocation is fine here.

use std::time::Instant;

use rtp_core::session::DownId;

use super::msg::{ShardCmd, ShardMsg};
use super::registry::PendingSession;
use super::table::{Entry, Remote, Slot};
use super::{build, relay, Shard, INBOX_BUDGET};
use crate::proto::{
    CloseReason, Command, CreateSession, ErrorBody, ErrorCode, Notification, ReplyOk, TrackId,
    TransportMode,
};

type Reply = Result<ReplyOk, ErrorBody>;

fn done() -> Reply {
    Ok(ReplyOk::Done {})
}

fn not_found(what: impl std::fmt::Display) -> Reply {
    Err(ErrorBody::new(
        ErrorCode::NotFound,
        format!("{what} is not on this worker"),
    ))
}

impl Shard {
    pub(super) fn drain_inbox(&mut self, now: Instant) {
        for _ in 0..INBOX_BUDGET {
            match self.inbox.try_recv() {
                Ok(cmd) => self.command(now, cmd),
                Err(_) => return,
            }
        }
        self.counters.loop_overruns += 1;
    }

    fn command(&mut self, now: Instant, cmd: ShardCmd) {
        let (req, result) = match cmd {
            ShardCmd::Create { req, spec } => {
                let worker = self.index as u16;
                let r = self.create(now, spec).map(|_| ReplyOk::SessionCreated {
                    shard: worker,
                    local_candidates: Vec::new(),
                });
                (req, r)
            }
            ShardCmd::Apply { req, cmd } => (req, self.apply(now, cmd)),
            ShardCmd::Subscribe {
                req,
                spec,
                track,
                source,
                relay_layer,
            } => {
                let r = (|| {
                    let Some(slot) = self.table.slot_of(spec.session) else {
                        return not_found(spec.session);
                    };
                    if self.router.subs.contains_key(&spec.subscription) {
                        return Err(ErrorBody::new(
                            ErrorCode::Rejected,
                            format!("{} exists", spec.subscription),
                        ));
                    }
                    let entry = self.table.get_mut(slot).expect("slot in by_id");
                    let cfg = build::down_track(&spec, &track, entry.priority, relay_layer);
                    let down = entry.session.add_down_track(cfg).map_err(|e| {
                        ErrorBody::new(ErrorCode::Rejected, format!("subscribe: {e}"))
                    })?;
                    let i = usize::from(down.0);
                    if entry.downs.len() <= i {
                        entry.downs.resize(i + 1, None);
                    }
                    entry.downs[i] = Some((spec.track, spec.subscription));
                    // Drained this iteration: its timers (the new stream's reports) are re-read.
                    self.table.mark_dirty(slot);
                    let ts = self.router.track_mut(spec.track, track.kind);
                    ts.subs.push((slot, down));
                    ts.layers = u8::try_from(track.layers.len()).unwrap_or(1);
                    if ts.publisher.is_none() {
                        ts.source = source;
                    }
                    // What the publisher sends per layer, measured so far (until its next report).
                    if let (Some(rates), Some(entry)) = (ts.rates, self.table.get_mut(slot)) {
                        entry.session.set_down_layer_rates(down, rates);
                    }
                    self.router.subs.insert(spec.subscription, (slot, down));
                    done()
                })();
                (req, r)
            }
            ShardCmd::Interest {
                track,
                kind,
                shard,
                on,
            } => {
                if usize::from(shard) != self.index {
                    let ts = self.router.track_mut(track, kind);
                    ts.remote.retain(|&s| s != shard);
                    if on {
                        ts.remote.push(shard);
                    }
                    self.router.forget_if_unused(track);
                }
                (None, done())
            }
            ShardCmd::Source { track, shard } => {
                if let Some(ts) = self.router.tracks.get_mut(&track) {
                    ts.source = shard;
                }
                (None, done())
            }
            ShardCmd::Stats => {
                self.send_stats();
                (None, done())
            }
            ShardCmd::Data(msg) => {
                self.relay_server_message(now, *msg);
                (None, done())
            }
        };
        if let Some(req) = req {
            self.to_control.reliable(ShardMsg::Reply { req, result });
        } else if let Err(e) = result {
            tracing::warn!(shard = self.index, error = %e, "queued command failed");
        }
    }

    /// Builds a session here and enters it in the demux maps (and its ufrag in the registry's
    /// routes, so a check that lands on another shard is handed over).
    fn create(&mut self, now: Instant, spec: CreateSession) -> Result<Slot, ErrorBody> {
        if self.table.contains(spec.session) {
            return Err(ErrorBody::new(
                ErrorCode::Rejected,
                format!("{} exists", spec.session),
            ));
        }
        let mut session = build::session(
            now,
            &spec,
            &self.cert,
            &self.dtls,
            self.policy,
            self.trunk_secret.as_deref(),
        )?;
        let data = match &spec.data {
            Some(d) => Some(Box::new(relay::enable(&mut session, d)?)),
            None => None,
        };
        let room = data.as_ref().map(|d| d.room.clone());
        let mut entry = Entry::new(spec.session, session, spec.quality.priority);
        entry.data = data;
        let slot = match spec.mode {
            TransportMode::Webrtc {} => {
                let ufrag = spec.ice.ufrag.clone();
                self.registry.lock().route_ufrag(&ufrag, self.index as u16);
                self.table.insert(entry, Some(ufrag), None)
            }
            TransportMode::PlainRtp { remote, .. } | TransportMode::Trunk { remote, .. } => {
                self.table.insert(entry, None, Some(Remote::udp(remote)))
            }
        };
        if let Some(room) = room {
            self.data_rooms.join(&room, slot);
        }
        self.next_timer = Some(now);
        Ok(slot)
    }

    /// Builds the pending session this shard claimed (its first authenticated check landed
    /// here), then applies the commands queued for it.
    pub(super) fn claim(&mut self, now: Instant, pending: PendingSession) -> Option<Slot> {
        let id = pending.spec.session;
        let ufrag = pending.spec.ice.ufrag.clone();
        #[allow(clippy::disallowed_methods)]
        let t0 = Instant::now();
        let created = self.create(now, pending.spec);
        #[allow(clippy::disallowed_methods)]
        let create_us = t0.elapsed().as_micros() as u64;
        let slot = match created {
            Ok(slot) => slot,
            Err(e) => {
                tracing::warn!(shard = self.index, session = %id, error = %e, "claim failed");
                let mut reg = self.registry.lock();
                reg.unplace(id);
                reg.unroute_ufrag(&ufrag, self.index as u16);
                drop(reg);
                self.to_control
                    .reliable(ShardMsg::Event(Notification::SessionClosed {
                        session: id,
                        reason: CloseReason::Internal,
                    }));
                return None;
            }
        };
        for cmd in pending.queued {
            self.command(now, cmd);
        }
        self.to_control.reliable(ShardMsg::Claimed {
            session: id,
            shard: self.index as u16,
        });
        tracing::debug!(shard = self.index, session = %id, create_us, "claimed session");
        Some(slot)
    }

    fn apply(&mut self, now: Instant, cmd: Command) -> Reply {
        match cmd {
            Command::SessionStats { session } => self.session_stats(now, session),
            Command::CloseSession { session } => {
                let Some(slot) = self.table.slot_of(session) else {
                    return not_found(session);
                };
                self.close_slot(now, slot, CloseReason::Requested, true);
                done()
            }
            Command::SetRemote {
                session,
                remote_fingerprint,
                ..
            } => {
                let Some(slot) = self.table.slot_of(session) else {
                    return not_found(session);
                };
                let Some(entry) = self.table.get_mut(slot) else {
                    return not_found(session);
                };
                if let Some(fp) = remote_fingerprint {
                    let fp = build::fingerprint(&fp)?;
                    entry.session.set_remote_fingerprint(fp);
                    self.table.mark_dirty(slot);
                }
                done()
            }
            Command::IceRestart {
                session,
                ufrag,
                pwd,
                remote_ufrag,
                ..
            } => {
                let Some(slot) = self.table.slot_of(session) else {
                    return not_found(session);
                };
                let entry = self.table.get_mut(slot).expect("slot in by_id");
                entry
                    .session
                    .ice_restart(&ufrag, &pwd, remote_ufrag.as_deref());
                let old = self.table.set_ufrag(slot, ufrag.clone());
                let mut reg = self.registry.lock();
                if let Some(old) = old {
                    reg.unroute_ufrag(&old, self.index as u16);
                }
                reg.route_ufrag(&ufrag, self.index as u16);
                drop(reg);
                self.table.mark_dirty(slot);
                done()
            }
            Command::AddTrack(spec) => {
                let Some(slot) = self.table.slot_of(spec.session) else {
                    return not_found(spec.session);
                };
                if self
                    .router
                    .tracks
                    .get(&spec.track)
                    .is_some_and(|t| t.publisher.is_some())
                {
                    return Err(ErrorBody::new(
                        ErrorCode::Rejected,
                        format!("{} exists", spec.track),
                    ));
                }
                let entry = self.table.get_mut(slot).expect("slot in by_id");
                let up = entry
                    .session
                    .add_up_track(build::up_track(&spec))
                    .map_err(|e| ErrorBody::new(ErrorCode::Rejected, format!("add_track: {e}")))?;
                let i = usize::from(up.0);
                if entry.ups.len() <= i {
                    entry.ups.resize(i + 1, None);
                }
                entry.ups[i] = Some(spec.track);
                self.table.mark_dirty(slot);
                let ts = self.router.track_mut(spec.track, spec.kind);
                ts.kind = spec.kind;
                ts.publisher = Some((slot, up));
                ts.layers = u8::try_from(spec.layers.len()).unwrap_or(1);
                ts.source = Some(self.index as u16);
                done()
            }
            Command::RemoveTrack { track } => {
                let Some(ts) = self.router.tracks.get_mut(&track) else {
                    return not_found(track);
                };
                let Some((slot, up)) = ts.publisher.take() else {
                    return not_found(track);
                };
                ts.remote.clear();
                if let Some(entry) = self.table.get_mut(slot) {
                    entry.session.remove_up_track(up);
                    if let Some(t) = entry.ups.get_mut(usize::from(up.0)) {
                        *t = None;
                    }
                    self.table.mark_dirty(slot);
                }
                self.forget_track_if_unused(track);
                done()
            }
            Command::Unsubscribe { subscription } => {
                let Some((slot, down)) = self.router.subs.remove(&subscription) else {
                    return not_found(subscription);
                };
                self.remove_down(slot, down);
                done()
            }
            Command::SetMuted { track, muted } => {
                let Some(ts) = self.router.tracks.get_mut(&track) else {
                    return not_found(track);
                };
                ts.muted = muted;
                done()
            }
            Command::SetLayerCap {
                subscription,
                max_spatial,
                max_temporal,
            } => {
                let Some(&(slot, down)) = self.router.subs.get(&subscription) else {
                    return not_found(subscription);
                };
                if let Some(entry) = self.table.get_mut(slot) {
                    entry.session.set_layer_cap(down, max_spatial, max_temporal);
                    self.table.mark_dirty(slot);
                }
                done()
            }
            Command::UpdateData(u) => {
                let Some(slot) = self.table.slot_of(u.session) else {
                    return not_found(u.session);
                };
                let Some(d) = self.table.get_mut(slot).and_then(|e| e.data.as_deref_mut()) else {
                    return not_found(u.session);
                };
                d.can_publish = u.can_publish;
                d.input_to = u.input_to;
                done()
            }
            // Priority feeds the allocator through the DownTrack config at subscribe time; a
            // live change needs a Session setter (not in the API yet): recorded by control.
            Command::SetPriority { .. } => done(),
            other => Err(ErrorBody::new(
                ErrorCode::Internal,
                format!("command not for a worker: {other:?}"),
            )),
        }
    }

    fn remove_down(&mut self, slot: Slot, down: DownId) {
        let Some(entry) = self.table.get_mut(slot) else {
            return;
        };
        entry.session.remove_down_track(down);
        let track = entry
            .downs
            .get_mut(usize::from(down.0))
            .and_then(Option::take)
            .map(|(t, _)| t);
        self.table.mark_dirty(slot);
        let Some(track) = track else {
            return;
        };
        if let Some(ts) = self.router.tracks.get_mut(&track) {
            ts.subs.retain(|&(s, d)| !(s == slot && d == down));
        }
        self.forget_track_if_unused(track);
    }

    fn forget_track_if_unused(&mut self, track: TrackId) {
        if self
            .router
            .tracks
            .get(&track)
            .is_some_and(super::router::TrackState::unused)
        {
            self.router.tracks.remove(&track);
            self.router.forget_jobs(track);
        }
    }

    /// Removes the session in `slot` with everything on it; reports `SessionClosed` when
    /// `notify`.
    pub(super) fn close_slot(
        &mut self,
        now: Instant,
        slot: Slot,
        reason: CloseReason,
        notify: bool,
    ) {
        let Some(mut entry) = self.table.remove(slot) else {
            return;
        };
        self.leave_data(slot, entry.data.as_deref());
        let shard = self.index as u16;
        {
            let mut reg = self.registry.lock();
            if entry.ufrag.is_some() {
                for r in entry.remotes.iter().filter(|r| !r.is_tcp()) {
                    reg.remove_remote(r.addr, Some(shard));
                }
            }
            if let Some(u) = &entry.ufrag {
                reg.unroute_ufrag(u, shard);
            }
            reg.unplace(entry.id);
        }
        self.close_tcp_of(&entry.remotes);
        for track in entry.ups.iter().flatten() {
            if let Some(ts) = self.router.tracks.get_mut(track) {
                ts.publisher = None;
                ts.remote.clear();
            }
        }
        for (track, sub) in entry.downs.iter().flatten() {
            self.router.subs.remove(sub);
            if let Some(ts) = self.router.tracks.get_mut(track) {
                ts.subs.retain(|&(s, _)| s != slot);
            }
        }
        let touched: Vec<TrackId> = entry
            .ups
            .iter()
            .flatten()
            .chain(entry.downs.iter().flatten().map(|(t, _)| t))
            .copied()
            .collect();
        for track in touched {
            self.forget_track_if_unused(track);
        }
        // Keep its pacer counters in the worker's totals; before the drain below, whose far-future
        // instant would read as an hour of queueing.
        self.counters.pacer_retired.add(entry.session.pacer_stats());
        self.counters.congestion_retired.add(entry.session.stats());
        // Buffers still queued in the pacer belong to our pool: take them all back, whether or
        // not the session still has a destination (a disconnected session's queue used to leak
        // here). Bounded by the pool size (each handle is a distinct buffer).
        for _ in 0..self.io.pool.len() {
            match entry.session.take_queued() {
                Some(buf) => self.io.pool.give(buf),
                None => break,
            }
        }
        let _ = now;
        if notify {
            self.to_control
                .reliable(ShardMsg::Event(Notification::SessionClosed {
                    session: entry.id,
                    reason,
                }));
        }
    }
}
