//! The shard's slow path: control commands from its inbox, claiming a pending session from the
//! shared registry, building and closing sessions. Allocation is fine here.

use std::time::Instant;

use super::msg::{ShardCmd, ShardMsg};
use super::{build, mark_dirty, Entry, Shard, TrackState, INBOX_BUDGET};
use crate::proto::{
    CloseReason, Command, CreateSession, ErrorBody, ErrorCode, Notification, ReplyOk, TransportMode,
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
            } => {
                let r = (|| {
                    let Some(&slot) = self.by_id.get(&spec.session) else {
                        return not_found(spec.session);
                    };
                    if self.subs.contains_key(&spec.subscription) {
                        return Err(ErrorBody::new(
                            ErrorCode::Rejected,
                            format!("{} exists", spec.subscription),
                        ));
                    }
                    let entry = self.sessions[slot as usize]
                        .as_mut()
                        .expect("slot in by_id");
                    let cfg = build::down_track(&spec, &track, entry.priority);
                    let down = entry.session.add_down_track(cfg).map_err(|e| {
                        ErrorBody::new(ErrorCode::Rejected, format!("subscribe: {e}"))
                    })?;
                    let i = usize::from(down.0);
                    if entry.downs.len() <= i {
                        entry.downs.resize(i + 1, None);
                    }
                    entry.downs[i] = Some((spec.track, spec.subscription));
                    // Drained this iteration: its timers (the new stream's reports) are re-read.
                    mark_dirty(&mut self.dirty, entry, slot);
                    let ts = self
                        .tracks
                        .entry(spec.track)
                        .or_insert_with(TrackState::new);
                    ts.subs.push((slot, down));
                    if ts.publisher.is_none() {
                        ts.source = source;
                    }
                    self.subs.insert(spec.subscription, (slot, down));
                    done()
                })();
                (req, r)
            }
            ShardCmd::Interest { track, shard, on } => {
                if usize::from(shard) != self.index {
                    let ts = self.tracks.entry(track).or_insert_with(TrackState::new);
                    ts.remote.retain(|&s| s != shard);
                    if on {
                        ts.remote.push(shard);
                    }
                    self.forget_track_if_unused(track);
                }
                (None, done())
            }
            ShardCmd::Source { track, shard } => {
                if let Some(ts) = self.tracks.get_mut(&track) {
                    ts.source = shard;
                }
                (None, done())
            }
            ShardCmd::Stats => {
                self.send_stats();
                (None, done())
            }
        };
        if let Some(req) = req {
            let _ = self.to_control.send(ShardMsg::Reply { req, result });
        } else if let Err(e) = result {
            tracing::warn!(shard = self.index, error = %e, "queued command failed");
        }
    }

    /// Builds a session here and enters it in the demux maps.
    fn create(&mut self, now: Instant, spec: CreateSession) -> Result<u32, ErrorBody> {
        if self.by_id.contains_key(&spec.session) {
            return Err(ErrorBody::new(
                ErrorCode::Rejected,
                format!("{} exists", spec.session),
            ));
        }
        let session = build::session(now, &spec, &self.cert, &self.dtls)?;
        let slot = match self.free_slots.pop() {
            Some(s) => s,
            None => {
                self.sessions.push(None);
                (self.sessions.len() - 1) as u32
            }
        };
        let mut entry = Entry {
            id: spec.session,
            session,
            ups: Vec::new(),
            downs: Vec::new(),
            addrs: Vec::new(),
            ufrag: None,
            priority: spec.quality.priority,
            dirty: false,
            deadline: None,
        };
        match spec.mode {
            TransportMode::Webrtc {} => {
                self.by_ufrag.insert(spec.ice.ufrag.clone(), slot);
                entry.ufrag = Some(spec.ice.ufrag.clone());
            }
            TransportMode::PlainRtp { remote, .. } => {
                self.by_addr.insert(remote, slot);
                entry.addrs.push(remote);
            }
        }
        self.by_id.insert(spec.session, slot);
        mark_dirty(&mut self.dirty, &mut entry, slot);
        self.sessions[slot as usize] = Some(entry);
        self.next_timer = Some(now);
        Ok(slot)
    }

    /// Claims the pending session with local ufrag `ufrag` (its first STUN binding landed here).
    pub(super) fn claim(&mut self, now: Instant, ufrag: &str) -> Option<u32> {
        let pending = {
            let mut reg = self.registry.lock();
            let id = reg.by_ufrag.remove(ufrag)?;
            let pending = reg.pending.remove(&id)?;
            reg.placed.insert(id, self.index as u16);
            pending
        };
        let id = pending.spec.session;
        #[allow(clippy::disallowed_methods)]
        let t0 = Instant::now();
        let created = self.create(now, pending.spec);
        #[allow(clippy::disallowed_methods)]
        let create_us = t0.elapsed().as_micros() as u64;
        let slot = match created {
            Ok(slot) => slot,
            Err(e) => {
                tracing::warn!(shard = self.index, session = %id, error = %e, "claim failed");
                self.registry.lock().placed.remove(&id);
                let _ = self
                    .to_control
                    .send(ShardMsg::Event(Notification::SessionClosed {
                        session: id,
                        reason: CloseReason::Internal,
                    }));
                return None;
            }
        };
        for cmd in pending.queued {
            self.command(now, cmd);
        }
        let _ = self.to_control.send(ShardMsg::Claimed {
            session: id,
            shard: self.index as u16,
        });
        tracing::debug!(shard = self.index, session = %id, create_us, "claimed session");
        Some(slot)
    }

    fn apply(&mut self, now: Instant, cmd: Command) -> Reply {
        match cmd {
            Command::CloseSession { session } => {
                let Some(&slot) = self.by_id.get(&session) else {
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
                let Some(&slot) = self.by_id.get(&session) else {
                    return not_found(session);
                };
                let Some(entry) = self.sessions[slot as usize].as_mut() else {
                    return not_found(session);
                };
                if let Some(fp) = remote_fingerprint {
                    let fp = build::fingerprint(&fp)?;
                    entry.session.set_remote_fingerprint(fp);
                    mark_dirty(&mut self.dirty, entry, slot);
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
                let Some(&slot) = self.by_id.get(&session) else {
                    return not_found(session);
                };
                let entry = self.sessions[slot as usize]
                    .as_mut()
                    .expect("slot in by_id");
                entry
                    .session
                    .ice_restart(&ufrag, &pwd, remote_ufrag.as_deref());
                if let Some(old) = entry.ufrag.replace(ufrag.clone()) {
                    self.by_ufrag.remove(&old);
                }
                self.by_ufrag.insert(ufrag, slot);
                mark_dirty(&mut self.dirty, entry, slot);
                done()
            }
            Command::AddTrack(spec) => {
                let Some(&slot) = self.by_id.get(&spec.session) else {
                    return not_found(spec.session);
                };
                if self
                    .tracks
                    .get(&spec.track)
                    .is_some_and(|t| t.publisher.is_some())
                {
                    return Err(ErrorBody::new(
                        ErrorCode::Rejected,
                        format!("{} exists", spec.track),
                    ));
                }
                let entry = self.sessions[slot as usize]
                    .as_mut()
                    .expect("slot in by_id");
                let up = entry
                    .session
                    .add_up_track(build::up_track(&spec))
                    .map_err(|e| ErrorBody::new(ErrorCode::Rejected, format!("add_track: {e}")))?;
                let i = usize::from(up.0);
                if entry.ups.len() <= i {
                    entry.ups.resize(i + 1, None);
                }
                entry.ups[i] = Some(spec.track);
                mark_dirty(&mut self.dirty, entry, slot);
                let ts = self
                    .tracks
                    .entry(spec.track)
                    .or_insert_with(TrackState::new);
                ts.publisher = Some((slot, up));
                ts.source = Some(self.index as u16);
                done()
            }
            Command::RemoveTrack { track } => {
                let Some(ts) = self.tracks.get_mut(&track) else {
                    return not_found(track);
                };
                let Some((slot, up)) = ts.publisher.take() else {
                    return not_found(track);
                };
                ts.remote.clear();
                if let Some(entry) = self.sessions[slot as usize].as_mut() {
                    entry.session.remove_up_track(up);
                    mark_dirty(&mut self.dirty, entry, slot);
                    if let Some(t) = entry.ups.get_mut(usize::from(up.0)) {
                        *t = None;
                    }
                }
                self.forget_track_if_unused(track);
                done()
            }
            Command::Unsubscribe { subscription } => {
                let Some((slot, down)) = self.subs.remove(&subscription) else {
                    return not_found(subscription);
                };
                self.remove_down(slot, down);
                done()
            }
            Command::SetMuted { track, muted } => {
                let Some(ts) = self.tracks.get_mut(&track) else {
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
                let Some(&(slot, down)) = self.subs.get(&subscription) else {
                    return not_found(subscription);
                };
                if let Some(entry) = self.sessions[slot as usize].as_mut() {
                    entry.session.set_layer_cap(down, max_spatial, max_temporal);
                    mark_dirty(&mut self.dirty, entry, slot);
                }
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

    fn remove_down(&mut self, slot: u32, down: rtp_core::session::DownId) {
        let Some(entry) = self.sessions[slot as usize].as_mut() else {
            return;
        };
        entry.session.remove_down_track(down);
        mark_dirty(&mut self.dirty, entry, slot);
        let Some((track, _)) = entry
            .downs
            .get_mut(usize::from(down.0))
            .and_then(Option::take)
        else {
            return;
        };
        if let Some(ts) = self.tracks.get_mut(&track) {
            ts.subs.retain(|&(s, d)| !(s == slot && d == down));
        }
        self.forget_track_if_unused(track);
    }

    fn forget_track_if_unused(&mut self, track: crate::proto::TrackId) {
        if self.tracks.get(&track).is_some_and(TrackState::unused) {
            self.tracks.remove(&track);
        }
    }

    /// Removes the session in `slot` with everything on it; reports `SessionClosed` when
    /// `notify`.
    pub(super) fn close_slot(
        &mut self,
        now: Instant,
        slot: u32,
        reason: CloseReason,
        notify: bool,
    ) {
        let Some(mut entry) = self.sessions[slot as usize].take() else {
            return;
        };
        self.free_slots.push(slot);
        self.by_id.remove(&entry.id);
        let webrtc = entry.ufrag.is_some();
        for addr in entry.addrs.drain(..) {
            if self.by_addr.get(&addr) == Some(&slot) {
                self.by_addr.remove(&addr);
            }
            if webrtc {
                let mut reg = self.registry.lock();
                if reg.remotes.get(&addr) == Some(&(self.index as u16)) {
                    reg.remotes.remove(&addr);
                }
            }
        }
        if let Some(u) = entry.ufrag.take() {
            self.by_ufrag.remove(&u);
        }
        for track in entry.ups.iter().flatten() {
            if let Some(ts) = self.tracks.get_mut(track) {
                ts.publisher = None;
                ts.remote.clear();
            }
        }
        for (track, sub) in entry.downs.iter().flatten() {
            self.subs.remove(sub);
            if let Some(ts) = self.tracks.get_mut(track) {
                ts.subs.retain(|&(s, _)| s != slot);
            }
        }
        let touched: Vec<_> = entry
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
        // Buffers still queued in the pacer belong to our pool: take them all back. Bounded by
        // the pool size (each handle is a distinct buffer).
        let far = now + std::time::Duration::from_secs(3600);
        for _ in 0..self.pool.len() {
            match entry.session.poll_paced(far) {
                Some((buf, _, _)) => self.pool.give(buf),
                None => break,
            }
        }
        self.registry.lock().placed.remove(&entry.id);
        if notify {
            let _ = self
                .to_control
                .send(ShardMsg::Event(Notification::SessionClosed {
                    session: entry.id,
                    reason,
                }));
        }
    }
}
