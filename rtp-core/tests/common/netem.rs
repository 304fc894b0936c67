//! A deterministic in-memory network link, in the spirit of Linux `netem`:
//! random and bursty loss, fixed delay plus uniform jitter, reordering and
//! duplication, and a bottleneck rate with a drop-tail queue (like `tbf`), all
//! driven by a seeded RNG and by the caller's clock.
//!
//! Nothing here sleeps or reads the clock: `send(now, ..)` schedules a packet,
//! `poll_recv(now)` hands back what has arrived by `now`, and `next_arrival()`
//! tells the test when to advance its clock to next.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Extra delay given to a packet picked for reordering: long enough for
/// several later packets at typical media pacing (5–10 ms apart) to overtake it.
pub const REORDER_EXTRA: Duration = Duration::from_millis(25);

/// Delay of the second copy of a duplicated packet, after the first.
pub const DUPLICATE_GAP: Duration = Duration::from_millis(1);

/// Behaviour of one direction of a [`Netem`] link. Probabilities are in `0.0..=1.0`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NetemConfig {
    /// RNG seed: the same seed and the same calls give the same outcome.
    pub seed: u64,
    /// Independent per-packet loss probability.
    pub loss: f64,
    /// Bursty loss: with probability `.0` a packet starts a burst in which
    /// it and the next `.1 - 1` packets are all dropped.
    pub burst_loss: Option<(f64, u32)>,
    /// Fixed one-way delay.
    pub delay: Duration,
    /// Uniform extra delay in `0..=jitter`, drawn per packet (can reorder).
    pub jitter: Duration,
    /// Probability a packet is held back by [`REORDER_EXTRA`].
    pub reorder: f64,
    /// Probability a packet is delivered twice.
    pub duplicate: f64,
    /// Bottleneck rate (bits per second of packet bytes): packets queue behind each other
    /// and leave one serialization time apart. `None`: no bottleneck.
    pub rate_bps: Option<u64>,
    /// Longest queueing delay at the bottleneck; a packet that would wait longer is dropped.
    pub queue_limit: Duration,
}

impl Default for NetemConfig {
    /// A perfect link: no loss, no delay.
    fn default() -> Self {
        Self {
            seed: 1,
            loss: 0.0,
            burst_loss: None,
            delay: Duration::ZERO,
            jitter: Duration::ZERO,
            reorder: 0.0,
            duplicate: 0.0,
            rate_bps: None,
            queue_limit: Duration::from_millis(300),
        }
    }
}

/// What a [`Netem`] did so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NetemStats {
    /// Packets given to `send`.
    pub sent: u64,
    /// Packets dropped (random or burst loss).
    pub dropped: u64,
    /// Of those, dropped by a burst.
    pub burst_dropped: u64,
    /// Extra copies scheduled by duplication.
    pub duplicated: u64,
    /// Packets held back for reordering.
    pub reordered: u64,
    /// Packets handed out by `poll_recv`.
    pub delivered: u64,
    /// Packets dropped because the bottleneck queue was full.
    pub queue_dropped: u64,
}

/// One direction of a simulated network path.
#[derive(Debug)]
pub struct Netem {
    cfg: NetemConfig,
    rng: StdRng,
    /// Min-heap on (arrival, send order): ties keep FIFO order.
    queue: BinaryHeap<Reverse<(Instant, u64, Vec<u8>)>>,
    order: u64,
    burst_left: u32,
    /// When the bottleneck has sent everything queued so far.
    link_free: Option<Instant>,
    stats: NetemStats,
}

impl Netem {
    /// A link with the given behaviour.
    pub fn new(cfg: NetemConfig) -> Self {
        Self {
            cfg,
            rng: StdRng::seed_from_u64(cfg.seed),
            queue: BinaryHeap::new(),
            order: 0,
            burst_left: 0,
            link_free: None,
            stats: NetemStats::default(),
        }
    }

    /// Put `packet` on the link at `now`; it may be dropped, delayed,
    /// reordered or duplicated.
    pub fn send(&mut self, now: Instant, packet: &[u8]) {
        self.stats.sent += 1;
        if self.burst_left > 0 {
            self.burst_left -= 1;
            self.stats.dropped += 1;
            self.stats.burst_dropped += 1;
            return;
        }
        if let Some((start, len)) = self.cfg.burst_loss {
            if len > 0 && self.rng.gen_bool(start) {
                self.burst_left = len - 1;
                self.stats.dropped += 1;
                self.stats.burst_dropped += 1;
                return;
            }
        }
        if self.rng.gen_bool(self.cfg.loss) {
            self.stats.dropped += 1;
            return;
        }
        let mut at = now;
        if let Some(rate) = self.cfg.rate_bps.filter(|&r| r > 0) {
            let start = self.link_free.map_or(now, |f| f.max(now));
            if start.saturating_duration_since(now) > self.cfg.queue_limit {
                self.stats.dropped += 1;
                self.stats.queue_dropped += 1;
                return;
            }
            let tx = Duration::from_nanos((packet.len() as u64 * 8 * 1_000_000_000) / rate);
            at = start + tx;
            self.link_free = Some(at);
        }
        let mut at = at + self.cfg.delay + self.jitter();
        if self.rng.gen_bool(self.cfg.reorder) {
            at += REORDER_EXTRA;
            self.stats.reordered += 1;
        }
        self.enqueue(at, packet);
        if self.rng.gen_bool(self.cfg.duplicate) {
            self.stats.duplicated += 1;
            self.enqueue(at + DUPLICATE_GAP, packet);
        }
    }

    /// The next packet that has arrived by `now`, earliest first.
    pub fn poll_recv(&mut self, now: Instant) -> Option<Vec<u8>> {
        if self.next_arrival()? > now {
            return None;
        }
        let Reverse((_, _, packet)) = self.queue.pop()?;
        self.stats.delivered += 1;
        Some(packet)
    }

    /// When the earliest packet in flight arrives, if any.
    pub fn next_arrival(&self) -> Option<Instant> {
        self.queue.peek().map(|Reverse((at, _, _))| *at)
    }

    /// Packets currently in flight.
    pub fn in_flight(&self) -> usize {
        self.queue.len()
    }

    /// Changes the bottleneck rate from now on (`None`: lifted); packets already queued keep
    /// their departure times.
    pub fn set_rate(&mut self, rate_bps: Option<u64>) {
        self.cfg.rate_bps = rate_bps;
    }

    /// Changes the random loss probability from now on.
    pub fn set_loss(&mut self, loss: f64) {
        self.cfg.loss = loss;
    }

    /// Counters so far.
    pub fn stats(&self) -> NetemStats {
        self.stats
    }

    fn jitter(&mut self) -> Duration {
        let max = self.cfg.jitter.as_nanos() as u64;
        if max == 0 {
            return Duration::ZERO;
        }
        Duration::from_nanos(self.rng.gen_range(0..=max))
    }

    fn enqueue(&mut self, at: Instant, packet: &[u8]) {
        self.order += 1;
        self.queue.push(Reverse((at, self.order, packet.to_vec())));
    }
}
