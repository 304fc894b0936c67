//! `poll_transmit`: everything the session sends that is not paced media.
//! In order: STUN responses (ICE-lite) or checks (client), DTLS flights
//! (only once ICE has a working address), then RTCP: PLI (RFC 4585 §6.3.1),
//! generic NACK (§6.2.1), transport-cc feedback, and the periodic reports
//! (RFC 3550 §6.4: an SR per sending DownTrack, report blocks for every
//! received layer). Feedback goes out alone (reduced-size RTCP, RFC 5506,
//! which WebRTC negotiates); reports as a compound. All SRTCP-protected
//! when the session is secure. Last, data channels' SCTP packets
//! (`data.rs`), one DTLS record each.

use std::time::Instant;

use crate::net::Remote;
use crate::packet::rtcp::{write_nack, write_pli, write_rr, write_sr, ReportBlock};

use super::transport::Transport;
use super::{Session, SRTCP_OVERHEAD};

/// Report blocks per RR/SR (the 5-bit count field allows 31).
const MAX_BLOCKS: usize = 31;

impl<H: Copy> Session<H> {
    /// Control-plane output written into `out` (at least the DTLS MTU,
    /// 1150 bytes): STUN, DTLS, RTCP. Returns its length and destination.
    pub fn poll_transmit(&mut self, now: Instant, out: &mut [u8]) -> Option<(usize, Remote)> {
        self.last_now = self.last_now.max(now);
        if let Some((slot, len, dest)) = self.stun_pending.pop() {
            let n = len.min(out.len());
            out[..n].copy_from_slice(&self.stun_out[slot][..n]);
            return Some((n, dest));
        }
        if let Transport::Client { ice, .. } = &mut self.transport {
            if let Some(t) = ice.poll_transmit(now, out) {
                return Some(t);
            }
        }
        if let Some(t) = self.poll_dtls(now, out) {
            return Some(t);
        }
        if !self.is_connected() {
            return None;
        }
        let dest = self.transport.remote_addr()?;
        if let Some(t) = self.poll_rtcp(now, out, dest) {
            return Some(t);
        }
        // Data channels last: media feedback never waits behind a burst of messages.
        self.poll_sctp(now, out, dest)
    }

    fn poll_rtcp(&mut self, now: Instant, out: &mut [u8], dest: Remote) -> Option<(usize, Remote)> {
        let room = out.len().checked_sub(SRTCP_OVERHEAD)?;
        let n = self.write_rtcp(now, &mut out[..room])?;
        let len = match self.tx_srtp.as_mut() {
            Some(ctx) => ctx.protect_rtcp(out, n).ok()?,
            None => n,
        };
        self.stats.rtcp_out += 1;
        Some((len, dest))
    }

    fn poll_dtls(&mut self, now: Instant, out: &mut [u8]) -> Option<(usize, Remote)> {
        // DTLS waits for ICE: the peer drops DTLS from unvalidated addresses,
        // so an earlier flight would only cost a retransmission timeout.
        let dest = self.transport.remote_addr()?;
        let dtls = self.transport.dtls_mut()?;
        let r = dtls.poll_transmit(now, out);
        self.pump();
        r.map(|n| (n, dest))
    }

    /// The next RTCP packet due, plain, into `out`.
    fn write_rtcp(&mut self, now: Instant, out: &mut [u8]) -> Option<usize> {
        let sender = self.local_ssrc;
        // Keyframe requests first: a frozen picture is the most visible fault.
        for up in self.ups.iter_mut().flatten() {
            for l in &mut up.layers {
                if !l.pli_due {
                    continue;
                }
                l.pli_due = false;
                let Some(ssrc) = l.ssrc else { continue };
                if let Ok(n) = write_pli(out, sender, ssrc) {
                    self.stats.keyframe_requests_out += 1;
                    return Some(n);
                }
            }
        }
        for up in self.ups.iter_mut().flatten() {
            for l in &mut up.layers {
                let Some(ssrc) = l.ssrc else { continue };
                let k = l.nack.poll_nacks(now, &mut self.nack_scratch);
                if k == 0 {
                    continue;
                }
                if let Ok(n) = write_nack(out, sender, ssrc, &self.nack_scratch[..k]) {
                    self.stats.nacks_out += k as u64;
                    return Some(n);
                }
            }
        }
        let media = self.first_up_ssrc().unwrap_or(0);
        if let Some(n) = self.twcc_rx.poll_feedback(now, sender, media, out) {
            return Some(n);
        }
        if now >= self.next_report {
            let n = self.write_report(now, out);
            if self.report_cursor == 0 {
                self.next_report = now + self.report_interval();
            }
            return n;
        }
        None
    }

    /// RR/SR compound: report blocks for the received layers go in the first
    /// packet; SRs of the DownTracks that sent something follow while they
    /// fit (the rest continue at the next call).
    fn write_report(&mut self, now: Instant, out: &mut [u8]) -> Option<usize> {
        let mut blocks = [ReportBlock::default(); MAX_BLOCKS];
        let mut nb = 0;
        if self.report_cursor == 0 {
            for up in self.ups.iter_mut().flatten() {
                for l in &mut up.layers {
                    if l.seen && l.ssrc.is_some() && nb < MAX_BLOCKS {
                        blocks[nb] = l.rx.report_block(now);
                        nb += 1;
                    }
                }
            }
        }
        let ntp = self.wall_ntp(now);
        let mut pos = 0;
        let mut wrote_sr = false;
        let start = self.report_cursor;
        self.report_cursor = 0;
        for i in start..self.downs.len() {
            let Some(d) = self.downs[i].as_ref() else {
                continue;
            };
            let Some(info) = d.tx.sender_report(now, ntp, d.cfg.clock_rate) else {
                continue;
            };
            let first = !wrote_sr;
            let b = if first { &blocks[..nb] } else { &[][..] };
            match write_sr(&mut out[pos..], d.cfg.ssrc, &info, b) {
                Ok(n) => {
                    pos += n;
                    wrote_sr = true;
                }
                Err(_) if wrote_sr => {
                    self.report_cursor = i;
                    break;
                }
                Err(_) => return None,
            }
        }
        if !wrote_sr && (nb > 0 || start == 0) {
            pos = write_rr(out, self.local_ssrc, &blocks[..nb]).ok()?;
        }
        (pos > 0).then_some(pos)
    }

    fn first_up_ssrc(&self) -> Option<u32> {
        self.ups
            .iter()
            .flatten()
            .flat_map(|u| u.layers.iter())
            .find_map(|l| l.ssrc)
    }

    /// Ask the publisher for a keyframe of UpTrack `up`'s `layer`: a PLI
    /// through the per-track throttle, sent by `poll_transmit`.
    pub fn request_keyframe(&mut self, now: Instant, up: crate::session::UpId, layer: u8) {
        let Some(t) = self.ups.get_mut(usize::from(up.0)).and_then(Option::as_mut) else {
            return;
        };
        let l = usize::from(layer);
        if l < t.layers.len() && t.pli.request(now, l) {
            t.layers[l].pli_due = true;
        }
    }
}
