//! Incoming RTCP (RFC 3550 §6.4 reports, RFC 4585 §6.2.1 NACK and §6.3.1
//! PLI, RFC 5104 §4.3.1 FIR, REMB, transport-cc) and what it drives: RTT,
//! `Retransmit` / `KeyframeWanted` outputs, the bandwidth estimate, the
//! pacer rate and a new allocation (`congestion.rs`) when the estimate moved.

use std::time::Instant;

use crate::forward::MediaKind;
use crate::packet::rtcp::{ReportBlock, RtcpCompound, RtcpPacket};
use crate::time::ntp_compact;

use super::{DownId, Session, SessionError, SessionOutput, MIN_RESEND_INTERVAL};

impl<H: Copy> Session<H> {
    /// Act on every packet of a plain (already unprotected) RTCP compound.
    /// Packets before a malformed one are used; the rest is dropped.
    pub(super) fn handle_rtcp(&mut self, now: Instant, buf: &[u8]) -> Result<(), SessionError> {
        self.stats.rtcp_in += 1;
        let estimate_before = self.bwe.estimate_bps();
        let mut result = Ok(());
        // Receiver-report loss of our streams, averaged over the compound's blocks: one loss
        // observation per report, not one per stream.
        let mut loss = (0u32, 0u32);
        for p in RtcpCompound::new(buf) {
            let p = match p {
                Ok(p) => p,
                Err(e) => {
                    self.stats.drop_malformed_rtcp += 1;
                    result = Err(e.into());
                    break;
                }
            };
            match p {
                RtcpPacket::SenderReport(sr) => {
                    let ssrc = sr.ssrc();
                    for up in self.ups.iter_mut().flatten() {
                        if let Some((l, _)) = up.find(ssrc) {
                            up.layers[l].rx.on_sender_report(now, sr.ntp());
                        }
                    }
                    for b in sr.report_blocks() {
                        self.on_report_block(now, &b, &mut loss);
                    }
                }
                RtcpPacket::ReceiverReport(rr) => {
                    for b in rr.report_blocks() {
                        self.on_report_block(now, &b, &mut loss);
                    }
                }
                RtcpPacket::Nack(n) => {
                    let Some(d) = self.down_by_ssrc(n.media_ssrc) else {
                        continue;
                    };
                    let interval = self.stats.rtt.unwrap_or_default().max(MIN_RESEND_INTERVAL);
                    for seq in n.lost_seqs() {
                        if self.nack_budget.as_mut().is_some_and(|b| !b.take(now)) {
                            // The rest of this NACK is not even looked at.
                            self.stats.nacks_over_budget += 1;
                            break;
                        }
                        let Some(dt) = self.downs[d].as_mut() else {
                            break;
                        };
                        match dt.seqmap.lookup_for_resend(now, seq, interval) {
                            Some(e) => {
                                self.stats.nacks_in += 1;
                                self.push_output(SessionOutput::Retransmit {
                                    down: DownId(d as u16),
                                    seq,
                                    src_ext_seq: e.src_ext_seq,
                                    layer: e.layer,
                                });
                            }
                            None => self.stats.retransmit_suppressed += 1,
                        }
                    }
                }
                RtcpPacket::Pli(p) => self.on_keyframe_request(p.media_ssrc),
                RtcpPacket::Fir(f) => {
                    for (ssrc, _seq) in f.entries() {
                        self.on_keyframe_request(ssrc);
                    }
                }
                RtcpPacket::Remb(r) => self.bwe.on_remb(now, r.bitrate),
                RtcpPacket::TransportCc(t) => {
                    // A feedback we cannot decode is the peer's problem, not
                    // a reason to drop the rest of the compound.
                    let _ = self.bwe.on_transport_feedback(now, t.fci);
                }
                _ => {}
            }
        }
        if let Some(mean) = loss.0.checked_div(loss.1) {
            self.stats.fraction_lost = Some(mean.min(255) as u8);
            self.bwe.on_loss_report(now, mean.min(255) as u8);
        }
        let estimate = self.bwe.estimate_bps();
        self.stats.estimate_source = self.bwe.source();
        if estimate != estimate_before {
            self.stats.estimate_bps = estimate;
            self.update_pacing();
            self.allocate(now);
        }
        result
    }

    fn on_report_block(&mut self, now: Instant, b: &ReportBlock, loss: &mut (u32, u32)) {
        let Some(d) = self.down_by_ssrc(b.ssrc) else {
            return;
        };
        let ntp_now = ntp_compact(self.wall_ntp(now));
        let Some(dt) = self.downs[d].as_mut() else {
            return;
        };
        if let Some(rtt) = dt.tx.on_receiver_report(now, ntp_now, b.lsr, b.dlsr) {
            let rtt = dt.tx.smoothed_rtt().unwrap_or(rtt);
            self.stats.rtt = Some(rtt);
            for up in self.ups.iter_mut().flatten() {
                up.pli.set_rtt(rtt);
                for l in &mut up.layers {
                    l.nack.set_rtt(rtt);
                }
            }
        }
        loss.0 += u32::from(b.fraction_lost);
        loss.1 += 1;
    }

    fn on_keyframe_request(&mut self, media_ssrc: u32) {
        let Some(d) = self.down_by_ssrc(media_ssrc) else {
            return;
        };
        let Some(dt) = self.downs[d].as_ref() else {
            return;
        };
        // A shed relay sends nothing: a keyframe for it would be wasted (D109).
        if dt.cfg.kind == MediaKind::Audio || self.relay_shed(d) {
            return;
        }
        // A relay's layer is fixed; a subscription's is the one it forwards (or switches to).
        let layer = dt.cfg.relay_layer.unwrap_or_else(|| {
            dt.forwarder
                .current_layer()
                .unwrap_or(dt.forwarder.target_layer().0)
        });
        self.stats.keyframe_requests_in += 1;
        self.push_output(SessionOutput::KeyframeWanted {
            down: DownId(d as u16),
            layer,
        });
    }

    /// The DownTrack sending `ssrc` (media or RTX).
    pub(super) fn down_by_ssrc(&self, ssrc: u32) -> Option<usize> {
        self.downs.iter().position(|d| {
            d.as_ref()
                .is_some_and(|d| d.cfg.ssrc == ssrc || d.cfg.rtx_ssrc == Some(ssrc))
        })
    }
}
