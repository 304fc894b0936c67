//! Media towards the peer: `forward` (Forwarder decision, copy + rewrite,
//! SeqMap record, transport-wide seq, SRTP protect, pacer enqueue),
//! `retransmit` (RTX, RFC 4588 §4, or a plain resend), `poll_paced`, and
//! the client-side helpers that protect locally produced RTP/RTCP.

use std::time::Instant;

use crate::forward::{
    apply_rewrite, apply_rewrite_adding, Decision, DependencyDescriptor, DropReason, MediaKind,
    PacketIn, Rewrite,
};
use crate::nack::{rtx_encapsulate, SentEntry};
use crate::net::Remote;
use crate::pacer::{PacerError, PacketClass};
use crate::packet::{RtpView, RtpViewMut};

use super::config::ExtIds;
use super::down::DownTrack;
use super::{
    DownId, MediaMeta, Paced, Session, SessionError, SessionOutput, KEYFRAME_ASK_INTERVAL,
    SRTCP_OVERHEAD,
};

/// Copy + rewrite `pkt` into `out`. For a subscriber that negotiated transport-cc, a packet
/// whose publisher put no transport-wide sequence number in it gets an element for ours
/// (filled in by `finish_copy`): every packet we send it must be acknowledgeable.
fn copy_for(
    d: &DownTrack,
    pkt: &RtpView<'_>,
    rw: &Rewrite,
    out: &mut [u8],
) -> Result<usize, SessionError> {
    let fwd = ExtIds::FORWARDED.transport_cc;
    if let (Some(_), Some(id)) = (d.cfg.ext.transport_cc, fwd) {
        if pkt.extension(id).is_none() {
            if let Some(n) = apply_rewrite_adding(pkt, rw, id, &[0, 0], out)? {
                return Ok(n);
            }
        }
    }
    Ok(apply_rewrite(pkt, rw, out)?)
}

impl<H: Copy> Session<H> {
    /// Forward one published packet (decrypted RTP `pkt`, from any
    /// session/shard) to DownTrack `down`: decide, copy + rewrite into `out`,
    /// record in the SeqMap, SRTP-protect in place in `out` and queue
    /// `handle` in the pacer. `Ok(Some(len))` when queued, `Ok(None)` when
    /// the Forwarder dropped it (a `KeyframeWanted` may then be in
    /// `poll_output`).
    pub fn forward(
        &mut self,
        now: Instant,
        down: DownId,
        pkt: &RtpView<'_>,
        meta: MediaMeta,
        out: &mut [u8],
        handle: H,
    ) -> Result<Option<usize>, SessionError> {
        let (ext_seq, layer) = (meta.ext_seq, meta.layer);
        if !self.is_connected() {
            return Err(SessionError::NotConnected);
        }
        let di = usize::from(down.0);
        let shed = self.relay_shed(di);
        let d = self
            .downs
            .get_mut(di)
            .and_then(Option::as_mut)
            .ok_or(SessionError::NoSuchTrack)?;
        if let Some(relayed) = d.cfg.relay_layer {
            // A trunk relay: this layer passes unchanged but for its SSRC (sequence numbers
            // stay the source's, so the far end's NACKs name the source's packets). A shed
            // relay sends nothing (D109).
            if layer != relayed || d.muted || shed {
                self.stats.forward_skipped += 1;
                self.stats.forward_drops.count(if layer != relayed {
                    DropReason::NotCurrentLayer
                } else {
                    DropReason::Paused
                });
                return Ok(None);
            }
            let rw = Rewrite {
                ssrc: d.cfg.ssrc,
                seq: pkt.seq(),
                ts: pkt.ts(),
                marker: pkt.marker(),
                vp8: None,
            };
            return self.send_forwarded(now, di, pkt, meta, &rw, out, handle);
        }
        let mut input = PacketIn::from_rtp(layer, ext_seq, pkt);
        if d.cfg.e2ee {
            input.keyframe_hint = d
                .cfg
                .ext
                .dependency_descriptor
                .and_then(|id| pkt.extension(id))
                .and_then(|v| DependencyDescriptor::parse(v).ok())
                .map(|dd| dd.is_keyframe());
        }
        let rw = match d.forwarder.decide(now, &input) {
            Decision::Forward(rw) => rw,
            Decision::Drop(reason) => {
                self.stats.forward_skipped += 1;
                self.stats.forward_drops.count(reason);
                let waiting = matches!(
                    reason,
                    DropReason::WaitingForKeyframe | DropReason::NotCurrentLayer
                );
                if waiting && d.forwarder.needs_keyframe() && ask_due(d, now) {
                    d.last_keyframe_ask = Some(now);
                    let layer = d.forwarder.target_layer().0;
                    self.push_output(SessionOutput::KeyframeWanted { down, layer });
                }
                return Ok(None);
            }
        };
        self.send_forwarded(now, di, pkt, meta, &rw, out, handle)
    }

    /// Copy + rewrite `pkt` per `rw` into `out`, record it for NACKs, protect and queue it.
    #[allow(clippy::too_many_arguments)]
    fn send_forwarded(
        &mut self,
        now: Instant,
        di: usize,
        pkt: &RtpView<'_>,
        meta: MediaMeta,
        rw: &Rewrite,
        out: &mut [u8],
        handle: H,
    ) -> Result<Option<usize>, SessionError> {
        let (ext_seq, layer) = (meta.ext_seq, meta.layer);
        let Some(d) = self.downs[di].as_ref() else {
            return Err(SessionError::NoSuchTrack);
        };
        let tag_room = out.len().saturating_sub(SRTCP_OVERHEAD);
        let n = copy_for(d, pkt, rw, &mut out[..tag_room])?;
        let twcc = self.finish_copy(di, &mut out[..n])?;
        let Some(d) = self.downs[di].as_mut() else {
            return Err(SessionError::NoSuchTrack);
        };
        d.seqmap.record(
            rw.seq,
            SentEntry {
                src_ext_seq: ext_seq,
                ts_offset: rw.ts.wrapping_sub(pkt.ts()),
                layer,
            },
        );
        d.record_vp8(rw.seq, rw.vp8);
        d.tx.on_packet(now, rw.ts, pkt.payload().len());
        let class = match d.cfg.kind {
            MediaKind::Audio => PacketClass::Audio,
            MediaKind::Video => PacketClass::Video,
        };
        let len = self.protect(out, n)?;
        self.enqueue(now, class, handle, len, twcc)?;
        self.stats.forwarded += 1;
        Ok(Some(len))
    }

    /// Answer a `Retransmit`: `orig` is the source packet from the shard's
    /// history. Writes the RTX (or a plain resend when no RTX was
    /// negotiated) SRTP packet into `out`, queued as Retransmission with
    /// `handle`. `Ok(None)` when `seq` is no longer known or `orig` is not
    /// the packet it was made from.
    pub fn retransmit(
        &mut self,
        now: Instant,
        down: DownId,
        seq: u16,
        orig: &RtpView<'_>,
        out: &mut [u8],
        handle: H,
    ) -> Result<Option<usize>, SessionError> {
        if !self.is_connected() {
            return Err(SessionError::NotConnected);
        }
        let di = usize::from(down.0);
        let shed = self.relay_shed(di);
        let d = self
            .downs
            .get_mut(di)
            .and_then(Option::as_mut)
            .ok_or(SessionError::NoSuchTrack)?;
        if shed {
            // A shed relay repairs nothing either.
            self.stats.retransmit_suppressed += 1;
            return Ok(None);
        }
        let entry = match d.seqmap.lookup(seq) {
            Some(e) if e.src_ext_seq as u16 == orig.seq() => e,
            _ => {
                self.stats.retransmit_suppressed += 1;
                return Ok(None);
            }
        };
        // A packet of a layer the subscriber was switched away from is not worth repairing:
        // its decoder restarts at the new layer's keyframe, which the old layer's
        // retransmissions would only delay on a path that just narrowed.
        if d.forwarder
            .current_layer()
            .is_some_and(|c| c != entry.layer)
        {
            self.stats.retransmit_suppressed += 1;
            return Ok(None);
        }
        // Repair must not crowd out fresh media: on a congested path every loss is NACKed and
        // retransmissions (served first) would take the whole pacing rate, the video behind
        // them would expire in the pacer, and those gaps would be NACKed in turn. A
        // retransmission that would wait more than RTX_QUEUE_LIMIT is refused.
        let rtx = self
            .pacer
            .stats()
            .class(PacketClass::Retransmission)
            .queued_bytes;
        let rate = self.pacer.rate_bps().max(1);
        if rtx.saturating_mul(8_000) / rate > RTX_QUEUE_LIMIT.as_millis() as u64 {
            self.stats.retransmit_suppressed += 1;
            return Ok(None);
        }
        let rw = Rewrite {
            ssrc: d.cfg.ssrc,
            seq,
            ts: orig.ts().wrapping_add(entry.ts_offset),
            marker: orig.marker(),
            vp8: d.vp8_for(seq),
        };
        let tag_room = out.len().saturating_sub(SRTCP_OVERHEAD);
        let n = match (d.cfg.rtx_ssrc, d.cfg.rtx_payload_type) {
            (Some(rtx_ssrc), Some(rtx_pt)) => {
                let m = copy_for(d, orig, &rw, &mut self.scratch)?;
                set_pt(&mut self.scratch[..m], d.cfg.payload_type)?;
                let rtx_seq = d.rtx_seq;
                d.rtx_seq = d.rtx_seq.wrapping_add(1);
                rtx_encapsulate(
                    &self.scratch[..m],
                    rtx_ssrc,
                    rtx_pt,
                    rtx_seq,
                    &mut out[..tag_room],
                )?
            }
            _ => copy_for(d, orig, &rw, &mut out[..tag_room])?,
        };
        let twcc = self.finish_copy(di, &mut out[..n])?;
        let len = self.protect(out, n)?;
        self.enqueue(now, PacketClass::Retransmission, handle, len, twcc)?;
        self.stats.retransmitted += 1;
        Ok(Some(len))
    }

    /// Paced media ready to send now: the handle given to
    /// forward/retransmit, its length and destination (the ICE-selected
    /// address). Buffers stay owned by the caller.
    pub fn poll_paced(&mut self, now: Instant) -> Option<(H, usize, Remote)> {
        self.poll_paced_upto(now, PacketClass::Padding)
    }

    /// [`poll_paced`](Self::poll_paced) limited to the classes up to `lowest` in service
    /// order: `PacketClass::Audio` takes only audio, so a shard can send every session's audio
    /// before any session's queued video.
    pub fn poll_paced_upto(
        &mut self,
        now: Instant,
        lowest: PacketClass,
    ) -> Option<(H, usize, Remote)> {
        let dest = self.transport.remote_addr()?;
        let (p, class) = self.pacer.poll_transmit_upto(now, lowest)?;
        let len = usize::from(p.len);
        self.bwe
            .on_sent(now, p.twcc, len, class == PacketClass::Audio);
        self.stats.packets_out += 1;
        self.stats.bytes_out += len as u64;
        Some((p.handle, len, dest))
    }

    /// A paced item that expired in the pacer (queued too long) and will not be sent: its
    /// handle is the caller's again. Poll until `None` after `poll_paced`/`handle_timeout`.
    pub fn poll_expired(&mut self) -> Option<H> {
        self.pacer.poll_expired().map(|p| p.handle)
    }

    /// Every handle still queued in the pacer, whatever its budget, age or destination: for a
    /// caller closing the session (which must get its buffers back).
    pub fn take_queued(&mut self) -> Option<H> {
        self.pacer.pop_any().map(|p| p.handle)
    }

    /// Client side (test peer / load generator publishing to the SFU):
    /// `buf[..len]` plain RTP → SRTP in place (plain RTP mode: unchanged);
    /// returns the protected length and destination.
    pub fn protect_outgoing(
        &mut self,
        _now: Instant,
        buf: &mut [u8],
        len: usize,
    ) -> Result<(usize, Remote), SessionError> {
        let dest = self
            .transport
            .remote_addr()
            .ok_or(SessionError::NotConnected)?;
        if len > buf.len() {
            return Err(SessionError::BufferTooSmall);
        }
        Ok((self.protect(buf, len)?, dest))
    }

    /// Client side: `rtcp` (a plain RTCP compound, e.g. a NACK built with
    /// `packet::rtcp`) copied into `out` and SRTCP-protected; returns the
    /// datagram length and destination.
    pub fn send_rtcp(
        &mut self,
        _now: Instant,
        rtcp: &[u8],
        out: &mut [u8],
    ) -> Result<(usize, Remote), SessionError> {
        let dest = self
            .transport
            .remote_addr()
            .ok_or(SessionError::NotConnected)?;
        if !self.is_connected() {
            return Err(SessionError::NotConnected);
        }
        let dst = out
            .get_mut(..rtcp.len())
            .ok_or(SessionError::BufferTooSmall)?;
        dst.copy_from_slice(rtcp);
        let len = match self.tx_srtp.as_mut() {
            Some(ctx) => ctx.protect_rtcp(out, rtcp.len())?,
            None => rtcp.len(),
        };
        Ok((len, dest))
    }

    /// The per-subscriber parts of a copy: our payload type, the subscriber's
    /// header-extension ids and our transport-wide sequence number (written in
    /// place, same length).
    fn finish_copy(&mut self, di: usize, pkt: &mut [u8]) -> Result<Option<u16>, SessionError> {
        let Some(d) = self.downs[di].as_ref() else {
            return Err(SessionError::NoSuchTrack);
        };
        let is_rtx = d
            .cfg
            .rtx_ssrc
            .is_some_and(|s| pkt.get(8..12) == Some(&s.to_be_bytes()[..]));
        let pt = d.cfg.payload_type;
        let ext = d.cfg.ext;
        let twcc_id = ext.transport_cc;
        let mut m = RtpViewMut::parse(pkt)?;
        if !is_rtx {
            m.set_payload_type(pt);
        }
        m.remap_extensions(|id| ext.from_forwarded(id));
        let Some(id) = twcc_id else {
            return Ok(None);
        };
        let seq = self.twcc_seq;
        match m.set_extension_value(id, &seq.to_be_bytes()) {
            Ok(()) => {
                self.twcc_seq = seq.wrapping_add(1);
                Ok(Some(seq))
            }
            // The source carried no transport-cc element: nothing to rewrite.
            Err(_) => Ok(None),
        }
    }

    pub(super) fn protect(&mut self, buf: &mut [u8], len: usize) -> Result<usize, SessionError> {
        match self.tx_srtp.as_mut() {
            Some(ctx) => ctx.protect_rtp(buf, len).map_err(SessionError::from),
            None => Ok(len),
        }
    }

    fn enqueue(
        &mut self,
        now: Instant,
        class: PacketClass,
        handle: H,
        len: usize,
        twcc: Option<u16>,
    ) -> Result<(), SessionError> {
        let item = Paced {
            handle,
            len: u16::try_from(len).map_err(|_| SessionError::BufferTooSmall)?,
            twcc,
        };
        self.pacer
            .enqueue(now, class, len, item)
            .map_err(|_: PacerError| SessionError::PacerFull)
    }
}

/// Most retransmission queueing (at the pacing rate) before further retransmissions are refused.
const RTX_QUEUE_LIMIT: std::time::Duration = std::time::Duration::from_millis(200);

fn ask_due(d: &DownTrack, now: Instant) -> bool {
    d.last_keyframe_ask
        .is_none_or(|t| now.saturating_duration_since(t) >= KEYFRAME_ASK_INTERVAL)
}

fn set_pt(pkt: &mut [u8], pt: u8) -> Result<(), SessionError> {
    RtpViewMut::parse(pkt)?.set_payload_type(pt);
    Ok(())
}
