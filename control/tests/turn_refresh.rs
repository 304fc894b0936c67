//! TURN credentials are short-lived (security review #30): `turn.ttl_s` defaults to an hour,
//! and a connected client gets fresh ones (`ice_servers`) at half their lifetime, so a long call
//! never holds only expired ones. A real WebSocket client against the in-process server, with a
//! 4 s lifetime: the refresh comes about 2 s after `joined`, expires later than the first one,
//! and verifies with the secret coturn would check it with.

mod api_support;

use std::time::{Duration, Instant};

use api_support::*;
use serde_json::{json, Value};
use sluice_control::auth::Role;
use sluice_control::config::DEFAULT_TURN_TTL_S;
use sluice_control::hybrid::turn::{credential, TurnConfig};

const TURN_SECRET: &str = "turn-refresh-test-secret";

/// (expiry, identity) of the one `ice_servers` entry, checked against the secret.
fn checked(servers: &Value) -> (u64, String) {
    let s = &servers[0];
    let user = s["username"].as_str().expect("username");
    assert_eq!(
        s["credential"].as_str(),
        Some(credential(TURN_SECRET.as_bytes(), user).as_str()),
        "the credential is HMAC(secret, username)"
    );
    assert_eq!(s["urls"], json!(["turn:127.0.0.1:3478"]));
    let (expiry, identity) = user.split_once(':').expect("<expiry>:<identity>");
    (expiry.parse().expect("unix expiry"), identity.to_owned())
}

#[tokio::test]
async fn connected_clients_get_fresh_turn_credentials_at_half_their_lifetime() {
    assert_eq!(DEFAULT_TURN_TTL_S, 3_600, "an hour unless configured");
    let server = start_with(|o| {
        o.turn = Some(TurnConfig {
            urls: vec!["turn:127.0.0.1:3478".into()],
            secret: TURN_SECRET.into(),
            ttl_s: 4,
            relay_ips: Vec::new(),
        })
    })
    .await;
    let t = token("m", "alice", Role::Host);
    let (mut ws, _) =
        tokio_tungstenite::connect_async(format!("ws://{}/rtc?access_token={t}", server.addr))
            .await
            .unwrap();
    send(&mut ws, json!({"type": "join"})).await;
    let joined = recv_type(&mut ws, "joined").await;
    let t0 = Instant::now();
    let (first, who) = checked(&joined["ice_servers"]);
    assert_eq!(who, "alice");

    let mut last = first;
    for n in 1..=2 {
        let fresh = recv_type(&mut ws, "ice_servers").await;
        let at = t0.elapsed();
        let (expiry, who) = checked(&fresh["ice_servers"]);
        println!(
            "refresh {n} after {} ms: expiry {expiry} (joined's {first})",
            at.as_millis()
        );
        assert_eq!(who, "alice");
        assert!(
            expiry > last,
            "refresh {n} expires later: {expiry} vs {last}"
        );
        // Every 2 s (half of 4 s); bounded loosely for a loaded machine.
        assert!(
            at >= Duration::from_millis(n * 1_900) && at < Duration::from_millis(n * 2_000 + 3_000),
            "refresh {n} after {at:?}"
        );
        last = expiry;
    }
}
