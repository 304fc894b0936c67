//! Receive-side loss detection and generic NACK scheduling (RFC 4585 §6.2.1,
//! with the retransmission timing advice of RFC 4588 §3).
//!
//! The generator keeps a sliding window of the last `max_tracked` extended
//! sequence numbers below the highest one received. Every gap in that window
//! is a missing entry with its own request schedule: a first request after a
//! short reorder grace, re-requests spaced by about one RTT, and a give-up
//! once the entry is too old or has used all its retries. Storage is one
//! preallocated slot per window position, so arrivals are O(1) and nothing is
//! allocated after [`NackGenerator::new`].

use std::time::{Duration, Instant};

/// RTT assumed until [`NackGenerator::set_rtt`] is called. Generous on purpose:
/// retrying too early only produces duplicate retransmissions.
const DEFAULT_RTT: Duration = Duration::from_millis(100);

/// Tuning of a [`NackGenerator`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NackConfig {
    /// Width of the tracked window in sequence numbers (also the most missing
    /// entries held). A forward jump larger than this resets the generator.
    pub max_tracked: usize,
    /// How many times one sequence number is requested before giving up.
    pub max_retries: u8,
    /// A missing packet older than this (since its gap was seen) is given up.
    pub give_up_after: Duration,
    /// Wait this long after a gap appears before the first request, so that
    /// merely reordered packets are not NACKed.
    pub reorder_grace: Duration,
    /// Floor of the re-request interval, whatever the RTT.
    pub min_retry_interval: Duration,
}

impl Default for NackConfig {
    fn default() -> Self {
        Self {
            max_tracked: 1024,
            max_retries: 10,
            give_up_after: Duration::from_secs(1),
            reorder_grace: Duration::from_millis(10),
            min_retry_interval: Duration::from_millis(10),
        }
    }
}

/// Counters of a [`NackGenerator`]; monotonic over its life.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NackStats {
    /// Sequence numbers put into a NACK (each retry counts again).
    pub requested: u64,
    /// Missing packets that arrived after having been requested.
    pub recovered: u64,
    /// Missing packets that arrived before any request: reordering.
    pub reordered: u64,
    /// Missing packets abandoned: too old, out of retries, pushed out of the
    /// window, or dropped by a reset.
    pub given_up: u64,
    /// Arrivals that were neither new nor missing (duplicates, or older than
    /// the window).
    pub duplicates: u64,
    /// Forward jumps larger than the window that restarted tracking.
    pub resets: u64,
}

/// One missing sequence number and its request schedule.
#[derive(Debug, Clone, Copy)]
struct Missing {
    ext_seq: u64,
    detected_at: Instant,
    last_request: Option<Instant>,
    retries: u8,
}

/// What to do with a missing entry at a given instant.
enum Due {
    Request,
    GiveUp,
    Wait(Instant),
}

/// Per-stream loss detector and NACK scheduler.
#[derive(Debug)]
pub struct NackGenerator {
    cfg: NackConfig,
    slots: Vec<Option<Missing>>,
    highest: Option<u64>,
    /// No sequence number below this is missing; scans start here.
    oldest: u64,
    missing: usize,
    rtt: Option<Duration>,
    stats: NackStats,
}

impl NackGenerator {
    /// A generator with all storage allocated up front. `max_tracked` of 0 is
    /// treated as 1.
    pub fn new(cfg: NackConfig) -> Self {
        let cap = cfg.max_tracked.max(1);
        Self {
            cfg: NackConfig {
                max_tracked: cap,
                ..cfg
            },
            slots: vec![None; cap],
            highest: None,
            oldest: 0,
            missing: 0,
            rtt: None,
            stats: NackStats::default(),
        }
    }

    /// Update the round-trip time used to space re-requests.
    pub fn set_rtt(&mut self, rtt: Duration) {
        self.rtt = Some(rtt);
    }

    /// Counters so far.
    pub fn stats(&self) -> NackStats {
        self.stats
    }

    /// Number of sequence numbers currently considered missing.
    pub fn missing_count(&self) -> usize {
        self.missing
    }

    /// Highest extended sequence number received.
    pub fn highest(&self) -> Option<u64> {
        self.highest
    }

    /// Record the arrival of `ext_seq` (original, reordered or retransmitted).
    pub fn on_packet(&mut self, now: Instant, ext_seq: u64) {
        let cap = self.slots.len() as u64;
        let Some(h) = self.highest else {
            self.restart_at(ext_seq);
            return;
        };
        if ext_seq > h {
            if ext_seq - h > cap {
                // A discontinuity (stream restart, sender jump): requesting
                // thousands of packets would only flood the sender.
                self.stats.resets += 1;
                self.stats.given_up += self.missing as u64;
                self.slots.iter_mut().for_each(|s| *s = None);
                self.missing = 0;
                self.restart_at(ext_seq);
                return;
            }
            for s in h + 1..ext_seq {
                self.evict(s);
                self.slots[(s % cap) as usize] = Some(Missing {
                    ext_seq: s,
                    detected_at: now,
                    last_request: None,
                    retries: 0,
                });
                self.missing += 1;
            }
            self.evict(ext_seq);
            self.highest = Some(ext_seq);
            return;
        }
        let slot = &mut self.slots[(ext_seq % cap) as usize];
        match slot {
            Some(m) if m.ext_seq == ext_seq && h - ext_seq < cap => {
                if m.retries > 0 {
                    self.stats.recovered += 1;
                } else {
                    self.stats.reordered += 1;
                }
                *slot = None;
                self.missing -= 1;
            }
            _ => self.stats.duplicates += 1,
        }
    }

    /// Give up on entries that are too old or out of retries. Requests are
    /// only emitted by [`Self::poll_nacks`].
    pub fn handle_timeout(&mut self, now: Instant) {
        self.scan(now, &mut []);
    }

    /// Write the sequence numbers due for a (re)request into `out`, oldest
    /// first, and return how many were written. Entries that do not fit stay
    /// due for the next call.
    pub fn poll_nacks(&mut self, now: Instant, out: &mut [u16]) -> usize {
        self.scan(now, out)
    }

    /// The next instant at which a request or give-up is due, if anything is
    /// missing. May be in the past: then poll now.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let (start, end) = self.window()?;
        let mut next: Option<Instant> = None;
        for s in start..=end {
            if let Some(m) = self.entry(s) {
                let at = match self.due(m, None) {
                    Due::Wait(t) => t,
                    // due() with no `now` never decides; keep the compiler happy.
                    Due::Request | Due::GiveUp => continue,
                };
                next = Some(next.map_or(at, |n| n.min(at)));
            }
        }
        next
    }

    fn restart_at(&mut self, ext_seq: u64) {
        self.highest = Some(ext_seq);
        self.oldest = ext_seq.saturating_add(1);
    }

    /// Before slot reuse: an entry still sitting in the slot of `ext_seq`
    /// belongs to `ext_seq - max_tracked` and has fallen out of the window.
    fn evict(&mut self, ext_seq: u64) {
        let cap = self.slots.len() as u64;
        let slot = &mut self.slots[(ext_seq % cap) as usize];
        if slot.take().is_some() {
            self.missing -= 1;
            self.stats.given_up += 1;
        }
    }

    fn entry(&self, ext_seq: u64) -> Option<&Missing> {
        let cap = self.slots.len() as u64;
        self.slots[(ext_seq % cap) as usize]
            .as_ref()
            .filter(|m| m.ext_seq == ext_seq)
    }

    /// Inclusive range that may hold missing entries.
    fn window(&self) -> Option<(u64, u64)> {
        let h = self.highest?;
        if self.missing == 0 {
            return None;
        }
        let cap = self.slots.len() as u64;
        let start = self.oldest.max(h.saturating_sub(cap - 1));
        Some((start, h))
    }

    fn retry_interval(&self) -> Duration {
        // A quarter of an RTT on top absorbs jitter so the previous
        // retransmission has a fair chance to land before we ask again.
        let rtt = self.rtt.unwrap_or(DEFAULT_RTT);
        (rtt + rtt / 4).max(self.cfg.min_retry_interval)
    }

    /// The schedule of `m`: with `now`, whether to act; without, when.
    fn due(&self, m: &Missing, now: Option<Instant>) -> Due {
        let give_up_at = match m.last_request {
            Some(t) if m.retries >= self.cfg.max_retries => {
                (t + self.retry_interval()).min(m.detected_at + self.cfg.give_up_after)
            }
            _ => m.detected_at + self.cfg.give_up_after,
        };
        let request_at = match m.last_request {
            _ if m.retries >= self.cfg.max_retries => None,
            None => Some(m.detected_at + self.cfg.reorder_grace),
            Some(t) => Some(t + self.retry_interval()),
        };
        let at = request_at.map_or(give_up_at, |r| r.min(give_up_at));
        match now {
            Some(now) if now >= give_up_at => Due::GiveUp,
            Some(now) if now >= at => Due::Request,
            _ => Due::Wait(at),
        }
    }

    fn scan(&mut self, now: Instant, out: &mut [u16]) -> usize {
        let Some((start, end)) = self.window() else {
            return 0;
        };
        let cap = self.slots.len() as u64;
        let mut n = 0;
        let mut first_missing = None;
        for s in start..=end {
            let Some(m) = self.entry(s).copied() else {
                continue;
            };
            match self.due(&m, Some(now)) {
                Due::GiveUp => {
                    self.slots[(s % cap) as usize] = None;
                    self.missing -= 1;
                    self.stats.given_up += 1;
                    continue;
                }
                Due::Request if n < out.len() => {
                    out[n] = s as u16;
                    n += 1;
                    self.stats.requested += 1;
                    self.slots[(s % cap) as usize] = Some(Missing {
                        last_request: Some(now),
                        retries: m.retries + 1,
                        ..m
                    });
                }
                Due::Request | Due::Wait(_) => {}
            }
            first_missing.get_or_insert(s);
        }
        self.oldest = first_missing.unwrap_or(end.saturating_add(1));
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[allow(clippy::disallowed_methods)] // tests need some base instant
    fn t0() -> Instant {
        Instant::now()
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn gen() -> NackGenerator {
        let mut g = NackGenerator::new(NackConfig {
            max_tracked: 64,
            max_retries: 3,
            give_up_after: ms(1000),
            reorder_grace: ms(10),
            min_retry_interval: ms(10),
        });
        g.set_rtt(ms(40)); // retry interval 50 ms
        g
    }

    fn poll(g: &mut NackGenerator, now: Instant) -> Vec<u16> {
        let mut out = [0u16; 64];
        let n = g.poll_nacks(now, &mut out);
        out[..n].to_vec()
    }

    #[test]
    fn gap_is_requested_after_grace() {
        let t = t0();
        let mut g = gen();
        g.on_packet(t, 100);
        g.on_packet(t, 103);
        assert_eq!(g.missing_count(), 2);
        assert!(poll(&mut g, t + ms(5)).is_empty());
        assert_eq!(g.poll_timeout(), Some(t + ms(10)));
        assert_eq!(poll(&mut g, t + ms(10)), vec![101, 102]);
        assert_eq!(g.stats().requested, 2);
        // Not again before the retry interval.
        assert!(poll(&mut g, t + ms(30)).is_empty());
        assert_eq!(g.poll_timeout(), Some(t + ms(60)));
    }

    #[test]
    fn reordered_packet_is_not_requested() {
        let t = t0();
        let mut g = gen();
        g.on_packet(t, 10);
        g.on_packet(t, 12);
        g.on_packet(t + ms(3), 11);
        assert!(poll(&mut g, t + ms(20)).is_empty());
        assert_eq!(g.stats().reordered, 1);
        assert_eq!(g.poll_timeout(), None);
    }

    #[test]
    fn retries_then_give_up() {
        let t = t0();
        let mut g = gen();
        g.on_packet(t, 1);
        g.on_packet(t, 3);
        assert_eq!(poll(&mut g, t + ms(10)), vec![2]);
        assert_eq!(poll(&mut g, t + ms(60)), vec![2]);
        assert_eq!(poll(&mut g, t + ms(110)), vec![2]);
        // Three retries used: the next slot is a give-up, not a request.
        assert_eq!(g.poll_timeout(), Some(t + ms(160)));
        assert!(poll(&mut g, t + ms(160)).is_empty());
        assert_eq!(g.stats().given_up, 1);
        assert_eq!(g.missing_count(), 0);
        assert_eq!(g.poll_timeout(), None);
    }

    #[test]
    fn recovery_is_counted() {
        let t = t0();
        let mut g = gen();
        g.on_packet(t, 1);
        g.on_packet(t, 3);
        assert_eq!(poll(&mut g, t + ms(10)), vec![2]);
        g.on_packet(t + ms(50), 2);
        assert_eq!(g.stats().recovered, 1);
        assert_eq!(g.missing_count(), 0);
        g.on_packet(t + ms(51), 2);
        assert_eq!(g.stats().duplicates, 1);
    }

    #[test]
    fn give_up_after_age() {
        let t = t0();
        let mut g = NackGenerator::new(NackConfig {
            max_tracked: 64,
            max_retries: 100,
            give_up_after: ms(200),
            reorder_grace: ms(0),
            min_retry_interval: ms(10),
        });
        g.set_rtt(ms(8)); // interval floored at 10 ms
        g.on_packet(t, 1);
        g.on_packet(t, 3);
        let mut now = t;
        let mut requests = 0;
        while let Some(at) = g.poll_timeout() {
            now = at;
            requests += poll(&mut g, now).len();
        }
        assert_eq!(now, t + ms(200));
        assert_eq!(requests, 20);
        assert_eq!(g.stats().given_up, 1);
    }

    #[test]
    fn output_capacity_leaves_rest_due() {
        let t = t0();
        let mut g = gen();
        g.on_packet(t, 0);
        g.on_packet(t, 6);
        let mut out = [0u16; 2];
        assert_eq!(g.poll_nacks(t + ms(10), &mut out), 2);
        assert_eq!(out, [1, 2]);
        assert_eq!(g.poll_timeout(), Some(t + ms(10)));
        assert_eq!(g.poll_nacks(t + ms(10), &mut out), 2);
        assert_eq!(out, [3, 4]);
    }

    #[test]
    fn huge_jump_resets() {
        let t = t0();
        let mut g = gen();
        g.on_packet(t, 1000);
        g.on_packet(t, 1002);
        g.on_packet(t, 1002 + 65);
        assert_eq!(g.stats().resets, 1);
        assert_eq!(g.stats().given_up, 1);
        assert_eq!(g.missing_count(), 0);
        assert!(poll(&mut g, t + ms(100)).is_empty());
        // Exactly the window width still counts as a gap.
        g.on_packet(t, 1067 + 64);
        assert_eq!(g.missing_count(), 63);
    }

    #[test]
    fn window_slide_evicts_old_entries() {
        let t = t0();
        let mut g = gen();
        g.on_packet(t, 0);
        g.on_packet(t, 2); // 1 missing
        for s in 3..=70 {
            g.on_packet(t, s);
        }
        // 1 fell out of the 64-wide window when 65 arrived.
        assert_eq!(g.missing_count(), 0);
        assert_eq!(g.stats().given_up, 1);
        g.on_packet(t, 1); // far too late
        assert_eq!(g.stats().duplicates, 1);
    }

    #[test]
    fn wire_seq_wraps() {
        let t = t0();
        let mut g = gen();
        g.on_packet(t, 65536 + 65534);
        g.on_packet(t, 2 * 65536 + 1);
        assert_eq!(poll(&mut g, t + ms(10)), vec![65535, 0]);
    }

    #[test]
    fn many_packets_stay_bounded() {
        let t = t0();
        let mut g = gen();
        let mut now = t;
        for s in 0..10_000u64 {
            now += ms(10);
            if s % 7 != 3 {
                g.on_packet(now, s);
            }
            let _ = poll(&mut g, now);
        }
        assert!(g.missing_count() <= 64);
        let st = g.stats();
        assert_eq!(st.given_up + g.missing_count() as u64, 10_000 / 7);
    }

    proptest::proptest! {
        /// Arbitrary arrival orders (jumps, reorders, duplicates) keep the
        /// bookkeeping consistent and never panic.
        #[test]
        fn arbitrary_arrivals_stay_consistent(
            steps in proptest::collection::vec((0u64..200, 0u64..30), 1..300),
        ) {
            let t = t0();
            let mut g = gen();
            let mut now = t;
            let mut seq = 1_000u64;
            for (delta, dt) in steps {
                now += ms(dt);
                // Mostly forward, sometimes back.
                seq = if delta < 150 { seq + delta / 20 } else { seq.saturating_sub(delta - 150) };
                g.on_packet(now, seq);
                let mut out = [0u16; 8];
                let n = g.poll_nacks(now, &mut out);
                proptest::prop_assert!(n <= 8);
                proptest::prop_assert!(g.missing_count() <= 64);
                if let Some(at) = g.poll_timeout() {
                    proptest::prop_assert!(g.missing_count() > 0);
                    proptest::prop_assert!(at + ms(1000) >= now);
                }
            }
            // Drain: everything is eventually recovered or given up.
            while let Some(at) = g.poll_timeout() {
                now = now.max(at);
                let _ = poll(&mut g, now);
            }
            proptest::prop_assert_eq!(g.missing_count(), 0);
        }
    }
}
