//! Tests of `remote.rs`, `remote_home.rs` and `remote_events.rs`: the bounds, hit.

use serde_json::json;

use super::super::remote_events::events;
use super::*;
use crate::server::lock_tests::options;
use crate::server::Server;

#[tokio::test]
async fn the_event_queue_drops_and_counts_past_its_bound() {
    let server = Server::start(options()).await.unwrap();
    let app = Arc::clone(&server.app);
    let remote = &app.cascade.remote;
    // A queue nobody drains (the forwarder would send to the home).
    let (tx, _rx) = mpsc::channel(EVENT_QUEUE);
    remote.queue.set(tx).unwrap();
    let session = SessionId(77);
    remote.owners.locked().insert(session, "home".into());
    let n = Notification::IceDisconnected { session };
    for _ in 0..EVENT_QUEUE + 5 {
        assert!(
            app.forward_notification(&n),
            "a held session's event goes to its home"
        );
    }
    assert_eq!(remote.metrics.events_dropped.load(Ordering::Relaxed), 5);
    // Another session's is not this edge's to forward.
    let other = Notification::IceDisconnected {
        session: SessionId(78),
    };
    assert!(!app.forward_notification(&other));
    server.stop();
}

#[tokio::test]
async fn placed_sessions_and_subscriptions_refuse_past_their_bound_naming_the_field() {
    let server = Server::start(options()).await.unwrap();
    let app = Arc::clone(&server.app);
    let remote = &app.cascade.remote;
    let edge = NodeInfo {
        id: "b".into(),
        lease_expires_ms: 0,
        boot: "x".into(),
        region: "default".into(),
        advertise: String::new(),
        internal: String::new(),
        capacity: 1,
        load: 0,
        state: "serving".into(),
        reservations: 0,
        rooms: 0,
        dataplane: Default::default(),
        media: String::new(),
    };
    for i in 0..MAX_REMOTE_SESSIONS as u64 {
        assert!(app.note_placed(SessionId(i), &edge));
    }
    assert!(!app.note_placed(SessionId(u64::MAX), &edge));
    assert_eq!(remote.placed.locked().len(), MAX_REMOTE_SESSIONS);
    assert_eq!(remote.metrics.limit_refusals.load(Ordering::Relaxed), 1);
    let e = remote
        .admit(
            MAX_REMOTE_SUBS,
            MAX_REMOTE_SUBS,
            "remote subscription",
            "subscription",
        )
        .unwrap_err();
    assert_eq!(
        (e.code, e.field.as_deref()),
        ("too_large", Some("subscription"))
    );
    assert!(remote
        .admit(MAX_REMOTE_SUBS - 1, MAX_REMOTE_SUBS, "x", "y")
        .is_ok());
    assert_eq!(remote.metrics.limit_refusals.load(Ordering::Relaxed), 2);
    let mut text = String::new();
    remote.write_metrics(&mut text);
    assert!(
        text.contains("sluice_cascade_remote_sessions{side=\"home\"} 4096"),
        "{text}"
    );
    assert!(
        text.contains("sluice_cascade_remote_limit_refusals_total 2"),
        "{text}"
    );
    server.stop();
}

#[tokio::test]
async fn an_edge_may_not_post_more_than_a_batch_nor_events_of_sessions_not_placed_on_it() {
    let server = Server::start(options()).await.unwrap();
    let app = Arc::clone(&server.app);
    let now = crate::auth::unix_seconds(std::time::SystemTime::now());
    let token = crate::auth::mint_admin(
        "k",
        b"lock-test-secret-0123456789",
        &crate::auth::AdminClaims {
            iss: String::new(),
            sub: "node:b".into(),
            admin: true,
            exp: now + 60,
            nbf: now - 5,
            iat: now,
        },
    );
    let mut headers = HeaderMap::new();
    headers.insert("authorization", format!("Bearer {token}").parse().unwrap());
    let ev = |s: u64| json!({"type": "ice_disconnected", "session": s});
    let many: Vec<Value> = (0..EVENT_BATCH as u64 + 1).map(ev).collect();
    let e = events(
        State(Arc::clone(&app)),
        headers.clone(),
        Ok(Json(json!({"node": "b", "events": many}))),
    )
    .await
    .unwrap_err();
    assert_eq!(e.field.as_deref(), Some("events"));
    // Session 5 was placed on `c`, not `b`: `b`'s word about it is refused, counted.
    app.cascade
        .remote
        .placed
        .locked()
        .insert(SessionId(5), ("c".into(), "x".into()));
    let ok = events(
        State(Arc::clone(&app)),
        headers,
        Ok(Json(json!({"node": "b", "events": [ev(5), ev(6)]}))),
    )
    .await
    .unwrap();
    assert_eq!(ok, StatusCode::NO_CONTENT);
    let m = &app.cascade.remote.metrics;
    assert_eq!(m.events_refused.load(Ordering::Relaxed), 2);
    assert_eq!(m.events_applied.load(Ordering::Relaxed), 0);
    server.stop();
}

#[test]
fn an_edge_that_lost_its_trunk_under_our_sessions_is_avoided_for_a_while() {
    let remote = Remote::default();
    let now = std::time::Instant::now();
    // No session there: nothing to avoid.
    remote.relays_lost("b");
    assert!(!remote.avoided("b", now));
    remote
        .placed
        .locked()
        .insert(SessionId(1), ("b".into(), "boot".into()));
    remote.relays_lost("b");
    assert_eq!(
        remote.placed.locked()[&SessionId(1)].1,
        "",
        "re-made by the janitor"
    );
    assert!(remote.avoided("b", std::time::Instant::now()));
    assert!(!remote.avoided("c", std::time::Instant::now()));
    assert!(!remote.avoided("b", std::time::Instant::now() + AVOID_EDGE));
    // Bounded: one entry per peer, at most MAX_NODES.
    for i in 0..crate::cluster::MAX_NODES + 5 {
        let id = format!("n{i}");
        remote
            .placed
            .locked()
            .insert(SessionId(100 + i as u64), (id.clone(), "boot".into()));
        remote.relays_lost(&id);
    }
    assert!(remote.avoid.locked().len() <= crate::cluster::MAX_NODES);
}

#[test]
fn recent_placements_are_bounded_and_age_out() {
    let remote = Remote::default();
    let t0 = std::time::Instant::now();
    let window = std::time::Duration::from_secs(3);
    for _ in 0..MAX_RECENT + 10 {
        remote.note_recent("b", t0, window);
    }
    assert_eq!(remote.recent("b", t0, window), MAX_RECENT as u64);
    for i in 0..crate::cluster::MAX_NODES + 5 {
        remote.note_recent(&format!("n{i}"), t0, window);
    }
    assert!(remote.recent.locked().len() <= crate::cluster::MAX_NODES);
    // Past the window they count for nothing, and the next note forgets them.
    let later = t0 + window;
    assert_eq!(remote.recent("b", later, window), 0);
    remote.note_recent("c", later, window);
    assert_eq!(remote.recent.locked().len(), 1);
}

#[test]
fn the_media_load_moves_placed_participants_to_their_edge() {
    let remote = Remote::default();
    remote
        .placed
        .locked()
        .insert(SessionId(1), ("b".into(), "boot".into()));
    remote.owners.locked().insert(SessionId(2), "c".into());
    remote.owners.locked().insert(SessionId(3), "c".into());
    // 5 participants in our rooms, one of them served by b; 2 sessions held for c's rooms.
    assert_eq!(remote.media_load(5), 6);
    assert_eq!(remote.media_load(0), 2);
}
