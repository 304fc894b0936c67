//! RTX retransmission payload format (RFC 4588 §4): a retransmitted packet
//! travels on its own SSRC / payload type / sequence space, with the original
//! sequence number (OSN) as the first two payload bytes.
//!
//! Both directions copy into a caller buffer; the header (CSRCs and extension
//! block included) is kept, padding is dropped (RFC 4588 §4: padding of the
//! original is not retransmitted, and padding on an RTX packet belongs to the
//! RTX packet only).

use thiserror::Error;

use crate::packet::{ParseError, RtpView, RtpViewMut};

/// Length of the original sequence number field.
const OSN_LEN: usize = 2;

/// Why an RTX packet could not be built or unpacked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum RtxError {
    /// The input is not a valid RTP packet.
    #[error("invalid RTP packet: {0}")]
    Parse(#[from] ParseError),
    /// The output buffer cannot hold the result.
    #[error("output buffer of {have} bytes, {need} needed")]
    BufferTooSmall {
        /// Bytes needed.
        need: usize,
        /// Bytes available.
        have: usize,
    },
    /// The RTX payload is shorter than the 2-byte OSN (e.g. a padding-only probe).
    #[error("RTX payload carries no original sequence number")]
    MissingOsn,
}

/// Build the RTX packet for `original` into `out`: its header with
/// `rtx_ssrc`, `rtx_pt`, `rtx_seq` (marker, timestamp, CSRCs and extensions
/// kept), then the OSN, then the original payload without padding. Returns the
/// length written.
pub fn rtx_encapsulate(
    original: &[u8],
    rtx_ssrc: u32,
    rtx_pt: u8,
    rtx_seq: u16,
    out: &mut [u8],
) -> Result<usize, RtxError> {
    let view = RtpView::parse(original)?;
    let hl = view.header_len();
    let payload = view.payload();
    let need = hl + OSN_LEN + payload.len();
    let have = out.len();
    let out = out
        .get_mut(..need)
        .ok_or(RtxError::BufferTooSmall { need, have })?;
    out[..hl].copy_from_slice(&original[..hl]);
    out[hl..hl + OSN_LEN].copy_from_slice(&view.seq().to_be_bytes());
    out[hl + OSN_LEN..].copy_from_slice(payload);
    out[0] &= !0x20; // padding dropped
    rewrite(out, rtx_ssrc, rtx_pt, rtx_seq)?;
    Ok(need)
}

/// Rebuild the original packet from an RTX packet into `out`: its header
/// with `original_ssrc`, `original_pt` and the OSN as sequence number, then
/// the payload after the OSN (RTX padding dropped). Returns the length written.
pub fn rtx_decapsulate(
    rtx: &[u8],
    original_ssrc: u32,
    original_pt: u8,
    out: &mut [u8],
) -> Result<usize, RtxError> {
    let view = RtpView::parse(rtx)?;
    let hl = view.header_len();
    let (osn, payload) = match view.payload() {
        [a, b, rest @ ..] => (u16::from_be_bytes([*a, *b]), rest),
        _ => return Err(RtxError::MissingOsn),
    };
    let need = hl + payload.len();
    let have = out.len();
    let out = out
        .get_mut(..need)
        .ok_or(RtxError::BufferTooSmall { need, have })?;
    out[..hl].copy_from_slice(&rtx[..hl]);
    out[hl..].copy_from_slice(payload);
    out[0] &= !0x20;
    rewrite(out, original_ssrc, original_pt, osn)?;
    Ok(need)
}

fn rewrite(pkt: &mut [u8], ssrc: u32, pt: u8, seq: u16) -> Result<(), RtxError> {
    // Re-parsing our own output cannot fail (same header, padding cleared),
    // but propagating keeps this path panic-free.
    let mut m = RtpViewMut::parse(pkt)?;
    m.set_ssrc(ssrc);
    m.set_payload_type(pt);
    m.set_seq(seq);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A packet with 1 CSRC, a one-byte-header extension and optional padding.
    fn original(seq: u16, payload: &[u8], padding: u8) -> Vec<u8> {
        let mut p = vec![0x80 | 0x10 | 0x01, 0x80 | 96];
        if padding > 0 {
            p[0] |= 0x20;
        }
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&123_456u32.to_be_bytes());
        p.extend_from_slice(&0x1111_2222u32.to_be_bytes());
        p.extend_from_slice(&0xcafe_babeu32.to_be_bytes()); // CSRC
        p.extend_from_slice(&[0xbe, 0xde, 0, 1, 0x10, 0xaa, 0, 0]); // ext
        p.extend_from_slice(payload);
        if padding > 0 {
            p.extend(std::iter::repeat_n(0u8, padding as usize - 1));
            p.push(padding);
        }
        p
    }

    #[test]
    fn round_trip_keeps_header_and_payload() {
        let orig = original(65000, b"frame data", 0);
        let mut rtx = [0u8; 64];
        let n = rtx_encapsulate(&orig, 0x3333_4444, 97, 7, &mut rtx).unwrap();
        assert_eq!(n, orig.len() + 2);
        let v = RtpView::parse(&rtx[..n]).unwrap();
        assert_eq!((v.ssrc(), v.payload_type(), v.seq()), (0x3333_4444, 97, 7));
        assert_eq!(v.ts(), 123_456);
        assert!(v.marker());
        assert_eq!(v.csrc(0), Some(0xcafe_babe));
        assert_eq!(v.extension_data(), &[0x10, 0xaa, 0, 0]);
        assert_eq!(&v.payload()[..2], &65000u16.to_be_bytes());
        assert_eq!(&v.payload()[2..], b"frame data");

        let mut back = [0u8; 64];
        let m = rtx_decapsulate(&rtx[..n], 0x1111_2222, 96, &mut back).unwrap();
        assert_eq!(&back[..m], &orig[..]);
    }

    #[test]
    fn original_padding_is_dropped() {
        let orig = original(1, b"xy", 4);
        let mut rtx = [0u8; 64];
        let n = rtx_encapsulate(&orig, 9, 97, 2, &mut rtx).unwrap();
        let v = RtpView::parse(&rtx[..n]).unwrap();
        assert!(!v.has_padding());
        let mut back = [0u8; 64];
        let m = rtx_decapsulate(&rtx[..n], 0x1111_2222, 96, &mut back).unwrap();
        assert_eq!(&back[..m], &original(1, b"xy", 0)[..]);
    }

    #[test]
    fn rtx_padding_is_dropped_on_decap() {
        let orig = original(5, b"abc", 0);
        let mut rtx = vec![0u8; 64];
        let n = rtx_encapsulate(&orig, 9, 97, 2, &mut rtx).unwrap();
        rtx.truncate(n);
        rtx[0] |= 0x20;
        rtx.extend_from_slice(&[0, 0, 3]);
        let mut back = [0u8; 64];
        let m = rtx_decapsulate(&rtx, 0x1111_2222, 96, &mut back).unwrap();
        assert_eq!(&back[..m], &orig[..]);
    }

    #[test]
    fn errors() {
        let orig = original(5, b"abc", 0);
        let mut small = [0u8; 10];
        assert_eq!(
            rtx_encapsulate(&orig, 1, 2, 3, &mut small),
            Err(RtxError::BufferTooSmall {
                need: orig.len() + 2,
                have: 10
            })
        );
        assert_eq!(
            rtx_encapsulate(&orig[..5], 1, 2, 3, &mut [0; 64]),
            Err(RtxError::Parse(ParseError::TooShort))
        );
        // Padding-only RTX probe: no OSN.
        let mut probe = original(5, b"", 0);
        probe[0] |= 0x20;
        probe.extend_from_slice(&[0, 2]);
        assert_eq!(
            rtx_decapsulate(&probe, 1, 2, &mut [0; 64]),
            Err(RtxError::MissingOsn)
        );
        let mut one = original(5, b"", 0);
        one.push(1);
        assert_eq!(
            rtx_decapsulate(&one, 1, 2, &mut [0; 64]),
            Err(RtxError::MissingOsn)
        );
    }

    #[test]
    fn empty_payload_round_trips() {
        let orig = original(9, b"", 0);
        let mut rtx = [0u8; 64];
        let n = rtx_encapsulate(&orig, 1, 97, 1, &mut rtx).unwrap();
        let mut back = [0u8; 64];
        let m = rtx_decapsulate(&rtx[..n], 0x1111_2222, 96, &mut back).unwrap();
        assert_eq!(&back[..m], &orig[..]);
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..80)) {
            let mut out = [0u8; 96];
            let _ = rtx_encapsulate(&bytes, 1, 2, 3, &mut out);
            let _ = rtx_decapsulate(&bytes, 1, 2, &mut out);
            let _ = rtx_decapsulate(&bytes, 1, 2, &mut out[..8]);
        }

        #[test]
        fn valid_packets_round_trip(
            seq in proptest::prelude::any::<u16>(),
            payload in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..40),
            padding in 0u8..5,
        ) {
            let orig = original(seq, &payload, padding);
            let mut rtx = [0u8; 128];
            let n = rtx_encapsulate(&orig, 5, 97, seq.wrapping_mul(3), &mut rtx).unwrap();
            let mut back = [0u8; 128];
            let m = rtx_decapsulate(&rtx[..n], 0x1111_2222, 96, &mut back).unwrap();
            proptest::prop_assert_eq!(&back[..m], &original(seq, &payload, 0)[..]);
        }
    }
}
