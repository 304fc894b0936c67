//! A shed relay moves the edge's subscribers to a lower layer, and back (issue 16 Build 1,
//! docs/cluster.md "Trunk congestion", D109/D110). Two in-process cluster nodes on a real
//! `redis-server`, each with its own loopback dataplane; the trunk runs through `sluice-netem`
//! (A's `cluster.media` is the relay's address, as in `cascade_relay.rs`). alice publishes Opus
//! and three SSRC-signalled simulcast VP8 layers (20/45/90 packets/s of 1,000 bytes, every
//! packet keyframe-shaped) on A, which is full (`cluster.capacity = 1`), so the subscriber
//! sessions of carol and bob go to B. carol asks for layer 0 (so the track keeps a lower relay
//! flowing: a trunk never sheds a track's last flowing layer, D109); bob receives layer 2.
//!
//! Then A → B is capped below what the relays cost: the trunk sheds layer 2 (and maybe 1), and
//! A moves bob to the highest lower layer whose relay is not shed — bob's video goes on through
//! the whole capped window (packets per second each second ≥ [`FLOOR_PPS`], longest gap
//! printed and ≤ 1.5 s); his rate tells the layer (20/45/90 packets/s), A's relay table tells
//! which relays cross and which are shed (held for bob). The cap lifted, the relays resume and
//! bob is back on layer 2. Last, capped again until bob is moved down, bob leaves: the shed
//! layer-2 relay nobody wants any more is closed after its grace (no leaked hold).

#[path = "../../control/tests/api_support/mod.rs"]
mod api_support;
mod cascade_support;
#[path = "../../control/tests/cluster_support/mod.rs"]
mod cluster_support;
mod node_support;

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use api_support::*;
use cascade_support::*;
use cluster_support::Redis;
use node_support::*;
use rtp_core::forward::{Codec as CoreCodec, MediaKind as CoreKind};
use serde_json::json;
use sluice_control::auth::Role;
use sluice_dataplane::testpeer::{generate_cert, IceCreds, TestPeer, WebRtcPeerConfig};
use sluice_tests::netem::{Direction, Impairment, Relay, RelayConfig};

const GRACE_MS: u64 = 2000;
const LEASE_MS: u64 = 1500;
/// Video packets per second bob must get in each second of the capped window (layer 0 alone
/// is 20).
const FLOOR_PPS: usize = 10;
/// The A → B cap: below layers 0 + 2 (+ audio), ~1.1 Mbit/s.
const CAP_BPS: u64 = 700_000;

/// alice's simulcast layers (SSRC-signalled, low to high) and the rate she sends each at:
/// distinct, so bob's rate tells which layer he receives.
const LAYERS: [(u32, u32); 3] = [(0x5100_0001, 20), (0x5100_0002, 45), (0x5100_0003, 90)];

/// A 1,000-byte VP8 keyframe-shaped payload (descriptor S=1, then a key frame header).
fn vp8_payload() -> Vec<u8> {
    let mut p = vec![0x10, 0x00, 0x9d, 0x01, 0x2a, 0x80, 0x02, 0xe0, 0x01];
    p.resize(1000, 0x55);
    p
}

/// The video section's first payload type and SSRC in a subscriber offer.
fn video_stream(offer: &str) -> (u8, u32) {
    let start = offer.find("m=video").expect("video section");
    let section = &offer[start..];
    let section = &section[..section[1..].find("\nm=").map_or(section.len(), |i| i + 1)];
    let pt = section
        .lines()
        .next()
        .unwrap()
        .split_whitespace()
        .nth(3)
        .unwrap()
        .parse()
        .unwrap();
    let ssrc = attr(section, "ssrc")
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    (pt, ssrc)
}

/// A subscriber TestPeer on the offer's candidate: the arrival time of each video packet.
fn watch(
    offer: &str,
    creds: IceCreds,
    cert: rtp_core::dtls::DtlsCert,
    stop: Arc<AtomicBool>,
) -> (std::thread::JoinHandle<()>, Arc<Mutex<Vec<Instant>>>) {
    let (apt, assrc) = audio_stream(offer);
    let (vpt, vssrc) = video_stream(offer);
    let cfg = WebRtcPeerConfig {
        cert,
        ..WebRtcPeerConfig::new(
            creds,
            IceCreds::new(attr(offer, "ice-ufrag"), attr(offer, "ice-pwd")),
            attr(offer, "fingerprint"),
        )
        .unwrap()
    };
    let server = candidate(offer);
    let arrivals = Arc::new(Mutex::new(Vec::new()));
    let out = Arc::clone(&arrivals);
    let t = std::thread::spawn(move || {
        let mut peer = TestPeer::connect(server, &cfg, Duration::from_secs(10)).expect("viewer");
        peer.expect_stream(CoreKind::Audio, CoreCodec::Opus, 48_000, apt, assrc, None)
            .unwrap();
        peer.expect_stream(CoreKind::Video, CoreCodec::Vp8, 90_000, vpt, vssrc, None)
            .unwrap();
        let end = Instant::now() + Duration::from_secs(90);
        while !stop.load(Ordering::Relaxed) && Instant::now() < end {
            if let Ok(Some(m)) = peer.recv_media(Duration::from_millis(10)) {
                let mut a = out.lock().unwrap();
                // Bounded: 90 packets/s for at most 90 s.
                if m.ssrc == vssrc && a.len() < 20_000 {
                    a.push(Instant::now());
                }
            }
        }
    });
    (t, arrivals)
}

/// Joins `identity` through `addr` and answers its subscriber offers until one carries audio
/// and video; the socket and that offer.
async fn join_viewer(addr: SocketAddr, identity: &str, creds: &IceCreds, fp: &str) -> (Ws, String) {
    let mut ws = join(addr, identity, Role::Viewer).await;
    loop {
        let offer = answer_until_audio(&mut ws, creds, fp).await;
        if offer.contains("m=video") {
            return (ws, offer);
        }
    }
}

/// Packets per whole second of `arrivals` in `[from, to)`, and the longest gap between two
/// (or from `from` to the first / the last to `to`).
fn per_second(arrivals: &[Instant], from: Instant, to: Instant) -> (Vec<usize>, Duration) {
    let inside: Vec<Instant> = arrivals
        .iter()
        .copied()
        .filter(|t| *t >= from && *t < to)
        .collect();
    let secs = (to - from).as_secs() as usize;
    let mut counts = vec![0; secs];
    for t in &inside {
        let i = (*t - from).as_secs() as usize;
        if i < secs {
            counts[i] += 1;
        }
    }
    let mut gap = Duration::ZERO;
    let mut prev = from;
    for t in inside.iter().chain(std::iter::once(&to)) {
        gap = gap.max(*t - prev);
        prev = *t;
    }
    (counts, gap)
}

/// A's relays of `track` to B: (layer, users, shed), by layer.
async fn relays(a: SocketAddr, track: &str) -> Vec<(u64, u64, bool)> {
    let (_, v) = call(a, "GET", "/internal/cascade", "").await;
    let mut out: Vec<(u64, u64, bool)> = v["relays"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter(|r| r["track"] == track)
        .map(|r| {
            (
                r["layer"].as_u64().unwrap_or(99),
                r["users"].as_u64().unwrap_or(0),
                r["shed"].as_bool().unwrap_or(false),
            )
        })
        .collect();
    out.sort_unstable();
    out
}

/// The `sluice_cascade_remote_moved_total` / `relay_shed_total` lines of A's metrics.
async fn shed_metrics(a: SocketAddr) -> Vec<String> {
    let (_, _, text) = http_raw(a, "GET", "/metrics", &[], "").await;
    text.lines()
        .filter(|l| {
            l.starts_with("sluice_cascade_remote_moved_total")
                || l.starts_with("sluice_cascade_relay_shed_total")
                || l.starts_with("sluice_cascade_relays_shed")
                || l.starts_with("sluice_cascade_trunk_estimate_bps")
        })
        .map(str::to_owned)
        .collect()
}

/// Packets bob got in the last second.
fn last_second(arrivals: &Mutex<Vec<Instant>>) -> usize {
    let now = Instant::now();
    let a = arrivals.lock().unwrap();
    a.iter()
        .rev()
        .take_while(|t| now.duration_since(**t) < Duration::from_secs(1))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shed_relay_moves_the_edge_subscriber_down_and_back_and_is_released_when_unwanted() {
    let t_start = Instant::now();
    let redis = Redis::start();
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("cluster.secret");
    std::fs::write(&secret, [11u8; 32]).unwrap();
    let tweak = |c: &mut sluice_dataplane::config::Config| {
        c.trunk_secret_file = Some(secret.clone());
        c.buffers_per_worker = 1024;
    };
    let Some((_da, dpa)) = loopback_dataplane(tweak) else {
        return;
    };
    let Some((_db, dpb)) = loopback_dataplane(tweak) else {
        return;
    };
    let source = UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .unwrap();
    // Upstream is A: `down` is A → B, where the relays go.
    let open = Impairment {
        delay: Duration::from_millis(10),
        ..Impairment::default()
    };
    let relay = Relay::start(RelayConfig {
        upstream_source: Some(source),
        down: open,
        seed: 110,
        ..RelayConfig::new("127.0.0.1:0".parse().unwrap(), dpa.local_addrs()[0])
    })
    .unwrap();
    let a = cluster_server(
        &redis,
        "a",
        &dpa,
        (LEASE_MS, GRACE_MS),
        &[
            ("media", relay.local_addr().to_string()),
            ("capacity", "1".to_owned()),
        ],
    )
    .await;
    let b = cluster_server(
        &redis,
        "b",
        &dpb,
        (LEASE_MS, GRACE_MS),
        &[
            ("media", source.to_string()),
            ("capacity", "100".to_owned()),
        ],
    )
    .await;
    until(
        "both nodes live with media",
        Duration::from_secs(10),
        async || {
            let (_, v) = call(a.addr, "GET", "/api/cluster", "").await;
            v["nodes"].as_array().map_or(0, Vec::len) == 2 && media_published(&redis, &["a", "b"])
        },
    )
    .await;

    // alice publishes on A, which becomes the room's home and, with her, full.
    let stop = Arc::new(AtomicBool::new(false));
    let alice = publish_simulcast(
        a.addr,
        "alice",
        &simulcast_offer(&LAYERS),
        LAYERS.to_vec(),
        vp8_payload(),
        Arc::clone(&stop),
    )
    .await;
    until("A counts alice", Duration::from_secs(5), async || {
        redis
            .cli(&["HGET", "sl:node:a", "load"])
            .parse::<u64>()
            .is_ok_and(|l| l >= 1)
    })
    .await;
    let video_sid = {
        let (_, v) = call(a.addr, "GET", "/api/rooms/m/participants", "").await;
        v["participants"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|p| p["tracks"].as_array().cloned().unwrap_or_default())
            .find(|t| t["kind"] == "video")
            .map(|t| t["sid"].as_str().unwrap().to_owned())
            .expect("alice's video track")
    };

    // carol on B at layer 0, then bob on B at layer 2.
    let (carol_cert, cert) = (generate_cert().unwrap(), generate_cert().unwrap());
    let view_stop = Arc::new(AtomicBool::new(false));
    let carol_creds = IceCreds::new("CarolShed", "carolpassword0123456789");
    let (mut carol, carol_offer) = join_viewer(
        a.addr,
        "carol",
        &carol_creds,
        &carol_cert.fingerprint().to_sdp(),
    )
    .await;
    send(
        &mut carol,
        json!({"type": "layer", "track_sid": video_sid, "max_spatial": 0, "max_temporal": 2}),
    )
    .await;
    let (carol_t, carol_rx) = watch(
        &carol_offer,
        carol_creds,
        carol_cert,
        Arc::clone(&view_stop),
    );
    let bob_creds = IceCreds::new("BobShed1", "bobpassword0123456789xx");
    let (bob, bob_offer) =
        join_viewer(a.addr, "bob", &bob_creds, &cert.fingerprint().to_sdp()).await;
    // B's dataplane itself (its registry `media` is the netem relay's upstream source).
    let b_media = dpb.local_addrs()[0].to_string();
    assert_eq!(candidate(&bob_offer).to_string(), b_media, "bob is on B");
    assert_eq!(
        candidate(&carol_offer).to_string(),
        b_media,
        "carol is on B"
    );
    let (bob_t, rx) = watch(&bob_offer, bob_creds, cert, Arc::clone(&view_stop));
    until(
        "bob receives layer 2",
        Duration::from_secs(15),
        async || {
            last_second(&rx) >= 75
                && relays(a.addr, &video_sid)
                    .await
                    .iter()
                    .map(|r| r.0)
                    .collect::<Vec<_>>()
                    == [0, 2]
        },
    )
    .await;
    println!(
        "before the cap: bob gets {} video packets/s; A's relays of {video_sid} (layer, users, shed): {:?}",
        last_second(&rx),
        relays(a.addr, &video_sid).await
    );

    // The cap: A → B below what layers 0 and 2 cost.
    let capped = Instant::now();
    relay
        .set(
            Direction::Down,
            Impairment {
                rate_bps: Some(CAP_BPS),
                ..open
            },
        )
        .unwrap();
    println!("A → B capped at {} kbit/s", CAP_BPS / 1000);
    let mut seen = Vec::new();
    while capped.elapsed() < Duration::from_secs(12) {
        tokio::time::sleep(Duration::from_millis(1000)).await;
        let r = relays(a.addr, &video_sid).await;
        let pps = last_second(&rx);
        let (_, _, text) = http_raw(a.addr, "GET", "/metrics", &[], "").await;
        let estimate = text
            .lines()
            .find(|l| l.starts_with("sluice_cascade_trunk_estimate_bps{"))
            .and_then(|l| l.rsplit(' ').next())
            .unwrap_or("-")
            .to_owned();
        println!(
            "  {:>4.1} s into the cap: bob {pps} video/s, carol {} video/s, relays {r:?}, trunk estimate {estimate}",
            capped.elapsed().as_secs_f64(),
            last_second(&carol_rx)
        );
        seen.push((pps, r));
    }
    let end_cap = Instant::now();
    let (counts, gap) = per_second(&rx.lock().unwrap(), capped, end_cap);
    println!(
        "capped window: bob's video packets per second {counts:?}, longest gap {gap:?}; A: {:?}",
        shed_metrics(a.addr).await
    );
    let shed_seen = seen.iter().any(|(_, r)| r.iter().any(|l| l.0 == 2 && l.2));
    assert!(
        shed_seen,
        "the trunk never shed layer 2 under the cap: {seen:?}"
    );
    assert!(
        counts.iter().all(|c| *c >= FLOOR_PPS),
        "bob's video stopped under the cap: {counts:?} per second (floor {FLOOR_PPS})"
    );
    assert!(
        gap <= Duration::from_millis(1500),
        "longest video gap {gap:?}"
    );
    // Bob on a lower layer at the end of the cap: his rate is layer 0's or 1's, not 2's.
    let (tail, _) = per_second(
        &rx.lock().unwrap(),
        end_cap - Duration::from_secs(3),
        end_cap,
    );
    assert!(
        tail.iter().all(|c| *c < 70),
        "bob is on layer 2 at the end of the cap: {tail:?}"
    );

    // Lifted: the relays resume and bob goes back to layer 2.
    relay.set(Direction::Down, open).unwrap();
    let lifted = Instant::now();
    let back = until(
        "bob is back on layer 2",
        Duration::from_secs(20),
        async || {
            let r = relays(a.addr, &video_sid).await;
            last_second(&rx) >= 75 && r.iter().any(|l| l.0 == 2 && l.1 == 1 && !l.2)
        },
    )
    .await;
    let (counts, gap) = per_second(&rx.lock().unwrap(), lifted, Instant::now());
    println!(
        "lifted: bob back on layer 2 after {back:?} ({counts:?} per second, longest gap {gap:?}); relays {:?}; A: {:?}",
        relays(a.addr, &video_sid).await,
        shed_metrics(a.addr).await
    );
    let metrics = shed_metrics(a.addr).await;
    let moved = |dir: &str| {
        let name = format!("sluice_cascade_remote_moved_total{{direction=\"{dir}\"}} ");
        metrics
            .iter()
            .find_map(|l| l.strip_prefix(&name)?.parse::<u64>().ok())
            .unwrap_or(0)
    };
    assert!(
        moved("down") >= 1 && moved("up") >= 1,
        "moves counted: {metrics:?}"
    );

    // Capped again until bob is moved off layer 2 (its relay shed and held), then bob leaves:
    // the shed relay nobody wants goes after its grace.
    relay
        .set(
            Direction::Down,
            Impairment {
                rate_bps: Some(CAP_BPS),
                ..open
            },
        )
        .unwrap();
    until(
        "layer 2 shed and bob moved down again",
        Duration::from_secs(10),
        async || {
            last_second(&rx) < 70
                && relays(a.addr, &video_sid)
                    .await
                    .iter()
                    .any(|l| l.0 == 2 && l.2)
        },
    )
    .await;
    println!(
        "capped again: relays {:?}",
        relays(a.addr, &video_sid).await
    );
    drop(bob);
    let gone = until(
        "the shed layer-2 relay closed once bob left",
        Duration::from_millis(GRACE_MS + 6000),
        async || !relays(a.addr, &video_sid).await.iter().any(|l| l.0 == 2),
    )
    .await;
    println!(
        "bob left: layer 2's relay closed {gone:?} later (grace {GRACE_MS} ms); relays {:?}; test took {:?}",
        relays(a.addr, &video_sid).await,
        t_start.elapsed()
    );
    relay.stop();
    view_stop.store(true, Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    let _ = (bob_t.join(), carol_t.join(), alice.thread.join());
    drop((alice.ws, carol));
    a.stop();
    b.stop();
}
