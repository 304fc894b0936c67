//! Outgoing sequence-number bookkeeping for one DownTrack.
//!
//! Outgoing numbers are `ext_seq - offset`. Every packet the forwarder drops
//! on purpose (temporal layer, padding, ...) bumps the offset so the subscriber
//! sees no gap for it; a packet that never arrived leaves a gap, so the
//! subscriber NACKs it (RFC 4585 §6.2.1). Late (reordered) packets are mapped
//! with the offset that was in force at their position, found in a small ring
//! of offset change points; anything older than the ring or the 64-packet
//! duplicate window is dropped.

/// Change points remembered for mapping reordered packets.
const CHANGES: usize = 16;
/// Packets behind the newest for which duplicates are detected.
const WINDOW: u64 = 64;

/// How an arriving sequence number relates to what was seen before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Arrival {
    /// Newer than anything seen.
    New,
    /// Older than the newest, not seen before, mappable with this offset.
    Late(u64),
    /// Already seen.
    Duplicate,
    /// Too old to map (before the anchor, the ring or the window).
    TooLate,
}

#[derive(Debug)]
pub(crate) struct SeqMunger {
    /// Highest extended sequence number seen (received) on the current source;
    /// one before the anchor while `fresh`.
    last_in: u64,
    /// Nothing seen since the anchor (so `last_in` may have wrapped below zero).
    fresh: bool,
    /// Bit i set: `last_in - i` was seen.
    seen: u64,
    /// out = in - offset (wrapping).
    offset: u64,
    /// Oldest sequence number that can still be mapped.
    floor: u64,
    /// Ring of (ext_seq, offset before): for packets after ext_seq a newer offset applies.
    changes: [(u64, u64); CHANGES],
    changes_len: usize,
    changes_next: usize,
}

impl SeqMunger {
    pub(crate) fn new() -> Self {
        Self {
            last_in: 0,
            fresh: true,
            seen: 0,
            offset: 0,
            floor: 0,
            changes: [(0, 0); CHANGES],
            changes_len: 0,
            changes_next: 0,
        }
    }

    /// Start mapping a (new) source so that `ext_seq` goes out as `out_ext`.
    pub(crate) fn anchor(&mut self, ext_seq: u64, out_ext: u64) {
        self.offset = ext_seq.wrapping_sub(out_ext);
        self.last_in = ext_seq.wrapping_sub(1);
        self.fresh = true;
        self.seen = 0;
        self.floor = ext_seq;
        self.changes_len = 0;
        self.changes_next = 0;
    }

    /// The last extended sequence number handed out (or absorbed).
    pub(crate) fn last_out(&self) -> u64 {
        self.last_in.wrapping_sub(self.offset)
    }

    pub(crate) fn classify(&self, ext_seq: u64) -> Arrival {
        if self.fresh || ext_seq > self.last_in {
            return Arrival::New;
        }
        if ext_seq < self.floor {
            return Arrival::TooLate;
        }
        let behind = self.last_in - ext_seq;
        if behind >= WINDOW {
            return Arrival::TooLate;
        }
        if self.seen & (1 << behind) != 0 {
            return Arrival::Duplicate;
        }
        // The offset in force at ext_seq is the "before" offset of the earliest
        // change point after it, or the current one if there is none.
        let mut offset = self.offset;
        let mut best = u64::MAX;
        for &(at, before) in &self.changes[..self.changes_len] {
            if at > ext_seq && at < best {
                best = at;
                offset = before;
            }
        }
        Arrival::Late(offset)
    }

    fn mark_seen(&mut self, ext_seq: u64) {
        if self.fresh || ext_seq > self.last_in {
            let shift = ext_seq.wrapping_sub(self.last_in);
            self.fresh = false;
            self.seen = if shift >= WINDOW {
                0
            } else {
                self.seen << shift
            };
            self.seen |= 1;
            self.last_in = ext_seq;
        } else {
            let behind = self.last_in - ext_seq;
            if behind < WINDOW {
                self.seen |= 1 << behind;
            }
        }
    }

    fn push_change(&mut self, at: u64) {
        if self.changes_len == CHANGES {
            // Evicting the oldest: packets at or before it can no longer be mapped.
            let (old, _) = self.changes[self.changes_next];
            self.floor = self.floor.max(old.wrapping_add(1));
        } else {
            self.changes_len += 1;
        }
        self.changes[self.changes_next] = (at, self.offset);
        self.changes_next = (self.changes_next + 1) % CHANGES;
    }

    /// Forward `ext_seq` (classified New or Late(offset)); returns its outgoing number.
    pub(crate) fn forward(&mut self, ext_seq: u64, arrival: Arrival) -> u64 {
        let offset = match arrival {
            Arrival::Late(o) => o,
            _ => self.offset,
        };
        self.mark_seen(ext_seq);
        ext_seq.wrapping_sub(offset)
    }

    /// Drop `ext_seq` on purpose: a new packet's number is absorbed (no gap).
    pub(crate) fn absorb(&mut self, ext_seq: u64, arrival: Arrival) {
        if arrival == Arrival::New {
            self.push_change(ext_seq);
            self.offset = self.offset.wrapping_add(1);
        }
        if matches!(arrival, Arrival::New | Arrival::Late(_)) {
            self.mark_seen(ext_seq);
        }
    }

    /// Take the next outgoing number for a packet the SFU generates itself.
    pub(crate) fn insert(&mut self) -> u64 {
        if !self.fresh {
            self.push_change(self.last_in);
        }
        self.offset = self.offset.wrapping_sub(1);
        self.last_out()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fwd(m: &mut SeqMunger, s: u64) -> Option<u64> {
        match m.classify(s) {
            a @ (Arrival::New | Arrival::Late(_)) => Some(m.forward(s, a)),
            _ => None,
        }
    }

    fn drop(m: &mut SeqMunger, s: u64) {
        let a = m.classify(s);
        m.absorb(s, a);
    }

    #[test]
    fn drops_are_absorbed_losses_stay_gaps() {
        let mut m = SeqMunger::new();
        m.anchor(100, 1000);
        assert_eq!(fwd(&mut m, 100), Some(1000));
        drop(&mut m, 101);
        assert_eq!(fwd(&mut m, 102), Some(1001));
        // 103 lost.
        assert_eq!(fwd(&mut m, 104), Some(1003));
        drop(&mut m, 105);
        assert_eq!(fwd(&mut m, 106), Some(1004));
        // 103 arrives late: fills exactly the gap it left.
        assert_eq!(fwd(&mut m, 103), Some(1002));
        assert_eq!(m.classify(103), Arrival::Duplicate);
        assert_eq!(m.classify(99), Arrival::TooLate);
    }

    #[test]
    fn inserted_packets_shift_later_numbers() {
        let mut m = SeqMunger::new();
        m.anchor(10, 10);
        assert_eq!(fwd(&mut m, 10), Some(10));
        assert_eq!(m.insert(), 11);
        assert_eq!(m.insert(), 12);
        // 11 lost; 12 keeps the gap after the inserted ones.
        assert_eq!(fwd(&mut m, 12), Some(14));
        assert_eq!(fwd(&mut m, 11), Some(13));
    }

    #[test]
    fn window_and_ring_limits() {
        let mut m = SeqMunger::new();
        m.anchor(0, 0);
        fwd(&mut m, 0);
        // Per group of three: one dropped, one lost, one forwarded as 2s.
        for s in 1..=20 {
            drop(&mut m, 3 * s - 2);
            assert_eq!(fwd(&mut m, 3 * s), Some(2 * s));
        }
        // The ring keeps the last 16 change points (13..=58); 1, 4, 7, 10 were evicted.
        assert_eq!(m.classify(8), Arrival::TooLate, "behind the ring floor");
        assert_eq!(fwd(&mut m, 11), Some(7));
        assert_eq!(fwd(&mut m, 14), Some(9));
        assert_eq!(fwd(&mut m, 200), Some(180));
        assert_eq!(m.classify(100), Arrival::TooLate, "outside the window");
    }
}
