//! Receive-side statistics of one SSRC (RFC 3550 Appendix A.3 and A.8).

use std::time::Instant;

use super::{ticks, to_ntp_short};
use crate::packet::rtcp::ReportBlock;
use crate::time::ntp_compact;

/// Cumulative loss is a 24-bit signed field in a report block (§6.4.1).
const CUMULATIVE_LOST_MAX: i64 = 0x7f_ffff;
const CUMULATIVE_LOST_MIN: i64 = -0x80_0000;

/// Statistics of one received RTP stream, fed per packet and per SR.
///
/// Sequence numbers arrive already extended to 64 bits by the caller (the
/// NACK/reorder logic unrolls them), so wrap handling lives in one place.
#[derive(Debug, Clone)]
pub struct RxStreamStats {
    ssrc: u32,
    packets: u64,
    bytes: u64,
    base_seq: u64,
    highest_seq: u64,
    expected_prior: u64,
    received_prior: u64,
    /// Origin of the arrival clock; jitter only needs arrival differences.
    first_arrival: Option<Instant>,
    last_transit: Option<u32>,
    /// Jitter scaled by 16, as in RFC 3550 A.8, to keep precision in integers.
    jitter_q4: u64,
    lsr: u32,
    lsr_arrival: Option<Instant>,
}

impl RxStreamStats {
    /// Empty statistics for the stream with `ssrc`.
    pub fn new(ssrc: u32) -> Self {
        Self {
            ssrc,
            packets: 0,
            bytes: 0,
            base_seq: 0,
            highest_seq: 0,
            expected_prior: 0,
            received_prior: 0,
            first_arrival: None,
            last_transit: None,
            jitter_q4: 0,
            lsr: 0,
            lsr_arrival: None,
        }
    }

    /// Records one received packet (duplicates included, as RFC 3550 counts
    /// them). `clock_rate` is the payload's RTP clock in Hz.
    ///
    /// Jitter is updated only by packets that advance the highest sequence
    /// number: a reordered or duplicate packet's transit says more about the
    /// reordering than about network jitter, and would inflate the estimate.
    pub fn on_packet(
        &mut self,
        now: Instant,
        ext_seq: u64,
        rtp_ts: u32,
        size_bytes: usize,
        clock_rate: u32,
    ) {
        let first = self.packets == 0;
        self.packets += 1;
        self.bytes = self.bytes.saturating_add(size_bytes as u64);
        if first {
            self.base_seq = ext_seq;
            self.highest_seq = ext_seq;
            self.update_jitter(now, rtp_ts, clock_rate);
            return;
        }
        if ext_seq < self.base_seq {
            // Reordered ahead of the first packet we saw: it belongs to the stream.
            self.base_seq = ext_seq;
        }
        if ext_seq > self.highest_seq {
            self.highest_seq = ext_seq;
            self.update_jitter(now, rtp_ts, clock_rate);
        }
    }

    /// Remembers a sender report from this source (for LSR/DLSR): `ntp` is
    /// its 64-bit NTP timestamp, `now` when it arrived.
    pub fn on_sender_report(&mut self, now: Instant, ntp: u64) {
        self.lsr = ntp_compact(ntp);
        self.lsr_arrival = Some(now);
    }

    /// The values for a report block about this source at `now`, and the
    /// start of a new reporting interval for `fraction_lost`.
    pub fn report_block(&mut self, now: Instant) -> ReportBlock {
        let expected = self.expected();
        let expected_interval = expected.saturating_sub(self.expected_prior);
        let received_interval = self.packets.saturating_sub(self.received_prior);
        self.expected_prior = expected;
        self.received_prior = self.packets;
        // Duplicates can make the interval loss negative; report 0 then (A.3).
        let lost_interval = expected_interval.saturating_sub(received_interval);
        let fraction_lost = if expected_interval == 0 || lost_interval == 0 {
            0
        } else {
            // u128: a hostile sequence jump must not shift bits out.
            ((u128::from(lost_interval) << 8) / u128::from(expected_interval)).min(255) as u8
        };
        let (lsr, dlsr) = match self.lsr_arrival {
            Some(at) => (self.lsr, to_ntp_short(now.saturating_duration_since(at))),
            None => (0, 0),
        };
        ReportBlock {
            ssrc: self.ssrc,
            fraction_lost,
            cumulative_lost: self.cumulative_lost(),
            // Truncation is the wire format: 16 bits of cycles, 16 of seq.
            ext_highest_seq: self.highest_seq as u32,
            jitter: self.jitter(),
            lsr,
            dlsr,
        }
    }

    /// SSRC of the stream.
    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }

    /// Packets received, duplicates included.
    pub fn packets(&self) -> u64 {
        self.packets
    }

    /// Bytes received (as passed to `on_packet`).
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Lowest extended sequence number seen.
    pub fn base_ext_seq(&self) -> u64 {
        self.base_seq
    }

    /// Highest extended sequence number seen.
    pub fn highest_ext_seq(&self) -> u64 {
        self.highest_seq
    }

    /// Packets expected: `highest - base + 1`, 0 before the first packet.
    pub fn expected(&self) -> u64 {
        if self.packets == 0 {
            return 0;
        }
        // Saturates only for absurd (hostile) sequence ranges near 2^64.
        (self.highest_seq - self.base_seq).saturating_add(1)
    }

    /// Expected minus received, clamped to the 24-bit signed wire range.
    pub fn cumulative_lost(&self) -> i32 {
        let expected = i64::try_from(self.expected()).unwrap_or(i64::MAX);
        let received = i64::try_from(self.packets).unwrap_or(i64::MAX);
        expected
            .saturating_sub(received)
            .clamp(CUMULATIVE_LOST_MIN, CUMULATIVE_LOST_MAX) as i32
    }

    /// Interarrival jitter estimate in RTP timestamp units.
    pub fn jitter(&self) -> u32 {
        u32::try_from(self.jitter_q4 >> 4).unwrap_or(u32::MAX)
    }

    /// RFC 3550 A.8: `J += (|D| - J) / 16` with `D` the change in transit
    /// time (arrival minus RTP timestamp, both in RTP units).
    fn update_jitter(&mut self, now: Instant, rtp_ts: u32, clock_rate: u32) {
        if clock_rate == 0 {
            return;
        }
        let origin = *self.first_arrival.get_or_insert(now);
        let arrival = ticks(now.saturating_duration_since(origin), clock_rate);
        let transit = arrival.wrapping_sub(rtp_ts);
        let Some(previous) = self.last_transit.replace(transit) else {
            return;
        };
        // The signed difference of two wrapping values; |i32::MIN| fits in u32.
        let d = u64::from((transit.wrapping_sub(previous) as i32).unsigned_abs());
        self.jitter_q4 = (self.jitter_q4 + d).saturating_sub((self.jitter_q4 + 8) >> 4);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[allow(clippy::disallowed_methods)] // tests need some base instant
    fn t0() -> Instant {
        Instant::now()
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Feeds `seqs` as 100-byte packets arriving 20 ms apart at 8 kHz.
    fn feed(s: &mut RxStreamStats, t: Instant, seqs: &[u64]) {
        for (i, &seq) in seqs.iter().enumerate() {
            s.on_packet(
                t + ms(20 * i as u64),
                seq,
                (seq as u32).wrapping_mul(160),
                100,
                8000,
            );
        }
    }

    #[test]
    fn jitter_matches_hand_computation() {
        let t = t0();
        let mut s = RxStreamStats::new(7);
        // 8 kHz, 20 ms frames (160 ticks). Arrivals 0, 20, 45, 60, 80 ms =
        // 0, 160, 360, 480, 640 ticks; transits 0, 0, 40, 0, 0; |D| 0, 40, 40, 0.
        // J×16: 0 → 0 → 40 → 40+40-3 = 77 → 77+0-5 = 72, i.e. J = 4.
        let arrivals = [0, 20, 45, 60, 80];
        let mut after = Vec::new();
        for (i, &at) in arrivals.iter().enumerate() {
            s.on_packet(t + ms(at), i as u64, 160 * i as u32, 100, 8000);
            after.push(s.jitter_q4);
        }
        assert_eq!(after, [0, 0, 40, 77, 72]);
        assert_eq!(s.jitter(), 4);
        assert_eq!(s.report_block(t + ms(80)).jitter, 4);
    }

    #[test]
    fn jitter_handles_timestamp_wrap_and_ignores_reordering() {
        let t = t0();
        let mut s = RxStreamStats::new(7);
        let base = u32::MAX - 100;
        s.on_packet(t, 10, base, 100, 8000);
        s.on_packet(t + ms(20), 11, base.wrapping_add(160), 100, 8000);
        assert_eq!(s.jitter_q4, 0);
        // A late, reordered packet must not move the estimate.
        s.on_packet(t + ms(500), 9, base.wrapping_sub(160), 100, 8000);
        assert_eq!(s.jitter_q4, 0);
    }

    #[test]
    fn loss_with_reordering_and_duplicates() {
        let t = t0();
        let mut s = RxStreamStats::new(7);
        feed(&mut s, t, &[100, 101, 104]);
        assert_eq!((s.expected(), s.cumulative_lost()), (5, 2));
        // 103 arrives late, 102 never; 101 is duplicated.
        feed(&mut s, t, &[103, 101]);
        assert_eq!((s.expected(), s.packets()), (5, 5));
        assert_eq!(s.cumulative_lost(), 0);
        // A packet from before the first one seen extends the range.
        feed(&mut s, t, &[99]);
        assert_eq!((s.base_ext_seq(), s.highest_ext_seq()), (99, 104));
        assert_eq!(s.expected(), 6);
        // Pure duplicates drive cumulative loss negative.
        feed(&mut s, t, &[104; 10]);
        assert_eq!(s.cumulative_lost(), -10);
    }

    #[test]
    fn cumulative_lost_is_clamped_to_24_bits() {
        let t = t0();
        let mut s = RxStreamStats::new(7);
        feed(&mut s, t, &[0, 1 << 30]);
        assert_eq!(s.cumulative_lost(), 0x7f_ffff);
        let mut d = RxStreamStats::new(7);
        d.on_packet(t, 5, 0, 1, 8000);
        d.packets += 0x90_0000; // stands in for millions of duplicates
        assert_eq!(d.cumulative_lost(), -0x80_0000);
    }

    #[test]
    fn fraction_lost_per_interval() {
        let t = t0();
        let mut s = RxStreamStats::new(42);
        let first: Vec<u64> = (100..110).filter(|&q| q != 103 && q != 107).collect();
        feed(&mut s, t, &first);
        let rb = s.report_block(t + ms(1000));
        // 2 of 10 lost: 2 × 256 / 10 = 51.
        assert_eq!((rb.ssrc, rb.fraction_lost, rb.cumulative_lost), (42, 51, 2));
        assert_eq!(rb.ext_highest_seq, 109);
        // Next interval: all 10 plus a duplicate → no loss reported (not negative).
        let mut second: Vec<u64> = (110..120).collect();
        second.push(115);
        feed(&mut s, t + ms(1000), &second);
        let rb = s.report_block(t + ms(2000));
        assert_eq!((rb.fraction_lost, rb.cumulative_lost), (0, 1));
        // Nothing new: an empty interval reports 0.
        assert_eq!(s.report_block(t + ms(3000)).fraction_lost, 0);
        // A jump to 130: 11 expected, 1 received → 10 × 256 / 11 = 232.
        feed(&mut s, t + ms(3000), &[130]);
        assert_eq!(s.report_block(t + ms(4000)).fraction_lost, 232);
    }

    #[test]
    fn extreme_sequence_numbers_do_not_overflow() {
        let t = t0();
        let mut s = RxStreamStats::new(1);
        s.on_packet(t, u64::MAX, 0, usize::MAX, u32::MAX);
        s.on_packet(t + ms(1), 0, u32::MAX, usize::MAX, u32::MAX);
        assert_eq!(s.expected(), u64::MAX);
        assert_eq!(s.bytes(), u64::MAX);
        let rb = s.report_block(t + ms(2));
        assert_eq!(rb.cumulative_lost, 0x7f_ffff);
        assert_eq!(rb.fraction_lost, 255);
    }

    #[test]
    fn ext_highest_seq_carries_cycles() {
        let t = t0();
        let mut s = RxStreamStats::new(1);
        feed(&mut s, t, &[(3 << 16) | 0xfffe, (4 << 16) | 2]);
        assert_eq!(s.report_block(t).ext_highest_seq, 0x0004_0002);
    }

    #[test]
    fn lsr_and_dlsr() {
        let t = t0();
        let mut s = RxStreamStats::new(1);
        let rb = s.report_block(t);
        assert_eq!((rb.lsr, rb.dlsr, rb.ext_highest_seq), (0, 0, 0));
        s.on_sender_report(t, 0x1234_5678_9abc_def0);
        let rb = s.report_block(t + ms(1500));
        assert_eq!(rb.lsr, 0x5678_9abc);
        assert_eq!(rb.dlsr, 98_304); // 1.5 × 65536
    }

    proptest::proptest! {
        /// Arbitrary (attacker-chosen) sequence numbers, timestamps, sizes and
        /// clock rates never panic and keep the report fields in range.
        #[test]
        fn arbitrary_input_never_panics(
            pkts in proptest::collection::vec(
                (proptest::prelude::any::<u64>(), proptest::prelude::any::<u32>(),
                 proptest::prelude::any::<usize>(), proptest::prelude::any::<u32>(), 0u64..10_000),
                1..100),
        ) {
            let t = t0();
            let mut s = RxStreamStats::new(1);
            let mut now = t;
            for (seq, ts, size, rate, adv) in pkts {
                s.on_packet(now, seq, ts, size, rate);
                let rb = s.report_block(now);
                proptest::prop_assert!((-0x80_0000..=0x7f_ffff).contains(&rb.cumulative_lost));
                now += Duration::from_millis(adv);
            }
        }
    }
}
