//! The feed phase: finding a datagram's session and acting on what the session made of it.
//!
//! Lookup, fastest first: the remote address in this shard's table; a STUN binding's USERNAME
//! (its local ufrag) in this shard's table; otherwise the shared registry, asked only when its
//! lock-free filter says it may know the ufrag or address, within the shard's rate limit, and
//! through the route cache for addresses. A pending session is claimed only by a Binding request
//! whose MESSAGE-INTEGRITY verifies with its password; a ufrag or address another shard owns
//! sends the datagram there over the mesh. Nothing on this path allocates per datagram, and
//! every refusal is counted by reason.

use std::time::Instant;

use rtp_core::net::Protocol;
use rtp_core::packet::{demux, Demuxed};
use rtp_core::session::{MediaMeta, SessionOutput};
use rtp_core::stun::{StunClass, StunMessage, StunMethod};

use crate::proto::{CreateSession, TrackId};
use crate::sys::RecvMeta;

use super::counters::Drop;
use super::mesh::{RingDatagram, RingItem, RingPacket, MAX_RING_PACKET};
use super::registry::Claim;
use super::route::Route;
use super::router;
use super::table::{Remote, Slot};
use super::{Shard, RING_BUDGET};

/// Where a datagram from an address this shard does not know goes.
enum Found {
    Here(Slot),
    /// Handed to another shard, or dropped (counted).
    Gone,
}

impl Shard {
    /// One received datagram (`rx`: when it was reaped; for a handed-over datagram, `now`).
    pub(super) fn on_datagram(&mut self, now: Instant, rx: Instant, meta: RecvMeta, local: bool) {
        let slot = match self.table.slot_of_remote(meta.remote()) {
            Some(slot) => slot,
            None => match self.lookup_slow(now, meta, local) {
                Found::Here(slot) => slot,
                Found::Gone => {
                    if meta.proto == Protocol::Tcp {
                        self.refuse_tcp(meta);
                    }
                    return;
                }
            },
        };
        self.feed(now, rx, slot, meta);
    }

    /// A datagram from an address no local session holds.
    fn lookup_slow(&mut self, now: Instant, meta: RecvMeta, local: bool) -> Found {
        let bytes = self.io.bytes(&meta);
        if let Demuxed::Stun = demux(bytes) {
            let Ok(msg) = StunMessage::parse(bytes) else {
                self.counters.drop(Drop::Stun);
                return Found::Gone;
            };
            let Some((ufrag, _)) = msg.username_ufrags() else {
                self.counters.drop(Drop::UnknownSource);
                return Found::Gone;
            };
            let Ok(ufrag) = std::str::from_utf8(ufrag) else {
                self.counters.drop(Drop::UnknownUfrag);
                return Found::Gone;
            };
            if let Some(slot) = self.table.slot_of_ufrag(ufrag) {
                return Found::Here(slot);
            }
            if !self.registry.may_know_ufrag(ufrag.as_bytes()) {
                self.counters.drop(Drop::UnknownUfrag);
                return Found::Gone;
            }
            // Only a Binding request with MESSAGE-INTEGRITY (and a right FINGERPRINT) can claim
            // a session or be answered elsewhere: the rest never reaches the registry's lock.
            let request = msg.class() == StunClass::Request && msg.method() == StunMethod::Binding;
            if !request || msg.message_integrity().is_none() || !msg.verify_fingerprint() {
                self.counters.drop(Drop::StunUnauthenticated);
                return Found::Gone;
            }
            if !self.slow_path.allow(now) {
                self.counters.drop(Drop::SlowPathLimited);
                return Found::Gone;
            }
            self.counters.slow_path += 1;
            let claim = self
                .registry
                .lock()
                .claim(ufrag, self.index as u16, |spec| authentic(&msg, spec));
            return match claim {
                Claim::Claimed(p) => match self.claim(now, *p) {
                    Some(slot) => Found::Here(slot),
                    None => Found::Gone,
                },
                Claim::Refused => {
                    self.counters.drop(Drop::ClaimRefused);
                    Found::Gone
                }
                Claim::Elsewhere(s) if usize::from(s) != self.index && local => {
                    if meta.proto == Protocol::Tcp {
                        // The connection follows its session (not each frame).
                        self.hand_over_tcp(meta, usize::from(s));
                    } else {
                        self.redirect_datagram(meta, usize::from(s));
                    }
                    Found::Gone
                }
                Claim::Elsewhere(_) => {
                    self.counters.drop(Drop::Redirected);
                    Found::Gone
                }
                Claim::Unknown => {
                    self.counters.drop(Drop::UnknownUfrag);
                    Found::Gone
                }
            };
        }
        if meta.proto == Protocol::Tcp {
            // A TCP connection starts with a check (RFC 6544 §7.1): anything else is refused.
            self.counters.drop(Drop::UnknownSource);
            return Found::Gone;
        }
        if !local {
            // Handed over by the shard the registry named, and unknown here too.
            self.counters.drop(Drop::Redirected);
            return Found::Gone;
        }
        match self.route_of(now, meta.src) {
            Some(Route::Shard(s)) if usize::from(s) != self.index => {
                self.redirect_datagram(meta, usize::from(s));
            }
            Some(_) => self.counters.drop(Drop::UnknownSource),
            None => self.counters.drop(Drop::SlowPathLimited),
        }
        Found::Gone
    }

    /// Which shard owns `addr`: the route cache, else (filter and rate limit permitting) the
    /// registry. `None` when the rate limit refused the lookup.
    fn route_of(&mut self, now: Instant, addr: std::net::SocketAddr) -> Option<Route> {
        let generation = self.registry.generation();
        if let Some(r) = self.routes.get(addr, generation) {
            return Some(r);
        }
        let route = if !self.registry.may_know_remote(addr) {
            Route::Nobody
        } else if self.slow_path.allow(now) {
            self.counters.slow_path += 1;
            match self.registry.lock().remote(addr) {
                Some(s) => Route::Shard(s),
                None => Route::Nobody,
            }
        } else {
            return None;
        };
        self.routes.put(addr, route, generation);
        Some(route)
    }

    pub(super) fn redirect_datagram(&mut self, meta: RecvMeta, to: usize) {
        if meta.len > MAX_RING_PACKET {
            self.counters.drop(Drop::TooLong);
            return;
        }
        let mut d = RingDatagram {
            src: meta.src,
            len: meta.len as u16,
            data: [0; MAX_RING_PACKET],
        };
        d.data[..meta.len].copy_from_slice(self.io.bytes(&meta));
        if self.mesh.push(self.index, to, RingItem::Datagram(d)) {
            self.wake_peers[to] = true;
        } else {
            self.counters.drop(Drop::RingFull);
        }
    }

    /// Feeds one datagram to the session in `slot` and acts on everything it produced.
    fn feed(&mut self, now: Instant, rx: Instant, slot: Slot, meta: RecvMeta) {
        let Some(entry) = self.table.get_mut(slot) else {
            return;
        };
        let buf = &mut self.io.pool.get_mut(meta.buf)[meta.offset..meta.offset + meta.len];
        let stun = matches!(demux(buf), Demuxed::Stun);
        let first = entry.session.handle_datagram(now, meta.remote(), buf);
        self.table.mark_dirty(slot);
        let out = match first {
            Ok(out) => out,
            Err(e) => {
                self.counters.drop(Drop::of_session_error(&e));
                return;
            }
        };
        let remote = meta.remote();
        if self.table.slot_of_remote(remote) != Some(slot) {
            // Only an authenticated check makes an address this session's (review #4).
            if !self.register_remote(slot, remote) && stun {
                self.counters.drop(Drop::StunUnauthenticated);
            }
        }
        self.act(now, rx, slot, out, Some(meta));
        // Bounded by the session's fixed output ring.
        while let Some(out) = self
            .table
            .get_mut(slot)
            .and_then(|e| e.session.poll_output())
        {
            self.act(now, rx, slot, out, Some(meta));
        }
    }

    /// Enters `remote` for the session in `slot` if it validated it, and tells the other shards
    /// (WebRTC sessions: the control thread enters plain-RTP remotes). Slow path: once per new
    /// authenticated address.
    pub(super) fn register_remote(&mut self, slot: Slot, remote: Remote) -> bool {
        let webrtc = self.table.get(slot).is_some_and(|e| e.ufrag.is_some());
        let (registry, shard) = (&self.registry, self.index as u16);
        self.table.register_remote(slot, remote, |r, added| {
            // TCP remotes are connections this shard owns: nobody else needs to find them.
            if !webrtc || r.is_tcp() {
                return;
            }
            let addr = r.addr;
            let mut reg = registry.lock();
            if added {
                reg.set_remote(addr, shard);
            } else {
                reg.remove_remote(addr, Some(shard));
            }
        })
    }

    /// Acts on one session output (`meta`: the datagram that produced it, if any).
    pub(super) fn act(
        &mut self,
        now: Instant,
        rx: Instant,
        slot: Slot,
        out: SessionOutput,
        meta: Option<RecvMeta>,
    ) {
        match out {
            SessionOutput::None => {}
            SessionOutput::Media { up, meta: media } => {
                let Some(recv) = meta else { return };
                let Some(track) = self
                    .table
                    .get(slot)
                    .and_then(|e| e.ups.get(usize::from(up.0)).copied().flatten())
                else {
                    self.counters.drop(Drop::UnknownTrack);
                    return;
                };
                if media.len > MAX_RING_PACKET {
                    self.counters.drop(Drop::TooLong);
                    return;
                }
                self.publish(now, rx, track, media, recv);
            }
            SessionOutput::Retransmit {
                down,
                seq,
                src_ext_seq,
                layer,
            } => {
                let Some(track) = self.down_track(slot, down) else {
                    return;
                };
                let reserve = self.router.reserve();
                let Some(ts) = self.router.tracks.get_mut(&track) else {
                    return;
                };
                router::retransmit(
                    now,
                    reserve,
                    ts,
                    slot,
                    down,
                    seq,
                    (src_ext_seq, layer),
                    &mut self.table,
                    &mut self.io,
                    &mut self.counters,
                );
            }
            SessionOutput::KeyframeWanted { down, layer } => {
                if let Some(track) = self.down_track(slot, down) {
                    self.keyframe_wanted(now, track, layer);
                }
            }
        }
    }

    /// A packet of `track` published here, in `recv`'s buffer: copied to every other shard
    /// with subscribers (its receive instant in the ring header), stored in the history,
    /// fanned out.
    fn publish(
        &mut self,
        now: Instant,
        rx: Instant,
        track: TrackId,
        media: MediaMeta,
        recv: RecvMeta,
    ) {
        let (start, end) = (recv.offset, recv.offset + media.len);
        if let Some(ts) = self.router.tracks.get(&track) {
            if !ts.muted && !ts.remote.is_empty() {
                let mut p = RingPacket {
                    track,
                    meta: media,
                    rx,
                    data: [0; MAX_RING_PACKET],
                };
                p.data[..media.len].copy_from_slice(&self.io.pool.get(recv.buf)[start..end]);
                for &peer in &ts.remote {
                    let peer = usize::from(peer);
                    if self.mesh.push(self.index, peer, RingItem::Media(p)) {
                        self.counters.ring_out += 1;
                        self.wake_peers[peer] = true;
                    } else {
                        self.counters.drop(Drop::RingFull);
                    }
                }
            }
        }
        let pkt = &self.io.pool.get(recv.buf)[start..end];
        if self
            .router
            .store(now, track, media, pkt, &mut self.counters)
        {
            self.router.fan_out(
                now,
                rx,
                track,
                media,
                &mut self.table,
                &mut self.io,
                &mut self.counters,
            );
        }
    }

    fn down_track(&self, slot: Slot, down: rtp_core::session::DownId) -> Option<TrackId> {
        self.table
            .get(slot)
            .and_then(|e| e.downs.get(usize::from(down.0)).copied().flatten())
            .map(|(t, _)| t)
    }

    pub(super) fn keyframe_wanted(&mut self, now: Instant, track: TrackId, layer: u8) {
        let Some(ts) = self.router.tracks.get(&track) else {
            return;
        };
        if let Some((pub_slot, up)) = ts.publisher {
            if let Some(entry) = self.table.get_mut(pub_slot) {
                entry.session.request_keyframe(now, up, layer);
                self.table.mark_dirty(pub_slot);
            }
        } else if let Some(src) = ts.source.map(usize::from) {
            if src != self.index {
                let item = RingItem::KeyframeWanted { track, layer };
                if self.mesh.push(self.index, src, item) {
                    self.wake_peers[src] = true;
                } else {
                    self.counters.drop(Drop::RingFull);
                }
            }
        }
    }

    // ---- cross-shard rings --------------------------------------------------------------

    pub(super) fn drain_rings(&mut self, now: Instant) {
        for from in 0..self.mesh.shards() {
            if from == self.index {
                continue;
            }
            for taken in 0..=RING_BUDGET {
                if taken == RING_BUDGET {
                    self.counters.loop_overruns += 1;
                    // Come back without sleeping: there is more.
                    self.next_timer = Some(now);
                    break;
                }
                let Some(item) = self.mesh.pop(from, self.index) else {
                    break;
                };
                self.on_ring_item(now, item);
            }
        }
    }

    fn on_ring_item(&mut self, now: Instant, item: RingItem) {
        match item {
            RingItem::Media(p) => {
                self.counters.ring_in += 1;
                let len = p.meta.len.min(MAX_RING_PACKET);
                if self
                    .router
                    .store(now, p.track, p.meta, &p.data[..len], &mut self.counters)
                {
                    self.router.fan_out(
                        now,
                        p.rx,
                        p.track,
                        p.meta,
                        &mut self.table,
                        &mut self.io,
                        &mut self.counters,
                    );
                }
            }
            RingItem::KeyframeWanted { track, layer } => self.keyframe_wanted(now, track, layer),
            RingItem::LayerRates { track, layers } => self.on_layer_rates(track, layers, false),
            RingItem::Datagram(d) => {
                let Some(buf) = self.io.pool.take() else {
                    self.counters.drop(Drop::PoolEmpty);
                    return;
                };
                let len = usize::from(d.len);
                self.io.pool.get_mut(buf)[..len].copy_from_slice(&d.data[..len]);
                let meta = RecvMeta {
                    buf,
                    offset: 0,
                    len,
                    src: d.src,
                    ..RecvMeta::default()
                };
                self.on_datagram(now, now, meta, false);
                self.io.pool.give(buf);
            }
        }
    }
}

/// Whether `msg` is a Binding request that authenticates with `spec`'s ICE password (RFC 8489
/// §9.1.3 short-term credentials, FINGERPRINT first). Run under the registry lock, before a
/// pending session is claimed.
fn authentic(msg: &StunMessage<'_>, spec: &CreateSession) -> bool {
    msg.class() == StunClass::Request
        && msg.method() == StunMethod::Binding
        && msg.message_integrity().is_some()
        && msg.verify_fingerprint()
        && msg.verify_integrity(spec.ice.pwd.as_bytes())
}
