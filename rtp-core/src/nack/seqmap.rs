//! Per-subscriber map from the sequence numbers WE sent on a down-track to
//! what they carried: the source packet's extended sequence number plus what
//! is needed to rebuild the header for a retransmission (RFC 4585 §6.2.1 NACKs
//! from a subscriber name our sequence numbers, not the publisher's).
//!
//! A ring of `capacity` (rounded up to a power of two, at most 65536) entries
//! indexed by our 16-bit sequence number, allocated once.

use std::time::{Duration, Instant};

/// What one outgoing packet was made from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SentEntry {
    /// Extended sequence number of the source packet in the publisher's history.
    pub src_ext_seq: u64,
    /// Added (wrapping) to the source timestamp to get the one we sent.
    pub ts_offset: u32,
    /// Simulcast / SVC layer the packet came from.
    pub layer: u8,
}

/// Counters of a [`SeqMap`]; monotonic over its life.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SeqMapStats {
    /// Lookups answered.
    pub hits: u64,
    /// Lookups for sequence numbers not (or no longer) in the map.
    pub misses: u64,
    /// Resend lookups refused because the packet was resent too recently.
    pub suppressed: u64,
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    our_seq: u16,
    entry: SentEntry,
    last_resent: Option<Instant>,
}

/// Ring of recently sent packets keyed by our outgoing sequence number.
#[derive(Debug)]
pub struct SeqMap {
    slots: Vec<Option<Slot>>,
    mask: usize,
    stats: SeqMapStats,
}

impl SeqMap {
    /// A map remembering the last `capacity` sequence numbers (rounded up to a
    /// power of two so the ring stays aligned across 16-bit wrap; clamped to
    /// 1..=65536).
    pub fn new(capacity: usize) -> Self {
        let cap = capacity.clamp(1, 1 << 16).next_power_of_two();
        Self {
            slots: vec![None; cap],
            mask: cap - 1,
            stats: SeqMapStats::default(),
        }
    }

    /// Remember what our packet `our_seq` was made from (replaces whatever the
    /// slot held).
    pub fn record(&mut self, our_seq: u16, entry: SentEntry) {
        self.slots[our_seq as usize & self.mask] = Some(Slot {
            our_seq,
            entry,
            last_resent: None,
        });
    }

    /// What `our_seq` was made from, if still remembered.
    pub fn lookup(&mut self, our_seq: u16) -> Option<SentEntry> {
        match self.slot(our_seq) {
            Some(s) => {
                let e = s.entry;
                self.stats.hits += 1;
                Some(e)
            }
            None => {
                self.stats.misses += 1;
                None
            }
        }
    }

    /// Like [`Self::lookup`], for answering a NACK: refuses (returns `None`)
    /// when the packet was already resent less than `min_interval` ago, so
    /// duplicate NACKs (several in flight within one RTT) do not multiply
    /// retransmissions. A successful call marks the packet resent at `now`.
    pub fn lookup_for_resend(
        &mut self,
        now: Instant,
        our_seq: u16,
        min_interval: Duration,
    ) -> Option<SentEntry> {
        let Some(s) = self.slot(our_seq) else {
            self.stats.misses += 1;
            return None;
        };
        if s.last_resent
            .is_some_and(|t| now.saturating_duration_since(t) < min_interval)
        {
            self.stats.suppressed += 1;
            return None;
        }
        s.last_resent = Some(now);
        let e = s.entry;
        self.stats.hits += 1;
        Some(e)
    }

    /// Counters so far.
    pub fn stats(&self) -> SeqMapStats {
        self.stats
    }

    /// Number of entries the ring holds.
    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    fn slot(&mut self, our_seq: u16) -> Option<&mut Slot> {
        self.slots[our_seq as usize & self.mask]
            .as_mut()
            .filter(|s| s.our_seq == our_seq)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[allow(clippy::disallowed_methods)] // tests need some base instant
    fn t0() -> Instant {
        Instant::now()
    }

    fn entry(src: u64) -> SentEntry {
        SentEntry {
            src_ext_seq: src,
            ts_offset: 0xffff_fff0,
            layer: 1,
        }
    }

    #[test]
    fn record_and_lookup_across_wrap() {
        let mut m = SeqMap::new(100);
        assert_eq!(m.capacity(), 128);
        let mut our = 65500u16;
        for src in 0..100u64 {
            m.record(our, entry(1000 + src));
            our = our.wrapping_add(1);
        }
        assert_eq!(m.lookup(65500).unwrap().src_ext_seq, 1000);
        assert_eq!(m.lookup(0).unwrap().src_ext_seq, 1036);
        assert_eq!(m.lookup(63).unwrap().src_ext_seq, 1099);
        assert_eq!(m.lookup(64), None);
        assert_eq!(m.stats().misses, 1);
    }

    #[test]
    fn overwritten_after_capacity() {
        let mut m = SeqMap::new(4);
        for s in 0..6u16 {
            m.record(s, entry(s as u64));
        }
        assert_eq!(m.lookup(1), None);
        assert_eq!(m.lookup(5).unwrap().src_ext_seq, 5);
    }

    #[test]
    fn resend_suppressed_within_interval() {
        let t = t0();
        let mut m = SeqMap::new(16);
        m.record(7, entry(70));
        let rtt = Duration::from_millis(50);
        assert!(m.lookup_for_resend(t, 7, rtt).is_some());
        assert!(m
            .lookup_for_resend(t + Duration::from_millis(20), 7, rtt)
            .is_none());
        assert_eq!(m.stats().suppressed, 1);
        assert!(m
            .lookup_for_resend(t + Duration::from_millis(50), 7, rtt)
            .is_some());
        // A new packet in the slot starts with a clean resend record.
        m.record(7 + 16, entry(86));
        assert!(m
            .lookup_for_resend(t + Duration::from_millis(51), 23, rtt)
            .is_some());
    }
}
