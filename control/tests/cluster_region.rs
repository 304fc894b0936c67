//! Placement by region on a real `redis-server` (issue 15 Build 3): a new room goes to a node
//! of the participant's region — the token's `region` claim first, then the header of a load
//! balancer the node trusts (`cluster.region_header`), else the receiving node's region — on
//! every entry point that places a room (WebSocket join, WHIP, the placement API).

mod api_support;
mod cluster_support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use api_support::*;
use cluster_support::{draft, free_port, Redis};
use serde_json::{json, Value};
use sluice_control::auth::{self, Claims, Grants, Role};
use sluice_control::server::Server;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const HEADER: &str = "X-Sluice-Region";

async fn node(redis: &Redis, id: &str, region: &str) -> Server {
    let port = free_port();
    let mut d = draft(redis, id, &format!("http://127.0.0.1:{port}"), 1500);
    d.set("region", region).unwrap();
    d.set("region_header", HEADER).unwrap();
    let c = d.finish().unwrap().unwrap();
    start_with(move |o| {
        o.http = SocketAddr::from(([127, 0, 0, 1], port));
        o.cluster = Some(c);
    })
    .await
}

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

fn token_in(room: &str, identity: &str, region: Option<&str>) -> String {
    let n = auth::unix_seconds(std::time::SystemTime::now());
    auth::mint(
        KEY,
        SECRET.as_bytes(),
        &Claims {
            iss: KEY.into(),
            sub: identity.into(),
            room: room.into(),
            role: Role::Host,
            grants: Grants::for_role(Role::Host),
            name: None,
            metadata: None,
            region: region.map(str::to_owned),
            exp: n + 600,
            nbf: n - 1,
            iat: n,
        },
    )
}

/// Joins through `addr` with `token` (and the load balancer header when given): `Ok(())` when
/// joined there, `Err(url)` when redirected.
async fn join_via(addr: SocketAddr, token: &str, header: Option<&str>) -> Result<(), String> {
    let mut req = format!("ws://{addr}/rtc?access_token={token}")
        .into_client_request()
        .unwrap();
    if let Some(h) = header {
        req.headers_mut().insert(HEADER, h.parse().unwrap());
    }
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    send(&mut ws, json!({"type": "join"})).await;
    for _ in 0..30 {
        let v = recv_any(&mut ws).await;
        match v["type"].as_str() {
            Some("joined") => return Ok(()),
            Some("redirect") => return Err(v["url"].as_str().unwrap().to_owned()),
            Some("error") => panic!("join refused: {v}"),
            _ => {}
        }
    }
    panic!("neither joined nor redirected");
}

async fn recv_any(ws: &mut Ws) -> Value {
    use futures_util::StreamExt;
    loop {
        let m = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("a message within 10 s")
            .unwrap()
            .unwrap();
        if let tokio_tungstenite::tungstenite::Message::Text(t) = m {
            return serde_json::from_str(&t).unwrap();
        }
    }
}

fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in /metrics"))
}

#[tokio::test]
async fn a_new_room_goes_to_the_participants_region() {
    let redis = Redis::start();
    let a = node(&redis, "a", "eu").await;
    let b = node(&redis, "b", "eu").await;
    let c = node(&redis, "c", "us").await;
    for n in [&a, &b, &c] {
        wait_nodes(n.addr, 3).await;
    }
    let home = |room: &str| redis.cli(&["HGET", &format!("sl:room:{room}"), "home"]);
    let ws_url = |s: &Server| format!("ws://{}/rtc", s.addr);

    // 1. The token's claim: a "us" participant arriving at a (eu) is sent to c.
    let r = join_via(a.addr, &token_in("r1", "u1", Some("us")), None).await;
    assert_eq!(r, Err(ws_url(&c)));
    assert_eq!(home("r1"), "c");
    assert_eq!(
        join_via(c.addr, &token_in("r1", "u1", Some("us")), None).await,
        Ok(())
    );

    // 2. No claim: the trusted load balancer's header decides.
    let r = join_via(a.addr, &token_in("r2", "u2", None), Some("us")).await;
    assert_eq!(r, Err(ws_url(&c)));
    assert_eq!(home("r2"), "c");

    // 3. The claim wins over the header.
    let r = join_via(c.addr, &token_in("r3", "u3", Some("eu")), Some("us")).await;
    assert!(r.is_err(), "placed in us despite the eu claim");
    assert!(["a", "b"].contains(&home("r3").as_str()), "{}", home("r3"));

    // 4. Neither: the receiving node's region (a or b: reservations spread a burst).
    let eu = |room: &str| {
        let h = home(room);
        assert!(["a", "b"].contains(&h.as_str()), "{room} on {h}");
    };
    join_via(c.addr, &token_in("r4", "u4", None), None)
        .await
        .ok();
    let _ = join_via(a.addr, &token_in("r4b", "u4", None), None).await;
    eu("r4b");
    assert_eq!(
        home("r4"),
        "c",
        "a us node keeps a room with no region asked"
    );

    // 5. A header that is not a region is ignored (and counted): as 4.
    let _ = join_via(b.addr, &token_in("r5", "u5", None), Some("u s;x")).await;
    eu("r5");
    let (_, _, m) = http_raw(b.addr, "GET", "/metrics", &[], "").await;
    assert_eq!(metric(&m, "sluice_cluster_region_header_invalid_total"), 1);

    // 6. A region no node has: any node.
    let _ = join_via(b.addr, &token_in("r6", "u6", Some("ap")), None).await;
    assert!(["a", "b", "c"].contains(&home("r6").as_str()));

    // 7. WHIP: the bearer token's claim, then the header, before the handler runs.
    let t = token_in("w1", "pub", Some("us"));
    let bearer = auth_header(&t);
    let (s, head, _) = http_raw(
        a.addr,
        "POST",
        "/whip/w1",
        &[
            ("Authorization", &bearer),
            ("Content-Type", "application/sdp"),
        ],
        "v=0\r\n",
    )
    .await;
    assert_eq!(s, 307, "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains(&format!("location: http://{}/whip/w1", c.addr)),
        "{head}"
    );
    assert_eq!(home("w1"), "c");
    let t = token_in("w2", "pub", None);
    let bearer = auth_header(&t);
    let (s, head, _) = http_raw(
        b.addr,
        "POST",
        "/whip/w2",
        &[
            ("Authorization", &bearer),
            ("Content-Type", "application/sdp"),
            (HEADER, "us"),
        ],
        "v=0\r\n",
    )
    .await;
    assert_eq!(s, 307, "{head}");
    assert_eq!(home("w2"), "c");

    // 8. The placement API: the body's region, else the header.
    let adm = auth_header(&admin());
    let (s, v) = http(
        a.addr,
        "POST",
        "/api/rooms/p1/placement",
        &[
            ("Authorization", &adm),
            ("Content-Type", "application/json"),
            (HEADER, "us"),
        ],
        r#"{"identity":"zoe"}"#,
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["node"], "c", "{v}");
    let r = http(
        a.addr,
        "POST",
        "/api/rooms/p2/placement",
        &[
            ("Authorization", &adm),
            ("Content-Type", "application/json"),
        ],
        r#"{"identity":"zoe","region":"u s"}"#,
    )
    .await;
    assert_error(&r, 400, "invalid", Some("region"));

    // 9. A token whose region is not a region is refused, naming the token.
    let t = token_in("r7", "u7", Some("no such region!"));
    let (mut ws, _) =
        tokio_tungstenite::connect_async(format!("ws://{}/rtc?access_token={t}", a.addr))
            .await
            .unwrap();
    send(&mut ws, json!({"type": "join"})).await;
    let v = recv_any(&mut ws).await;
    assert_eq!(v["type"], "error", "{v}");
    println!(
        "region placement: r1 {} r2 {} r3 {} r4 {} r4b {} r5 {} r6 {} w1 {} w2 {}",
        home("r1"),
        home("r2"),
        home("r3"),
        home("r4"),
        home("r4b"),
        home("r5"),
        home("r6"),
        home("w1"),
        home("w2")
    );
    for n in [a, b, c] {
        n.stop();
    }
}

#[tokio::test]
async fn the_registry_shows_each_nodes_dataplane_load() {
    let redis = Redis::start();
    let a = node(&redis, "a", "eu").await;
    wait_nodes(a.addr, 1).await;
    let adm = auth_header(&admin());
    let (_, v) = http(
        a.addr,
        "GET",
        "/api/cluster",
        &[("Authorization", &adm)],
        "",
    )
    .await;
    let n = &v["nodes"][0];
    // No dataplane here: every figure is there, and zero.
    for k in ["pressure", "busy", "pps", "sessions", "capacity_pps"] {
        assert_eq!(n["dataplane"][k], 0, "{k}: {v}");
    }
    a.stop();
}
