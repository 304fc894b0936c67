//! Delay-gradient over-use detector (draft-ietf-rmcat-gcc-02 §5.3–§5.4, with
//! the trendline variant of the arrival-time filter): accumulate the
//! inter-group delay variation, smooth it, fit a line over a sliding window,
//! and compare the scaled slope against an adaptive threshold.

/// What the detector concludes about the bottleneck queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BandwidthUsage {
    /// Queue stable.
    Normal,
    /// Queue growing: sending faster than the path drains.
    Overusing,
    /// Queue draining.
    Underusing,
}

/// Tuning of the [`Trendline`] detector.
#[derive(Debug, Clone, Copy)]
pub struct TrendlineConfig {
    /// Number of (time, smoothed delay) points in the regression window.
    pub window: usize,
    /// Exponential smoothing of the accumulated delay (weight of the past).
    pub smoothing: f64,
    /// Scale applied to the slope before the threshold comparison.
    pub gain: f64,
}

impl Default for TrendlineConfig {
    fn default() -> Self {
        Self {
            window: 20,
            smoothing: 0.9,
            gain: 4.0,
        }
    }
}

const INITIAL_THRESHOLD_MS: f64 = 12.5;
const K_UP: f64 = 0.0087;
const K_DOWN: f64 = 0.039;
const OVERUSE_TIME_MS: f64 = 10.0;
/// Cap on the number of deltas the slope is multiplied by (GCC uses 60).
const MAX_DELTAS: f64 = 60.0;

/// Trendline over-use detector. Storage is fixed at construction.
#[derive(Debug)]
pub struct Trendline {
    cfg: TrendlineConfig,
    /// Ring of (arrival ms since first, smoothed accumulated delay ms).
    points: Vec<(f64, f64)>,
    next: usize,
    filled: usize,
    first_arrival_ms: Option<f64>,
    last_arrival_ms: f64,
    accumulated_ms: f64,
    smoothed_ms: f64,
    num_deltas: f64,
    threshold_ms: f64,
    prev_trend: f64,
    overuse_ms: f64,
    overuse_count: u32,
    state: BandwidthUsage,
}

impl Trendline {
    /// A detector with a window of `cfg.window` points (at least 2).
    pub fn new(cfg: TrendlineConfig) -> Self {
        let window = cfg.window.max(2);
        Self {
            cfg: TrendlineConfig { window, ..cfg },
            points: vec![(0.0, 0.0); window],
            next: 0,
            filled: 0,
            first_arrival_ms: None,
            last_arrival_ms: 0.0,
            accumulated_ms: 0.0,
            smoothed_ms: 0.0,
            num_deltas: 0.0,
            threshold_ms: INITIAL_THRESHOLD_MS,
            prev_trend: 0.0,
            overuse_ms: 0.0,
            overuse_count: 0,
            state: BandwidthUsage::Normal,
        }
    }

    /// The current conclusion.
    pub fn state(&self) -> BandwidthUsage {
        self.state
    }

    /// The current adaptive threshold in ms.
    pub fn threshold_ms(&self) -> f64 {
        self.threshold_ms
    }

    /// Feeds one inter-group delay variation `delay_var_ms` (arrival delta
    /// minus send delta) observed at group arrival time `arrival_ms`.
    pub fn update(&mut self, delay_var_ms: f64, arrival_ms: f64) -> BandwidthUsage {
        let first = *self.first_arrival_ms.get_or_insert(arrival_ms);
        let dt_ms = (arrival_ms - self.last_arrival_ms).clamp(0.0, 1000.0);
        self.last_arrival_ms = arrival_ms;
        self.num_deltas = (self.num_deltas + 1.0).min(MAX_DELTAS);
        self.accumulated_ms += delay_var_ms;
        let a = self.cfg.smoothing;
        self.smoothed_ms = a * self.smoothed_ms + (1.0 - a) * self.accumulated_ms;

        self.points[self.next] = (arrival_ms - first, self.smoothed_ms);
        self.next = (self.next + 1) % self.points.len();
        self.filled = (self.filled + 1).min(self.points.len());

        let mut trend = self.prev_trend;
        if self.filled == self.points.len() {
            if let Some(s) = self.slope() {
                trend = s;
            }
        }
        self.detect(trend, dt_ms);
        self.state
    }

    /// Least-squares slope of the window; `None` when all x are equal.
    fn slope(&self) -> Option<f64> {
        let n = self.filled as f64;
        let (sx, sy) = self.points[..self.filled]
            .iter()
            .fold((0.0, 0.0), |(sx, sy), (x, y)| (sx + x, sy + y));
        let (mx, my) = (sx / n, sy / n);
        let (mut num, mut den) = (0.0, 0.0);
        for (x, y) in &self.points[..self.filled] {
            num += (x - mx) * (y - my);
            den += (x - mx) * (x - mx);
        }
        (den > 0.0).then(|| num / den)
    }

    fn detect(&mut self, trend: f64, dt_ms: f64) {
        let modified = self.num_deltas * trend * self.cfg.gain;
        if modified > self.threshold_ms {
            self.overuse_ms += dt_ms;
            self.overuse_count += 1;
            // Over-use must persist a little and not be receding already.
            if self.overuse_ms > OVERUSE_TIME_MS
                && self.overuse_count > 1
                && trend >= self.prev_trend
            {
                self.overuse_ms = 0.0;
                self.overuse_count = 0;
                self.state = BandwidthUsage::Overusing;
            }
        } else if modified < -self.threshold_ms {
            self.overuse_ms = 0.0;
            self.overuse_count = 0;
            self.state = BandwidthUsage::Underusing;
        } else {
            self.overuse_ms = 0.0;
            self.overuse_count = 0;
            self.state = BandwidthUsage::Normal;
        }
        self.prev_trend = trend;
        self.adapt_threshold(modified, dt_ms);
    }

    /// GCC §5.4: the threshold follows |m| slowly upwards and faster
    /// downwards, ignoring spikes far above it (e.g. route changes).
    fn adapt_threshold(&mut self, modified: f64, dt_ms: f64) {
        let m = modified.abs();
        if m > self.threshold_ms + 15.0 {
            return;
        }
        let k = if m < self.threshold_ms { K_DOWN } else { K_UP };
        self.threshold_ms += k * (m - self.threshold_ms) * dt_ms.min(100.0);
        self.threshold_ms = self.threshold_ms.clamp(6.0, 600.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(delay_var_ms: impl Fn(usize) -> f64, groups: usize) -> (usize, usize) {
        let mut t = Trendline::new(TrendlineConfig::default());
        let (mut over, mut under) = (0, 0);
        for i in 0..groups {
            match t.update(delay_var_ms(i), i as f64 * 5.0) {
                BandwidthUsage::Overusing => over += 1,
                BandwidthUsage::Underusing => under += 1,
                BandwidthUsage::Normal => {}
            }
        }
        (over, under)
    }

    #[test]
    fn flat_delay_is_normal() {
        assert_eq!(run(|_| 0.0, 200), (0, 0));
    }

    #[test]
    fn jitter_without_trend_is_normal() {
        let (over, _) = run(|i| if i % 2 == 0 { 1.0 } else { -1.0 }, 200);
        assert_eq!(over, 0);
    }

    #[test]
    fn growing_delay_is_overuse() {
        // Each 5 ms group arrives 1 ms later than sent: queue grows 200 ms/s.
        let (over, _) = run(|i| if i < 20 { 0.0 } else { 1.0 }, 80);
        assert!(over > 0);
    }

    #[test]
    fn draining_queue_is_underuse() {
        let (over, under) = run(|i| if i < 20 { 0.0 } else { -1.0 }, 80);
        assert_eq!(over, 0);
        assert!(under > 0);
    }
}
