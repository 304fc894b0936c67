//! Token buckets for what a peer may make a session do: NACKed sequence numbers a subscriber
//! may ask about (D121) and media packets a publisher's layer may send to be forwarded (D123).
//!
//! One RTCP datagram can name about 5,000 sequence numbers (entries of 17), each a lookup and,
//! while still known, a retransmission attempt: a subscriber sending NACKs back to back made
//! its worker do that work for every one. A publisher's packet is copied to every subscriber of
//! its track: one sending audio as fast as it can made its subscribers' worker encrypt and send
//! tens of thousands of copies a second (`dataplane/tests/hostile_peers.rs`). A budget refills
//! at its rate, up to one second's worth, far above what a well-behaved peer needs, and bounds
//! what a flood costs to that.

use std::time::Instant;

/// One unit in the level's unit.
const ONE: u64 = 1_000_000_000;

/// A token bucket of `rate` units a second holding at most one second's worth; time is passed
/// in.
#[derive(Debug, Clone)]
pub struct Budget {
    /// Units a second, and the most the bucket holds.
    rate: u32,
    /// Units left × 10⁹: refilling by rate × elapsed nanoseconds is exact, so fractions of a unit
    /// carry over by themselves.
    level: u64,
    /// The latest `now` seen.
    at: Instant,
}

impl Budget {
    /// A full budget of `rate` units a second.
    pub fn new(rate: u32, now: Instant) -> Self {
        Self {
            rate,
            level: Self::cap(rate),
            at: now,
        }
    }

    /// One second's worth.
    fn cap(rate: u32) -> u64 {
        u64::from(rate) * ONE
    }

    /// Takes one unit at `now`; false when the budget is spent.
    pub fn take(&mut self, now: Instant) -> bool {
        let elapsed =
            u64::try_from(now.saturating_duration_since(self.at).as_nanos()).unwrap_or(u64::MAX);
        self.at = self.at.max(now);
        self.level = self
            .level
            .saturating_add(elapsed.saturating_mul(u64::from(self.rate)))
            .min(Self::cap(self.rate));
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

    const RATE: u32 = 4_000;

    #[test]
    #[allow(clippy::disallowed_methods)] // a test needs some base instant
    fn the_budget_refills_at_its_rate_and_never_past_a_second() {
        let t = Instant::now();
        let mut b = Budget::new(RATE, t);
        let taken = (0..RATE + 10).filter(|_| b.take(t)).count();
        assert_eq!(taken, RATE as usize, "a full budget is one second's worth");
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
        assert_eq!(got, RATE / 4, "fractions carry over");
        // A long pause fills it to one second's worth, not more.
        let later = now + Duration::from_secs(10);
        let taken = (0..2 * RATE).filter(|_| b.take(later)).count();
        assert_eq!(taken, RATE as usize);
        // An instant earlier than one seen adds nothing.
        assert!(!b.take(now));
    }
}
