//! A windowed byte-rate meter: bytes counted into fixed time buckets, the rate taken over the
//! last `BUCKETS` of them. Used for what a publisher really sends per simulcast layer (the
//! allocator's cost of a layer), and for what a session really sends (the line a REMB is
//! compared against). Fixed storage, no allocation; time is passed in.

use std::time::{Duration, Instant};

/// Buckets in the window.
const BUCKETS: usize = 10;

/// Bytes per bucket over a sliding window of `BUCKETS × bucket`.
#[derive(Debug, Clone, Copy)]
pub struct RateMeter {
    bucket: Duration,
    counts: [u64; BUCKETS],
    /// When the first byte was counted (the window is shorter until it is full).
    base: Option<Instant>,
    /// Absolute index (buckets since `base`) of the newest bucket.
    head: u64,
}

impl RateMeter {
    /// A meter over a window of `window` (at least 10 ms; ten buckets).
    pub fn new(window: Duration) -> Self {
        Self {
            bucket: (window / BUCKETS as u32).max(Duration::from_millis(1)),
            counts: [0; BUCKETS],
            base: None,
            head: 0,
        }
    }

    /// The window the rate is averaged over.
    pub fn window(&self) -> Duration {
        self.bucket * BUCKETS as u32
    }

    /// Buckets from `base` to `now`, in 64-bit arithmetic (a 128-bit division per packet showed
    /// in profiles; 2^64 ns is 584 years).
    fn index(&self, base: Instant, now: Instant) -> u64 {
        let since =
            u64::try_from(now.saturating_duration_since(base).as_nanos()).unwrap_or(u64::MAX);
        let bucket = u64::try_from(self.bucket.as_nanos())
            .unwrap_or(u64::MAX)
            .max(1);
        since / bucket
    }

    /// Moves the window to `now`, clearing the buckets it passed.
    fn advance(&mut self, now: Instant) {
        let Some(base) = self.base else { return };
        self.advance_to(self.index(base, now));
    }

    /// Moves the window to bucket `idx`.
    fn advance_to(&mut self, idx: u64) {
        if idx <= self.head {
            return;
        }
        let steps = (idx - self.head).min(BUCKETS as u64);
        for k in 1..=steps {
            self.counts[((self.head + k) % BUCKETS as u64) as usize] = 0;
        }
        self.head = idx;
    }

    /// Counts `bytes` at `now`.
    pub fn add(&mut self, now: Instant, bytes: usize) {
        let base = *self.base.get_or_insert(now);
        let idx = self.index(base, now);
        self.advance_to(idx);
        // A `now` before the newest bucket (callers' clocks only go forward) still counts.
        let idx = idx.min(self.head);
        if self.head - idx < BUCKETS as u64 {
            let slot = &mut self.counts[(idx % BUCKETS as u64) as usize];
            *slot = slot.saturating_add(bytes as u64);
        }
    }

    /// Bits per second over the window ending at `now` (over the time since the first byte
    /// while the window is not full yet); `None` before anything was counted.
    pub fn rate_bps(&mut self, now: Instant) -> Option<u64> {
        let base = self.base?;
        self.advance(now);
        let bytes: u64 = self.counts.iter().sum();
        let elapsed = now.saturating_duration_since(base);
        // The newest bucket is partly filled: count the window up to `now`.
        let span = elapsed.min(self.window()).max(self.bucket);
        Some((bytes as u128 * 8 * 1_000_000_000 / span.as_nanos().max(1)) as u64)
    }

    /// Whether anything was counted within the window ending at `now`.
    pub fn active(&mut self, now: Instant) -> bool {
        self.base.is_some() && {
            self.advance(now);
            self.counts.iter().any(|&c| c > 0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[allow(clippy::disallowed_methods)] // tests need some base instant
    fn t0() -> Instant {
        Instant::now()
    }

    #[test]
    fn steady_rate_and_decay() {
        let t = t0();
        let ms = Duration::from_millis;
        let mut m = RateMeter::new(Duration::from_secs(1));
        assert_eq!(m.rate_bps(t), None);
        // 1250 bytes every 10 ms = 1 Mbit/s, for 3 s.
        for i in 0..300 {
            m.add(t + ms(i * 10), 1250);
        }
        let r = m.rate_bps(t + ms(2999)).unwrap();
        assert!((950_000..=1_050_000).contains(&r), "{r}");
        assert!(m.active(t + ms(3500)));
        // Silence: the window empties.
        assert_eq!(m.rate_bps(t + ms(4200)), Some(0));
        assert!(!m.active(t + ms(4200)));
    }

    #[test]
    fn partial_window_at_start() {
        let t = t0();
        let mut m = RateMeter::new(Duration::from_secs(2));
        for i in 0..50 {
            m.add(t + Duration::from_millis(i * 10), 1000);
        }
        // 400 kbit over 0.5 s: 800 kbit/s, not diluted by the empty rest of the window.
        let r = m.rate_bps(t + Duration::from_millis(500)).unwrap();
        assert!((700_000..=900_000).contains(&r), "{r}");
    }
}
