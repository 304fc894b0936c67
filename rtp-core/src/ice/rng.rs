//! A tiny seeded xorshift64* generator for STUN transaction ids and consent
//! jitter. Transaction ids only need to be unique and hard to guess for an
//! off-path attacker on a test network; the load generator wants runs to be
//! reproducible from a seed, which an OS RNG would not give.

/// xorshift64* (Vigna 2016): 64 bits of state, never zero.
#[derive(Debug, Clone)]
pub(crate) struct XorShift {
    state: u64,
}

impl XorShift {
    /// A zero seed would stick at zero forever, so it is replaced by a constant.
    pub(crate) fn new(seed: u64) -> Self {
        let state = if seed == 0 {
            0x9E37_79B9_7F4A_7C15
        } else {
            seed
        };
        Self { state }
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        let mut x = self.state;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.state = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// 12 fresh bytes for a STUN transaction id.
    pub(crate) fn transaction_id(&mut self) -> [u8; 12] {
        let mut id = [0u8; 12];
        id[..8].copy_from_slice(&self.next_u64().to_be_bytes());
        id[8..].copy_from_slice(&self.next_u64().to_be_bytes()[..4]);
        id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_sequence_and_ids_differ() {
        let mut a = XorShift::new(7);
        let mut b = XorShift::new(7);
        let ids: Vec<[u8; 12]> = (0..100).map(|_| a.transaction_id()).collect();
        let again: Vec<[u8; 12]> = (0..100).map(|_| b.transaction_id()).collect();
        assert_eq!(ids, again);
        let mut sorted = ids.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), ids.len());
    }

    #[test]
    fn zero_seed_does_not_stick() {
        let mut r = XorShift::new(0);
        assert_ne!(r.next_u64(), 0);
        assert_ne!(r.next_u64(), r.next_u64());
    }
}
