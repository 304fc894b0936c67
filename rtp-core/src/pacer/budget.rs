//! The pacer's leaky bucket: a byte budget that refills at the target rate.
//!
//! The level is kept in nano-bits (bits × 10⁹) in an `i128`, so refilling by
//! `rate_bps × elapsed_ns` is exact and cannot overflow for any realistic rate
//! or idle period. Rounding never accumulates, so long runs conform to the rate.

use std::time::{Duration, Instant};

const NANOS_PER_SEC: i128 = 1_000_000_000;

/// Leaky-bucket budget: refills at `rate_bps`, capped at `rate × burst`.
#[derive(Debug)]
pub(crate) struct Budget {
    rate_bps: u64,
    burst: Duration,
    level: i128,
    updated_at: Instant,
}

impl Budget {
    /// A full bucket (a fresh sender may use its burst right away).
    pub(crate) fn new(rate_bps: u64, burst: Duration, now: Instant) -> Self {
        let mut b = Self {
            rate_bps,
            burst,
            level: 0,
            updated_at: now,
        };
        b.level = b.cap();
        b
    }

    /// `rate × burst`, in nano-bits (`bits/s × ns = bits × 10⁻⁹`).
    fn cap(&self) -> i128 {
        let burst_ns = i128::try_from(self.burst.as_nanos()).unwrap_or(i128::MAX / 2);
        i128::from(self.rate_bps).saturating_mul(burst_ns)
    }

    /// Credits the time since the last update. `now` earlier than the last
    /// update is ignored (the bucket never refills backwards).
    pub(crate) fn refill(&mut self, now: Instant) {
        if now <= self.updated_at {
            return;
        }
        let elapsed = now.duration_since(self.updated_at).as_nanos();
        // Anything past ~292 years of idleness saturates; the cap applies anyway.
        let elapsed = i128::try_from(elapsed).unwrap_or(i128::MAX / 2);
        let credit = i128::from(self.rate_bps).saturating_mul(elapsed);
        self.level = self.level.saturating_add(credit).min(self.cap());
        self.updated_at = now;
    }

    /// Changes the refill rate; the cap follows (`rate × burst`).
    pub(crate) fn set_rate(&mut self, rate_bps: u64) {
        self.rate_bps = rate_bps;
        self.level = self.level.min(self.cap());
    }

    /// The latest `now` the bucket was advanced to.
    pub(crate) fn updated_at(&self) -> Instant {
        self.updated_at
    }

    pub(crate) fn rate_bps(&self) -> u64 {
        self.rate_bps
    }

    /// A packet may leave while the level is not negative; it may then push the
    /// level below zero by its own size, which keeps large packets from starving.
    /// A zero rate allows nothing (that is how a zero padding target stops padding).
    pub(crate) fn allows(&self) -> bool {
        self.rate_bps > 0 && self.level >= 0
    }

    /// Debits one packet.
    pub(crate) fn charge(&mut self, size_bytes: usize) {
        let bits = (size_bytes as i128).saturating_mul(8 * NANOS_PER_SEC);
        self.level = self.level.saturating_sub(bits);
    }

    /// When the level reaches zero again, or `None` when the rate is zero
    /// (nothing will ever be allowed).
    pub(crate) fn ready_at(&self) -> Option<Instant> {
        if self.rate_bps == 0 {
            return None;
        }
        if self.level >= 0 {
            return Some(self.updated_at);
        }
        let deficit = -self.level;
        let rate = i128::from(self.rate_bps);
        // Round up so that at the returned instant the refill covers the debt.
        let nanos = (deficit + rate - 1) / rate;
        let nanos = u64::try_from(nanos).unwrap_or(u64::MAX);
        self.updated_at.checked_add(Duration::from_nanos(nanos))
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
    fn huge_rate_and_long_idle_do_not_overflow() {
        let t = t0();
        let mut b = Budget::new(u64::MAX, Duration::from_secs(3600), t);
        b.charge(usize::MAX);
        b.refill(t + Duration::from_secs(1_000_000_000));
        assert!(b.allows());
        assert_eq!(b.ready_at(), Some(t + Duration::from_secs(1_000_000_000)));
    }

    #[test]
    fn time_going_backwards_is_ignored() {
        let t = t0() + Duration::from_secs(1);
        let mut b = Budget::new(8_000, Duration::ZERO, t);
        b.charge(1); // 8 bits of debt = 1 ms at 8 kbit/s
        b.refill(t - Duration::from_millis(500));
        assert_eq!(b.ready_at(), Some(t + Duration::from_millis(1)));
        b.refill(t + Duration::from_millis(1));
        assert!(b.allows());
    }
}
