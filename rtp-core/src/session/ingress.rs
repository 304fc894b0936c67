//! `handle_datagram`: RFC 7983 demux, then STUN → ICE, DTLS → the endpoint
//! (only from ICE-validated addresses), SRTP → unprotect in place → the
//! UpTrack layer by SSRC (or learnt from the RID extension, RFC 8852, or for
//! an SSRC the offer did not name from the MID extension or a payload type
//! unique in the BUNDLE, RFC 8843 §9.2),
//! RTX → decapsulated into the original stream (RFC 4588 §4), SRTCP →
//! `feedback`. Every drop is counted by reason.

use std::time::Instant;

use crate::forward::{parse_payload, DependencyDescriptor, MediaKind};
use crate::nack::{rtx_decapsulate, RtxError};
use crate::net::Remote;
use crate::packet::{transport_cc_seq, RtpView, RtpViewMut};
use crate::srtp::SrtpError;
use crate::stun::{StunClass, StunMessage};
use crate::{demux, Demuxed};

use super::config::ExtIds;
use super::transport::Transport;
use super::up::StreamKind;
use super::{MediaMeta, Session, SessionError, SessionEvent, SessionOutput, SsrcBinding, UpId};

impl<H: Copy> Session<H> {
    /// Feed one received datagram (STUN, DTLS, SRTP, SRTCP or plain RTP/RTCP
    /// by RFC 7983 demux) from `src` (a UDP address, or a TCP connection's
    /// peer for one RFC 4571 frame the caller unwrapped). SRTP is unprotected
    /// IN PLACE in `buf`.
    /// Malformed or unauthenticated input returns `Err(reason)`, counted in
    /// `stats()`; it never panics and never disturbs the session.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        src: impl Into<Remote>,
        buf: &mut [u8],
    ) -> Result<SessionOutput, SessionError> {
        let src = src.into();
        self.last_now = self.last_now.max(now);
        self.stats.datagrams_in += 1;
        self.stats.bytes_in += buf.len() as u64;
        let r = match demux(buf) {
            Demuxed::Stun => self.on_stun(now, src, buf),
            Demuxed::Dtls => self.on_dtls(now, src, buf),
            Demuxed::Rtp => self.on_rtp(now, src, buf),
            Demuxed::Rtcp => self.on_rtcp(now, src, buf),
            Demuxed::Zrtp | Demuxed::TurnChannel | Demuxed::Unknown => {
                self.stats.drop_unsupported += 1;
                Err(SessionError::Unsupported)
            }
        };
        match r {
            Ok(SessionOutput::None) => Ok(self.outputs.pop().unwrap_or(SessionOutput::None)),
            other => other,
        }
    }

    fn on_stun(
        &mut self,
        now: Instant,
        src: Remote,
        buf: &[u8],
    ) -> Result<SessionOutput, SessionError> {
        let msg = match StunMessage::parse(buf) {
            Ok(m) => m,
            Err(e) => {
                self.stats.drop_stun += 1;
                return Err(e.into());
            }
        };
        self.stats.stun_in += 1;
        let r = match &mut self.transport {
            Transport::Lite { ice, .. } => {
                let slot = self.stun_next_slot;
                let out = &mut self.stun_out[slot];
                match ice.handle_stun(now, &msg, src, out) {
                    Ok(Some(len)) => {
                        // An error response (400/401/420/487) means the check was refused.
                        let refused = StunMessage::parse(&out[..len])
                            .is_ok_and(|m| m.class() == StunClass::Error);
                        if refused {
                            self.stats.drop_stun += 1;
                        }
                        if self.stun_pending.push((slot, len, src)) {
                            self.stun_next_slot = (slot + 1) % self.stun_out.len();
                        } else {
                            self.stats.queue_overflow += 1;
                        }
                        Ok(())
                    }
                    Ok(None) => Ok(()),
                    Err(e) => Err(e),
                }
            }
            Transport::Client { ice, .. } => ice.handle_stun(now, &msg, src),
            Transport::Plain { .. } | Transport::Trunk { .. } => {
                self.stats.drop_stun += 1;
                return Err(SessionError::WrongMode);
            }
        };
        self.pump();
        match r {
            Ok(()) => Ok(SessionOutput::None),
            Err(e) => {
                self.stats.drop_stun += 1;
                Err(e.into())
            }
        }
    }

    fn on_dtls(
        &mut self,
        now: Instant,
        src: Remote,
        buf: &[u8],
    ) -> Result<SessionOutput, SessionError> {
        if !self.transport.accepts(src) {
            self.stats.drop_unvalidated_source += 1;
            return Err(SessionError::UnvalidatedSource);
        }
        let Some(dtls) = self.transport.dtls_mut() else {
            self.stats.drop_dtls += 1;
            return Err(SessionError::WrongMode);
        };
        self.stats.dtls_in += 1;
        let r = dtls.handle_datagram(now, buf);
        self.pump();
        match r {
            Ok(()) => Ok(SessionOutput::None),
            Err(e) => {
                self.stats.drop_dtls += 1;
                Err(e.into())
            }
        }
    }

    /// Source check and SRTP/SRTCP unprotect shared by RTP and RTCP.
    fn admit(&mut self, src: Remote) -> Result<(), SessionError> {
        if !self.transport.accepts(src) {
            self.stats.drop_unvalidated_source += 1;
            return Err(SessionError::UnvalidatedSource);
        }
        if !self.is_connected() {
            self.stats.drop_not_connected += 1;
            return Err(SessionError::NotConnected);
        }
        Ok(())
    }

    pub(super) fn count_srtp(&mut self, e: SrtpError) -> SessionError {
        match e {
            SrtpError::AuthFailed => self.stats.drop_auth += 1,
            SrtpError::Replayed | SrtpError::TooOld => self.stats.drop_replay += 1,
            _ => self.stats.drop_srtp_other += 1,
        }
        e.into()
    }

    fn on_rtcp(
        &mut self,
        now: Instant,
        src: Remote,
        buf: &mut [u8],
    ) -> Result<SessionOutput, SessionError> {
        self.admit(src)?;
        let len = match self.rx_srtp.as_mut() {
            Some(ctx) => match ctx.unprotect_rtcp(buf) {
                Ok(n) => n,
                Err(e) => return Err(self.count_srtp(e)),
            },
            None => buf.len(),
        };
        self.heard(now);
        self.handle_rtcp(now, &buf[..len])?;
        Ok(SessionOutput::None)
    }

    fn on_rtp(
        &mut self,
        now: Instant,
        src: Remote,
        buf: &mut [u8],
    ) -> Result<SessionOutput, SessionError> {
        self.admit(src)?;
        // Find the stream before unprotecting? No: an unauthenticated
        // packet must not teach us an SSRC, so unprotect first.
        let mut len = match self.rx_srtp.as_mut() {
            Some(ctx) => match ctx.unprotect_rtp(buf) {
                Ok(n) => n,
                Err(e) => return Err(self.count_srtp(e)),
            },
            None => buf.len(),
        };
        self.heard(now);
        let (up, layer, kind) = {
            let view = match RtpView::parse(&buf[..len]) {
                Ok(v) => v,
                Err(e) => {
                    self.stats.drop_malformed_rtp += 1;
                    return Err(e.into());
                }
            };
            // Transport-wide feedback covers every authenticated packet, before routing: a
            // sender's padding probes (RTX without OSN, or on a layer's SSRC we have not learnt
            // yet) that went unacknowledged would count as lost and pull its estimate down.
            self.note_transport_seq(now, &view);
            match self.route(&view) {
                Some(r) => r,
                None => {
                    self.stats.drop_unknown_ssrc += 1;
                    return Err(SessionError::UnknownSsrc);
                }
            }
        };
        self.stats.rtp_in += 1;
        if kind == StreamKind::Rtx {
            match self.unpack_rtx(up, layer, &mut buf[..len]) {
                Ok(n) => len = n,
                // Padding-only RTX (no OSN) is a bandwidth probe, not a damaged packet:
                // Chromium sends them on the RTX SSRC while it ramps its estimate.
                Err(SessionError::Rtx(RtxError::MissingOsn)) => {
                    self.stats.rtx_probes_in += 1;
                    return Ok(SessionOutput::None);
                }
                Err(e) => return Err(e),
            }
        }
        self.on_media(now, up, layer, &mut buf[..len])
    }

    /// Record a packet's transport-wide sequence number for our feedback. BUNDLE gives one
    /// extension the same id in every section (RFC 8843 §9.2), so any UpTrack's id is the
    /// session's; a trunk's is fixed ([`ExtIds::TRUNK`]), so it counts the packets that arrive
    /// before the relay's ingest exists too — unrecorded, they were reported lost.
    fn note_transport_seq(&mut self, now: Instant, view: &RtpView<'_>) {
        let id = if self.shedder.is_some() {
            ExtIds::TRUNK.transport_cc
        } else {
            self.ups
                .iter()
                .flatten()
                .find_map(|u| u.cfg.ext.transport_cc)
        };
        if let Some(seq) = id
            .and_then(|id| view.extension(id))
            .and_then(transport_cc_seq)
        {
            self.twcc_rx.on_packet(now, seq);
        }
    }

    /// Which UpTrack layer (and stream) a packet belongs to.
    fn route(&mut self, view: &RtpView<'_>) -> Option<(usize, usize, StreamKind)> {
        let ssrc = view.ssrc();
        for (i, up) in self.ups.iter().enumerate() {
            if let Some((l, k)) = up.as_ref().and_then(|u| u.find(ssrc)) {
                return Some((i, l, k));
            }
        }
        // Simulcast without signalled SSRCs: learn from rid / repaired-rid.
        let mut learnt = None;
        for (i, up) in self.ups.iter_mut().enumerate() {
            let Some(up) = up.as_mut() else { continue };
            let ext = up.cfg.ext;
            if let Some(rid) = ext.rid.and_then(|id| view.extension(id)) {
                if let Some(l) = up.learn(ssrc, rid, StreamKind::Media) {
                    learnt = Some((i, l, StreamKind::Media));
                    break;
                }
            }
            if let Some(rid) = ext.repaired_rid.and_then(|id| view.extension(id)) {
                if let Some(l) = up.learn(ssrc, rid, StreamKind::Rtx) {
                    learnt = Some((i, l, StreamKind::Rtx));
                    break;
                }
            }
        }
        match learnt {
            Some((i, l, kind)) => {
                self.note_bound(i, l, ssrc, kind, SsrcBinding::Rid);
                learnt
            }
            None => self.bind_unsignaled(view),
        }
    }

    fn note_bound(
        &mut self,
        up: usize,
        layer: usize,
        ssrc: u32,
        kind: StreamKind,
        by: SsrcBinding,
    ) {
        self.stats.unsignaled_bound += 1;
        self.push_event(SessionEvent::SsrcBound {
            up: UpId(up as u16),
            layer: layer as u8,
            ssrc,
            rtx: kind == StreamKind::Rtx,
            by,
        });
    }

    /// An SSRC neither signalled nor named by a RID (RFC 8843 §9.2, the JSEP rules for
    /// unsignaled streams): the MID extension, when the packet carries one, names the track's
    /// m= section and decides alone; without it, the payload type binds when exactly one
    /// published track of the session uses it (media or RTX PT). Only the session's published
    /// sections can carry RTP from the client, so uniqueness among them is uniqueness in the
    /// BUNDLE for this purpose. Bounded: a binding fills an empty slot of a fixed layer table.
    fn bind_unsignaled(&mut self, view: &RtpView<'_>) -> Option<(usize, usize, StreamKind)> {
        let (ssrc, pt) = (view.ssrc(), view.payload_type());
        let mid_id = self.ups.iter().flatten().find_map(|u| u.cfg.ext.mid);
        let (i, by) = match mid_id.and_then(|id| view.extension(id)) {
            Some(mid) => {
                let i = self.ups.iter().position(|u| {
                    u.as_ref()
                        .and_then(|u| u.cfg.mid.as_deref())
                        .is_some_and(|m| m.as_bytes() == mid)
                })?;
                (i, SsrcBinding::Mid)
            }
            None => {
                let mut owners = self
                    .ups
                    .iter()
                    .enumerate()
                    .filter(|(_, u)| u.as_ref().is_some_and(|u| u.carries_pt(pt)));
                let (i, _) = owners.next()?;
                if owners.next().is_some() {
                    return None; // ambiguous: two sections share the payload type
                }
                (i, SsrcBinding::PayloadType)
            }
        };
        let kind = self.ups[i].as_mut()?.bind(ssrc, pt)?;
        self.note_bound(i, 0, ssrc, kind, by);
        Some((i, 0, kind))
    }

    /// Replace the RTX packet in `pkt` by the original it carries; returns its length.
    fn unpack_rtx(
        &mut self,
        up: usize,
        layer: usize,
        pkt: &mut [u8],
    ) -> Result<usize, SessionError> {
        let Some(t) = self.ups[up].as_ref() else {
            return Err(SessionError::NoSuchTrack);
        };
        let (Some(ssrc), pt) = (t.layers[layer].ssrc, t.cfg.payload_type) else {
            self.stats.drop_rtx += 1;
            return Err(SessionError::UnknownSsrc);
        };
        match rtx_decapsulate(pkt, ssrc, pt, &mut self.scratch) {
            Ok(n) => {
                pkt[..n].copy_from_slice(&self.scratch[..n]);
                self.stats.rtx_in += 1;
                Ok(n)
            }
            Err(RtxError::MissingOsn) => Err(RtxError::MissingOsn.into()),
            Err(e) => {
                self.stats.drop_rtx += 1;
                Err(e.into())
            }
        }
    }

    /// Bookkeeping of one (original or recovered) media packet.
    fn on_media(
        &mut self,
        now: Instant,
        up: usize,
        layer: usize,
        pkt: &mut [u8],
    ) -> Result<SessionOutput, SessionError> {
        let len = pkt.len();
        let mut packet = RtpViewMut::parse(pkt)?;
        let view = packet.view();
        let Some(t) = self.ups[up].as_mut() else {
            return Err(SessionError::NoSuchTrack);
        };
        if view.payload_type() != t.cfg.payload_type {
            self.stats.drop_unknown_pt += 1;
            return Err(SessionError::UnknownPayloadType);
        }
        let dd = t
            .cfg
            .ext
            .dependency_descriptor
            .and_then(|id| view.extension(id))
            .and_then(|d| DependencyDescriptor::parse(d).ok());
        let keyframe = match dd {
            Some(d) => d.is_keyframe(),
            // E2EE payloads are opaque: without a descriptor, no keyframe is known.
            None if t.cfg.e2ee => false,
            None => {
                t.cfg.kind == MediaKind::Video
                    && !view.is_padding_only()
                    && parse_payload(t.cfg.codec, view.payload()).is_ok_and(|i| i.keyframe)
            }
        };
        let clock_rate = t.cfg.clock_rate;
        let l = &mut t.layers[layer];
        if !view.is_padding_only() {
            l.rate.add(now, len);
        }
        let ext_seq = l.unwrap.unwrap(view.seq());
        l.nack.on_packet(now, ext_seq);
        l.rx.on_packet(now, ext_seq, view.ts(), len, clock_rate);
        // Received (so not NACKed), but past the layer's budget: not forwarded (D123).
        if l.budget.as_mut().is_some_and(|b| !b.take(now)) {
            self.stats.drop_over_budget += 1;
            return Err(SessionError::OverBudget);
        }
        // Every extension has been read: give the packet the ids forwarded copies carry.
        let ext = t.cfg.ext;
        packet.remap_extensions(|id| ext.forwarded_id(id));
        let first = !l.seen;
        l.seen = true;
        if keyframe {
            t.pli.on_keyframe(now, layer);
        }
        let (up_id, layer) = (UpId(up as u16), layer as u8);
        if first {
            self.push_event(SessionEvent::FirstPacket { up: up_id, layer });
        }
        if keyframe {
            self.push_event(SessionEvent::Keyframe { up: up_id, layer });
        }
        Ok(SessionOutput::Media {
            up: up_id,
            meta: MediaMeta {
                layer,
                ext_seq,
                len,
                keyframe,
            },
        })
    }
}
