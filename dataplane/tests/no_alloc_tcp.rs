//! The zero-allocation property (`no_alloc_sockets.rs`) over ICE-TCP (issue 18): a real
//! dataplane (2 workers, both backends) with full WebRTC sessions (ICE, DTLS, SRTP) — a publisher
//! over TCP, one subscriber over TCP and one over UDP. After warm-up, the shard threads make no
//! heap allocation while media flows: RFC 4571 frames read from the publisher's connection,
//! forwarded, written into the TCP subscriber's send ring and out, and the consent checks and
//! RTCP of both TCP peers on the way. `allocation-counter` counts per thread inside each shard
//! iteration (`Dataplane::start_with_hook`); stats snapshots (which allocate their wire form)
//! are pushed out of the window with a long interval.

mod webrtc_harness;

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice_dataplane::shard::LoopHook;
use sluice_dataplane::testpeer::TestPeer;
use webrtc_harness::*;

const WARMUP: u16 = 300;
/// Pairs (audio + video) published in the window; each reaches both subscribers.
const MEASURED: u16 = 1_500;
/// Pairs per second (below the pacers' initial 1 Mbit/s estimate).
const RATE: u32 = 250;

#[derive(Default)]
struct Tally {
    open: AtomicBool,
    allocations: AtomicU64,
    iterations: AtomicU64,
}

/// Counts `sub`'s video packets into `got` until `stop` is set.
fn count(mut sub: TestPeer, video: u32, got: Arc<AtomicU32>, stop: Arc<AtomicBool>) -> TestPeer {
    while !stop.load(Ordering::Acquire) {
        if let Some(m) = sub.recv_media(Duration::from_millis(50)).expect("recv") {
            if m.ssrc == video {
                got.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    sub
}

fn publish(publisher: &mut TestPeer, from: u16, n: u16) {
    let tick = Duration::from_secs(1) / RATE;
    let t0 = Instant::now();
    for k in 0..n {
        publish_pair(publisher, from + k);
        publisher
            .pump(t0 + tick * u32::from(k + 1))
            .expect("publisher pump");
    }
}

#[test]
fn no_alloc_forwarding_over_ice_tcp() {
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
        let mut rig = Rig::start_with_hook(cfg, Some(hook));
        println!("case no_alloc_tcp on backend {:?}", rig.dp().io_mode());

        let (mut publisher, pub_id, pub_worker) = rig.connect_tcp(None);
        rig.publish_tracks(pub_id);
        let (mut tcp_sub, tcp_id, tcp_worker) = rig.connect_tcp(None);
        let (mut udp_sub, udp_id) = rig.connect_on(1 - tcp_worker);
        let (_, tcp_video) = rig.subscribe_both(0, tcp_id, &mut tcp_sub);
        let (_, udp_video) = rig.subscribe_both(1, udp_id, &mut udp_sub);
        println!(
            "publisher over TCP on worker {pub_worker}, subscribers: TCP on worker {tcp_worker}, UDP on worker {}",
            1 - tcp_worker
        );
        let stop = Arc::new(AtomicBool::new(false));
        let counts = [Arc::new(AtomicU32::new(0)), Arc::new(AtomicU32::new(0))];
        let readers: Vec<_> = [(tcp_sub, tcp_video), (udp_sub, udp_video)]
            .into_iter()
            .zip(&counts)
            .map(|((sub, video), got)| {
                let (got, stop) = (Arc::clone(got), Arc::clone(&stop));
                std::thread::spawn(move || count(sub, video, got, stop))
            })
            .collect();

        publish(&mut publisher, 0, WARMUP);
        // Let the warm-up drain (pacers, first RTCP reports) before opening the window.
        publisher
            .pump(Instant::now() + Duration::from_millis(300))
            .expect("pump");
        let before: Vec<u32> = counts.iter().map(|c| c.load(Ordering::Relaxed)).collect();
        tally.open.store(true, Ordering::Release);
        publish(&mut publisher, WARMUP, MEASURED);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline
            && counts
                .iter()
                .zip(&before)
                .any(|(c, b)| c.load(Ordering::Relaxed) < b + u32::from(MEASURED))
        {
            publisher
                .pump(Instant::now() + Duration::from_millis(10))
                .expect("pump");
        }
        tally.open.store(false, Ordering::Release);
        stop.store(true, Ordering::Release);
        for r in readers {
            r.join().expect("reader");
        }
        let got: Vec<u32> = counts
            .iter()
            .zip(&before)
            .map(|(c, b)| c.load(Ordering::Relaxed) - b)
            .collect();
        let allocations = tally.allocations.load(Ordering::Relaxed);
        let iterations = tally.iterations.load(Ordering::Relaxed);
        // The window is closed: fresh stats snapshots may run now (each `Stats` request asks the
        // workers for one; poll until one shows the window's TCP frames).
        let deadline = Instant::now() + Duration::from_secs(5);
        let (tcp, stats) = loop {
            let stats = rig.worker_stats();
            let tcp: u64 = stats
                .iter()
                .filter_map(|w| w.counters.dropped.get("tcp_tx_frames"))
                .sum();
            if tcp >= 2 * u64::from(MEASURED) || Instant::now() > deadline {
                break (tcp, stats);
            }
        };
        for w in &stats {
            let nonzero: Vec<_> = w
                .counters
                .dropped
                .iter()
                .filter(|(k, v)| **v > 0 && !k.starts_with("lat_"))
                .collect();
            println!("worker {} counters: {nonzero:?}", w.shard);
        }
        println!(
            "no_alloc_tcp on {:?}: video packets in the window (TCP, UDP subscriber) {got:?} of \
             {MEASURED} published, {iterations} shard iterations, {allocations} allocations; \
             {tcp} TCP frames sent in all",
            rig.dp().io_mode()
        );
        // Nearly all: a loaded 2-core machine has lost a few dozen on the cross-worker path.
        for (who, n) in ["TCP", "UDP"].iter().zip(&got) {
            assert!(
                *n >= u32::from(MEASURED) * 95 / 100,
                "the {who} subscriber got {n} of {MEASURED} in the window"
            );
        }
        assert!(iterations > 0, "no shard iteration measured");
        assert!(
            tcp >= 2 * u64::from(MEASURED),
            "{tcp} TCP frames sent: the TCP subscriber's media did not go over TCP"
        );
        assert_eq!(allocations, 0, "heap allocations on the shard threads");
        rig.stop();
    }
}
