//! RTP header extension elements (RFC 8285 §4.2 one-byte form, §4.3 two-byte
//! form): a zero-copy iterator, lookup by id, in-place value rewrite, typed
//! parsers for the values an SFU reads (transport-wide sequence number,
//! RFC 6464 audio level, abs-send-time) and a header writer for tests and
//! load generators.
//!
//! Parsing never fails loudly: a malformed element simply ends iteration,
//! because one bad extension must not cost us the media payload behind it.

use thiserror::Error;

use super::rtp::{RtpView, RtpViewMut, RTP_VERSION};

/// Profile word of the one-byte header form (RFC 8285 §4.2).
pub const ONE_BYTE_PROFILE: u16 = 0xBEDE;
/// Profile word of the two-byte header form, low 4 "appbits" zero (RFC 8285 §4.3).
pub const TWO_BYTE_PROFILE: u16 = 0x1000;

/// Why an extension could not be rewritten or a header could not be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ExtError {
    /// The packet has no extension element with that id.
    #[error("no extension element with that id")]
    NotFound,
    /// The new value's length differs from the element's current length.
    #[error("new value length differs from the existing element")]
    LengthMismatch,
    /// Id outside 1..=255, or outside 1..=14 where the one-byte form is required.
    #[error("extension id out of range")]
    BadId,
    /// Value longer than 255 bytes.
    #[error("extension value too long")]
    ValueTooLong,
    /// More than 15 CSRCs.
    #[error("more than 15 CSRCs")]
    TooManyCsrcs,
    /// The header does not fit the output buffer.
    #[error("output buffer too small")]
    BufferTooSmall,
}

/// Which RFC 8285 element layout an extension block uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExtForm {
    /// One-byte headers: 4-bit id, 4-bit length-minus-one.
    OneByte,
    /// Two-byte headers: 8-bit id, 8-bit length.
    TwoByte,
}

impl ExtForm {
    /// The form named by an extension block's profile word, if it is an RFC 8285 one.
    pub fn from_profile(profile: u16) -> Option<Self> {
        if profile == ONE_BYTE_PROFILE {
            Some(Self::OneByte)
        } else if profile & 0xfff0 == TWO_BYTE_PROFILE {
            Some(Self::TwoByte)
        } else {
            None
        }
    }
}

/// Find the next element at or after `*pos`: `(id, value offset, value length)`.
/// Shared by the read-only iterator and the in-place rewrite so both agree on
/// where an element lies. Returns `None` (and parks `*pos` at the end) on the
/// end of data, a terminating id 15, or any malformed length.
fn next_element(form: ExtForm, data: &[u8], pos: &mut usize) -> Option<(u8, usize, usize)> {
    loop {
        let b = *data.get(*pos)?;
        let (id, start, len) = match form {
            ExtForm::OneByte => {
                if b == 0 {
                    // Padding byte between or after elements.
                    *pos += 1;
                    continue;
                }
                let id = b >> 4;
                // Id 15 stops processing (RFC 8285 §4.2); id 0 with a
                // non-zero length is not padding and not an element.
                if id == 15 || id == 0 {
                    *pos = data.len();
                    return None;
                }
                (id, *pos + 1, (b & 0x0f) as usize + 1)
            }
            ExtForm::TwoByte => {
                if b == 0 {
                    *pos += 1;
                    continue;
                }
                let Some(&len) = data.get(*pos + 1) else {
                    *pos = data.len();
                    return None;
                };
                (b, *pos + 2, len as usize)
            }
        };
        if start + len > data.len() {
            *pos = data.len();
            return None;
        }
        *pos = start + len;
        return Some((id, start, len));
    }
}

/// The elements of one extension block, borrowed.
#[derive(Debug, Clone, Copy)]
pub struct Extensions<'a> {
    form: Option<ExtForm>,
    data: &'a [u8],
}

impl<'a> Extensions<'a> {
    /// Elements of a block with this profile word and data; an unknown
    /// profile yields no elements.
    pub fn new(profile: u16, data: &'a [u8]) -> Self {
        Self {
            form: ExtForm::from_profile(profile),
            data,
        }
    }
    /// The element layout, or `None` for a non-RFC 8285 profile.
    pub fn form(&self) -> Option<ExtForm> {
        self.form
    }
    /// Iterate `(id, value)` over the elements.
    pub fn iter(&self) -> ExtensionIter<'a> {
        ExtensionIter {
            form: self.form,
            data: self.data,
            pos: 0,
        }
    }
    /// The value of the first element with `id`.
    pub fn get(&self, id: u8) -> Option<&'a [u8]> {
        self.iter().find(|&(i, _)| i == id).map(|(_, v)| v)
    }
}

impl<'a> IntoIterator for Extensions<'a> {
    type Item = (u8, &'a [u8]);
    type IntoIter = ExtensionIter<'a>;
    fn into_iter(self) -> ExtensionIter<'a> {
        self.iter()
    }
}

/// Iterator over `(id, value)` extension elements; stops at the end of the
/// block, at id 15 (one-byte form) or at the first malformed length.
#[derive(Debug, Clone)]
pub struct ExtensionIter<'a> {
    form: Option<ExtForm>,
    data: &'a [u8],
    pos: usize,
}

impl<'a> Iterator for ExtensionIter<'a> {
    type Item = (u8, &'a [u8]);
    fn next(&mut self) -> Option<Self::Item> {
        let (id, start, len) = next_element(self.form?, self.data, &mut self.pos)?;
        Some((id, self.data.get(start..start + len)?))
    }
}

impl<'a> RtpView<'a> {
    /// The packet's extension elements (empty when there is no block).
    pub fn extensions(&self) -> Extensions<'a> {
        match self.extension_profile() {
            Some(p) => Extensions::new(p, self.extension_data()),
            None => Extensions {
                form: None,
                data: &[],
            },
        }
    }
    /// The value of the first extension element with `id`.
    pub fn extension(&self, id: u8) -> Option<&'a [u8]> {
        self.extensions().get(id)
    }
}

impl RtpViewMut<'_> {
    /// Overwrite the value of the first element with `id` in place. The new
    /// value must have the element's current length: nothing moves, so the
    /// payload and any SRTP auth tag position stay valid.
    pub fn set_extension_value(&mut self, id: u8, value: &[u8]) -> Result<(), ExtError> {
        let form = self
            .view()
            .extension_profile()
            .and_then(ExtForm::from_profile)
            .ok_or(ExtError::NotFound)?;
        let data = self.extension_data_mut();
        let mut pos = 0;
        while let Some((i, start, len)) = next_element(form, data, &mut pos) {
            if i == id {
                if len != value.len() {
                    return Err(ExtError::LengthMismatch);
                }
                let dst = data.get_mut(start..start + len).ok_or(ExtError::NotFound)?;
                dst.copy_from_slice(value);
                return Ok(());
            }
        }
        Err(ExtError::NotFound)
    }
}

impl RtpViewMut<'_> {
    /// Renumber the header-extension elements in place: `map(id)` gives the new id, or `None`
    /// to remove the element. Removal overwrites the element (header and value) with zero
    /// bytes, which RFC 8285 §4.2/§4.3 defines as padding, so nothing moves and the packet
    /// length stays the same. A one-byte-form id must stay in 1..=14; anything else is removed.
    ///
    /// An SFU forwards packets between peers that negotiated their own extmap ids: this is how
    /// the publisher's ids become the ids every subscriber was offered, and how extensions
    /// that only make sense on the publisher's connection (its `mid`, `rid`) are dropped.
    pub fn remap_extensions(&mut self, map: impl Fn(u8) -> Option<u8>) {
        let Some(form) = self
            .view()
            .extension_profile()
            .and_then(ExtForm::from_profile)
        else {
            return;
        };
        let data = self.extension_data_mut();
        let mut pos = 0;
        while let Some((id, start, len)) = next_element(form, data, &mut pos) {
            let header = match form {
                ExtForm::OneByte => start - 1,
                ExtForm::TwoByte => start - 2,
            };
            match (form, map(id)) {
                (ExtForm::OneByte, Some(new @ 1..=14)) => {
                    data[header] = (new << 4) | (data[header] & 0x0f);
                }
                (ExtForm::TwoByte, Some(new @ 1..=255)) => data[header] = new,
                _ => data[header..start + len].fill(0),
            }
        }
    }
}

/// The transport-wide sequence number (draft-holmer-rmcat-transport-wide-cc-extensions
/// §2): the first two bytes of the value, big-endian.
pub fn transport_cc_seq(value: &[u8]) -> Option<u16> {
    match value {
        [a, b, ..] => Some(u16::from_be_bytes([*a, *b])),
        _ => None,
    }
}

/// Client-to-mixer audio level (RFC 6464 §3): `(voice_activity, level)` where
/// level is in -dBov, 0 (loudest) ..= 127 (silence).
pub fn audio_level(value: &[u8]) -> Option<(bool, u8)> {
    let b = *value.first()?;
    Some((b & 0x80 != 0, b & 0x7f))
}

/// abs-send-time: a 24-bit 6.18 fixed-point seconds value (webrtc.org
/// abs-send-time extension). Requires exactly three bytes.
pub fn abs_send_time(value: &[u8]) -> Option<u32> {
    match value {
        [a, b, c] => Some(u32::from_be_bytes([0, *a, *b, *c])),
        _ => None,
    }
}

/// The three wire bytes of an abs-send-time value (low 24 bits of `v`).
pub fn abs_send_time_bytes(v: u32) -> [u8; 3] {
    let b = v.to_be_bytes();
    [b[1], b[2], b[3]]
}

/// Fields of an RTP header for [`write_rtp_header`].
#[derive(Debug, Clone, Copy, Default)]
pub struct RtpHeader<'a> {
    /// Payload type (7 bits).
    pub pt: u8,
    /// Marker bit.
    pub marker: bool,
    /// Sequence number.
    pub seq: u16,
    /// RTP timestamp.
    pub ts: u32,
    /// Synchronisation source.
    pub ssrc: u32,
    /// Contributing sources, at most 15.
    pub csrcs: &'a [u32],
    /// Extension elements `(id, value)`; empty writes no extension block.
    pub extensions: &'a [(u8, &'a [u8])],
}

/// Write an RTP header (no padding bit) into `out` and return its length; the
/// payload goes at `out[len..]`. Extensions use the one-byte form when every
/// id is 1..=14 and every value 1..=16 bytes long, the two-byte form otherwise.
pub fn write_rtp_header(h: &RtpHeader<'_>, out: &mut [u8]) -> Result<usize, ExtError> {
    if h.csrcs.len() > 15 {
        return Err(ExtError::TooManyCsrcs);
    }
    let one_byte = h
        .extensions
        .iter()
        .all(|&(id, v)| (1..=14).contains(&id) && (1..=16).contains(&v.len()));
    let mut ext_len = 0usize;
    for &(id, v) in h.extensions {
        if id == 0 {
            return Err(ExtError::BadId);
        }
        if v.len() > 255 {
            return Err(ExtError::ValueTooLong);
        }
        ext_len += v.len() + if one_byte { 1 } else { 2 };
    }
    let ext_words = ext_len.div_ceil(4);
    if ext_words > u16::MAX as usize {
        return Err(ExtError::ValueTooLong);
    }
    let fixed = 12 + 4 * h.csrcs.len();
    let total = if h.extensions.is_empty() {
        fixed
    } else {
        fixed + 4 + 4 * ext_words
    };
    let out = out.get_mut(..total).ok_or(ExtError::BufferTooSmall)?;
    let x = if h.extensions.is_empty() { 0 } else { 0x10 };
    out[0] = (RTP_VERSION << 6) | x | h.csrcs.len() as u8;
    out[1] = ((h.marker as u8) << 7) | (h.pt & 0x7f);
    out[2..4].copy_from_slice(&h.seq.to_be_bytes());
    out[4..8].copy_from_slice(&h.ts.to_be_bytes());
    out[8..12].copy_from_slice(&h.ssrc.to_be_bytes());
    for (i, c) in h.csrcs.iter().enumerate() {
        out[12 + 4 * i..16 + 4 * i].copy_from_slice(&c.to_be_bytes());
    }
    if h.extensions.is_empty() {
        return Ok(total);
    }
    let profile = if one_byte {
        ONE_BYTE_PROFILE
    } else {
        TWO_BYTE_PROFILE
    };
    out[fixed..fixed + 2].copy_from_slice(&profile.to_be_bytes());
    out[fixed + 2..fixed + 4].copy_from_slice(&(ext_words as u16).to_be_bytes());
    let mut o = fixed + 4;
    for &(id, v) in h.extensions {
        if one_byte {
            out[o] = (id << 4) | (v.len() as u8 - 1);
            o += 1;
        } else {
            out[o] = id;
            out[o + 1] = v.len() as u8;
            o += 2;
        }
        out[o..o + v.len()].copy_from_slice(v);
        o += v.len();
    }
    // Zero padding to the 32-bit boundary (RFC 8285 §4.1).
    out[o..total].fill(0);
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(csrcs: &[u32], exts: &[(u8, &[u8])], payload: &[u8]) -> Vec<u8> {
        let mut buf = vec![0u8; 1500];
        let h = RtpHeader {
            pt: 96,
            marker: true,
            seq: 65535,
            ts: 90000,
            ssrc: 0x1111_2222,
            csrcs,
            extensions: exts,
        };
        let n = write_rtp_header(&h, &mut buf).unwrap();
        buf.truncate(n);
        buf.extend_from_slice(payload);
        buf
    }

    #[test]
    fn one_byte_round_trip() {
        let p = build(
            &[7, 8],
            &[(1, &[0xab, 0xcd]), (3, &[0x7f]), (14, &[1, 2, 3])],
            b"pl",
        );
        let v = RtpView::parse(&p).unwrap();
        assert_eq!(v.extension_profile(), Some(ONE_BYTE_PROFILE));
        assert_eq!(v.csrc(1), Some(8));
        assert!(v.marker());
        assert_eq!(v.payload(), b"pl");
        let all: Vec<_> = v.extensions().iter().collect();
        assert_eq!(
            all,
            vec![
                (1, &[0xab, 0xcd][..]),
                (3, &[0x7f][..]),
                (14, &[1, 2, 3][..])
            ]
        );
        assert_eq!(v.extension(3), Some(&[0x7f][..]));
        assert_eq!(v.extension(2), None);
        assert_eq!(transport_cc_seq(v.extension(1).unwrap()), Some(0xabcd));
        assert_eq!(audio_level(v.extension(3).unwrap()), Some((false, 127)));
        assert_eq!(abs_send_time(v.extension(14).unwrap()), Some(0x010203));
    }

    #[test]
    fn two_byte_chosen_for_big_ids_and_lengths() {
        let long = [9u8; 20];
        let p = build(&[], &[(1, &[]), (200, &long), (2, &[5])], b"x");
        let v = RtpView::parse(&p).unwrap();
        assert_eq!(v.extension_profile(), Some(TWO_BYTE_PROFILE));
        assert_eq!(v.extension(1), Some(&[][..]));
        assert_eq!(v.extension(200), Some(&long[..]));
        assert_eq!(v.extension(2), Some(&[5][..]));
        assert_eq!(v.payload(), b"x");
    }

    #[test]
    fn padding_id15_and_malformed() {
        // One-byte: pad, id 1 len 1, pad, pad, id 15 stops.
        let data = [0, 0x10, 0xaa, 0, 0, 0xf0, 0x20, 0xbb];
        let e: Vec<_> = Extensions::new(ONE_BYTE_PROFILE, &data).iter().collect();
        assert_eq!(e, vec![(1, &[0xaa][..])]);
        // Length running past the block ends iteration.
        let data = [0x10, 0xaa, 0x23, 0x01];
        let e: Vec<_> = Extensions::new(ONE_BYTE_PROFILE, &data).iter().collect();
        assert_eq!(e, vec![(1, &[0xaa][..])]);
        // Two-byte with appbits, padding and a truncated tail.
        let data = [0, 5, 2, 1, 2, 0, 7, 9];
        let e: Vec<_> = Extensions::new(0x100f, &data).iter().collect();
        assert_eq!(e, vec![(5, &[1, 2][..])]);
        let data = [5];
        assert_eq!(Extensions::new(0x1000, &data).iter().count(), 0);
        // Unknown profile yields nothing.
        assert_eq!(Extensions::new(0x1234, &[0x10, 0xaa]).iter().count(), 0);
    }

    #[test]
    fn rewrite_in_place() {
        let mut p = build(&[], &[(1, &[0, 1]), (2, &[1, 2, 3])], b"payload");
        let before = p.len();
        let mut m = RtpViewMut::parse(&mut p).unwrap();
        m.set_extension_value(1, &[0x12, 0x34]).unwrap();
        m.set_extension_value(2, &abs_send_time_bytes(0xfedcba))
            .unwrap();
        assert_eq!(
            m.set_extension_value(1, &[1]),
            Err(ExtError::LengthMismatch)
        );
        assert_eq!(m.set_extension_value(9, &[1]), Err(ExtError::NotFound));
        let v = m.view();
        assert_eq!(transport_cc_seq(v.extension(1).unwrap()), Some(0x1234));
        assert_eq!(abs_send_time(v.extension(2).unwrap()), Some(0xfedcba));
        assert_eq!(v.payload(), b"payload");
        assert_eq!(p.len(), before);

        let mut q = build(&[], &[], b"x");
        let mut m = RtpViewMut::parse(&mut q).unwrap();
        assert_eq!(m.set_extension_value(1, &[1]), Err(ExtError::NotFound));
    }

    #[test]
    fn writer_errors() {
        let mut small = [0u8; 15];
        let h = RtpHeader {
            extensions: &[(1, &[1])],
            ..Default::default()
        };
        assert_eq!(
            write_rtp_header(&h, &mut small),
            Err(ExtError::BufferTooSmall)
        );
        let h = RtpHeader {
            extensions: &[(0, &[1])],
            ..Default::default()
        };
        assert_eq!(write_rtp_header(&h, &mut [0; 64]), Err(ExtError::BadId));
        let c = [0u32; 16];
        let h = RtpHeader {
            csrcs: &c,
            ..Default::default()
        };
        assert_eq!(
            write_rtp_header(&h, &mut [0; 128]),
            Err(ExtError::TooManyCsrcs)
        );
        assert_eq!(audio_level(&[0x85]), Some((true, 5)));
        assert_eq!(audio_level(&[]), None);
        assert_eq!(abs_send_time(&[1, 2]), None);
        assert_eq!(transport_cc_seq(&[1]), None);
    }

    proptest::proptest! {
        #[test]
        fn random_bytes_never_panic(mut d in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..120)) {
            if let Ok(v) = RtpView::parse(&d) {
                let n: usize = v.extensions().iter().map(|(_, x)| x.len()).sum();
                proptest::prop_assert!(n <= v.extension_data().len());
                let _ = (v.extension(1), v.payload(), v.csrc(3));
            }
            // Force an RFC 8285 profile onto random data so the element walk is exercised.
            if d.len() >= 16 {
                d[0] = 0x90;
                d[12..14].copy_from_slice(&[0xbe, 0xde]);
                if let Ok(mut m) = RtpViewMut::parse(&mut d) {
                    let _ = m.set_extension_value(1, &[0, 0]);
                    let _ = m.view().extensions().iter().count();
                }
                d[12..14].copy_from_slice(&[0x10, 0x03]);
                if let Ok(mut m) = RtpViewMut::parse(&mut d) {
                    let _ = m.set_extension_value(200, &[0]);
                    let _ = m.view().extensions().iter().count();
                }
            }
        }

        #[test]
        fn header_round_trip(
            seq in proptest::prelude::any::<u16>(),
            ts in proptest::prelude::any::<u32>(),
            ncsrc in 0usize..16,
            ids in proptest::collection::btree_set(1u8..=255, 0..8),
            len in 0usize..20,
        ) {
            let csrcs: Vec<u32> = (0..ncsrc as u32).collect();
            let vals: Vec<Vec<u8>> = ids.iter().map(|&i| vec![i; len]).collect();
            let exts: Vec<(u8, &[u8])> = ids.iter().zip(&vals).map(|(&i, v)| (i, &v[..])).collect();
            let p = build(&csrcs, &exts, b"pay");
            let mut p2 = p.clone();
            p2[2..4].copy_from_slice(&seq.to_be_bytes());
            p2[4..8].copy_from_slice(&ts.to_be_bytes());
            let v = RtpView::parse(&p2).unwrap();
            proptest::prop_assert_eq!((v.seq(), v.ts(), v.csrc_count()), (seq, ts, ncsrc));
            proptest::prop_assert_eq!(v.extensions().iter().collect::<Vec<_>>(), exts);
            proptest::prop_assert_eq!(v.payload(), b"pay");
        }
    }

    #[test]
    fn remap_renumbers_and_pads_out_dropped_elements() {
        let mut buf = [0u8; 64];
        let tcc = [0x12, 0x34];
        let header = RtpHeader {
            pt: 111,
            seq: 7,
            ssrc: 9,
            extensions: &[(1, &[0x85]), (3, &tcc), (4, b"0")],
            ..RtpHeader::default()
        };
        let n = write_rtp_header(&header, &mut buf).unwrap();
        buf[n..n + 3].copy_from_slice(b"opu");
        let len = n + 3;
        let mut m = RtpViewMut::parse(&mut buf[..len]).unwrap();
        // Publisher: 1 = audio level, 3 = transport-cc, 4 = mid. Canonical: audio level 4,
        // transport-cc 3, mid dropped.
        m.remap_extensions(|id| match id {
            1 => Some(4),
            3 => Some(3),
            _ => None,
        });
        let v = RtpView::parse(&buf[..len]).unwrap();
        let got: Vec<(u8, Vec<u8>)> = v
            .extensions()
            .iter()
            .map(|(i, d)| (i, d.to_vec()))
            .collect();
        assert_eq!(got, vec![(4, vec![0x85]), (3, tcc.to_vec())]);
        assert_eq!(v.payload(), b"opu");
        assert_eq!(v.seq(), 7);

        // Two-byte form keeps ids above 14.
        let header = RtpHeader {
            extensions: &[(20, &[1, 2]), (21, &[])],
            ..RtpHeader::default()
        };
        let n = write_rtp_header(&header, &mut buf).unwrap();
        let mut m = RtpViewMut::parse(&mut buf[..n]).unwrap();
        m.remap_extensions(|id| (id == 20).then_some(30));
        let v = RtpView::parse(&buf[..n]).unwrap();
        let got: Vec<(u8, Vec<u8>)> = v
            .extensions()
            .iter()
            .map(|(i, d)| (i, d.to_vec()))
            .collect();
        assert_eq!(got, vec![(30, vec![1, 2])]);
    }
}
