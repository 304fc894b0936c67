//! Per-egress pacer: a leaky bucket that spreads a session's packets over
//! time at the bandwidth estimate, with strict priority classes
//! (audio > retransmission > video > padding).
//!
//! Why pace at all: a keyframe is dozens of packets produced at once; sent
//! back-to-back they overflow shallow router queues and read as congestion to
//! the receiver's delay-based estimator (draft-ietf-rmcat-gcc §4 assumes
//! paced senders). The budget refills at `rate` and is capped at `rate × burst`
//! so an idle sender cannot save up for a huge burst later.
//!
//! Sans-IO: items are opaque `Copy` handles (buffer indices in the dataplane,
//! plain ids in tests); the pacer never touches packet bytes. Every queue is a
//! ring preallocated from [`PacerConfig`], so enqueue/dequeue never allocate.

mod budget;
mod config;
mod queue;
mod stats;

use std::time::Instant;

use budget::Budget;
pub use config::{PacerConfig, PacketClass, MIN_RATE_BPS};
use queue::{ClassQueue, Queued};
pub use stats::{ClassStats, PacerStats, DELAY_BUCKETS, DELAY_BUCKET_BOUNDS_MS};

/// Why [`Pacer::enqueue`] refused an item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PacerError {
    /// The class's preallocated ring is full; the item was not queued.
    #[error("pacer queue for {0:?} is full")]
    QueueFull(PacketClass),
    /// Padding was enqueued but the pacer was configured without padding.
    #[error("padding is disabled in this pacer")]
    PaddingDisabled,
}

/// Expired items held until the caller takes them back ([`Pacer::poll_expired`]); expiry
/// pauses while it is full.
const EXPIRED_SLOTS: usize = 32;

/// Leaky-bucket pacer with strict-priority class queues; see the module docs.
#[derive(Debug)]
pub struct Pacer<T: Copy> {
    queues: [ClassQueue<T>; 4],
    /// Items that waited longer than `max_queue_delay`: their handles go back to the caller,
    /// who owns what they stand for (the dataplane's buffers).
    expired: ClassQueue<T>,
    budget: Budget,
    // Padding is additionally held to its own target rate once one is set.
    padding_budget: Budget,
    padding_limited: bool,
    config: PacerConfig,
    stats: PacerStats,
}

impl<T: Copy> Pacer<T> {
    /// A pacer with a full budget at `config.initial_rate_bps`. All queue
    /// storage is allocated here.
    pub fn new(config: PacerConfig, now: Instant) -> Self {
        let rate = config.initial_rate_bps.max(MIN_RATE_BPS);
        let caps = config.capacity_per_class;
        Self {
            queues: [
                ClassQueue::new(caps[0]),
                ClassQueue::new(caps[1]),
                ClassQueue::new(caps[2]),
                ClassQueue::new(if config.padding { caps[3] } else { 0 }),
            ],
            expired: ClassQueue::new(EXPIRED_SLOTS),
            budget: Budget::new(rate, config.burst, now),
            padding_budget: Budget::new(0, config.burst, now),
            padding_limited: false,
            config,
            stats: PacerStats::default(),
        }
    }

    /// Queues `item` of `size_bytes` wire bytes in `class`.
    pub fn enqueue(
        &mut self,
        now: Instant,
        class: PacketClass,
        size_bytes: usize,
        item: T,
    ) -> Result<(), PacerError> {
        if class == PacketClass::Padding && !self.config.padding {
            return Err(PacerError::PaddingDisabled);
        }
        self.refill(now);
        let idx = class as usize;
        let entry = Queued {
            item,
            size_bytes: u32::try_from(size_bytes).unwrap_or(u32::MAX),
            enqueued_at: now,
        };
        match self.queues[idx].push(entry) {
            Ok(()) => {
                self.stats.classes[idx].record_queued(size_bytes);
                Ok(())
            }
            Err(_) => {
                self.stats.classes[idx].dropped_full += 1;
                Err(PacerError::QueueFull(class))
            }
        }
    }

    /// Sets the pacing rate (normally the bandwidth estimate times a small
    /// factor); clamped to at least [`MIN_RATE_BPS`]. Time since the last
    /// `now` seen is credited at the new rate; call
    /// [`handle_timeout`](Self::handle_timeout) first for exact accounting.
    pub fn set_rate(&mut self, bps: u64) {
        self.budget.set_rate(bps.max(MIN_RATE_BPS));
    }

    /// The current pacing rate.
    pub fn rate_bps(&self) -> u64 {
        self.budget.rate_bps()
    }

    /// Additionally limits padding to `bps` (on top of the main budget);
    /// 0 stops padding from leaving until a new target is set.
    pub fn set_padding_target(&mut self, bps: u64) {
        self.padding_limited = true;
        self.padding_budget.set_rate(bps);
    }

    /// Advances the budget to `now` and drops expired items.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.refill(now);
        self.expire(now);
    }

    /// The next item to send at `now`, if its class has one queued and the
    /// budget allows it. Call repeatedly until `None`, then wait for
    /// [`poll_timeout`](Self::poll_timeout).
    pub fn poll_transmit(&mut self, now: Instant) -> Option<(T, PacketClass)> {
        self.poll_transmit_upto(now, PacketClass::Padding)
    }

    /// [`poll_transmit`](Self::poll_transmit), but only when the head item's class comes no
    /// later than `lowest` in service order (e.g. `Audio`: audio only). Strict priority still
    /// holds: a lower class is never served while a higher one waits.
    pub fn poll_transmit_upto(
        &mut self,
        now: Instant,
        lowest: PacketClass,
    ) -> Option<(T, PacketClass)> {
        self.handle_timeout(now);
        let class = self.head_class()?;
        if class as usize > lowest as usize || !self.class_allowed(class) {
            return None;
        }
        let idx = class as usize;
        let entry = self.queues[idx].pop()?;
        self.budget.charge(entry.size_bytes as usize);
        if class == PacketClass::Padding {
            self.padding_budget.charge(entry.size_bytes as usize);
        }
        let delay = now.saturating_duration_since(entry.enqueued_at);
        self.stats.classes[idx].record_sent(entry.size_bytes as usize, delay);
        Some((entry.item, class))
    }

    /// When the next queued item becomes sendable: the last `now` seen if it
    /// already is, a later instant if it waits on the budget, `None` when
    /// nothing is queued (or only padding held at a zero padding target).
    pub fn poll_timeout(&self) -> Option<Instant> {
        let class = self.head_class()?;
        if class == PacketClass::Audio && self.config.audio_bypasses_budget {
            return Some(self.budget.updated_at());
        }
        let main = self.budget.ready_at()?;
        if class == PacketClass::Padding && self.padding_limited {
            let pad = self.padding_budget.ready_at()?;
            return Some(main.max(pad));
        }
        Some(main)
    }

    /// An item that expired (waited longer than `max_queue_delay`), never to be sent: its
    /// handle is the caller's again (a dataplane buffer goes back to its pool). Poll until
    /// `None` whenever items may have expired (after `poll_transmit`/`handle_timeout`); expiry
    /// waits while [`EXPIRED_SLOTS`] are unclaimed.
    pub fn poll_expired(&mut self) -> Option<T> {
        self.expired.pop().map(|q| q.item)
    }

    /// Takes any queued item regardless of budget, class or age (an expired one first): for
    /// a caller closing the egress that must get every handle back.
    pub fn pop_any(&mut self) -> Option<T> {
        if let Some(q) = self.expired.pop() {
            return Some(q.item);
        }
        self.queues
            .iter_mut()
            .find_map(ClassQueue::pop)
            .map(|q| q.item)
    }

    /// Items waiting across all classes.
    pub fn queued(&self) -> usize {
        self.queues.iter().map(ClassQueue::len).sum()
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.queues.iter().all(ClassQueue::is_empty)
    }

    /// Counters: per-class queue depth, sent, dropped and queueing delay.
    pub fn stats(&self) -> &PacerStats {
        &self.stats
    }

    fn refill(&mut self, now: Instant) {
        self.budget.refill(now);
        self.padding_budget.refill(now);
    }

    fn head_class(&self) -> Option<PacketClass> {
        PacketClass::ALL
            .into_iter()
            .find(|c| !self.queues[*c as usize].is_empty())
    }

    fn class_allowed(&self, class: PacketClass) -> bool {
        match class {
            PacketClass::Audio if self.config.audio_bypasses_budget => true,
            PacketClass::Padding if self.padding_limited => {
                self.budget.allows() && self.padding_budget.allows()
            }
            _ => self.budget.allows(),
        }
    }

    /// Moves non-audio items older than `max_queue_delay` to the expired queue (while it has
    /// room). Queues are FIFO in enqueue time, so only the heads need checking.
    fn expire(&mut self, now: Instant) {
        let max = self.config.max_queue_delay;
        for class in [
            PacketClass::Retransmission,
            PacketClass::Video,
            PacketClass::Padding,
        ] {
            let idx = class as usize;
            while let Some(head) = self.queues[idx].front() {
                if now.saturating_duration_since(head.enqueued_at) <= max {
                    break;
                }
                if self.expired.len() == EXPIRED_SLOTS {
                    return;
                }
                let size = head.size_bytes as usize;
                if let Some(q) = self.queues[idx].pop() {
                    let _ = self.expired.push(q);
                }
                self.stats.classes[idx].record_expired(size);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[allow(clippy::disallowed_methods)] // tests need some base instant
    fn t0() -> Instant {
        Instant::now()
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn config(rate_bps: u64) -> PacerConfig {
        PacerConfig {
            initial_rate_bps: rate_bps,
            padding: true,
            ..PacerConfig::default()
        }
    }

    /// Drains everything sendable at `now`.
    fn drain(p: &mut Pacer<u32>, now: Instant) -> Vec<(u32, PacketClass)> {
        std::iter::from_fn(|| p.poll_transmit(now)).collect()
    }

    #[test]
    fn serves_classes_in_strict_priority() {
        let t = t0();
        let mut p = Pacer::new(config(100_000_000), t);
        p.enqueue(t, PacketClass::Padding, 100, 4).unwrap();
        p.enqueue(t, PacketClass::Video, 100, 3).unwrap();
        p.enqueue(t, PacketClass::Retransmission, 100, 2).unwrap();
        p.enqueue(t, PacketClass::Audio, 100, 1).unwrap();
        p.enqueue(t, PacketClass::Video, 100, 5).unwrap();
        let order: Vec<u32> = drain(&mut p, t).into_iter().map(|(id, _)| id).collect();
        assert_eq!(order, [1, 2, 3, 5, 4]);
        assert!(p.is_empty());
        assert_eq!(p.poll_timeout(), None);
    }

    #[test]
    fn upto_serves_only_the_classes_asked_for() {
        let t = t0();
        let mut p = Pacer::new(config(100_000_000), t);
        p.enqueue(t, PacketClass::Video, 100, 3).unwrap();
        p.enqueue(t, PacketClass::Audio, 100, 1).unwrap();
        assert_eq!(
            p.poll_transmit_upto(t, PacketClass::Audio),
            Some((1, PacketClass::Audio))
        );
        assert_eq!(p.poll_transmit_upto(t, PacketClass::Audio), None);
        assert_eq!(p.queued(), 1);
        assert_eq!(p.poll_transmit(t), Some((3, PacketClass::Video)));
    }

    #[test]
    fn retransmission_overtakes_waiting_video() {
        let t = t0();
        let mut p = Pacer::new(config(1_000_000), t);
        for id in 0..20 {
            p.enqueue(t, PacketClass::Video, 1200, id).unwrap();
        }
        let burst = drain(&mut p, t).len();
        assert!(burst < 20);
        p.enqueue(t + ms(1), PacketClass::Retransmission, 1200, 99)
            .unwrap();
        let next = p.poll_timeout().unwrap();
        assert_eq!(
            p.poll_transmit(next),
            Some((99, PacketClass::Retransmission))
        );
    }

    #[test]
    fn rate_conformance_over_ten_seconds() {
        let t = t0();
        let mut p = Pacer::new(config(1_000_000), t);
        let end = t + Duration::from_secs(10);
        let (mut now, mut id, mut sent_bytes) = (t, 0u32, 0u64);
        while now <= end {
            // Unlimited video: keep the queue topped up.
            while p.stats().class(PacketClass::Video).queued < 16 {
                p.enqueue(now, PacketClass::Video, 1200, id).unwrap();
                id += 1;
            }
            while p.poll_transmit(now).is_some() {
                sent_bytes += 1200;
            }
            let next = p.poll_timeout().unwrap();
            assert!(next > now, "blocked pacer must wait for the future");
            now = next;
        }
        let expected = 1_250_000.0;
        let err = (sent_bytes as f64 - expected).abs() / expected;
        assert!(err < 0.05, "sent {sent_bytes} bytes, off by {err}");
    }

    #[test]
    fn burst_is_capped_after_idle() {
        let t = t0();
        // 1 Mbit/s × 40 ms = 5000 bytes of budget at most.
        let mut p = Pacer::new(config(1_000_000), t);
        let later = t + Duration::from_secs(10);
        for id in 0..20 {
            p.enqueue(later, PacketClass::Video, 1000, id).unwrap();
        }
        // Five packets use the budget up to zero; a sixth may go into debt.
        assert_eq!(drain(&mut p, later).len(), 6);
        // The debt (1000 bytes = 8 ms) must be repaid before the next one.
        assert_eq!(p.poll_timeout(), Some(later + ms(8)));
        assert!(p
            .poll_transmit(later + ms(8) - Duration::from_nanos(1))
            .is_none());
        assert!(p.poll_transmit(later + ms(8)).is_some());
    }

    #[test]
    fn keyframe_burst_is_spread_over_time() {
        let t = t0();
        let mut p = Pacer::new(config(1_000_000), t);
        for id in 0..30 {
            p.enqueue(t, PacketClass::Video, 1200, id).unwrap();
        }
        let mut send_times = Vec::new();
        let mut now = t;
        while !p.is_empty() {
            while p.poll_transmit(now).is_some() {
                send_times.push(now - t);
            }
            match p.poll_timeout() {
                Some(next) => now = next,
                None => break,
            }
        }
        assert_eq!(send_times.len(), 30);
        // Only the 40 ms burst (≈ 4 packets + 1 in debt) leaves at once.
        let immediate = send_times.iter().filter(|d| d.is_zero()).count();
        assert_eq!(immediate, 5);
        // 36 000 bytes at 1 Mbit/s, minus the 5000-byte burst: ≈ 248 ms.
        let last = *send_times.last().unwrap();
        assert!(last >= ms(230) && last <= ms(260), "last at {last:?}");
        // Consecutive paced sends are one packet time (9.6 ms) apart.
        let gap = send_times[10] - send_times[9];
        assert_eq!(gap, Duration::from_micros(9600));
        let video = p.stats().class(PacketClass::Video);
        assert_eq!(video.sent, 30);
        assert_eq!(video.delay_max, last);
        assert!(video.mean_delay() > ms(100));
    }

    #[test]
    fn queue_full_is_an_error_and_counted() {
        let t = t0();
        let mut cfg = config(1_000_000);
        cfg.capacity_per_class = [1, 1, 2, 1];
        let mut p = Pacer::new(cfg, t);
        p.enqueue(t, PacketClass::Video, 100, 1).unwrap();
        p.enqueue(t, PacketClass::Video, 100, 2).unwrap();
        assert_eq!(
            p.enqueue(t, PacketClass::Video, 100, 3),
            Err(PacerError::QueueFull(PacketClass::Video))
        );
        let video = p.stats().class(PacketClass::Video);
        assert_eq!((video.queued, video.dropped_full), (2, 1));
        // Other classes are unaffected.
        p.enqueue(t, PacketClass::Audio, 100, 4).unwrap();
        assert_eq!(p.queued(), 3);
    }

    #[test]
    fn poll_timeout_is_never_in_the_past() {
        let t = t0();
        let mut p: Pacer<u32> = Pacer::new(config(500_000), t);
        assert_eq!(p.poll_timeout(), None);
        let mut now = t;
        let mut id = 0;
        for step in 0..200u64 {
            // Irregular arrivals of mixed sizes.
            if step % 3 != 0 {
                let size = 200 + (step as usize * 37) % 1100;
                p.enqueue(now, PacketClass::Video, size, id).unwrap();
                id += 1;
            }
            while p.poll_transmit(now).is_some() {}
            if let Some(next) = p.poll_timeout() {
                assert!(next > now);
                // At the deadline the head item must really be sendable.
                assert!(p.poll_transmit(next).is_some());
            }
            now += Duration::from_micros(700 + step * 13);
        }
        let mut guard = 0;
        while let Some(next) = p.poll_timeout() {
            p.poll_transmit(next);
            guard += 1;
            assert!(guard < 1000);
        }
        assert!(p.is_empty());
    }

    #[test]
    fn queue_delay_totals_are_exact() {
        let t = t0();
        // Budget large enough that only the poll instants decide when items leave.
        let mut p = Pacer::new(config(100_000_000), t);
        for id in 0..3 {
            p.enqueue(t, PacketClass::Video, 100, id).unwrap();
        }
        p.enqueue(t + ms(2), PacketClass::Audio, 100, 9).unwrap();
        assert_eq!(p.poll_transmit(t + ms(2)), Some((9, PacketClass::Audio)));
        assert_eq!(p.poll_transmit(t + ms(3)), Some((0, PacketClass::Video)));
        assert_eq!(p.poll_transmit(t + ms(7)), Some((1, PacketClass::Video)));
        assert_eq!(p.poll_transmit(t + ms(10)), Some((2, PacketClass::Video)));
        let video = p.stats().class(PacketClass::Video);
        assert_eq!(video.sent, 3);
        assert_eq!(video.delay_sum, ms(20));
        assert_eq!(video.delay_max, ms(10));
        // 3 and 7 ms fall in [1, 5) and [5, 10); 10 ms in [10, 20).
        assert_eq!(video.delay_histogram[..4], [0, 1, 1, 1]);
        let audio = p.stats().class(PacketClass::Audio);
        assert_eq!((audio.sent, audio.delay_sum), (1, Duration::ZERO));
        assert_eq!(audio.delay_histogram[0], 1);
    }

    #[test]
    fn audio_bypasses_budget_unless_configured_not_to() {
        let t = t0();
        for bypass in [true, false] {
            let mut cfg = config(MIN_RATE_BPS);
            cfg.audio_bypasses_budget = bypass;
            let mut p = Pacer::new(cfg, t);
            p.enqueue(t, PacketClass::Video, 1200, 1).unwrap();
            assert!(p.poll_transmit(t).is_some()); // budget now in debt
            p.enqueue(t, PacketClass::Audio, 100, 2).unwrap();
            let got = p.poll_transmit(t);
            assert_eq!(got.is_some(), bypass);
            if bypass {
                assert_eq!(p.poll_timeout(), None);
            } else {
                assert!(p.poll_timeout().unwrap() > t);
            }
        }
    }

    #[test]
    fn stale_items_expire_except_audio() {
        let t = t0();
        let mut cfg = config(MIN_RATE_BPS);
        cfg.audio_bypasses_budget = false;
        let mut p = Pacer::new(cfg, t);
        // Spend the budget so everything below has to wait.
        p.enqueue(t, PacketClass::Video, 10_000, 0).unwrap();
        assert!(p.poll_transmit(t).is_some());
        p.enqueue(t, PacketClass::Audio, 100, 1).unwrap();
        p.enqueue(t, PacketClass::Video, 100, 2).unwrap();
        p.enqueue(t + Duration::from_secs(1), PacketClass::Video, 100, 3)
            .unwrap();
        p.handle_timeout(t + Duration::from_millis(2500));
        let video = p.stats().class(PacketClass::Video);
        assert_eq!((video.dropped_expired, video.queued), (1, 1));
        // The expired item's handle comes back to the caller, once.
        assert_eq!(p.poll_expired(), Some(2));
        assert_eq!(p.poll_expired(), None);
        assert_eq!(p.stats().class(PacketClass::Audio).queued, 1);
        assert_eq!(p.queued(), 2);
    }

    #[test]
    fn padding_only_when_idle_and_within_target() {
        let t = t0();
        let mut p = Pacer::new(config(10_000_000), t);
        p.set_padding_target(0);
        p.enqueue(t, PacketClass::Padding, 200, 1).unwrap();
        p.enqueue(t, PacketClass::Video, 200, 2).unwrap();
        assert_eq!(drain(&mut p, t), [(2, PacketClass::Video)]);
        // A zero padding target holds padding back entirely.
        assert_eq!(p.poll_timeout(), None);
        p.set_padding_target(1_000_000);
        assert_eq!(p.poll_timeout(), Some(t));
        assert_eq!(p.poll_transmit(t), Some((1, PacketClass::Padding)));
        // That 200-byte packet put the padding bucket 1.6 ms into debt at
        // 1 Mbit/s, although the 10 Mbit/s main budget would allow more.
        p.enqueue(t, PacketClass::Padding, 200, 3).unwrap();
        let at = t + Duration::from_micros(1600);
        assert_eq!(p.poll_timeout(), Some(at));
        assert!(p.poll_transmit(at - Duration::from_micros(1)).is_none());
        assert_eq!(p.poll_transmit(at), Some((3, PacketClass::Padding)));
        assert_eq!(p.stats().class(PacketClass::Padding).sent, 2);

        let mut off = Pacer::new(PacerConfig::default(), t);
        assert_eq!(
            off.enqueue(t, PacketClass::Padding, 200, 1),
            Err(PacerError::PaddingDisabled)
        );
    }

    #[test]
    fn rate_changes_take_effect() {
        let t = t0();
        let mut floor: Pacer<u32> = Pacer::new(config(1_000_000), t);
        floor.set_rate(0);
        assert_eq!(floor.rate_bps(), MIN_RATE_BPS);

        let mut p = Pacer::new(config(1_000_000), t);
        p.set_rate(2_000_000);
        for id in 0..10 {
            p.enqueue(t, PacketClass::Video, 1000, id).unwrap();
        }
        // Cap was 5000 bytes at 1 Mbit/s and is not raised retroactively.
        assert_eq!(drain(&mut p, t).len(), 6);
        // 1000 bytes of debt at 2 Mbit/s = 4 ms.
        assert_eq!(p.poll_timeout(), Some(t + ms(4)));
    }

    proptest::proptest! {
        /// Random traffic: the pacer never exceeds `burst + rate × T + one
        /// packet`, never loses track of an item, and never asks to be woken
        /// in the past while blocked.
        #[test]
        fn random_traffic_respects_rate_and_conserves_items(
            ops in proptest::collection::vec((0u8..4, 1usize..1500, 0u64..20_000), 1..300),
            rate in 50_000u64..5_000_000,
        ) {
            let t = t0();
            let mut cfg = config(rate);
            cfg.audio_bypasses_budget = false;
            cfg.capacity_per_class = [8, 8, 8, 8];
            let mut p = Pacer::new(cfg, t);
            let (mut now, mut accepted) = (t, [0u64; 4]);
            for (i, (class, size, advance_us)) in ops.into_iter().enumerate() {
                let class = PacketClass::ALL[class as usize];
                if p.enqueue(now, class, size, i as u32).is_ok() {
                    accepted[class as usize] += 1;
                }
                while p.poll_transmit(now).is_some() {}
                if let Some(next) = p.poll_timeout() {
                    proptest::prop_assert!(next >= now);
                }
                now += Duration::from_micros(advance_us);
                let sent_bytes: u64 = p.stats().classes.iter().map(|c| c.sent_bytes).sum();
                let elapsed = (now - t).as_secs_f64();
                let bound = rate as f64 * (elapsed + 0.040) / 8.0 + 1500.0;
                proptest::prop_assert!(sent_bytes as f64 <= bound + 1.0);
            }
            for (idx, c) in p.stats().classes.iter().enumerate() {
                proptest::prop_assert_eq!(
                    accepted[idx],
                    c.sent + c.dropped_expired + c.queued as u64
                );
            }
        }
    }
}
