//! Congestion control on a trunk (issue 16 Build 1, D108/D109) between two real in-process
//! dataplanes on loopback, the trunk A → B through `sluice-netem`. A plain-RTP publisher on A
//! sends a 3-layer simulcast video track (150k / 500k / 1.5M, 1000-byte packets) and an audio
//! track (64k); A relays all four (`relay_track`, with RTX for video) over an SRTP trunk to B,
//! where a plain-RTP subscriber per ingested relay counts what arrives.
//!
//! The relay's A → B direction carries 5 Mbit/s for 8 s, 1.2 Mbit/s (below the 2.2 Mbit/s the
//! relays cost) for 15 s, then no cap for 17 s. Asserted: no `relay_shed` on the wide path;
//! under the cap A says `relay_shed` for the top layer's relay first and never for audio or
//! layer 0, B gets (almost) none of the top layer from 4 s into the cap, ≥ 99 % of the audio
//! and ≥ 90 % of layer 0; lifted, A says the top layer resumed and B gets ≥ 90 % of it over the
//! last 5 s. Per second and per relay, packets at B are printed, with A's events.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use sluice_dataplane::config::Config;
use sluice_dataplane::runtime::{Dataplane, DataplaneHandle};
use sluice_dataplane::sys::affinity;
use sluice_proto::{
    AddTrack, Codec, Command, ControlClient, CreateSession, DtlsRole, ExtIds, Hello, IceParams,
    Layer, MediaKind, Notification, Quality, RelayTrack, ReplyOk, SessionId, Source, Subscribe,
    SubscriptionId, TrackId, TransportMode, TrunkCrypto,
};
use sluice_tests::netem::{Direction, Impairment, Relay, RelayConfig};

const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
/// Streams: 0 audio, 1..=3 video layers 0..=2.
const STREAMS: usize = 4;
const NAMES: [&str; STREAMS] = ["audio", "L0", "L1", "L2"];
const VIDEO_BPS: [u64; 3] = [150_000, 500_000, 1_500_000];
const SECS: u64 = 40;
const CAP_FROM: u64 = 8;
const CAP_TO: u64 = 23;

fn pub_ssrc(i: usize) -> u32 {
    0x3000 + i as u32
}

fn trunk_ssrc(i: usize) -> u32 {
    72_000 + 2 * i as u32
}

struct Node {
    dp: DataplaneHandle,
    ctl: ControlClient,
    media: SocketAddr,
}

fn node(dir: &tempfile::TempDir, name: &str) -> Node {
    let cores = affinity::online_cores().expect("cores");
    let mut cfg = Config::defaults(cores.len());
    cfg.workers = vec![cores[0]];
    cfg.bind = LOCAL;
    cfg.port = 0;
    cfg.control_socket = dir.path().join(format!("{name}.sock"));
    cfg.buffers_per_worker = 4096;
    cfg.stats_interval_ms = 1000;
    cfg.recv_buffer_bytes = 1 << 20;
    cfg.send_buffer_bytes = 1 << 20;
    cfg.trunk_secret_file = Some(dir.path().join("cluster.secret"));
    let dp = Dataplane::start(cfg).expect("dataplane starts");
    let media = dp.local_addrs()[0];
    let mut ctl = ControlClient::connect(dp.control_socket()).expect("connect");
    ctl.hello(Hello::control("trunk-cc-test")).expect("hello");
    Node { dp, ctl, media }
}

fn session(id: u64, mode: TransportMode) -> Command {
    Command::CreateSession(CreateSession {
        session: SessionId(id),
        ice: IceParams {
            ufrag: format!("unused{id}"),
            pwd: "0123456789abcdefghijklmn".into(),
            remote_ufrag: None,
            remote_pwd: None,
        },
        remote_fingerprint: None,
        dtls_role: DtlsRole::Server,
        shard_hint: Some(0),
        mode,
        data: None,
        quality: Quality {
            max_bitrate_bps: 20_000_000,
            priority: 1,
        },
    })
}

fn plain(remote: SocketAddr) -> TransportMode {
    TransportMode::PlainRtp {
        remote,
        local_port: None,
    }
}

fn trunk(remote: SocketAddr, local: &str, peer: &str) -> TransportMode {
    TransportMode::Trunk {
        remote,
        local_port: None,
        crypto: TrunkCrypto::Srtp {
            local_node: local.into(),
            remote_node: peer.into(),
            epoch: 1,
        },
        silence_ms: None,
    }
}

fn codec(audio: bool, rtx: bool) -> Codec {
    if audio {
        Codec {
            name: "opus".into(),
            payload_type: 111,
            clock_rate: 48_000,
            rtx_payload_type: None,
        }
    } else {
        Codec {
            name: "VP8".into(),
            payload_type: 96,
            clock_rate: 90_000,
            rtx_payload_type: rtx.then_some(97),
        }
    }
}

fn track(session: u64, track: u64, audio: bool, layers: Vec<Layer>) -> Command {
    let rtx = layers.iter().any(|l| l.rtx_ssrc.is_some());
    Command::AddTrack(AddTrack {
        session: SessionId(session),
        track: TrackId(track),
        kind: if audio {
            MediaKind::Audio
        } else {
            MediaKind::Video
        },
        codec: codec(audio, rtx),
        layers,
        ext_ids: ExtIds::default(),
        e2ee: false,
        source: if audio {
            Source::Microphone
        } else {
            Source::Camera
        },
        mid: None,
    })
}

fn layer(ssrc: u32, rtx_ssrc: Option<u32>) -> Layer {
    Layer {
        rid: None,
        ssrc: Some(ssrc),
        rtx_ssrc,
    }
}

/// Packet `n` of stream `i`: audio 160 bytes of payload, video a 1000-byte VP8 keyframe
/// packet (every one a keyframe: B's forwarders never wait).
fn rtp(i: usize, n: u32) -> Vec<u8> {
    let (pt, ts_step) = if i == 0 { (111u8, 960) } else { (96, 3000) };
    let mut p = vec![0x80, 0x80 | pt];
    p.extend_from_slice(&(n as u16).to_be_bytes());
    p.extend_from_slice(&(n.wrapping_mul(ts_step)).to_be_bytes());
    p.extend_from_slice(&pub_ssrc(i).to_be_bytes());
    if i == 0 {
        p.resize(12 + 160, 0x11);
    } else {
        p.extend_from_slice(&[
            0x10, 0x00, 0x00, 0x00, 0x9d, 0x01, 0x2a, 0x40, 0x01, 0xf0, 0x00,
        ]);
        p.resize(12 + 1000, n as u8);
    }
    p
}

fn gap(i: usize) -> Duration {
    if i == 0 {
        Duration::from_millis(20)
    } else {
        Duration::from_nanos(1000 * 8 * 1_000_000_000 / VIDEO_BPS[i - 1])
    }
}

/// Arrival times of RTP packets at one subscriber.
fn reader(s: UdpSocket, stop: Arc<AtomicBool>) -> JoinHandle<Vec<Instant>> {
    std::thread::spawn(move || {
        s.set_read_timeout(Some(Duration::from_millis(50)))
            .expect("timeout");
        let mut at = Vec::new();
        let mut buf = [0u8; 2048];
        while !stop.load(Ordering::Relaxed) {
            let Ok(n) = s.recv(&mut buf) else { continue };
            if n >= 12 && !(192..=223).contains(&buf[1]) {
                at.push(Instant::now());
            }
        }
        at
    })
}

/// `relay_shed` events of A: (seconds since the start, stream, shed, estimate).
fn watch(
    mut ctl: ControlClient,
    t0: Instant,
    stop: Arc<AtomicBool>,
) -> JoinHandle<(ControlClient, Vec<Shed>)> {
    std::thread::spawn(move || {
        let mut seen = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            let Ok(Some(ev)) = ctl.next_event(Duration::from_millis(100)) else {
                continue;
            };
            if let Notification::RelayShed {
                subscription,
                shed,
                estimate_bps,
                ..
            } = ev.event
            {
                let i = (subscription.0 - 900) as usize;
                let at = t0.elapsed().as_secs_f64();
                println!(
                    "  relay_shed at {at:.1} s: {} shed={shed} estimate {} kbit/s",
                    NAMES[i],
                    estimate_bps / 1000
                );
                seen.push(Shed {
                    at,
                    stream: i,
                    shed,
                });
            }
        }
        (ctl, seen)
    })
}

#[derive(Debug, Clone, Copy)]
struct Shed {
    at: f64,
    stream: usize,
    shed: bool,
}

#[test]
fn a_capped_trunk_sheds_the_top_layer_keeps_audio_and_resumes() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("cluster.secret"), [0x42u8; 32]).expect("secret");
    let mut a = node(&dir, "a");
    let mut b = node(&dir, "b");
    // A → relay → B; B → the relay's upstream socket → A.
    let source = UdpSocket::bind((LOCAL, 0))
        .and_then(|s| s.local_addr())
        .expect("a free port");
    let wide = Impairment {
        delay: Duration::from_millis(20),
        rate_bps: Some(5_000_000),
        ..Impairment::default()
    };
    let relay = Relay::start(RelayConfig {
        up: wide,
        down: Impairment {
            delay: Duration::from_millis(20),
            ..Impairment::default()
        },
        seed: 16,
        upstream_source: Some(source),
        ..RelayConfig::new(SocketAddr::new(LOCAL, 0), b.media)
    })
    .expect("netem");

    // B: the trunk, an ingested track per relay, a subscriber on each.
    b.ctl
        .request(session(700, trunk(source, "node-b", "node-a")))
        .expect("trunk on B");
    let subs: Vec<UdpSocket> = (0..STREAMS)
        .map(|_| UdpSocket::bind((LOCAL, 0)).expect("bind"))
        .collect();
    for (i, s) in subs.iter().enumerate() {
        let rtx = (i > 0).then(|| trunk_ssrc(i) + 1);
        let t = 5100 + i as u64;
        b.ctl
            .request(track(700, t, i == 0, vec![layer(trunk_ssrc(i), rtx)]))
            .expect("ingested relay on B");
        let id = 20 + i as u64;
        b.ctl
            .request(session(id, plain(s.local_addr().expect("addr"))))
            .expect("subscriber on B");
        b.ctl
            .request(Command::Subscribe(Subscribe {
                subscription: SubscriptionId(id),
                session: SessionId(id),
                track: TrackId(t),
                ssrc: 0x6000 + i as u32,
                rtx_ssrc: None,
                payload_type: if i == 0 { 111 } else { 96 },
                rtx_payload_type: None,
                ext_ids: ExtIds::default(),
            }))
            .expect("subscribe on B");
    }
    // A: the publisher (audio, 3-layer video), the trunk and a relay per stream.
    let publisher = UdpSocket::bind((LOCAL, 0)).expect("bind");
    a.ctl
        .request(session(1, plain(publisher.local_addr().expect("addr"))))
        .expect("publisher");
    a.ctl
        .request(track(1, 100, true, vec![layer(pub_ssrc(0), None)]))
        .expect("audio track");
    a.ctl
        .request(track(
            1,
            101,
            false,
            (1..STREAMS).map(|i| layer(pub_ssrc(i), None)).collect(),
        ))
        .expect("video track");
    a.ctl
        .request(session(700, trunk(relay.local_addr(), "node-a", "node-b")))
        .expect("trunk on A");
    for i in 0..STREAMS {
        let video = i > 0;
        a.ctl
            .request(Command::RelayTrack(RelayTrack {
                subscription: SubscriptionId(900 + i as u64),
                session: SessionId(700),
                track: TrackId(if video { 101 } else { 100 }),
                layer: if video { i as u8 - 1 } else { 0 },
                ssrc: trunk_ssrc(i),
                rtx_ssrc: video.then(|| trunk_ssrc(i) + 1),
                payload_type: if video { 96 } else { 111 },
                rtx_payload_type: video.then_some(97),
                ext_ids: ExtIds::default(),
            }))
            .expect("relay_track");
    }

    let stop = Arc::new(AtomicBool::new(false));
    let t0 = Instant::now();
    let readers: Vec<_> = subs
        .into_iter()
        .map(|s| reader(s, Arc::clone(&stop)))
        .collect();
    let watcher = watch(a.ctl, t0, Arc::clone(&stop));
    let mut sent: Vec<Vec<Instant>> = vec![Vec::new(); STREAMS];
    let mut next = [t0; STREAMS];
    let mut n = [0u32; STREAMS];
    let (mut capped, mut lifted) = (false, false);
    let end = t0 + Duration::from_secs(SECS);
    loop {
        let now = Instant::now();
        if now >= end {
            break;
        }
        let secs = now.duration_since(t0).as_secs();
        if !capped && secs >= CAP_FROM {
            capped = true;
            let cap = Impairment {
                rate_bps: Some(1_200_000),
                ..wide
            };
            relay.set(Direction::Up, cap).expect("cap");
            println!("  {secs} s: A → B capped at 1.2 Mbit/s");
        }
        if !lifted && secs >= CAP_TO {
            lifted = true;
            let open = Impairment {
                rate_bps: None,
                ..wide
            };
            relay.set(Direction::Up, open).expect("lift");
            println!("  {secs} s: cap lifted");
        }
        for i in 0..STREAMS {
            while next[i] <= now {
                publisher.send_to(&rtp(i, n[i]), a.media).expect("send");
                sent[i].push(now);
                n[i] += 1;
                next[i] += gap(i);
            }
        }
        let due = next.iter().min().copied().unwrap_or(end);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait.min(Duration::from_millis(5)));
        }
    }
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    let got: Vec<Vec<Instant>> = readers
        .into_iter()
        .map(|r| r.join().expect("reader"))
        .collect();
    let (mut a_ctl, events) = watcher.join().expect("watcher");
    // The trunk's link as `session_stats` reports it (the control daemon's trunk metrics).
    let Ok(ReplyOk::SessionStats(link)) = a_ctl.request(Command::SessionStats {
        session: SessionId(700),
    }) else {
        panic!("session_stats of A's trunk");
    };
    println!(
        "A's trunk: estimate {} kbit/s ({}), rtt {:?} ms, fraction lost {:?}/256, sent {} kbit/s, \
         pacing {} kbit/s, probes {}, retransmitted {}",
        link.estimate_bps / 1000,
        link.estimate_source,
        link.rtt_ms,
        link.fraction_lost,
        link.sent_bps / 1000,
        link.pacing_bps / 1000,
        link.probe_packets,
        link.retransmitted
    );
    // 20 ms each way through the relay.
    assert!(
        link.rtt_ms.is_some_and(|r| r >= 40),
        "trunk RTT {:?}",
        link.rtt_ms
    );
    assert!(link.fraction_lost.is_some(), "no receiver report loss");

    let per_sec = |v: &[Instant]| {
        let mut c = vec![0u64; SECS as usize + 1];
        for t in v {
            let s = t.duration_since(t0).as_secs() as usize;
            c[s.min(SECS as usize)] += 1;
        }
        c
    };
    let (sent_s, got_s): (Vec<_>, Vec<_>) = (
        sent.iter().map(|v| per_sec(v)).collect(),
        got.iter().map(|v| per_sec(v)).collect(),
    );
    println!("   t  packets at B / sent per stream");
    for s in 0..SECS as usize {
        let row: Vec<String> = (0..STREAMS)
            .map(|i| format!("{} {:>3}/{:<3}", NAMES[i], got_s[i][s], sent_s[i][s]))
            .collect();
        println!("{s:>4}  {}", row.join("  "));
    }
    let sum = |v: &[u64], from: u64, to: u64| -> u64 { v[from as usize..to as usize].iter().sum() };
    println!("relay {}", relay.stop().to_json());

    assert!(
        events.iter().all(|e| e.at >= CAP_FROM as f64),
        "shed on the wide path: {events:?}"
    );
    let first = events.first().expect("a relay_shed under the cap");
    assert!(
        first.stream == 3 && first.shed,
        "top layer first: {first:?}"
    );
    assert!(
        events.iter().all(|e| e.stream >= 2),
        "audio or layer 0 shed: {events:?}"
    );
    let from = CAP_FROM + 4;
    let top = sum(&got_s[3], from, CAP_TO);
    let top_sent = sum(&sent_s[3], from, CAP_TO);
    let audio = sum(&got_s[0], CAP_FROM, CAP_TO) as f64 / sum(&sent_s[0], CAP_FROM, CAP_TO) as f64;
    let low = sum(&got_s[1], from, CAP_TO) as f64 / sum(&sent_s[1], from, CAP_TO) as f64;
    println!(
        "under the cap: top layer {top} of {top_sent} packets at B ({from}..{CAP_TO} s); \
         audio {:.2} % ({CAP_FROM}..{CAP_TO} s); layer 0 {:.2} %",
        audio * 100.0,
        low * 100.0
    );
    assert!(top * 50 <= top_sent, "the top layer flows under the cap");
    assert!(audio >= 0.99, "audio {audio:.4}");
    assert!(low >= 0.9, "layer 0 {low:.4}");
    let resumed = events
        .iter()
        .find(|e| e.stream == 3 && !e.shed && e.at >= CAP_TO as f64)
        .expect("the top layer resumed after the lift");
    println!(
        "top layer resumed {:.1} s after the lift",
        resumed.at - CAP_TO as f64
    );
    let top_end = sum(&got_s[3], SECS - 5, SECS) as f64 / sum(&sent_s[3], SECS - 5, SECS) as f64;
    println!("top layer over the last 5 s: {:.2} %", top_end * 100.0);
    assert!(top_end >= 0.9, "top layer after the lift {top_end:.4}");
    drop(b.ctl);
    a.dp.stop();
    b.dp.stop();
}
