//! Per-stream RTP statistics for RTCP reporting (RFC 3550 §6.4).
//!
//! - `rx`: [`RxStreamStats`] for a received SSRC: packet/byte counts, the
//!   cumulative and interval loss of RFC 3550 Appendix A.3, interarrival jitter
//!   of Appendix A.8, and LSR/DLSR bookkeeping; yields [`ReportBlock`](crate::packet::rtcp::ReportBlock)
//!   for a report block (§6.4.1).
//! - `tx`: [`TxStreamStats`] for a sent SSRC: counts and the last RTP timestamp
//!   for sender-report values ([`SenderInfo`](crate::packet::rtcp::SenderInfo), §6.4.1), and round-trip time from
//!   the LSR/DLSR echoed in receiver reports (§6.4.1, "round-trip propagation delay").
//!
//! Pure counters: no allocation, no clock reads; callers pass `now`.

mod rx;
mod tx;

pub use rx::RxStreamStats;
pub use tx::TxStreamStats;

use std::time::Duration;

/// A duration in units of 1/65536 s (the DLSR unit), saturating at `u32::MAX`.
fn to_ntp_short(d: Duration) -> u32 {
    let units = d.as_nanos().saturating_mul(65_536) / 1_000_000_000;
    u32::try_from(units).unwrap_or(u32::MAX)
}

/// A value in units of 1/65536 s converted back to a `Duration`.
fn from_ntp_short(units: u32) -> Duration {
    Duration::from_nanos(u64::from(units) * 1_000_000_000 / 65_536)
}

/// `elapsed × clock_rate` in RTP ticks, truncated to 32 bits as RTP
/// timestamps wrap anyway.
fn ticks(elapsed: Duration, clock_rate: u32) -> u32 {
    (elapsed.as_nanos().saturating_mul(u128::from(clock_rate)) / 1_000_000_000) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ntp_short_round_trip() {
        assert_eq!(to_ntp_short(Duration::from_millis(1500)), 98_304);
        assert_eq!(from_ntp_short(98_304), Duration::from_millis(1500));
        assert_eq!(to_ntp_short(Duration::from_secs(1 << 20)), u32::MAX);
        assert_eq!(ticks(Duration::from_millis(20), 90_000), 1800);
        assert_eq!(
            ticks(Duration::from_secs(1 << 20), 90_000),
            (94_371_840_000u64) as u32
        );
    }
}
