//! Keyframe-request storms: many subscribers asking for keyframes must reach
//! the publisher as at most one PLI per layer per interval.

use std::time::{Duration, Instant};

use rtp_core::forward::{PliThrottle, PliThrottleConfig};

#[allow(clippy::disallowed_methods)] // the scenario needs some base instant
fn t0() -> Instant {
    Instant::now()
}

const LAYERS: usize = 3;

/// `subscribers` each ask every 10 ms for `run` (subscriber i wants layer i % 3);
/// the publisher answers each PLI with a keyframe `answer` later.
/// Returns PLIs let through per layer and the total suppressed.
fn storm(
    cfg: PliThrottleConfig,
    rtt: Option<Duration>,
    subscribers: usize,
    run: Duration,
    answer: Duration,
) -> ([u64; LAYERS], u64) {
    let t = t0();
    let mut th = PliThrottle::new(cfg);
    if let Some(r) = rtt {
        th.set_rtt(r);
    }
    let mut sent = [0u64; LAYERS];
    let mut keyframe_due: [Option<Instant>; LAYERS] = [None; LAYERS];
    let tick = Duration::from_millis(10);
    let mut now = t;
    while now < t + run {
        for (layer, due) in keyframe_due.iter_mut().enumerate() {
            if due.is_some_and(|d| d <= now) {
                th.on_keyframe(now, layer);
                *due = None;
            }
        }
        for sub in 0..subscribers {
            let layer = sub % LAYERS;
            if th.request(now, layer) {
                sent[layer] += 1;
                keyframe_due[layer] = Some(now + answer);
            }
        }
        now += tick;
    }
    let suppressed = (0..LAYERS).map(|l| th.suppressed(l)).sum();
    for (l, &s) in sent.iter().enumerate() {
        assert_eq!(th.sent(l), s);
    }
    (sent, suppressed)
}

fn bound(run: Duration, interval: Duration) -> u64 {
    (run.as_nanos().div_ceil(interval.as_nanos()) + 1) as u64
}

#[test]
fn storm_is_throttled_to_one_per_interval() {
    let run = Duration::from_secs(5);
    let cfg = PliThrottleConfig::default();
    let (sent, suppressed) = storm(cfg, None, 60, run, Duration::from_millis(80));
    let max = bound(run, cfg.min_interval);
    println!("default 500 ms: PLIs per layer {sent:?} (bound {max}), suppressed {suppressed}");
    for s in sent {
        assert!(s <= max && s >= max - 2, "{s} PLIs, bound {max}");
    }
    // 60 subscribers × 500 ticks, all but the PLIs suppressed.
    assert_eq!(suppressed + sent.iter().sum::<u64>(), 60 * 500);
}

#[test]
fn rtt_and_floor_set_the_interval() {
    let run = Duration::from_secs(5);
    let cfg = PliThrottleConfig {
        layers: LAYERS,
        min_interval: Duration::from_millis(200),
        rtt_factor: 2,
    };
    let (sent, _) = storm(cfg, None, 9, run, Duration::from_millis(50));
    let max = bound(run, cfg.min_interval);
    println!("200 ms floor: PLIs per layer {sent:?} (bound {max})");
    assert!(sent.iter().all(|&s| s <= max && s >= max - 2));
    // An RTT of 300 ms stretches the interval to 600 ms.
    let (sent, _) = storm(
        cfg,
        Some(Duration::from_millis(300)),
        9,
        run,
        Duration::from_millis(50),
    );
    let max = bound(run, Duration::from_millis(600));
    println!("rtt 300 ms: PLIs per layer {sent:?} (bound {max})");
    assert!(sent.iter().all(|&s| s <= max && s >= max - 2));
}

#[test]
fn after_keyframe_next_request_passes_once_interval_elapsed() {
    let t = t0();
    let ms = Duration::from_millis;
    let mut th = PliThrottle::new(PliThrottleConfig::default());
    assert!(th.request(t, 1));
    th.on_keyframe(t + ms(100), 1);
    assert!(!th.pending(1));
    assert!(!th.request(t + ms(200), 1), "still inside the interval");
    assert!(
        th.request(t + ms(500), 1),
        "past the interval: passes immediately"
    );
    assert!(th.pending(1));
    // FIR numbering (RFC 5104 §4.3.1): a new request after the keyframe gets a new number.
    th.on_keyframe(t + ms(600), 1);
    let a = th.request_fir(t + ms(1000), 1).unwrap();
    let b = th.request_fir(t + ms(1500), 1).unwrap();
    assert_eq!(a, b, "unanswered repeat keeps its number");
    th.on_keyframe(t + ms(1600), 1);
    assert_eq!(th.request_fir(t + ms(2000), 1), Some(a.wrapping_add(1)));
}
