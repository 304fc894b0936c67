//! Extended RTP sequence numbers (RFC 3550 §A.1): turns the 16-bit wire
//! sequence number into a monotonic 64-bit one that survives wrap-around and
//! reordering.

/// Where the first packet of a stream lands in extended space. Starting one
/// full cycle up keeps packets reordered before the first one at `>= 0`.
const FIRST_CYCLE: u64 = 1 << 16;

/// Unwraps 16-bit sequence numbers into 64-bit extended ones.
///
/// A packet is placed at the extended value closest to the highest one seen so
/// far (a signed 16-bit distance), so forward jumps under 32768 and backward
/// steps (reordering, retransmissions) up to 32768 resolve correctly.
#[derive(Debug, Clone, Copy, Default)]
pub struct SeqUnwrapper {
    highest: Option<u64>,
}

impl SeqUnwrapper {
    /// An unwrapper that has not seen any packet yet.
    pub fn new() -> Self {
        Self { highest: None }
    }

    /// The extended value of `seq`; advances the highest-seen value when
    /// `seq` is newer. Older (reordered) packets do not move it.
    pub fn unwrap(&mut self, seq: u16) -> u64 {
        let ext = self.peek(seq);
        if self.highest.is_none_or(|h| ext > h) {
            self.highest = Some(ext);
        }
        ext
    }

    /// The extended value `seq` would get, without updating any state.
    pub fn peek(&self, seq: u16) -> u64 {
        match self.highest {
            None => FIRST_CYCLE + seq as u64,
            Some(h) => {
                let delta = seq.wrapping_sub(h as u16) as i16;
                // Saturating: a reorder more than 65536 below the first packet
                // cannot be represented and pins at zero instead of panicking.
                h.saturating_add_signed(delta as i64)
            }
        }
    }

    /// The highest extended sequence number seen, if any.
    pub fn highest(&self) -> Option<u64> {
        self.highest
    }

    /// Forget everything, e.g. after an SSRC change.
    pub fn reset(&mut self) {
        self.highest = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_packet_starts_one_cycle_up() {
        let mut u = SeqUnwrapper::new();
        assert_eq!(u.unwrap(5), 65536 + 5);
        assert_eq!(u.highest(), Some(65541));
    }

    #[test]
    fn forward_wrap() {
        let mut u = SeqUnwrapper::new();
        let a = u.unwrap(65534);
        assert_eq!(u.unwrap(65535), a + 1);
        assert_eq!(u.unwrap(0), a + 2);
        assert_eq!(u.unwrap(3), a + 5);
    }

    #[test]
    fn reordered_across_wrap_does_not_move_highest() {
        let mut u = SeqUnwrapper::new();
        let a = u.unwrap(65535);
        let b = u.unwrap(2); // wrapped forward
        assert_eq!(b, a + 3);
        assert_eq!(u.unwrap(65534), a - 1); // late, from before the wrap
        assert_eq!(u.highest(), Some(b));
        assert_eq!(u.unwrap(1), a + 2);
        assert_eq!(u.highest(), Some(b));
    }

    #[test]
    fn reordered_before_first_stays_positive() {
        let mut u = SeqUnwrapper::new();
        let a = u.unwrap(0);
        assert_eq!(u.unwrap(65535), a - 1);
        assert_eq!(a - 1, 65535);
    }

    #[test]
    fn many_cycles_monotonic() {
        let mut u = SeqUnwrapper::new();
        let mut prev = u.unwrap(100);
        let mut seq = 100u16;
        for _ in 0..300_000 {
            seq = seq.wrapping_add(7);
            let e = u.unwrap(seq);
            assert_eq!(e, prev + 7);
            prev = e;
        }
    }

    #[test]
    fn peek_does_not_mutate() {
        let mut u = SeqUnwrapper::new();
        u.unwrap(10);
        assert_eq!(u.peek(20), 65556);
        assert_eq!(u.highest(), Some(65546));
    }
}
