//! Pacer counters: per-class queue depth, sends, drops and queueing delay.
//!
//! Queueing delay (enqueue → leaves the pacer) is kept apart from forwarding
//! latency so a benchmark can report how long packets waited on the budget.

use std::time::Duration;

/// Upper bounds (exclusive) of the queue-delay histogram buckets, in
/// milliseconds; the last bucket collects everything at or above 1 s.
pub const DELAY_BUCKET_BOUNDS_MS: [u64; DELAY_BUCKETS - 1] =
    [1, 5, 10, 20, 50, 100, 200, 500, 1000];

/// Number of buckets in [`ClassStats::delay_histogram`].
pub const DELAY_BUCKETS: usize = 10;

/// Counters for one [`PacketClass`](super::PacketClass).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClassStats {
    /// Items waiting right now.
    pub queued: usize,
    /// Bytes waiting right now.
    pub queued_bytes: u64,
    /// Items handed out by `poll_transmit`.
    pub sent: u64,
    /// Bytes handed out by `poll_transmit`.
    pub sent_bytes: u64,
    /// Items refused by `enqueue` because the class queue was full.
    pub dropped_full: u64,
    /// Items discarded because they waited longer than `max_queue_delay`.
    pub dropped_expired: u64,
    /// Sum of queueing delays of sent items (divide by `sent` for the mean).
    pub delay_sum: Duration,
    /// Largest queueing delay of a sent item.
    pub delay_max: Duration,
    /// Sent items by queueing delay; bucket `i` is below
    /// `DELAY_BUCKET_BOUNDS_MS[i]`, the last bucket is everything above.
    pub delay_histogram: [u64; DELAY_BUCKETS],
}

impl ClassStats {
    /// Mean queueing delay of sent items, zero when nothing was sent.
    pub fn mean_delay(&self) -> Duration {
        if self.sent == 0 {
            return Duration::ZERO;
        }
        let nanos = self.delay_sum.as_nanos() / u128::from(self.sent);
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }

    pub(crate) fn record_sent(&mut self, size_bytes: usize, delay: Duration) {
        self.queued = self.queued.saturating_sub(1);
        self.queued_bytes = self.queued_bytes.saturating_sub(size_bytes as u64);
        self.sent += 1;
        self.sent_bytes = self.sent_bytes.saturating_add(size_bytes as u64);
        self.delay_sum = self.delay_sum.saturating_add(delay);
        self.delay_max = self.delay_max.max(delay);
        let ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        let bucket = DELAY_BUCKET_BOUNDS_MS
            .iter()
            .position(|&bound| ms < bound)
            .unwrap_or(DELAY_BUCKETS - 1);
        self.delay_histogram[bucket] += 1;
    }

    pub(crate) fn record_queued(&mut self, size_bytes: usize) {
        self.queued += 1;
        self.queued_bytes = self.queued_bytes.saturating_add(size_bytes as u64);
    }

    pub(crate) fn record_expired(&mut self, size_bytes: usize) {
        self.queued = self.queued.saturating_sub(1);
        self.queued_bytes = self.queued_bytes.saturating_sub(size_bytes as u64);
        self.dropped_expired += 1;
    }
}

/// Snapshot of all pacer counters, indexed by `PacketClass as usize`
/// (audio, retransmission, video, padding).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PacerStats {
    /// Per-class counters.
    pub classes: [ClassStats; 4],
}

impl PacerStats {
    /// Counters of one class.
    pub fn class(&self, class: super::PacketClass) -> &ClassStats {
        &self.classes[class as usize]
    }

    /// Items waiting across all classes.
    pub fn total_queued(&self) -> usize {
        self.classes.iter().map(|c| c.queued).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_and_mean() {
        let mut s = ClassStats::default();
        for ms in [0u64, 3, 7, 1500] {
            s.record_queued(10);
            s.record_sent(10, Duration::from_millis(ms));
        }
        assert_eq!(s.delay_histogram[0], 1);
        assert_eq!(s.delay_histogram[1], 1);
        assert_eq!(s.delay_histogram[2], 1);
        assert_eq!(s.delay_histogram[DELAY_BUCKETS - 1], 1);
        assert_eq!(s.delay_max, Duration::from_millis(1500));
        assert_eq!(s.mean_delay(), Duration::from_micros(377_500));
        assert_eq!(s.queued, 0);
        assert_eq!(s.sent_bytes, 40);
    }
}
