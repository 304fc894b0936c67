//! Publish/subscribe SDP round trip against an in-process dataplane
//! (`sluice_dataplane::runtime::Dataplane::start` on 127.0.0.1): publisher offer → answer
//! (CreateSession + AddTrack), the other participant gets a subscriber offer, answers it
//! (CreateSession + Subscribe); WHEP plays the room's tracks; leave closes the sessions.

#[path = "../../control/tests/api_support/mod.rs"]
mod api_support;
mod node_support;

use api_support::*;
use node_support::*;
use serde_json::json;
use sluice_control::auth::Role;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_subscribe_round_trip() {
    let Some((_dir, dp)) = loopback_dataplane(|_| {}) else {
        return;
    };
    let s = linked_server(&dp, |_| {}).await;

    let mut alice = join(s.addr, "alice", Role::Host).await;
    let mut bob = join(s.addr, "bob", Role::Controller).await;

    send(
        &mut alice,
        json!({"type": "publish", "cid": "a", "kind": "audio", "source": "microphone"}),
    )
    .await;
    let pa = recv_type(&mut alice, "track_published").await;
    send(
        &mut alice,
        json!({"type": "publish", "cid": "v", "kind": "video", "source": "camera"}),
    )
    .await;
    let pv = recv_type(&mut alice, "track_published").await;
    let offer = OFFER.replace("a=sendrecv", "a=sendonly");
    send(
        &mut alice,
        json!({"type": "offer", "pc": "publisher", "sdp": offer, "req": 5}),
    )
    .await;
    let answer = recv_type(&mut alice, "answer").await;
    assert_eq!(answer["req"], 5);
    let sdp = answer["sdp"].as_str().unwrap();
    assert!(sdp.contains("a=ice-lite"), "{sdp}");
    assert!(
        sdp.contains(dp.fingerprint().split_once(' ').unwrap().1),
        "{sdp}"
    );
    assert!(sdp.contains("a=candidate:"), "{sdp}");

    // Bob sees both tracks and gets a subscriber offer carrying them.
    let tp = recv_type(&mut bob, "track_published").await;
    assert_eq!(tp["track"]["sid"], pa["track"]["sid"]);
    let mut sub_offer = recv_type(&mut bob, "offer").await;
    // A browser asks for a layer from `ontrack`, before its answer: kept, not refused.
    send(
        &mut bob,
        json!({"type": "layer", "track_sid": pv["track"]["sid"], "max_spatial": 0, "req": 7}),
    )
    .await;
    // The first offer may hold one track if the second arrived after it; wait for both.
    while sub_offer["sdp"].as_str().unwrap().matches("m=").count() < 2 {
        send(&mut bob, json!({"type": "answer", "pc": "subscriber", "sdp": client_answer(sub_offer["sdp"].as_str().unwrap())})).await;
        sub_offer = recv_type(&mut bob, "offer").await;
    }
    let text = sub_offer["sdp"].as_str().unwrap();
    assert!(
        text.contains("a=sendonly") && text.contains("a=ssrc:"),
        "{text}"
    );
    send(
        &mut bob,
        json!({"type": "answer", "pc": "subscriber", "sdp": client_answer(text), "req": 9}),
    )
    .await;
    // No error comes back; ping proves the answer was processed in order.
    send(&mut bob, json!({"type": "ping", "t": 1})).await;
    recv_type(&mut bob, "pong").await;

    // Resume: a fresh subscriber offer with new ICE credentials.
    send(&mut bob, json!({"type": "resume"})).await;
    let again = recv_type(&mut bob, "offer").await;
    let ufrag = |s: &str| {
        s.lines()
            .find(|l| l.starts_with("a=ice-ufrag:"))
            .unwrap()
            .to_owned()
    };
    assert_ne!(ufrag(again["sdp"].as_str().unwrap()), ufrag(text));
    send(&mut bob, json!({"type": "answer", "pc": "subscriber", "sdp": client_answer(again["sdp"].as_str().unwrap())})).await;
    send(&mut bob, json!({"type": "ping", "t": 2})).await;
    recv_type(&mut bob, "pong").await;

    // WHEP plays the room's tracks: our SSRCs are in the answer.
    let t = format!("Bearer {}", token("m", "player", Role::Viewer));
    let whep = OFFER.replace("a=sendrecv", "a=recvonly");
    let (st, head, body) = http_raw(
        s.addr,
        "POST",
        "/whep/m",
        &[("Authorization", &t), ("Content-Type", "application/sdp")],
        &whep,
    )
    .await;
    assert_eq!(st, 201, "{head}\n{body}");
    // The resource id is 128 random bits (docs/security.md, finding #3), not the sid.
    assert!(
        head.lines().any(|l| l
            .to_ascii_lowercase()
            .strip_prefix("location: /whep/m/")
            .is_some_and(|id| id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()))),
        "{head}"
    );
    assert!(
        body.contains("a=ssrc:") && body.contains("a=sendonly"),
        "{body}"
    );
    let loc = head
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("location:"))
        .unwrap()[9..]
        .trim()
        .to_owned();
    assert_eq!(
        http(s.addr, "DELETE", &loc, &[("Authorization", &t)], "")
            .await
            .0,
        200
    );

    // Alice leaves: bob hears it, and her tracks go away.
    send(&mut alice, json!({"type": "leave"})).await;
    recv_type(&mut bob, "participant_left").await;
    let (_, _, metrics) = http_raw(s.addr, "GET", "/metrics", &[], "").await;
    assert!(metrics.contains("sluice_dataplane_up 1"), "{metrics}");
    // The workers' SFU latency histograms and table sizes (a stats snapshot a second).
    let mut metrics = metrics;
    for _ in 0..50 {
        if metrics.contains("sluice_worker_forward_latency_seconds_bucket") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        metrics = http_raw(s.addr, "GET", "/metrics", &[], "").await.2;
    }
    for name in [
        "sluice_worker_forward_latency_seconds_bucket",
        "sluice_worker_forward_latency_excl_pacer_seconds_count",
        "sluice_worker_map_entries",
        "sluice_dataplane_registry_entries",
    ] {
        assert!(metrics.contains(name), "{name} missing: {metrics}");
    }
    assert!(
        !metrics.contains("reason=\"lat_"),
        "latency entries exported as drops"
    );
    s.stop();
    dp.stop();
}
