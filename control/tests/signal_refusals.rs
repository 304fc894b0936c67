//! WebSocket signaling refusals (issue 4 "Done when"): invalid signature, expired token,
//! wrong room, a viewer publishing, a fourth controller, a non-host granting control, input
//! from an ungranted controller; plus the control flow that should succeed.

mod api_support;

use std::time::Duration;

use api_support::*;
use futures_util::StreamExt;
use serde_json::{json, Value};
use sluice_control::auth::Role;
use tokio_tungstenite::tungstenite::Message;

async fn connect(addr: std::net::SocketAddr, query: &str) -> Ws {
    tokio_tungstenite::connect_async(format!("ws://{addr}/rtc{query}"))
        .await
        .unwrap()
        .0
}

/// The next JSON message (5 s at most).
async fn recv(ws: &mut Ws) -> Value {
    loop {
        let m = tokio::time::timeout(Duration::from_secs(15), ws.next())
            .await
            .expect("a message within 15 s")
            .expect("stream open")
            .unwrap();
        if let Message::Text(t) = m {
            return serde_json::from_str(&t).unwrap();
        }
    }
}

/// The next message of type `ty`, skipping others (bounded).
async fn recv_type(ws: &mut Ws, ty: &str) -> Value {
    for _ in 0..20 {
        let v = recv(ws).await;
        if v["type"] == ty {
            return v;
        }
    }
    panic!("no {ty} message");
}

async fn join(addr: std::net::SocketAddr, room: &str, identity: &str, role: Role) -> Ws {
    let mut ws = connect(
        addr,
        &format!("?access_token={}", token(room, identity, role)),
    )
    .await;
    send(&mut ws, json!({"type": "join", "req": 1})).await;
    let v = recv(&mut ws).await;
    assert_eq!(v["type"], "joined", "{v}");
    assert_eq!(v["req"], 1);
    ws
}

#[tokio::test]
async fn token_refusals() {
    let s = start().await;
    // Invalid signature.
    let forged = token_with("r", "eve", Role::Host, "another-secret-0123456789", 600);
    let mut ws = connect(s.addr, "").await;
    send(&mut ws, json!({"type": "join", "token": forged, "req": 7})).await;
    let v = recv(&mut ws).await;
    assert_eq!(
        (v["type"].as_str(), v["code"].as_str(), v["req"].as_i64()),
        (Some("error"), Some("unauthorized"), Some(7)),
        "{v}"
    );
    assert!(v["message"].as_str().unwrap().contains("signature"), "{v}");
    // Expired.
    let expired = token_with("r", "eve", Role::Host, SECRET, -60);
    let mut ws = connect(s.addr, &format!("?access_token={expired}")).await;
    send(&mut ws, json!({"type": "join"})).await;
    let v = recv(&mut ws).await;
    assert_eq!(v["code"], "unauthorized", "{v}");
    assert!(v["message"].as_str().unwrap().contains("expired"), "{v}");
    // Wrong room.
    let mut ws = connect(
        s.addr,
        &format!("?access_token={}&room=other", token("r", "eve", Role::Host)),
    )
    .await;
    send(&mut ws, json!({"type": "join"})).await;
    let v = recv(&mut ws).await;
    assert_eq!(v["code"], "forbidden", "{v}");
    // No token; first message not join.
    let mut ws = connect(s.addr, "").await;
    send(&mut ws, json!({"type": "join"})).await;
    assert_eq!(recv(&mut ws).await["field"], "token");
    let mut ws = connect(s.addr, "").await;
    send(&mut ws, json!({"type": "ping"})).await;
    assert_eq!(recv(&mut ws).await["field"], "type");
}

#[tokio::test]
async fn role_refusals_and_control_flow() {
    let s = start().await;
    let mut host = join(s.addr, "r", "host", Role::Host).await;
    let mut viewer = join(s.addr, "r", "vic", Role::Viewer).await;

    // A viewer publishing.
    send(
        &mut viewer,
        json!({"type": "publish", "cid": "c1", "kind": "video", "source": "camera", "req": 2}),
    )
    .await;
    let v = recv(&mut viewer).await;
    assert_eq!(
        (v["type"].as_str(), v["code"].as_str(), v["req"].as_i64()),
        (Some("error"), Some("forbidden"), Some(2)),
        "{v}"
    );

    // Bad input names the field.
    send(
        &mut viewer,
        json!({"type": "publish", "cid": "c1", "kind": "smell", "source": "camera"}),
    )
    .await;
    assert_eq!(recv(&mut viewer).await["field"], "kind");
    send(
        &mut viewer,
        json!({"type": "mute", "track_sid": 5, "muted": true}),
    )
    .await;
    assert_eq!(recv(&mut viewer).await["field"], "track_sid");
    send(&mut viewer, json!({"type": "nope"})).await;
    assert_eq!(recv(&mut viewer).await["field"], "type");

    // Ping.
    send(&mut viewer, json!({"type": "ping", "t": 42})).await;
    assert_eq!(recv(&mut viewer).await, json!({"type": "pong", "t": 42}));

    // Three controllers fit, the fourth is refused.
    let mut c1 = join(s.addr, "r", "c1", Role::Controller).await;
    let _c2 = join(s.addr, "r", "c2", Role::Controller).await;
    let _c3 = join(s.addr, "r", "c3", Role::Controller).await;
    let mut c4 = connect(
        s.addr,
        &format!("?access_token={}", token("r", "c4", Role::Controller)),
    )
    .await;
    send(&mut c4, json!({"type": "join"})).await;
    let v = recv(&mut c4).await;
    assert_eq!(v["code"], "rejected", "{v}");

    // Input from an ungranted controller.
    send(&mut c1, json!({"type": "input", "event": {"k": "a"}})).await;
    assert_eq!(recv_type(&mut c1, "error").await["code"], "forbidden");

    // A non-host granting control.
    send(&mut c1, json!({"type": "grant_control", "identity": "c1"})).await;
    assert_eq!(recv_type(&mut c1, "error").await["code"], "forbidden");

    // Request → host sees it → grant → input reaches the host only.
    send(&mut c1, json!({"type": "request_control"})).await;
    let v = recv_type(&mut host, "control_requested").await;
    assert_eq!(v["identity"], "c1");
    send(
        &mut host,
        json!({"type": "grant_control", "identity": "c1"}),
    )
    .await;
    assert_eq!(
        recv_type(&mut c1, "control_granted").await["identity"],
        "c1"
    );
    send(&mut c1, json!({"type": "input", "event": {"k": "b"}})).await;
    let v = recv_type(&mut host, "input").await;
    assert_eq!(
        v,
        json!({"type": "input", "from": "c1", "event": {"k": "b"}})
    );

    // Host transfer to a controller; leave shows up for others.
    send(
        &mut host,
        json!({"type": "transfer_host", "identity": "c1"}),
    )
    .await;
    assert_eq!(
        recv_type(&mut viewer, "host_transferred").await["identity"],
        "c1"
    );
    send(&mut viewer, json!({"type": "leave"})).await;
    assert_eq!(
        recv_type(&mut host, "participant_left").await["identity"],
        "vic"
    );
}

#[tokio::test]
async fn kicked_client_gets_leave() {
    let s = start().await;
    let mut a = join(s.addr, "k", "a", Role::Host).await;
    let adm = format!("Bearer {}", admin());
    let r = http(
        s.addr,
        "DELETE",
        "/api/rooms/k/participants/a",
        &[("Authorization", &adm)],
        "",
    )
    .await;
    assert_eq!(r.0, 200);
    assert_eq!(recv_type(&mut a, "leave").await["reason"], "kicked");
}
