//! Participants placed on an edge node (issue 16, docs/cluster.md "Cascading", D103–D106): two
//! cluster nodes on a real `redis-server` sharing one trunk secret file: A an in-process
//! control daemon linked to a real loopback dataplane with `cluster.capacity = 1`, B a real
//! `sluice up` with its own `sluice-dataplane`. alice publishes Opus and three SSRC-signalled
//! simulcast video layers (20/45/90 packets/s) on A, which becomes the room's home and is full;
//! bob joins through A's WebSocket signaling, and his subscriber connection is placed on B: his
//! subscriber offer carries B's dataplane candidates (and fingerprint), his TestPeer connects
//! ICE/DTLS/SRTP to B, and B gets alice's tracks over the trunk. The test sends no dataplane
//! command and calls no internal API itself.
//!
//! Asserted and printed: `media_node` of bob is B's id (alice's A's); bob receives ≥ 95 % of
//! what alice sent in a 5 s window, with no gap over 250 ms; A's trunk forwarded each Opus
//! packet and each top-layer video packet once, and no other layer; B forwarded its
//! notifications to A (bob's subscriber pair is listed on A). bob's `layer {max_spatial: 0}`
//! moves the relay: after the old one's grace only layer 0 crosses. Then `kill -9` of B
//! (daemon and dataplane): A re-makes bob's subscriber connection on itself (a new subscriber
//! offer on bob's socket) and bob gets media again (time printed; target ≤ 6 s with a 1.5 s
//! lease).
//!
//! A second test (two in-process nodes in regions `eu` and `us`, the home in `eu`): bob's token
//! says `us`, so his subscriber connection goes to the `us` node while carol's (`eu`) stays on
//! the home; bob gets media through `us`.

#[path = "../../control/tests/api_support/mod.rs"]
mod api_support;
mod cascade_support;
#[path = "../../control/tests/cluster_support/mod.rs"]
mod cluster_support;
mod node_support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use api_support::*;
use cascade_support::*;
use cluster_support::Redis;
use node_support::*;
use rtp_core::forward::{Codec as CoreCodec, MediaKind as CoreKind};
use serde_json::{json, Value};
use sluice_control::auth::Role;
use sluice_control::server::Server;
use sluice_dataplane::runtime::DataplaneHandle;
use sluice_dataplane::testpeer::{generate_cert, IceCreds, TestPeer, WebRtcPeerConfig};

const GRACE_MS: u64 = 2000;
const LEASE_MS: u64 = 1500;

/// An in-process node of the cluster with its own loopback dataplane; `capacity`: its
/// `cluster.capacity`.
async fn cluster_node(
    redis: &Redis,
    id: &str,
    secret: &std::path::Path,
    capacity: u64,
) -> Option<(tempfile::TempDir, DataplaneHandle, Server)> {
    cluster_node_in(redis, id, secret, capacity, "default").await
}

/// [`cluster_node`] in `region`.
async fn cluster_node_in(
    redis: &Redis,
    id: &str,
    secret: &std::path::Path,
    capacity: u64,
    region: &str,
) -> Option<(tempfile::TempDir, DataplaneHandle, Server)> {
    let secret = secret.to_owned();
    let (dir, dp) = loopback_dataplane(|c| {
        c.trunk_secret_file = Some(secret);
        c.buffers_per_worker = 1024;
    })?;
    let keys = [
        ("capacity", capacity.to_string()),
        ("region", region.to_owned()),
    ];
    let s = cluster_server(redis, id, &dp, (LEASE_MS, GRACE_MS), &keys).await;
    Some((dir, dp, s))
}

/// `media_node` of each participant of room `m` on `addr`, by identity.
async fn media_nodes(addr: SocketAddr) -> Vec<(String, Value)> {
    let (_, v) = call(addr, "GET", "/api/rooms/m/participants", "").await;
    v["participants"]
        .as_array()
        .map(|ps| {
            ps.iter()
                .map(|p| {
                    (
                        p["identity"].as_str().unwrap_or_default().to_owned(),
                        p["media_node"].clone(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

async fn media_node_of(addr: SocketAddr, who: &str) -> Value {
    media_nodes(addr)
        .await
        .into_iter()
        .find(|(i, _)| i == who)
        .map(|(_, n)| n)
        .unwrap_or(Value::Null)
}

/// A VP8 keyframe-shaped payload (descriptor S=1, then a key frame header).
const VP8_KEY: [u8; 9] = [0x10, 0x00, 0x9d, 0x01, 0x2a, 0x80, 0x02, 0xe0, 0x01];
/// alice's simulcast layers (SSRC-signalled, `a=ssrc-group:SIM`, low to high) and the rate
/// she sends each at: distinct, so the trunk's count tells which layer crosses.
const LAYERS: [(u32, u32); 3] = [(0x5100_0001, 20), (0x5100_0002, 45), (0x5100_0003, 90)];

/// What bob's subscriber receives of alice's audio: a count, and the longest gap between two
/// packets since `mark` was last reset.
#[derive(Default)]
struct Received {
    got: AtomicU64,
    last: Mutex<Option<Instant>>,
    longest_gap: Mutex<Duration>,
}

impl Received {
    fn reset_gap(&self) {
        *self.longest_gap.lock().unwrap() = Duration::ZERO;
    }
}

/// Connects bob's subscriber TestPeer to the offer's candidate and counts alice's audio.
fn subscribe_thread(
    offer: &str,
    creds: IceCreds,
    cert: rtp_core::dtls::DtlsCert,
    stop: Arc<AtomicBool>,
) -> (std::thread::JoinHandle<()>, Arc<Received>) {
    let (pt, ssrc) = audio_stream(offer);
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
    let rx = Arc::new(Received::default());
    let r = Arc::clone(&rx);
    let t = std::thread::spawn(move || {
        let mut bob = TestPeer::connect(server, &cfg, Duration::from_secs(10)).expect("bob");
        bob.expect_stream(CoreKind::Audio, CoreCodec::Opus, 48_000, pt, ssrc, None)
            .unwrap();
        let end = Instant::now() + Duration::from_secs(60);
        while !stop.load(Ordering::Relaxed) && Instant::now() < end {
            if let Ok(Some(m)) = bob.recv_media(Duration::from_millis(10)) {
                if m.ssrc == ssrc {
                    let now = Instant::now();
                    r.got.fetch_add(1, Ordering::Relaxed);
                    let mut last = r.last.lock().unwrap();
                    if let Some(l) = *last {
                        let mut g = r.longest_gap.lock().unwrap();
                        *g = (*g).max(now - l);
                    }
                    *last = Some(now);
                }
            }
        }
    });
    (t, rx)
}

/// Counters at one moment: alice's sent (Opus, video per layer), bob's received, A's trunk.
struct Sample {
    audio: u64,
    video: Vec<u64>,
    got: u64,
    trunk: u64,
}

impl Sample {
    async fn take(p: &Publishing, rx: &Received, a: SocketAddr) -> Self {
        Sample {
            audio: p.sent.load(Ordering::Relaxed),
            video: p.vsent.iter().map(|v| v.load(Ordering::Relaxed)).collect(),
            got: rx.got.load(Ordering::Relaxed),
            trunk: trunk_forwarded(a).await,
        }
    }

    fn layers_since(&self, before: &Sample) -> Vec<u64> {
        self.video
            .iter()
            .zip(&before.video)
            .map(|(a, b)| a - b)
            .collect()
    }
}

async fn both_live(redis: &Redis, a: SocketAddr, ids: &[&str]) {
    until(
        "the nodes live with media",
        Duration::from_secs(10),
        async || {
            let (_, v) = call(a, "GET", "/api/cluster", "").await;
            v["nodes"].as_array().map_or(0, Vec::len) == ids.len()
                && ids.iter().all(|id| {
                    redis
                        .cli(&["HGET", &format!("sl:node:{id}"), "media"])
                        .contains(':')
                })
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_home_places_the_subscriber_on_an_edge_and_remakes_it_when_the_edge_dies() {
    let redis = Redis::start();
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("cluster.secret");
    std::fs::write(&secret, [5u8; 32]).unwrap();
    let Some((_da, _dpa, a)) = cluster_node(&redis, "a", &secret, 1).await else {
        return;
    };
    let bdir = tempfile::tempdir().unwrap();
    let mut b = sluice_node(&redis, "b", &secret, bdir.path(), (LEASE_MS, GRACE_MS), "");
    both_live(&redis, a.addr, &["a", "b"]).await;
    let b_media = redis.cli(&["HGET", "sl:node:b", "media"]);

    // alice publishes on A, which becomes the room's home and, with her, full (capacity 1).
    let stop = Arc::new(AtomicBool::new(false));
    let alice = publish_simulcast(
        a.addr,
        "alice",
        &simulcast_offer(&LAYERS),
        LAYERS.to_vec(),
        VP8_KEY.to_vec(),
        Arc::clone(&stop),
    )
    .await;
    assert_eq!(redis.cli(&["HGET", "sl:room:m", "home"]), "a");
    until("A counts alice", Duration::from_secs(5), async || {
        redis
            .cli(&["HGET", "sl:node:a", "load"])
            .parse::<u64>()
            .is_ok_and(|l| l >= 1)
    })
    .await;

    // bob joins through A: his subscriber connection goes to B.
    let mut bob = join(a.addr, "bob", Role::Viewer).await;
    let creds = IceCreds::new("BobEdge1", "bobpassword0123456789xx");
    let cert = generate_cert().unwrap();
    let fp = cert.fingerprint().to_sdp();
    let offer = answer_until_audio(&mut bob, &creds, &fp).await;
    let offered = candidate(&offer);
    println!("bob's subscriber offer names {offered} (B's dataplane: {b_media})");
    assert_eq!(
        offered.to_string(),
        b_media,
        "the offer carries B's candidates"
    );
    let nodes = media_nodes(a.addr).await;
    println!("media_node by participant: {nodes:?}");
    assert_eq!(media_node_of(a.addr, "bob").await, "b");
    assert_eq!(media_node_of(a.addr, "alice").await, "a");

    let sub_stop = Arc::new(AtomicBool::new(false));
    let (sub, rx) = subscribe_thread(&offer, creds.clone(), cert, Arc::clone(&sub_stop));
    let first = until(
        "bob's first packets through B",
        Duration::from_secs(10),
        async || rx.got.load(Ordering::Relaxed) >= 50,
    )
    .await;
    println!("bob received 50 packets via B {first:?} after connecting");
    // B's notifications reached A: bob's subscriber pair is listed there.
    until(
        "B's ice_connected applied on A",
        Duration::from_secs(5),
        async || {
            let (_, v) = call(a.addr, "GET", "/api/rooms/m/participants", "").await;
            v["participants"]
                .as_array()
                .and_then(|ps| ps.iter().find(|p| p["identity"] == "bob"))
                .is_some_and(|p| !p["connectivity"]["subscriber"].is_null())
        },
    )
    .await;

    // The window: bob's audio, and what crossed the trunk (audio + the top video layer).
    rx.reset_gap();
    let w0 = Sample::take(&alice, &rx, a.addr).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let w1 = Sample::take(&alice, &rx, a.addr).await;
    let sent = (w1.audio - w0.audio) as f64;
    let share = (w1.got - w0.got) as f64 / sent;
    let gap = *rx.longest_gap.lock().unwrap();
    let layers = w1.layers_since(&w0);
    let video = (w1.trunk - w0.trunk).saturating_sub(w1.audio - w0.audio);
    println!(
        "window 5 s: alice sent {} Opus, bob received {} via B ({:.1} %), longest gap {gap:?}; \
         video sent per layer {layers:?}; A's trunk forwarded {} = {} Opus + {video} video",
        w1.audio - w0.audio,
        w1.got - w0.got,
        share * 100.0,
        w1.trunk - w0.trunk,
        w1.audio - w0.audio,
    );
    assert!(share >= 0.95, "bob got {:.1} %", share * 100.0);
    assert!(gap <= Duration::from_millis(250), "longest gap {gap:?}");
    // Each packet crosses once, and of the video only the top layer (no cap asked yet).
    let crossed = (w1.trunk - w0.trunk) as f64 / (sent + layers[2] as f64);
    assert!(
        (0.95..=1.05).contains(&crossed),
        "each Opus and top-layer packet crosses the trunk once: {crossed:.3}"
    );

    // bob asks for the lowest layer: the relay moves, and after the old one's grace only
    // layer 0 crosses.
    let video_sid = {
        let (_, v) = call(a.addr, "GET", "/api/rooms/m/participants", "").await;
        let text = v.to_string();
        let p: Value = serde_json::from_str(&text).unwrap();
        p["participants"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|p| p["tracks"].as_array().cloned().unwrap_or_default())
            .find(|t| t["kind"] == "video")
            .map(|t| t["sid"].as_str().unwrap().to_owned())
            .expect("alice's video track")
    };
    send(
        &mut bob,
        json!({"type": "layer", "track_sid": video_sid, "max_spatial": 0, "max_temporal": 2}),
    )
    .await;
    let moved = until(
        "the relay moved to layer 0 and layer 2's closed",
        Duration::from_millis(GRACE_MS + 4000),
        async || {
            let (_, v) = call(a.addr, "GET", "/internal/cascade", "").await;
            let relays = v["relays"].as_array().cloned().unwrap_or_default();
            let video: Vec<u64> = relays
                .iter()
                .filter(|r| r["track"] == video_sid.as_str())
                .map(|r| r["layer"].as_u64().unwrap_or(99))
                .collect();
            video == [0]
        },
    )
    .await;
    println!("layer request: the trunk carries layer 0 instead of 2 (old relay gone {moved:?} later, grace {GRACE_MS} ms)");
    let l0 = Sample::take(&alice, &rx, a.addr).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let l1 = Sample::take(&alice, &rx, a.addr).await;
    let layers = l1.layers_since(&l0);
    let video = (l1.trunk - l0.trunk).saturating_sub(l1.audio - l0.audio);
    println!(
        "window 3 s after the layer change: video sent per layer {layers:?}, crossed the trunk {video}"
    );
    let want = layers[0] as f64;
    assert!(
        (video as f64 - want).abs() <= want * 0.1 + 3.0,
        "only layer 0 crosses: {video} vs {layers:?}"
    );
    let (_, _, text) = http_raw(a.addr, "GET", "/metrics", &[], "").await;
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| {
            l.starts_with("sluice_cascade_remote_sessions")
                || l.starts_with("sluice_cascade_edge_placements_total")
                || l.starts_with("sluice_cascade_remote_events_total")
        })
        .collect();
    println!("A's metrics: {lines:?}");
    assert!(lines.contains(&"sluice_cascade_remote_sessions{side=\"home\"} 1"));
    assert!(lines.contains(&"sluice_cascade_edge_placements_total{reason=\"capacity\"} 1"));

    // The home's stats API asks B for bob's subscriber session (its tracks named as A's).
    let (_, st) = call(a.addr, "GET", "/api/rooms/m/stats?identity=bob", "").await;
    let stats = &st["participants"][0]["sessions"][0];
    println!(
        "bob's subscriber stats through A: pc {}, forwarded {}, tracks {:?}",
        stats["pc"],
        stats["forwarded"],
        stats["subscriptions"]
            .as_array()
            .map(|a| a.iter().map(|s| s["track"].clone()).collect::<Vec<_>>())
    );
    assert_eq!(stats["pc"], "subscriber", "{st}");
    assert!(stats["forwarded"].as_u64().unwrap_or(0) > 0, "{st}");
    assert!(
        stats["subscriptions"]
            .as_array()
            .is_some_and(|a| !a.is_empty() && a.iter().all(|s| s["track"].is_string())),
        "{st}"
    );
    let (_, _, text) = http_raw(b.addr, "GET", "/metrics", &[], "").await;
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| {
            l.starts_with("sluice_cascade_remote_sessions")
                || l.starts_with("sluice_cascade_remote_events_total")
        })
        .collect();
    println!("B's metrics: {lines:?}");
    assert!(lines.contains(&"sluice_cascade_remote_sessions{side=\"edge\"} 1"));
    assert!(!lines.contains(&"sluice_cascade_remote_events_total{result=\"forwarded\"} 0"));

    // kill -9 of B: A makes bob's subscriber connection again, on itself.
    let dp_pid = b.dataplane_pid().expect("B's dataplane");
    for pid in [b.child.id(), dp_pid] {
        std::process::Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status()
            .unwrap();
    }
    let killed = Instant::now();
    let _ = b.child.wait();
    sub_stop.store(true, Ordering::Relaxed);
    let _ = sub.join();
    let creds2 = IceCreds::new("BobHome2", "bobpassword0123456789yy");
    let cert2 = generate_cert().unwrap();
    let fp2 = cert2.fingerprint().to_sdp();
    let offer2 = tokio::time::timeout(
        Duration::from_secs(10),
        answer_until_audio(&mut bob, &creds2, &fp2),
    )
    .await
    .expect("a new subscriber offer after B died");
    let reoffered = killed.elapsed();
    let at = candidate(&offer2);
    println!("bob re-offered a subscriber connection at {at} {reoffered:?} after kill -9 of B");
    assert_eq!(media_node_of(a.addr, "bob").await, "a");
    let sub2_stop = Arc::new(AtomicBool::new(false));
    let (sub2, rx2) = subscribe_thread(&offer2, creds2, cert2, Arc::clone(&sub2_stop));
    until("media again on A", Duration::from_secs(10), async || {
        rx2.got.load(Ordering::Relaxed) >= 20
    })
    .await;
    let again = killed.elapsed();
    println!("bob gets media again {again:?} after kill -9 of B (lease {LEASE_MS} ms)");
    assert!(again <= Duration::from_secs(6), "target ≤ 6 s: {again:?}");

    sub2_stop.store(true, Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    let _ = (sub2.join(), alice.thread.join());
    drop(alice.ws);
    a.stop();
}

/// An access token for room `m` with a `region` claim.
fn token_in(identity: &str, region: &str) -> String {
    use sluice_control::auth::{self, Claims, Grants};
    let n = auth::unix_seconds(std::time::SystemTime::now());
    auth::mint(
        KEY,
        SECRET.as_bytes(),
        &Claims {
            iss: KEY.into(),
            sub: identity.into(),
            room: "m".into(),
            role: Role::Viewer,
            grants: Grants::for_role(Role::Viewer),
            name: None,
            metadata: None,
            region: Some(region.into()),
            exp: n + 600,
            nbf: n - 60,
            iat: n - 60,
        },
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_participant_of_another_region_gets_its_subscriber_on_a_node_there() {
    let redis = Redis::start();
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("cluster.secret");
    std::fs::write(&secret, [6u8; 32]).unwrap();
    let Some((_da, _dpa, a)) = cluster_node_in(&redis, "a", &secret, 500, "eu").await else {
        return;
    };
    let Some((_dc, _dpc, c)) = cluster_node_in(&redis, "c", &secret, 500, "us").await else {
        return;
    };
    both_live(&redis, a.addr, &["a", "c"]).await;
    let stop = Arc::new(AtomicBool::new(false));
    let alice = publish_simulcast(a.addr, "alice", OFFER, vec![], vec![], Arc::clone(&stop)).await;
    assert_eq!(redis.cli(&["HGET", "sl:room:m", "home"]), "a");

    // bob's token says `us`: his subscriber connection goes to C; carol (`eu`) stays on A.
    let connect = async |t: String| {
        let (mut ws, _) =
            tokio_tungstenite::connect_async(format!("ws://{}/rtc?access_token={t}", a.addr))
                .await
                .unwrap();
        send(&mut ws, json!({"type": "join"})).await;
        recv_type(&mut ws, "joined").await;
        ws
    };
    let mut bob = connect(token_in("bob", "us")).await;
    let mut carol = connect(token_in("carol", "eu")).await;
    let creds = IceCreds::new("BobRegion", "bobpassword0123456789xx");
    let cert = generate_cert().unwrap();
    let fp = cert.fingerprint().to_sdp();
    let offer = answer_until_audio(&mut bob, &creds, &fp).await;
    let carol_creds = IceCreds::new("CarolEu1", "carolpassword0123456789");
    let carol_offer = answer_until_audio(&mut carol, &carol_creds, &fp).await;
    let c_media = redis.cli(&["HGET", "sl:node:c", "media"]);
    let a_media = redis.cli(&["HGET", "sl:node:a", "media"]);
    println!(
        "bob (us) offered {}, carol (eu) offered {} (A {a_media}, C {c_media}); media_node: {:?}",
        candidate(&offer),
        candidate(&carol_offer),
        media_nodes(a.addr).await
    );
    assert_eq!(candidate(&offer).to_string(), c_media);
    assert_eq!(candidate(&carol_offer).to_string(), a_media);
    assert_eq!(media_node_of(a.addr, "bob").await, "c");
    assert_eq!(media_node_of(a.addr, "carol").await, "a");
    let sub_stop = Arc::new(AtomicBool::new(false));
    let (sub, rx) = subscribe_thread(&offer, creds, cert, Arc::clone(&sub_stop));
    let t = until("bob's media via C", Duration::from_secs(10), async || {
        rx.got.load(Ordering::Relaxed) >= 50
    })
    .await;
    println!("bob received 50 packets via C within {t:?}");
    let (_, _, text) = http_raw(a.addr, "GET", "/metrics", &[], "").await;
    assert!(
        text.contains("sluice_cascade_edge_placements_total{reason=\"region\"} 1"),
        "{text}"
    );
    sub_stop.store(true, Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    let _ = (sub.join(), alice.thread.join());
    drop(alice.ws);
    a.stop();
    c.stop();
}
