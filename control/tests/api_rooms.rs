//! HTTP API tests: every room endpoint, success and bad input (status + JSON error naming
//! the field), against an in-process server on 127.0.0.1:0 without a dataplane.

mod api_support;

use api_support::*;
use serde_json::json;
use sluice_control::auth::Role;

#[tokio::test]
async fn rooms_crud_and_bad_input() {
    let s = start().await;
    let a = auth_header(&admin());
    let h = [
        ("Authorization", a.as_str()),
        ("Content-Type", "application/json"),
    ];

    // Auth.
    let r = http(s.addr, "GET", "/api/rooms", &[], "").await;
    assert_error(&r, 401, "unauthorized", Some("Authorization"));
    let bad = auth_header(&token("x", "y", Role::Host));
    let r = http(s.addr, "GET", "/api/rooms", &[("Authorization", &bad)], "").await;
    assert_error(&r, 403, "forbidden", None);

    // Create.
    let r = http(
        s.addr,
        "POST",
        "/api/rooms",
        &h,
        r#"{"name":"r1","config":{"max_controllers":2}}"#,
    )
    .await;
    assert_eq!(r.0, 201, "{r:?}");
    assert_eq!(r.1["name"], "r1");
    assert_eq!(r.1["config"]["max_controllers"], 2);
    assert_error(
        &http(s.addr, "POST", "/api/rooms", &h, r#"{"name":"r1"}"#).await,
        409,
        "rejected",
        None,
    );
    assert_error(
        &http(s.addr, "POST", "/api/rooms", &h, r#"{}"#).await,
        400,
        "invalid",
        Some("name"),
    );
    assert_error(
        &http(s.addr, "POST", "/api/rooms", &h, r#"{"name":5}"#).await,
        400,
        "invalid",
        Some("name"),
    );
    assert_error(
        &http(s.addr, "POST", "/api/rooms", &h, r#"not json"#).await,
        400,
        "invalid",
        Some("body"),
    );
    assert_error(
        &http(
            s.addr,
            "POST",
            "/api/rooms",
            &h,
            r#"{"name":"r2","config":{"max_controllers":"x"}}"#,
        )
        .await,
        400,
        "invalid",
        Some("config"),
    );
    assert_error(
        &http(
            s.addr,
            "POST",
            "/api/rooms",
            &h,
            r#"{"name":"r2","config":{"bogus":1}}"#,
        )
        .await,
        400,
        "invalid",
        Some("config.bogus"),
    );

    // List / get.
    let r = http(s.addr, "GET", "/api/rooms", &h, "").await;
    assert_eq!(r.0, 200);
    assert_eq!(r.1["rooms"].as_array().unwrap().len(), 1);
    assert_eq!(http(s.addr, "GET", "/api/rooms/r1", &h, "").await.0, 200);
    assert_error(
        &http(s.addr, "GET", "/api/rooms/nope", &h, "").await,
        404,
        "not_found",
        Some("room"),
    );

    // Participants of an empty room, unknown room.
    let r = http(s.addr, "GET", "/api/rooms/r1/participants", &h, "").await;
    assert_eq!(r.1["participants"], json!([]));
    assert_error(
        &http(s.addr, "GET", "/api/rooms/nope/participants", &h, "").await,
        404,
        "not_found",
        Some("room"),
    );

    // Delete.
    assert_eq!(http(s.addr, "DELETE", "/api/rooms/r1", &h, "").await.0, 200);
    assert_error(
        &http(s.addr, "DELETE", "/api/rooms/r1", &h, "").await,
        404,
        "not_found",
        Some("room"),
    );
}

#[tokio::test]
async fn participant_endpoints() {
    let s = start().await;
    let a = auth_header(&admin());
    let h = [
        ("Authorization", a.as_str()),
        ("Content-Type", "application/json"),
    ];
    // Join two participants over the sidecar-free path: the WS join.
    let host = signal_join(s.addr, "room", "alice", Role::Host).await;
    let ctl = signal_join(s.addr, "room", "bob", Role::Controller).await;

    let r = http(s.addr, "GET", "/api/rooms/room/participants", &h, "").await;
    assert_eq!(r.1["participants"].as_array().unwrap().len(), 2, "{r:?}");

    // PATCH role/grants.
    let r = http(
        s.addr,
        "PATCH",
        "/api/rooms/room/participants/bob",
        &h,
        r#"{"role":"viewer"}"#,
    )
    .await;
    assert_eq!(r.0, 200, "{r:?}");
    assert_eq!(r.1["role"], "viewer");
    assert_error(
        &http(
            s.addr,
            "PATCH",
            "/api/rooms/room/participants/bob",
            &h,
            r#"{"role":"king"}"#,
        )
        .await,
        400,
        "invalid",
        Some("role"),
    );
    assert_error(
        &http(
            s.addr,
            "PATCH",
            "/api/rooms/room/participants/bob",
            &h,
            r#"{"grants":{"can_publish":1}}"#,
        )
        .await,
        400,
        "invalid",
        Some("grants"),
    );
    assert_error(
        &http(
            s.addr,
            "PATCH",
            "/api/rooms/room/participants/zed",
            &h,
            r#"{"role":"viewer"}"#,
        )
        .await,
        404,
        "not_found",
        Some("identity"),
    );
    assert_error(
        &http(
            s.addr,
            "PATCH",
            "/api/rooms/nope/participants/bob",
            &h,
            r#"{"role":"viewer"}"#,
        )
        .await,
        404,
        "not_found",
        Some("room"),
    );
    let r = http(
        s.addr,
        "PATCH",
        "/api/rooms/room/participants/bob",
        &h,
        r#"{"role":"controller","grants":{"can_publish":true,"can_subscribe":true,"can_publish_sources":["camera"],"can_update_metadata":false}}"#,
    )
    .await;
    assert_eq!(r.0, 200, "{r:?}");

    // Transfer host.
    assert_error(
        &http(s.addr, "POST", "/api/rooms/room/transfer_host", &h, r#"{}"#).await,
        400,
        "invalid",
        Some("identity"),
    );
    assert_error(
        &http(
            s.addr,
            "POST",
            "/api/rooms/room/transfer_host",
            &h,
            r#"{"identity":"zed"}"#,
        )
        .await,
        404,
        "not_found",
        Some("identity"),
    );
    let r = http(
        s.addr,
        "POST",
        "/api/rooms/room/transfer_host",
        &h,
        r#"{"identity":"bob"}"#,
    )
    .await;
    assert_eq!(r.0, 200, "{r:?}");

    // Mute: unknown track, bad body.
    assert_error(
        &http(
            s.addr,
            "POST",
            "/api/rooms/room/participants/bob/tracks/TR_999/mute",
            &h,
            r#"{"muted":true}"#,
        )
        .await,
        404,
        "not_found",
        Some("track_sid"),
    );
    assert_error(
        &http(
            s.addr,
            "POST",
            "/api/rooms/room/participants/bob/tracks/TR_999/mute",
            &h,
            r#"{"muted":"yes"}"#,
        )
        .await,
        400,
        "invalid",
        Some("muted"),
    );
    assert_error(
        &http(
            s.addr,
            "POST",
            "/api/rooms/nope/participants/bob/tracks/TR_1/mute",
            &h,
            r#"{"muted":true}"#,
        )
        .await,
        404,
        "not_found",
        Some("room"),
    );

    // Kick.
    assert_eq!(
        http(
            s.addr,
            "DELETE",
            "/api/rooms/room/participants/alice",
            &h,
            ""
        )
        .await
        .0,
        200
    );
    assert_error(
        &http(
            s.addr,
            "DELETE",
            "/api/rooms/room/participants/alice",
            &h,
            "",
        )
        .await,
        404,
        "not_found",
        Some("identity"),
    );
    drop((host, ctl));
}

#[tokio::test]
async fn media_endpoints_without_dataplane_and_bad_input() {
    let s = start().await;
    let a = auth_header(&admin());
    let h = [
        ("Authorization", a.as_str()),
        ("Content-Type", "application/json"),
    ];
    let offer = include_str!("fixtures/sdp/chromium_cam_mic.sdp");
    let body = json!({"identity": "side", "role": "controller", "sdp": offer}).to_string();
    // No dataplane yet (not started, or being restarted): try again shortly — 503 and
    // Retry-After, not a 409 that says this request can never be served.
    let (status, head, text) = http_raw(s.addr, "POST", "/api/rooms/r/sessions", &h, &body).await;
    let r = (status, serde_json::from_str(&text).unwrap());
    assert_error(&r, 503, "unavailable", None);
    assert!(r.1["error"]["message"]
        .as_str()
        .unwrap()
        .contains("dataplane unavailable"));
    assert!(
        head.to_ascii_lowercase().contains("\r\nretry-after: 1"),
        "{head}"
    );
    assert_error(
        &http(
            s.addr,
            "POST",
            "/api/rooms/r/sessions",
            &h,
            r#"{"identity":"x"}"#,
        )
        .await,
        400,
        "invalid",
        Some("sdp"),
    );
    assert_error(
        &http(
            s.addr,
            "POST",
            "/api/rooms/r/sessions",
            &h,
            r#"{"identity":3,"sdp":""}"#,
        )
        .await,
        400,
        "invalid",
        Some("identity"),
    );
    assert_error(
        &http(
            s.addr,
            "POST",
            "/api/rooms/r/sessions",
            &h,
            r#"{"identity":"x","sdp":"","role":"boss"}"#,
        )
        .await,
        400,
        "invalid",
        Some("role"),
    );
    assert_error(
        &http(s.addr, "DELETE", "/api/rooms/r/sessions/PA_77", &h, "").await,
        404,
        "not_found",
        None,
    );

    // WHIP.
    let t = auth_header(&token("r", "obs", Role::Host));
    let r = http(
        s.addr,
        "POST",
        "/whip/r",
        &[("Authorization", &t), ("Content-Type", "text/plain")],
        offer,
    )
    .await;
    assert_error(&r, 400, "invalid", Some("Content-Type"));
    let r = http(
        s.addr,
        "POST",
        "/whip/r",
        &[("Content-Type", "application/sdp")],
        offer,
    )
    .await;
    assert_error(&r, 401, "unauthorized", Some("Authorization"));
    let r = http(
        s.addr,
        "POST",
        "/whip/other",
        &[("Authorization", &t), ("Content-Type", "application/sdp")],
        offer,
    )
    .await;
    assert_error(&r, 403, "forbidden", None);
    let r = http(
        s.addr,
        "POST",
        "/whip/r",
        &[("Authorization", &t), ("Content-Type", "application/sdp")],
        offer,
    )
    .await;
    // RFC 9725 §4.6: a WHIP client may retry a 503 after its Retry-After.
    assert_error(&r, 503, "unavailable", None);
    let r = http(
        s.addr,
        "POST",
        "/whep/r",
        &[("Authorization", &t), ("Content-Type", "application/sdp")],
        "garbage",
    )
    .await;
    assert_eq!(r.0, 400, "{r:?}");
    let r = http(
        s.addr,
        "PATCH",
        "/whip/r/PA_1",
        &[("Authorization", &t), ("Content-Type", "application/sdp")],
        "",
    )
    .await;
    assert_error(&r, 400, "invalid", Some("Content-Type"));
    let r = http(
        s.addr,
        "DELETE",
        "/whip/r/PA_404",
        &[("Authorization", &t)],
        "",
    )
    .await;
    assert_eq!(r.0, 404, "{r:?}");
}

#[tokio::test]
async fn ops_endpoints_and_drain() {
    let s = start().await;
    let a = auth_header(&admin());
    let h = [("Authorization", a.as_str())];
    assert_eq!(http(s.addr, "GET", "/healthz", &[], "").await.0, 200);
    assert_eq!(http(s.addr, "GET", "/readyz", &[], "").await.0, 200);
    let (st, _, body) = http_raw(s.addr, "GET", "/metrics", &[], "").await;
    assert_eq!(st, 200);
    assert!(body.contains("sluice_rooms 0"), "{body}");
    assert_eq!(http(s.addr, "GET", "/", &[], "").await.0, 404);
    assert_error(
        &http(s.addr, "POST", "/api/drain", &[], "").await,
        401,
        "unauthorized",
        None,
    );
    assert_eq!(http(s.addr, "POST", "/api/drain", &h, "").await.0, 200);
    assert_eq!(http(s.addr, "GET", "/readyz", &[], "").await.0, 503);
    let r = http(
        s.addr,
        "POST",
        "/api/rooms",
        &[h[0], ("Content-Type", "application/json")],
        r#"{"name":"late"}"#,
    )
    .await;
    assert_error(&r, 409, "rejected", None);
    tokio::time::timeout(std::time::Duration::from_secs(5), s.drained())
        .await
        .expect("empty node drains at once");
}

#[tokio::test]
async fn static_files_and_sse_replay() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("index.html"), "<h1>hi</h1>").unwrap();
    let path = dir.path().to_path_buf();
    let s = start_with(|o| o.static_dir = Some(path)).await;
    let (st, head, body) = http_raw(s.addr, "GET", "/", &[], "").await;
    assert_eq!(st, 200);
    assert!(head.to_ascii_lowercase().contains("text/html"));
    assert_eq!(body, "<h1>hi</h1>");
    assert_eq!(http(s.addr, "GET", "/../Cargo.toml", &[], "").await.0, 404);

    let a = auth_header(&admin());
    let h = [
        ("Authorization", a.as_str()),
        ("Content-Type", "application/json"),
    ];
    http(s.addr, "POST", "/api/rooms", &h, r#"{"name":"e1"}"#).await;
    http(s.addr, "POST", "/api/rooms", &h, r#"{"name":"e2"}"#).await;
    // Replay after event 0 with a room filter: only e2's creation, then the stream stays open.
    let mut sock = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let req = format!("GET /api/events?room=e2 HTTP/1.1\r\nHost: t\r\nAuthorization: {a}\r\nLast-Event-ID: 0\r\n\r\n");
    sock.write_all(req.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 8192];
    let mut got = String::new();
    for _ in 0..20 {
        let n = tokio::time::timeout(std::time::Duration::from_secs(5), sock.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        got.push_str(&String::from_utf8_lossy(&buf[..n]));
        if got.contains("room_created") {
            break;
        }
    }
    assert!(got.contains("event: room_created"), "{got}");
    assert!(got.contains("\"room\":\"e2\""), "{got}");
    assert!(!got.contains("\"room\":\"e1\""), "{got}");
    assert!(got.contains("\"seq\":1"), "{got}");
}

/// Joins over /rtc and keeps the socket open (returned).
async fn signal_join(
    addr: std::net::SocketAddr,
    room: &str,
    identity: &str,
    role: Role,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    use futures_util::{SinkExt, StreamExt};
    let t = token(room, identity, role);
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/rtc?access_token={t}"))
        .await
        .unwrap();
    ws.send(tokio_tungstenite::tungstenite::Message::text(
        r#"{"type":"join"}"#,
    ))
    .await
    .unwrap();
    let m = ws.next().await.unwrap().unwrap();
    let v: serde_json::Value = serde_json::from_str(m.to_text().unwrap()).unwrap();
    assert_eq!(v["type"], "joined", "{v}");
    ws
}
