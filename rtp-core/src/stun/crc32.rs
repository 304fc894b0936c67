//! CRC-32 (IEEE 802.3, reflected polynomial 0xEDB88320) for the STUN
//! FINGERPRINT attribute (RFC 8489 §14.7). The lookup table is computed at
//! compile time so the per-message cost is one table lookup per byte.

const POLY: u32 = 0xEDB8_8320;

/// Byte-at-a-time lookup table for the reflected polynomial.
const TABLE: [u32; 256] = build_table();

const fn build_table() -> [u32; 256] {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut bit = 0;
        while bit < 8 {
            c = if c & 1 != 0 { POLY ^ (c >> 1) } else { c >> 1 };
            bit += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
}

/// A running CRC-32 so a checksum can span several slices.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Crc32 {
    state: u32,
}

impl Crc32 {
    pub(crate) fn new() -> Self {
        Self { state: !0 }
    }

    pub(crate) fn update(&mut self, data: &[u8]) {
        let mut c = self.state;
        for &b in data {
            c = TABLE[((c ^ u32::from(b)) & 0xff) as usize] ^ (c >> 8);
        }
        self.state = c;
    }

    pub(crate) fn finish(self) -> u32 {
        !self.state
    }
}

/// CRC-32 (IEEE) of `data`, as used by FINGERPRINT before the XOR with
/// [`super::FINGERPRINT_XOR`].
pub fn crc32(data: &[u8]) -> u32 {
    let mut c = Crc32::new();
    c.update(data);
    c.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_value_matches_the_standard() {
        // The catalogued check value of CRC-32/ISO-HDLC over "123456789".
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn empty_input_is_zero() {
        assert_eq!(crc32(&[]), 0);
    }

    #[test]
    fn split_updates_equal_one_shot() {
        let data: Vec<u8> = (0u16..300).map(|i| (i * 7) as u8).collect();
        let mut c = Crc32::new();
        c.update(&data[..13]);
        c.update(&data[13..]);
        assert_eq!(c.finish(), crc32(&data));
    }
}
