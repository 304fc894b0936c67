//! Webhook delivery (retry/backoff, per-room ordering, bounded queue,
//! signature checked by an independent HMAC) and SSE replay.

use aws_lc_rs::digest;
use sluice_control::events::{
    format_event, verify_webhook, Delivery, EventEnvelope, EventLog, SseConfig, SseError, SseHub,
    WebhookConfig, WebhookQueue, SIGNATURE_HEADER,
};
use sluice_control::room::{LeaveReason, RoomEvent, RoomEventKind};

const SECRET: &[u8] = b"api-secret-for-tests";
const URL: &str = "http://127.0.0.1:9/hook";
/// A fixed wall-clock base: 2023-11-14T22:13:20Z.
const T0: u64 = 1_700_000_000_000;

fn envelope(log: &mut EventLog, room: &str, identity: &str, at_ms: u64) -> EventEnvelope {
    let event = RoomEvent {
        room: room.into(),
        kind: RoomEventKind::ParticipantLeft {
            identity: identity.into(),
            sid: "PA_1".into(),
            reason: LeaveReason::Left,
        },
    };
    log.append(&event, at_ms)
}

fn queue(config: WebhookConfig) -> WebhookQueue {
    WebhookQueue::new(config, URL.into(), SECRET)
}

/// HMAC-SHA256 written out from RFC 2104 over a plain SHA-256, so the
/// check does not reuse the code under test.
fn independent_hmac_sha256(key: &[u8], msg: &[u8]) -> Vec<u8> {
    let mut k = [0u8; 64];
    if key.len() > 64 {
        k[..32].copy_from_slice(digest::digest(&digest::SHA256, key).as_ref());
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let mut inner = k.map(|b| b ^ 0x36).to_vec();
    inner.extend_from_slice(msg);
    let inner_hash = digest::digest(&digest::SHA256, &inner);
    let mut outer = k.map(|b| b ^ 0x5c).to_vec();
    outer.extend_from_slice(inner_hash.as_ref());
    digest::digest(&digest::SHA256, &outer).as_ref().to_vec()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn signature_matches_independent_hmac() {
    let mut log = EventLog::new();
    let mut q = queue(WebhookConfig::default());
    let env = envelope(&mut log, "r", "alice", T0);
    q.enqueue(&env, T0);
    let d = q.poll_due(T0 + 1_500).unwrap();
    let t = (T0 + 1_500) / 1000;
    let expected = format!(
        "t={t},v1={}",
        hex(&independent_hmac_sha256(
            SECRET,
            format!("{t}.{}", d.body).as_bytes()
        ))
    );
    assert_eq!(d.signature, expected);
    assert_eq!(
        verify_webhook(SECRET, &d.signature, &d.body, t + 60, 300),
        Ok(())
    );
    let headers = d.headers();
    assert!(headers.contains(&(SIGNATURE_HEADER, d.signature.as_str())));
    // The body is the envelope, with its idempotency id and seq (the node-wide `n` is not in it).
    let body: EventEnvelope = serde_json::from_str(&d.body).unwrap();
    assert_eq!(
        body,
        EventEnvelope {
            n: 0,
            ..env.clone()
        }
    );
    assert!(body.id.starts_with("evt_") && d.event_id == body.id);
    // The key longer than a block takes the hashed-key path of RFC 2104.
    let long = [7u8; 100];
    let q2 = WebhookQueue::new(WebhookConfig::default(), URL.into(), &long);
    let mut q2 = q2;
    q2.enqueue(&env, T0);
    let d2 = q2.poll_due(T0).unwrap();
    let t = T0 / 1000;
    assert!(d2.signature.ends_with(&hex(&independent_hmac_sha256(
        &long,
        format!("{t}.{}", d2.body).as_bytes()
    ))));
}

#[test]
fn retries_back_off_exponentially_to_the_cap() {
    let mut log = EventLog::new();
    let config = WebhookConfig {
        max_attempts: 12,
        ..WebhookConfig::default()
    };
    let mut q = queue(config);
    let env = envelope(&mut log, "r", "alice", T0);
    q.enqueue(&env, T0);
    let mut now = T0;
    let mut waits = Vec::new();
    for attempt in 1..=11u32 {
        let d = q.poll_due(now).expect("due");
        assert_eq!(d.attempt, attempt);
        assert_eq!(d.event_id, env.id, "a retry keeps the idempotency id");
        assert!(q.poll_due(now).is_none(), "one in flight per lane");
        q.on_result(d.id, false, now);
        let next = q.poll_timeout().unwrap();
        assert!(q.poll_due(next - 1).is_none(), "not before the backoff");
        waits.push(next - now);
        now = next;
    }
    assert_eq!(
        waits,
        [1_000, 2_000, 4_000, 8_000, 16_000, 32_000, 64_000, 128_000, 256_000, 300_000, 300_000]
    );
    // The twelfth failure gives up and counts it.
    let d = q.poll_due(now).unwrap();
    q.on_result(d.id, false, now);
    assert!(q.is_empty());
    assert_eq!(q.stats().dropped_exhausted, 1);
    assert_eq!(q.stats().failed_attempts, 12);
    assert!(!q.on_result(d.id, true, now), "a second report is ignored");
}

#[test]
fn per_room_order_waits_for_acknowledgement() {
    let mut log = EventLog::new();
    let mut q = queue(WebhookConfig::default());
    let a1 = envelope(&mut log, "a", "x", T0);
    let a2 = envelope(&mut log, "a", "y", T0);
    let b1 = envelope(&mut log, "b", "z", T0);
    for e in [&a1, &a2, &b1] {
        q.enqueue(e, T0);
    }
    let first = q.poll_due(T0).unwrap();
    assert_eq!((first.room.as_str(), first.seq), ("a", 1));
    // Room b is independent of room a's in-flight head; a2 must wait.
    let second = q.poll_due(T0).unwrap();
    assert_eq!((second.room.as_str(), second.seq), ("b", 1));
    assert!(q.poll_due(T0).is_none());
    // a1 fails: a2 still waits behind it through the backoff.
    q.on_result(first.id, false, T0);
    assert!(q.poll_due(T0 + 999).is_none());
    let retry = q.poll_due(T0 + 1_000).unwrap();
    assert_eq!((retry.seq, retry.attempt), (1, 2));
    assert!(q.poll_due(T0 + 1_000).is_none());
    q.on_result(retry.id, true, T0 + 1_000);
    let next = q.poll_due(T0 + 1_000).unwrap();
    assert_eq!((next.room.as_str(), next.seq), ("a", 2));
    q.on_result(next.id, true, T0 + 1_000);
    q.on_result(second.id, true, T0 + 1_000);
    assert!(q.is_empty());
    assert_eq!(q.stats().delivered, 3);
}

#[test]
fn full_queue_drops_oldest_waiting_and_counts() {
    let mut log = EventLog::new();
    let config = WebhookConfig {
        max_queued: 3,
        ..WebhookConfig::default()
    };
    let mut q = queue(config);
    let envs: Vec<_> = (0..5)
        .map(|i| envelope(&mut log, "r", &format!("p{i}"), T0 + i))
        .collect();
    q.enqueue(&envs[0], T0);
    let in_flight = q.poll_due(T0).unwrap();
    for e in &envs[1..] {
        q.enqueue(e, T0);
    }
    // seq 1 is in flight and kept; seq 2 and 3 were the oldest waiting.
    assert_eq!(q.len(), 3);
    assert_eq!(q.stats().dropped_overflow, 2);
    q.on_result(in_flight.id, true, T0);
    let seqs: Vec<u64> = std::iter::from_fn(|| {
        let d: Delivery = q.poll_due(T0)?;
        q.on_result(d.id, true, T0);
        Some(d.seq)
    })
    .take(10)
    .collect();
    assert_eq!(seqs, [4, 5]);
}

#[test]
fn each_url_has_its_own_bound_and_in_flight_limit() {
    let mut log = EventLog::new();
    let config = WebhookConfig {
        max_queued: 2,
        max_in_flight: 2,
        ..WebhookConfig::default()
    };
    let mut dead = WebhookQueue::new(config.clone(), "http://127.0.0.1:9/dead".into(), SECRET);
    let mut live = WebhookQueue::new(config, "http://127.0.0.1:9/live".into(), SECRET);
    let envs: Vec<_> = (0..6)
        .map(|i| envelope(&mut log, &format!("room{i}"), "x", T0))
        .collect();
    for e in &envs {
        dead.enqueue(e, T0);
        live.enqueue(e, T0);
        let d = live
            .poll_due(T0)
            .expect("the live URL delivers each at once");
        live.on_result(d.id, true, T0);
    }
    // Two rooms in flight, the rest dropped to the dead URL's bound; the live one lost none.
    let a = dead.poll_due(T0).unwrap();
    let b = dead.poll_due(T0).unwrap();
    assert_ne!(a.room, b.room);
    assert!(dead.poll_due(T0).is_none(), "max_in_flight");
    assert_eq!(dead.len(), 2);
    assert_eq!(dead.stats().dropped_overflow, 4);
    assert_eq!(live.stats().delivered, 6);
    assert_eq!(live.stats().dropped_overflow, 0);
}

#[test]
fn sse_replays_after_last_event_id() {
    let mut log = EventLog::new();
    let mut hub = SseHub::new(SseConfig {
        backlog_per_room: 4,
        subscriber_buffer: 8,
        max_subscribers: 4,
        ..SseConfig::default()
    });
    let live = hub.subscribe(Some("r"), None).unwrap();
    for i in 0..6 {
        hub.publish(&envelope(&mut log, "r", &format!("p{i}"), T0 + i));
    }
    hub.publish(&envelope(&mut log, "other", "q", T0));
    let got: Vec<u64> = std::iter::from_fn(|| hub.poll(live.id).unwrap())
        .map(|e| e.seq)
        .collect();
    assert_eq!(got, [1, 2, 3, 4, 5, 6]);

    // The backlog holds seq 3..=6; resuming after 4 replays 5 and 6.
    let resumed = hub.subscribe(Some("r"), Some("4")).unwrap();
    assert_eq!(resumed.missed, None);
    let replay: Vec<u64> = std::iter::from_fn(|| hub.poll(resumed.id).unwrap())
        .map(|e| e.seq)
        .collect();
    assert_eq!(replay, [5, 6]);
    // Resuming after 1: 2 aged out and is reported as missed.
    let old = hub.subscribe(Some("r"), Some("1")).unwrap();
    assert_eq!(old.missed, Some((2, 2)));
    assert_eq!(hub.poll(old.id).unwrap().unwrap().seq, 3);
    assert_eq!(
        hub.subscribe(Some("r"), Some("abc")),
        Err(SseError::InvalidLastEventId)
    );
    let text = format_event(7, &envelope(&mut log, "r", "z", T0));
    assert!(text.starts_with("id: 7\nevent: participant_left\ndata: {"));
    assert!(text.ends_with("}\n\n"));
}

#[test]
fn slow_sse_subscriber_lags_instead_of_skipping() {
    let mut log = EventLog::new();
    let mut hub = SseHub::new(SseConfig {
        backlog_per_room: 16,
        subscriber_buffer: 2,
        max_subscribers: 1,
        ..SseConfig::default()
    });
    let sub = hub.subscribe(Some("r"), None).unwrap();
    assert_eq!(
        hub.subscribe(Some("r"), None),
        Err(SseError::TooManySubscribers)
    );
    for i in 0..4 {
        hub.publish(&envelope(&mut log, "r", &format!("p{i}"), T0));
    }
    assert_eq!(hub.poll(sub.id).unwrap().unwrap().seq, 1);
    assert_eq!(hub.poll(sub.id).unwrap().unwrap().seq, 2);
    assert_eq!(hub.poll(sub.id), Err(SseError::Lagged { last_id: 2 }));
    // The client reconnects with Last-Event-ID: 2 and gets the rest.
    hub.unsubscribe(sub.id);
    let again = hub.subscribe(Some("r"), Some("2")).unwrap();
    let rest: Vec<u64> = std::iter::from_fn(|| hub.poll(again.id).unwrap())
        .map(|e| e.seq)
        .collect();
    assert_eq!(rest, [3, 4]);
}

#[test]
fn all_rooms_stream_resumes_by_node_wide_number() {
    let mut log = EventLog::new();
    let mut hub = SseHub::new(SseConfig::default());
    let envs: Vec<_> = ["a", "b", "a", "c"]
        .iter()
        .map(|r| envelope(&mut log, r, "x", T0))
        .collect();
    for e in &envs {
        hub.publish(e);
    }
    // After n = 2 (b's first): a's second and c's first, in node order.
    let sub = hub.subscribe(None, Some("2")).unwrap();
    let got: Vec<(String, u64)> = std::iter::from_fn(|| hub.poll(sub.id).unwrap())
        .map(|e| (e.room.clone(), e.seq))
        .collect();
    assert_eq!(got, [("a".to_owned(), 2), ("c".to_owned(), 1)]);
    assert_eq!(hub.event_id(sub.id, &envs[3]), 4);
    let room = hub.subscribe(Some("a"), None).unwrap();
    assert_eq!(
        hub.event_id(room.id, &envs[2]),
        2,
        "a room stream's id is the seq"
    );
}
