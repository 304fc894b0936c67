//! A Redis outage longer than the lease (issue 15, Build point 7): `redis-server` is killed
//! (SIGKILL) and started again empty on the same socket. Calls in progress continue (no
//! `leave`, the sockets stay open and answer), joins that need placement get `503` +
//! `Retry-After` meanwhile, and on reconnect every node re-claims the rooms it hosts: each
//! room is homed where it runs again, and a join through another node is redirected there.
//! A room another live node claimed meanwhile is the only one whose clients are told to
//! reconnect. Three (two) control daemons on one real Redis, signaling clients only.

mod api_support;
mod cluster_support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use api_support::*;
use cluster_support::{draft, free_port, Redis};
use futures_util::StreamExt;
use serde_json::{json, Value};
use sluice_control::auth::Role;
use sluice_control::server::Server;
use tokio_tungstenite::tungstenite::Message;

const LEASE_MS: u64 = 1500;

/// A node in a region of its own: a room joined through it is placed on it.
async fn node(redis: &Redis, id: &str) -> Server {
    let port = free_port();
    let mut d = draft(redis, id, &format!("http://127.0.0.1:{port}"), LEASE_MS);
    d.set("region", &format!("r-{id}")).unwrap();
    let c = d.finish().unwrap().unwrap();
    start_with(move |o| {
        o.http = SocketAddr::from(([127, 0, 0, 1], port));
        o.cluster = Some(c);
    })
    .await
}

async fn cluster_info(addr: SocketAddr) -> (u16, Value) {
    let a = auth_header(&admin());
    http(addr, "GET", "/api/cluster", &[("Authorization", &a)], "").await
}

/// Waits until `addr` serves and sees `n` live nodes; returns how long that took.
async fn wait_serving(addr: SocketAddr, n: usize, within: Duration) -> Duration {
    let started = Instant::now();
    loop {
        let (s, v) = cluster_info(addr).await;
        if s == 200 && v["nodes"].as_array().map_or(0, Vec::len) == n && v["serving"] == true {
            return started.elapsed();
        }
        assert!(started.elapsed() < within, "cluster: {s} {v}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Joins `room` through `addr`: the first identity of a room as its host, others as viewers.
async fn join_room(addr: SocketAddr, room: &str, identity: &str) -> Ws {
    let role = if matches!(identity, "p1" | "alice" | "carol" | "bob") {
        Role::Host
    } else {
        Role::Viewer
    };
    let t = token(room, identity, role);
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/rtc?access_token={t}"))
        .await
        .unwrap();
    send(&mut ws, json!({"type": "join"})).await;
    recv_type(&mut ws, "joined").await;
    ws
}

/// The first answer to a join of `room` through `addr`.
async fn first_answer(addr: SocketAddr, room: &str, identity: &str) -> Value {
    let t = token(room, identity, Role::Host);
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/rtc?access_token={t}"))
        .await
        .unwrap();
    send(&mut ws, json!({"type": "join"})).await;
    loop {
        let m = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("an answer to the join within 5 s")
            .expect("socket open")
            .unwrap();
        if let Message::Text(t) = m {
            return serde_json::from_str(&t).unwrap();
        }
    }
}

async fn metric(addr: SocketAddr, name: &str) -> String {
    let (_, _, m) = http_raw(addr, "GET", "/metrics", &[], "").await;
    m.lines()
        .find(|l| l.starts_with(name) && l.as_bytes().get(name.len()) == Some(&b' '))
        .map(|l| l[name.len() + 1..].to_owned())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restarted_empty_keeps_every_call_and_the_homes_come_back() {
    let mut redis = Redis::start();
    let nodes = [
        node(&redis, "a").await,
        node(&redis, "b").await,
        node(&redis, "c").await,
    ];
    for n in &nodes {
        wait_serving(n.addr, 3, Duration::from_secs(10)).await;
    }
    // Room r-<id> with two participants on each node.
    let ids = ["a", "b", "c"];
    let mut clients = Vec::new();
    for (n, id) in nodes.iter().zip(ids) {
        let room = format!("r-{id}");
        for who in ["p1", "p2"] {
            clients.push((format!("{who}@{room}"), join_room(n.addr, &room, who).await));
        }
        assert_eq!(redis.cli(&["HGET", &format!("sl:room:{room}"), "home"]), id);
    }

    // SIGKILL; the socket is gone until the restart.
    redis.stop();
    let killed = Instant::now();
    let adm = auth_header(&admin());
    let h = [
        ("Authorization", adm.as_str()),
        ("Content-Type", "application/json"),
    ];
    // Past the lease (and one renewal more), the calls answer all along.
    let outage = Duration::from_millis(LEASE_MS + 1000);
    let mut pings = 0;
    while killed.elapsed() < outage {
        for (who, ws) in &mut clients {
            still_in_call(ws, who).await;
            pings += 1;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // A join that needs placement: 503 + Retry-After on every node; a WebSocket join of a new
    // room: `unavailable`.
    for n in &nodes {
        let (s, head, body) =
            http_raw(n.addr, "POST", "/api/rooms", &h, r#"{"name":"fresh"}"#).await;
        assert_eq!(s, 503, "{body}");
        assert!(
            head.to_ascii_lowercase().contains("retry-after: 1"),
            "{head}"
        );
        let v = first_answer(n.addr, "fresh", "zed").await;
        assert_eq!(v["code"], "unavailable", "{v}");
        assert_eq!(v["field"], "cluster", "{v}");
    }
    // A join to a room the node hosts still works.
    let _late = join_room(nodes[0].addr, "r-a", "late").await;
    let down_for = killed.elapsed();

    redis.restart();
    let restarted = Instant::now();
    // Every node serves again (registered, rooms re-claimed) within a bounded poll, nobody
    // was told to leave, and every room is homed on its node again.
    for n in &nodes {
        wait_serving(n.addr, 3, Duration::from_secs(10)).await;
    }
    let serving = restarted.elapsed();
    for (who, ws) in &mut clients {
        still_in_call(ws, who).await;
    }
    let rehomed = loop {
        let all = ids
            .iter()
            .all(|id| redis.cli(&["HGET", &format!("sl:room:r-{id}"), "home"]) == *id);
        if all {
            break restarted.elapsed();
        }
        assert!(
            restarted.elapsed() < Duration::from_secs(10),
            "rooms not re-homed: {:?}",
            ids.map(|id| redis.cli(&["HGET", &format!("sl:room:r-{id}"), "home"]))
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    for (n, id) in nodes.iter().zip(ids) {
        let room = format!("r-{id}");
        // Redis forgot the epoch; the node's own (1) counts: the re-claim makes it 2.
        assert_eq!(
            redis.cli(&["HGET", &format!("sl:room:{room}"), "epoch"]),
            "2"
        );
        let (_, v) = cluster_info(n.addr).await;
        let me = v["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["id"] == id)
            .cloned()
            .unwrap();
        assert_eq!(me["rooms"], 1, "{v}");
        assert_eq!(v["home_rooms"], 1, "{v}");
        assert_eq!(metric(n.addr, "sluice_cluster_fenced_total").await, "1");
        assert_eq!(
            metric(n.addr, "sluice_cluster_rooms_reasserted_total").await,
            "1"
        );
        assert_eq!(
            metric(n.addr, "sluice_cluster_reassert_lost_total").await,
            "0"
        );
        // A join through the next node is redirected to the host, not placed anew.
        let other = &nodes[(ids.iter().position(|x| *x == id).unwrap() + 1) % 3];
        let v = first_answer(other.addr, &room, "newcomer").await;
        assert_eq!(v["type"], "redirect", "{v}");
        assert_eq!(v["url"], format!("ws://{}/rtc", n.addr), "{v}");
    }
    // And after all that, still nobody was told to leave.
    for (who, ws) in &mut clients {
        still_in_call(ws, who).await;
    }
    println!(
        "redis outage: down {down_for:?} (lease {LEASE_MS} ms), {} clients answered {pings} pings \
         through it, none told to leave; after the restart all 3 nodes serving in {serving:?}, \
         every room homed on its node again in {rehomed:?}; epochs 2",
        clients.len()
    );
    for n in nodes {
        n.stop();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_another_node_took_meanwhile_is_the_only_one_given_up() {
    let redis = Redis::start();
    let a = node(&redis, "a").await;
    let b = node(&redis, "b").await;
    wait_serving(a.addr, 2, Duration::from_secs(10)).await;
    wait_serving(b.addr, 2, Duration::from_secs(10)).await;
    let mut alice = join_room(a.addr, "keep", "alice").await;
    let mut carol = join_room(a.addr, "take", "carol").await;
    let _bob = join_room(b.addr, "bee", "bob").await;
    assert_eq!(redis.cli(&["HGET", "sl:room:take", "home"]), "a");
    // One step: a's lease ends (as for a node frozen or cut off past its lease) and b, live,
    // claims `take` at a higher epoch (as a join through b after the sweep would).
    let r = redis.cli(&[
        "EVAL",
        "redis.call('ZADD', 'sl:nodes', 0, 'a')\n\
         local bb = redis.call('HGET', 'sl:node:b', 'boot')\n\
         redis.call('HSET', 'sl:room:take', 'home', 'b', 'boot', bb, 'epoch', 7)\n\
         redis.call('SREM', 'sl:node:a:rooms', 'take')\n\
         redis.call('SADD', 'sl:node:b:rooms', 'take')\n\
         return bb",
        "0",
    ]);
    assert_eq!(r.len(), 16, "b's boot: {r}");
    let lost_at = Instant::now();
    // Carol (in `take`) is told to reconnect...
    let leave = recv_type(&mut carol, "leave").await;
    assert_eq!(leave["reason"], "reconnect", "{leave}");
    let told = lost_at.elapsed();
    wait_serving(a.addr, 2, Duration::from_secs(10)).await;
    // ...alice (in `keep`) is not, and `keep` is a's again at a higher epoch.
    for _ in 0..5 {
        still_in_call(&mut alice, "alice").await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(redis.cli(&["HGET", "sl:room:keep", "home"]), "a");
    assert_eq!(redis.cli(&["HGET", "sl:room:keep", "epoch"]), "2");
    assert_eq!(redis.cli(&["HGET", "sl:room:take", "home"]), "b");
    assert_eq!(redis.cli(&["HGET", "sl:room:take", "epoch"]), "7");
    assert_eq!(
        metric(a.addr, "sluice_cluster_rooms_reasserted_total").await,
        "1"
    );
    assert_eq!(
        metric(a.addr, "sluice_cluster_reassert_lost_total").await,
        "1"
    );
    // Carol rejoining through a lands on b; a join of `keep` through b goes to a.
    let v = first_answer(a.addr, "take", "carol").await;
    assert_eq!(v["url"], format!("ws://{}/rtc", b.addr), "{v}");
    let _carol = join_room(b.addr, "take", "carol").await;
    let v = first_answer(b.addr, "keep", "dave").await;
    assert_eq!(v["url"], format!("ws://{}/rtc", a.addr), "{v}");
    println!(
        "lost lease, one room taken meanwhile: carol told to reconnect {told:?} after; alice's \
         room kept (epoch 2), nobody else told to leave"
    );
    a.stop();
    b.stop();
}
