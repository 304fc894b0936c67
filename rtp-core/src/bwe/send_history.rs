//! Send-side record of transport-wide sequence numbers: when each packet left
//! and how big it was, so feedback can be matched back to send times
//! (draft-holmer-rmcat-transport-wide-cc-extensions-01 §2; GCC §5.1 needs both).

/// One sent packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SentPacket {
    /// Unwrapped transport-wide sequence number.
    pub seq: u64,
    /// Send time in µs since the estimator's base instant.
    pub send_us: i64,
    /// Packet size in bytes.
    pub size: u32,
    /// Whether feedback already reported it received (duplicates are ignored).
    pub acked: bool,
    /// Probe cluster it was sent in (0: none).
    pub cluster: u16,
}

/// Fixed-capacity ring of sent packets, indexed by unwrapped sequence number.
#[derive(Debug)]
pub(crate) struct SendHistory {
    ring: Vec<Option<SentPacket>>,
    highest: Option<u64>,
}

impl SendHistory {
    pub fn new(capacity: usize) -> Self {
        Self {
            ring: vec![None; capacity.max(16)],
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
        self.ring[idx] = Some(SentPacket {
            seq,
            send_us,
            size: size.min(u32::MAX as usize) as u32,
            acked: false,
            cluster,
        });
    }

    /// The record for a wire sequence number, if still in the ring.
    pub fn lookup_mut(&mut self, seq: u16) -> Option<&mut SentPacket> {
        self.highest?;
        let seq = self.unwrap(seq);
        let idx = (seq % self.ring.len() as u64) as usize;
        self.ring[idx].as_mut().filter(|p| p.seq == seq)
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
        assert_eq!(h.lookup_mut(9).map(|p| p.size), Some(1015));
        for s in 10..20 {
            h.insert(s, 0, 1, 0);
        }
        assert!(h.lookup_mut(65_535).is_none(), "evicted");
        assert!(h.lookup_mut(500).is_none(), "never sent");
    }
}
