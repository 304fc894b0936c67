//! Issue 15, Build point 7, through real nodes: two `sluice up` cluster nodes (each with its own
//! `sluice-dataplane`, one worker) on one real `redis-server`; alice publishes Opus from a
//! `TestPeer` (ICE, DTLS, SRTP) in a room on node a and bob receives it. `redis-server` is
//! SIGKILLed for four leases and started again empty on the same socket. Through the whole
//! 20 s window the media keeps flowing (longest stall and received share printed and
//! asserted), nobody is told to leave, a new room answers `503` + `Retry-After` during the
//! outage, and afterwards the room is homed on a again and a join through b is redirected
//! there.

#[path = "../../control/tests/api_support/mod.rs"]
mod api_support;
#[path = "../../control/tests/cluster_support/mod.rs"]
mod cluster_support;
mod node_support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use api_support::*;
use cluster_support::{free_port, Redis};
use node_support::*;
use serde_json::json;
use sluice_control::auth::Role;

const LEASE_MS: u64 = 1500;

/// A `sluice up` cluster node in a region of its own (rooms joined through it stay on it).
fn start_node(redis: &Redis, dir: &std::path::Path, id: &str) -> Sluice {
    let http = free_port();
    let media = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = dir.join(format!("{id}.toml"));
    std::fs::write(
        &config,
        format!(
            "[control]\nhttp = \"127.0.0.1:{http}\"\nstate_file = \"{}\"\n\
             [control.api_keys]\n{KEY} = \"{SECRET}\"\n\
             [dataplane]\ncontrol_socket = \"{}\"\nworkers = [0]\nbind = \"127.0.0.1\"\n\
             port = {media}\nio = \"socket\"\nbuffers_per_worker = 512\n\
             [cluster]\nredis = \"{}\"\nnode_id = \"{id}\"\nregion = \"r-{id}\"\n\
             advertise = \"http://127.0.0.1:{http}\"\nlease_ms = {LEASE_MS}\n",
            dir.join(format!("{id}-state.json")).display(),
            dir.join(format!("{id}-run")).join("dp.sock").display(),
            redis.url()
        ),
    )
    .unwrap();
    Sluice::start(&config, &[])
}

async fn wait_ready(addr: SocketAddr, nodes: usize) {
    let a = auth_header(&admin());
    let t0 = Instant::now();
    loop {
        let ready = http(addr, "GET", "/readyz", &[], "").await.0 == 200;
        let (s, v) = http(addr, "GET", "/api/cluster", &[("Authorization", &a)], "").await;
        if ready
            && s == 200
            && v["serving"] == true
            && v["nodes"]
                .as_array()
                .is_some_and(|n| n.len() == nodes && n.iter().all(|n| n["state"] == "serving"))
        {
            return;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "node {addr} not ready: {v}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn join(addr: SocketAddr, room: &str, identity: &str, role: Role) -> Ws {
    let t = token(room, identity, role);
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/rtc?access_token={t}"))
        .await
        .unwrap();
    send(&mut ws, json!({"type": "join"})).await;
    recv_type(&mut ws, "joined").await;
    ws
}

/// Samples `got` every 20 ms for `d`: (packets received, longest time without one).
async fn watch(got: &AtomicU64, d: Duration) -> (u64, Duration) {
    let t0 = Instant::now();
    let first = got.load(Ordering::Relaxed);
    let (mut last, mut last_change, mut stall) = (first, Instant::now(), Duration::ZERO);
    while t0.elapsed() < d {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let n = got.load(Ordering::Relaxed);
        if n != last {
            (last, last_change) = (n, Instant::now());
        }
        stall = stall.max(last_change.elapsed());
    }
    (last - first, stall)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn media_flows_through_a_redis_outage_and_the_room_stays_home() {
    let mut redis = Redis::start();
    let dir = tempfile::tempdir().unwrap();
    let a = start_node(&redis, dir.path(), "a");
    let b = start_node(&redis, dir.path(), "b");
    wait_ready(a.addr, 2).await;
    wait_ready(b.addr, 2).await;
    let mut alice = join(a.addr, "m", "alice", Role::Host).await;
    let mut bob = join(a.addr, "m", "bob", Role::Controller).await;
    let mut carol = join(b.addr, "n", "carol", Role::Host).await;
    assert_eq!(redis.cli(&["HGET", "sl:room:m", "home"]), "a");
    assert_eq!(redis.cli(&["HGET", "sl:room:n", "home"]), "b");
    for (cid, kind, source) in [("a", "audio", "microphone"), ("v", "video", "camera")] {
        send(
            &mut alice,
            json!({"type": "publish", "cid": cid, "kind": kind, "source": source}),
        )
        .await;
        recv_type(&mut alice, "track_published").await;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let (sent, got) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let media = call::negotiate_and_run(
        &mut alice,
        &mut bob,
        "O",
        stop.clone(),
        sent.clone(),
        got.clone(),
    )
    .await;
    let t0 = Instant::now();
    while got.load(Ordering::Relaxed) < 50 {
        assert!(
            t0.elapsed() < Duration::from_secs(15),
            "no media before the outage"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (sent0, got0) = (sent.load(Ordering::Relaxed), got.load(Ordering::Relaxed));
    let window = Instant::now();
    let (_, stall_before) = watch(&got, Duration::from_secs(5)).await;

    // Outage: SIGKILL, four leases long.
    redis.stop();
    let killed = Instant::now();
    let (during, stall_during) = watch(&got, Duration::from_millis(4 * LEASE_MS)).await;
    let adm = auth_header(&admin());
    let h = [
        ("Authorization", adm.as_str()),
        ("Content-Type", "application/json"),
    ];
    let (s, head, body) = http_raw(a.addr, "POST", "/api/rooms", &h, r#"{"name":"fresh"}"#).await;
    assert_eq!(s, 503, "{body}");
    assert!(
        head.to_ascii_lowercase().contains("retry-after: 1"),
        "{head}"
    );
    for (ws, who) in [
        (&mut alice, "alice"),
        (&mut bob, "bob"),
        (&mut carol, "carol"),
    ] {
        still_in_call(ws, who).await;
    }
    let down_for = killed.elapsed();

    // Back, empty.
    redis.restart();
    let restarted = Instant::now();
    // Both nodes serve again (registered, rooms re-claimed); nobody was told to leave.
    wait_ready(a.addr, 2).await;
    wait_ready(b.addr, 2).await;
    let serving = restarted.elapsed();
    for (ws, who) in [
        (&mut alice, "alice"),
        (&mut bob, "bob"),
        (&mut carol, "carol"),
    ] {
        still_in_call(ws, who).await;
    }
    let rehomed = loop {
        if redis.cli(&["HGET", "sl:room:m", "home"]) == "a"
            && redis.cli(&["HGET", "sl:room:n", "home"]) == "b"
        {
            break restarted.elapsed();
        }
        assert!(
            restarted.elapsed() < Duration::from_secs(10),
            "rooms not homed again"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let (after, stall_after) = watch(&got, Duration::from_secs(9)).await;
    for (ws, who) in [
        (&mut alice, "alice"),
        (&mut bob, "bob"),
        (&mut carol, "carol"),
    ] {
        still_in_call(ws, who).await;
    }
    assert_eq!(redis.cli(&["HGET", "sl:room:m", "epoch"]), "2");
    // A join of m through b goes to a (not placed anew on b).
    let t = token("m", "dave", Role::Viewer);
    let (mut ws, _) =
        tokio_tungstenite::connect_async(format!("ws://{}/rtc?access_token={t}", b.addr))
            .await
            .unwrap();
    send(&mut ws, json!({"type": "join"})).await;
    let r = recv_type(&mut ws, "redirect").await;
    assert_eq!(r["url"], format!("ws://{}/rtc", a.addr), "{r}");

    let window = window.elapsed();
    stop.store(true, Ordering::Relaxed);
    media.join().expect("media thread");
    let (sent_n, got_n) = (
        sent.load(Ordering::Relaxed) - sent0,
        got.load(Ordering::Relaxed) - got0,
    );
    let share = got_n as f64 / sent_n.max(1) as f64;
    let stall = stall_before.max(stall_during).max(stall_after);
    println!(
        "redis outage with media: down {down_for:?} (lease {LEASE_MS} ms); bob got {during} packets \
         during it, {after} in the 9 s after; over the whole window ({:?}) {got_n} of {sent_n} sent ({:.1} %), \
         longest stall {stall:?} (before {stall_before:?}, during {stall_during:?}, after {stall_after:?}); \
         both nodes serving {serving:?} and room m homed on a again {rehomed:?} after the restart (epoch 2); nobody told to leave",
        window,
        share * 100.0
    );
    assert!(during > 50, "media during the outage: {during} packets");
    assert!(share >= 0.95, "received {got_n} of {sent_n}");
    assert!(
        stall < Duration::from_millis(500),
        "longest stall {stall:?}"
    );
    drop((a, b));
}
