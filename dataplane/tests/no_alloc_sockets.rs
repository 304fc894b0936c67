//! The dataplane's `no_alloc` test (issue 3, "done when"): after warm-up, ≥ 100,000 packets
//! forwarded through real loopback sockets by 2 workers with ZERO heap allocations on the shard
//! threads. `allocation-counter` counts per thread, so each shard iteration runs inside
//! `measure` through `Dataplane::start_with_hook`; the test sums the counts of the iterations
//! that ran while the measured window was open. Both backends.
//!
//! Plain RTP keeps a debug build fast enough for CI; the packet path is the same one WebRTC
//! sessions take minus SRTP, whose no-allocation property rtp-core's
//! `tests/session_no_alloc.rs` checks. Stats snapshots (which allocate their wire form) are
//! pushed out of the window with a long interval. Every 50th packet is a keyframe, so the
//! per-keyframe notification to the control thread (a bounded, preallocated channel) is on the
//! measured path too.
//!
//! Probing is on (issue 12): the subscriptions negotiate transport-cc and RTX, so forwarded
//! copies get our transport-wide sequence number, and the publisher's measured layer rates
//! reach every subscriber (over the mesh too) every 500 ms. After the main window each
//! subscriber reports heavy loss, which pulls its estimate below what the track sends, so its
//! estimator sends probe clusters (padding on the RTX SSRC, written into pool buffers by the
//! shard); a second window of 3 s of media measures that path, also with no allocation.

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rtp_core::packet::rtcp::{write_rr, ReportBlock};
use sluice_dataplane::runtime::Dataplane;
use sluice_dataplane::shard::LoopHook;
use sluice_proto::{
    Command, ControlClient, CreateSession, DtlsRole, ExtIds, Hello, IceParams, MediaKind, Quality,
    ReplyOk, SessionId, Subscribe, SubscriptionId, TrackId, TransportMode,
};

mod webrtc_harness;
use sluice_dataplane::sys::affinity;
use webrtc_harness::{choices, config, track, worker_cores, LOCAL};

const SUBSCRIBERS: usize = 4;
const WARMUP: u32 = 2_000;
/// Published packets in the window; each reaches every subscriber: 4 × 27,000 = 108,000
/// forwarded copies (the test asserts ≥ 100,000).
const MEASURED: u32 = 27_000;
/// Published packets in the probing window (1,000 a second for 3 s: probes go out every 1-2 s
/// while a subscriber wants more than its estimate).
const PROBING: u32 = 3_000;
const SSRC: u32 = 0x3333;

#[derive(Default)]
struct Tally {
    open: AtomicBool,
    allocations: AtomicU64,
    iterations: AtomicU64,
}

#[test]
fn no_alloc_forwarding_through_real_sockets() {
    for io in choices() {
        let dir = tempfile::tempdir().expect("tempdir");
        let tally = Arc::new(Tally::default());
        let t = Arc::clone(&tally);
        let hook: LoopHook = Arc::new(move |_worker, turn| {
            let info = allocation_counter::measure(turn);
            if t.open.load(Ordering::Acquire) {
                t.allocations.fetch_add(info.count_total, Ordering::Relaxed);
                t.iterations.fetch_add(1, Ordering::Relaxed);
            }
        });
        let mut cfg = config(io, &dir);
        cfg.stats_interval_ms = 3_600_000;
        cfg.buffers_per_worker = 8192;
        cfg.recv_buffer_bytes = 4 << 20;
        cfg.send_buffer_bytes = 4 << 20;
        let dp = Dataplane::start_with_hook(cfg, Some(hook)).expect("dataplane starts");
        println!("case no_alloc on backend {:?}", dp.io_mode());
        let media = dp.local_addrs()[0];
        let mut ctl = ControlClient::connect(dp.control_socket()).expect("connect");
        ctl.hello(Hello::control("test")).expect("hello");

        let publisher = UdpSocket::bind((LOCAL, 0)).expect("bind");
        ctl.request(plain_session(1, publisher.local_addr().expect("addr"), 0))
            .expect("publisher");
        ctl.request(track(SessionId(1), TrackId(1), MediaKind::Video, SSRC))
            .expect("track");
        let mut readers = Vec::new();
        let mut reporters = Vec::new();
        let progress: Arc<Vec<AtomicU32>> =
            Arc::new((0..SUBSCRIBERS).map(|_| AtomicU32::new(0)).collect());
        for i in 0..SUBSCRIBERS {
            let s = UdpSocket::bind((LOCAL, 0)).expect("bind");
            let id = 10 + i as u64;
            ctl.request(plain_session(
                id,
                s.local_addr().expect("addr"),
                (i % 2) as u16,
            ))
            .expect("subscriber");
            ctl.request(Command::Subscribe(Subscribe {
                subscription: SubscriptionId(id),
                session: SessionId(id),
                track: TrackId(1),
                ssrc: 0x7000 + i as u32,
                rtx_ssrc: Some(0x7100 + i as u32),
                payload_type: 96,
                rtx_payload_type: Some(97),
                ext_ids: ExtIds {
                    transport_cc: Some(3),
                    ..ExtIds::default()
                },
            }))
            .expect("subscribe");
            reporters.push(s.try_clone().expect("clone"));
            let progress = Arc::clone(&progress);
            readers.push(std::thread::spawn(move || {
                count_media(
                    &s,
                    0x7000 + i as u32,
                    WARMUP + MEASURED + PROBING,
                    &progress[i],
                )
            }));
        }

        // Warm-up from each worker's core in turn: the kernel hands a datagram to the socket
        // of the sender's CPU (SO_INCOMING_CPU), so both shards meet the publisher's address
        // (and cache where its session lives) before the window opens.
        for (k, core) in worker_cores().into_iter().enumerate() {
            let p = publisher.try_clone().expect("clone");
            let from = k as u32 * WARMUP / 2;
            std::thread::spawn(move || {
                let _ = affinity::pin_current_thread(core);
                send(&p, media, from, WARMUP / 2);
            })
            .join()
            .expect("warm-up sender");
        }
        // Let the warm-up drain (pacers, first RTCP reports) before opening the window.
        std::thread::sleep(Duration::from_millis(300));
        tally.open.store(true, Ordering::Release);
        // In batches, each let through once every subscriber has (nearly) caught up: a
        // starved worker on a loaded 2-core machine then slows the sender instead of
        // overflowing its cross-shard ring, and the window measures forwarding, not loss.
        let mut sent = 0;
        while sent < MEASURED {
            let n = 200.min(MEASURED - sent);
            send(&publisher, media, WARMUP + sent, n);
            sent += n;
            let deadline = Instant::now() + Duration::from_millis(500);
            while Instant::now() < deadline
                && progress
                    .iter()
                    .any(|c| c.load(Ordering::Relaxed) + 50 < WARMUP + sent)
            {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        let until = WARMUP + MEASURED;
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline
            && progress.iter().any(|c| c.load(Ordering::Relaxed) < until)
        {
            std::thread::sleep(Duration::from_millis(1));
        }
        tally.open.store(false, Ordering::Release);
        let counts: Vec<u32> = progress.iter().map(|c| c.load(Ordering::Relaxed)).collect();
        let forwarded: u32 = counts.iter().map(|c| c.saturating_sub(WARMUP)).sum();
        let allocations = tally.allocations.swap(0, Ordering::Relaxed);
        println!(
            "no_alloc on {:?}: {forwarded} packets forwarded in the window over {} shard \
             iterations, {allocations} allocations; per subscriber {counts:?}",
            dp.io_mode(),
            tally.iterations.swap(0, Ordering::Relaxed)
        );
        assert!(forwarded >= 100_000, "forwarded {forwarded}: {counts:?}");
        assert_eq!(allocations, 0, "heap allocations on the shard threads");
        // The window is closed: fresh stats snapshots (they allocate) may run now. Each
        // subscriber's share of the publisher's equal-size packets left as GSO runs; every
        // `stats` request asks the workers for a new snapshot, so poll until one shows them.
        let deadline = Instant::now() + Duration::from_secs(5);
        let gso = loop {
            let gso: u64 = match ctl.request(Command::Stats {}).expect("stats") {
                sluice_proto::ReplyOk::Stats { shards } => shards
                    .iter()
                    .filter_map(|w| w.counters.dropped.get("gso_messages"))
                    .sum(),
                other => panic!("unexpected {other:?}"),
            };
            if gso > 0 || Instant::now() > deadline {
                break gso;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        println!("no_alloc on {:?}: {gso} GSO messages", dp.io_mode());
        assert!(gso > 0, "no GSO run was sent");

        // The probing window: every subscriber reports heavy loss, its estimate falls below
        // what the track sends, and its estimator probes.
        for (i, s) in reporters.iter().enumerate() {
            report_loss(s, media, 0x7000 + i as u32);
        }
        let probes_before = probes(&mut ctl);
        // The iterations that built the stats answers (they allocate) end first: an
        // iteration is counted when it ends inside the window; an idle one lasts up to 100 ms.
        std::thread::sleep(Duration::from_millis(300));
        tally.open.store(true, Ordering::Release);
        for k in 0..PROBING / 100 {
            send(&publisher, media, until + k * 100, 100);
            std::thread::sleep(Duration::from_millis(100));
        }
        let counts: Vec<u32> = readers
            .into_iter()
            .map(|r| r.join().expect("reader"))
            .collect();
        tally.open.store(false, Ordering::Release);
        let probes_in_window = probes(&mut ctl) - probes_before;
        let allocations = tally.allocations.load(Ordering::Relaxed);
        println!(
            "probing window on {:?}: {probes_in_window} probe packets over {} shard \
             iterations, {allocations} allocations; per subscriber {counts:?}",
            dp.io_mode(),
            tally.iterations.load(Ordering::Relaxed)
        );
        assert_eq!(
            allocations, 0,
            "heap allocations on the shard threads while probing"
        );
        assert!(probes_in_window > 0, "no probe went out in the window");
        drop(ctl);
        dp.stop();
    }
}

fn plain_session(id: u64, remote: SocketAddr, worker: u16) -> Command {
    Command::CreateSession(CreateSession {
        session: SessionId(id),
        ice: IceParams {
            ufrag: format!("plain{id}"),
            pwd: "0123456789abcdefghijklmn".into(),
            remote_ufrag: None,
            remote_pwd: None,
        },
        remote_fingerprint: None,
        dtls_role: DtlsRole::Server,
        shard_hint: Some(worker),
        mode: TransportMode::PlainRtp {
            remote,
            local_port: None,
        },
        data: None,
        quality: Quality {
            max_bitrate_bps: 10_000_000,
            priority: 1,
        },
    })
}

/// Packets `from..from + n`: every 50th a VP8 keyframe, the rest small delta frames (the
/// pacers' 2.5 Mbit/s start rate bounds how fast each subscriber drains).
fn send(s: &UdpSocket, to: SocketAddr, from: u32, n: u32) {
    let mut p = [0u8; 24];
    for i in from..from + n {
        let seq = i as u16;
        p[0] = 0x80;
        p[1] = 96;
        p[2..4].copy_from_slice(&seq.to_be_bytes());
        p[4..8].copy_from_slice(&(i * 3000).to_be_bytes());
        p[8..12].copy_from_slice(&SSRC.to_be_bytes());
        // VP8 descriptor S=1, then a frame tag: keyframe (P=0) every 50th packet.
        p[12] = 0x10;
        let len = if i % 50 == 0 {
            p[13..23]
                .copy_from_slice(&[0x00, 0x00, 0x00, 0x9d, 0x01, 0x2a, 0x40, 0x01, 0xf0, 0x00]);
            23
        } else {
            p[13] = 0x01;
            p[14] = seq as u8;
            15
        };
        s.send_to(&p[..len], to).expect("send");
        // Bursts small enough for the receive buffers and the pacers.
        if i % 50 == 49 {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// A receiver report from the subscriber at `s` saying it lost nearly everything of `ssrc`
/// (eight of them: each halves the loss-based estimate, from the 10 Mbit/s cap to its floor).
fn report_loss(s: &UdpSocket, to: SocketAddr, ssrc: u32) {
    let block = ReportBlock {
        ssrc,
        fraction_lost: 255,
        cumulative_lost: 1000,
        ext_highest_seq: 0,
        jitter: 0,
        lsr: 0,
        dlsr: 0,
    };
    let mut rr = [0u8; 64];
    let n = write_rr(&mut rr, 0x5151_0000 + ssrc, &[block]).expect("rr");
    for _ in 0..8 {
        s.send_to(&rr[..n], to).expect("send rr");
    }
}

/// Probe packets sent so far to the subscribers (sessions 10..).
fn probes(ctl: &mut ControlClient) -> u64 {
    (0..SUBSCRIBERS as u64)
        .map(|i| {
            match ctl
                .request(Command::SessionStats {
                    session: SessionId(10 + i),
                })
                .expect("session stats")
            {
                ReplyOk::SessionStats(r) => r.probe_packets,
                other => panic!("not session stats: {other:?}"),
            }
        })
        .sum()
}

/// Counts RTP packets of `ssrc` until `want` arrived or no media came for 2 s (RTCP reports
/// and probe padding on the RTX SSRC keep arriving, so the socket timeout alone would not end
/// it).
fn count_media(s: &UdpSocket, ssrc: u32, want: u32, progress: &AtomicU32) -> u32 {
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let mut buf = [0u8; 2048];
    let mut n = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last_media = Instant::now();
    while n < want && Instant::now() < deadline && last_media.elapsed() < Duration::from_secs(2) {
        match s.recv(&mut buf) {
            Ok(len)
                if len >= 12
                    && !(200..=206).contains(&buf[1])
                    && buf[8..12] == ssrc.to_be_bytes() =>
            {
                n += 1;
                progress.store(n, Ordering::Relaxed);
                last_media = Instant::now();
            }
            _ => {}
        }
    }
    n
}
