//! The bounds on what a cluster node reads back from Redis (shared, so its content is input:
//! docs/cluster.md "Redis data model"), each hit: the node list (`MAX_NODES`, and a node with an
//! over-long field), a node's room cap (`MAX_ROOMS_PER_NODE`), an over-long event message, an
//! over-long stored room config, a forwarded request body over its limit, and the event publish
//! queue filled while Redis is stuck (the forwarded answer bound: `server/cluster.rs` tests). Real
//! `redis-server` on a Unix socket; control daemons in-process (no dataplane).

mod api_support;
mod cluster_support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use api_support::*;
use cluster_support::{draft, free_port, Redis};
use futures_util::StreamExt;
use serde_json::{json, Value};
use sluice_control::auth::Role;
use sluice_control::cluster::{ClusterDraft, MAX_NODES, MAX_ROOMS_PER_NODE};
use sluice_control::server::Server;
use tokio_tungstenite::tungstenite::Message;

async fn node(redis: &Redis, id: &str) -> Server {
    let port = free_port();
    let d = draft(redis, id, &format!("http://127.0.0.1:{port}"), 1500);
    let c = d.finish().unwrap().unwrap();
    start_with(move |o| {
        o.http = SocketAddr::from(([127, 0, 0, 1], port));
        o.cluster = Some(c);
    })
    .await
}

fn admin_headers() -> [(&'static str, String); 2] {
    [
        ("Authorization", auth_header(&admin())),
        ("Content-Type", "application/json".to_owned()),
    ]
}

async fn call(addr: SocketAddr, method: &str, path: &str, body: &str) -> (u16, Value) {
    let h = admin_headers();
    let h: Vec<(&str, &str)> = h.iter().map(|(k, v)| (*k, v.as_str())).collect();
    http(addr, method, path, &h, body).await
}

/// Polls `GET /api/cluster` on `addr` until `pred` holds.
async fn cluster_until(addr: SocketAddr, pred: impl Fn(&Value) -> bool) -> Value {
    let started = Instant::now();
    loop {
        let (s, v) = call(addr, "GET", "/api/cluster", "").await;
        if s == 200 && pred(&v) {
            return v;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "cluster: {v}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn nodes_of(v: &Value) -> Vec<String> {
    v["nodes"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|n| n["id"].as_str().unwrap_or("").to_owned())
                .collect()
        })
        .unwrap_or_default()
}

async fn metric(addr: SocketAddr, name: &str) -> f64 {
    let (_, _, text) = http_raw(addr, "GET", "/metrics", &[], "").await;
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn the_node_list_read_back_is_bounded() {
    let redis = Redis::start();
    let a = node(&redis, "a").await;
    cluster_until(a.addr, |v| nodes_of(v) == ["a"]).await;
    // 80 live nodes (draining: placement leaves them alone), and one whose region is longer
    // than a node field may be, whose lease ends before theirs: it is among the first read.
    let script = "local t = redis.call('TIME') \
        local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) \
        for i = 1, 80 do \
          redis.call('ZADD', 'sl:nodes', now + 600000, 'f' .. i) \
          redis.call('HSET', 'sl:node:f' .. i, 'boot', 'x', 'region', 'default', \
            'advertise', 'http://127.0.0.1:9', 'internal', 'http://127.0.0.1:9', \
            'capacity', '500', 'load', '0', 'state', 'draining') \
        end \
        redis.call('ZADD', 'sl:nodes', now + 300000, 'long') \
        redis.call('HSET', 'sl:node:long', 'boot', 'x', 'region', string.rep('r', 600), \
          'advertise', 'http://127.0.0.1:9', 'internal', 'http://127.0.0.1:9', \
          'capacity', '500', 'load', '0', 'state', 'serving') \
        return 1";
    assert_eq!(redis.cli(&["EVAL", script, "0"]), "1");
    // a (lease soonest), `long`, then 62 of the 80: `long` is dropped.
    let v = cluster_until(a.addr, |v| nodes_of(v).len() > 1).await;
    let ids = nodes_of(&v);
    assert_eq!(ids.len(), MAX_NODES - 1, "{ids:?}");
    assert!(
        ids.contains(&"a".to_owned()) && !ids.contains(&"long".to_owned()),
        "{ids:?}"
    );
    // The room list asks each node read (all but a unreachable), not all 81.
    let (s, v) = call(a.addr, "GET", "/api/rooms", "").await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        v["unreachable"].as_array().map(Vec::len),
        Some(MAX_NODES - 2),
        "{v}"
    );
    // Placement still works: the room stays on a, the only serving node read.
    let (s, v) = call(a.addr, "POST", "/api/rooms", r#"{"name":"n1"}"#).await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(redis.cli(&["HGET", "sl:room:n1", "home"]), "a");
    a.stop();
}

#[tokio::test]
async fn a_node_at_its_room_cap_is_skipped_and_a_full_cluster_answers_503() {
    let redis = Redis::start();
    let a = node(&redis, "a").await;
    let b = node(&redis, "b").await;
    cluster_until(a.addr, |v| nodes_of(v).len() == 2).await;
    let fill = |id: &str| {
        let script = format!(
            "for i = 1, {MAX_ROOMS_PER_NODE} do redis.call('SADD', KEYS[1], 'filler' .. i) end \
             return redis.call('SCARD', KEYS[1])"
        );
        let key = format!("sl:node:{id}:rooms");
        let n: u64 = redis.cli(&["EVAL", &script, "1", &key]).parse().unwrap();
        assert!(n >= MAX_ROOMS_PER_NODE, "{n}");
    };
    fill("a");
    // a is idle and the request lands on it, so it would win every tie: at its cap it is
    // skipped and the room goes to b (the claim script would refuse a).
    let (s, v) = call(a.addr, "POST", "/api/rooms", r#"{"name":"c1"}"#).await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(redis.cli(&["HGET", "sl:room:c1", "home"]), "b");
    fill("b");
    let (s, v) = call(a.addr, "POST", "/api/rooms", r#"{"name":"c2"}"#).await;
    assert_eq!(s, 503, "{v}");
    assert_eq!(v["error"]["field"], "cluster", "{v}");
    assert_eq!(redis.cli(&["EXISTS", "sl:room:c2"]), "0");
    a.stop();
    b.stop();
}

#[tokio::test]
async fn oversized_events_configs_and_forwarded_bodies_are_refused() {
    let redis = Redis::start();
    let a = node(&redis, "a").await;
    let b = node(&redis, "b").await;
    cluster_until(a.addr, |v| nodes_of(v).len() == 2).await;
    // An event message over 256 KiB on the channel: every node drops and counts it.
    let before = (
        metric(a.addr, "sluice_cluster_events_dropped_total").await,
        metric(b.addr, "sluice_cluster_events_dropped_total").await,
    );
    let published = redis.cli(&[
        "EVAL",
        "return redis.call('PUBLISH', 'sl:events', string.rep('x', 300000))",
        "0",
    ]);
    assert_eq!(published, "2", "both nodes subscribed");
    let started = Instant::now();
    while metric(a.addr, "sluice_cluster_events_dropped_total").await < before.0 + 1.0
        || metric(b.addr, "sluice_cluster_events_dropped_total").await < before.1 + 1.0
    {
        assert!(started.elapsed() < Duration::from_secs(5), "not dropped");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        metric(a.addr, "sluice_cluster_events_received_total").await,
        0.0
    );

    // A stored config over 64 KiB on a room whose home is dead: the node taking it over
    // starts it with defaults instead of parsing it.
    let config = json!({"max_participants": 7, "metadata": "m".repeat(70 * 1024)}).to_string();
    for (k, v) in [("home", "gone"), ("boot", "x"), ("epoch", "1")] {
        redis.cli(&["HSET", "sl:room:big", k, v]);
    }
    redis.cli_stdin(&["HSET", "sl:room:big", "config"], config.as_bytes());
    let t = token("big", "bob", Role::Host);
    let (mut ws, _) =
        tokio_tungstenite::connect_async(format!("ws://{}/rtc?access_token={t}", a.addr))
            .await
            .unwrap();
    send(&mut ws, json!({"type": "join"})).await;
    let m = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let Message::Text(m) = m else { panic!("{m:?}") };
    assert!(m.contains("\"joined\""), "{m}");
    assert_eq!(redis.cli(&["HGET", "sl:room:big", "epoch"]), "2");
    let (s, v) = call(a.addr, "GET", "/api/rooms/big", "").await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["config"]["max_participants"], 100, "{v}");

    // A create body over 1 MiB is refused before it is read whole or forwarded.
    let big = format!(
        r#"{{"name":"f1","metadata":"{}"}}"#,
        "x".repeat(1024 * 1024 + 10)
    );
    let (s, v) = call(a.addr, "POST", "/api/rooms", &big).await;
    assert_error(&(s, v), 400, "invalid", Some("body"));
    a.stop();
    b.stop();
}

/// The outgoing event queue (`events::QUEUE`, 4,096) while Redis answers nothing (its process
/// stopped with SIGSTOP): what does not fit is dropped and counted at once, nothing blocks the
/// caller, and once Redis answers again every envelope is accounted for — published or dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_event_publish_queue_is_bounded_while_redis_is_stuck() {
    use sluice_control::cluster::events::{EventBus, QUEUE};
    use sluice_control::cluster::Cluster;
    use sluice_control::events::EventEnvelope;
    use std::sync::atomic::Ordering;
    use std::sync::Arc;

    let redis = Redis::start();
    let mut d = ClusterDraft::default();
    d.set("redis", &redis.url()).unwrap();
    d.set("node_id", "q").unwrap();
    d.set("advertise", "http://q.invalid:1").unwrap();
    let cluster = Cluster::new(d.finish().unwrap().unwrap()).unwrap();
    let bus = EventBus::start(Arc::clone(&cluster), |_| {});
    let envelope = |seq: u64| EventEnvelope {
        id: format!("evt_{seq}"),
        room: "q".into(),
        seq,
        kind: "room_created".into(),
        at_ms: 0,
        payload: json!({"event": "room_created", "pad": "x".repeat(200)}),
        n: seq,
    };
    let m = &cluster.metrics;
    let (published, dropped) = (
        || m.events_published.load(Ordering::Relaxed),
        || m.events_dropped.load(Ordering::Relaxed),
    );
    // Connected: one goes through.
    bus.publish(&envelope(0));
    let started = Instant::now();
    while published() < 1 {
        assert!(started.elapsed() < Duration::from_secs(5), "first publish");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    redis.signal("STOP");
    let extra = 1000u64;
    let total = QUEUE as u64 + extra;
    let pushed = Instant::now();
    for seq in 1..=total {
        bus.publish(&envelope(seq));
    }
    let took = pushed.elapsed();
    // The publisher holds at most one envelope in flight; the queue holds QUEUE more.
    let at_once = dropped();
    assert!(
        (extra - 1..=extra).contains(&at_once),
        "dropped {at_once} of {total} with Redis stuck (queue {QUEUE})"
    );
    assert!(took < Duration::from_secs(2), "publish blocked: {took:?}");
    redis.signal("CONT");
    let started = Instant::now();
    while published() + dropped() < total + 1 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "published {} dropped {} of {}",
            published(),
            dropped(),
            total + 1
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(published() + dropped(), total + 1);
    assert!(published() >= QUEUE as u64 - 2, "published {}", published());
    println!(
        "event queue: {total} envelopes in {took:?} with Redis stopped: {at_once} dropped at once \
         (queue {QUEUE}); after SIGCONT {} published, {} dropped in all, drained in {:?}",
        published(),
        dropped(),
        started.elapsed()
    );
}
