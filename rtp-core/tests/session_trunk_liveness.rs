//! Trunk liveness (issue 16 build 4, D100) in memory, time advanced by hand in 10 ms steps:
//! two SRTP trunk sessions A and B joined by a link the test can cut. Idle (no media at all)
//! for 10 s, each hears the other's reports at least every 500 ms and neither goes silent;
//! with the link cut, each raises `TrunkSilent` once, within `silence` + one step of the last
//! packet it heard; restored, each raises `TrunkResumed` within 500 ms; a datagram keyed with
//! another epoch does not count as heard.

mod session_harness;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rtp_core::session::{Session, SessionConfig, SessionEvent, SessionMode, TrunkKeys};

use session_harness::*;

const SECRET: [u8; 32] = [0x42; 32];
const A_ADDR: &str = "127.0.0.1:7001";
const B_ADDR: &str = "127.0.0.1:7002";
const SILENCE: Duration = Duration::from_secs(2);
const STEP: Duration = Duration::from_millis(10);

fn trunk(start: Instant, local: &str, remote: &str, epoch: u64, to: SocketAddr) -> Session {
    let keys = TrunkKeys::derive(&SECRET, local, remote, epoch).expect("keys");
    let mode = SessionMode::Trunk {
        remote: to,
        keys: Some(keys),
        silence: SILENCE,
    };
    Session::new(start, SessionConfig::new(mode), &cert()).expect("trunk session")
}

/// One end: its session, when it last heard the other, the longest gap, its events.
struct End {
    s: Session,
    from: SocketAddr,
    heard: Instant,
    gap: Duration,
    events: Vec<(Instant, SessionEvent)>,
}

impl End {
    fn new(start: Instant, s: Session, from: &str) -> Self {
        Self {
            s,
            from: addr(from),
            heard: start,
            gap: Duration::ZERO,
            events: Vec::new(),
        }
    }
}

/// Runs both ends until `until`; datagrams cross when `linked`.
fn run(now: &mut Instant, until: Instant, a: &mut End, b: &mut End, linked: bool) {
    while *now < until {
        *now += STEP;
        step(*now, a, b, linked);
        step(*now, b, a, linked);
    }
}

/// `x`'s timers and what it sends, delivered to `y`.
fn step(now: Instant, x: &mut End, y: &mut End, linked: bool) {
    let mut buf = [0u8; 1500];
    x.s.handle_timeout(now);
    while let Some((n, _)) = x.s.poll_transmit(now, &mut buf) {
        if linked && y.s.handle_datagram(now, x.from, &mut buf[..n]).is_ok() {
            y.gap = y.gap.max(now - y.heard);
            y.heard = now;
        }
    }
    for e in [&mut *x, &mut *y] {
        while let Some(ev) = e.s.poll_event() {
            e.events.push((now, ev));
        }
    }
}

fn silent(e: &End) -> Vec<Instant> {
    e.events
        .iter()
        .filter(|(_, e)| matches!(e, SessionEvent::TrunkSilent { .. }))
        .map(|(t, _)| *t)
        .collect()
}

fn resumed(e: &End) -> Vec<Instant> {
    e.events
        .iter()
        .filter(|(_, e)| matches!(e, SessionEvent::TrunkResumed { .. }))
        .map(|(t, _)| *t)
        .collect()
}

#[test]
fn an_idle_trunk_stays_up_and_a_cut_one_is_found_silent_then_resumed() {
    let start = t0();
    let mut now = start;
    let mut a = End::new(
        start,
        trunk(start, "node-a", "node-b", 1, addr(B_ADDR)),
        A_ADDR,
    );
    let mut b = End::new(
        start,
        trunk(start, "node-b", "node-a", 1, addr(A_ADDR)),
        B_ADDR,
    );

    // Idle: no media, only the trunks' own reports.
    run(
        &mut now,
        start + Duration::from_secs(10),
        &mut a,
        &mut b,
        true,
    );
    println!("idle 10 s: longest gap heard A {:?}, B {:?}", a.gap, b.gap);
    assert!(a.gap <= Duration::from_millis(500) && b.gap <= Duration::from_millis(500));
    assert!(
        silent(&a).is_empty() && silent(&b).is_empty(),
        "no false silence"
    );

    // Cut.
    let cut = now;
    run(
        &mut now,
        cut + Duration::from_secs(4),
        &mut a,
        &mut b,
        false,
    );
    for (name, e) in [("A", &a), ("B", &b)] {
        let s = silent(e);
        assert_eq!(s.len(), 1, "{name}: one TrunkSilent per episode");
        let after_last = s[0] - e.heard;
        println!(
            "{name}: silent {:?} after the cut, {:?} after the last packet heard",
            s[0] - cut,
            after_last
        );
        assert!(after_last >= SILENCE && after_last <= SILENCE + STEP);
        assert!(e.s.is_silent());
    }

    // Restored.
    let back = now;
    run(
        &mut now,
        back + Duration::from_secs(2),
        &mut a,
        &mut b,
        true,
    );
    for (name, e) in [("A", &a), ("B", &b)] {
        let r = resumed(e);
        assert_eq!(r.len(), 1, "{name}: one TrunkResumed");
        println!("{name}: resumed {:?} after the link came back", r[0] - back);
        assert!(r[0] - back <= Duration::from_millis(500) + STEP);
        assert!(!e.s.is_silent());
    }
    assert_eq!(silent(&a).len(), 1, "still one episode");
}

#[test]
fn packets_keyed_with_another_epoch_do_not_keep_a_trunk_alive() {
    let start = t0();
    let mut now = start;
    let mut a = End::new(
        start,
        trunk(start, "node-a", "node-b", 1, addr(B_ADDR)),
        A_ADDR,
    );
    // B has another epoch: A cannot authenticate what B sends.
    let mut b = End::new(
        start,
        trunk(start, "node-b", "node-a", 2, addr(A_ADDR)),
        B_ADDR,
    );
    run(
        &mut now,
        start + Duration::from_secs(3),
        &mut a,
        &mut b,
        true,
    );
    let s = silent(&a);
    assert_eq!(s.len(), 1, "A hears nothing it can authenticate");
    assert_eq!(s[0] - start, SILENCE);
    assert!(a.s.stats().drop_auth > 0);
}
