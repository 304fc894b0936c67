//! Datagrams from addresses no session owns, at a real dataplane over loopback (security review
//! #16, #18; issue 14): a flood of unknown-source datagrams during a live call is counted and
//! answered without the shared registry's lock (the lock-free filter and the route cache), and
//! the call keeps every packet; a worker's cached "address → shard" answer does not outlive the
//! session it was about, so a new session from the same address on another shard gets its
//! packets.

mod webrtc_harness;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use sluice_dataplane::config::Config;
use sluice_dataplane::runtime::Dataplane;
use sluice_dataplane::sys::affinity;
use sluice_proto::{
    Command, ControlClient, CreateSession, DtlsRole, ExtIds, Hello, IceParams, MediaKind, Quality,
    ReplyOk, SessionId, Subscribe, SubscriptionId, TrackId, TransportMode,
};
use webrtc_harness::*;

const PACKETS: u16 = 150;
const FLOOD: usize = 50_000;

#[test]
fn unknown_source_flood_is_counted_without_the_lock() {
    for io in choices() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut rig = Rig::start(io, &dir);
        println!(
            "case unknown_source_flood on backend {:?}",
            rig.dp().io_mode()
        );
        let (mut publisher, pub_id) = rig.connect_on(0);
        rig.publish_tracks(pub_id);
        let (mut sub, sub_id) = rig.connect_on(1);
        let (audio, video) = rig.subscribe_both(0, sub_id, &mut sub);
        let before = totals(&mut rig);
        let reader = std::thread::spawn(move || {
            let mut seen: HashMap<u32, HashSet<u16>> = HashMap::new();
            let deadline = Instant::now() + Duration::from_secs(20);
            while seen.values().map(HashSet::len).sum::<usize>() < 2 * usize::from(PACKETS)
                && Instant::now() < deadline
            {
                if let Some(m) = sub.recv_media(Duration::from_millis(100)).expect("recv") {
                    assert!(m.ssrc == audio || m.ssrc == video);
                    seen.entry(m.ssrc).or_default().insert(m.seq);
                }
            }
            seen.into_iter()
                .map(|(s, v)| (s, v.len()))
                .collect::<HashMap<u32, usize>>()
        });
        let server = rig.media_addr();
        let flood = std::thread::spawn(move || {
            let socks: Vec<UdpSocket> = (0..200)
                .map(|_| UdpSocket::bind((LOCAL, 0)).expect("bind"))
                .collect();
            let mut rng = 0x9e37_79b9_7f4a_7c15u64;
            let mut sent = 0;
            while sent < FLOOD {
                for s in &socks {
                    // RTP-, RTCP- and DTLS-looking noise.
                    let first = [0x80u8, 0x81, 22][sent % 3];
                    let mut d = [0u8; 60];
                    for b in d.iter_mut() {
                        *b = next(&mut rng) as u8;
                    }
                    d[0] = first;
                    let _ = s.send_to(&d, server);
                    sent += 1;
                }
                std::thread::sleep(Duration::from_micros(200));
            }
            sent
        });
        for seq in 0..PACKETS {
            publish_pair(&mut publisher, seq);
            publisher
                .pump(Instant::now() + Duration::from_millis(10))
                .expect("pump");
        }
        let sent = flood.join().expect("flood");
        let count = reader.join().expect("reader");
        let after = totals(&mut rig);
        let d = |k: &str| after.get(k).copied().unwrap_or(0) - before.get(k).copied().unwrap_or(0);
        println!("flood of {sent}; live call received {count:?} of {PACKETS} per stream");
        println!(
            "unknown_source {}, registry lookups {}, route cache {} entries, remotes {} -> {}",
            d("unknown_source"),
            d("slow_path"),
            after.get("map_route_cache").copied().unwrap_or(0),
            before.get("map_remotes").copied().unwrap_or(0),
            after.get("map_remotes").copied().unwrap_or(0)
        );
        assert!(
            d("unknown_source") as f64 >= 0.8 * sent as f64,
            "only {} of {sent} counted",
            d("unknown_source")
        );
        // The lock-free filter answers: nearly no registry lookups, and nothing was entered.
        assert!(
            after.contains_key("slow_path"),
            "registry lookups not counted"
        );
        assert!(d("slow_path") < 100, "{} registry lookups", d("slow_path"));
        assert_eq!(after.get("map_remotes"), before.get("map_remotes"));
        assert!(after.get("map_route_cache").copied().unwrap_or(u64::MAX) <= 2 * 4096);
        assert_eq!(count.get(&audio), Some(&usize::from(PACKETS)), "{count:?}");
        assert_eq!(count.get(&video), Some(&usize::from(PACKETS)), "{count:?}");
        rig.stop();
    }
}

/// Three workers (the third shares a core with the second), plain RTP so the control thread
/// places sessions: a session on worker 1 whose address worker 0 learnt, closed, then a new
/// session from the same address on worker 2. Worker 0 must hand the address's datagrams to
/// worker 2, not to worker 1 where nothing lives any more.
#[test]
fn redirect_follows_a_session_that_moved() {
    for io in choices() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cores = affinity::online_cores().expect("cores");
        let (c0, c1) = (cores[0], *cores.get(1).unwrap_or(&cores[0]));
        let mut cfg = Config::defaults(3);
        cfg.workers = vec![c0, c1, c1];
        cfg.bind = LOCAL;
        cfg.port = 0;
        cfg.control_socket = dir.path().join("ctl.sock");
        cfg.buffers_per_worker = 2048;
        cfg.io = io;
        cfg.stats_interval_ms = 50;
        let dp = Dataplane::start(cfg).expect("dataplane starts");
        println!("case redirect_follows on backend {:?}", dp.io_mode());
        let media = dp.local_addrs()[0];
        let mut ctl = ControlClient::connect(dp.control_socket()).expect("connect");
        ctl.hello(Hello::control("test")).expect("hello");
        // The publisher's address A sends from a thread pinned to core 0: worker 0 receives.
        let a = UdpSocket::bind((LOCAL, 0)).expect("bind");
        let a_addr = a.local_addr().expect("addr");
        let mut delivered = Vec::new();
        for (round, worker) in [(0u64, 1u16), (1, 2)] {
            let base = 100 * (round + 1);
            let sink = UdpSocket::bind((LOCAL, 0)).expect("bind");
            sink.set_read_timeout(Some(Duration::from_millis(50)))
                .expect("timeout");
            request(&mut ctl, plain(base, a_addr, worker));
            request(
                &mut ctl,
                track(SessionId(base), TrackId(base), MediaKind::Video, 0x4000),
            );
            request(
                &mut ctl,
                plain(base + 1, sink.local_addr().expect("addr"), worker),
            );
            request(
                &mut ctl,
                Command::Subscribe(Subscribe {
                    subscription: SubscriptionId(base),
                    session: SessionId(base + 1),
                    track: TrackId(base),
                    ssrc: 0x7000,
                    rtx_ssrc: None,
                    payload_type: PT_VIDEO,
                    rtx_payload_type: None,
                    ext_ids: ExtIds::default(),
                }),
            );
            let a2 = a.try_clone().expect("clone");
            std::thread::spawn(move || {
                let _ = affinity::pin_current_thread(c0);
                for seq in 0..50u16 {
                    let _ = a2.send_to(&rtp(seq, 0x4000), media);
                    std::thread::sleep(Duration::from_millis(2));
                }
            })
            .join()
            .expect("sender");
            let mut got = 0;
            let mut buf = [0u8; 2048];
            let until = Instant::now() + Duration::from_secs(3);
            while got < 50 && Instant::now() < until {
                if sink.recv_from(&mut buf).is_ok() {
                    got += 1;
                }
            }
            println!("round {round}: session on worker {worker}, sink got {got} of 50");
            delivered.push(got);
            request(
                &mut ctl,
                Command::CloseSession {
                    session: SessionId(base),
                },
            );
            request(
                &mut ctl,
                Command::CloseSession {
                    session: SessionId(base + 1),
                },
            );
        }
        let stats = match ctl.request(Command::Stats {}).expect("stats") {
            ReplyOk::Stats { shards } => shards,
            other => panic!("unexpected {other:?}"),
        };
        for w in &stats {
            let d: BTreeMap<_, _> = w
                .counters
                .dropped
                .iter()
                .filter(|(k, v)| **v > 0 && !k.starts_with("lat_") && !k.starts_with("pacer_"))
                .collect();
            println!("shard {}: {d:?}", w.shard);
        }
        assert!(delivered[0] >= 45, "first session: {delivered:?}");
        assert!(
            delivered[1] >= 45,
            "the new session's datagrams were sent to its predecessor's worker: {delivered:?}"
        );
        dp.stop();
    }
}

fn totals(rig: &mut Rig) -> BTreeMap<String, u64> {
    let mut out: BTreeMap<String, u64> = BTreeMap::new();
    for w in rig.worker_stats() {
        for (k, v) in w.counters.dropped {
            if !k.starts_with("lat_") && !k.starts_with("pacer_") {
                *out.entry(k).or_default() += v;
            }
        }
    }
    out
}

fn request(ctl: &mut ControlClient, c: Command) {
    ctl.request(c).expect("request");
}

fn plain(id: u64, remote: SocketAddr, worker: u16) -> Command {
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

/// A plain RTP VP8 keyframe packet of `ssrc`.
fn rtp(seq: u16, ssrc: u32) -> Vec<u8> {
    let mut p = vec![0x80, PT_VIDEO | 0x80];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&(u32::from(seq) * 3000).to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(&payload(true, seq));
    p
}

fn next(s: &mut u64) -> u64 {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    *s
}
