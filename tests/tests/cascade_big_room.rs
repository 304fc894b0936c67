//! A room bigger than a node (issue 16 Tests, "Big room"; docs/cluster.md "Cascading"): three
//! real `sluice up` nodes (each its own one-worker `sluice-dataplane`, one trunk secret file)
//! on a real `redis-server`, `cluster.capacity` = 3 on each. alice publishes Opus on A (ICE,
//! DTLS, SRTP through the WebSocket signaling of A, which becomes the room's home); eight
//! subscribers (`TestPeer`s answering the subscriber offer) join the room through A, B and C in
//! turn, redirected to the home for their signaling; once A is full their subscriber sessions
//! spill over onto the other nodes' dataplanes (`media_node` in the participants list).
//!
//! Asserted and printed: all three nodes carry subscribers; over a 5 s window every subscriber
//! receives ≥ 95 % of what alice sent with no gap over 500 ms; each of A's trunks forwarded each
//! published packet once (`forwarded / published` per trunk, from `GET /internal/cascade` on
//! A), whatever the number of subscribers behind it.

#[path = "../../control/tests/api_support/mod.rs"]
mod api_support;
mod cascade_support;
#[path = "../../control/tests/cluster_support/mod.rs"]
mod cluster_support;
mod node_support;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use api_support::*;
use cascade_support::*;
use cluster_support::Redis;
use node_support::*;
use rtp_core::forward::{Codec as CoreCodec, MediaKind as CoreKind};
use serde_json::{json, Value};
use sluice_control::auth::Role;
use sluice_dataplane::testpeer::{generate_cert, IceCreds, TestPeer, WebRtcPeerConfig};

const LEASE_MS: u64 = 2000;
const GRACE_MS: u64 = 2000;
const CAPACITY: u64 = 3;
const SUBSCRIBERS: usize = 8;
const WINDOW: Duration = Duration::from_secs(5);
const MAX_GAP: Duration = Duration::from_millis(500);

/// What one subscriber received of alice's audio: (arrival, sequence number).
type Arrivals = Arc<Mutex<Vec<(Instant, u16)>>>;

/// A WebSocket join of `room` as `identity` through `addr`, following redirects (at most 2)
/// as `sluice.js` does: the socket, joined, and the node it joined at.
async fn ws_join(addr: SocketAddr, room: &str, identity: &str) -> (Ws, String) {
    let t = token(room, identity, Role::Viewer);
    let mut url = format!("ws://{addr}/rtc");
    for _ in 0..3 {
        let (mut ws, _) = tokio_tungstenite::connect_async(format!("{url}?access_token={t}"))
            .await
            .unwrap();
        send(&mut ws, json!({"type": "join"})).await;
        loop {
            let v = next_json(&mut ws).await;
            match v["type"].as_str() {
                Some("joined") => return (ws, url),
                Some("redirect") => {
                    url = v["url"].as_str().expect("redirect url").to_owned();
                    break;
                }
                Some("error") => panic!("{identity}'s join through {url}: {v}"),
                _ => {}
            }
        }
    }
    panic!("{identity}: more than 2 redirects");
}

/// The next JSON text message (15 s at most).
async fn next_json(ws: &mut Ws) -> Value {
    use futures_util::StreamExt;
    loop {
        let m = tokio::time::timeout(Duration::from_secs(15), ws.next())
            .await
            .expect("a message within 15 s")
            .expect("socket open")
            .expect("a message");
        if let tokio_tungstenite::tungstenite::Message::Text(t) = m {
            return serde_json::from_str(&t).unwrap();
        }
    }
}

/// Answers the subscriber offers on `ws` until one carries alice's two tracks, then receives
/// her audio on a thread until `stop`: what arrived, the thread, and the dataplane the offer
/// named.
async fn subscribe(
    ws: &mut Ws,
    tag: usize,
    stop: Arc<AtomicBool>,
) -> (Arrivals, JoinHandle<()>, SocketAddr) {
    let creds = IceCreds::new(format!("Sub{tag:04}"), "subscriberpassword0123456");
    let cert = generate_cert().unwrap();
    let fp = cert.fingerprint().to_sdp();
    let mut offer;
    loop {
        offer = recv_type(ws, "offer").await["sdp"]
            .as_str()
            .unwrap()
            .to_owned();
        let a = rewrite(&offer, &creds, &fp, "sendonly", "recvonly", Some("active"));
        send(ws, json!({"type": "answer", "pc": "subscriber", "sdp": a})).await;
        if offer.matches("m=").count() >= 2 {
            break;
        }
    }
    let (pt, ssrc) = audio_stream(&offer);
    let cfg = WebRtcPeerConfig {
        cert,
        ..WebRtcPeerConfig::new(
            creds,
            IceCreds::new(attr(&offer, "ice-ufrag"), attr(&offer, "ice-pwd")),
            attr(&offer, "fingerprint"),
        )
        .unwrap()
    };
    let server = candidate(&offer);
    let got: Arrivals = Arc::default();
    let out = Arc::clone(&got);
    let thread = std::thread::spawn(move || {
        let Ok(mut peer) = TestPeer::connect(server, &cfg, Duration::from_secs(10)) else {
            return;
        };
        if peer
            .expect_stream(CoreKind::Audio, CoreCodec::Opus, 48_000, pt, ssrc, None)
            .is_err()
        {
            return;
        }
        let end = Instant::now() + Duration::from_secs(60);
        while !stop.load(Ordering::Relaxed) && Instant::now() < end {
            match peer.recv_media(Duration::from_millis(20)) {
                Ok(Some(m)) if m.ssrc == ssrc => out.lock().unwrap().push((Instant::now(), m.seq)),
                Ok(_) => {}
                Err(_) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
    });
    (got, thread, server)
}

/// `forwarded` of each of the trunks of the node at `addr`, by peer.
async fn trunks_forwarded(addr: SocketAddr) -> BTreeMap<String, u64> {
    let (_, v) = call(addr, "GET", "/internal/cascade", "").await;
    v["trunks"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| {
            (
                t["peer"].as_str().unwrap_or_default().to_owned(),
                t["stats"]["forwarded"].as_u64().unwrap_or(0),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_spills_over_three_nodes_and_each_packet_crosses_each_trunk_once() {
    let redis = Redis::start();
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("cluster.secret");
    std::fs::write(&secret, [5u8; 32]).unwrap();
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let ids = ["a", "b", "c"];
    let extra = format!("capacity = {CAPACITY}");
    let nodes: Vec<Sluice> = ids
        .iter()
        .zip(&dirs)
        .map(|(id, d)| sluice_node(&redis, id, &secret, d.path(), (LEASE_MS, GRACE_MS), &extra))
        .collect();
    let a = nodes[0].addr;
    until(
        "three nodes live with media",
        Duration::from_secs(15),
        async || {
            let (_, v) = call(a, "GET", "/api/cluster", "").await;
            v["nodes"].as_array().map_or(0, Vec::len) == 3
                && ids.iter().all(|id| {
                    redis
                        .cli(&["HGET", &format!("sl:node:{id}"), "media"])
                        .contains(':')
                })
        },
    )
    .await;

    let room = "big";
    let stop = Arc::new(AtomicBool::new(false));
    let (_alice_ws, publisher, sent, _sid) = publish(a, room, "alice", Arc::clone(&stop)).await;
    assert_eq!(
        redis.cli(&["HGET", &format!("sl:room:{room}"), "home"]),
        "a"
    );

    // Each node's dataplane media address (what a subscriber offer's candidate names).
    let media_of: BTreeMap<SocketAddr, &str> = ids
        .iter()
        .map(|id| {
            let m = redis.cli(&["HGET", &format!("sl:node:{id}"), "media"]);
            (m.parse().expect("media address"), *id)
        })
        .collect();

    // Eight subscribers, entering through a, b, c in turn (signaling redirected to the home).
    let mut subs = Vec::new();
    let joining = Instant::now();
    for i in 0..SUBSCRIBERS {
        let entry = nodes[i % 3].addr;
        let identity = format!("s{i}");
        let (mut ws, at) = ws_join(entry, room, &identity).await;
        let (got, thread, media) = subscribe(&mut ws, i, Arc::clone(&stop)).await;
        let on = media_of.get(&media).copied().unwrap_or("?");
        println!("{identity}: entered through {entry}, signaling at {at}, media at {media} ({on})");
        subs.push((identity, ws, got, thread, on));
    }
    println!(
        "{SUBSCRIBERS} subscribers joined one after the other in {:?}",
        joining.elapsed()
    );
    let first = until(
        "media at every subscriber",
        Duration::from_secs(10),
        async || {
            subs.iter()
                .all(|(_, _, g, ..)| g.lock().unwrap().len() >= 50)
        },
    )
    .await;
    println!("50 packets at all {SUBSCRIBERS} subscribers {first:?} after the last joined");

    // Where each subscriber's media session lives.
    let (s, v) = call(a, "GET", &format!("/api/rooms/{room}/participants"), "").await;
    assert_eq!(s, 200, "{v}");
    let placed: BTreeMap<String, String> = v["participants"]
        .as_array()
        .expect("participants")
        .iter()
        .map(|p| {
            (
                p["identity"].as_str().unwrap_or_default().to_owned(),
                p["media_node"].as_str().unwrap_or("(none)").to_owned(),
            )
        })
        .collect();
    let mut per_node: BTreeMap<&str, usize> = BTreeMap::new();
    for (who, n) in &placed {
        if who != "alice" {
            *per_node.entry(n.as_str()).or_default() += 1;
        }
    }
    println!("media_node: {placed:?}; subscribers per node {per_node:?} (capacity {CAPACITY})");
    let (_, _, text) = http_raw(a, "GET", "/metrics", &[], "").await;
    let placements: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("sluice_cascade_edge_placements_total{"))
        .collect();
    println!("A: {}", placements.join(" "));
    for (identity, .., on) in &subs {
        let named = placed.get(identity).map_or("", String::as_str);
        assert!(
            ids.contains(&named),
            "{identity} has no media_node: {placed:?}"
        );
        assert_eq!(
            named, *on,
            "{identity}: media_node vs the node its offer's candidate is on"
        );
    }
    assert!(
        ids.iter()
            .all(|id| per_node.get(id).is_some_and(|&n| n > 0)),
        "subscribers on all three nodes: {per_node:?}"
    );

    // The window.
    let (s0, f0) = (sent.load(Ordering::Relaxed), trunks_forwarded(a).await);
    let t0 = Instant::now();
    tokio::time::sleep(WINDOW).await;
    let (s1, f1) = (sent.load(Ordering::Relaxed), trunks_forwarded(a).await);
    let t1 = Instant::now();
    let published = s1 - s0;
    println!("window {WINDOW:?}: alice sent {published}");
    let mut short = Vec::new();
    for (identity, _, got, ..) in &subs {
        let g = got.lock().unwrap();
        let inside: Vec<Instant> = g
            .iter()
            .map(|(t, _)| *t)
            .filter(|t| (t0..t1).contains(t))
            .collect();
        let share = inside.len() as f64 / published as f64;
        let gap = std::iter::once(t0)
            .chain(inside.iter().copied())
            .chain(std::iter::once(t1))
            .collect::<Vec<_>>()
            .windows(2)
            .map(|w| w[1] - w[0])
            .max()
            .unwrap_or(WINDOW);
        println!(
            "{identity} (on {}): {} packets ({:.1} %), longest gap {gap:?}",
            placed[identity],
            inside.len(),
            share * 100.0
        );
        if share < 0.95 || gap > MAX_GAP {
            short.push(identity.clone());
        }
    }
    let mut crossings = BTreeMap::new();
    for (peer, f) in &f1 {
        let per = (f - f0.get(peer).copied().unwrap_or(0)) as f64 / published as f64;
        println!(
            "A's trunk to {peer}: forwarded {} / published {published} = {per:.3} ({} subscribers behind it)",
            f - f0.get(peer).copied().unwrap_or(0),
            per_node.get(peer.as_str()).copied().unwrap_or(0)
        );
        crossings.insert(peer.clone(), per);
    }
    stop.store(true, Ordering::Relaxed);
    let _ = publisher.join();
    for (_, _, _, thread, _) in subs {
        let _ = thread.join();
    }
    assert!(
        short.is_empty(),
        "short of media (< 95 % or a gap > {MAX_GAP:?}): {short:?}"
    );
    for id in ["b", "c"] {
        let per = crossings.get(id).copied();
        assert!(
            per.is_some_and(|p| (0.95..=1.05).contains(&p)),
            "each packet crosses the trunk to {id} once: {per:?}"
        );
    }
    drop(nodes);
}
