//! Abuse suite, signaling (docs/security.md, findings #1, #6, #13, #36): real WebSocket clients
//! against the real server in-process. Each test makes the attack, asserts it is refused or
//! bounded, that the refusal is counted in `sluice_refused_total`, that the server's state
//! stays within a stated bound, and that nothing panicked.

mod abuse_support;
mod api_support;

use std::time::{Duration, Instant};

use abuse_support::*;
use api_support::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use sluice_control::auth::{self, Claims, Grants, Role};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

async fn connect(addr: std::net::SocketAddr) -> Ws {
    // The client may send what it likes: no client-side limit in the way.
    let cfg = WebSocketConfig::default()
        .max_message_size(None)
        .max_frame_size(None);
    tokio_tungstenite::connect_async_with_config(format!("ws://{addr}/rtc"), Some(cfg), false)
        .await
        .unwrap()
        .0
}

/// The next text message as JSON, `None` once the server closed (or 10 s of silence).
async fn next_json(ws: &mut Ws) -> Option<Value> {
    loop {
        match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => return serde_json::from_str(&t).ok(),
            Ok(Some(Ok(Message::Close(_)))) | Ok(None) | Ok(Some(Err(_))) | Err(_) => return None,
            Ok(Some(Ok(_))) => {}
        }
    }
}

/// Whether the server closes `ws` within `within` (reading and dropping what comes before).
async fn closed_within(ws: &mut Ws, within: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Err(_) => return false,
            Ok(None) | Ok(Some(Err(_))) | Ok(Some(Ok(Message::Close(_)))) => return true,
            Ok(Some(Ok(_))) => {}
        }
    }
}

/// Opens `/rtc` over plain TCP and streams one text message of `len` bytes (a `join` with a
/// long padding string), in 64 KiB writes of the same buffer; whether the server closed the
/// connection (during the send or within 10 s after it).
async fn stream_big_message(addr: std::net::SocketAddr, len: u64) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET /rtc HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n").as_bytes()).await.unwrap();
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if s.read(&mut b).await.unwrap_or(0) == 0 {
            return true;
        }
        head.push(b[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    // FIN + text, masked with a zero key (payload bytes as they are), 64-bit length.
    let mut frame = vec![0x81, 0x80 | 127];
    frame.extend_from_slice(&len.to_be_bytes());
    frame.extend_from_slice(&[0, 0, 0, 0]);
    let prefix = b"{\"type\":\"join\",\"x\":\"";
    frame.extend_from_slice(prefix);
    if s.write_all(&frame).await.is_err() {
        return true;
    }
    let chunk = vec![b'a'; 64 * 1024];
    let mut left = len - prefix.len() as u64 - 2;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        if s.write_all(&chunk[..n]).await.is_err() {
            return true;
        }
        left -= n as u64;
    }
    if s.write_all(b"\"}").await.is_err() {
        return true;
    }
    let mut buf = vec![0u8; 4096];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

async fn joined(addr: std::net::SocketAddr, room: &str, token: &str) -> (Ws, Value) {
    let mut ws = connect(addr).await;
    send(
        &mut ws,
        json!({"type": "join", "token": token, "room": room}),
    )
    .await;
    let v = next_json(&mut ws).await.expect("an answer to join");
    (ws, v)
}

async fn participants(addr: std::net::SocketAddr, room: &str) -> Vec<String> {
    let a = auth_header(&admin());
    let (_, v) = http(
        addr,
        "GET",
        &format!("/api/rooms/{room}/participants"),
        &[("Authorization", &a)],
        "",
    )
    .await;
    v["participants"]
        .as_array()
        .map(|l| {
            l.iter()
                .filter_map(|p| p["identity"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Finding #1: a message over the limit is refused before it is read (before and after join);
/// a first message over the join limit is refused before it is parsed; a legitimate SDP-sized
/// message still gets through. Bound: 6 attackers sending 16 MiB each raise the process's peak
/// memory by less than 32 MiB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_messages_before_and_after_join_are_refused() {
    let server = start_limited(|_| {}, |_| {}).await;
    let addr = server.addr;
    let (_, peak0) = memory_kib();

    // Before join: 6 connections, 16 MiB each, at once, streamed from one small buffer so
    // that only the server's memory can grow.
    let mut tasks = Vec::new();
    for _ in 0..6 {
        tasks.push(tokio::spawn(stream_big_message(addr, 16 << 20)));
    }
    let mut closed = 0;
    for t in tasks {
        closed += usize::from(t.await.unwrap());
    }
    let (_, peak1) = memory_kib();
    let grew_mib = peak1.saturating_sub(peak0) / 1024;
    println!("6 × 16 MiB before join: {closed} closed; peak memory +{grew_mib} MiB");

    // A 20 KiB join (a valid one, padded): over the join limit, under the message limit.
    let t = token("big", "alice", Role::Host);
    let pad = "0,".repeat(10 * 1024);
    let mut ws = connect(addr).await;
    ws.send(Message::text(format!(
        "{{\"type\":\"join\",\"token\":\"{t}\",\"room\":\"big\",\"x\":[{pad}0]}}"
    )))
    .await
    .unwrap();
    let v = next_json(&mut ws).await;
    println!("20 KiB join answered: {v:?}");
    assert_eq!(
        v.as_ref().map(|v| v["type"].clone()),
        Some(json!("error")),
        "{v:?}"
    );
    assert_eq!(v.unwrap()["field"], "join");

    // After join: an offer with a 300 KiB SDP is read (and refused by the SDP's own limit, on
    // the same connection); 1 MiB closes the connection.
    let (mut ws, v) = joined(addr, "big", &token("big", "bob", Role::Host)).await;
    assert_eq!(v["type"], "joined", "{v}");
    send(
        &mut ws,
        json!({"type": "offer", "pc": "publisher", "sdp": "v".repeat(300 * 1024), "req": 7}),
    )
    .await;
    let v = next_json(&mut ws).await.expect("an answer to the offer");
    assert_eq!(
        (v["type"].clone(), v["req"].clone()),
        (json!("error"), json!(7)),
        "{v}"
    );
    assert_eq!(v["field"], "sdp", "{v}");
    let _ = ws
        .send(Message::text(format!(
            "{{\"type\":\"ping\",\"t\":\"{}\"}}",
            "p".repeat(1 << 20)
        )))
        .await;
    let cut = closed_within(&mut ws, Duration::from_secs(10)).await;
    println!("1 MiB after join: connection closed = {cut}");
    assert!(cut, "a 1 MiB message after join must close the connection");

    assert_eq!(
        closed, 6,
        "every 16 MiB first message closes its connection"
    );
    assert!(grew_mib < 32, "peak memory grew {grew_mib} MiB (bound 32)");
    let (too_large, join_large) = (
        refused(addr, "ws_message_too_large").await,
        refused(addr, "ws_join_too_large").await,
    );
    println!("refused: ws_message_too_large {too_large}, ws_join_too_large {join_large}");
    assert!(too_large >= 7.0 && join_large >= 1.0);
    let gone = participants(addr, "big").await;
    assert!(!gone.contains(&"bob".to_owned()), "{gone:?}");
    assert_eq!(panics(), 0);
}

/// Finding #13: a member that never reads, while the room is busy, is disconnected (its queue
/// is bounded) and leaves the room; the rest of the room goes on. The room is busy with guests
/// joining and leaving, each `participant_joined` carrying 4 KiB of metadata. Bound: the
/// reader-less client's queue holds at most `ws_queue` (32) messages; the room's client count
/// is back to the one live member.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_is_disconnected() {
    let server = start_limited(
        |l| {
            l.ws_queue = 32;
            l.ws_send_timeout_ms = 2_000;
            l.ws_idle_timeout_s = 600;
            l.ws_ping_interval_s = 600;
        },
        |_| {},
    )
    .await;
    let addr = server.addr;
    let (mut host, v) = joined(addr, "busy", &token("busy", "host", Role::Host)).await;
    assert_eq!(v["type"], "joined", "{v}");
    // `sink` reads through a small receive buffer, and never again after `joined`.
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    let stream = sock.connect(addr).await.unwrap();
    let stream = tokio_tungstenite::MaybeTlsStream::Plain(stream);
    let (mut sink, _) = tokio_tungstenite::client_async(format!("ws://{addr}/rtc"), stream)
        .await
        .unwrap();
    send(
        &mut sink,
        json!({"type": "join", "token": token("busy", "sink", Role::Viewer), "room": "busy"}),
    )
    .await;
    assert_eq!(next_json(&mut sink).await.unwrap()["type"], "joined");
    let started = Instant::now();
    let mut gone_after = None;
    for i in 0..3000 {
        let t = token_with_metadata("busy", &format!("guest{i}"), &"m".repeat(4 * 1024));
        let (mut g, v) = joined(addr, "busy", &t).await;
        assert_eq!(v["type"], "joined", "{v}");
        send(&mut g, json!({"type": "leave"})).await;
        let _ = closed_within(&mut g, Duration::from_secs(5)).await;
        // The host reads what it is sent.
        while let Ok(Some(Ok(_))) =
            tokio::time::timeout(Duration::from_millis(1), host.next()).await
        {}
        if i % 50 == 49
            && !participants(addr, "busy")
                .await
                .contains(&"sink".to_owned())
        {
            gone_after = Some(i + 1);
            break;
        }
        if started.elapsed() > Duration::from_secs(60) {
            break;
        }
    }
    let left = participants(addr, "busy").await;
    println!(
        "sink gone after {gone_after:?} guests of 4 KiB ({:?}); room now {left:?}",
        started.elapsed()
    );
    drop(sink);
    assert!(
        gone_after.is_some(),
        "a client that never reads stayed in the room"
    );
    assert_eq!(left, vec!["host".to_owned()]);
    // The host still hears the room.
    send(&mut host, json!({"type": "ping", "t": 2})).await;
    assert_eq!(recv_type(&mut host, "pong").await["t"], 2);
    let slow = refused(addr, "ws_slow_reader").await;
    let clients = metric(addr, "sluice_signaling_clients").await;
    println!("refused ws_slow_reader {slow}; signaling clients {clients:?}");
    assert!(slow >= 1.0);
    assert_eq!(clients, Some(1.0));
    assert_eq!(panics(), 0);
}

fn token_with_metadata(room: &str, identity: &str, metadata: &str) -> String {
    let n = auth::unix_seconds(std::time::SystemTime::now());
    auth::mint(
        KEY,
        SECRET.as_bytes(),
        &Claims {
            iss: KEY.into(),
            sub: identity.into(),
            room: room.into(),
            role: Role::Viewer,
            grants: Grants::for_role(Role::Viewer),
            name: None,
            metadata: Some(metadata.to_owned()),
            region: None,
            exp: n + 600,
            nbf: n - 1,
            iat: n,
        },
    )
}

/// Finding #13: a joined client that goes silent (answers no ping) is disconnected after the
/// idle timeout and leaves the room.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_client_is_dropped_after_the_idle_timeout() {
    let server = start_limited(
        |l| {
            l.ws_ping_interval_s = 1;
            l.ws_idle_timeout_s = 3;
        },
        |_| {},
    )
    .await;
    let addr = server.addr;
    let (quiet, v) = joined(addr, "idle", &token("idle", "quiet", Role::Host)).await;
    assert_eq!(v["type"], "joined", "{v}");
    // `quiet` is never polled again: it answers no ping.
    let started = Instant::now();
    let mut gone = false;
    while started.elapsed() < Duration::from_secs(10) {
        if participants(addr, "idle").await.is_empty() {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!("silent client gone = {gone} after {:?}", started.elapsed());
    drop(quiet);
    assert!(gone, "a silent client stayed in the room");
    assert!(refused(addr, "ws_idle").await >= 1.0);
    assert_eq!(metric(addr, "sluice_signaling_clients").await, Some(0.0));
    assert_eq!(panics(), 0);
}

/// Finding #13: `input` events are rate-limited per connection; the excess is refused with an
/// error naming `event` and counted. Bound: of 1,000 sent at once, the host gets at most the
/// burst (2 × 50) plus 50 per second of the run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn input_floods_are_rate_limited() {
    let server = start_limited(|l| l.input_per_s = 50, |_| {}).await;
    let addr = server.addr;
    let (mut host, v) = joined(addr, "ctl", &token("ctl", "host", Role::Host)).await;
    assert_eq!(v["type"], "joined", "{v}");
    let (mut ctl, v) = joined(addr, "ctl", &token("ctl", "ctl", Role::Controller)).await;
    assert_eq!(v["type"], "joined", "{v}");
    send(&mut ctl, json!({"type": "request_control"})).await;
    recv_type(&mut host, "control_requested").await;
    send(
        &mut host,
        json!({"type": "grant_control", "identity": "ctl"}),
    )
    .await;
    recv_type(&mut ctl, "control_granted").await;
    let started = Instant::now();
    for i in 0..1000 {
        send(&mut ctl, json!({"type": "input", "event": {"k": i}})).await;
    }
    let mut relayed = 0u32;
    while let Ok(Some(Ok(m))) = tokio::time::timeout(Duration::from_millis(500), host.next()).await
    {
        if let Message::Text(t) = m {
            relayed += u32::from(serde_json::from_str::<Value>(&t).unwrap()["type"] == "input");
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let bound = 100 + (50.0 * secs).ceil() as u32;
    let mut refused_msgs = 0;
    while let Ok(Some(Ok(m))) = tokio::time::timeout(Duration::from_millis(200), ctl.next()).await {
        if let Message::Text(t) = m {
            let v: Value = serde_json::from_str(&t).unwrap();
            if v["type"] == "error" {
                assert_eq!(v["field"], "event", "{v}");
                refused_msgs += 1;
            }
        }
    }
    let counted = refused(addr, "input_rate").await;
    println!("input: 1000 sent, {relayed} relayed in {secs:.2} s (bound {bound}), {refused_msgs} errors, counted {counted}");
    assert!(relayed <= bound, "{relayed} > {bound}");
    assert!(
        relayed >= 50,
        "the allowed rate still goes through ({relayed})"
    );
    assert_eq!(counted, f64::from(1000 - relayed));
    assert_eq!(panics(), 0);
}

fn token_named(room: &str, identity: &str, name: Option<&str>) -> String {
    let n = auth::unix_seconds(std::time::SystemTime::now());
    auth::mint(
        KEY,
        SECRET.as_bytes(),
        &Claims {
            iss: KEY.into(),
            sub: identity.into(),
            room: room.into(),
            role: Role::Viewer,
            grants: Grants::for_role(Role::Viewer),
            name: name.map(str::to_owned),
            metadata: None,
            region: None,
            exp: n + 600,
            nbf: n - 1,
            iat: n,
        },
    )
}

/// Finding #6: an identity with markup is refused (and counted) and never joins.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identities_outside_the_safe_set_are_refused() {
    let server = start_limited(|_| {}, |_| {}).await;
    let addr = server.addr;
    let evil = "<img src=x onerror=alert(document.domain)>";
    let (_, v) = joined(addr, "names", &token_named("names", evil, None)).await;
    println!("join as {evil:?}: {v}");
    assert_eq!(v["type"], "error", "{v}");
    assert_eq!(v["field"], "identity", "{v}");
    assert!(refused(addr, "identity").await >= 1.0);
    assert!(participants(addr, "names").await.is_empty());
    assert_eq!(panics(), 0);
}

/// Finding #36: a `join` `name` never replaces the token's; without one in the token, the
/// client's is used.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_join_name_never_overrides_the_token() {
    let server = start_limited(|_| {}, |_| {}).await;
    let addr = server.addr;
    let mut ws = connect(addr).await;
    let t = token_named("names", "carol", Some("Carol"));
    send(
        &mut ws,
        json!({"type": "join", "token": t, "room": "names", "name": "Admin"}),
    )
    .await;
    let v = next_json(&mut ws).await.unwrap();
    println!(
        "join with name Admin over token name Carol: {}",
        v["participant"]
    );
    assert_eq!(v["participant"]["name"], "Carol", "{v}");

    // A token without a name: the client's is used.
    let mut ws2 = connect(addr).await;
    let t = token_named("names", "dave", None);
    send(
        &mut ws2,
        json!({"type": "join", "token": t, "room": "names", "name": "Dave"}),
    )
    .await;
    let v = next_json(&mut ws2).await.unwrap();
    assert_eq!(v["participant"]["name"], "Dave", "{v}");
    assert_eq!(participants(addr, "names").await.len(), 2);
    assert_eq!(panics(), 0);
}
