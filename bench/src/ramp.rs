//! `sluice-bench ramp`: raises the subscriber count until a step breaks the service level —
//! loss above 0.5 % or p99 latency above 50 ms — and reports the largest count that held, per
//! SFU worker core. Steps double from `start` until one breaks, then bisect between the last
//! good and the first bad count `refine` times. Every step is a full [`fanout`](crate::fanout)
//! run (its own warm-up and window) on the same SFU.
//!
//! A step where the generator itself may have been the bottleneck (see
//! [`generator_verdict`](crate::fanout::generator_verdict)) ends the ramp and is flagged: its
//! failure would say nothing about the SFU.

use serde_json::{json, Value};

use crate::fanout::{self, FanoutConfig, FanoutReport, Sfu};
use crate::report::{round, BenchError};

/// Service-level limits a step must hold.
pub const MAX_LOSS: f64 = 0.005;
pub const MAX_P99_MS: f64 = 50.0;

/// How to ramp.
#[derive(Debug, Clone)]
pub struct RampConfig {
    pub step: FanoutConfig,
    pub start: u32,
    pub max: u32,
    /// Bisection steps after the first failure.
    pub refine: u32,
}

/// One step's figures.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    pub subscribers: u32,
    pub delivered_pps: f64,
    pub delivered_mbit_s: f64,
    pub loss: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// Sum of the SFU worker threads' CPU seconds / window seconds.
    pub sfu_busy: f64,
    pub generator_busy: f64,
    pub generator_limited: bool,
}

impl Point {
    pub fn from_report(r: &FanoutReport) -> Point {
        let g = &r.gen;
        let window = g.window_s.max(1e-9);
        Point {
            subscribers: r.config.subscribers,
            delivered_pps: g.delivered_pps(),
            delivered_mbit_s: g.delivered_bps() / 1e6,
            loss: g.loss(),
            p50_ms: g.latency_all.quantile(0.5).unwrap_or(0) as f64 / 1e6,
            p99_ms: r.p99_ms(),
            sfu_busy: r.worker_cpu().iter().map(|(_, s)| s).sum::<f64>() / window,
            generator_busy: g.busy,
            generator_limited: fanout::generator_verdict(g).starts_with("MAY BE"),
        }
    }

    /// Whether the step held the service level.
    pub fn ok(&self) -> bool {
        self.loss <= MAX_LOSS && self.p99_ms <= MAX_P99_MS
    }

    pub fn to_json(&self) -> Value {
        json!({
            "subscribers": self.subscribers,
            "delivered_pps": round(self.delivered_pps, 0),
            "delivered_mbit_s": round(self.delivered_mbit_s, 3),
            "loss": round(self.loss, 6),
            "p50_ms": round(self.p50_ms, 3),
            "p99_ms": round(self.p99_ms, 3),
            "sfu_busy": round(self.sfu_busy, 3),
            "generator_busy": round(self.generator_busy, 3),
            "generator_limited": self.generator_limited,
            "ok": self.ok(),
        })
    }
}

/// A whole ramp.
#[derive(Debug, Clone)]
pub struct RampReport {
    /// In the order measured.
    pub points: Vec<Point>,
    pub workers: u16,
    /// Largest count that held; 0 when even `start` broke.
    pub max_ok: u32,
    /// Why the ramp stopped.
    pub stopped: String,
}

impl RampReport {
    pub fn per_worker_core(&self) -> f64 {
        f64::from(self.max_ok) / f64::from(self.workers.max(1))
    }

    /// The measured point at `max_ok`, if any.
    pub fn best(&self) -> Option<&Point> {
        self.points
            .iter()
            .filter(|p| p.ok())
            .max_by_key(|p| p.subscribers)
    }

    /// Points sorted by subscriber count, for plotting.
    pub fn sorted(&self) -> Vec<Point> {
        let mut v = self.points.clone();
        v.sort_by_key(|p| p.subscribers);
        v
    }

    pub fn to_json(&self) -> Value {
        json!({
            "criteria": {"max_loss": MAX_LOSS, "max_p99_ms": MAX_P99_MS},
            "points": self.points.iter().map(Point::to_json).collect::<Vec<_>>(),
            "workers": self.workers,
            "max_subscribers": self.max_ok,
            "max_subscribers_per_worker_core": round(self.per_worker_core(), 1),
            "best": self.best().map(Point::to_json),
            "stopped": self.stopped,
        })
    }
}

/// The next subscriber count to try, given the last good and first bad counts so far.
pub fn next_count(good: Option<u32>, bad: Option<u32>, start: u32, max: u32) -> Option<u32> {
    match (good, bad) {
        (None, None) => Some(start.clamp(1, max)),
        (Some(g), None) if g >= max => None,
        (Some(g), None) => Some(g.saturating_mul(2).min(max)),
        (None, Some(b)) if b <= 1 => None,
        (None, Some(b)) => Some(b / 2),
        (Some(g), Some(b)) if b <= g + 1 || (b - g) * 20 < b => None,
        (Some(g), Some(b)) => Some(g + (b - g) / 2),
    }
}

/// Where a ramp stands: the highest count that held, the lowest that broke, the bisections
/// made. Shared by the Sluice ramp and the Janus ramp so both stop by the same rules.
#[derive(Debug, Default)]
pub struct Bracket {
    good: Option<u32>,
    bad: Option<u32>,
    refined: u32,
    /// A step that broke while the generator was busy.
    generator_bound: Option<u32>,
}

impl Bracket {
    /// The next count to try, or why the ramp is over.
    pub fn next(&mut self, cfg: &RampConfig) -> Result<u32, String> {
        let Some(n) = next_count(self.good, self.bad, cfg.start, cfg.max) else {
            return Err(if self.bad.is_some() {
                "bracketed the limit".into()
            } else {
                "reached --max".into()
            });
        };
        if self.bad.is_some() {
            if self.refined >= cfg.refine {
                return Err(format!("bracketed after {} refinement steps", self.refined));
            }
            self.refined += 1;
        }
        Ok(n)
    }

    /// Takes a step's result; `Some(reason)` when the ramp cannot go further. A step that broke
    /// with a busy generator is still an upper bound: the ramp bisects below it (the generator
    /// keeps up with less). One that held with a busy generator cannot be pushed further.
    pub fn record(&mut self, p: &Point) -> Option<String> {
        let n = p.subscribers;
        if p.ok() {
            self.good = Some(self.good.map_or(n, |g| g.max(n)));
            if p.generator_limited {
                return Some(format!(
                    "generator may be the bottleneck at {n} subscribers"
                ));
            }
        } else {
            self.bad = Some(self.bad.map_or(n, |b| b.min(n)));
            if p.generator_limited {
                self.generator_bound = Some(n);
            }
        }
        None
    }

    /// The highest count that held, and the stop reason with the generator's part in it.
    pub fn finish(self, mut stopped: String) -> (u32, String) {
        if let Some(n) = self.generator_bound {
            stopped.push_str(&format!(
                "; the generator was busy at {n} subscribers, a step that broke: bisected below it"
            ));
        }
        (self.good.unwrap_or(0), stopped)
    }
}

/// Runs the ramp against `sfu`. `on_point` sees each step as it finishes (for progress).
pub fn run(
    sfu: &mut Sfu,
    cfg: &RampConfig,
    mut on_point: impl FnMut(&Point),
) -> Result<RampReport, BenchError> {
    let mut points = Vec::new();
    let mut bracket = Bracket::default();
    let mut stopped = String::from("reached --max");
    // Bounded: doubling reaches `max` in ≤ 32 steps, then at most `refine` bisections.
    for _ in 0..64 {
        let n = match bracket.next(cfg) {
            Ok(n) => n,
            Err(why) => {
                stopped = why;
                break;
            }
        };
        let mut step = cfg.step.clone();
        step.subscribers = n;
        let r = match fanout::run(sfu, &step) {
            Ok(r) => r,
            // A step that could not connect (e.g. an ICE check lost while hundreds of WebRTC
            // peers start at once) ends the ramp as Janus's does: what was measured stands.
            Err(e) if !points.is_empty() => {
                stopped = format!("step at {n} subscribers failed: {e}");
                break;
            }
            Err(e) => return Err(e),
        };
        let p = Point::from_report(&r);
        on_point(&p);
        let end = bracket.record(&p);
        points.push(p);
        if let Some(why) = end {
            stopped = why;
            break;
        }
    }
    let (max_ok, stopped) = bracket.finish(stopped);
    Ok(RampReport {
        points,
        workers: sfu.workers,
        max_ok,
        stopped,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_then_bisects() {
        assert_eq!(next_count(None, None, 50, 10_000), Some(50));
        assert_eq!(next_count(Some(50), None, 50, 10_000), Some(100));
        assert_eq!(next_count(Some(6400), None, 50, 10_000), Some(10_000));
        assert_eq!(next_count(Some(10_000), None, 50, 10_000), None);
        assert_eq!(next_count(Some(400), Some(800), 50, 10_000), Some(600));
        assert_eq!(next_count(None, Some(50), 50, 10_000), Some(25));
        assert_eq!(next_count(Some(790), Some(800), 50, 10_000), None);
    }

    #[test]
    fn service_level() {
        let mut p = Point {
            subscribers: 10,
            delivered_pps: 0.0,
            delivered_mbit_s: 0.0,
            loss: 0.004,
            p50_ms: 0.1,
            p99_ms: 10.0,
            sfu_busy: 0.5,
            generator_busy: 0.1,
            generator_limited: false,
        };
        assert!(p.ok());
        p.loss = 0.006;
        assert!(!p.ok());
        p.loss = 0.0;
        p.p99_ms = 51.0;
        assert!(!p.ok());
    }

    fn point(subscribers: u32, p99_ms: f64, generator_limited: bool) -> Point {
        Point {
            subscribers,
            delivered_pps: 0.0,
            delivered_mbit_s: 0.0,
            loss: 0.0,
            p50_ms: 1.0,
            p99_ms,
            sfu_busy: 0.5,
            generator_busy: if generator_limited { 0.95 } else { 0.3 },
            generator_limited,
        }
    }

    #[test]
    fn a_busy_generator_on_a_broken_step_bisects_below_it() {
        let cfg = RampConfig {
            step: FanoutConfig::default_for(&[1], 50, std::time::Duration::from_secs(1)),
            start: 200,
            max: 5_000,
            refine: 3,
        };
        let mut b = Bracket::default();
        assert_eq!(b.next(&cfg), Ok(200));
        assert_eq!(b.record(&point(200, 20.0, false)), None);
        assert_eq!(b.next(&cfg), Ok(400));
        // Broke with the generator busy: not the end, the ramp refines between 200 and 400.
        assert_eq!(b.record(&point(400, 120.0, true)), None);
        assert_eq!(b.next(&cfg), Ok(300));
        assert_eq!(b.record(&point(300, 40.0, false)), None);
        assert_eq!(b.next(&cfg), Ok(350));
        // Held with the generator busy: this generator cannot measure past it.
        let end = b.record(&point(350, 45.0, true));
        assert_eq!(
            end.as_deref(),
            Some("generator may be the bottleneck at 350 subscribers")
        );
        let (max, why) = b.finish(end.unwrap());
        assert_eq!(max, 350);
        assert!(why.contains("busy at 400 subscribers"), "{why}");
    }
}
