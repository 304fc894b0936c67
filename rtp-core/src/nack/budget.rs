//! A session's budget of NACKed sequence numbers.
//!
//! One RTCP datagram can name about 5,000 sequence numbers (entries of 17), each a lookup and,
//! while still known, a retransmission attempt: a subscriber sending NACKs back to back made
//! its worker do that work for every one (`dataplane/tests/hostile_subscribers.rs`). The budget
//! refills at [`NACK_SEQS_PER_S`], up to one second's worth: far above what a lossy subscriber
//! asks for (20 % loss of a 20 Mbit/s stream, each number asked twice, is under 1,000 a
//! second), and it bounds what a flood costs to that.

use std::time::{Duration, Instant};

/// Sequence numbers a session may NACK per second (and at once, from a full budget).
pub const NACK_SEQS_PER_S: u32 = 4_000;

/// A token bucket of NACKed sequence numbers; time is passed in.
#[derive(Debug, Clone)]
pub struct NackBudget {
    tokens: u32,
    /// The instant the tokens were last counted up to.
    at: Instant,
}

impl NackBudget {
    /// A full budget.
    pub fn new(now: Instant) -> Self {
        Self {
            tokens: NACK_SEQS_PER_S,
            at: now,
        }
    }

    /// Takes one sequence number's worth at `now`; false when the budget is spent.
    pub fn take(&mut self, now: Instant) -> bool {
        self.refill(now);
        if self.tokens == 0 {
            return false;
        }
        self.tokens -= 1;
        true
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.at).as_nanos();
        let rate = u128::from(NACK_SEQS_PER_S);
        let add = elapsed.saturating_mul(rate) / 1_000_000_000;
        if add == 0 {
            return;
        }
        let room = u128::from(NACK_SEQS_PER_S - self.tokens);
        if add >= room {
            self.tokens = NACK_SEQS_PER_S;
            self.at = now;
        } else {
            self.tokens += add as u32;
            // Only the time the whole tokens took: the fraction carries over.
            self.at += Duration::from_nanos((add * 1_000_000_000 / rate) as u64);
        }
    }
}

#[cfg(test)]
mod tests {
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
