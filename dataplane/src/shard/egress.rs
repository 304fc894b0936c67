//! The drain phase: what sessions have to send goes into the iteration's transmit queue, most
//! urgent first — every touched session's events, outputs, control packets (STUN, DTLS, RTCP)
//! and audio before anyone's queued video ([`Shard::drain_urgent`]); then paced video and
//! retransmissions, sessions taken round-robin, at most [`WINDOW`] packets each per turn
//! ([`Shard::drain_paced`]): no subscriber's whole burst goes before the next subscriber's
//! first packets, and each turn's packets to one destination form one GSO run.
//!
//! Backpressure: the queue holds one iteration's worth; when it is full, draining stops. Paced
//! media stays in its session's pacer, control packets in their session, and the sessions not
//! drained stay queued for the next iteration (nothing is dropped for a full socket).

use std::time::Instant;

use rtp_core::pacer::PacketClass;
use rtp_core::session::SessionEvent;

use crate::proto::{CloseReason, Notification, StreamState};

use super::counters::Drop;
use super::msg::ShardMsg;
use super::router::WINDOW;
use super::table::Slot;
use super::{min_opt, Shard, FAREWELL_DATAGRAMS};

impl Shard {
    /// Runs the timers of the sessions whose cached deadline passed. A session it runs is
    /// marked dirty, and draining it caches its next deadline (and folds it into `next_timer`).
    pub(super) fn run_timers(&mut self, now: Instant) {
        let mut due = std::mem::take(&mut self.draining);
        let next = self.table.due(now, &mut due);
        for &slot in &due {
            if let Some(entry) = self.table.get_mut(slot) {
                entry.session.handle_timeout(now);
            }
            self.table.mark_dirty(slot);
        }
        self.draining = due;
        self.next_timer = next;
    }

    /// Every session touched since the last drain: events, outputs (a Forwarder's keyframe
    /// request), control packets, audio. Each touched one then joins the round-robin queue for
    /// its paced media; one that only got audio copies does not (it has no paced media of
    /// this turn).
    pub(super) fn drain_urgent(&mut self, now: Instant) {
        let mut list = std::mem::take(&mut self.draining);
        self.table.take_dirty(&mut list);
        let mut i = 0;
        while i < list.len() {
            let slot = list[i];
            i += 1;
            self.drain_events(now, slot);
            // Outputs raised outside a datagram (forward, timers), bounded by the session's ring.
            while let Some(out) = self
                .table
                .get_mut(slot)
                .and_then(|e| e.session.poll_output())
            {
                self.act(now, now, slot, out, None);
            }
            if !self.drain_session(now, slot) {
                // The queue is full: this session and the rest wait for the next iteration.
                self.counters.send_stalls += 1;
                for &s in &list[i - 1..] {
                    self.table.mark_dirty(s);
                }
                break;
            }
            // `poll_transmit` drives DTLS, which reports a finished handshake only then: without
            // this, `DtlsConnected` would wait for the session's next packet or timer.
            self.drain_events(now, slot);
            // SCTP input surfaced while `poll_transmit` ran: relay its messages.
            self.pump_data(now, slot);
        }
        // Sessions that only got audio copies: their audio, nothing else to poll.
        self.table.take_audio(&mut list);
        for (i, &slot) in list.iter().enumerate() {
            let Some(entry) = self.table.get_mut(slot) else {
                continue;
            };
            let mut full = false;
            loop {
                if self.io.room() == 0 {
                    full = true;
                    break;
                }
                let Some((buf, len, dst)) = entry.session.poll_paced_upto(now, PacketClass::Audio)
                else {
                    break;
                };
                self.io.latency.dequeued(buf, now);
                self.io.push(buf, len, dst);
            }
            let deadline = entry.session.poll_timeout();
            self.cache_deadline(slot, deadline);
            // Not into the round-robin queue: a copy of video is queued there when it is made
            // (`router::forward_one`), and video held by the budget wakes by its deadline. A
            // visit per audio copy (poll, expiry, probes, the deadline again) cost the audio of
            // 525 subscribers ~10–25 % of its receive → kernel time (docs/performance.md).
            if full {
                self.counters.send_stalls += 1;
                for &s in &list[i..] {
                    self.table.mark_audio(s);
                }
                break;
            }
        }
        self.draining = list;
    }

    /// Caches a drained session's next deadline for the timer scan, and folds it into
    /// `next_timer`.
    fn cache_deadline(&mut self, slot: Slot, deadline: Option<Instant>) {
        self.table.set_deadline(slot, deadline);
        self.next_timer = min_opt(self.next_timer, deadline);
    }

    /// Control packets and audio of one session into the queue, its deadline re-read; false
    /// when the queue filled up first.
    fn drain_session(&mut self, now: Instant, slot: Slot) -> bool {
        let Some(entry) = self.table.get_mut(slot) else {
            return true;
        };
        let io = &mut self.io;
        let mut room = true;
        // Control packets: bounded by the session's queues; each needs a buffer.
        loop {
            if io.room() == 0 {
                room = false;
                break;
            }
            let Some(buf) = io.pool.take() else {
                self.counters.drop(Drop::PoolEmpty);
                break;
            };
            match entry
                .session
                .poll_transmit(now, &mut io.pool.get_mut(buf)[..])
            {
                Some((len, dst)) => io.push_control(buf, len, dst),
                None => {
                    io.pool.give(buf);
                    break;
                }
            }
        }
        // Audio: bounded by the pacer's audio queue.
        while room {
            if io.room() == 0 {
                room = false;
                break;
            }
            let Some((buf, len, dst)) = entry.session.poll_paced_upto(now, PacketClass::Audio)
            else {
                break;
            };
            io.latency.dequeued(buf, now);
            io.push(buf, len, dst);
        }
        // Copies that waited too long in the pacer: their buffers come home.
        while let Some(buf) = entry.session.poll_expired() {
            io.pool.give(buf);
            self.counters.drop(Drop::PacerExpired);
        }
        let deadline = entry.session.poll_timeout();
        self.cache_deadline(slot, deadline);
        self.table.mark_ready(slot);
        room
    }

    /// Paced media of the sessions in the round-robin queue, [`WINDOW`] packets per turn, until
    /// the queue is empty or the transmit queue full.
    pub(super) fn drain_paced(&mut self, now: Instant) {
        // Bounded: each turn either queues a transmit or takes a session out of the queue, and
        // the transmit queue's room is finite.
        while self.io.room() > 0 {
            let Some(slot) = self.table.pop_ready() else {
                return;
            };
            let Some(entry) = self.table.get_mut(slot) else {
                continue;
            };
            let mut sent = 0;
            while sent < WINDOW && self.io.room() > 0 {
                let Some((buf, len, dst)) = entry.session.poll_paced(now) else {
                    break;
                };
                self.io.latency.dequeued(buf, now);
                self.io.push(buf, len, dst);
                sent += 1;
            }
            while let Some(buf) = entry.session.poll_expired() {
                self.io.pool.give(buf);
                self.counters.drop(Drop::PacerExpired);
            }
            // Probe padding last: the lowest class, after the session's media of this turn.
            self.drain_probes(now, slot);
            let Some(entry) = self.table.get_mut(slot) else {
                continue;
            };
            let deadline = entry.session.poll_timeout();
            self.cache_deadline(slot, deadline);
            if sent == WINDOW || self.io.room() == 0 {
                // May have more: back of the queue.
                self.table.mark_ready(slot);
            }
        }
        self.counters.send_stalls += 1;
    }

    pub(super) fn drain_events(&mut self, now: Instant, slot: Slot) {
        let mut close = None;
        let mut rates = None;
        // Bounded by the session's event queue.
        while let Some(ev) = self
            .table
            .get_mut(slot)
            .and_then(|e| e.session.poll_event())
        {
            let Some(entry) = self.table.get(slot) else {
                break;
            };
            let session = entry.id;
            let track_of =
                |up: rtp_core::session::UpId| entry.ups.get(usize::from(up.0)).copied().flatten();
            let mut validated = None;
            let mut data_event = None;
            // Life-cycle events travel reliably; per-keyframe and pair-change notices may be
            // dropped (and counted) when the control thread lags.
            let (note, reliable) = match ev {
                SessionEvent::IceConnected { remote } => {
                    validated = Some(remote);
                    tracing::info!(%session, "ICE connected");
                    let n = Notification::IceConnected {
                        session,
                        remote: remote.addr,
                        transport: remote.proto.into(),
                    };
                    (Some(n), true)
                }
                SessionEvent::IceDisconnected => {
                    (Some(Notification::IceDisconnected { session }), true)
                }
                SessionEvent::SelectedPairChanged { remote } => {
                    let local = self.io.local_addr(remote.proto).unwrap_or(remote.addr);
                    tracing::debug!(%session, "selected pair changed");
                    let n = Notification::SelectedPairChanged {
                        session,
                        local,
                        remote: remote.addr,
                        transport: remote.proto.into(),
                    };
                    (Some(n), false)
                }
                SessionEvent::DtlsConnected { profile, version } => {
                    let n = Notification::DtlsConnected {
                        session,
                        profile: format!("{profile:?}"),
                        version: format!("{version:?}"),
                    };
                    (Some(n), true)
                }
                SessionEvent::DtlsFailed { reason } => {
                    // Once per session: it is closed right after.
                    tracing::warn!(%session, %reason, "DTLS handshake failed");
                    self.counters.dtls_failed += 1;
                    close = Some(CloseReason::DtlsFailed);
                    (Some(Notification::DtlsFailed { session, reason }), true)
                }
                SessionEvent::SsrcBound {
                    up,
                    layer,
                    ssrc,
                    rtx,
                    by,
                } => {
                    // At most once per stream slot of a track: bounded.
                    tracing::info!(%session, up = up.0, layer, ssrc, rtx, by = by.as_str(), "unsignaled SSRC bound");
                    self.counters.unsignaled_bound(by);
                    (None, false)
                }
                SessionEvent::FirstPacket { up, layer } => (
                    track_of(up).map(|track| Notification::FirstPacket { track, layer }),
                    true,
                ),
                SessionEvent::Keyframe { up, layer } => (
                    track_of(up).map(|track| Notification::Keyframe { track, layer }),
                    false,
                ),
                ev @ (SessionEvent::ChannelOpen { .. }
                | SessionEvent::ChannelClosed { .. }
                | SessionEvent::SctpConnected) => {
                    data_event = Some(ev);
                    (None, false)
                }
                SessionEvent::LayerRates { up, layers } => {
                    rates = track_of(up).map(|track| (track, layers));
                    (None, false)
                }
                SessionEvent::StreamState { down, paused } => {
                    let note = entry.downs.get(usize::from(down.0)).copied().flatten().map(
                        |(_, subscription)| Notification::StreamState {
                            session,
                            subscription,
                            state: if paused {
                                StreamState::Paused
                            } else {
                                StreamState::Active
                            },
                        },
                    );
                    (note, true)
                }
                SessionEvent::RelayShed {
                    down,
                    shed,
                    estimate_bps,
                } => {
                    let note = entry.downs.get(usize::from(down.0)).copied().flatten().map(
                        |(_, subscription)| {
                            tracing::info!(%session, %subscription, shed, estimate_bps, "relay shed");
                            Notification::RelayShed {
                                session,
                                subscription,
                                shed,
                                estimate_bps,
                            }
                        },
                    );
                    (note, true)
                }
                SessionEvent::TrunkSilent { silent_for } => {
                    // Once per silent episode of a trunk.
                    tracing::warn!(%session, ms = silent_for.as_millis() as u64, "trunk silent");
                    let silent_ms = silent_for.as_millis() as u64;
                    (Some(Notification::TrunkSilent { session, silent_ms }), true)
                }
                SessionEvent::TrunkResumed { silent_for } => {
                    tracing::info!(%session, ms = silent_for.as_millis() as u64, "trunk resumed");
                    let silent_ms = silent_for.as_millis() as u64;
                    (
                        Some(Notification::TrunkResumed { session, silent_ms }),
                        true,
                    )
                }
                _ => (None, false),
            };
            if let Some(remote) = validated {
                self.register_remote(slot, remote);
            }
            if let Some(ev) = data_event {
                self.on_data_event(slot, &ev);
            }
            if let Some(n) = note {
                if reliable {
                    self.to_control.reliable(ShardMsg::Event(n));
                } else if !self.to_control.lossy(ShardMsg::Event(n)) {
                    // Bounded and preallocated: never allocates on the packet path, never
                    // blocks it.
                    self.counters.drop(Drop::ControlBacklog);
                }
            }
            if let Some((track, layers)) = rates.take() {
                self.on_layer_rates(track, layers, true);
            }
        }
        if let Some(reason) = close {
            if reason == CloseReason::DtlsFailed {
                self.send_farewell(now, slot);
            }
            self.close_slot(now, slot, reason, true);
        }
    }

    /// The fatal alert a failed DTLS handshake queued (RFC 6347 §4.1.2.7: the peer must learn
    /// the handshake is over, not retransmit into silence), queued for sending before the
    /// session is closed. Bounded: an alert is one datagram, [`FAREWELL_DATAGRAMS`] at most,
    /// and only while the transmit queue has room.
    fn send_farewell(&mut self, now: Instant, slot: Slot) {
        let Some(entry) = self.table.get_mut(slot) else {
            return;
        };
        let io = &mut self.io;
        for _ in 0..FAREWELL_DATAGRAMS {
            if io.room() == 0 {
                return;
            }
            let Some(buf) = io.pool.take() else {
                self.counters.drop(Drop::PoolEmpty);
                return;
            };
            match entry
                .session
                .poll_transmit(now, &mut io.pool.get_mut(buf)[..])
            {
                Some((len, dst)) => io.push_control(buf, len, dst),
                None => {
                    io.pool.give(buf);
                    return;
                }
            }
        }
    }
}
