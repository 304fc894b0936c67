//! Plan, then apply: a publisher offer whose last section the (real, in-process) dataplane
//! refuses leaves nothing behind — no track in the room, no `track_published` event or message,
//! and no dataplane session (the dataplane's own stats say 0 sessions). The offer's last
//! section is one track too many for a session: nine audio sections, where the room allows a
//! participant 16 tracks but a dataplane session holds 8 published tracks, so the shard refuses
//! the ninth `add_track` (with a port per worker the session is placed at creation and its
//! commands are answered by the shard). A correct offer afterwards publishes normally.

#[path = "../../control/tests/api_support/mod.rs"]
mod api_support;
mod node_support;

use std::time::{Duration, Instant};

use api_support::*;
use node_support::*;
use serde_json::{json, Value};
use sluice_control::auth::Role;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const OFFER: &str = include_str!("../../control/tests/fixtures/sdp/chromium_cam_mic.sdp");

/// The fixture's audio section `n` times (mids 0..n, distinct SSRCs and track ids), sendonly.
fn audio_sections(n: u32) -> String {
    let start = OFFER.find("m=audio").unwrap();
    let end = OFFER.find("m=video").unwrap();
    let mids: Vec<String> = (0..n).map(|i| i.to_string()).collect();
    let mut out = OFFER[..start].replace(
        "a=group:BUNDLE 0 1",
        &format!("a=group:BUNDLE {}", mids.join(" ")),
    );
    for i in 0..n {
        out.push_str(
            &OFFER[start..end]
                .replace("a=mid:0", &format!("a=mid:{i}"))
                .replace("a=sendrecv", "a=sendonly")
                .replace("2838154093", &(2_838_154_093u32 + i).to_string())
                .replace("0b6e2c84-71f5", &format!("0b6e2c84-71f{i}")),
        );
    }
    out
}

/// Sessions the dataplane reports in its latest stats snapshots (`/metrics`).
async fn dataplane_sessions(addr: std::net::SocketAddr) -> Option<u64> {
    let (_, m) = http(addr, "GET", "/metrics", &[], "").await;
    let lines: Vec<u64> = m
        .as_str()?
        .lines()
        .filter(|l| l.starts_with("sluice_worker_sessions{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
        .collect();
    (!lines.is_empty()).then(|| lines.iter().sum())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_last_section_leaves_no_track_event_or_session() {
    let Some((_dir, dp)) = loopback_dataplane(|cfg| {
        cfg.port_per_worker = true;
        cfg.port = std::net::UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        cfg.stats_interval_ms = 50;
    }) else {
        return;
    };
    let s = linked_server(&dp, |_| {}).await;
    let mut alice = join(s.addr, "alice", Role::Host).await;
    let mut bob = join(s.addr, "bob", Role::Controller).await;

    // The room's event stream, from here on.
    let a = auth_header(&admin());
    let mut sse = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    sse.write_all(
        format!("GET /api/events?room=m HTTP/1.1\r\nHost: t\r\nAuthorization: {a}\r\n\r\n")
            .as_bytes(),
    )
    .await
    .unwrap();

    // Nine audio tracks: the ninth is one more than a session holds.
    let bad = audio_sections(9);
    send(
        &mut alice,
        json!({"type": "offer", "pc": "publisher", "sdp": bad, "req": 1}),
    )
    .await;
    let err = recv_type_or_error(&mut alice).await;
    println!("refused offer: {err}");
    assert_eq!(err["type"], "error", "{err}");
    assert!(
        err["message"]
            .as_str()
            .unwrap()
            .contains("dataplane refused"),
        "the dataplane refused it: {err}"
    );

    // No track in the room.
    let (_, parts) = http(
        s.addr,
        "GET",
        "/api/rooms/m/participants",
        &[("Authorization", a.as_str())],
        "",
    )
    .await;
    for p in parts["participants"].as_array().unwrap() {
        assert_eq!(p["tracks"], json!([]), "{p}");
    }
    let (_, room) = http(
        s.addr,
        "GET",
        "/api/rooms/m",
        &[("Authorization", a.as_str())],
        "",
    )
    .await;
    assert_eq!(room["dataplane_sessions"], 0, "{room}");
    // No session in the dataplane: its own count, from a snapshot taken after the refusal.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut sessions = None;
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(120)).await;
        sessions = dataplane_sessions(s.addr).await;
        if sessions == Some(0) {
            break;
        }
    }
    println!("dataplane sessions after the refusal: {sessions:?}");
    assert_eq!(sessions, Some(0));
    // No event: nothing on the room's stream but keep-alive, nothing for bob.
    let mut got = vec![0u8; 16 * 1024];
    let n = tokio::time::timeout(Duration::from_millis(300), sse.read(&mut got))
        .await
        .map_or(0, |r| r.unwrap_or(0));
    let text = String::from_utf8_lossy(&got[..n]);
    assert!(!text.contains("track_published"), "{text}");
    let quiet = tokio::time::timeout(
        Duration::from_millis(300),
        recv_type(&mut bob, "track_published"),
    );
    assert!(
        quiet.await.is_err(),
        "bob was told of a track that does not exist"
    );

    // The same participant publishes a correct offer afterwards.
    let good = OFFER.replace("a=sendrecv", "a=sendonly");
    send(
        &mut alice,
        json!({"type": "offer", "pc": "publisher", "sdp": good, "req": 2}),
    )
    .await;
    let answer = recv_type(&mut alice, "answer").await;
    assert_eq!(answer["req"], 2);
    let tp = recv_type(&mut bob, "track_published").await;
    assert!(tp["track"]["sid"].as_str().unwrap().starts_with("TR_"));
    // Alice's publisher session and bob's subscriber session: two, nothing left over.
    recv_type(&mut bob, "offer").await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while dataplane_sessions(s.addr).await != Some(2) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    tokio::time::sleep(Duration::from_millis(120)).await;
    assert_eq!(dataplane_sessions(s.addr).await, Some(2));
    s.stop();
    dp.stop();
}

/// The next `answer` or `error`.
async fn recv_type_or_error(ws: &mut Ws) -> Value {
    use futures_util::StreamExt;
    loop {
        let m = tokio::time::timeout(Duration::from_secs(15), ws.next())
            .await
            .expect("a reply within 15 s")
            .unwrap()
            .unwrap();
        if let tokio_tungstenite::tungstenite::Message::Text(t) = m {
            let v: Value = serde_json::from_str(&t).unwrap();
            if v["type"] == "answer" || v["type"] == "error" {
                return v;
            }
        }
    }
}
