//! Two control daemons as one cluster on a real `redis-server` (no dataplane: rooms and
//! signaling only): placement, redirects, forwarding, the room list across nodes, events
//! across nodes, Redis unavailable. The placement race and failover on the Redis scripts
//! themselves are in `cluster_registry.rs`.

mod api_support;
mod cluster_support;
mod standin_support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use api_support::*;
use cluster_support::{draft, free_port, Redis};
use futures_util::StreamExt;
use serde_json::{json, Value};
use sluice_control::auth::Role;
use sluice_control::cluster::ClusterConfig;
use sluice_control::server::Server;
use tokio::net::UnixListener;
use tokio_tungstenite::tungstenite::Message;

fn config(redis: &Redis, id: &str, port: u16) -> ClusterConfig {
    let d = draft(redis, id, &format!("http://127.0.0.1:{port}"), 1500);
    d.finish().unwrap().unwrap()
}

async fn node(redis: &Redis, id: &str) -> Server {
    node_in(redis, id, "default").await
}

async fn node_in(redis: &Redis, id: &str, region: &str) -> Server {
    let port = free_port();
    let mut c = config(redis, id, port);
    c.region = region.to_owned();
    start_with(move |o| {
        o.http = SocketAddr::from(([127, 0, 0, 1], port));
        o.cluster = Some(c);
    })
    .await
}

/// Waits until `addr` sees `n` live nodes.
async fn wait_nodes(addr: SocketAddr, n: usize) {
    let a = auth_header(&admin());
    let started = Instant::now();
    loop {
        let (s, v) = http(addr, "GET", "/api/cluster", &[("Authorization", &a)], "").await;
        if s == 200 && v["nodes"].as_array().map_or(0, Vec::len) == n && v["serving"] == true {
            return;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "cluster: {v}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn any_node_serves_a_room_homed_on_another() {
    let redis = Redis::start();
    let a = node(&redis, "a").await;
    let b = node(&redis, "b").await;
    wait_nodes(a.addr, 2).await;
    wait_nodes(b.addr, 2).await;
    let adm = auth_header(&admin());
    let h = [
        ("Authorization", adm.as_str()),
        ("Content-Type", "application/json"),
    ];

    // Created through B: B is its home (an idle cluster keeps a room where the call landed).
    let r = http(b.addr, "POST", "/api/rooms", &h, r#"{"name":"m"}"#).await;
    assert_eq!(r.0, 201, "{r:?}");
    assert_eq!(redis.cli(&["HGET", "sl:room:m", "home"]), "b");
    // Created again through A: forwarded to the home, which refuses the duplicate.
    let r = http(a.addr, "POST", "/api/rooms", &h, r#"{"name":"m"}"#).await;
    assert_ne!(r.0, 201, "{r:?}");

    // WebSocket join through A: `redirect` to B, then the join on B works.
    let t = token("m", "alice", Role::Host);
    let url = join_redirected(a.addr, "m", "alice").await;
    assert_eq!(url, format!("ws://{}/rtc", b.addr));
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("{url}?access_token={t}"))
        .await
        .unwrap();
    send(&mut ws, json!({"type": "join"})).await;
    recv_type(&mut ws, "joined").await;

    // WHIP/WHEP through A: 307 to the same path on B.
    let wt = auth_header(&token("m", "cam", Role::Host));
    let (s, head, _) = http_raw(
        a.addr,
        "POST",
        "/whip/m",
        &[("Authorization", &wt), ("Content-Type", "application/sdp")],
        "v=0\r\n",
    )
    .await;
    assert_eq!(s, 307);
    assert!(
        head.to_ascii_lowercase()
            .contains(&format!("location: http://{}/whip/m", b.addr)),
        "{head}"
    );

    // Participants through A: forwarded to B.
    let r = http(a.addr, "GET", "/api/rooms/m/participants", &h, "").await;
    assert_eq!(r.0, 200, "{r:?}");
    assert_eq!(r.1["participants"][0]["identity"], "alice", "{r:?}");

    // A room of A's, and the list through either node shows both with their node.
    let r = http(a.addr, "POST", "/api/rooms", &h, r#"{"name":"n"}"#).await;
    assert_eq!(r.0, 201, "{r:?}");
    for addr in [a.addr, b.addr] {
        let (s, v) = http(addr, "GET", "/api/rooms", &h, "").await;
        assert_eq!(s, 200, "{v}");
        let mut seen: Vec<(String, String)> = v["rooms"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["name"].as_str().unwrap().to_owned(),
                    r["node"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        seen.sort();
        assert_eq!(
            seen,
            vec![("m".into(), "b".into()), ("n".into(), "a".into())],
            "{v}"
        );
    }

    // Metrics name the redirects.
    let (_, _, metrics) = http_raw(a.addr, "GET", "/metrics", &[], "").await;
    assert!(metrics.contains("sluice_cluster_nodes 2"), "{metrics}");
    assert!(
        metrics.contains("sluice_cluster_redirects_total{kind=\"ws\"} 1"),
        "{metrics}"
    );
    drop(ws);
    a.stop();
    b.stop();
}

#[tokio::test]
async fn sse_on_any_node_sees_each_event_once() {
    let redis = Redis::start();
    let a = node(&redis, "a").await;
    let b = node(&redis, "b").await;
    wait_nodes(a.addr, 2).await;
    wait_nodes(b.addr, 2).await;
    let adm = auth_header(&admin());
    // Subscribe on A to the all-rooms stream.
    let mut s = tokio::net::TcpStream::connect(a.addr).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    s.write_all(
        format!("GET /api/events HTTP/1.1\r\nHost: t\r\nAuthorization: {adm}\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    // A room on B with one participant (events produced on B only).
    let h = [
        ("Authorization", adm.as_str()),
        ("Content-Type", "application/json"),
    ];
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        http(b.addr, "POST", "/api/rooms", &h, r#"{"name":"m"}"#)
            .await
            .0,
        201
    );
    let _ws = join(b.addr, "alice", Role::Host).await;
    let mut text = String::new();
    let started = Instant::now();
    while !text.contains("participant_joined") {
        let mut buf = [0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .expect("SSE event from the other node within 5 s")
            .unwrap();
        assert!(n > 0 && started.elapsed() < Duration::from_secs(10));
        text.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    assert_eq!(text.matches("event: room_created").count(), 1, "{text}");
    assert_eq!(
        text.matches("event: participant_joined").count(),
        1,
        "{text}"
    );
    assert!(text.contains("\"room\":\"m\""), "{text}");
    // Redis content is input: a malformed and an oversized message are dropped and counted.
    redis.cli(&["PUBLISH", "sl:events", "not json"]);
    let big = format!("{{\"node\":\"x\",\"pad\":\"{}\"}}", "x".repeat(300 * 1024));
    redis.cli_stdin(&["PUBLISH", "sl:events"], big.as_bytes());
    let started = Instant::now();
    loop {
        let (_, _, m) = http_raw(a.addr, "GET", "/metrics", &[], "").await;
        if m.contains("sluice_cluster_events_dropped_total 2") {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(5), "{m}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    a.stop();
    b.stop();
}

#[tokio::test]
async fn redis_down_gives_503_and_hosted_rooms_keep_working() {
    let mut redis = Redis::start();
    let a = node(&redis, "a").await;
    wait_nodes(a.addr, 1).await;
    let mut ws = join(a.addr, "alice", Role::Host).await;
    redis.stop();
    let adm = auth_header(&admin());
    let h = [
        ("Authorization", adm.as_str()),
        ("Content-Type", "application/json"),
    ];
    // A new room needs placement: 503, Retry-After, the field named.
    let (s, head, body) = http_raw(a.addr, "POST", "/api/rooms", &h, r#"{"name":"new"}"#).await;
    assert_eq!(s, 503, "{body}");
    assert!(
        head.to_ascii_lowercase().contains("retry-after: 1"),
        "{head}"
    );
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error"]["field"], "cluster", "{v}");
    // The hosted room still answers its client.
    send(&mut ws, json!({"type": "ping", "t": 1})).await;
    recv_type(&mut ws, "pong").await;
    let t = token("other", "bob", Role::Host);
    let (mut ws2, _) =
        tokio_tungstenite::connect_async(format!("ws://{}/rtc?access_token={t}", a.addr))
            .await
            .unwrap();
    send(&mut ws2, json!({"type": "join"})).await;
    let m = tokio::time::timeout(Duration::from_secs(10), ws2.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let Message::Text(m) = m else { panic!("{m:?}") };
    let v: Value = serde_json::from_str(&m).unwrap();
    assert_eq!(v["code"], "unavailable", "{v}");
    assert_eq!(v["field"], "cluster", "{v}");
    let (_, _, metrics) = http_raw(a.addr, "GET", "/metrics", &[], "").await;
    assert!(
        !metrics.contains("sluice_cluster_redis_errors_total 0"),
        "{metrics}"
    );
    a.stop();
}

#[tokio::test]
async fn a_room_taken_over_from_a_dead_node_keeps_its_settings() {
    let redis = Redis::start();
    let a = node(&redis, "a").await;
    let b = node(&redis, "b").await;
    wait_nodes(a.addr, 2).await;
    let adm = auth_header(&admin());
    let h = [
        ("Authorization", adm.as_str()),
        ("Content-Type", "application/json"),
    ];
    let r = http(
        a.addr,
        "POST",
        "/api/rooms",
        &h,
        r#"{"name":"k","config":{"max_participants":7}}"#,
    )
    .await;
    assert_eq!(r.0, 201, "{r:?}");
    assert_eq!(redis.cli(&["HGET", "sl:room:k", "home"]), "a");
    // A stops renewing (its HTTP side is gone too): B takes the room at the next join once
    // the lease ran out.
    let stopped = Instant::now();
    a.stop();
    let t = token("k", "bob", Role::Host);
    let joined_at = loop {
        let (mut ws, _) =
            tokio_tungstenite::connect_async(format!("ws://{}/rtc?access_token={t}", b.addr))
                .await
                .unwrap();
        send(&mut ws, json!({"type": "join"})).await;
        let m = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        let Message::Text(m) = m else { panic!("{m:?}") };
        let v: Value = serde_json::from_str(&m).unwrap();
        if v["type"] == "joined" {
            break stopped.elapsed();
        }
        assert_eq!(v["type"], "redirect", "{v}");
        assert!(stopped.elapsed() < Duration::from_secs(10), "no takeover");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    println!("takeover: b hosts k {joined_at:?} after a stopped (lease 1500 ms)");
    assert_eq!(redis.cli(&["HGET", "sl:room:k", "home"]), "b");
    assert_eq!(redis.cli(&["HGET", "sl:room:k", "epoch"]), "2");
    let (s, v) = http(b.addr, "GET", "/api/rooms/k", &h, "").await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["config"]["max_participants"], 7, "{v}");
    b.stop();
}

#[tokio::test]
async fn a_clean_shutdown_hands_rooms_over_at_once() {
    let redis = Redis::start();
    let a = node(&redis, "a").await;
    let b = node(&redis, "b").await;
    wait_nodes(a.addr, 2).await;
    let adm = auth_header(&admin());
    let h = [
        ("Authorization", adm.as_str()),
        ("Content-Type", "application/json"),
    ];
    assert_eq!(
        http(a.addr, "POST", "/api/rooms", &h, r#"{"name":"s"}"#)
            .await
            .0,
        201
    );
    a.shutdown().await;
    // No lease to wait for: the next join through B is joined there at once, and the room
    // kept its settings (it was not deleted, its node left).
    let left = Instant::now();
    let _ws = join_room(b.addr, "s", "bob").await;
    assert!(
        left.elapsed() < Duration::from_millis(1000),
        "{:?}",
        left.elapsed()
    );
    assert_eq!(redis.cli(&["HGET", "sl:room:s", "home"]), "b");
    let r = http(b.addr, "POST", "/api/rooms", &h, r#"{"name":"s"}"#).await;
    assert_eq!(r.0, 409, "{r:?}");
    b.stop();
}

async fn join_room(addr: SocketAddr, room: &str, identity: &str) -> Ws {
    let t = token(room, identity, Role::Host);
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/rtc?access_token={t}"))
        .await
        .unwrap();
    send(&mut ws, json!({"type": "join"})).await;
    recv_type(&mut ws, "joined").await;
    ws
}

/// A host's WebSocket join for `room` through `addr`, answered `redirect`: the URL it names.
async fn join_redirected(addr: SocketAddr, room: &str, identity: &str) -> String {
    let t = token(room, identity, Role::Host);
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/rtc?access_token={t}"))
        .await
        .unwrap();
    send(&mut ws, json!({"type": "join"})).await;
    let m = recv_type(&mut ws, "redirect").await;
    m["url"].as_str().expect("redirect url").to_owned()
}

#[tokio::test]
async fn a_draining_node_hands_its_rooms_and_clients_to_another() {
    let redis = Redis::start();
    let a = node(&redis, "a").await;
    let b = node(&redis, "b").await;
    wait_nodes(a.addr, 2).await;
    let mut alice = join_room(a.addr, "dr", "alice").await;
    assert_eq!(redis.cli(&["HGET", "sl:room:dr", "home"]), "a");
    let started = Instant::now();
    a.drain();
    // Alice is told to reconnect; joining again through a lands on b.
    let leave = recv_type(&mut alice, "leave").await;
    assert_eq!(leave["reason"], "reconnect", "{leave}");
    let t = token("dr", "alice", Role::Host);
    let (mut ws, _) =
        tokio_tungstenite::connect_async(format!("ws://{}/rtc?access_token={t}", a.addr))
            .await
            .unwrap();
    send(&mut ws, json!({"type": "join"})).await;
    let r = recv_type(&mut ws, "redirect").await;
    assert_eq!(r["url"], format!("ws://{}/rtc", b.addr));
    let _alice = join_room(b.addr, "dr", "alice").await;
    assert_eq!(redis.cli(&["HGET", "sl:room:dr", "home"]), "b");
    tokio::time::timeout(Duration::from_secs(10), a.drained())
        .await
        .expect("a drained: its room emptied");
    println!(
        "drain: alice moved to b and a drained {:?} after the drain began",
        started.elapsed()
    );
    let (_, v) = http(
        b.addr,
        "GET",
        "/api/cluster",
        &[("Authorization", &auth_header(&admin()))],
        "",
    )
    .await;
    let a_state = v["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["id"] == "a")
        .map(|n| n["state"].clone());
    assert_eq!(a_state, Some(json!("draining")), "{v}");
    a.stop();
    b.stop();
}

#[tokio::test]
async fn every_node_names_the_same_node_in_the_placement_api() {
    let redis = Redis::start();
    let a = node_in(&redis, "a", "eu").await;
    let b = node_in(&redis, "b", "eu").await;
    let c = node_in(&redis, "c", "us").await;
    for n in [&a, &b, &c] {
        wait_nodes(n.addr, 3).await;
    }
    let adm = auth_header(&admin());
    let h = [
        ("Authorization", adm.as_str()),
        ("Content-Type", "application/json"),
    ];
    // A participant in "us" asks node a: the room goes to c, the only node in "us".
    let mut answers = Vec::new();
    for n in [&a, &b, &c] {
        let (s, v) = http(
            n.addr,
            "POST",
            "/api/rooms/p1/placement",
            &h,
            r#"{"identity":"zoe","region":"us"}"#,
        )
        .await;
        assert_eq!(s, 200, "{v}");
        answers.push(v);
    }
    for v in &answers {
        assert_eq!(v["node"], "c", "{v}");
        assert_eq!(v["region"], "us", "{v}");
        assert_eq!(v["whip"], format!("http://{}/whip/p1", c.addr), "{v}");
    }
    assert_eq!(redis.cli(&["HGET", "sl:room:p1", "epoch"]), "1");
    // Fields are checked.
    let r = http(
        a.addr,
        "POST",
        "/api/rooms/p1/placement",
        &h,
        r#"{"region":"us"}"#,
    )
    .await;
    assert_error(&r, 400, "invalid", Some("identity"));
    let r = http(
        a.addr,
        "POST",
        "/api/rooms/p1/placement",
        &h,
        r#"{"identity":"z","region":7}"#,
    )
    .await;
    assert_error(&r, 400, "invalid", Some("region"));
    for n in [a, b, c] {
        n.stop();
    }
}

/// The `state` `node` has in `via`'s `/api/cluster`, polled until it is `want` (5 s at most).
async fn wait_state(via: SocketAddr, node: &str, want: &str) {
    let a = auth_header(&admin());
    let started = Instant::now();
    loop {
        let (_, v) = http(via, "GET", "/api/cluster", &[("Authorization", &a)], "").await;
        let state = v["nodes"]
            .as_array()
            .and_then(|n| n.iter().find(|n| n["id"] == node))
            .map(|n| n["state"].clone());
        if state.as_ref().is_some_and(|s| s == want) {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{node} is not {want}: {v}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A node whose dataplane link is down (not started yet, or being restarted by its supervisor)
/// is listed `starting` and placed no rooms: a room created or joined through it goes to a node
/// that can take sessions, where before it stayed on the node itself (an idle cluster keeps a
/// room where the call landed) and every join answered `rejected: dataplane unavailable` — what
/// a failover's rejoin met on a node whose dataplane could not start. Once its dataplane says
/// hello the node is `serving` again at once (not at the next renewal) and is placed rooms.
#[tokio::test]
async fn a_node_without_its_dataplane_is_placed_no_rooms() {
    let redis = Redis::start();
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("dataplane.sock");
    let port = free_port();
    let cfg = config(&redis, "a", port);
    let path = socket.clone();
    let a = start_with(move |o| {
        o.http = SocketAddr::from(([127, 0, 0, 1], port));
        o.cluster = Some(cfg);
        o.dataplane_socket = Some(path);
    })
    .await;
    let b = node(&redis, "b").await;
    wait_nodes(a.addr, 2).await;
    wait_nodes(b.addr, 2).await;
    wait_state(b.addr, "a", "starting").await;
    wait_state(a.addr, "b", "serving").await;
    let adm = auth_header(&admin());
    let h = [
        ("Authorization", adm.as_str()),
        ("Content-Type", "application/json"),
    ];

    let r = http(a.addr, "POST", "/api/rooms", &h, r#"{"name":"r1"}"#).await;
    assert_eq!(r.0, 201, "{r:?}");
    assert_eq!(redis.cli(&["HGET", "sl:room:r1", "home"]), "b");
    let url = join_redirected(a.addr, "r2", "alice").await;
    assert_eq!(url, format!("ws://{}/rtc", b.addr));
    assert_eq!(redis.cli(&["HGET", "sl:room:r2", "home"]), "b");

    // Its dataplane comes up: `serving` within a round trip of the handshake, and the next room
    // created through it stays.
    let up = Instant::now();
    standin_support::serve(
        UnixListener::bind(&socket).unwrap(),
        "late",
        |_, reply, out| {
            let _ = out.send(reply);
        },
    );
    wait_state(b.addr, "a", "serving").await;
    println!("a: serving {:?} after its dataplane listened", up.elapsed());
    let r = http(a.addr, "POST", "/api/rooms", &h, r#"{"name":"r3"}"#).await;
    assert_eq!(r.0, 201, "{r:?}");
    assert_eq!(redis.cli(&["HGET", "sl:room:r3", "home"]), "a");
    a.stop();
    b.stop();
}
