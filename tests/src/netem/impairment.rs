//! The impairment model: what one direction of the relay does to each datagram, and the seeded
//! decision engine ([`Impairer`]) that applies it.
//!
//! Per datagram, in order: Gilbert-Elliott burst state, pause, random loss, the rate limiter
//! (token bucket with a bounded queue), then the propagation delay with uniform jitter and the
//! extra reorder delay, and last the duplicate decision. The engine draws the same number of
//! random values for every datagram whatever the configuration, so datagram `n` of a direction
//! gets the same draws for a given seed: changing the delay does not move the drop pattern.
//! No RFC governs this; the model follows the usual netem vocabulary (see `docs/netem.md`).

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Which way a datagram travels through the relay.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Client → upstream server.
    Up,
    /// Upstream server → client.
    Down,
}

impl Direction {
    /// Both directions, in index order.
    pub const ALL: [Direction; 2] = [Direction::Up, Direction::Down];

    /// Position in per-direction arrays.
    pub fn index(self) -> usize {
        match self {
            Direction::Up => 0,
            Direction::Down => 1,
        }
    }

    /// The lowercase name used by the CLI, the control lines and the stats JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Up => "up",
            Direction::Down => "down",
        }
    }

    /// Distinct seed per direction, so the two directions never share a random stream.
    fn seed(self, seed: u64) -> u64 {
        match self {
            Direction::Up => seed,
            Direction::Down => seed ^ DOWN_SEED_SALT,
        }
    }
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Direction {
    type Err = ImpairmentError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "up" => Ok(Direction::Up),
            "down" => Ok(Direction::Down),
            _ => Err(ImpairmentError::Direction),
        }
    }
}

/// Gilbert-Elliott burst loss: a two-state chain stepped once per datagram. In the bad state
/// every datagram is lost; in the good state the plain `loss` probability applies. Mean burst
/// length is `1 / p_exit`; the long-run share of time in the bad state is
/// `p_enter / (p_enter + p_exit)`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Burst {
    /// Probability of moving good → bad at a datagram.
    pub p_enter: f64,
    /// Probability of moving bad → good at a datagram.
    pub p_exit: f64,
}

/// What one direction does to its datagrams. `Default` is a perfect link.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Impairment {
    /// Independent loss probability (in the good state when `burst` is set).
    pub loss: f64,
    /// Gilbert-Elliott burst loss on top of `loss`.
    pub burst: Option<Burst>,
    /// Fixed one-way delay added to every datagram.
    pub delay: Duration,
    /// Uniform jitter: each datagram's delay is `delay ± jitter` (never below zero). Jitter
    /// larger than the gap between datagrams reorders them, as a real jittery path does.
    pub jitter: Duration,
    /// Fraction of datagrams held back by an extra `reorder_delay`, so later ones overtake them.
    pub reorder: f64,
    /// The extra delay a reordered datagram gets.
    pub reorder_delay: Duration,
    /// Fraction of datagrams sent twice (the copy leaves right after the original).
    pub duplicate: f64,
    /// Bottleneck rate in bits per second (token bucket); `None` is unlimited.
    pub rate_bps: Option<u64>,
    /// Bytes the bottleneck may hold waiting for tokens; a datagram that would wait longer
    /// than `queue_bytes` at `rate_bps` is dropped (tail drop).
    pub queue_bytes: u32,
}

impl Default for Impairment {
    fn default() -> Self {
        Impairment {
            loss: 0.0,
            burst: None,
            delay: Duration::ZERO,
            jitter: Duration::ZERO,
            reorder: 0.0,
            reorder_delay: DEFAULT_REORDER_DELAY,
            duplicate: 0.0,
            rate_bps: None,
            queue_bytes: DEFAULT_QUEUE_BYTES,
        }
    }
}

impl Impairment {
    /// Checks probabilities are in `[0, 1]` and the rate is positive.
    pub fn validate(&self) -> Result<(), ImpairmentError> {
        let mut probabilities = vec![
            ("loss", self.loss),
            ("reorder", self.reorder),
            ("duplicate", self.duplicate),
        ];
        if let Some(burst) = self.burst {
            probabilities.push(("burst p_enter", burst.p_enter));
            probabilities.push(("burst p_exit", burst.p_exit));
        }
        for (name, p) in probabilities {
            if !(0.0..=1.0).contains(&p) {
                return Err(ImpairmentError::Probability(name));
            }
        }
        if self.rate_bps == Some(0) {
            return Err(ImpairmentError::ZeroRate);
        }
        Ok(())
    }
}

/// A rejected [`Impairment`] or direction name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ImpairmentError {
    /// A probability outside `[0, 1]` (or NaN).
    #[error("{0} must be a probability in [0, 1]")]
    Probability(&'static str),
    /// `rate_bps` of zero would never send anything; use pause for that.
    #[error("rate must be above zero bits per second")]
    ZeroRate,
    /// Not `up` or `down`.
    #[error("direction must be `up` or `down`")]
    Direction,
}

/// Why a datagram was not forwarded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropReason {
    /// Random or burst loss.
    Loss,
    /// The direction was paused.
    Pause,
    /// The rate limiter's queue (or the relay's bounded queues) was full.
    Queue,
}

/// The decision for one datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Not forwarded.
    Drop(DropReason),
    /// Forwarded at `release`.
    Deliver {
        /// When the datagram (and its copy, if duplicated) leaves the relay.
        release: Instant,
        /// It got the extra reorder delay.
        reordered: bool,
        /// Send a second copy right after it.
        duplicate: bool,
    },
}

/// The seeded decision engine of one direction. Deterministic: for a given seed, config and
/// sequence of (arrival time, length, paused) it returns the same verdicts.
#[derive(Debug)]
pub struct Impairer {
    config: Impairment,
    rng: StdRng,
    in_bad_state: bool,
    /// Token bucket as GCRA: the theoretical arrival time of the next datagram.
    bucket_tat: Option<Instant>,
}

impl Impairer {
    /// An engine for `direction` seeded from the relay's `seed`.
    pub fn new(direction: Direction, seed: u64, config: Impairment) -> Self {
        Impairer {
            config,
            rng: StdRng::seed_from_u64(direction.seed(seed)),
            in_bad_state: false,
            bucket_tat: None,
        }
    }

    /// The current configuration.
    pub fn config(&self) -> &Impairment {
        &self.config
    }

    /// Replaces the configuration. The random stream carries on (it is not reseeded), so a
    /// run that changes settings at the same datagram indices stays reproducible.
    pub fn set(&mut self, config: Impairment) {
        if config.burst.is_none() {
            self.in_bad_state = false;
        }
        self.config = config;
    }

    /// Decides the fate of one datagram of `len` bytes that arrived at `now`.
    pub fn decide(&mut self, now: Instant, len: usize, paused: bool) -> Verdict {
        // Always draw the same count, before any early return, so the draws of datagram n do
        // not depend on what happened to datagrams before it.
        let draws: [f64; DRAWS_PER_DATAGRAM] = std::array::from_fn(|_| self.rng.gen::<f64>());
        let [step, loss, jitter, reorder, duplicate] = draws;

        if let Some(burst) = self.config.burst {
            let p_switch = if self.in_bad_state {
                burst.p_exit
            } else {
                burst.p_enter
            };
            if step < p_switch {
                self.in_bad_state = !self.in_bad_state;
            }
        }
        if paused {
            return Verdict::Drop(DropReason::Pause);
        }
        if self.in_bad_state || loss < self.config.loss {
            return Verdict::Drop(DropReason::Loss);
        }
        let departure = match self.config.rate_bps {
            Some(bps) => match self.shape(now, len, bps) {
                Some(departure) => departure,
                None => return Verdict::Drop(DropReason::Queue),
            },
            None => now,
        };

        let jitter_ns = nanos(self.config.jitter) as f64 * (2.0 * jitter - 1.0);
        let mut delay_ns = (nanos(self.config.delay) as f64 + jitter_ns).max(0.0) as u64;
        let reordered = reorder < self.config.reorder;
        if reordered {
            delay_ns = delay_ns.saturating_add(nanos(self.config.reorder_delay));
        }
        Verdict::Deliver {
            release: departure + Duration::from_nanos(delay_ns),
            reordered,
            duplicate: duplicate < self.config.duplicate,
        }
    }

    /// Token bucket of depth [`BUCKET_BYTES`] in GCRA form: returns when the datagram leaves
    /// the bottleneck, or `None` when it would wait longer than the queue holds.
    fn shape(&mut self, now: Instant, len: usize, bps: u64) -> Option<Instant> {
        let transmit = bits_time(len as u64, bps);
        let tolerance = bits_time(BUCKET_BYTES, bps);
        let queue_limit = bits_time(u64::from(self.config.queue_bytes), bps);
        let tat = self.bucket_tat.map_or(now, |tat| tat.max(now));
        let departure = tat.checked_sub(tolerance).map_or(now, |t| t.max(now));
        if departure - now > queue_limit {
            return None;
        }
        self.bucket_tat = Some(tat + transmit);
        Some(departure)
    }
}

/// Time to send `bytes` at `bps`.
fn bits_time(bytes: u64, bps: u64) -> Duration {
    let ns = u128::from(bytes) * 8 * 1_000_000_000 / u128::from(bps.max(1));
    Duration::from_nanos(u64::try_from(ns).unwrap_or(u64::MAX))
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

const DRAWS_PER_DATAGRAM: usize = 5;
const DOWN_SEED_SALT: u64 = 0x5bd1_e995_9e37_79b9;
const DEFAULT_REORDER_DELAY: Duration = Duration::from_millis(10);
const DEFAULT_QUEUE_BYTES: u32 = 64 * 1024;
/// Token bucket depth: two full-size datagrams may pass back to back before shaping starts.
pub const BUCKET_BYTES: u64 = 3_000;

#[cfg(test)]
mod tests {
    use super::*;

    #[allow(clippy::disallowed_methods)]
    fn base() -> Instant {
        Instant::now()
    }

    fn run(imp: Impairment, seed: u64, n: usize) -> Vec<Verdict> {
        let t0 = base();
        let mut e = Impairer::new(Direction::Up, seed, imp);
        (0..n)
            .map(|i| e.decide(t0 + Duration::from_millis(i as u64), 100, false))
            .collect()
    }

    fn drops(v: &[Verdict]) -> Vec<usize> {
        v.iter()
            .enumerate()
            .filter(|(_, v)| matches!(v, Verdict::Drop(_)))
            .map(|(i, _)| i)
            .collect()
    }

    #[test]
    fn perfect_link_delivers_everything_immediately() {
        let t0 = base();
        let mut e = Impairer::new(Direction::Up, 1, Impairment::default());
        for i in 0..100u64 {
            let now = t0 + Duration::from_millis(i);
            assert_eq!(
                e.decide(now, 1200, false),
                Verdict::Deliver {
                    release: now,
                    reordered: false,
                    duplicate: false
                }
            );
        }
    }

    #[test]
    fn loss_rate_matches_and_seed_repeats_the_pattern() {
        let imp = Impairment {
            loss: 0.1,
            ..Impairment::default()
        };
        let a = drops(&run(imp, 7, 10_000));
        let rate = a.len() as f64 / 10_000.0;
        assert!((0.09..0.11).contains(&rate), "loss rate {rate}");
        assert_eq!(a, drops(&run(imp, 7, 10_000)));
        assert_ne!(a, drops(&run(imp, 8, 10_000)));
    }

    #[test]
    fn delay_does_not_move_the_drop_pattern() {
        let lossy = Impairment {
            loss: 0.2,
            ..Impairment::default()
        };
        let delayed = Impairment {
            delay: Duration::from_millis(40),
            jitter: Duration::from_millis(5),
            duplicate: 0.1,
            ..lossy
        };
        assert_eq!(drops(&run(lossy, 3, 2_000)), drops(&run(delayed, 3, 2_000)));
    }

    #[test]
    fn directions_use_different_streams() {
        let imp = Impairment {
            loss: 0.5,
            ..Impairment::default()
        };
        let t0 = base();
        let mut up = Impairer::new(Direction::Up, 1, imp);
        let mut down = Impairer::new(Direction::Down, 1, imp);
        let u: Vec<_> = (0..64).map(|_| up.decide(t0, 10, false)).collect();
        let d: Vec<_> = (0..64).map(|_| down.decide(t0, 10, false)).collect();
        assert_ne!(u, d);
    }

    #[test]
    fn burst_loss_rate_and_run_length_follow_the_chain() {
        let imp = Impairment {
            burst: Some(Burst {
                p_enter: 0.05,
                p_exit: 0.5,
            }),
            ..Impairment::default()
        };
        let v = run(imp, 11, 20_000);
        let lost: Vec<bool> = v.iter().map(|v| matches!(v, Verdict::Drop(_))).collect();
        let rate = lost.iter().filter(|&&l| l).count() as f64 / lost.len() as f64;
        let expected = 0.05 / 0.55;
        assert!((rate - expected).abs() < 0.02, "burst loss {rate}");
        let runs = lost.windows(2).filter(|w| w[1] && !w[0]).count();
        let mean_run = lost.iter().filter(|&&l| l).count() as f64 / runs as f64;
        assert!((1.7..2.3).contains(&mean_run), "mean burst {mean_run}");
    }

    #[test]
    fn jitter_stays_within_bounds_and_never_goes_negative() {
        let imp = Impairment {
            delay: Duration::from_millis(3),
            jitter: Duration::from_millis(5),
            ..Impairment::default()
        };
        let t0 = base();
        let mut e = Impairer::new(Direction::Down, 2, imp);
        let mut max = Duration::ZERO;
        for _ in 0..1_000 {
            let Verdict::Deliver { release, .. } = e.decide(t0, 100, false) else {
                panic!("no loss configured");
            };
            let d = release - t0;
            assert!(d <= Duration::from_millis(8));
            max = max.max(d);
        }
        assert!(max > Duration::from_millis(7));
    }

    #[test]
    fn reorder_and_duplicate_fractions() {
        let imp = Impairment {
            reorder: 0.25,
            duplicate: 0.1,
            ..Impairment::default()
        };
        let v = run(imp, 5, 8_000);
        let reordered = v
            .iter()
            .filter(|v| {
                matches!(
                    v,
                    Verdict::Deliver {
                        reordered: true,
                        ..
                    }
                )
            })
            .count() as f64;
        let duplicated = v
            .iter()
            .filter(|v| {
                matches!(
                    v,
                    Verdict::Deliver {
                        duplicate: true,
                        ..
                    }
                )
            })
            .count() as f64;
        assert!((reordered / 8_000.0 - 0.25).abs() < 0.02);
        assert!((duplicated / 8_000.0 - 0.1).abs() < 0.015);
    }

    #[test]
    fn pause_drops_but_keeps_the_random_stream_aligned() {
        let imp = Impairment {
            loss: 0.3,
            ..Impairment::default()
        };
        let t0 = base();
        let mut a = Impairer::new(Direction::Up, 9, imp);
        let mut b = Impairer::new(Direction::Up, 9, imp);
        for i in 0..200 {
            let paused = (50..80).contains(&i);
            let va = a.decide(t0, 10, paused);
            let vb = b.decide(t0, 10, false);
            if paused {
                assert_eq!(va, Verdict::Drop(DropReason::Pause));
            } else {
                assert_eq!(va, vb, "datagram {i}");
            }
        }
    }

    #[test]
    fn rate_limit_spaces_datagrams_and_tail_drops() {
        // 1 Mbit/s: a 1,250-byte datagram takes 10 ms. The queue holds 5,000 bytes (40 ms).
        let imp = Impairment {
            rate_bps: Some(1_000_000),
            queue_bytes: 5_000,
            ..Impairment::default()
        };
        let t0 = base();
        let mut e = Impairer::new(Direction::Up, 1, imp);
        let mut departures = Vec::new();
        let mut queue_drops = 0;
        for _ in 0..20 {
            match e.decide(t0, 1_250, false) {
                Verdict::Deliver { release, .. } => departures.push(release - t0),
                Verdict::Drop(DropReason::Queue) => queue_drops += 1,
                other => panic!("unexpected {other:?}"),
            }
        }
        // The bucket's 3,000 bytes let three leave at once, then one per 10 ms while the
        // wait stays within the 40 ms queue.
        let ms: Vec<u128> = departures.iter().map(Duration::as_millis).collect();
        assert_eq!(ms, vec![0, 0, 0, 6, 16, 26, 36]);
        assert_eq!(queue_drops, 13);
        // After the queue drains, a datagram passes again at once.
        let later = t0 + Duration::from_secs(1);
        assert!(matches!(
            e.decide(later, 1_250, false),
            Verdict::Deliver { release, .. } if release == later
        ));
    }

    #[test]
    fn validate_rejects_bad_values() {
        let bad = Impairment {
            loss: 1.5,
            ..Impairment::default()
        };
        assert_eq!(bad.validate(), Err(ImpairmentError::Probability("loss")));
        let nan = Impairment {
            burst: Some(Burst {
                p_enter: f64::NAN,
                p_exit: 0.5,
            }),
            ..Impairment::default()
        };
        assert!(nan.validate().is_err());
        let zero = Impairment {
            rate_bps: Some(0),
            ..Impairment::default()
        };
        assert_eq!(zero.validate(), Err(ImpairmentError::ZeroRate));
        assert!(Impairment::default().validate().is_ok());
    }
}
