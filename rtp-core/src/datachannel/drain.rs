//! How fast a channel's send buffer empties: the bytes the association released (acknowledged,
//! or abandoned on a partially reliable channel) per second, measured between our own writes.
//!
//! `bufferedAmount` counts bytes queued *and* bytes in flight, so a fixed cap on it drops
//! messages to a reader that keeps up as soon as a round trip holds more than the cap (a
//! 400 kB/s lossy stream over a 100 ms path has ~40 kB in flight). With the drain rate, a relay
//! can ask instead how long the buffer takes to empty ([`Backlog::drain_time`]).

use std::time::{Duration, Instant};

/// The rate is re-estimated once this much time has passed between observations.
const PERIOD: Duration = Duration::from_millis(100);

/// A channel's send buffer and how fast it empties (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backlog {
    /// Bytes queued or unacknowledged (`bufferedAmount`).
    pub buffered: usize,
    /// Bytes per second released lately (smoothed; it decays to 0 while nothing is released:
    /// a reader that stopped). `None` until a first estimate, one period after the first
    /// observation.
    pub drain_bytes_per_s: Option<u64>,
}

impl Backlog {
    /// How long `buffered + extra` bytes take to leave at the drain rate; `None` while the rate
    /// is unknown or 0 (nothing leaves).
    pub fn drain_time(&self, extra: usize) -> Option<Duration> {
        let rate = self.drain_bytes_per_s.filter(|r| *r > 0)?;
        let bytes = (self.buffered + extra) as f64;
        Some(Duration::from_secs_f64(bytes / rate as f64))
    }
}

/// The meter of one channel.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Drain {
    /// What `buffered` would be now had nothing left since the last observation: the buffered
    /// bytes then plus our writes since.
    after_last: usize,
    /// Released since `since`.
    released: usize,
    since: Option<Instant>,
    rate: f64,
    /// A first period has passed: `rate` is a measurement.
    measured: bool,
}

impl Drain {
    /// Takes in the channel's `buffered` at `now`: what left since the last call is what was
    /// there after it minus what is there now.
    pub(super) fn observe(&mut self, now: Instant, buffered: usize) -> Option<u64> {
        self.released += self.after_last.saturating_sub(buffered);
        self.after_last = buffered;
        let since = *self.since.get_or_insert(now);
        let dt = now.saturating_duration_since(since);
        if dt >= PERIOD {
            let r = self.released as f64 / dt.as_secs_f64();
            self.rate = if self.measured {
                0.5 * self.rate + 0.5 * r
            } else {
                r
            };
            self.measured = true;
            // Below one byte a second it is a reader that stopped.
            if self.rate < 1.0 {
                self.rate = 0.0;
            }
            self.released = 0;
            self.since = Some(now);
        }
        self.measured.then_some(self.rate as u64)
    }

    /// A write of ours added `bytes` to the channel's buffer (what sctp-proto counts: the
    /// payload, one byte for an empty message).
    pub(super) fn wrote(&mut self, bytes: usize) {
        self.after_last += bytes;
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
    fn a_steady_drain_is_measured_and_a_stopped_one_decays_to_zero() {
        let t = t0();
        let mut d = Drain::default();
        // 1,000 bytes written and 1,000 released every 10 ms, 20 kB always buffered.
        assert_eq!(d.observe(t, 20_000), None, "no estimate before a period");
        d.wrote(1_000);
        let mut rate = None;
        for i in 1..100u64 {
            rate = d.observe(t + Duration::from_millis(i * 10), 20_000);
            d.wrote(1_000);
        }
        let rate = rate.expect("measured");
        assert!((95_000..=105_000).contains(&rate), "{rate} B/s");
        let b = Backlog {
            buffered: 20_000,
            drain_bytes_per_s: Some(rate),
        };
        let wait = b.drain_time(1_000).unwrap();
        assert!(wait > Duration::from_millis(200) && wait < Duration::from_millis(230));
        // The reader stops: nothing leaves, the rate halves every period down to 0.
        let mut zero_after = None;
        for i in 100..400u64 {
            let r = d.observe(t + Duration::from_millis(i * 10), 21_000);
            if r == Some(0) {
                zero_after = Some(i - 100);
                break;
            }
        }
        let ms = zero_after.expect("the rate reaches 0") * 10;
        assert!(ms <= 2_000, "{ms} ms");
        assert_eq!(
            Backlog {
                buffered: 21_000,
                drain_bytes_per_s: Some(0)
            }
            .drain_time(0),
            None
        );
    }
}
