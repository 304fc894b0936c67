//! `GET /api/rooms/{room}/stats` (issue 12): auth, unknown room, unknown query parameter and
//! participant, a room without media. The figures themselves come from the dataplane's
//! `session_stats`; the e2e scenario `downlink_cap` reads them from a real call.

mod api_support;

use api_support::*;
use sluice_control::auth::Role;

#[tokio::test]
async fn room_stats_endpoint_and_bad_input() {
    let s = start().await;
    let a = format!("Bearer {}", admin());
    let h = [("Authorization", a.as_str())];
    let r = http(s.addr, "GET", "/api/rooms/r1/stats", &[], "").await;
    assert_error(&r, 401, "unauthorized", Some("Authorization"));
    let bad = format!("Bearer {}", token("r1", "bob", Role::Host));
    let r = http(
        s.addr,
        "GET",
        "/api/rooms/r1/stats",
        &[("Authorization", &bad)],
        "",
    )
    .await;
    assert_error(&r, 403, "forbidden", None);
    let r = http(s.addr, "GET", "/api/rooms/nope/stats", &h, "").await;
    assert_error(&r, 404, "not_found", Some("room"));

    let hj = [
        ("Authorization", a.as_str()),
        ("Content-Type", "application/json"),
    ];
    let r = http(s.addr, "POST", "/api/rooms", &hj, r#"{"name":"r1"}"#).await;
    assert_eq!(r.0, 201, "{r:?}");
    let r = http(s.addr, "GET", "/api/rooms/r1/stats", &h, "").await;
    assert_eq!(r.0, 200, "{r:?}");
    assert_eq!(r.1["room"], "r1");
    assert_eq!(r.1["participants"], serde_json::json!([]));
    let r = http(s.addr, "GET", "/api/rooms/r1/stats?identity=bob", &h, "").await;
    assert_error(&r, 404, "not_found", Some("identity"));
    let r = http(s.addr, "GET", "/api/rooms/r1/stats?who=bob", &h, "").await;
    assert_error(&r, 400, "invalid", Some("who"));
}
