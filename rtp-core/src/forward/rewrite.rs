//! The "doing" half of forwarding: copy a source packet into a subscriber's
//! output buffer with the header fields a [`Forwarder`](super::Forwarder)
//! decided on, in one pass. The shared source packet is never mutated, since
//! every subscriber gets a different rewrite of it.

use thiserror::Error;

use super::codec::Vp8Descriptor;
use crate::packet::RtpView;

/// Outgoing VP8 picture id / TL0PICIDX, rewritten in the copy so a switch of
/// simulcast layer keeps these counters continuous for the decoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Vp8Rewrite {
    /// Picture id to write (masked to the field's 7 or 15 bits).
    pub picture_id: u16,
    /// TL0PICIDX to write.
    pub tl0picidx: u8,
}

/// How one forwarded packet's header is rewritten for one subscriber.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rewrite {
    /// Outgoing SSRC (the DownTrack's own).
    pub ssrc: u32,
    /// Outgoing sequence number.
    pub seq: u16,
    /// Outgoing RTP timestamp.
    pub ts: u32,
    /// Outgoing marker bit.
    pub marker: bool,
    /// VP8 descriptor munging, when the track is VP8 and the packet carries the fields.
    pub vp8: Option<Vp8Rewrite>,
}

/// Why a rewrite could not be applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ForwardError {
    /// The output buffer cannot hold the packet.
    #[error("output buffer too small: need {need} bytes, have {have}")]
    BufferTooSmall {
        /// Bytes needed.
        need: usize,
        /// Bytes available.
        have: usize,
    },
}

/// Copy `src` into `out` with `rw` applied; returns the packet length in `out`.
///
/// Padding and header extensions are copied unchanged. VP8 munging is applied
/// only to the fields present in the packet's descriptor (a descriptor that
/// cannot be parsed is copied as is: the forwarder already decided to send it).
pub fn apply_rewrite(
    src: &RtpView<'_>,
    rw: &Rewrite,
    out: &mut [u8],
) -> Result<usize, ForwardError> {
    let bytes = src.as_bytes();
    let n = bytes.len();
    let have = out.len();
    let dst = out
        .get_mut(..n)
        .ok_or(ForwardError::BufferTooSmall { need: n, have })?;
    dst.copy_from_slice(bytes);
    // RtpView validated at least the 12-byte fixed header, so these indices exist.
    dst[1] = (dst[1] & 0x7f) | (u8::from(rw.marker) << 7);
    dst[2..4].copy_from_slice(&rw.seq.to_be_bytes());
    dst[4..8].copy_from_slice(&rw.ts.to_be_bytes());
    dst[8..12].copy_from_slice(&rw.ssrc.to_be_bytes());
    if let Some(v) = rw.vp8 {
        let start = src.header_len();
        let end = start + src.payload().len();
        munge_vp8(&mut dst[start..end], v);
    }
    Ok(n)
}

fn munge_vp8(payload: &mut [u8], v: Vp8Rewrite) {
    let Ok(d) = Vp8Descriptor::parse(payload) else {
        return;
    };
    write_vp8(payload, &d, v);
}

fn write_vp8(payload: &mut [u8], d: &Vp8Descriptor, v: Vp8Rewrite) {
    if d.picture_id.is_some() {
        let o = d.picture_id_offset;
        if d.picture_id_long {
            let [hi, lo] = (v.picture_id & 0x7fff).to_be_bytes();
            payload[o] = 0x80 | hi;
            payload[o + 1] = lo;
        } else {
            payload[o] = (v.picture_id & 0x7f) as u8;
        }
    }
    if d.tl0picidx.is_some() {
        payload[d.tl0picidx_offset] = v.tl0picidx;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(payload: &[u8], padding: u8) -> Vec<u8> {
        let mut p = vec![
            0x80 | if padding > 0 { 0x20 } else { 0 },
            96,
            0,
            1,
            0,
            0,
            0,
            2,
            0,
            0,
            0,
            3,
        ];
        p.extend_from_slice(payload);
        if padding > 0 {
            p.extend(std::iter::repeat_n(0, usize::from(padding) - 1));
            p.push(padding);
        }
        p
    }

    fn rw(vp8: Option<Vp8Rewrite>) -> Rewrite {
        Rewrite {
            ssrc: 0xAABB_CCDD,
            seq: 65535,
            ts: 0xFFFF_FFF0,
            marker: true,
            vp8,
        }
    }

    #[test]
    fn header_fields_rewritten_in_copy() {
        let src = packet(b"hello", 4);
        let view = RtpView::parse(&src).unwrap();
        let mut out = [0u8; 64];
        let n = apply_rewrite(&view, &rw(None), &mut out).unwrap();
        assert_eq!(n, src.len());
        let o = RtpView::parse(&out[..n]).unwrap();
        assert_eq!(
            (o.ssrc(), o.seq(), o.ts()),
            (0xAABB_CCDD, 65535, 0xFFFF_FFF0)
        );
        assert!(o.marker());
        assert_eq!(o.payload_type(), 96);
        assert_eq!(o.payload(), b"hello");
        assert_eq!(o.padding_len(), 4);
        // The source is untouched.
        assert_eq!(view.seq(), 1);
    }

    #[test]
    fn too_small() {
        let src = packet(b"hello", 0);
        let view = RtpView::parse(&src).unwrap();
        let mut out = [0u8; 10];
        assert_eq!(
            apply_rewrite(&view, &rw(None), &mut out),
            Err(ForwardError::BufferTooSmall { need: 17, have: 10 })
        );
    }

    #[test]
    fn vp8_munging() {
        let v = Some(Vp8Rewrite {
            picture_id: 0x8123, // high bit beyond 15 bits is masked off
            tl0picidx: 42,
        });
        // 15-bit picture id + TL0PICIDX + TID.
        let src = packet(&[0x90, 0xE0, 0x80, 0x01, 7, 0x40, 0x00], 0);
        let view = RtpView::parse(&src).unwrap();
        let mut out = [0u8; 64];
        let n = apply_rewrite(&view, &rw(v), &mut out).unwrap();
        assert_eq!(&out[12..n], &[0x90, 0xE0, 0x81, 0x23, 42, 0x40, 0x00]);
        // 7-bit picture id, no TL0PICIDX.
        let src = packet(&[0x90, 0x80, 0x05, 0x00], 0);
        let view = RtpView::parse(&src).unwrap();
        let n = apply_rewrite(&view, &rw(v), &mut out).unwrap();
        assert_eq!(&out[12..n], &[0x90, 0x80, 0x23, 0x00]);
        // Garbage descriptor: copied unchanged.
        let src = packet(&[0x80], 0);
        let view = RtpView::parse(&src).unwrap();
        let n = apply_rewrite(&view, &rw(v), &mut out).unwrap();
        assert_eq!(&out[12..n], &[0x80]);
    }
}
