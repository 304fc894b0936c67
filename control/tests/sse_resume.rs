//! SSE through a real server: a subscriber that falls behind is closed, not skipped ahead, and
//! its reconnect with `Last-Event-ID` replays exactly the events it missed. The lag is forced
//! with a 4-event subscriber buffer and a 7-event burst (deleting a room of six participants
//! publishes six `participant_left` and a `room_deleted` at once).

mod api_support;

use std::time::Duration;

use api_support::*;
use sluice_control::auth::Role;
use sluice_control::events::SseConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Opens `GET /api/events?room=m` (after `last` if given) and reads it until the server closes
/// it or `quiet` passes without a byte; the `(id, event)` pairs it carried, and whether the
/// server ended it.
async fn read_stream(
    addr: std::net::SocketAddr,
    last: Option<u64>,
    ready: tokio::sync::oneshot::Sender<()>,
    quiet: Duration,
) -> (Vec<(u64, String)>, bool) {
    let a = auth_header(&admin());
    let mut sock = tokio::net::TcpStream::connect(addr).await.unwrap();
    let resume = last.map_or(String::new(), |l| format!("Last-Event-ID: {l}\r\n"));
    let req =
        format!("GET /api/events?room=m HTTP/1.1\r\nHost: t\r\nAuthorization: {a}\r\n{resume}\r\n");
    sock.write_all(req.as_bytes()).await.unwrap();
    let mut text = String::new();
    let mut buf = vec![0u8; 16 * 1024];
    let mut ready = Some(ready);
    let mut closed = false;
    loop {
        match tokio::time::timeout(quiet, sock.read(&mut buf)).await {
            Ok(Ok(0)) => {
                closed = true;
                break;
            }
            Ok(Ok(n)) => {
                text.push_str(&String::from_utf8_lossy(&buf[..n]));
                if text.contains("\r\n\r\n") {
                    if let Some(r) = ready.take() {
                        let _ = r.send(());
                    }
                }
                // The chunked body's last chunk.
                if text.ends_with("\r\n0\r\n\r\n") {
                    closed = true;
                    break;
                }
            }
            Ok(Err(_)) => {
                closed = true;
                break;
            }
            Err(_) => break,
        }
    }
    let mut events = Vec::new();
    let mut id = None;
    for line in text.lines() {
        if let Some(v) = line.strip_prefix("id: ") {
            id = v.trim().parse().ok();
        } else if let Some(v) = line.strip_prefix("event: ") {
            events.push((id.take().unwrap_or(0), v.trim().to_owned()));
        }
    }
    (events, closed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lagging_subscriber_is_closed_and_resumes_exactly() {
    let s = start_with(|o| {
        o.sse = SseConfig {
            subscriber_buffer: 4,
            ..SseConfig::default()
        }
    })
    .await;
    let mut clients = Vec::new();
    for i in 0..6 {
        clients.push(join(s.addr, &format!("p{i}"), Role::Viewer).await);
    }
    // room_created = 1, six joins = 2..=7: the burst will be 8..=14.
    let (tx, rx) = tokio::sync::oneshot::channel();
    let reader = tokio::spawn(read_stream(s.addr, None, tx, Duration::from_secs(3)));
    rx.await.unwrap();
    let a = auth_header(&admin());
    let (status, _) = http(
        s.addr,
        "DELETE",
        "/api/rooms/m",
        &[("Authorization", a.as_str())],
        "",
    )
    .await;
    assert_eq!(status, 200);
    let (first, closed) = reader.await.unwrap();
    println!("first stream: {first:?} (closed by the server: {closed})");
    assert!(closed, "a lagging subscriber is closed");
    let ids: Vec<u64> = first.iter().map(|e| e.0).collect();
    assert_eq!(ids, [8, 9, 10, 11], "what fitted its buffer, in order");

    let (tx, _rx) = tokio::sync::oneshot::channel();
    let (rest, closed) = read_stream(s.addr, Some(11), tx, Duration::from_millis(500)).await;
    println!("resumed stream: {rest:?}");
    assert!(!closed, "the resumed stream stays open");
    let kinds: Vec<(u64, &str)> = rest.iter().map(|(i, k)| (*i, k.as_str())).collect();
    assert_eq!(
        kinds,
        [
            (12, "participant_left"),
            (13, "participant_left"),
            (14, "room_deleted")
        ],
        "exactly the missed events"
    );
    drop(clients);
    s.stop();
}

#[tokio::test]
async fn subscribers_are_capped() {
    let s = start_with(|o| o.limits.max_sse_subscribers = 1).await;
    let (tx, rx) = tokio::sync::oneshot::channel();
    let first = tokio::spawn(read_stream(s.addr, None, tx, Duration::from_secs(2)));
    rx.await.unwrap();
    let a = auth_header(&admin());
    let resp = http(
        s.addr,
        "GET",
        "/api/events",
        &[("Authorization", a.as_str())],
        "",
    )
    .await;
    assert_error(&resp, 503, "unavailable", None);
    first.abort();
    s.stop();
}
