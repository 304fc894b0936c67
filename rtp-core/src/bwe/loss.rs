//! Loss-based rate control (draft-ietf-rmcat-gcc-02 §6): back off in
//! proportion to heavy loss, hold under moderate loss, grow when loss is low.

use std::time::Instant;

/// Loss above this fraction triggers a decrease.
const HIGH_LOSS: f64 = 0.10;
/// Loss below this fraction allows an increase.
const LOW_LOSS: f64 = 0.02;

/// The loss-based controller's state.
#[derive(Debug)]
pub(crate) struct LossController {
    rate_bps: f64,
    /// Growth factor per second under low loss.
    increase_per_s: f64,
    last_update: Option<Instant>,
}

impl LossController {
    pub fn new(start_bps: f64, increase_per_s: f64) -> Self {
        Self {
            rate_bps: start_bps,
            increase_per_s,
            last_update: None,
        }
    }

    pub fn rate_bps(&self) -> f64 {
        self.rate_bps
    }

    pub fn reset(&mut self, rate_bps: f64) {
        self.rate_bps = rate_bps;
    }

    /// Applies one loss observation. `current_bps` is the estimate actually in
    /// use: a decrease starts from it, so a loss rate that drifted above the
    /// delay-based rate still bites.
    pub fn on_loss(&mut self, now: Instant, fraction: f64, current_bps: f64) {
        let dt = self.last_update.map_or(0.0, |t| {
            now.saturating_duration_since(t).as_secs_f64().min(1.0)
        });
        self.last_update = Some(now);
        if fraction > HIGH_LOSS {
            self.rate_bps = self.rate_bps.min(current_bps) * (1.0 - 0.5 * fraction);
        } else if fraction < LOW_LOSS {
            self.rate_bps *= self.increase_per_s.powf(dt);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    #[allow(clippy::disallowed_methods)] // a test needs some base instant
    fn decrease_hold_increase() {
        let t = Instant::now();
        let mut l = LossController::new(1_000_000.0, 1.05);
        l.on_loss(t, 0.2, 800_000.0);
        assert!((l.rate_bps() - 720_000.0).abs() < 1.0);
        l.on_loss(t + Duration::from_secs(1), 0.05, 800_000.0);
        assert!((l.rate_bps() - 720_000.0).abs() < 1.0);
        l.on_loss(t + Duration::from_secs(2), 0.0, 800_000.0);
        assert!((l.rate_bps() - 756_000.0).abs() < 1.0);
    }
}
