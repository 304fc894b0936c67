//! `GET /dev/token` (docs/api.md): served in dev mode only; validates room, identity and role
//! naming the field; the token it returns verifies against the node's key, for that room,
//! identity and role, with the short dev TTL. Off otherwise: 404 with the JSON error body.

mod api_support;

use std::time::SystemTime;

use api_support::*;
use sluice_control::auth::{self, Keyring, Role};

fn keyring() -> Keyring {
    let mut k = Keyring::new();
    k.insert(KEY, SECRET.as_bytes());
    k
}

#[tokio::test]
async fn dev_token_in_dev_mode() {
    let s = start_with(|o| o.dev_tokens = true).await;
    let r = http(
        s.addr,
        "GET",
        "/dev/token?room=demo&identity=alice&role=controller",
        &[],
        "",
    )
    .await;
    assert_eq!(r.0, 200, "{r:?}");
    assert_eq!(r.1["room"], "demo");
    assert_eq!(r.1["identity"], "alice");
    assert_eq!(r.1["role"], "controller");
    let token = r.1["token"].as_str().expect("token string");
    let claims = auth::verify(token, &keyring(), "demo", SystemTime::now()).expect("verifies");
    assert_eq!(claims.sub, "alice");
    assert_eq!(claims.role, Role::Controller);
    assert!(claims.grants.can_publish && claims.grants.can_subscribe);
    let ttl = claims.exp - claims.iat;
    assert!((3600..=24 * 3600).contains(&ttl), "ttl {ttl} s");
    assert_eq!(r.1["expires_at"], claims.exp);
    // The token is good for the room it names and no other.
    assert!(auth::verify(token, &keyring(), "other", SystemTime::now()).is_err());

    // Role defaults to viewer; URL-encoded names round-trip.
    let r = http(
        s.addr,
        "GET",
        "/dev/token?room=r%201&identity=b.o-b%40x_1",
        &[],
        "",
    )
    .await;
    assert_eq!(r.0, 200, "{r:?}");
    assert_eq!(r.1["role"], "viewer");
    assert_eq!(r.1["room"], "r 1");
    assert_eq!(r.1["identity"], "b.o-b@x_1");
    // Identities outside the safe set (docs/protocol.md "Identities") are refused.
    let r = http(
        s.addr,
        "GET",
        "/dev/token?room=r&identity=b%C3%B6b",
        &[],
        "",
    )
    .await;
    assert_error(&r, 400, "invalid", Some("identity"));

    // Bad input names the field.
    for (query, field) in [
        ("identity=a&role=host", "room"),
        ("room=&identity=a&role=host", "room"),
        ("room=r&role=host", "identity"),
        ("room=r&identity=&role=host", "identity"),
        ("room=r&identity=a%0Ab&role=host", "identity"),
        ("room=r&identity=a&role=admin", "role"),
        ("room=r&identity=a&role=", "role"),
    ] {
        let r = http(s.addr, "GET", &format!("/dev/token?{query}"), &[], "").await;
        assert_error(&r, 400, "invalid", Some(field));
    }
    let long_room = "r".repeat(129);
    let r = http(
        s.addr,
        "GET",
        &format!("/dev/token?room={long_room}&identity=a"),
        &[],
        "",
    )
    .await;
    assert_error(&r, 400, "invalid", Some("room"));
    let long_identity = "i".repeat(257);
    let r = http(
        s.addr,
        "GET",
        &format!("/dev/token?room=r&identity={long_identity}"),
        &[],
        "",
    )
    .await;
    assert_error(&r, 400, "invalid", Some("identity"));
    s.stop();
}

#[tokio::test]
async fn dev_token_off_with_configured_keys() {
    let s = start().await;
    let r = http(
        s.addr,
        "GET",
        "/dev/token?room=demo&identity=alice&role=host",
        &[],
        "",
    )
    .await;
    assert_error(&r, 404, "not_found", None);
    s.stop();
}
