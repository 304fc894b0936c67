//! Time helpers shared by the state machines. Nothing here reads the clock:
//! callers pass `now: Instant` in.

use std::time::{Duration, Instant};

/// Whole microseconds from `earlier` to `later`, saturating at zero.
pub fn micros_between(earlier: Instant, later: Instant) -> u64 {
    later.saturating_duration_since(earlier).as_micros() as u64
}

/// The earliest of two optional deadlines.
pub fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, None) => a,
        (None, b) => b,
    }
}

/// A 64-bit NTP timestamp (RFC 3550 §4) for a wall-clock instant, given as a
/// `Duration` since the Unix epoch (the caller reads the wall clock once).
pub fn ntp_from_unix(since_epoch: Duration) -> u64 {
    const NTP_UNIX_OFFSET_SECS: u64 = 2_208_988_800;
    let secs = since_epoch.as_secs() + NTP_UNIX_OFFSET_SECS;
    let frac = ((since_epoch.subsec_nanos() as u64) << 32) / 1_000_000_000;
    (secs << 32) | frac
}

/// The middle 32 bits of an NTP timestamp, as used by LSR/DLSR (RFC 3550 §6.4.1).
pub fn ntp_compact(ntp: u64) -> u32 {
    (ntp >> 16) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ntp_epoch_offset() {
        let ntp = ntp_from_unix(Duration::from_millis(1500));
        assert_eq!(ntp >> 32, 2_208_988_801);
        assert_eq!(ntp & 0xffff_ffff, 1 << 31);
        assert_eq!(ntp_compact(ntp), ((2_208_988_801u64 << 16) as u32) | 0x8000);
    }

    #[test]
    #[allow(clippy::disallowed_methods)] // a test needs some base instant
    fn earliest_of_options() {
        let t = std::time::Instant::now();
        let u = t + Duration::from_millis(1);
        assert_eq!(earliest(Some(u), Some(t)), Some(t));
        assert_eq!(earliest(None, Some(t)), Some(t));
        assert_eq!(earliest(None, None), None);
    }
}
