//! Send-side statistics of one SSRC: sender-report values and round-trip
//! time from receiver reports (RFC 3550 §6.4.1).

use std::time::{Duration, Instant};

use super::{from_ntp_short, ticks};
use crate::packet::rtcp::SenderInfo;

/// Statistics of one sent RTP stream.
#[derive(Debug, Clone)]
pub struct TxStreamStats {
    ssrc: u32,
    packets: u64,
    octets: u64,
    /// The newest RTP timestamp sent and when; SR timestamps extrapolate from it.
    last_ts: Option<(u32, Instant)>,
    rtt: Option<Duration>,
    smoothed_rtt: Option<Duration>,
    rtt_at: Option<Instant>,
}

impl TxStreamStats {
    /// Empty statistics for the stream with `ssrc`.
    pub fn new(ssrc: u32) -> Self {
        Self {
            ssrc,
            packets: 0,
            octets: 0,
            last_ts: None,
            rtt: None,
            smoothed_rtt: None,
            rtt_at: None,
        }
    }

    /// Records one sent packet. `payload_len` excludes header and padding,
    /// as the SR octet count does (§6.4.1).
    ///
    /// Only a timestamp newer than the last one (in wrapping order) moves the
    /// SR reference: the first packet of a frame is sent closest to its capture
    /// instant, and a retransmission on the same SSRC cannot drag it back.
    pub fn on_packet(&mut self, now: Instant, rtp_ts: u32, payload_len: usize) {
        self.packets += 1;
        self.octets = self.octets.saturating_add(payload_len as u64);
        let newer = match self.last_ts {
            None => true,
            Some((last, _)) => (rtp_ts.wrapping_sub(last) as i32) > 0,
        };
        if newer {
            self.last_ts = Some((rtp_ts, now));
        }
    }

    /// The newest RTP timestamp sent (what padding on the stream's RTX SSRC reuses).
    pub fn last_rtp_ts(&self) -> Option<u32> {
        self.last_ts.map(|(ts, _)| ts)
    }

    /// Sender-report values at `now`, whose wall-clock time is `wall_ntp`.
    /// The RTP timestamp is the last one sent advanced by the elapsed time at
    /// `clock_rate` Hz. `None` until a packet was sent: then there is nothing
    /// to relate the wall clock to, and RFC 3550 sends an RR instead.
    pub fn sender_report(
        &self,
        now: Instant,
        wall_ntp: u64,
        clock_rate: u32,
    ) -> Option<SenderInfo> {
        let (ts, at) = self.last_ts?;
        let elapsed = now.saturating_duration_since(at);
        Some(SenderInfo {
            ntp: wall_ntp,
            rtp_ts: ts.wrapping_add(ticks(elapsed, clock_rate)),
            // The wire counters are 32 bits and wrap (§6.4.1).
            packet_count: self.packets as u32,
            octet_count: self.octets as u32,
        })
    }

    /// Takes a report block about this stream: `lsr`/`dlsr` as received and
    /// `wall_ntp_compact_now` the middle 32 bits of the NTP time at arrival.
    /// Returns the RTT sample `now − LSR − DLSR` (§6.4.1), or `None` when the
    /// receiver has no SR yet (`lsr == 0`) or the result is negative (clock
    /// steps or a bogus DLSR). Arithmetic wraps with the 32-bit fields.
    pub fn on_receiver_report(
        &mut self,
        now: Instant,
        wall_ntp_compact_now: u32,
        lsr: u32,
        dlsr: u32,
    ) -> Option<Duration> {
        if lsr == 0 {
            return None;
        }
        let units = wall_ntp_compact_now.wrapping_sub(lsr).wrapping_sub(dlsr);
        if units > i32::MAX as u32 {
            return None;
        }
        let sample = from_ntp_short(units);
        self.rtt = Some(sample);
        self.rtt_at = Some(now);
        // EWMA with gain 1/8, as TCP's SRTT (RFC 6298), to damp single reports.
        self.smoothed_rtt = Some(match self.smoothed_rtt {
            None => sample,
            Some(s) => (s * 7 + sample) / 8,
        });
        Some(sample)
    }

    /// SSRC of the stream.
    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }

    /// Packets sent.
    pub fn packets(&self) -> u64 {
        self.packets
    }

    /// Payload octets sent.
    pub fn octets(&self) -> u64 {
        self.octets
    }

    /// The latest RTT sample.
    pub fn rtt(&self) -> Option<Duration> {
        self.rtt
    }

    /// When the latest RTT sample was taken, so callers can tell a stale one.
    pub fn rtt_sampled_at(&self) -> Option<Instant> {
        self.rtt_at
    }

    /// Smoothed RTT (EWMA, gain 1/8).
    pub fn smoothed_rtt(&self) -> Option<Duration> {
        self.smoothed_rtt
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
    fn rtt_from_known_values() {
        let t = t0();
        let mut s = TxStreamStats::new(9);
        // LSR at 10.0 s, DLSR 0.25 s, RR arrives at 10.5 s: RTT 0.25 s.
        let rtt = s.on_receiver_report(t, (10 << 16) | (1 << 15), 10 << 16, 1 << 14);
        assert_eq!(rtt, Some(ms(250)));
        assert_eq!(s.rtt(), Some(ms(250)));
        assert_eq!(s.rtt_sampled_at(), Some(t));
    }

    #[test]
    fn rtt_across_32_bit_wrap() {
        let t = t0();
        let mut s = TxStreamStats::new(9);
        // LSR just before the wrap, the RR after it: 0x1_4000 − 0xffff_8000
        // wraps to 0x1_c000 (1.75 s); minus DLSR 0.5 s = 1.25 s.
        let rtt = s.on_receiver_report(t, 0x0001_4000, 0xffff_8000, 0x8000);
        assert_eq!(rtt, Some(ms(1250)));
    }

    #[test]
    fn rtt_ignores_missing_sr_and_negative_results() {
        let t = t0();
        let mut s = TxStreamStats::new(9);
        assert_eq!(s.on_receiver_report(t, 0x1000, 0, 0), None);
        // DLSR larger than the elapsed time: would be negative.
        assert_eq!(s.on_receiver_report(t, 0x1_0000, 0x0_8000, 0x1_0000), None);
        assert_eq!(s.rtt(), None);
        assert_eq!(s.smoothed_rtt(), None);
    }

    #[test]
    fn smoothed_rtt_is_an_ewma() {
        let t = t0();
        let mut s = TxStreamStats::new(9);
        let units = |d: Duration| (d.as_millis() as u32) * 65_536 / 1000;
        s.on_receiver_report(t, 1 << 20, (1 << 20) - units(ms(100)), 0);
        s.on_receiver_report(t, 1 << 20, (1 << 20) - units(ms(500)), 0);
        let srtt = s.smoothed_rtt().unwrap();
        // 100 × 7/8 + 500 / 8 = 150 ms (within unit rounding).
        assert!(
            srtt.abs_diff(ms(150)) < Duration::from_micros(50),
            "{srtt:?}"
        );
        assert!(s.rtt().unwrap().abs_diff(ms(500)) < Duration::from_micros(50));
    }

    #[test]
    fn sender_report_extrapolates_rtp_time() {
        let t = t0();
        let mut s = TxStreamStats::new(9);
        assert_eq!(s.sender_report(t, 1, 90_000), None);
        s.on_packet(t, 1000, 1200);
        s.on_packet(t + ms(5), 1000, 800); // same frame
                                           // An old retransmitted timestamp does not move the reference.
        s.on_packet(t + ms(6), 500, 800);
        let sr = s.sender_report(t + ms(20), 0xabcd, 90_000).unwrap();
        assert_eq!(sr.ntp, 0xabcd);
        // Reference is (1000, t): 20 ms at 90 kHz = 1800 ticks.
        assert_eq!(sr.rtp_ts, 2800);
        assert_eq!((sr.packet_count, sr.octet_count), (3, 2800));
    }

    #[test]
    fn sender_report_timestamp_wraps() {
        let t = t0();
        let mut s = TxStreamStats::new(9);
        s.on_packet(t, u32::MAX - 99, 100);
        s.on_packet(t + ms(10), 380, 100); // newer across the wrap
        let sr = s.sender_report(t + ms(30), 0, 48_000).unwrap();
        assert_eq!(sr.rtp_ts, 380 + 960);
        // `now` before the sample (caller clock skew) does not go backwards.
        assert_eq!(s.sender_report(t, 0, 48_000).unwrap().rtp_ts, 380);
    }
}
