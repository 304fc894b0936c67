//! A TCP subscriber whose connection backs up (issue 18): a real dataplane (2 workers, both
//! backends), a UDP publisher sending audio + video at a steady 150 pairs a second, and on one
//! worker two subscribers: one over ICE-TCP that reads slowly for 4 s (one media frame every
//! 50 ms, a fifteenth of the media rate, through a 4 KiB `SO_RCVBUF`) and one over UDP that reads
//! everything. The dataplane's per-connection send queue is at its minimum (16 KiB).
//!
//! While the TCP subscriber is slow its queue fills: media is dropped and counted
//! (`tcp_tx_media_dropped`, already when the slow phase ends) while STUN/DTLS/RTCP keep their
//! reserved quarter (`tcp_tx_control_dropped` stays 0) and reach the peer in order; the
//! connection is not closed and the session stays connected.
//! When it reads at full speed again it receives the live stream (>= 80 % of what was published
//! in the last 1.5 s). The UDP subscriber on the same worker receives every packet, with no gap
//! longer than 300 ms, throughout.

mod webrtc_harness;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice_dataplane::testpeer::TestPeer;
use sluice_proto::SessionState;
use webrtc_harness::*;

/// Published pairs (audio + video) per second.
const RATE: u32 = 150;
/// Phases: normal reading, slow reading, normal reading again.
const NORMAL: Duration = Duration::from_millis(1_500);
const SLOW: Duration = Duration::from_secs(4);
const RECOVER: Duration = Duration::from_secs(3);
/// The slow subscriber reads one media frame per this while slow.
const SLOW_READ: Duration = Duration::from_millis(50);
/// The window at the end over which the recovered subscriber must receive the live stream.
const LIVE_WINDOW: Duration = Duration::from_millis(1_500);

const PHASE_NORMAL: u8 = 0;
const PHASE_SLOW: u8 = 1;
const PHASE_RECOVER: u8 = 2;
const PHASE_DONE: u8 = 3;

/// What a subscriber saw: arrival times of its video packets (since the start), and the
/// control frames (STUN, DTLS, RTCP: everything that is not media) it received in each phase.
#[derive(Debug, Default)]
struct Seen {
    video: Vec<Duration>,
    control_per_phase: [u64; 3],
}

fn totals(rig: &mut Rig) -> BTreeMap<String, u64> {
    let mut out: BTreeMap<String, u64> = BTreeMap::new();
    for w in rig.worker_stats() {
        for (k, v) in w.counters.dropped {
            if k.starts_with("tcp_") {
                *out.entry(k).or_default() += v;
            }
        }
    }
    out
}

fn read(mut sub: TestPeer, video: u32, phase: Arc<AtomicU8>, t0: Instant, slow: bool) -> Seen {
    let mut seen = Seen::default();
    let mut control_before = 0;
    let mut current = PHASE_NORMAL;
    let mut done_at = None;
    loop {
        let p = phase.load(Ordering::Acquire);
        if p != current {
            let s = sub.stats();
            let control = s.datagrams_received - s.media_received;
            if current < PHASE_DONE {
                seen.control_per_phase[usize::from(current)] = control - control_before;
            }
            control_before = control;
            current = p;
        }
        if p == PHASE_DONE {
            // Whatever is still on its way, then stop.
            let at = *done_at.get_or_insert_with(Instant::now);
            if at.elapsed() > Duration::from_millis(500) {
                return seen;
            }
        }
        if let Some(m) = sub.recv_media(Duration::from_millis(50)).expect("recv") {
            if m.ssrc == video {
                seen.video.push(t0.elapsed());
            }
            if slow && p == PHASE_SLOW {
                std::thread::sleep(SLOW_READ);
            }
        }
    }
}

#[test]
fn a_backed_up_tcp_subscriber_drops_media_first_and_recovers() {
    for io in choices() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut cfg = config(io, &dir);
        // The smallest queue the config accepts: media may use 12 KiB of it.
        cfg.tcp_send_queue_bytes = 16_384;
        let mut rig = Rig::start_with(cfg);
        println!("case tcp_backpressure on backend {:?}", rig.dp().io_mode());

        let (mut slow, slow_id, worker) = rig.connect_tcp(Some(4096));
        let (mut steady, steady_id) = rig.connect_on(worker);
        let (mut publisher, pub_id) = rig.connect_on(0);
        rig.publish_tracks(pub_id);
        let (_, slow_video) = rig.subscribe_both(0, slow_id, &mut slow);
        let (_, steady_video) = rig.subscribe_both(1, steady_id, &mut steady);
        println!("subscribers on worker {worker}: {slow_id} over TCP, {steady_id} over UDP");

        let phase = Arc::new(AtomicU8::new(PHASE_NORMAL));
        let t0 = Instant::now();
        let slow_reader = {
            let phase = Arc::clone(&phase);
            std::thread::spawn(move || read(slow, slow_video, phase, t0, true))
        };
        let steady_reader = {
            let phase = Arc::clone(&phase);
            std::thread::spawn(move || read(steady, steady_video, phase, t0, false))
        };

        let publisher_thread = std::thread::spawn(move || {
            pin_to(0);
            let tick = Duration::from_secs(1) / RATE;
            let mut published: Vec<Duration> = Vec::new();
            let mut seq: u16 = 0;
            while t0.elapsed() < NORMAL + SLOW + RECOVER {
                publish_pair(&mut publisher, seq);
                published.push(t0.elapsed());
                seq = seq.wrapping_add(1);
                publisher
                    .pump(t0 + tick * u32::from(seq))
                    .expect("publisher pump");
            }
            published
        });
        // The phases, and the counters when the slow one ends (this thread only watches: the
        // publisher never waits for it).
        let end = NORMAL + SLOW + RECOVER;
        std::thread::sleep(NORMAL.saturating_sub(t0.elapsed()));
        phase.store(PHASE_SLOW, Ordering::Release);
        std::thread::sleep((NORMAL + SLOW).saturating_sub(t0.elapsed()));
        let at_slow_end = totals(&mut rig);
        phase.store(PHASE_RECOVER, Ordering::Release);
        let published = publisher_thread.join().expect("publisher");
        // Before the readers end (and close their connections).
        let tcp = totals(&mut rig);
        let (_, slow_state) = rig.session_info(slow_id);
        phase.store(PHASE_DONE, Ordering::Release);
        let slow_seen = slow_reader.join().expect("slow reader");
        let steady_seen = steady_reader.join().expect("steady reader");

        let live_from = end - LIVE_WINDOW;
        let live_published = published.iter().filter(|t| **t >= live_from).count();
        let live_received = slow_seen.video.iter().filter(|t| **t >= live_from).count();
        let slow_during = slow_seen
            .video
            .iter()
            .filter(|t| **t >= NORMAL && **t < NORMAL + SLOW)
            .count();
        let (steady_gap, gap_at) = steady_seen
            .video
            .windows(2)
            .map(|w| (w[1] - w[0], w[0]))
            .max()
            .unwrap_or((Duration::MAX, Duration::ZERO));
        println!(
            "published {} pairs; slow TCP subscriber: {} video packets ({} while slow, {live_received} of \
             {live_published} in the last {LIVE_WINDOW:?}), control frames per phase {:?}, state {slow_state:?}; \
             UDP subscriber on the same worker: {} video packets, longest gap {steady_gap:?} at {gap_at:?}",
            published.len(),
            slow_seen.video.len(),
            slow_during,
            slow_seen.control_per_phase,
            steady_seen.video.len(),
        );
        println!("tcp counters at the end of the slow phase: {at_slow_end:?}");
        println!("tcp counters at the end: {tcp:?}");

        let get = |m: &BTreeMap<String, u64>, k: &str| m.get(k).copied().unwrap_or(0);
        assert!(
            get(&at_slow_end, "tcp_tx_media_dropped") > 0,
            "the slow connection's queue never dropped media: {at_slow_end:?}"
        );
        assert_eq!(
            get(&tcp, "tcp_tx_control_dropped"),
            0,
            "control frames were dropped: {tcp:?}"
        );
        for k in [
            "tcp_closed_garbage",
            "tcp_closed_bad_frame",
            "tcp_closed_no_stun",
            "tcp_closed_idle",
            "tcp_closed_peer",
        ] {
            assert_eq!(get(&tcp, k), 0, "{k}: the backed-up connection was closed");
        }
        // Frames leave in order: what the slow reader reads while slow is the media queued
        // before; the control frames queued behind it (never dropped, above) arrive once it
        // reads again, and the session kept consent throughout.
        assert!(
            slow_seen.control_per_phase[usize::from(PHASE_RECOVER)] > 0,
            "no STUN/DTLS/RTCP reached the TCP subscriber after it recovered"
        );
        assert_eq!(slow_state, SessionState::Connected);
        assert!(
            live_received * 10 >= live_published * 8,
            "after recovering the TCP subscriber got {live_received} of the last {live_published} video packets"
        );
        assert!(
            steady_seen.video.len() * 100 >= published.len() * 99,
            "the UDP subscriber on the same worker got {} of {}",
            steady_seen.video.len(),
            published.len()
        );
        assert!(
            steady_gap < Duration::from_millis(300),
            "the UDP subscriber on the same worker had a {steady_gap:?} gap"
        );
        rig.stop();
    }
}
