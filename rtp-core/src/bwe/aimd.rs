//! Delay-based AIMD rate controller (draft-ietf-rmcat-gcc-02 §5.5): the
//! over-use signal drives a Hold / Increase / Decrease state machine.

use std::time::{Duration, Instant};

use super::trendline::BandwidthUsage;

/// Decrease target relative to the measured (acked) rate.
const BETA: f64 = 0.85;
/// Multiplicative increase per second far from the last congestion point.
const MULT_INCREASE_PER_S: f64 = 1.08;
/// Additive increase near the last congestion point: about one 1200-byte
/// packet per 200 ms response time.
const ADDITIVE_BPS_PER_S: f64 = 1200.0 * 8.0 / 0.2;
/// Decreases closer together than this would react to the same queue twice.
const MIN_DECREASE_INTERVAL: Duration = Duration::from_millis(200);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Hold,
    Increase,
    Decrease,
}

/// The delay-based rate.
#[derive(Debug)]
pub(crate) struct Aimd {
    rate_bps: f64,
    state: State,
    last_update: Option<Instant>,
    last_decrease: Option<Instant>,
    /// Acked rate at the last over-use: where the bottleneck likely is.
    congestion_bps: Option<f64>,
}

impl Aimd {
    pub fn new(start_bps: f64) -> Self {
        Self {
            rate_bps: start_bps,
            state: State::Hold,
            last_update: None,
            last_decrease: None,
            congestion_bps: None,
        }
    }

    pub fn rate_bps(&self) -> f64 {
        self.rate_bps
    }

    pub fn reset(&mut self, rate_bps: f64) {
        self.rate_bps = rate_bps;
        self.congestion_bps = None;
    }

    /// One controller step with the detector's signal, the acked rate (the increase stops at
    /// 1.5 × it) and the rate a decrease starts from (GCC: the acked rate; see the estimator).
    pub fn update(
        &mut self,
        now: Instant,
        usage: BandwidthUsage,
        acked_bps: Option<f64>,
        decrease_from: Option<f64>,
    ) {
        let dt = self.last_update.map_or(0.0, |t| {
            now.saturating_duration_since(t).as_secs_f64().min(1.0)
        });
        self.last_update = Some(now);
        self.state = match (usage, self.state) {
            (BandwidthUsage::Overusing, _) => State::Decrease,
            (BandwidthUsage::Underusing, _) => State::Hold,
            (BandwidthUsage::Normal, State::Hold) => State::Increase,
            (BandwidthUsage::Normal, State::Decrease) => State::Hold,
            (BandwidthUsage::Normal, s) => s,
        };
        match self.state {
            State::Hold => {}
            // Application-limited (an SFU sends what publishers send): the estimate does not
            // climb past what the path was seen to carry (libwebrtc's 1.5 × acked + 10 kbit/s);
            // probes, not media, raise it further.
            State::Increase if acked_bps.is_some_and(|a| self.rate_bps > 1.5 * a + 10_000.0) => {}
            State::Increase => {
                let near = self
                    .congestion_bps
                    .is_some_and(|c| self.rate_bps < c * 1.25);
                if near {
                    self.rate_bps += ADDITIVE_BPS_PER_S * dt;
                } else {
                    // Past the old congestion point: it no longer applies.
                    self.congestion_bps = None;
                    self.rate_bps *= MULT_INCREASE_PER_S.powf(dt);
                }
            }
            State::Decrease => {
                let recent = self
                    .last_decrease
                    .is_some_and(|t| now.saturating_duration_since(t) < MIN_DECREASE_INTERVAL);
                if !recent {
                    let target = match decrease_from {
                        Some(a) => BETA * a,
                        None => BETA * self.rate_bps,
                    };
                    self.rate_bps = self.rate_bps.min(target);
                    self.congestion_bps = decrease_from.or(Some(self.rate_bps));
                    self.last_decrease = Some(now);
                }
                self.state = State::Hold;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(clippy::disallowed_methods)] // a test needs some base instant
    fn decrease_to_acked_then_grow() {
        let t = Instant::now();
        let mut a = Aimd::new(1_000_000.0);
        a.update(
            t,
            BandwidthUsage::Overusing,
            Some(500_000.0),
            Some(500_000.0),
        );
        assert!((a.rate_bps() - 425_000.0).abs() < 1.0);
        for i in 1..=100 {
            a.update(
                t + Duration::from_millis(i * 100),
                BandwidthUsage::Normal,
                None,
                None,
            );
        }
        // Additive near 500k, then multiplicative beyond 625k.
        assert!(a.rate_bps() > 700_000.0, "{}", a.rate_bps());
    }
}
