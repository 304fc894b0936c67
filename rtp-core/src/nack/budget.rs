//! A session's budget of NACKed sequence numbers.
//!
//! One RTCP datagram can name about 5,000 sequence numbers (entries of 17), each a lookup and,
//! while still known, a retransmission attempt: a subscriber sending NACKs back to back made
//! its worker do that work for every one (`dataplane/tests/hostile_subscribers.rs`). The budget
//! refills at [`NACK_SEQS_PER_S`], up to one second's worth: far above what a lossy subscriber
//! asks for (20 % loss of a 20 Mbit/s stream, each number asked twice, is under 1,000 a
//! second), and it bounds what a flood costs to that.

use std::time::Instant;

/// Sequence numbers a session may NACK per second (and at once, from a full budget).
pub const NACK_SEQS_PER_S: u32 = 4_000;

/// One sequence number in the level's unit.
const ONE: u64 = 1_000_000_000;

/// A token bucket of NACKed sequence numbers; time is passed in.
#[derive(Debug, Clone)]
pub struct NackBudget {
    /// Sequence numbers left × 10⁹: refilling by rate × elapsed nanoseconds is exact, so
    /// fractions of a number carry over by themselves.
    level: u64,
    /// The latest `now` seen.
    at: Instant,
}

impl NackBudget {
    /// A full budget.
    pub fn new(now: Instant) -> Self {
        Self {
            level: Self::cap(),
            at: now,
        }
    }

    /// One second's worth.
    fn cap() -> u64 {
        u64::from(NACK_SEQS_PER_S) * ONE
    }

    /// Takes one sequence number's worth at `now`; false when the budget is spent.
    pub fn take(&mut self, now: Instant) -> bool {
        let elapsed =
            u64::try_from(now.saturating_duration_since(self.at).as_nanos()).unwrap_or(u64::MAX);
        self.at = self.at.max(now);
        self.level = self
            .level
            .saturating_add(elapsed.saturating_mul(u64::from(NACK_SEQS_PER_S)))
            .min(Self::cap());
        if self.level < ONE {
            return false;
        }
        self.level -= ONE;
        true
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    #[allow(clippy::disallowed_methods)] // a test needs some base instant
    fn the_budget_refills_at_its_rate_and_never_past_a_second() {
        let t = Instant::now();
        let mut b = NackBudget::new(t);
        let taken = (0..NACK_SEQS_PER_S + 10).filter(|_| b.take(t)).count();
        assert_eq!(
            taken, NACK_SEQS_PER_S as usize,
            "a full budget is one second's worth"
        );
        assert!(!b.take(t));
        // A quarter of a second, in steps that each earn a fraction of a token.
        let step = Duration::from_micros(100); // 0.4 of a token
        let mut now = t;
        let mut got = 0;
        for _ in 0..2_500 {
            now += step;
            while b.take(now) {
                got += 1;
            }
        }
        assert_eq!(got, NACK_SEQS_PER_S / 4, "fractions carry over");
        // A long pause fills it to one second's worth, not more.
        let later = now + Duration::from_secs(10);
        let taken = (0..2 * NACK_SEQS_PER_S).filter(|_| b.take(later)).count();
        assert_eq!(taken, NACK_SEQS_PER_S as usize);
    }
}
