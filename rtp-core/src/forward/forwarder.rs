//! The per-DownTrack forwarding decision: which simulcast layer and temporal
//! layers reach this subscriber, and the SSRC / sequence number / timestamp
//! (and VP8 picture id) each forwarded packet gets.
//!
//! Invariants towards the subscriber (RFC 3550 §5.1):
//! - one SSRC whatever the source layer;
//! - sequence numbers with no gap for packets dropped on purpose (other
//!   layers, temporal layers above target, padding), but a gap for every
//!   packet lost upstream, so the subscriber's NACKs still work;
//! - timestamps that keep increasing across layer switches and pauses;
//! - a layer switch or a resume only at a keyframe of the target layer, so
//!   the decoder never receives a frame referencing pictures it never saw.

use std::time::Instant;

use super::config::{ForwarderConfig, MediaKind};
use super::decision::{Decision, DropReason, PacketIn};

use super::codec::{parse_payload, Codec, CodecError, FrameInfo};
use super::munger::{Arrival, SeqMunger};
use super::rewrite::{Rewrite, Vp8Rewrite};

/// VP8 picture id / TL0PICIDX continuity across switches.
#[derive(Debug, Default)]
struct Vp8State {
    pic_offset: u16,
    tl0_offset: u8,
    last_pic: Option<u16>,
    last_tl0: Option<u8>,
}

/// The output state a forwarder hands to its successor on the same SSRC
/// ([`Forwarder::handoff`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Handoff {
    last_out_seq: u64,
    last_out_ts: u32,
    last_out_at: Option<Instant>,
    last_pic: Option<u16>,
    last_tl0: Option<u8>,
}

#[cfg(test)]
impl Handoff {
    /// A handoff after `seq` went out.
    pub(crate) fn after_seq(seq: u64) -> Self {
        Handoff {
            last_out_seq: seq,
            last_out_ts: 0,
            last_out_at: None,
            last_pic: None,
            last_tl0: None,
        }
    }
}

/// Forwarding state of one DownTrack. All storage is inline: no allocation per packet.
#[derive(Debug)]
pub struct Forwarder {
    cfg: ForwarderConfig,
    target_spatial: u8,
    target_temporal: u8,
    /// Simulcast layer being forwarded; None before the first keyframe.
    current: Option<u8>,
    current_temporal: u8,
    paused: bool,
    /// After a resume: forwarding restarts at the next keyframe of the target.
    resync: bool,
    started: bool,
    seq: SeqMunger,
    ts_offset: u32,
    last_out_ts: u32,
    last_out_at: Option<Instant>,
    last_out_marker: bool,
    /// Timestamp of the newest packet on the current layer (frame boundaries).
    last_in_ts: Option<u32>,
    /// Estimated ticks per frame, learnt from the current layer.
    frame_step: u32,
    vp8: Vp8State,
}

impl Forwarder {
    /// A forwarder targeting layer (0, 0) until told otherwise.
    pub fn new(cfg: ForwarderConfig) -> Self {
        let fps = match cfg.kind {
            MediaKind::Audio => 50,
            MediaKind::Video => 30,
        };
        Self {
            cfg,
            target_spatial: 0,
            target_temporal: 0,
            current: None,
            current_temporal: 0,
            paused: false,
            resync: false,
            started: false,
            seq: SeqMunger::new(),
            ts_offset: 0,
            last_out_ts: 0,
            last_out_at: None,
            last_out_marker: false,
            last_in_ts: None,
            frame_step: (cfg.clock_rate / fps).max(1),
            vp8: Vp8State::default(),
        }
    }

    /// Choose the simulcast layer and the highest temporal layer to forward.
    /// A spatial change takes effect at the next keyframe of `spatial`; until
    /// then the current layer keeps flowing.
    pub fn set_target_layer(&mut self, spatial: u8, temporal: u8) {
        self.target_spatial = spatial;
        self.target_temporal = temporal;
    }

    /// Where this forwarder's output stands, for a forwarder that takes its SSRC over
    /// ([`Self::continue_from`]); `None` before the first packet went out.
    pub fn handoff(&self) -> Option<Handoff> {
        self.started.then_some(Handoff {
            last_out_seq: self.seq.last_out(),
            last_out_ts: self.last_out_ts,
            last_out_at: self.last_out_at,
            last_pic: self.vp8.last_pic,
            last_tl0: self.vp8.last_tl0,
        })
    }

    /// Continues the output of a forwarder of the same SSRC that went (`h`): its first
    /// packet is numbered as a layer switch would number it (sequence numbers, timestamps
    /// and VP8 picture ids go on from `h`), so the subscriber's decoder and SRTP context see
    /// one stream.
    pub fn continue_from(&mut self, h: Handoff) {
        let next = h.last_out_seq.wrapping_add(1);
        self.seq.anchor(next, next);
        self.last_out_ts = h.last_out_ts;
        self.last_out_at = h.last_out_at;
        self.vp8.last_pic = h.last_pic;
        self.vp8.last_tl0 = h.last_tl0;
        self.started = true;
    }

    /// The (spatial, temporal) target.
    pub fn target_layer(&self) -> (u8, u8) {
        (self.target_spatial, self.target_temporal)
    }

    /// The simulcast layer being forwarded, if any.
    pub fn current_layer(&self) -> Option<u8> {
        self.current
    }

    /// Pause (mute) or resume. While paused everything is dropped; a resumed
    /// video track restarts at a keyframe.
    pub fn set_paused(&mut self, paused: bool) {
        if self.paused && !paused {
            self.resync = true;
        }
        self.paused = paused;
    }

    /// Whether paused.
    pub fn paused(&self) -> bool {
        self.paused
    }

    /// The caller should ask the publisher for a keyframe of the target layer
    /// (through a [`PliThrottle`](super::PliThrottle)).
    pub fn needs_keyframe(&self) -> bool {
        self.cfg.kind == MediaKind::Video
            && !self.paused
            && (self.resync || self.current != Some(self.target_spatial))
    }

    /// Decide what to do with one incoming packet of the track.
    pub fn decide(&mut self, now: Instant, pkt: &PacketIn<'_>) -> Decision {
        if self.paused {
            return Decision::Drop(DropReason::Paused);
        }
        let info = self.frame_info(pkt);
        let keyframe = !pkt.padding_only && info.is_ok_and(|i| i.keyframe);
        let waiting = self.resync || self.current != Some(self.target_spatial);
        if waiting && keyframe && pkt.layer == self.target_spatial {
            self.switch_to(now, pkt, info.ok());
        }
        match self.current {
            None => return Decision::Drop(DropReason::WaitingForKeyframe),
            Some(l) if l != pkt.layer => return Decision::Drop(DropReason::NotCurrentLayer),
            Some(_) if self.resync => return Decision::Drop(DropReason::WaitingForKeyframe),
            Some(_) => {}
        }
        let arrival = self.seq.classify(pkt.ext_seq);
        match arrival {
            Arrival::Duplicate => return Decision::Drop(DropReason::Duplicate),
            Arrival::TooLate => return Decision::Drop(DropReason::TooLate),
            Arrival::New | Arrival::Late(_) => {}
        }
        let new_frame = arrival == Arrival::New && !pkt.padding_only && self.track_frame(pkt.ts);
        let reason = if pkt.padding_only {
            (!self.cfg.forward_padding).then_some(DropReason::Padding)
        } else {
            match info {
                Err(_) => Some(DropReason::Malformed),
                Ok(i) => self.temporal_filter(&i, new_frame),
            }
        };
        if let Some(reason) = reason {
            self.seq.absorb(pkt.ext_seq, arrival);
            return Decision::Drop(reason);
        }
        let out_seq = self.seq.forward(pkt.ext_seq, arrival);
        let ts = pkt.ts.wrapping_add(self.ts_offset);
        if arrival == Arrival::New {
            self.last_out_ts = ts;
            self.last_out_at = Some(now);
            self.last_out_marker = pkt.marker;
        }
        Decision::Forward(Rewrite {
            ssrc: self.cfg.out_ssrc,
            seq: out_seq as u16,
            ts,
            marker: pkt.marker,
            vp8: info.ok().and_then(|i| self.vp8_rewrite(&i, arrival)),
        })
    }

    /// Reserve the next outgoing sequence number for a padding packet the SFU
    /// generates itself (bandwidth probing). Only between frames of a video
    /// track that is flowing; the packet reuses the last timestamp.
    pub fn padding(&mut self) -> Option<Rewrite> {
        let flowing = self.started && !self.paused && !self.resync && self.current.is_some();
        if self.cfg.kind != MediaKind::Video || !flowing || !self.last_out_marker {
            return None;
        }
        let seq = self.seq.insert() as u16;
        Some(Rewrite {
            ssrc: self.cfg.out_ssrc,
            seq,
            ts: self.last_out_ts,
            marker: false,
            vp8: None,
        })
    }

    fn frame_info(&self, pkt: &PacketIn<'_>) -> Result<FrameInfo, CodecError> {
        if self.cfg.kind == MediaKind::Audio {
            return Ok(FrameInfo {
                keyframe: true,
                begins_frame: true,
                ..FrameInfo::default()
            });
        }
        if self.cfg.e2ee {
            let key = pkt.keyframe_hint == Some(true);
            return Ok(FrameInfo {
                keyframe: key,
                begins_frame: key,
                temporal_id: pkt.temporal_hint,
                ..FrameInfo::default()
            });
        }
        if pkt.padding_only {
            return Ok(FrameInfo::default());
        }
        let mut info = parse_payload(self.cfg.codec, pkt.payload)?;
        if let Some(k) = pkt.keyframe_hint {
            info.keyframe = k;
        }
        if pkt.temporal_hint.is_some() {
            info.temporal_id = pkt.temporal_hint;
        }
        Ok(info)
    }

    /// Note the timestamp of a new packet on the current layer; true when it
    /// starts a new frame. Learns the frame step from consecutive frames.
    fn track_frame(&mut self, ts: u32) -> bool {
        let new_frame = match self.last_in_ts {
            None => true,
            Some(prev) if prev == ts => false,
            Some(prev) => {
                let step = ts.wrapping_sub(prev);
                if step < self.cfg.clock_rate {
                    self.frame_step = step;
                }
                true
            }
        };
        self.last_in_ts = Some(ts);
        new_frame
    }

    /// Temporal layer choice, changed only at frame starts so a frame is either
    /// forwarded whole or dropped whole.
    fn temporal_filter(&mut self, info: &FrameInfo, new_frame: bool) -> Option<DropReason> {
        let tid = info.temporal_id?;
        if new_frame {
            if self.target_temporal < self.current_temporal {
                self.current_temporal = self.target_temporal;
            } else if tid > self.current_temporal
                && tid <= self.target_temporal
                && (info.layer_sync || info.keyframe)
            {
                // A switching-up point: this frame only references layers we forwarded.
                self.current_temporal = tid;
            }
        }
        (tid > self.current_temporal).then_some(DropReason::TemporalLayer)
    }

    /// Start forwarding `pkt.layer` from this keyframe packet on.
    fn switch_to(&mut self, now: Instant, pkt: &PacketIn<'_>, info: Option<FrameInfo>) {
        if self.started {
            let out = self.seq.last_out().wrapping_add(1);
            self.seq.anchor(pkt.ext_seq, out);
            let elapsed = self
                .last_out_at
                .map_or(0, |t| crate::time::micros_between(t, now));
            let ticks = elapsed.saturating_mul(u64::from(self.cfg.clock_rate)) / 1_000_000;
            // At least one frame, so the new picture never shares or precedes the
            // last one's timestamp; at most half the ts space, so it reads as "later".
            let delta = ticks
                .max(u64::from(self.frame_step))
                .min(u64::from(u32::MAX / 2)) as u32;
            self.ts_offset = self.last_out_ts.wrapping_add(delta).wrapping_sub(pkt.ts);
        } else {
            // The first packet keeps its own numbers.
            self.seq.anchor(pkt.ext_seq, pkt.ext_seq);
            self.ts_offset = 0;
            self.started = true;
        }
        if let Some(i) = info {
            let v = &mut self.vp8;
            v.pic_offset = match (v.last_pic, i.picture_id) {
                (Some(last), Some(p)) => last.wrapping_add(1).wrapping_sub(p),
                _ => 0,
            };
            v.tl0_offset = match (v.last_tl0, i.tl0picidx) {
                (Some(last), Some(t)) => last.wrapping_add(1).wrapping_sub(t),
                _ => 0,
            };
        }
        self.current = Some(pkt.layer);
        self.current_temporal = self.target_temporal;
        self.resync = false;
        self.last_in_ts = None;
    }

    fn vp8_rewrite(&mut self, info: &FrameInfo, arrival: Arrival) -> Option<Vp8Rewrite> {
        if self.cfg.codec != Codec::Vp8 || self.cfg.e2ee {
            return None;
        }
        let v = &mut self.vp8;
        let pic = info.picture_id.map(|p| p.wrapping_add(v.pic_offset));
        let tl0 = info.tl0picidx.map(|t| t.wrapping_add(v.tl0_offset));
        if arrival == Arrival::New {
            v.last_pic = pic.or(v.last_pic);
            v.last_tl0 = tl0.or(v.last_tl0);
        }
        if (v.pic_offset, v.tl0_offset) == (0, 0) || (pic.is_none() && tl0.is_none()) {
            return None;
        }
        Some(Vp8Rewrite {
            picture_id: pic.unwrap_or(0),
            tl0picidx: tl0.unwrap_or(0),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[allow(clippy::disallowed_methods)] // tests need some base instant
    fn t0() -> Instant {
        Instant::now()
    }

    /// VP8 descriptor with 15-bit picture id, TL0PICIDX and TID, then a frame tag.
    fn vp8(start: bool, key: bool, pid: u16, tl0: u8, tid: u8, sync: bool) -> Vec<u8> {
        let b0 = 0x80 | if start { 0x10 } else { 0 };
        let t = (tid << 6) | if sync { 0x20 } else { 0 };
        let tag = if key { 0x00 } else { 0x01 };
        vec![b0, 0xE0, 0x80 | (pid >> 8) as u8, pid as u8, tl0, t, tag]
    }

    fn pkt(layer: u8, seq: u64, ts: u32, payload: &[u8]) -> PacketIn<'_> {
        PacketIn {
            layer,
            ext_seq: seq,
            ts,
            marker: false,
            padding_only: false,
            payload,
            keyframe_hint: None,
            temporal_hint: None,
        }
    }

    fn fwd(d: Decision) -> Rewrite {
        match d {
            Decision::Forward(rw) => rw,
            Decision::Drop(r) => panic!("dropped: {r:?}"),
        }
    }

    fn dropped(d: Decision) -> DropReason {
        match d {
            Decision::Drop(r) => r,
            Decision::Forward(rw) => panic!("forwarded: {rw:?}"),
        }
    }

    #[test]
    fn starts_at_keyframe_then_keeps_numbers() {
        let t = t0();
        let mut f = Forwarder::new(ForwarderConfig::video(7, Codec::Vp8));
        let delta = vp8(true, false, 1, 0, 0, false);
        let key = vp8(true, true, 2, 0, 0, false);
        assert!(f.needs_keyframe());
        assert_eq!(
            dropped(f.decide(t, &pkt(0, 10, 100, &delta))),
            DropReason::WaitingForKeyframe
        );
        let rw = fwd(f.decide(t, &pkt(0, 11, 200, &key)));
        assert_eq!((rw.ssrc, rw.seq, rw.ts, rw.vp8), (7, 11, 200, None));
        assert!(!f.needs_keyframe());
        assert_eq!(fwd(f.decide(t, &pkt(0, 12, 200, &delta))).seq, 12);
        assert_eq!(
            dropped(f.decide(t, &pkt(0, 12, 200, &delta))),
            DropReason::Duplicate
        );
        assert_eq!(
            dropped(f.decide(t, &pkt(1, 5, 9, &key))),
            DropReason::NotCurrentLayer
        );
    }

    #[test]
    fn a_successor_on_the_same_ssrc_continues_the_numbering() {
        let t = t0();
        let mut f = Forwarder::new(ForwarderConfig::video(7, Codec::Vp8));
        assert_eq!(f.handoff(), None, "nothing went out yet");
        f.set_target_layer(0, 0);
        let key = vp8(true, true, 1, 0, 0, false);
        assert_eq!(fwd(f.decide(t, &pkt(0, 900, 90_000, &key))).seq, 900);
        assert_eq!(fwd(f.decide(t, &pkt(0, 901, 93_000, &key))).seq, 901);
        // Another source (a lower layer's relay, numbered far below) on a new forwarder.
        let mut g = Forwarder::new(ForwarderConfig::video(7, Codec::Vp8));
        g.set_target_layer(0, 0);
        g.continue_from(f.handoff().expect("handoff"));
        let first = fwd(g.decide(t, &pkt(0, 200, 5_000, &key)));
        assert_eq!(first.seq, 902, "the sequence numbers go on");
        assert!(first.ts.wrapping_sub(93_000) < u32::MAX / 2 && first.ts != 93_000);
        assert_eq!(fwd(g.decide(t, &pkt(0, 201, 8_000, &key))).seq, 903);
    }

    #[test]
    fn temporal_drops_hidden_losses_kept() {
        let t = t0();
        let mut f = Forwarder::new(ForwarderConfig::video(7, Codec::Vp8));
        f.set_target_layer(0, 0);
        let key = vp8(true, true, 1, 0, 0, false);
        let tl1 = vp8(true, false, 2, 0, 1, true);
        let tl0 = vp8(true, false, 3, 1, 0, false);
        assert_eq!(fwd(f.decide(t, &pkt(0, 100, 0, &key))).seq, 100);
        assert_eq!(
            dropped(f.decide(t, &pkt(0, 101, 3000, &tl1))),
            DropReason::TemporalLayer
        );
        assert_eq!(fwd(f.decide(t, &pkt(0, 102, 6000, &tl0))).seq, 101);
        // 103 lost upstream: the gap stays visible.
        assert_eq!(fwd(f.decide(t, &pkt(0, 104, 9000, &tl0))).seq, 103);
        // Raise the temporal target: takes effect at a sync frame of TID 1.
        f.set_target_layer(0, 1);
        assert_eq!(fwd(f.decide(t, &pkt(0, 105, 12000, &tl1))).seq, 104);
        // Lower it again: the next frame start of TID 1 is dropped.
        f.set_target_layer(0, 0);
        assert_eq!(
            dropped(f.decide(t, &pkt(0, 106, 15000, &tl1))),
            DropReason::TemporalLayer
        );
        assert_eq!(fwd(f.decide(t, &pkt(0, 107, 18000, &tl0))).seq, 105);
    }

    #[test]
    fn padding_absorbed_and_generated() {
        let t = t0();
        let mut f = Forwarder::new(ForwarderConfig::video(7, Codec::Vp8));
        let key = vp8(true, true, 1, 0, 0, false);
        let mut first = pkt(0, 50, 0, &key);
        first.marker = true;
        assert_eq!(fwd(f.decide(t, &first)).seq, 50);
        let mut pad = pkt(0, 51, 0, &[]);
        pad.padding_only = true;
        assert_eq!(dropped(f.decide(t, &pad)), DropReason::Padding);
        let p = f.padding().unwrap();
        assert_eq!((p.seq, p.ts, p.marker), (51, 0, false));
        let next = vp8(true, false, 2, 0, 0, false);
        assert_eq!(fwd(f.decide(t, &pkt(0, 52, 3000, &next))).seq, 52);
        assert!(f.padding().is_none(), "not between frames");
    }

    #[test]
    fn pause_resume_waits_for_keyframe_and_keeps_time_moving() {
        let t = t0();
        let mut f = Forwarder::new(ForwarderConfig::video(7, Codec::Vp8));
        let key = vp8(true, true, 1, 0, 0, false);
        let delta = vp8(true, false, 2, 0, 0, false);
        assert_eq!(fwd(f.decide(t, &pkt(0, 1, 1000, &key))).ts, 1000);
        f.set_paused(true);
        assert!(!f.needs_keyframe());
        assert_eq!(
            dropped(f.decide(t, &pkt(0, 2, 4000, &delta))),
            DropReason::Paused
        );
        f.set_paused(false);
        assert!(f.needs_keyframe());
        let later = t + Duration::from_secs(2);
        assert_eq!(
            dropped(f.decide(later, &pkt(0, 3, 7000, &delta))),
            DropReason::WaitingForKeyframe
        );
        let rw = fwd(f.decide(later, &pkt(0, 4, 10000, &key)));
        assert_eq!(rw.seq, 2, "contiguous after the pause");
        assert_eq!(rw.ts, 1000 + 180_000, "two seconds of 90 kHz later");
        assert_eq!(
            rw.vp8,
            Some(Vp8Rewrite {
                picture_id: 2,
                tl0picidx: 1
            })
        );
    }

    #[test]
    fn e2ee_uses_hints_only() {
        let t = t0();
        let mut cfg = ForwarderConfig::video(7, Codec::Vp8);
        cfg.e2ee = true;
        let mut f = Forwarder::new(cfg);
        // Ciphertext that would parse as a VP8 keyframe must not count.
        let looks_key = vp8(true, true, 1, 0, 0, false);
        assert_eq!(
            dropped(f.decide(t, &pkt(0, 1, 0, &looks_key))),
            DropReason::WaitingForKeyframe
        );
        let mut p = pkt(0, 2, 0, &[0xFF]);
        p.keyframe_hint = Some(true);
        let rw = fwd(f.decide(t, &p));
        assert_eq!((rw.seq, rw.vp8), (2, None));
        let mut p = pkt(0, 3, 3000, &[0xFF]);
        p.temporal_hint = Some(1);
        assert_eq!(dropped(f.decide(t, &p)), DropReason::TemporalLayer);
    }

    #[test]
    fn audio_flows_immediately_and_resumes_without_keyframe() {
        let t = t0();
        let mut f = Forwarder::new(ForwarderConfig::audio(9));
        assert!(!f.needs_keyframe());
        assert_eq!(fwd(f.decide(t, &pkt(0, 1, 960, b"opus"))).seq, 1);
        f.set_paused(true);
        f.decide(t, &pkt(0, 2, 1920, b"opus"));
        f.set_paused(false);
        let rw = fwd(f.decide(t + Duration::from_millis(100), &pkt(0, 3, 2880, b"opus")));
        assert_eq!((rw.seq, rw.ts), (2, 960 + 4800));
    }

    #[test]
    fn switch_waits_for_target_keyframe_and_munges_vp8() {
        let t = t0();
        let mut f = Forwarder::new(ForwarderConfig::video(7, Codec::Vp8));
        let key_low = vp8(true, true, 10, 5, 0, false);
        assert_eq!(fwd(f.decide(t, &pkt(0, 100, 0, &key_low))).seq, 100);
        f.set_target_layer(2, 0);
        assert!(f.needs_keyframe());
        let delta_high = vp8(true, false, 500, 40, 0, false);
        let delta_low = vp8(true, false, 11, 6, 0, false);
        assert_eq!(
            dropped(f.decide(t, &pkt(2, 7000, 50, &delta_high))),
            DropReason::NotCurrentLayer
        );
        assert_eq!(fwd(f.decide(t, &pkt(0, 101, 3000, &delta_low))).seq, 101);
        let key_high = vp8(true, true, 501, 41, 0, false);
        let rw = fwd(f.decide(t, &pkt(2, 7001, 3050, &key_high)));
        assert_eq!(f.current_layer(), Some(2));
        assert_eq!(
            (rw.seq, rw.ts),
            (102, 6000),
            "one frame step after the last"
        );
        assert_eq!(
            rw.vp8,
            Some(Vp8Rewrite {
                picture_id: 12,
                tl0picidx: 7
            })
        );
        assert_eq!(
            dropped(f.decide(t, &pkt(0, 102, 6000, &delta_low))),
            DropReason::NotCurrentLayer
        );
    }

    #[test]
    fn malformed_payload_dropped_and_absorbed() {
        let t = t0();
        let mut f = Forwarder::new(ForwarderConfig::video(7, Codec::H264));
        assert_eq!(fwd(f.decide(t, &pkt(0, 1, 0, &[0x65, 0x88]))).seq, 1);
        assert_eq!(
            dropped(f.decide(t, &pkt(0, 2, 0, &[0xFF]))),
            DropReason::Malformed
        );
        assert_eq!(fwd(f.decide(t, &pkt(0, 3, 0, &[0x41, 0x9a]))).seq, 2);
    }

    #[test]
    fn reordered_packet_fills_its_own_gap() {
        let t = t0();
        let mut f = Forwarder::new(ForwarderConfig::video(7, Codec::Vp8));
        let key = vp8(true, true, 1, 0, 0, false);
        let cont = vp8(false, false, 1, 0, 0, false);
        let tl1 = vp8(true, false, 2, 0, 1, false);
        assert_eq!(fwd(f.decide(t, &pkt(0, 10, 0, &key))).seq, 10);
        assert_eq!(fwd(f.decide(t, &pkt(0, 12, 0, &cont))).seq, 12);
        assert_eq!(
            dropped(f.decide(t, &pkt(0, 13, 3000, &tl1))),
            DropReason::TemporalLayer
        );
        let late = fwd(f.decide(t, &pkt(0, 11, 0, &cont)));
        assert_eq!((late.seq, late.ts), (11, 0));
        assert_eq!(
            dropped(f.decide(t, &pkt(0, 11, 0, &cont))),
            DropReason::Duplicate
        );
    }

    proptest::proptest! {
        /// Random layers, reordering, garbage payloads and retargeting: never a
        /// panic, and never the same outgoing sequence number twice.
        #[test]
        fn random_input_never_duplicates_output(
            steps in proptest::collection::vec(
                (0u8..3, 0u64..40, proptest::collection::vec(proptest::prelude::any::<u8>(), 0..12), 0u8..20),
                1..300,
            )
        ) {
            let t = t0();
            let mut f = Forwarder::new(ForwarderConfig::video(7, Codec::Vp8));
            let mut next = [1000u64, 5000, 9000];
            let mut out = std::collections::HashSet::new();
            for (i, (layer, back, payload, op)) in steps.iter().enumerate() {
                let l = usize::from(*layer);
                // Mostly in order, sometimes a reordered (older) number.
                let ext = if *op < 3 { next[l].saturating_sub(*back) } else { next[l] += 1; next[l] };
                if *op == 19 {
                    f.set_target_layer(*layer, back.min(&3).to_owned() as u8);
                }
                if *op == 18 {
                    f.set_paused(!f.paused());
                }
                let mut p = pkt(*layer, ext, (ext as u32).wrapping_mul(3000) / 4, payload);
                p.padding_only = *op == 17;
                p.keyframe_hint = (*op == 16).then_some(true);
                let now = t + Duration::from_millis(i as u64);
                if let Decision::Forward(rw) = f.decide(now, &p) {
                    proptest::prop_assert!(out.insert(rw.seq), "seq {} twice", rw.seq);
                }
            }
        }
    }
}
