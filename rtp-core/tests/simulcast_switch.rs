//! Simulcast and temporal-layer switching through a `Forwarder`, end to end:
//! real RTP packets from three simulcast encoders (distinct SSRCs, seq and ts
//! bases), interleaved, decided on and copied with `apply_rewrite`; the test
//! then checks what one subscriber would see.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rtp_core::forward::{
    apply_rewrite, parse_payload, Codec, Decision, Forwarder, ForwarderConfig, PacketIn,
    PliThrottle, PliThrottleConfig,
};
use rtp_core::RtpView;

const OUT_SSRC: u32 = 0x5EED_0001;
const FRAME: Duration = Duration::from_micros(33_333);
const TS_STEP: u32 = 3000;

#[allow(clippy::disallowed_methods)] // the scenario needs some base instant
fn t0() -> Instant {
    Instant::now()
}

/// One simulcast encoder: VP8 with picture id, TL0PICIDX and temporal ids.
struct Encoder {
    layer: u8,
    ssrc: u32,
    ext_seq: u64,
    ts: u32,
    pic: u16,
    tl0: u8,
    frame: u32,
    packets_per_frame: usize,
    key_every: u32,
    force_key: bool,
    temporal: bool,
}

impl Encoder {
    fn new(
        layer: u8,
        seq_base: u16,
        ts_base: u32,
        packets_per_frame: usize,
        key_every: u32,
    ) -> Self {
        Self {
            layer,
            ssrc: 0x1000 + u32::from(layer),
            ext_seq: u64::from(seq_base),
            ts: ts_base,
            pic: 100 * u16::from(layer) + 7,
            tl0: 50 * layer,
            frame: 0,
            packets_per_frame,
            key_every,
            force_key: false,
            temporal: false,
        }
    }

    /// Temporal id of the current frame: pattern 0 2 1 2 when temporal layering is on.
    fn tid(&self) -> u8 {
        if !self.temporal {
            return 0;
        }
        [0, 2, 1, 2][(self.frame % 4) as usize]
    }

    /// Build the packets of the next frame: (ext_seq, bytes).
    fn next_frame(&mut self) -> Vec<(u64, Vec<u8>)> {
        let key = self.frame.is_multiple_of(self.key_every) || self.force_key;
        self.force_key = false;
        let tid = self.tid();
        if tid == 0 {
            self.tl0 = self.tl0.wrapping_add(1);
        }
        // Frames right after a TL0 frame are switching points (Y bit).
        let sync = tid != 0 && self.frame % 4 == 1 || self.frame % 4 == 2;
        let mut out = Vec::new();
        for i in 0..self.packets_per_frame {
            let last = i + 1 == self.packets_per_frame;
            let mut p = vec![0x80, if last { 0x80 | 96 } else { 96 }];
            p.extend_from_slice(&(self.ext_seq as u16).to_be_bytes());
            p.extend_from_slice(&self.ts.to_be_bytes());
            p.extend_from_slice(&self.ssrc.to_be_bytes());
            // VP8 descriptor: X, S only on the first packet, I (15-bit) L T.
            p.push(if i == 0 { 0x90 } else { 0x80 });
            p.push(0xE0);
            p.extend_from_slice(&(0x8000 | self.pic).to_be_bytes());
            p.push(self.tl0);
            p.push((tid << 6) | if sync { 0x20 } else { 0 });
            // VP8 payload header (frame tag P bit: 0 = key) and an identifying tail.
            p.push(if key { 0x00 } else { 0x01 });
            p.push(self.layer);
            p.extend_from_slice(&self.frame.to_be_bytes());
            out.push((self.ext_seq, p));
            self.ext_seq += 1;
        }
        self.ts = self.ts.wrapping_add(TS_STEP);
        self.pic = (self.pic + 1) & 0x7fff;
        self.frame += 1;
        out
    }
}

/// What the subscriber received, one entry per packet.
#[derive(Debug, Clone, Copy)]
struct Seen {
    ssrc: u32,
    seq: u16,
    ts: u32,
    layer: u8,
    frame: u32,
    keyframe: bool,
    begins: bool,
    pic: u16,
    tid: u8,
}

fn observe(buf: &[u8]) -> Seen {
    let v = RtpView::parse(buf).expect("output is valid RTP");
    let pl = v.payload();
    let info = parse_payload(Codec::Vp8, pl).expect("output descriptor parses");
    let tail = &pl[pl.len() - 5..];
    Seen {
        ssrc: v.ssrc(),
        seq: v.seq(),
        ts: v.ts(),
        layer: tail[0],
        frame: u32::from_be_bytes([tail[1], tail[2], tail[3], tail[4]]),
        keyframe: info.keyframe,
        begins: info.begins_frame,
        pic: info.picture_id.unwrap(),
        tid: info.temporal_id.unwrap(),
    }
}

/// Feed `frames` frames of all encoders, interleaved packet by packet, through
/// `fwd`; `schedule(frame)` may retarget. PLIs go through a throttle to the
/// encoders (the next frame of that layer becomes a keyframe).
fn run(
    encoders: &mut [Encoder],
    fwd: &mut Forwarder,
    frames: u32,
    mut schedule: impl FnMut(u32, &mut Forwarder),
) -> Vec<Seen> {
    let t = t0();
    let mut pli = PliThrottle::new(PliThrottleConfig::default());
    let mut seen = Vec::new();
    let mut out = [0u8; 1500];
    for n in 0..frames {
        let now = t + FRAME * n;
        schedule(n, fwd);
        if fwd.needs_keyframe() {
            let layer = usize::from(fwd.target_layer().0);
            if pli.request(now, layer) {
                encoders[layer].force_key = true;
            }
        }
        let per_layer: Vec<_> = encoders
            .iter_mut()
            .map(|e| (e.layer, e.next_frame()))
            .collect();
        let most = per_layer.iter().map(|(_, p)| p.len()).max().unwrap_or(0);
        for i in 0..most {
            for (layer, pkts) in &per_layer {
                let Some((ext, bytes)) = pkts.get(i) else {
                    continue;
                };
                let v = RtpView::parse(bytes).unwrap();
                let input = PacketIn::from_rtp(*layer, *ext, &v);
                if let Decision::Forward(rw) = fwd.decide(now, &input) {
                    let len = apply_rewrite(&v, &rw, &mut out).unwrap();
                    seen.push(observe(&out[..len]));
                }
            }
        }
    }
    seen
}

/// The invariants every subscriber stream must hold.
fn check_stream(seen: &[Seen]) {
    assert!(!seen.is_empty());
    assert!(seen.iter().all(|s| s.ssrc == OUT_SSRC), "one SSRC");
    assert!(seen[0].keyframe, "starts at a keyframe");
    let mut ts_owner: HashMap<u32, (u8, u32)> = HashMap::new();
    for w in seen.windows(2) {
        let (a, b) = (w[0], w[1]);
        assert_eq!(b.seq, a.seq.wrapping_add(1), "contiguous seq after {a:?}");
        let dts = b.ts.wrapping_sub(a.ts) as i32;
        if (a.layer, a.frame) == (b.layer, b.frame) {
            assert_eq!(dts, 0, "one frame, one timestamp");
        } else {
            assert!(dts > 0, "timestamps increase: {a:?} -> {b:?}");
            assert!(b.begins, "a new frame starts at its first packet: {b:?}");
        }
        if a.layer != b.layer {
            assert!(b.keyframe, "switch lands on a keyframe: {b:?}");
            assert_eq!(
                b.pic,
                a.pic.wrapping_add(1) & 0x7fff,
                "picture id continues"
            );
        }
    }
    for s in seen {
        let owner = *ts_owner.entry(s.ts).or_insert((s.layer, s.frame));
        assert_eq!(
            owner,
            (s.layer, s.frame),
            "frames never mixed across layers"
        );
    }
}

fn layer_runs(seen: &[Seen]) -> Vec<u8> {
    let mut runs: Vec<u8> = Vec::new();
    for s in seen {
        if runs.last() != Some(&s.layer) {
            runs.push(s.layer);
        }
    }
    runs
}

fn three_layers() -> Vec<Encoder> {
    vec![
        Encoder::new(0, 65_000, 1_000, 1, 60),
        Encoder::new(1, 12_345, 3_000_000_000, 2, 75),
        Encoder::new(2, 40_000, u32::MAX - 20_000, 4, 90),
    ]
}

#[test]
fn low_high_low_switches_on_keyframes() {
    let mut enc = three_layers();
    let mut fwd = Forwarder::new(ForwarderConfig::video(OUT_SSRC, Codec::Vp8));
    fwd.set_target_layer(0, 2);
    let seen = run(&mut enc, &mut fwd, 300, |n, f| match n {
        40 => f.set_target_layer(2, 2),
        150 => f.set_target_layer(0, 2),
        220 => f.set_target_layer(1, 2),
        _ => {}
    });
    check_stream(&seen);
    assert_eq!(layer_runs(&seen), vec![0, 2, 0, 1]);
    // Each switch is prompt (PLI → keyframe in the same or next frame) and no frame of
    // the current layer is lost while waiting.
    let first_high = seen.iter().find(|s| s.layer == 2).unwrap();
    assert!((40..=41).contains(&first_high.frame), "{first_high:?}");
    let frames: Vec<(u8, u32)> = seen
        .iter()
        .filter(|s| s.begins)
        .map(|s| (s.layer, s.frame))
        .collect();
    for w in frames.windows(2) {
        if w[0].0 == w[1].0 {
            assert_eq!(w[1].1, w[0].1 + 1, "no frame skipped within a layer");
        }
    }
    println!(
        "forwarded {} packets, {} frames, layers {:?}",
        seen.len(),
        frames.len(),
        layer_runs(&seen)
    );
}

#[test]
fn switch_without_pli_waits_for_periodic_keyframe() {
    // Keyframes only every 60 / 75 / 90 frames; the forwarder keeps the current
    // layer until the target's own keyframe.
    let mut enc = three_layers();
    let mut fwd = Forwarder::new(ForwarderConfig::video(OUT_SSRC, Codec::Vp8));
    fwd.set_target_layer(1, 2);
    let t = t0();
    let mut out = [0u8; 1500];
    let mut seen = Vec::new();
    for n in 0..200u32 {
        if n == 10 {
            fwd.set_target_layer(2, 2);
        }
        for e in enc.iter_mut() {
            for (ext, bytes) in e.next_frame() {
                let v = RtpView::parse(&bytes).unwrap();
                if let Decision::Forward(rw) =
                    fwd.decide(t + FRAME * n, &PacketIn::from_rtp(e.layer, ext, &v))
                {
                    let len = apply_rewrite(&v, &rw, &mut out).unwrap();
                    seen.push(observe(&out[..len]));
                }
            }
        }
    }
    check_stream(&seen);
    assert_eq!(layer_runs(&seen), vec![1, 2]);
    assert_eq!(seen[0].frame, 0);
    assert_eq!(seen.iter().find(|s| s.layer == 2).unwrap().frame, 90);
    // Layer 1 is fed first each tick, so its frame 90 still went out before the switch.
    assert_eq!(seen.iter().rev().find(|s| s.layer == 1).unwrap().frame, 90);
}

#[test]
fn temporal_layers_dropped_without_seq_gaps() {
    let mut enc = vec![Encoder::new(0, 65_500, 0, 3, 1000)];
    enc[0].temporal = true;
    let mut fwd = Forwarder::new(ForwarderConfig::video(OUT_SSRC, Codec::Vp8));
    fwd.set_target_layer(0, 0);
    let seen = run(&mut enc, &mut fwd, 100, |n, f| {
        if n == 60 {
            f.set_target_layer(0, 2);
        }
    });
    check_stream(&seen);
    let (low, high): (Vec<Seen>, Vec<Seen>) = seen.iter().partition(|s| s.frame < 60);
    assert!(low.iter().all(|s| s.tid == 0), "target 0: only TID 0");
    assert_eq!(low.len(), 15 * 3, "15 TL0 frames of 3 packets");
    // After raising the target, every frame from the first switching point on flows.
    let first_up = high.iter().find(|s| s.tid != 0).unwrap().frame;
    assert!(first_up <= 62, "switched up at frame {first_up}");
    let after: Vec<u32> = high
        .iter()
        .filter(|s| s.begins && s.frame >= first_up)
        .map(|s| s.frame)
        .collect();
    assert_eq!(after, (first_up..100).collect::<Vec<_>>());
}
