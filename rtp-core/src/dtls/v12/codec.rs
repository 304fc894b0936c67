//! Byte-level reading and writing of TLS presentation-language structures
//! (RFC 5246 §4): big-endian integers of 1, 2, 3 and 6 bytes and vectors
//! with 1-, 2- or 3-byte length prefixes. The reader never panics: every
//! read is checked and a short buffer is `None`.

/// A cursor over untrusted bytes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    /// Bytes not read yet.
    pub(crate) fn rest(&self) -> &'a [u8] {
        self.buf.get(self.pos..).unwrap_or_default()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.rest().is_empty()
    }

    pub(crate) fn bytes(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let b = self.buf.get(self.pos..end)?;
        self.pos = end;
        Some(b)
    }

    pub(crate) fn u8(&mut self) -> Option<u8> {
        self.bytes(1).map(|b| b[0])
    }

    pub(crate) fn u16(&mut self) -> Option<u16> {
        self.bytes(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }

    pub(crate) fn u24(&mut self) -> Option<u32> {
        self.bytes(3)
            .map(|b| u32::from_be_bytes([0, b[0], b[1], b[2]]))
    }

    pub(crate) fn u48(&mut self) -> Option<u64> {
        self.bytes(6)
            .map(|b| u64::from_be_bytes([0, 0, b[0], b[1], b[2], b[3], b[4], b[5]]))
    }

    /// A vector with a 1-byte length.
    pub(crate) fn vec8(&mut self) -> Option<&'a [u8]> {
        let n = self.u8()?;
        self.bytes(usize::from(n))
    }

    /// A vector with a 2-byte length.
    pub(crate) fn vec16(&mut self) -> Option<&'a [u8]> {
        let n = self.u16()?;
        self.bytes(usize::from(n))
    }

    /// A vector with a 3-byte length.
    pub(crate) fn vec24(&mut self) -> Option<&'a [u8]> {
        let n = self.u24()?;
        self.bytes(n as usize)
    }
}

/// Appends a 2-byte big-endian integer.
pub(crate) fn put_u16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_be_bytes());
}

/// Appends a 3-byte big-endian integer (the caller keeps `v` below 2^24).
pub(crate) fn put_u24(out: &mut Vec<u8>, v: usize) {
    let b = (v as u32).to_be_bytes();
    out.extend_from_slice(&b[1..]);
}

/// Appends a 6-byte big-endian integer.
pub(crate) fn put_u48(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_be_bytes()[2..]);
}

/// Appends `body` with a 1-byte length prefix (the caller keeps it under 256 bytes).
pub(crate) fn put_vec8(out: &mut Vec<u8>, body: &[u8]) {
    out.push(body.len() as u8);
    out.extend_from_slice(body);
}

/// Appends `body` with a 2-byte length prefix (the caller keeps it under 64 KiB).
pub(crate) fn put_vec16(out: &mut Vec<u8>, body: &[u8]) {
    put_u16(out, body.len() as u16);
    out.extend_from_slice(body);
}

/// Appends `body` with a 3-byte length prefix.
pub(crate) fn put_vec24(out: &mut Vec<u8>, body: &[u8]) {
    put_u24(out, body.len());
    out.extend_from_slice(body);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_are_checked() {
        let mut r = Reader::new(&[1, 0, 2, 0, 0, 3, 2, 9, 9, 0xff]);
        assert_eq!(r.u8(), Some(1));
        assert_eq!(r.u16(), Some(2));
        assert_eq!(r.u24(), Some(3));
        assert_eq!(r.vec8(), Some(&[9u8, 9][..]));
        assert_eq!(r.vec8(), None, "length 255 with nothing behind it");
        assert!(Reader::new(&[0, 5, 1]).vec16().is_none());
        assert_eq!(Reader::new(&[0, 0, 1, 7]).vec24(), Some(&[7u8][..]));
        assert_eq!(Reader::new(&[0, 0, 0, 0, 1, 2]).u48(), Some(258));
    }

    #[test]
    fn writes_round_trip() {
        let mut out = Vec::new();
        put_vec8(&mut out, b"ab");
        put_vec16(&mut out, b"cde");
        put_vec24(&mut out, b"f");
        put_u48(&mut out, 0x0102_0304_0506);
        let mut r = Reader::new(&out);
        assert_eq!(r.vec8(), Some(&b"ab"[..]));
        assert_eq!(r.vec16(), Some(&b"cde"[..]));
        assert_eq!(r.vec24(), Some(&b"f"[..]));
        assert_eq!(r.u48(), Some(0x0102_0304_0506));
        assert!(r.is_empty());
    }
}
