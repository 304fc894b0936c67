//! Pacer configuration and the priority classes it serves.

use std::time::Duration;

/// Lowest accepted pacing rate: below this the queues would practically
/// never drain, and a zero rate would leave `poll_timeout` undefined.
pub const MIN_RATE_BPS: u64 = 10_000;

/// Priority class of a queued packet; lower discriminant is served first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PacketClass {
    /// Audio: small and latency-critical; may bypass the budget.
    Audio = 0,
    /// Retransmissions (RTX, RFC 4588): repair beats fresh video.
    Retransmission = 1,
    /// Fresh video media.
    Video = 2,
    /// Padding / probing, only sent when nothing else waits.
    Padding = 3,
}

impl PacketClass {
    /// All classes in service order.
    pub const ALL: [PacketClass; 4] = [
        PacketClass::Audio,
        PacketClass::Retransmission,
        PacketClass::Video,
        PacketClass::Padding,
    ];
}

/// Construction parameters of a [`Pacer`](super::Pacer).
#[derive(Debug, Clone, Copy)]
pub struct PacerConfig {
    /// Queue capacity per class, indexed by `PacketClass as usize`.
    pub capacity_per_class: [usize; 4],
    /// Largest budget that may accumulate, as time at the current rate.
    pub burst: Duration,
    /// Pacing rate until the first [`Pacer::set_rate`](super::Pacer::set_rate).
    pub initial_rate_bps: u64,
    /// Whether the [`PacketClass::Padding`] class accepts items at all.
    pub padding: bool,
    /// Non-audio items that waited longer than this are dropped (and counted)
    /// instead of being sent late; `Duration::MAX` disables expiry.
    pub max_queue_delay: Duration,
    /// Audio leaves as soon as it is polled, still debiting the budget so
    /// other classes slow down to compensate.
    pub audio_bypasses_budget: bool,
}

impl Default for PacerConfig {
    fn default() -> Self {
        Self {
            capacity_per_class: [256, 1024, 2048, 64],
            burst: Duration::from_millis(40),
            initial_rate_bps: 1_000_000,
            padding: false,
            max_queue_delay: Duration::from_secs(2),
            audio_bypasses_budget: true,
        }
    }
}
