//! Keyframe-request throttling per published track: many subscribers asking
//! for a keyframe collapse into at most one PLI (RFC 4585 §6.3.1) or FIR
//! (RFC 5104 §4.3.1) per layer per interval, so a publisher is never flooded.
//!
//! The interval is `max(min_interval, rtt × rtt_factor)`: there is no point
//! asking again before the previous request could have been answered.

use std::time::{Duration, Instant};

/// Settings of a [`PliThrottle`].
#[derive(Debug, Clone, Copy)]
pub struct PliThrottleConfig {
    /// Number of layers (simulcast streams) of the track; fixed at construction.
    pub layers: usize,
    /// Floor on the interval between two requests for one layer.
    pub min_interval: Duration,
    /// The interval is at least this many RTTs (once an RTT is known).
    pub rtt_factor: u32,
}

impl Default for PliThrottleConfig {
    fn default() -> Self {
        Self {
            layers: 3,
            min_interval: Duration::from_millis(500),
            rtt_factor: 2,
        }
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct LayerState {
    last_sent: Option<Instant>,
    /// A request went out and no keyframe has arrived since.
    pending: bool,
    sent: u64,
    suppressed: u64,
    fir_seq: u8,
}

/// Per published track: decides which keyframe requests reach the publisher.
#[derive(Debug)]
pub struct PliThrottle {
    cfg: PliThrottleConfig,
    rtt: Option<Duration>,
    layers: Vec<LayerState>,
}

/// Another name for [`PliThrottle`], for callers that think of it as the keyframe requester.
pub type KeyframeRequester = PliThrottle;

impl PliThrottle {
    /// A throttle with all storage allocated for `cfg.layers` layers.
    pub fn new(cfg: PliThrottleConfig) -> Self {
        Self {
            cfg,
            rtt: None,
            layers: vec![LayerState::default(); cfg.layers],
        }
    }

    /// Update the round-trip time estimate towards the publisher.
    pub fn set_rtt(&mut self, rtt: Duration) {
        self.rtt = Some(rtt);
    }

    /// The current minimum spacing between two requests for one layer.
    pub fn interval(&self) -> Duration {
        let by_rtt = self
            .rtt
            .map_or(Duration::ZERO, |r| r.saturating_mul(self.cfg.rtt_factor));
        self.cfg.min_interval.max(by_rtt)
    }

    /// A subscriber wants a keyframe of `layer`. Returns true when a PLI should be
    /// sent upstream now; false when throttled (counted) or `layer` is out of range.
    pub fn request(&mut self, now: Instant, layer: usize) -> bool {
        let interval = self.interval();
        let Some(st) = self.layers.get_mut(layer) else {
            return false;
        };
        let due = st
            .last_sent
            .is_none_or(|t| now.saturating_duration_since(t) >= interval);
        if due {
            st.last_sent = Some(now);
            st.pending = true;
            st.sent += 1;
        } else {
            st.suppressed += 1;
        }
        due
    }

    /// Like [`request`](Self::request) but for FIR: returns the FIR command
    /// sequence number to send. Per RFC 5104 §4.3.1 the number increases by one
    /// for each new request and stays the same when repeating a request that
    /// has not been answered by a keyframe yet.
    pub fn request_fir(&mut self, now: Instant, layer: usize) -> Option<u8> {
        let repeat = self.layers.get(layer)?.pending;
        if !self.request(now, layer) {
            return None;
        }
        let st = &mut self.layers[layer];
        if !repeat {
            st.fir_seq = st.fir_seq.wrapping_add(1);
        }
        Some(st.fir_seq)
    }

    /// A keyframe of `layer` arrived from the publisher: the outstanding request
    /// is answered. The interval since the last request still applies.
    pub fn on_keyframe(&mut self, _now: Instant, layer: usize) {
        if let Some(st) = self.layers.get_mut(layer) {
            st.pending = false;
        }
    }

    /// A request for `layer` is outstanding (sent, no keyframe since).
    pub fn pending(&self, layer: usize) -> bool {
        self.layers.get(layer).is_some_and(|s| s.pending)
    }

    /// Requests let through for `layer`.
    pub fn sent(&self, layer: usize) -> u64 {
        self.layers.get(layer).map_or(0, |s| s.sent)
    }

    /// Requests suppressed for `layer`.
    pub fn suppressed(&self, layer: usize) -> u64 {
        self.layers.get(layer).map_or(0, |s| s.suppressed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[allow(clippy::disallowed_methods)] // tests need some base instant
    fn t0() -> Instant {
        Instant::now()
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn one_request_per_interval() {
        let t = t0();
        let mut th = PliThrottle::new(PliThrottleConfig::default());
        assert!(th.request(t, 0));
        assert!(!th.request(t + ms(10), 0));
        assert!(th.request(t + ms(10), 1), "layers are independent");
        assert!(!th.request(t + ms(499), 0));
        assert!(th.request(t + ms(500), 0));
        assert_eq!((th.sent(0), th.suppressed(0)), (2, 2));
        assert!(!th.request(t, 7), "unknown layer");
    }

    #[test]
    fn rtt_stretches_the_interval() {
        let t = t0();
        let mut th = PliThrottle::new(PliThrottleConfig::default());
        th.set_rtt(ms(400));
        assert_eq!(th.interval(), ms(800));
        assert!(th.request(t, 0));
        assert!(!th.request(t + ms(600), 0));
        assert!(th.request(t + ms(800), 0));
    }

    #[test]
    fn keyframe_clears_pending_and_fir_sequence() {
        let t = t0();
        let mut th = PliThrottle::new(PliThrottleConfig::default());
        assert_eq!(th.request_fir(t, 0), Some(1));
        assert!(th.pending(0));
        assert_eq!(th.request_fir(t + ms(100), 0), None);
        // Unanswered: the repetition keeps the same sequence number.
        assert_eq!(th.request_fir(t + ms(600), 0), Some(1));
        th.on_keyframe(t + ms(650), 0);
        assert!(!th.pending(0));
        assert_eq!(th.request_fir(t + ms(1200), 0), Some(2));
    }
}
