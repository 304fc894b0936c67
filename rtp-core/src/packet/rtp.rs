//! RTP fixed header view (RFC 3550 §5.1) with CSRCs, the header-extension
//! block (RFC 3550 §5.3.1, RFC 8285) and padding.
//!
//! [`RtpView`] validates once at parse time and then answers every accessor
//! from the borrowed bytes without copying. [`RtpViewMut`] rewrites header
//! fields in place.

use thiserror::Error;

/// The only RTP version on the wire (RFC 3550 §5.1).
pub const RTP_VERSION: u8 = 2;

const FIXED_HEADER_LEN: usize = 12;

/// Why a datagram is not a valid RTP packet. Counted by reason, never logged per packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ParseError {
    #[error("packet shorter than its header")]
    TooShort,
    #[error("RTP version is not 2")]
    BadVersion,
    #[error("header extension runs past the packet")]
    BadExtension,
    #[error("padding length is zero or longer than the payload")]
    BadPadding,
}

/// A validated, borrowed RTP packet.
#[derive(Debug, Clone, Copy)]
pub struct RtpView<'a> {
    buf: &'a [u8],
    layout: Layout,
}

/// Offsets found by the one validating parse; shared by the view types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Layout {
    /// Offset of the first byte after the header (CSRCs and extension included).
    pub(crate) header_len: usize,
    /// Offset of the extension block's data (after its 4-byte header); 0 when absent.
    pub(crate) ext_data: usize,
    /// Length in bytes of the extension block's data.
    pub(crate) ext_len: usize,
    /// Offset one past the last payload byte (padding excluded).
    pub(crate) payload_end: usize,
}

impl Layout {
    pub(crate) fn parse(buf: &[u8]) -> Result<Self, ParseError> {
        if buf.len() < FIXED_HEADER_LEN {
            return Err(ParseError::TooShort);
        }
        if buf[0] >> 6 != RTP_VERSION {
            return Err(ParseError::BadVersion);
        }
        let csrc_count = (buf[0] & 0x0f) as usize;
        let mut header_len = FIXED_HEADER_LEN + 4 * csrc_count;
        if buf.len() < header_len {
            return Err(ParseError::TooShort);
        }
        let (mut ext_data, mut ext_len) = (0, 0);
        if buf[0] & 0x10 != 0 {
            let ext_hdr = buf
                .get(header_len..header_len + 4)
                .ok_or(ParseError::BadExtension)?;
            ext_len = 4 * u16::from_be_bytes([ext_hdr[2], ext_hdr[3]]) as usize;
            ext_data = header_len + 4;
            header_len = ext_data + ext_len;
            if buf.len() < header_len {
                return Err(ParseError::BadExtension);
            }
        }
        let mut payload_end = buf.len();
        if buf[0] & 0x20 != 0 {
            let pad = buf[buf.len() - 1] as usize;
            if pad == 0 || pad > buf.len() - header_len {
                return Err(ParseError::BadPadding);
            }
            payload_end -= pad;
        }
        Ok(Self {
            header_len,
            ext_data,
            ext_len,
            payload_end,
        })
    }
}

impl<'a> RtpView<'a> {
    /// Validate `buf` as an RTP packet.
    pub fn parse(buf: &'a [u8]) -> Result<Self, ParseError> {
        let layout = Layout::parse(buf)?;
        Ok(Self { buf, layout })
    }

    /// The whole packet.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.buf
    }
    pub fn marker(&self) -> bool {
        self.buf[1] & 0x80 != 0
    }
    pub fn payload_type(&self) -> u8 {
        self.buf[1] & 0x7f
    }
    pub fn seq(&self) -> u16 {
        u16::from_be_bytes([self.buf[2], self.buf[3]])
    }
    pub fn ts(&self) -> u32 {
        u32::from_be_bytes([self.buf[4], self.buf[5], self.buf[6], self.buf[7]])
    }
    pub fn ssrc(&self) -> u32 {
        u32::from_be_bytes([self.buf[8], self.buf[9], self.buf[10], self.buf[11]])
    }
    pub fn has_padding(&self) -> bool {
        self.buf[0] & 0x20 != 0
    }
    pub fn has_extension(&self) -> bool {
        self.buf[0] & 0x10 != 0
    }
    pub fn csrc_count(&self) -> usize {
        (self.buf[0] & 0x0f) as usize
    }
    /// The `i`-th CSRC, if present.
    pub fn csrc(&self, i: usize) -> Option<u32> {
        if i >= self.csrc_count() {
            return None;
        }
        let o = FIXED_HEADER_LEN + 4 * i;
        Some(u32::from_be_bytes([
            self.buf[o],
            self.buf[o + 1],
            self.buf[o + 2],
            self.buf[o + 3],
        ]))
    }
    /// Header length in bytes: fixed header, CSRCs and extension block.
    pub fn header_len(&self) -> usize {
        self.layout.header_len
    }
    /// The payload, padding excluded.
    pub fn payload(&self) -> &'a [u8] {
        &self.buf[self.layout.header_len..self.layout.payload_end]
    }
    /// Number of padding bytes at the end (0 when the P bit is clear).
    pub fn padding_len(&self) -> usize {
        self.buf.len() - self.layout.payload_end
    }
    /// A packet whose payload is empty and whose padding is not: a probe or keep-alive.
    pub fn is_padding_only(&self) -> bool {
        self.payload().is_empty() && self.padding_len() > 0
    }
    /// The extension block's profile word (0xBEDE one-byte, 0x100x two-byte), if any.
    pub fn extension_profile(&self) -> Option<u16> {
        if !self.has_extension() {
            return None;
        }
        let o = self.layout.ext_data - 4;
        Some(u16::from_be_bytes([self.buf[o], self.buf[o + 1]]))
    }
    /// The raw extension block data (after its 4-byte header).
    pub fn extension_data(&self) -> &'a [u8] {
        &self.buf[self.layout.ext_data..self.layout.ext_data + self.layout.ext_len]
    }
}

/// A validated RTP packet whose header fields can be rewritten in place.
#[derive(Debug)]
pub struct RtpViewMut<'a> {
    buf: &'a mut [u8],
    layout: Layout,
}

impl<'a> RtpViewMut<'a> {
    /// Validate `buf` as an RTP packet for in-place rewriting.
    pub fn parse(buf: &'a mut [u8]) -> Result<Self, ParseError> {
        let layout = Layout::parse(buf)?;
        Ok(Self { buf, layout })
    }

    /// A read-only view of the same packet.
    pub fn view(&self) -> RtpView<'_> {
        RtpView {
            buf: self.buf,
            layout: self.layout,
        }
    }
    pub fn set_marker(&mut self, marker: bool) {
        self.buf[1] = (self.buf[1] & 0x7f) | ((marker as u8) << 7);
    }
    pub fn set_payload_type(&mut self, pt: u8) {
        self.buf[1] = (self.buf[1] & 0x80) | (pt & 0x7f);
    }
    pub fn set_seq(&mut self, seq: u16) {
        self.buf[2..4].copy_from_slice(&seq.to_be_bytes());
    }
    pub fn set_ts(&mut self, ts: u32) {
        self.buf[4..8].copy_from_slice(&ts.to_be_bytes());
    }
    pub fn set_ssrc(&mut self, ssrc: u32) {
        self.buf[8..12].copy_from_slice(&ssrc.to_be_bytes());
    }
    /// The payload, mutable (padding excluded).
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buf[self.layout.header_len..self.layout.payload_end]
    }
    /// The raw extension block data (after its 4-byte header), mutable; empty when absent.
    /// Used to rewrite extension values in place (see `set_extension_value`).
    pub fn extension_data_mut(&mut self) -> &mut [u8] {
        &mut self.buf[self.layout.ext_data..self.layout.ext_data + self.layout.ext_len]
    }
    /// The underlying buffer.
    pub fn into_bytes(self) -> &'a mut [u8] {
        self.buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(seq: u16, ts: u32) -> Vec<u8> {
        let mut p = vec![0x80, 96];
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&ts.to_be_bytes());
        p.extend_from_slice(&0x1234_5678u32.to_be_bytes());
        p.extend_from_slice(b"payload");
        p
    }

    #[test]
    fn fixed_header_fields() {
        let p = packet(65535, 90000);
        let v = RtpView::parse(&p).unwrap();
        assert_eq!(v.seq(), 65535);
        assert_eq!(v.ts(), 90000);
        assert_eq!(v.ssrc(), 0x1234_5678);
        assert_eq!(v.payload_type(), 96);
        assert!(!v.marker());
        assert_eq!(v.payload(), b"payload");
        assert_eq!(v.header_len(), 12);
    }

    #[test]
    fn in_place_setters() {
        let mut p = packet(1, 2);
        let mut m = RtpViewMut::parse(&mut p).unwrap();
        m.set_seq(7);
        m.set_ts(9);
        m.set_ssrc(0xdead_beef);
        m.set_marker(true);
        m.set_payload_type(111);
        let v = m.view();
        assert_eq!((v.seq(), v.ts(), v.ssrc()), (7, 9, 0xdead_beef));
        assert!(v.marker());
        assert_eq!(v.payload_type(), 111);
        assert_eq!(v.payload(), b"payload");
    }

    #[test]
    fn padding_and_errors() {
        let mut p = packet(1, 2);
        p[0] |= 0x20;
        p.extend_from_slice(&[0, 0, 3]);
        let v = RtpView::parse(&p).unwrap();
        assert_eq!(v.payload(), b"payload");
        assert_eq!(v.padding_len(), 3);
        *p.last_mut().unwrap() = 0;
        assert_eq!(RtpView::parse(&p).unwrap_err(), ParseError::BadPadding);
        assert_eq!(RtpView::parse(&p[..11]).unwrap_err(), ParseError::TooShort);
        let mut q = packet(1, 2);
        q[0] = 0x40;
        assert_eq!(RtpView::parse(&q).unwrap_err(), ParseError::BadVersion);
        let mut r = packet(1, 2);
        r[0] |= 0x10; // extension bit without a block that fits
        r.truncate(14);
        assert_eq!(RtpView::parse(&r).unwrap_err(), ParseError::BadExtension);
    }
}
