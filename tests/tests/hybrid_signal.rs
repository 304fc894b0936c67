//! Hybrid P2P/SFU over real WebSocket clients and an in-process dataplane on 127.0.0.1
//! (docs/protocol.md "Hybrid P2P/SFU"): an auto room with low thresholds (sfu_at = 3,
//! p2p_at = 1, prewarm_at = 2) starts P2P with no dataplane session and relays p2p_signal
//! both ways; the 3rd join migrates it to SFU (mode_change to all, a withheld ack is resent,
//! mode_ready from all → mode_changed), a join during the migration is queued and admitted
//! after it; back down to 1 participant the room returns to P2P and its sessions close.
//! Also: TURN REST credentials in `joined.ice_servers` against a known HMAC vector.

#[path = "../../control/tests/api_support/mod.rs"]
mod api_support;
mod node_support;

use std::time::{Duration, SystemTime};

use api_support::*;
use futures_util::StreamExt;
use node_support::*;
use serde_json::{json, Value};
use sluice_control::auth::Role;
use sluice_control::hybrid::turn::{credential, TurnConfig};
use sluice_control::hybrid::HybridConfig;
use sluice_control::room::RoomMode;
use tokio_tungstenite::tungstenite::Message;

const OFFER: &str = include_str!("../../control/tests/fixtures/sdp/chromium_cam_mic.sdp");
const TURN_SECRET: &str = "north-wind-shared-secret";

async fn next_json(ws: &mut Ws) -> Value {
    loop {
        let m = tokio::time::timeout(Duration::from_secs(15), ws.next())
            .await
            .expect("a message within 15 s")
            .expect("socket open")
            .expect("no socket error");
        if let Message::Text(t) = m {
            return serde_json::from_str(&t).unwrap();
        }
    }
}

/// Skips other messages (bounded); an `error` while waiting fails the test.
async fn recv_type(ws: &mut Ws, ty: &str) -> Value {
    for _ in 0..50 {
        let v = next_json(ws).await;
        if v["type"] == ty {
            return v;
        }
        assert_ne!(v["type"], "error", "while waiting for {ty}: {v}");
    }
    panic!("no {ty} message");
}

/// Messages up to and including the first of type `ty`.
async fn recv_until(ws: &mut Ws, ty: &str) -> Vec<Value> {
    let mut seen = Vec::new();
    for _ in 0..50 {
        let v = next_json(ws).await;
        assert_ne!(v["type"], "error", "while waiting for {ty}: {v}");
        let done = v["type"] == ty;
        seen.push(v);
        if done {
            return seen;
        }
    }
    panic!("no {ty} message");
}

async fn connect(addr: std::net::SocketAddr, identity: &str, role: Role) -> Ws {
    let t = token("h", identity, role);
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/rtc?access_token={t}"))
        .await
        .unwrap();
    send(
        &mut ws,
        json!({"type": "join", "capabilities": ["p2p"], "req": 1}),
    )
    .await;
    ws
}

async fn join(addr: std::net::SocketAddr, identity: &str, role: Role) -> (Ws, Value) {
    let mut ws = connect(addr, identity, role).await;
    let joined = recv_type(&mut ws, "joined").await;
    (ws, joined)
}

async fn room(addr: std::net::SocketAddr) -> Value {
    let auth = format!("Bearer {}", admin());
    let (st, v) = http(addr, "GET", "/api/rooms/h", &[("Authorization", &auth)], "").await;
    assert_eq!(st, 200, "{v}");
    v
}

/// Polls the room (bounded) until `f` holds.
async fn room_until(addr: std::net::SocketAddr, what: &str, f: impl Fn(&Value) -> bool) -> Value {
    for _ in 0..150 {
        let v = room(addr).await;
        if f(&v) {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("room never reached: {what}: {}", room(addr).await);
}

fn low_thresholds() -> HybridConfig {
    HybridConfig {
        default_mode: RoomMode::Auto,
        sfu_at: 3,
        p2p_at: 1,
        prewarm_at: 2,
        cooldown_ms: 300,
        ack_retry_ms: 400,
        migration_timeout_ms: 20_000,
        ..HybridConfig::default()
    }
}

fn sid(joined: &Value) -> String {
    joined["participant"]["sid"].as_str().unwrap().to_owned()
}

#[test]
fn turn_credential_matches_a_known_hmac_sha1_vector() {
    // RFC 2104 HMAC-SHA1, the widely published "quick brown fox" vector
    // (de7c9b85b8b78aa6bc8a7a36f70a90701c9db4d9), base64-encoded as coturn compares it.
    assert_eq!(
        credential(b"key", "The quick brown fox jumps over the lazy dog"),
        "3nybhbi3iqa8ino29wqQcBydtNk="
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_room_relays_p2p_then_migrates_with_acks_and_back() {
    let Some((_dir, dp)) = loopback_dataplane(|_| {}) else {
        return;
    };
    let socket = dp.control_socket().to_path_buf();
    let s = start_with(|o| {
        o.dataplane_socket = Some(socket);
        o.hybrid = low_thresholds();
        o.turn = Some(TurnConfig {
            urls: vec!["turn:127.0.0.1:3479?transport=udp".into()],
            secret: TURN_SECRET.into(),
            ttl_s: 86_400,
            relay_ips: Vec::new(),
        });
    })
    .await;
    wait_linked(s.addr).await;

    // 1. Alice: an auto room starts P2P; TURN credentials come with the join.
    let (mut alice, aj) = join(s.addr, "alice", Role::Host).await;
    assert_eq!(aj["req"], 1);
    assert_eq!(aj["mode"]["mode"], "p2p", "{aj}");
    assert_eq!(aj["mode"]["setting"], "auto");
    assert!(aj["mode"]["migrating"].is_null());
    let ice = &aj["ice_servers"][0];
    assert_eq!(ice["urls"][0], "turn:127.0.0.1:3479?transport=udp");
    let username = ice["username"].as_str().unwrap();
    let (expiry, who) = username.split_once(':').unwrap();
    assert_eq!(who, "alice");
    let now_s = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let expiry: u64 = expiry.parse().unwrap();
    assert!(expiry.abs_diff(now_s + 86_400) <= 5, "{expiry} vs {now_s}");
    assert_eq!(
        ice["credential"].as_str().unwrap(),
        credential(TURN_SECRET.as_bytes(), username)
    );

    // 2. Bob: 2 participants = prewarm_at; both hear mode_prewarm.
    let (mut bob, bj) = join(s.addr, "bob", Role::Controller).await;
    assert_eq!(bj["mode"]["mode"], "p2p");
    assert_eq!(bj["participants"][0]["identity"], "alice");
    recv_type(&mut alice, "participant_joined").await;
    recv_type(&mut alice, "mode_prewarm").await;
    recv_type(&mut bob, "mode_prewarm").await;
    let (alice_sid, bob_sid) = (sid(&aj), sid(&bj));

    // 3. P2P relay both ways: bob (the later joiner) offers, alice answers, candidates flow.
    let offer = json!({"type": "offer", "sdp": OFFER});
    send(
        &mut bob,
        json!({"type": "p2p_signal", "to": alice_sid, "signal": offer}),
    )
    .await;
    let got = recv_type(&mut alice, "p2p_signal").await;
    assert_eq!(got["from"], bob_sid.as_str());
    assert_eq!(got["from_identity"], "bob");
    assert_eq!(got["signal"], offer);
    let answer =
        json!({"type": "answer", "sdp": OFFER.replace("a=setup:actpass", "a=setup:active")});
    send(
        &mut alice,
        json!({"type": "p2p_signal", "to": bob_sid, "signal": answer}),
    )
    .await;
    assert_eq!(recv_type(&mut bob, "p2p_signal").await["signal"], answer);
    let cand = json!({"type": "candidate", "candidate": {"candidate": "candidate:1 1 udp 2130706431 127.0.0.1 50000 typ host", "sdpMid": "0", "sdpMLineIndex": 0}});
    send(
        &mut bob,
        json!({"type": "p2p_signal", "to": alice_sid, "signal": cand}),
    )
    .await;
    assert_eq!(recv_type(&mut alice, "p2p_signal").await["signal"], cand);
    // Unknown target.
    send(
        &mut bob,
        json!({"type": "p2p_signal", "to": "PA_nope", "signal": cand, "req": 3}),
    )
    .await;
    let e = recv_type(&mut bob, "error").await;
    assert_eq!(
        (e["code"].as_str(), e["field"].as_str()),
        (Some("not_found"), Some("to")),
        "{e}"
    );
    // No dataplane session in P2P.
    let r = room(s.addr).await;
    assert_eq!(r["mode"], "p2p", "{r}");
    assert_eq!(r["dataplane_sessions"], 0);

    // 4. Carol is the 3rd: P2P → SFU. Everyone (carol too) gets the same mode_change.
    let (mut carol, cj) = join(s.addr, "carol", Role::Controller).await;
    let migrating = &cj["mode"]["migrating"];
    assert_eq!(migrating["to"], "sfu", "{cj}");
    let id = migrating["id"].as_u64().unwrap();
    let mut changes = Vec::new();
    for ws in [&mut alice, &mut bob, &mut carol] {
        let mc = recv_type(ws, "mode_change").await;
        assert_eq!(mc["id"], id);
        assert_eq!(
            (mc["from"].as_str(), mc["to"].as_str()),
            (Some("p2p"), Some("sfu"))
        );
        assert_eq!(mc["reason"], "threshold");
        assert_eq!(mc["strategy"], "gradual");
        assert_eq!(mc["grace_ms"], 5_000);
        changes.push(mc);
    }
    send(&mut alice, json!({"type": "mode_ack", "id": id})).await;
    send(&mut bob, json!({"type": "mode_ack", "id": id})).await;
    // Carol withholds her ack: the same mode_change comes again, to her.
    let again = recv_type(&mut carol, "mode_change").await;
    assert_eq!(again, changes[2]);
    send(&mut carol, json!({"type": "mode_ack", "id": id})).await;

    // 5. Dave joins during the migration: queued, not admitted yet.
    let mut dave = connect(s.addr, "dave", Role::Viewer).await;
    let q = next_json(&mut dave).await;
    assert_eq!(q["type"], "join_queued", "{q}");
    assert_eq!(q["position"], 1);
    assert_eq!(q["req"], 1);
    assert!(q["estimated_wait_ms"].as_u64().unwrap() <= 20_000);
    assert_eq!(room(s.addr).await["num_participants"], 3);

    // While migrating, the relay still works and SFU sessions may be created.
    send(
        &mut alice,
        json!({"type": "p2p_signal", "to": bob_sid, "signal": cand}),
    )
    .await;
    recv_type(&mut bob, "p2p_signal").await;
    send(
        &mut alice,
        json!({"type": "publish", "cid": "a", "kind": "audio", "source": "microphone"}),
    )
    .await;
    recv_type(&mut alice, "track_published").await;
    send(
        &mut alice,
        json!({"type": "offer", "pc": "publisher", "sdp": OFFER.replace("a=sendrecv", "a=sendonly")}),
    )
    .await;
    recv_type(&mut alice, "answer").await;
    room_until(s.addr, "a dataplane session while migrating", |r| {
        r["dataplane_sessions"].as_u64() >= Some(1)
    })
    .await;

    // 6. mode_ready from everyone → mode_changed to all (no extra mode_change for the
    //    ackers), then dave is admitted into SFU.
    for ws in [&mut alice, &mut bob, &mut carol] {
        send(
            ws,
            json!({"type": "mode_ready", "id": id, "audio_gap_ms": 12.5}),
        )
        .await;
    }
    for ws in [&mut alice, &mut bob] {
        let seen = recv_until(ws, "mode_changed").await;
        let last = seen.last().unwrap();
        assert_eq!(
            (last["id"].as_u64(), last["mode"].as_str()),
            (Some(id), Some("sfu"))
        );
        assert!(
            !seen.iter().any(|m| m["type"] == "mode_change"),
            "an acker got a resend: {seen:?}"
        );
    }
    recv_type(&mut carol, "mode_changed").await;
    let dj = recv_type(&mut dave, "joined").await;
    assert_eq!(dj["mode"]["mode"], "sfu", "{dj}");
    assert!(dj["mode"]["migrating"].is_null());
    assert_eq!(dj["participants"].as_array().unwrap().len(), 3);
    let pj = recv_type(&mut alice, "participant_joined").await;
    assert_eq!(pj["participant"]["identity"], "dave");
    let r = room(s.addr).await;
    assert_eq!(
        (r["mode"].as_str(), r["num_participants"].as_u64()),
        (Some("sfu"), Some(4))
    );

    // In SFU mode the relay is refused.
    send(
        &mut bob,
        json!({"type": "p2p_signal", "to": alice_sid, "signal": cand}),
    )
    .await;
    let e = recv_type(&mut bob, "error").await;
    assert_eq!(
        (e["code"].as_str(), e["field"].as_str()),
        (Some("rejected"), Some("mode")),
        "{e}"
    );

    // 7. Back down to 1 (after the 300 ms cooldown): SFU → P2P, sessions closed.
    for ws in [&mut dave, &mut carol, &mut bob] {
        send(ws, json!({"type": "leave"})).await;
    }
    let mc = recv_type(&mut alice, "mode_change").await;
    assert_eq!(
        (mc["from"].as_str(), mc["to"].as_str()),
        (Some("sfu"), Some("p2p")),
        "{mc}"
    );
    assert_eq!(mc["reason"], "threshold");
    let back = mc["id"].as_u64().unwrap();
    assert_ne!(back, id);
    send(&mut alice, json!({"type": "mode_ready", "id": back})).await;
    let done = recv_type(&mut alice, "mode_changed").await;
    assert_eq!(done["mode"], "p2p");
    room_until(s.addr, "p2p with no dataplane session", |r| {
        r["mode"] == "p2p" && r["dataplane_sessions"] == 0
    })
    .await;

    // 8. Metrics and the event log.
    let (_, m) = http(s.addr, "GET", "/metrics", &[], "").await;
    let m = m.as_str().unwrap().to_owned();
    for line in [
        "sluice_migrations_total{direction=\"p2p_to_sfu\",result=\"ok\"} 1",
        "sluice_migrations_total{direction=\"sfu_to_p2p\",result=\"ok\"} 1",
        "sluice_rooms_by_mode{mode=\"p2p\"} 1",
        "sluice_migration_audio_gap_ms_count 3",
        "sluice_migration_seconds_count 2",
    ] {
        assert!(m.contains(line), "missing {line:?} in\n{m}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pinned_p2p_and_host_only_set_mode() {
    // No dataplane at all: a P2P room needs none.
    let s = start_with(|o| {
        o.hybrid = HybridConfig {
            default_mode: RoomMode::P2p,
            p2p_limit: 2,
            ..HybridConfig::default()
        };
    })
    .await;
    let (mut alice, aj) = join(s.addr, "alice", Role::Host).await;
    assert_eq!(aj["mode"]["mode"], "p2p");
    assert_eq!(aj["ice_servers"], json!([]));
    let (mut bob, _) = join(s.addr, "bob", Role::Controller).await;
    // The 3rd is refused (p2p_limit = 2).
    let mut carol = connect(s.addr, "carol", Role::Viewer).await;
    let e = recv_type(&mut carol, "error").await;
    assert_eq!(
        (e["code"].as_str(), e["field"].as_str()),
        (Some("rejected"), Some("room")),
        "{e}"
    );
    // An SFU offer in a pinned P2P room is refused.
    send(
        &mut bob,
        json!({"type": "offer", "pc": "publisher", "sdp": OFFER}),
    )
    .await;
    let e = recv_type(&mut bob, "error").await;
    assert_eq!(e["field"], "mode", "{e}");
    // Only the host may set the mode.
    send(&mut bob, json!({"type": "set_mode", "mode": "auto"})).await;
    let e = recv_type(&mut bob, "error").await;
    assert_eq!(e["code"], "forbidden", "{e}");
    send(&mut alice, json!({"type": "set_mode", "mode": "auto"})).await;
    assert_eq!(recv_type(&mut bob, "mode_setting").await["setting"], "auto");
    // The API sees it, and can change it too (sfu: no dataplane → stays p2p, notice).
    let auth = format!("Bearer {}", admin());
    let (st, v) = http(
        s.addr,
        "GET",
        "/api/rooms/h",
        &[("Authorization", &auth)],
        "",
    )
    .await;
    assert_eq!(st, 200);
    assert_eq!(
        (v["setting"].as_str(), v["mode"].as_str()),
        (Some("auto"), Some("p2p")),
        "{v}"
    );
    let (st, v) = http(
        s.addr,
        "PUT",
        "/api/rooms/h/mode",
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
        ],
        r#"{"mode": "bogus"}"#,
    )
    .await;
    assert_eq!(st, 400, "{v}");
    let (st, v) = http(
        s.addr,
        "PUT",
        "/api/rooms/h/mode",
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
        ],
        r#"{"mode": "sfu"}"#,
    )
    .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["setting"], "sfu");
    let n = recv_type(&mut alice, "notice").await;
    assert_eq!(n["code"], "sfu_unavailable", "{n}");

    // Room creation with per-room overrides; validation names the key.
    let (st, v) = http(
        s.addr,
        "POST",
        "/api/rooms",
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
        ],
        r#"{"name": "o", "hybrid": {"default_mode": "auto", "sfu_at": 4, "p2p_at": 4}}"#,
    )
    .await;
    assert_eq!(st, 400, "{v}");
    assert_eq!(v["error"]["field"], "hybrid.sfu_at", "{v}");
    let (st, v) = http(
        s.addr,
        "POST",
        "/api/rooms",
        &[("Authorization", &auth), ("Content-Type", "application/json")],
        r#"{"name": "o", "hybrid": {"default_mode": "auto", "sfu_at": 4, "p2p_at": 2, "prewarm_at": 3}}"#,
    )
    .await;
    assert_eq!(st, 201, "{v}");
    assert_eq!(
        (v["setting"].as_str(), v["mode"].as_str()),
        (Some("auto"), Some("p2p")),
        "{v}"
    );
    assert_eq!(v["config"]["hybrid"]["sfu_at"], 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mode_failed_falls_back_to_p2p_and_whip_forces_sfu() {
    let Some((_dir, dp)) = loopback_dataplane(|_| {}) else {
        return;
    };
    let socket = dp.control_socket().to_path_buf();
    let s = start_with(|o| {
        o.dataplane_socket = Some(socket);
        o.hybrid = low_thresholds();
    })
    .await;
    wait_linked(s.addr).await;

    // A failed SFU side: back to P2P with sfu_failed, a new id, mode_changed and a notice.
    let (mut alice, _) = join(s.addr, "alice", Role::Host).await;
    let (mut bob, _) = join(s.addr, "bob", Role::Controller).await;
    let (mut carol, _) = join(s.addr, "carol", Role::Controller).await;
    let id = recv_type(&mut alice, "mode_change").await["id"]
        .as_u64()
        .unwrap();
    send(
        &mut bob,
        json!({"type": "mode_failed", "id": id, "reason": "sfu pc failed"}),
    )
    .await;
    for ws in [&mut alice, &mut bob, &mut carol] {
        let reset = recv_until(ws, "mode_changed").await;
        let mc = reset
            .iter()
            .rfind(|m| m["type"] == "mode_change")
            .expect("the reset's mode_change");
        assert_ne!(mc["id"].as_u64(), Some(id));
        assert_eq!(
            (mc["to"].as_str(), mc["reason"].as_str()),
            (Some("p2p"), Some("sfu_failed")),
            "{mc}"
        );
        let done = reset.last().unwrap();
        assert_eq!(
            (done["id"].clone(), done["mode"].as_str()),
            (mc["id"].clone(), Some("p2p"))
        );
        assert_eq!(recv_type(ws, "notice").await["code"], "sfu_failed");
    }
    assert_eq!(room(s.addr).await["mode"], "p2p");
    let (_, m) = http(s.addr, "GET", "/metrics", &[], "").await;
    assert!(
        m.as_str()
            .unwrap()
            .contains("sluice_migrations_total{direction=\"p2p_to_sfu\",result=\"failed\"} 1"),
        "{m}"
    );
    // The cooldown (300 ms) passes with the SFU healthy and 3 participants: it tries again.
    let again = recv_type(&mut alice, "mode_change").await;
    assert_eq!(
        (again["to"].as_str(), again["reason"].as_str()),
        (Some("sfu"), Some("threshold"))
    );
    for ws in [alice, bob, carol] {
        drop(ws);
    }

    // WHIP cannot do P2P: publishing into an auto room in P2P moves it to SFU.
    let auth = format!("Bearer {}", admin());
    let (st, v) = http(
        s.addr,
        "POST",
        "/api/rooms",
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
        ],
        r#"{"name": "w", "hybrid": {"default_mode": "auto"}}"#,
    )
    .await;
    assert_eq!(st, 201, "{v}");
    let t = token("w", "dora", Role::Host);
    let (mut dora, _) =
        tokio_tungstenite::connect_async(format!("ws://{}/rtc?access_token={t}", s.addr))
            .await
            .unwrap();
    send(&mut dora, json!({"type": "join", "capabilities": ["p2p"]})).await;
    assert_eq!(recv_type(&mut dora, "joined").await["mode"]["mode"], "p2p");
    let bearer = format!("Bearer {}", token("w", "obs", Role::Controller));
    let (st, head, body) = http_raw(
        s.addr,
        "POST",
        "/whip/w",
        &[
            ("Authorization", &bearer),
            ("Content-Type", "application/sdp"),
        ],
        &OFFER.replace("a=sendrecv", "a=sendonly"),
    )
    .await;
    assert_eq!(st, 201, "{head}\n{body}");
    let mc = recv_type(&mut dora, "mode_change").await;
    assert_eq!(
        (mc["to"].as_str(), mc["reason"].as_str()),
        (Some("sfu"), Some("p2p_incapable")),
        "{mc}"
    );
}
