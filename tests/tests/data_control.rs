//! Issue 17 through the real control daemon and an in-process dataplane: a viewer's data-only
//! publisher offer is answered with the data section (`a=sctp-port`, `a=max-message-size`) and
//! creates a dataplane session; a session made without data channels answers a later data
//! section with port 0; `POST /api/rooms/{room}/data` refuses bad bodies naming the field and
//! an unknown room, and takes a good one.

#[path = "../../control/tests/api_support/mod.rs"]
mod api_support;
mod node_support;

use std::time::Duration;

use api_support::*;
use node_support::*;
use serde_json::{json, Value};
use sluice_control::auth::Role;

const OFFER: &str = include_str!("../../control/tests/fixtures/sdp/chromium_cam_mic.sdp");

/// The fixture's session part and transport lines with one data section of mid `mid` (and the
/// fixture's audio and video before it when `with_media`).
fn offer(mid: &str, with_media: bool) -> String {
    let (head, media) = OFFER.split_at(OFFER.find("m=").unwrap());
    let transport: String = media
        .lines()
        .filter(|l| {
            ["a=ice-ufrag", "a=ice-pwd", "a=fingerprint", "a=setup"]
                .iter()
                .any(|p| l.starts_with(p))
        })
        .take(4)
        .map(|l| format!("{l}\r\n"))
        .collect();
    let group = if with_media {
        format!("a=group:BUNDLE 0 1 {mid}")
    } else {
        format!("a=group:BUNDLE {mid}")
    };
    let head = head.replace("a=group:BUNDLE 0 1", &group);
    let media = if with_media {
        media.replace("a=sendrecv", "a=sendonly")
    } else {
        String::new()
    };
    format!(
        "{head}{media}m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\nc=IN IP4 0.0.0.0\r\n{transport}a=mid:{mid}\r\na=sctp-port:5000\r\na=max-message-size:262144\r\n"
    )
}

async fn ws_join(addr: std::net::SocketAddr, identity: &str, role: Role) -> Ws {
    let (mut ws, _) = tokio_tungstenite::connect_async(format!(
        "ws://{addr}/rtc?access_token={}",
        token("m", identity, role)
    ))
    .await
    .unwrap();
    send(&mut ws, json!({"type": "join"})).await;
    next_of(&mut ws, &["joined"]).await;
    ws
}

async fn next_of(ws: &mut Ws, types: &[&str]) -> Value {
    use futures_util::StreamExt;
    loop {
        let m = tokio::time::timeout(Duration::from_secs(15), ws.next())
            .await
            .unwrap_or_else(|_| panic!("no {types:?} within 15 s"))
            .expect("socket open")
            .expect("message");
        if let tokio_tungstenite::tungstenite::Message::Text(t) = m {
            let v: Value = serde_json::from_str(&t).unwrap();
            if types.iter().any(|ty| v["type"] == *ty) {
                return v;
            }
        }
    }
}

fn data_line(sdp: &str) -> &str {
    sdp.lines()
        .find(|l| l.starts_with("m=application"))
        .unwrap_or("")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_sections_are_answered_and_server_messages_validated() {
    let Some((_dir, dp)) = loopback_dataplane(|_| {}) else {
        return;
    };
    let s = linked_server(&dp, |_| {}).await;

    // A viewer with no media: a data-only publisher offer.
    let mut viewer = ws_join(s.addr, "vic", Role::Viewer).await;
    send(
        &mut viewer,
        json!({"type": "offer", "pc": "publisher", "sdp": offer("0", false), "req": 1}),
    )
    .await;
    let answer = next_of(&mut viewer, &["answer", "error"]).await;
    let sdp = answer["sdp"].as_str().unwrap_or_else(|| panic!("{answer}"));
    println!("data-only answer: {}", data_line(sdp));
    assert!(!data_line(sdp).starts_with("m=application 0 "), "{sdp}");
    assert!(
        sdp.contains("a=sctp-port:5000\r\na=max-message-size:65536\r\n"),
        "{sdp}"
    );

    // A host whose session was made with media only: a later data section gets port 0.
    let mut host = ws_join(s.addr, "hal", Role::Host).await;
    for (cid, kind, source) in [("a", "audio", "microphone"), ("v", "video", "camera")] {
        send(
            &mut host,
            json!({"type": "publish", "cid": cid, "kind": kind, "source": source}),
        )
        .await;
        next_of(&mut host, &["track_published"]).await;
    }
    send(&mut host, json!({"type": "offer", "pc": "publisher", "sdp": OFFER.replace("a=sendrecv", "a=sendonly"), "req": 2})).await;
    next_of(&mut host, &["answer"]).await;
    send(
        &mut host,
        json!({"type": "offer", "pc": "publisher", "sdp": offer("2", true), "req": 3}),
    )
    .await;
    let again = next_of(&mut host, &["answer", "error"]).await;
    let sdp = again["sdp"].as_str().unwrap_or_else(|| panic!("{again}"));
    println!("data section on a media-only session: {}", data_line(sdp));
    assert!(data_line(sdp).starts_with("m=application 0 "), "{sdp}");

    // POST /api/rooms/{room}/data.
    let auth = auth_header(&admin());
    let h = [
        ("Authorization", auth.as_str()),
        ("Content-Type", "application/json"),
    ];
    let post = |path: &'static str, body: String| async move {
        http(s.addr, "POST", path, &h, &body).await
    };
    let big = "x".repeat(65_528);
    for (body, status, field) in [
        (json!({}).to_string(), 400, "text"),
        (json!({"text": big}).to_string(), 400, "text"),
        (
            json!({"text": "a", "base64": "AA"}).to_string(),
            400,
            "base64",
        ),
        (
            json!({"text": "a", "destinations": ["ok", "b d"]}).to_string(),
            400,
            "destinations[1]",
        ),
        (json!({"text": "a", "to": ["x"]}).to_string(), 400, "to"),
    ] {
        let (st, v) = post("/api/rooms/m/data", body).await;
        println!("POST data -> {st} {v}");
        assert_eq!(
            (st, v["error"]["field"].as_str()),
            (status, Some(field)),
            "{v}"
        );
    }
    let (st, v) = post("/api/rooms/nope/data", json!({"text": "a"}).to_string()).await;
    assert_eq!(st, 404, "{v}");
    let (st, v) = post(
        "/api/rooms/m/data",
        json!({"text": "hello", "reliable": false}).to_string(),
    )
    .await;
    println!("POST data -> {st} {v}");
    assert_eq!(
        (st, v["from"].as_str(), v["bytes"].as_u64()),
        (200, Some("$server"), Some(5))
    );
    let (st, _) = http(s.addr, "POST", "/api/rooms/m/data", &[], "{}").await;
    assert_eq!(st, 401);
}
