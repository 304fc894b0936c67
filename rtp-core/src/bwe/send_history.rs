//! Send-side record of transport-wide sequence numbers: when each packet left
//! and how big it was, so feedback can be matched back to send times
//! (draft-holmer-rmcat-transport-wide-cc-extensions-01 §2; GCC §5.1 needs both).

/// One sent packet: 16 bytes, four to a cache line (the ring is written once per packet sent,
/// across every session of a worker, and read back once per feedback).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SentPacket {
    /// Send time in µs since the estimator's base instant; `i64::MIN` in a slot never written.
    pub send_us: i64,
    /// The low 32 bits of the unwrapped transport-wide sequence number: a slot holds one of the
    /// last `capacity` packets, which these tell apart.
    seq: u32,
    /// Size in bytes (clamped to 32,767: a datagram is far below) and, in the top bit, whether
    /// feedback already reported it received (duplicates are ignored).
    size_acked: u16,
    /// Probe cluster it was sent in (0: none).
    pub cluster: u16,
}

const ACKED: u16 = 0x8000;

impl SentPacket {
    const EMPTY: Self = Self {
        send_us: i64::MIN,
        seq: 0,
        size_acked: 0,
        cluster: 0,
    };

    /// Packet size in bytes.
    pub fn size(&self) -> u32 {
        u32::from(self.size_acked & !ACKED)
    }

    pub fn acked(&self) -> bool {
        self.size_acked & ACKED != 0
    }

    pub fn set_acked(&mut self) {
        self.size_acked |= ACKED;
    }
}

/// Fixed-capacity ring of sent packets, indexed by unwrapped sequence number.
#[derive(Debug)]
pub(crate) struct SendHistory {
    ring: Vec<SentPacket>,
    highest: Option<u64>,
}

impl SendHistory {
    pub fn new(capacity: usize) -> Self {
        Self {
            ring: vec![SentPacket::EMPTY; capacity.max(16)],
            highest: None,
        }
    }

    /// Unwraps against the highest sequence number sent so far; sequence
    /// space starts one cycle up so early reordering stays non-negative.
    fn unwrap(&self, seq: u16) -> u64 {
        match self.highest {
            None => 65_536 + u64::from(seq),
            Some(h) => {
                let diff = seq.wrapping_sub(h as u16) as i16;
                (h as i64 + i64::from(diff)).max(0) as u64
            }
        }
    }

    pub fn insert(&mut self, seq: u16, send_us: i64, size: usize, cluster: u16) {
        let seq = self.unwrap(seq);
        if self.highest.is_none_or(|h| seq > h) {
            self.highest = Some(seq);
        }
        let idx = (seq % self.ring.len() as u64) as usize;
        self.ring[idx] = SentPacket {
            send_us,
            seq: seq as u32,
            size_acked: size.min(usize::from(!ACKED)) as u16,
            cluster,
        };
    }

    /// The record for a wire sequence number, if still in the ring.
    pub fn lookup_mut(&mut self, seq: u16) -> Option<&mut SentPacket> {
        self.highest?;
        let seq = self.unwrap(seq);
        let idx = (seq % self.ring.len() as u64) as usize;
        let p = &mut self.ring[idx];
        (p.send_us != i64::MIN && p.seq == seq as u32).then_some(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_across_wrap_and_eviction() {
        let mut h = SendHistory::new(16);
        for (i, s) in (65_530u16..=65_535).chain(0..10).enumerate() {
            h.insert(s, i as i64 * 100, 1000 + i, 0);
        }
        assert_eq!(h.lookup_mut(65_535).map(|p| p.send_us), Some(500));
        assert_eq!(h.lookup_mut(9).map(|p| p.size()), Some(1015));
        for s in 10..20 {
            h.insert(s, 0, 1, 0);
        }
        assert!(h.lookup_mut(65_535).is_none(), "evicted");
        assert!(h.lookup_mut(500).is_none(), "never sent");
    }

    #[test]
    fn a_record_is_16_bytes_and_keeps_its_acked_bit_apart_from_its_size() {
        assert_eq!(std::mem::size_of::<SentPacket>(), 16);
        let mut h = SendHistory::new(16);
        h.insert(7, -5, 1200, 3);
        h.insert(8, 10, 70_000, 0);
        let p = h.lookup_mut(7).expect("sent");
        assert_eq!(
            (p.send_us, p.size(), p.cluster, p.acked()),
            (-5, 1200, 3, false)
        );
        p.set_acked();
        let p = h.lookup_mut(7).expect("sent");
        assert_eq!((p.size(), p.acked()), (1200, true));
        assert_eq!(h.lookup_mut(8).map(|p| p.size()), Some(32_767), "clamped");
        // An empty slot is no record, whatever sequence number maps to it.
        assert!(h.lookup_mut(9).is_none());
        assert!(h.lookup_mut(0).is_none());
    }
}
