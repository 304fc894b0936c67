//! Hostile TCP peers on the ICE-TCP port of a real dataplane (issue 18) while a live call runs
//! over UDP: a connection that sends garbage, one that announces a frame longer than a buffer,
//! and 1,000 connections that never send a STUN check. Every one is closed on time (the peer
//! sees EOF or a reset), every closing is counted in the workers' `tcp_*` entries, nothing is
//! left open, and the call receives every packet.

mod webrtc_harness;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use webrtc_harness::*;

const PACKETS: u16 = 150;
const IDLE: usize = 1_000;
/// The STUN timeout the test configures (the default is 5 s).
const STUN_TIMEOUT_MS: u64 = 1_000;
/// Connections per worker: 2 × 300 < 1,000, so the cap is hit too.
const CAP: usize = 300;

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

/// Waits until the server closed `s` (EOF or reset); returns how long that took.
fn closed_within(s: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let t0 = Instant::now();
    s.set_read_timeout(Some(Duration::from_millis(100))).ok()?;
    let mut b = [0u8; 64];
    while t0.elapsed() < limit {
        match s.read(&mut b) {
            Ok(0) => return Some(t0.elapsed()),
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return Some(t0.elapsed()),
        }
    }
    None
}

#[test]
fn hostile_tcp_connections_are_closed_on_time_and_counted() {
    for io in choices() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut cfg = config(io, &dir);
        cfg.tcp_stun_timeout_ms = STUN_TIMEOUT_MS;
        cfg.tcp_max_connections = CAP;
        let mut rig = Rig::start_with(cfg);
        println!("case tcp_abuse on backend {:?}", rig.dp().io_mode());
        let tcp = SocketAddr::new(LOCAL, rig.media_addr().port());
        let (mut publisher, pub_id) = rig.connect_on(0);
        rig.publish_tracks(pub_id);
        let (mut sub, sub_id) = rig.connect_on(1);
        let (audio, video) = rig.subscribe_both(0, sub_id, &mut sub);
        let reader = std::thread::spawn(move || {
            let mut seen: HashMap<u32, HashSet<u16>> = HashMap::new();
            let deadline = Instant::now() + Duration::from_secs(20);
            while seen.values().map(HashSet::len).sum::<usize>() < 2 * usize::from(PACKETS)
                && Instant::now() < deadline
            {
                if let Some(m) = sub.recv_media(Duration::from_millis(100)).expect("recv") {
                    seen.entry(m.ssrc).or_default().insert(m.seq);
                }
            }
            seen.into_iter()
                .map(|(s, v)| (s, v.len()))
                .collect::<HashMap<u32, usize>>()
        });
        let abuse = std::thread::spawn(move || {
            // Garbage: a framed DTLS-looking record, not a STUN check.
            let mut garbage = TcpStream::connect(tcp).expect("connect");
            garbage
                .write_all(&[0, 5, 22, 254, 253, 0, 0])
                .expect("write");
            // A length prefix beyond any buffer.
            let mut long = TcpStream::connect(tcp).expect("connect");
            long.write_all(&[0xff, 0xff, 1, 2, 3]).expect("write");
            let mut idle: Vec<TcpStream> = (0..IDLE)
                .map(|_| TcpStream::connect(tcp).expect("connect"))
                .collect();
            let g = closed_within(&mut garbage, Duration::from_secs(2));
            let l = closed_within(&mut long, Duration::from_secs(2));
            let limit = Duration::from_millis(STUN_TIMEOUT_MS + 2_000);
            let t0 = Instant::now();
            let mut slowest = Duration::ZERO;
            let mut open = 0;
            for s in &mut idle {
                match closed_within(s, limit.saturating_sub(t0.elapsed())) {
                    Some(_) => slowest = t0.elapsed(),
                    None => open += 1,
                }
            }
            (g, l, slowest, open)
        });
        for seq in 0..PACKETS {
            publish_pair(&mut publisher, seq);
            publisher
                .pump(Instant::now() + Duration::from_millis(20))
                .expect("pump");
        }
        let (garbage, long, slowest, open) = abuse.join().expect("abuse");
        let count = reader.join().expect("reader");
        // The stats snapshots come every 50 ms.
        std::thread::sleep(Duration::from_millis(200));
        let t = totals(&mut rig);
        let n = |k: &str| t.get(k).copied().unwrap_or(0);
        println!(
            "garbage closed after {garbage:?}, long frame after {long:?}; {IDLE} idle: all closed \
             after {slowest:?} ({open} still open); tcp entries {t:?}; live call {count:?}"
        );
        assert!(
            garbage.is_some_and(|d| d < Duration::from_secs(1)),
            "garbage: {garbage:?}"
        );
        assert!(
            long.is_some_and(|d| d < Duration::from_secs(1)),
            "long frame: {long:?}"
        );
        assert_eq!(open, 0, "idle connections left open");
        assert_eq!(n("tcp_closed_garbage"), 1);
        assert_eq!(n("tcp_closed_bad_frame"), 1);
        assert_eq!(n("tcp_accepted") + n("tcp_refused_full"), IDLE as u64 + 2);
        assert!(n("tcp_refused_full") >= (IDLE - 2 * CAP) as u64, "{t:?}");
        assert_eq!(n("tcp_closed_no_stun"), n("tcp_accepted") - 2);
        assert_eq!(n("tcp_connections"), 0, "{t:?}");
        assert_eq!(count.get(&audio), Some(&usize::from(PACKETS)), "{count:?}");
        assert_eq!(count.get(&video), Some(&usize::from(PACKETS)), "{count:?}");
        rig.stop();
    }
}
