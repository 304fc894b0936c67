//! Congestion control on a trunk (issue 16 Build 1, D108/D109) in memory, time advanced by hand:
//! trunk session A relays a 3-layer video track (150k / 500k / 1.5M) and an audio track (64k)
//! to trunk session B over a simulated path (an in-memory netem with a bottleneck); B's
//! transport-cc feedback comes back over a clean 20 ms path. The path carries 5 Mbit/s for
//! 10 s, 1.2 Mbit/s (below the 2.2 Mbit/s the relays cost) for 20 s, then 5 Mbit/s again.
//!
//! Asserted: nothing shed on the wide path; under the cap the top layer is shed first (A's
//! `RelayShed` events), B gets no top-layer packets, ≥ 99 % of the audio and ≥ 90 % of layer 0
//! while it lasts; once lifted the top layer resumes (and asks for a keyframe). A timeline
//! (estimate, pacing, per-relay packets per second at B) is printed.
//!
//! `no_alloc_on_a_shedding_trunk`: the same trunks on a clean path, counted by the per-thread
//! allocator over 4 s of relaying with a resume and a shed inside the window: 0 allocations.

mod session_harness;

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use rtp_core::bwe::{Layer, SendSideBweConfig, MAX_LAYERS};
use rtp_core::forward::{Codec, MediaKind};
use rtp_core::packet::{write_rtp_header, RtpHeader};
use rtp_core::session::{
    DownId, DownTrackConfig, ExtIds, LayerSsrc, MediaMeta, Session, SessionConfig, SessionEvent,
    SessionMode, SessionOutput, UpTrackConfig,
};
use rtp_core::RtpView;

#[allow(dead_code)]
#[path = "common/netem.rs"]
mod netem;
use netem::{Netem, NetemConfig};

use session_harness::{addr, cert, t0};

const A_ADDR: &str = "127.0.0.1:7001";
const B_ADDR: &str = "127.0.0.1:7002";
const VIDEO_BPS: [u64; 3] = [150_000, 500_000, 1_500_000];
const AUDIO_BPS: u64 = 64_000;
const CAP_BPS: u64 = 20_000_000;
/// Relay slots: 0 audio, 1..=3 video layers 0..=2.
const RELAYS: usize = 4;
const NAMES: [&str; RELAYS] = ["audio", "L0", "L1", "L2"];
const SECS: u64 = 60;

fn ssrc(i: usize) -> u32 {
    71_000 + 2 * i as u32
}

fn trunk(to: &str) -> Session {
    let mut cfg = SessionConfig::new(SessionMode::Trunk {
        remote: addr(to),
        keys: None,
        silence: Duration::from_secs(2),
    });
    // As the dataplane builds a trunk: it starts at its cap.
    cfg.bwe = SendSideBweConfig {
        max_bps: CAP_BPS,
        start_bps: CAP_BPS,
        ..SendSideBweConfig::default()
    };
    Session::new(t0(), cfg, &cert()).expect("trunk")
}

fn relay(i: usize) -> DownTrackConfig {
    let audio = i == 0;
    DownTrackConfig {
        kind: if audio {
            MediaKind::Audio
        } else {
            MediaKind::Video
        },
        codec: if audio { Codec::Opus } else { Codec::Vp8 },
        clock_rate: if audio { 48_000 } else { 90_000 },
        payload_type: if audio { 111 } else { 96 },
        rtx_payload_type: (!audio).then_some(97),
        ssrc: ssrc(i),
        rtx_ssrc: (!audio).then(|| ssrc(i) + 1),
        // Whatever the control plane says: a trunk uses ExtIds::TRUNK.
        ext: ExtIds::default(),
        e2ee: false,
        priority: 1,
        max_layer: if audio { 0 } else { 2 },
        relay_layer: Some(if audio { 0 } else { i as u8 - 1 }),
        relay_group: if audio { 2 } else { 1 },
    }
}

fn ingest(i: usize) -> UpTrackConfig {
    let r = relay(i);
    UpTrackConfig {
        kind: r.kind,
        codec: r.codec,
        clock_rate: r.clock_rate,
        payload_type: r.payload_type,
        rtx_payload_type: r.rtx_payload_type,
        layers: vec![LayerSsrc {
            ssrc: Some(r.ssrc),
            rtx_ssrc: r.rtx_ssrc,
            rid: None,
        }],
        ext: ExtIds::default(),
        e2ee: false,
        mid: None,
    }
}

/// The source's next packet on relay `i`: audio 160 B every 20 ms; video 1000 B packets at
/// the layer's rate (a VP8 keyframe descriptor on each: the relay does not look).
struct Source {
    seq: [u16; RELAYS],
    next: [Instant; RELAYS],
}

impl Source {
    fn gap(i: usize) -> Duration {
        if i == 0 {
            Duration::from_millis(20)
        } else {
            Duration::from_nanos(1000 * 8 * 1_000_000_000 / VIDEO_BPS[i - 1])
        }
    }

    fn packet(&mut self, i: usize, now: Instant) -> (Vec<u8>, MediaMeta) {
        let seq = self.seq[i];
        self.seq[i] = seq.wrapping_add(1);
        self.next[i] += Self::gap(i);
        let mut buf = vec![0u8; 1500];
        let ms = now.duration_since(t0()).as_millis() as u32;
        let h = write_rtp_header(
            &RtpHeader {
                pt: if i == 0 { 111 } else { 96 },
                marker: true,
                seq,
                ts: ms.wrapping_mul(if i == 0 { 48 } else { 90 }),
                ssrc: 0x1000 + i as u32,
                csrcs: &[],
                extensions: &[],
            },
            &mut buf,
        )
        .expect("header");
        let len = h + if i == 0 { 160 } else { 1000 };
        buf[h] = 0x10;
        buf.truncate(len);
        let meta = MediaMeta {
            layer: if i == 0 { 0 } else { i as u8 - 1 },
            ext_seq: u64::from(seq),
            len,
            keyframe: true,
        };
        (buf, meta)
    }
}

#[derive(Default)]
struct Tally {
    /// Per second, per relay: packets sent by the source and received at B.
    sent: Vec<[u64; RELAYS]>,
    got: Vec<[u64; RELAYS]>,
    estimate: Vec<u64>,
    pacing: Vec<u64>,
    events: Vec<(Duration, usize, bool, u64)>,
    keyframes_asked: Vec<(Duration, u8)>,
}

impl Tally {
    fn sum(v: &[[u64; RELAYS]], i: usize, from: u64, to: u64) -> u64 {
        v[from as usize..to as usize].iter().map(|s| s[i]).sum()
    }
}

fn cap_at(sec: u64) -> u64 {
    if (10..30).contains(&sec) {
        1_200_000
    } else {
        5_000_000
    }
}

#[test]
fn a_trunk_sheds_its_top_layer_under_a_cap_keeps_audio_and_the_low_layer_and_resumes() {
    let start = t0();
    let mut now = start;
    let (mut a, mut b) = (trunk(B_ADDR), trunk(A_ADDR));
    let downs: Vec<DownId> = (0..RELAYS)
        .map(|i| a.add_down_track(relay(i)).expect("relay"))
        .collect();
    for i in 0..RELAYS {
        b.add_up_track(ingest(i)).expect("ingest");
    }
    // The publisher side's measured layer rates, as the shard passes them on.
    let mut video = [Layer::default(); MAX_LAYERS];
    for (l, bps) in VIDEO_BPS.iter().enumerate() {
        video[l] = Layer {
            bitrate_bps: *bps,
            available: true,
        };
    }
    let mut audio = [Layer::default(); MAX_LAYERS];
    audio[0] = Layer {
        bitrate_bps: AUDIO_BPS,
        available: true,
    };
    for (i, &d) in downs.iter().enumerate() {
        a.set_down_layer_rates(d, if i == 0 { audio } else { video });
    }
    let mut path = Netem::new(NetemConfig {
        delay: Duration::from_millis(20),
        rate_bps: Some(cap_at(0)),
        ..NetemConfig::default()
    });
    let mut back: VecDeque<(Instant, Vec<u8>)> = VecDeque::new();
    let mut src = Source {
        seq: [0, 1000, 2000, 3000],
        next: [start; RELAYS],
    };
    let mut slots: Vec<Option<Vec<u8>>> = Vec::new();
    let mut t = Tally::default();
    let end = start + Duration::from_secs(SECS);
    let mut buf = vec![0u8; 1500];
    while now < end {
        let sec = now.duration_since(start).as_secs();
        if t.sent.len() <= sec as usize {
            t.sent.push([0; RELAYS]);
            t.got.push([0; RELAYS]);
            t.estimate.push(a.stats().estimate_bps);
            t.pacing.push(a.pacing_rate_bps());
            path.set_rate(Some(cap_at(sec)));
        }
        // The source, through A's relays.
        for (i, &down) in downs.iter().enumerate() {
            while src.next[i] <= now {
                let (pkt, meta) = src.packet(i, now);
                t.sent[sec as usize][i] += 1;
                let view = RtpView::parse(&pkt).expect("parses");
                let h = slots.len() as u32;
                let mut out = vec![0u8; 1500];
                if let Ok(Some(n)) = a.forward(now, down, &view, meta, &mut out, h) {
                    out.truncate(n);
                    slots.push(Some(out));
                } else {
                    slots.push(None);
                }
            }
        }
        // A's feedback from B.
        while back.front().is_some_and(|(at, _)| *at <= now) {
            let (_, mut p) = back.pop_front().expect("front");
            let _ = a.handle_datagram(now, addr(B_ADDR), &mut p);
        }
        a.handle_timeout(now);
        while let Some(o) = a.poll_output() {
            if let SessionOutput::KeyframeWanted { layer, .. } = o {
                t.keyframes_asked.push((now - start, layer));
            }
        }
        while let Some(e) = a.poll_event() {
            if let SessionEvent::RelayShed {
                down,
                shed,
                estimate_bps,
            } = e
            {
                t.events
                    .push((now - start, usize::from(down.0), shed, estimate_bps));
            }
        }
        while let Some((h, len, _)) = a.poll_paced(now) {
            let p = slots[h as usize].take().expect("queued packet");
            path.send(now, &p[..len]);
        }
        while let Some((n, _)) = a.poll_probe(now, &mut buf) {
            path.send(now, &buf[..n]);
        }
        while let Some((n, _)) = a.poll_transmit(now, &mut buf) {
            path.send(now, &buf[..n]);
        }
        while let Some(mut p) = path.poll_recv(now) {
            if let Ok(SessionOutput::Media { meta, .. }) =
                b.handle_datagram(now, addr(A_ADDR), &mut p)
            {
                let v = RtpView::parse(&p[..meta.len]).expect("parses");
                if let Some(i) = (0..RELAYS).find(|&i| ssrc(i) == v.ssrc()) {
                    t.got[sec as usize][i] += 1;
                }
            }
            while b.poll_output().is_some() {}
        }
        b.handle_timeout(now);
        while let Some((n, _)) = b.poll_transmit(now, &mut buf) {
            back.push_back((now + Duration::from_millis(20), buf[..n].to_vec()));
        }
        while b.poll_event().is_some() {}
        let next = [
            src.next.iter().min().copied(),
            back.front().map(|(at, _)| *at),
            path.next_arrival(),
            a.poll_timeout(),
            b.poll_timeout(),
        ]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(end);
        now = next
            .max(now + Duration::from_micros(50))
            .min(now + Duration::from_millis(5));
    }

    println!("   t    cap   estimate   pacing   packets at B (sent) per relay");
    for s in 0..SECS as usize {
        let per: Vec<String> = (0..RELAYS)
            .map(|i| format!("{} {}/{}", NAMES[i], t.got[s][i], t.sent[s][i]))
            .collect();
        println!(
            "{s:>4} {:>5}k {:>8}k {:>7}k  {}",
            cap_at(s as u64) / 1000,
            t.estimate[s] / 1000,
            t.pacing[s] / 1000,
            per.join("  ")
        );
    }
    for (at, i, shed, est) in &t.events {
        println!(
            "relay_shed at {:.1} s: {} shed={shed} estimate {} kbit/s",
            at.as_secs_f64(),
            NAMES[*i],
            est / 1000
        );
    }
    println!("keyframes asked: {:?}", t.keyframes_asked);
    println!(
        "A's trunk: rtt {:?}, fraction lost {:?}",
        a.stats().rtt,
        a.stats().fraction_lost
    );

    // Wide path: nothing shed, everything through.
    assert!(
        t.events
            .iter()
            .all(|(at, ..)| *at >= Duration::from_secs(10)),
        "shed on a path wide enough: {:?}",
        t.events
    );
    // Under the cap: the top layer goes first, audio never.
    let first = t.events.first().expect("a relay was shed under the cap");
    assert_eq!((first.1, first.2), (3, true), "top layer first: {first:?}");
    assert!(
        first.0 < Duration::from_secs(14),
        "shed within 4 s: {first:?}"
    );
    assert!(t.events.iter().all(|e| e.1 != 0), "audio was shed");
    assert!(
        t.events.iter().all(|e| e.1 != 1 || !e.2),
        "layer 0 (the track's last) was shed"
    );
    let top_under_cap = Tally::sum(&t.got, 3, 16, 30);
    println!("top layer packets at B in 16..30 s: {top_under_cap}");
    assert_eq!(top_under_cap, 0, "the top layer flows under the cap");
    let audio_share = Tally::sum(&t.got, 0, 10, 30) as f64 / Tally::sum(&t.sent, 0, 10, 30) as f64;
    let low_share = Tally::sum(&t.got, 1, 16, 30) as f64 / Tally::sum(&t.sent, 1, 16, 30) as f64;
    println!(
        "under the cap: audio delivered {:.2} %, layer 0 delivered {:.2} % (16..30 s)",
        audio_share * 100.0,
        low_share * 100.0
    );
    assert!(audio_share >= 0.99, "audio {audio_share:.4}");
    assert!(low_share >= 0.9, "layer 0 {low_share:.4}");
    // Lifted: the top layer comes back, with a keyframe asked for it.
    let resumed = t
        .events
        .iter()
        .find(|e| e.1 == 3 && !e.2 && e.0 >= Duration::from_secs(30))
        .expect("the top layer resumed after the cap was lifted");
    println!(
        "top layer resumed {:.1} s after the cap was lifted",
        resumed.0.as_secs_f64() - 30.0
    );
    assert!(t
        .keyframes_asked
        .iter()
        .any(|(at, l)| *at == resumed.0 && *l == 2));
    let top_after = Tally::sum(&t.got, 3, SECS - 5, SECS) as f64
        / Tally::sum(&t.sent, 3, SECS - 5, SECS) as f64;
    println!(
        "top layer delivered {:.2} % in the last 5 s",
        top_after * 100.0
    );
    assert!(top_after >= 0.9, "top layer after the lift {top_after:.4}");
}

/// Relay packet `n` of stream `i` written into `out` (no allocation): its length and meta.
fn write_packet(i: usize, n: u32, out: &mut [u8]) -> (usize, MediaMeta) {
    let h = write_rtp_header(
        &RtpHeader {
            pt: if i == 0 { 111 } else { 96 },
            marker: true,
            seq: n as u16,
            ts: n.wrapping_mul(3000),
            ssrc: 0x1000 + i as u32,
            csrcs: &[],
            extensions: &[],
        },
        out,
    )
    .expect("header");
    let len = h + if i == 0 { 160 } else { 1000 };
    out[h] = 0x10;
    let meta = MediaMeta {
        layer: if i == 0 { 0 } else { i as u8 - 1 },
        ext_seq: u64::from(n),
        len,
        keyframe: true,
    };
    (len, meta)
}

/// No heap allocation on a trunk's media paths with congestion control on, measured with the
/// per-thread counting allocator: relays forwarded with the trunk's transport-wide sequence
/// number, paced, ingested by the far trunk, transport-cc feedback and reports both ways, the
/// shedder deciding every 500 ms (the top layer claims 100 Mbit/s, over the 20 Mbit/s cap, so
/// it is shed and its packets are refused; in the measured window it becomes affordable, is
/// resumed with a keyframe asked, and is shed again), probing towards what the relays want.
#[test]
fn no_alloc_on_a_shedding_trunk() {
    const SLOTS: usize = 512;
    let mut now = t0();
    let (mut a, mut b) = (trunk(B_ADDR), trunk(A_ADDR));
    let downs: Vec<DownId> = (0..RELAYS)
        .map(|i| a.add_down_track(relay(i)).expect("relay"))
        .collect();
    for i in 0..RELAYS {
        b.add_up_track(ingest(i)).expect("ingest");
    }
    let mut video = [Layer::default(); MAX_LAYERS];
    for (l, bps) in [150_000, 500_000, 100_000_000].into_iter().enumerate() {
        video[l] = Layer {
            bitrate_bps: bps,
            available: true,
        };
    }
    for &d in &downs[1..] {
        a.set_down_layer_rates(d, video);
    }
    let mut slots = vec![[0u8; 1500]; SLOTS];
    let mut buf = [0u8; 1500];
    let mut next_slot = 0usize;
    let mut seq = [0u32; RELAYS];
    let delivered = std::cell::Cell::new(0u64);
    let shed_events = std::cell::Cell::new(0u64);
    let mut step = |now: Instant, a: &mut Session, b: &mut Session| {
        for (i, &down) in downs.iter().enumerate() {
            let (len, meta) = write_packet(i, seq[i], &mut buf);
            seq[i] += 1;
            let view = RtpView::parse(&buf[..len]).expect("parses");
            let h = (next_slot % SLOTS) as u32;
            next_slot += 1;
            let _ = a.forward(now, down, &view, meta, &mut slots[h as usize], h);
        }
        a.handle_timeout(now);
        while a.poll_output().is_some() {}
        while let Some(e) = a.poll_event() {
            if matches!(e, SessionEvent::RelayShed { .. }) {
                shed_events.set(shed_events.get() + 1);
            }
        }
        while let Some((h, len, _)) = a.poll_paced(now) {
            let p = &mut slots[h as usize][..len];
            if let Ok(SessionOutput::Media { .. }) = b.handle_datagram(now, addr(A_ADDR), p) {
                delivered.set(delivered.get() + 1);
            }
            while b.poll_output().is_some() {}
        }
        while let Some((n, _)) = a.poll_probe(now, &mut buf) {
            let _ = b.handle_datagram(now, addr(A_ADDR), &mut buf[..n]);
        }
        b.handle_timeout(now);
        while b.poll_event().is_some() {}
        for _ in 0..16 {
            let mut any = false;
            if let Some((n, _)) = a.poll_transmit(now, &mut buf) {
                let _ = b.handle_datagram(now, addr(A_ADDR), &mut buf[..n]);
                any = true;
            }
            if let Some((n, _)) = b.poll_transmit(now, &mut buf) {
                let _ = a.handle_datagram(now, addr(B_ADDR), &mut buf[..n]);
                any = true;
            }
            if !any {
                break;
            }
        }
    };
    for _ in 0..3000 {
        now += Duration::from_millis(1);
        step(now, &mut a, &mut b);
    }
    let (before, events_before) = (delivered.get(), shed_events.get());
    let mut cheap = video;
    cheap[2].bitrate_bps = 1_500_000;
    let info = allocation_counter::measure(|| {
        for k in 0..4000 {
            // The top layer becomes affordable (resumed after the 2 s hold), then not again
            // (shed): both changes inside the measured window.
            match k {
                0 => a.set_down_layer_rates(downs[3], cheap),
                3000 => a.set_down_layer_rates(downs[3], video),
                _ => {}
            }
            now += Duration::from_millis(1);
            step(now, &mut a, &mut b);
        }
    });
    let top = a.down_report(downs[3]).expect("relay");
    println!(
        "trunk: {} packets delivered in the measured 4 s, top layer shed at the end: {}, {} \
         relay_shed events in it, estimate {} kbit/s, rtt {:?}: {} allocations ({} bytes)",
        delivered.get() - before,
        top.bwe_paused,
        shed_events.get() - events_before,
        a.stats().estimate_bps / 1000,
        a.stats().rtt,
        info.count_total,
        info.bytes_total
    );
    assert!(top.bwe_paused, "the top layer is shed again");
    assert_eq!(shed_events.get() - events_before, 2, "resumed, then shed");
    assert!(a.stats().rtt.is_some(), "reports crossed");
    assert!(
        delivered.get() - before > 3 * 4000 * 9 / 10,
        "the other relays flow"
    );
    assert_eq!(info.count_total, 0, "allocations on a trunk's media paths");
}

/// A PLI from the far trunk about a relay asks for a keyframe of the relay's own layer (not the
/// track's top layer), and nothing for a shed relay.
#[test]
fn a_pli_over_the_trunk_names_the_relay_layer_and_a_shed_relay_asks_nothing() {
    let mut now = t0();
    let mut a = trunk(B_ADDR);
    let downs: Vec<DownId> = (0..RELAYS)
        .map(|i| a.add_down_track(relay(i)).expect("relay"))
        .collect();
    let mut video = [Layer::default(); MAX_LAYERS];
    for (l, bps) in [150_000, 500_000, 100_000_000].into_iter().enumerate() {
        video[l] = Layer {
            bitrate_bps: bps,
            available: true,
        };
    }
    for &d in &downs[1..] {
        a.set_down_layer_rates(d, video);
    }
    now += Duration::from_millis(600);
    a.handle_timeout(now);
    assert!(a.down_report(downs[3]).expect("top").bwe_paused, "top shed");
    while a.poll_output().is_some() {}
    let mut asked = Vec::new();
    for i in 1..RELAYS {
        let mut pli = vec![0x81, 206, 0, 2];
        pli.extend_from_slice(&0x7777_u32.to_be_bytes());
        pli.extend_from_slice(&ssrc(i).to_be_bytes());
        let first = a.handle_datagram(now, addr(B_ADDR), &mut pli).ok();
        for o in first
            .into_iter()
            .chain(std::iter::from_fn(|| a.poll_output()))
        {
            if let SessionOutput::KeyframeWanted { down, layer } = o {
                asked.push((usize::from(down.0), layer));
            }
        }
    }
    println!("PLIs for L0, L1, L2 (shed): keyframes asked {asked:?}");
    assert_eq!(
        asked,
        vec![(usize::from(downs[1].0), 0), (usize::from(downs[2].0), 1)]
    );
}

/// A trunk acknowledges every packet that reached it, also while it has no ingest for the relay
/// (the last one went, the next is not set up yet): the transport-wide id is the trunk's own
/// (`ExtIds::TRUNK`), not an ingest's. Unrecorded, those packets were reported lost once the
/// next ingest's packets were (an e2e lossy trunk reported 51 lost where netem dropped 43).
#[test]
fn a_trunk_acknowledges_packets_that_came_while_it_had_no_ingest() {
    let mut now = t0();
    let (mut a, mut b) = (trunk(B_ADDR), trunk(A_ADDR));
    let down = a.add_down_track(relay(0)).expect("relay");
    let mut up = Some(b.add_up_track(ingest(0)).expect("ingest"));
    let (mut pkt, mut out, mut rtcp) = (vec![0u8; 1500], vec![0u8; 1500], vec![0u8; 1500]);
    let mut slots: Vec<Vec<u8>> = Vec::new();
    let mut refused = 0;
    for n in 0..100u32 {
        if n == 30 {
            b.remove_up_track(up.take().expect("ingest"));
        }
        if n == 60 {
            up = Some(b.add_up_track(ingest(0)).expect("ingest again"));
        }
        let (len, meta) = write_packet(0, n, &mut pkt);
        let view = RtpView::parse(&pkt[..len]).expect("parses");
        if let Ok(Some(m)) = a.forward(now, down, &view, meta, &mut out, slots.len() as u32) {
            slots.push(out[..m].to_vec());
        }
        a.handle_timeout(now);
        while let Some((h, len, _)) = a.poll_paced(now) {
            let mut p = slots[h as usize][..len].to_vec();
            if b.handle_datagram(now, addr(A_ADDR), &mut p).is_err() {
                refused += 1;
            }
            while b.poll_output().is_some() {}
        }
        while a.poll_transmit(now, &mut rtcp).is_some() {}
        b.handle_timeout(now);
        while let Some((len, _)) = b.poll_transmit(now, &mut rtcp) {
            let mut p = rtcp[..len].to_vec();
            let _ = a.handle_datagram(now, addr(B_ADDR), &mut p);
        }
        while a.poll_event().is_some() {}
        while b.poll_event().is_some() {}
        now += Duration::from_millis(20);
    }
    let (received, lost) = a.feedback_totals();
    println!("{refused} packets refused while B had no ingest; feedback: {received} received, {lost} lost");
    assert!(refused >= 25, "{refused}");
    assert!(received >= 90, "{received}");
    assert_eq!(lost, 0, "nothing was lost on the way");
}
