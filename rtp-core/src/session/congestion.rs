//! What the bandwidth estimate drives on a Session (docs/congestion.md): the per-subscriber
//! layer [`Allocator`](crate::bwe::Allocator) over its DownTracks, the probe padding
//! [`SendSideBwe`](crate::bwe::SendSideBwe) asks for, the measured per-layer rates of its
//! UpTracks (what every subscriber's allocator is fed), and a per-DownTrack report for stats.

use crate::net::Remote;
use std::time::Instant;

use crate::bwe::{Layer, TrackDemand, MAX_LAYERS};
use crate::forward::MediaKind;
use crate::packet::{write_rtp_header, RtpHeader};

use super::{DownId, Session, SessionEvent, UpId, ALLOCATE_INTERVAL};

/// Bytes of padding in a probe packet: RFC 3550's padding count is one octet.
const PROBE_PADDING: usize = 255;

/// One DownTrack as the allocator and the forwarder see it now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DownReport {
    /// Audio or video.
    pub kind: MediaKind,
    /// The allocator's layer (`None`: not allocated — audio, paused, nothing available).
    pub allocated_layer: Option<u8>,
    /// The layer being forwarded now (it follows the target at the next keyframe).
    pub current_layer: Option<u8>,
    /// The layer the forwarder switches to.
    pub target_layer: u8,
    /// Paused by the allocator (only with pausing allowed).
    pub bwe_paused: bool,
    /// Muted by the subscriber or the control plane.
    pub muted: bool,
    /// What each layer costs (measured on ingress once known).
    pub layers: [Layer; MAX_LAYERS],
}

impl<H: Copy> Session<H> {
    /// A DownTrack's allocation and forwarding state, for stats.
    pub fn down_report(&self, down: DownId) -> Option<DownReport> {
        let d = self.downs.get(usize::from(down.0))?.as_ref()?;
        Some(DownReport {
            kind: d.cfg.kind,
            allocated_layer: d.allocated,
            current_layer: d.forwarder.current_layer(),
            target_layer: d.forwarder.target_layer().0,
            bwe_paused: d.bwe_paused || self.relay_shed(usize::from(down.0)),
            muted: d.muted,
            layers: d.layers,
        })
    }

    /// Packets transport-cc feedback reported `(received, lost)` since the session started:
    /// the path's loss before any repair (a trunk's loss, D108).
    pub fn feedback_totals(&self) -> (u64, u64) {
        self.bwe.feedback_totals()
    }

    /// The estimate's REMB ceiling in force, the rate acknowledged by transport-cc feedback
    /// and what was sent over the last second (stats).
    pub fn bwe_rates(&mut self, now: Instant) -> (Option<u64>, Option<u64>, u64) {
        (
            self.bwe.remb_cap_bps(),
            self.bwe.acked_bps(),
            self.bwe.sent_bps(now),
        )
    }

    /// Run the allocator over the video DownTracks with the current estimate (audio is never
    /// throttled: it is a sliver of the budget and the first thing users notice; its measured
    /// cost comes off the budget) and apply the layers it picks. Also tells the estimator what
    /// more it could use (probing) and whether it can probe at all.
    pub(super) fn allocate(&mut self, now: Instant) {
        self.next_allocate = now + ALLOCATE_INTERVAL;
        if self.shedder.is_some() {
            self.shed_relays(now);
            return;
        }
        self.demands.clear();
        let mut audio = 0u64;
        let mut any_video = false;
        // One demand per slot, so the allocator's per-index state (upgrade hold) stays with
        // its DownTrack; empty and audio slots ask for nothing.
        for d in &self.downs {
            let demand = match d {
                Some(d) if d.cfg.kind == MediaKind::Video => {
                    any_video = true;
                    d.demand()
                }
                Some(d) => {
                    if !d.muted {
                        audio = audio.saturating_add(d.layers[0].bitrate_bps);
                    }
                    TrackDemand {
                        paused: true,
                        ..TrackDemand::default()
                    }
                }
                None => TrackDemand {
                    paused: true,
                    ..TrackDemand::default()
                },
            };
            self.demands.push(demand);
        }
        self.probe_down = self.pick_probe_down();
        let connected = self.is_connected();
        self.bwe.set_probing(connected && self.probe_down.is_some());
        if !any_video {
            self.bwe.set_desired(0);
            self.allocated_bps = audio;
            self.update_pacing();
            return;
        }
        let budget = self.bwe.estimate_bps().saturating_sub(audio);
        let video = self
            .allocator
            .allocate(now, budget, &self.demands, &mut self.alloc_out);
        self.allocated_bps = video.saturating_add(audio);
        self.update_pacing();
        self.bwe
            .set_desired(self.allocator.desired_bps().saturating_add(audio));
        if connected {
            self.bwe.handle_timeout(now);
        }
        let mut paused = 0;
        for i in 0..self.downs.len() {
            let bwe_paused = self.allocator.bwe_paused(i);
            let Some(d) = self.downs[i]
                .as_mut()
                .filter(|d| d.cfg.kind == MediaKind::Video)
            else {
                continue;
            };
            let was = d.bwe_paused;
            d.allocated = self.alloc_out[i];
            match self.alloc_out[i] {
                Some(layer) => {
                    d.forwarder.set_target_layer(layer.min(d.cap.0), d.cap.1);
                    d.bwe_paused = false;
                }
                // Nothing allocated: paused by the allocator (when allowed), or nothing
                // usable yet (the forwarder keeps its target and waits).
                None => d.bwe_paused = bwe_paused && !d.muted,
            }
            d.apply_pause();
            let now_paused = d.bwe_paused;
            if now_paused {
                paused += 1;
            }
            if now_paused != was {
                self.push_event(SessionEvent::StreamState {
                    down: DownId(i as u16),
                    paused: now_paused,
                });
            }
        }
        self.stats.bwe_paused_tracks = paused;
    }

    /// Probe padding goes on the RTX SSRC of a video DownTrack whose subscriber acknowledges
    /// packets with transport-cc: padding-only RTX is what receivers expect probes to look like
    /// (libwebrtc sends them so) and it touches no media sequence space.
    pub(super) fn pick_probe_down(&self) -> Option<usize> {
        let shed = |i: usize| self.shedder.as_ref().is_some_and(|s| s.is_shed(i));
        self.downs.iter().enumerate().position(|(i, d)| {
            !shed(i)
                && d.as_ref().is_some_and(|d| {
                    d.cfg.kind == MediaKind::Video
                        && d.cfg.ext.transport_cc.is_some()
                        && d.cfg.rtx_ssrc.is_some()
                        && d.cfg.rtx_payload_type.is_some()
                })
        })
    }

    /// Whether a probe packet is due at `now` (then call [`Session::poll_probe`] with a buffer).
    pub fn wants_probe(&self, now: Instant) -> bool {
        self.bwe.probe_due().is_some_and(|t| t <= now) && self.probe_down.is_some()
    }

    /// A probe packet due at `now`, written into `out` (a fresh buffer of at least 300 bytes):
    /// padding-only RTP on a video DownTrack's RTX SSRC carrying our transport-wide sequence
    /// number, SRTP-protected; returns its length and destination. Call after `poll_paced`
    /// until `None`: the estimator paces a cluster at its target rate.
    pub fn poll_probe(&mut self, now: Instant, out: &mut [u8]) -> Option<(usize, Remote)> {
        if self.bwe.probe_due()? > now || !self.is_connected() {
            return None;
        }
        let dest = self.transport.remote_addr()?;
        let Some(d) = self
            .probe_down
            .and_then(|i| self.downs.get_mut(i)?.as_mut())
        else {
            self.bwe.set_probing(false);
            return None;
        };
        let (Some(twcc_id), Some(ssrc), Some(pt)) = (
            d.cfg.ext.transport_cc,
            d.cfg.rtx_ssrc,
            d.cfg.rtx_payload_type,
        ) else {
            self.bwe.set_probing(false);
            return None;
        };
        let seq = d.rtx_seq;
        let ts = d.tx.last_rtp_ts().unwrap_or(0);
        let twcc = self.twcc_seq;
        let twcc_bytes = twcc.to_be_bytes();
        let room = out.len().saturating_sub(super::SRTCP_OVERHEAD);
        let h = write_rtp_header(
            &RtpHeader {
                pt,
                marker: false,
                seq,
                ts,
                ssrc,
                csrcs: &[],
                extensions: &[(twcc_id, &twcc_bytes)],
            },
            &mut out[..room],
        )
        .ok()?;
        let n = h + PROBE_PADDING;
        let pad = out.get_mut(h..n)?;
        pad.fill(0);
        pad[PROBE_PADDING - 1] = PROBE_PADDING as u8;
        out[0] |= 0x20;
        d.rtx_seq = seq.wrapping_add(1);
        self.twcc_seq = twcc.wrapping_add(1);
        let len = self.protect(out, n).ok()?;
        self.bwe.on_probe_sent(now, twcc, len);
        self.stats.probe_packets += 1;
        self.stats.probe_bytes += len as u64;
        self.stats.packets_out += 1;
        self.stats.bytes_out += len as u64;
        Some((len, dest))
    }

    /// `SessionEvent::LayerRates` for every UpTrack that sent within its rate window.
    pub(super) fn report_layer_rates(&mut self, now: Instant) {
        for i in 0..self.ups.len() {
            let Some(up) = self.ups[i].as_mut() else {
                continue;
            };
            let mut layers = [Layer::default(); MAX_LAYERS];
            let mut any = false;
            for (l, layer) in up.layers.iter_mut().enumerate().take(MAX_LAYERS) {
                let available = layer.rate.active(now);
                any |= available;
                layers[l] = Layer {
                    bitrate_bps: layer.rate.rate_bps(now).unwrap_or(0),
                    available,
                };
            }
            if any {
                self.push_event(SessionEvent::LayerRates {
                    up: UpId(i as u16),
                    layers,
                });
            }
        }
    }
}

impl<H: Copy> Session<H> {
    /// The pacer's rate: 2.5 × the estimate, and never below 1.5 × what is allocated (a
    /// trunk's: capped by its `max_bitrate_bps`).
    pub(super) fn update_pacing(&mut self) {
        let by_estimate = self
            .bwe
            .estimate_bps()
            .saturating_mul(super::PACING_FACTOR_X10)
            / 10;
        let by_allocation = self
            .allocated_bps
            .saturating_mul(super::ALLOCATED_PACING_X10)
            / 10;
        let rate = by_estimate.max(by_allocation);
        // A trunk's cap is its `max_bitrate_bps` (D108).
        let cap = match self.shedder {
            Some(_) => self.bwe.max_bps(),
            None => u64::MAX,
        };
        self.pacer.set_rate(rate.min(cap));
    }
}
