//! Abuse suite, HTTP (docs/security.md, findings #2, #5, #21, #28, #31, #35): real TCP and
//! HTTP clients against the real server in-process. Each test asserts the attack is refused or
//! bounded, the refusal counted in `sluice_refused_total`, the state within a stated bound, and
//! no panic.

mod abuse_support;
mod api_support;

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use abuse_support::*;
use api_support::*;
use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// A TCP connection to `addr` from source IP `from`.
async fn connect_from(from: &str, addr: SocketAddr) -> TcpStream {
    let s = TcpSocket::new_v4().unwrap();
    s.bind(SocketAddr::new(from.parse::<IpAddr>().unwrap(), 0))
        .unwrap();
    s.connect(addr).await.unwrap()
}

/// One `/metrics` series read over a connection from `from`.
async fn metric_from(from: &str, addr: SocketAddr, series: &str) -> Option<f64> {
    let mut s = connect_from(from, addr).await;
    s.write_all(
        format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).await.ok()?;
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

/// Whether the server closes `s` within `within` (EOF or reset, discarding any bytes).
async fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

/// Finding #2: a client that trickles its request headers, and one that sends nothing, are
/// disconnected after `http_header_timeout_s` (1 s here) and counted; a normal request on
/// another connection is answered meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_headers_are_cut_off() {
    let server = start_limited(|l| l.http_header_timeout_s = 1, |_| {}).await;
    let addr = server.addr;
    let mut idle = TcpStream::connect(addr).await.unwrap();
    let mut slow = TcpStream::connect(addr).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHo")
        .await
        .unwrap();
    let started = Instant::now();
    let mut cut = false;
    // One header byte every 300 ms: never a complete request head.
    for b in b"st: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa".iter() {
        tokio::time::sleep(Duration::from_millis(300)).await;
        if slow.write_all(&[*b]).await.is_err() {
            cut = true;
            break;
        }
        if started.elapsed() > Duration::from_secs(8) {
            break;
        }
    }
    let cut = cut || closed_within(&mut slow, Duration::from_secs(1)).await;
    let slow_after = started.elapsed();
    let idle_cut = closed_within(&mut idle, Duration::from_secs(3)).await;
    println!("trickling client cut = {cut} after {slow_after:?}; silent client cut = {idle_cut}");
    let (s, _) = http(addr, "GET", "/healthz", &[], "").await;
    assert_eq!(s, 200);
    assert!(
        cut && slow_after < Duration::from_secs(5),
        "slow headers were not cut off"
    );
    assert!(idle_cut, "a connection that sends nothing stayed open");
    let counted = refused(addr, "http_header_timeout").await;
    println!("refused http_header_timeout {counted}");
    assert!(counted >= 2.0);
    assert_eq!(panics(), 0);
}

/// Finding #2: open connections are capped per source IP (8 here) and in all (12): of 10 from
/// 127.0.0.1 and 10 from 127.0.0.2, 8 + 4 stay open, the rest are closed at once and counted.
/// Bound: `sluice_http_connections` ≤ 12; back to ≤ 1 (the metrics request) once they close.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_are_capped_per_ip_and_in_all() {
    let server = start_limited(
        |l| {
            l.max_connections_per_ip = 8;
            l.max_connections = 12;
            l.http_header_timeout_s = 30;
        },
        |_| {},
    )
    .await;
    let addr = server.addr;
    let mut conns = Vec::new();
    for from in ["127.0.0.1", "127.0.0.2"] {
        for _ in 0..10 {
            conns.push((from, connect_from(from, addr).await));
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    let mut open = [0usize; 2];
    for (from, c) in &mut conns {
        if !closed_within(c, Duration::from_millis(300)).await {
            open[usize::from(*from == "127.0.0.2")] += 1;
        }
    }
    println!("open from .1: {}, from .2: {}", open[0], open[1]);
    assert_eq!(open, [8, 4], "8 per IP, 12 in all");
    // Close those from .2: their slots are free again.
    conns.retain(|(from, _)| *from == "127.0.0.1");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let n = metric_from("127.0.0.3", addr, "sluice_http_connections").await;
    let sources = metric_from("127.0.0.3", addr, "sluice_http_connection_sources").await;
    println!("with 8 held from .1: gauge connections {n:?}, sources {sources:?}");
    assert!(n.is_some_and(|n| n <= 9.0), "{n:?}");
    assert!(sources.is_some_and(|n| n <= 2.0), "{sources:?}");
    drop(conns);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = metric(addr, "sluice_http_connections").await;
    let (per_ip, all) = (
        refused(addr, "connections_per_ip").await,
        refused(addr, "connections").await,
    );
    println!("after close: connections {after:?}; refused per_ip {per_ip}, global {all}");
    assert!(after.is_some_and(|n| n <= 1.0));
    assert_eq!((per_ip, all), (2.0, 6.0));
    assert_eq!(panics(), 0);
}

/// Finding #21: an `/api` request without a valid admin token is answered 401 before its body
/// is read (here the body never comes: the answer must not wait for it), and counted; an admin
/// body over `api_body_max_bytes` is refused with 413 before it is read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_bodies_are_read_only_after_the_admin_token() {
    let server = start_limited(|_| {}, |_| {}).await;
    let addr = server.addr;
    let head = |auth: &str, len: usize| {
        format!("POST /api/rooms HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {len}\r\n{auth}Connection: close\r\n\r\n")
    };
    let mut answers = Vec::new();
    for auth in [
        String::new(),
        "Authorization: Bearer x.y.z\r\n".to_owned(),
        format!("Authorization: Bearer {}\r\n", admin()),
    ] {
        let mut s = TcpStream::connect(addr).await.unwrap();
        // Headers announce 2 MiB and then nothing: `[0,0,…]` would follow.
        s.write_all(head(&auth, 2 << 20).as_bytes()).await.unwrap();
        s.write_all(b"[0,0,0,0").await.unwrap();
        let mut buf = vec![0u8; 4096];
        let answer = match tokio::time::timeout(Duration::from_secs(3), s.read(&mut buf)).await {
            Ok(Ok(n)) => String::from_utf8_lossy(&buf[..n])
                .lines()
                .next()
                .unwrap_or("")
                .to_owned(),
            _ => "no answer within 3 s".to_owned(),
        };
        answers.push(answer);
    }
    println!("announced 2 MiB bodies: {answers:?}");
    assert!(answers[0].contains(" 401 "), "{answers:?}");
    assert!(answers[1].contains(" 401 "), "{answers:?}");
    assert!(answers[2].contains(" 413 "), "{answers:?}");
    let (unauth, large) = (
        refused(addr, "unauthenticated").await,
        refused(addr, "body_too_large").await,
    );
    println!("refused unauthenticated {unauth}, body_too_large {large}");
    assert_eq!((unauth, large), (2.0, 1.0));
    // A normal admin request still works.
    let a = auth_header(&admin());
    let (s, _) = http(
        addr,
        "POST",
        "/api/rooms",
        &[("Authorization", &a), ("Content-Type", "application/json")],
        &json!({"name": "ok"}).to_string(),
    )
    .await;
    assert_eq!(s, 201);
    assert_eq!(panics(), 0);
}

/// Finding #28: on a dev node, `Host` must be a loopback name or the bind address, and `/rtc`
/// and `/dev/token` refuse other origins (DNS rebinding); both counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_mode_refuses_foreign_hosts_and_origins() {
    let server = start_limited(|_| {}, |o| o.dev_tokens = true).await;
    let addr = server.addr;
    let path = "/dev/token?room=r&identity=alice&role=host";
    let get = |host: String, origin: Option<&'static str>| async move {
        let mut s = TcpStream::connect(addr).await.unwrap();
        let origin = origin
            .map(|o| format!("Origin: {o}\r\n"))
            .unwrap_or_default();
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n{origin}Connection: close\r\n\r\n")
                .as_bytes(),
        )
        .await
        .unwrap();
        let mut text = String::new();
        let _ = s.read_to_string(&mut text).await;
        text.split(' ')
            .nth(1)
            .unwrap_or("")
            .parse::<u16>()
            .unwrap_or(0)
    };
    let rebound = get("evil.example:7880".into(), None).await;
    let cross = get(addr.to_string(), Some("http://evil.example")).await;
    let other = get(addr.to_string(), Some("http://127.0.0.9")).await;
    let local = get(format!("localhost:{}", addr.port()), None).await;
    println!("Host evil.example: {rebound}; Origin evil.example: {cross}; localhost: {local}");
    assert_eq!((rebound, cross, local), (403, 403, 200));
    assert_eq!(other, 403, "an Origin naming another host");
    // A browser page of the node itself: Origin = http://<Host>.
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nOrigin: http://{addr}\r\nConnection: close\r\n\r\n").as_bytes()).await.unwrap();
    let mut text = String::new();
    let _ = s.read_to_string(&mut text).await;
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    let (host, origin) = (refused(addr, "host").await, refused(addr, "origin").await);
    println!("refused host {host}, origin {origin}");
    assert_eq!((host, origin), (1.0, 2.0));
    assert_eq!(panics(), 0);
}

/// Finding #5: a dev token never takes over an identity that is connected: the second `alice`
/// is refused (counted) and the first keeps its session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_tokens_never_take_over_a_connected_identity() {
    let server = start_limited(|_| {}, |o| o.dev_tokens = true).await;
    let addr = server.addr;
    let dev_token = || async move {
        let (s, v) = http(
            addr,
            "GET",
            "/dev/token?room=r&identity=alice&role=host",
            &[],
            "",
        )
        .await;
        assert_eq!(s, 200, "{v}");
        v["token"].as_str().unwrap().to_owned()
    };
    let t = dev_token().await;
    let (mut alice, _) =
        tokio_tungstenite::connect_async(format!("ws://{addr}/rtc?access_token={t}"))
            .await
            .unwrap();
    send(&mut alice, json!({"type": "join"})).await;
    recv_type(&mut alice, "joined").await;
    let t2 = dev_token().await;
    let (mut mallory, _) =
        tokio_tungstenite::connect_async(format!("ws://{addr}/rtc?access_token={t2}"))
            .await
            .unwrap();
    send(&mut mallory, json!({"type": "join"})).await;
    let answer: Value = match tokio::time::timeout(Duration::from_secs(5), mallory.next()).await {
        Ok(Some(Ok(m))) => serde_json::from_str(m.to_text().unwrap()).unwrap(),
        other => panic!("{other:?}"),
    };
    println!("second join as alice with a dev token: {answer}");
    assert_eq!(answer["type"], "error", "{answer}");
    assert_eq!(answer["field"], "identity");
    // The first alice was not told to leave and still answers.
    send(&mut alice, json!({"type": "ping", "t": 1})).await;
    let pong = recv_type(&mut alice, "pong").await;
    assert_eq!(pong["t"], 1);
    assert_eq!(refused(addr, "dev_identity_taken").await, 1.0);
    assert_eq!(metric(addr, "sluice_signaling_clients").await, Some(1.0));
    assert_eq!(panics(), 0);
}

/// Finding #31: an unknown key id and a bad signature get the same answer, which names no key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_errors_do_not_reveal_key_ids() {
    let server = start_limited(|_| {}, |_| {}).await;
    let addr = server.addr;
    let n = sluice_control::auth::unix_seconds(std::time::SystemTime::now());
    let guess = sluice_control::auth::mint_admin(
        "guessed-key-id",
        SECRET.as_bytes(),
        &sluice_control::auth::AdminClaims {
            iss: "guessed-key-id".into(),
            sub: "x".into(),
            admin: true,
            exp: n + 60,
            nbf: n - 1,
            iat: n,
        },
    );
    let forged = admin()
        .rsplit_once('.')
        .map(|(a, _)| format!("{a}.AAAA"))
        .unwrap();
    let mut msgs = Vec::new();
    for t in [guess, forged] {
        let h = auth_header(&t);
        let (s, v) = http(addr, "GET", "/api/rooms", &[("Authorization", &h)], "").await;
        assert_eq!(s, 401);
        msgs.push(v["error"]["message"].as_str().unwrap_or("").to_owned());
    }
    println!("unknown key: {:?}; bad signature: {:?}", msgs[0], msgs[1]);
    assert!(!msgs[0].contains("guessed-key-id"), "{msgs:?}");
    assert_eq!(msgs[0], msgs[1]);
    assert_eq!(panics(), 0);
}

/// Finding #35: SSE subscribers are capped (4 here); the fifth stream is refused and counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_subscribers_are_capped() {
    let server = start_limited(|l| l.max_sse_subscribers = 4, |_| {}).await;
    let addr = server.addr;
    let a = admin();
    let mut streams = Vec::new();
    let mut statuses = Vec::new();
    for _ in 0..6 {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(
            format!(
                "GET /api/events HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {a}\r\n\r\n"
            )
            .as_bytes(),
        )
        .await
        .unwrap();
        let mut buf = vec![0u8; 1024];
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        statuses.push(
            String::from_utf8_lossy(&buf[..n])
                .split(' ')
                .nth(1)
                .unwrap_or("")
                .to_owned(),
        );
        streams.push(s);
    }
    println!("6 SSE streams with a cap of 4: {statuses:?}");
    assert_eq!(
        statuses.iter().filter(|s| *s == "200").count(),
        4,
        "{statuses:?}"
    );
    assert_eq!(metric(addr, "sluice_sse_subscribers").await, Some(4.0));
    assert_eq!(refused(addr, "sse_subscribers").await, 2.0);
    assert_eq!(panics(), 0);
}
