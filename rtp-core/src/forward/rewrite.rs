//! The "doing" half of forwarding: copy a source packet into a subscriber's
//! output buffer with the header fields a [`Forwarder`](super::Forwarder)
//! decided on, in one pass. The shared source packet is never mutated, since
//! every subscriber gets a different rewrite of it.

use thiserror::Error;

use super::codec::Vp8Descriptor;
use crate::packet::{ExtForm, RtpView, ONE_BYTE_PROFILE, TWO_BYTE_PROFILE};

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

/// [`apply_rewrite`], and the copy's header-extension block gains the element `(id, value)`
/// (RFC 8285), still in one pass: the block is created (one-byte form when it can hold the
/// element) or extended at its end (padding may sit between elements, §4.2), the payload
/// behind it moves by 4 or 8 bytes. How a forwarded packet gets our transport-wide sequence
/// number when its publisher's packet carried none (aiortc, GStreamer without twcc): every
/// packet to a subscriber that negotiated transport-cc must have one, or its feedback cannot
/// tell us anything. Returns `Ok(None)` when the element cannot be added (an id or value the
/// existing block's form cannot hold, or a profile that is not RFC 8285's); the caller then
/// copies without it.
pub fn apply_rewrite_adding(
    src: &RtpView<'_>,
    rw: &Rewrite,
    id: u8,
    value: &[u8],
    out: &mut [u8],
) -> Result<Option<usize>, ForwardError> {
    let bytes = src.as_bytes();
    let fixed = 12 + 4 * src.csrc_count();
    let one_byte_ok = (1..=14).contains(&id) && (1..=16).contains(&value.len());
    let (profile, old) = match src.extension_profile() {
        Some(p) => (p, src.extension_data()),
        None if one_byte_ok => (ONE_BYTE_PROFILE, &[][..]),
        None => (TWO_BYTE_PROFILE, &[][..]),
    };
    let elem = match ExtForm::from_profile(profile) {
        Some(ExtForm::OneByte) if one_byte_ok => 1 + value.len(),
        Some(ExtForm::TwoByte) if id >= 1 && value.len() <= 255 => 2 + value.len(),
        _ => return Ok(None),
    };
    let data_len = (old.len() + elem).div_ceil(4) * 4;
    let old_end = if src.has_extension() {
        fixed + 4 + old.len()
    } else {
        fixed
    };
    let rest = &bytes[old_end..];
    let start = fixed + 4 + data_len;
    let n = start + rest.len();
    let have = out.len();
    let dst = out
        .get_mut(..n)
        .ok_or(ForwardError::BufferTooSmall { need: n, have })?;
    dst[..fixed].copy_from_slice(&bytes[..fixed]);
    dst[0] |= 0x10;
    dst[fixed..fixed + 2].copy_from_slice(&profile.to_be_bytes());
    dst[fixed + 2..fixed + 4].copy_from_slice(&((data_len / 4) as u16).to_be_bytes());
    let d = fixed + 4;
    dst[d..d + old.len()].copy_from_slice(old);
    let e = d + old.len();
    if elem == 1 + value.len() {
        dst[e] = (id << 4) | (value.len() as u8 - 1);
        dst[e + 1..e + elem].copy_from_slice(value);
    } else {
        dst[e] = id;
        dst[e + 1] = value.len() as u8;
        dst[e + 2..e + elem].copy_from_slice(value);
    }
    dst[e + elem..start].fill(0);
    dst[start..].copy_from_slice(rest);
    dst[1] = (dst[1] & 0x7f) | (u8::from(rw.marker) << 7);
    dst[2..4].copy_from_slice(&rw.seq.to_be_bytes());
    dst[4..8].copy_from_slice(&rw.ts.to_be_bytes());
    dst[8..12].copy_from_slice(&rw.ssrc.to_be_bytes());
    if let Some(v) = rw.vp8 {
        munge_vp8(&mut dst[start..start + src.payload().len()], v);
    }
    Ok(Some(n))
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
    fn adding_an_extension_element() {
        use crate::packet::{write_rtp_header, RtpHeader};
        // No extension block: one is created.
        let src = packet(b"hello", 4);
        let view = RtpView::parse(&src).unwrap();
        let mut out = [0u8; 64];
        let n = apply_rewrite_adding(&view, &rw(None), 3, &[0xAB, 0xCD], &mut out)
            .unwrap()
            .unwrap();
        assert_eq!(n, src.len() + 8);
        let o = RtpView::parse(&out[..n]).unwrap();
        assert_eq!(o.extension(3), Some(&[0xAB, 0xCD][..]));
        assert_eq!(
            (o.seq(), o.ssrc(), o.payload()),
            (65535, 0xAABB_CCDD, &b"hello"[..])
        );
        assert_eq!(o.padding_len(), 4);
        // An existing one-byte block (mid on 1, 3 bytes of value + 0 padding): appended.
        let mut src = [0u8; 64];
        let h = write_rtp_header(
            &RtpHeader {
                pt: 96,
                seq: 1,
                ssrc: 7,
                extensions: &[(1, b"abc"), (2, &[1, 2, 3])],
                ..RtpHeader::default()
            },
            &mut src,
        )
        .unwrap();
        src[h..h + 3].copy_from_slice(b"xyz");
        let view = RtpView::parse(&src[..h + 3]).unwrap();
        let n = apply_rewrite_adding(&view, &rw(None), 3, &[9, 9], &mut out)
            .unwrap()
            .unwrap();
        let o = RtpView::parse(&out[..n]).unwrap();
        assert_eq!(o.extension(1), Some(&b"abc"[..]));
        assert_eq!(o.extension(2), Some(&[1, 2, 3][..]));
        assert_eq!(o.extension(3), Some(&[9, 9][..]));
        assert_eq!(o.payload(), b"xyz");
        // A two-byte block takes the two-byte element; a one-byte block cannot hold id 15.
        let n = apply_rewrite_adding(&view, &rw(None), 15, &[1, 2], &mut out).unwrap();
        assert_eq!(n, None);
        // Too small an output buffer.
        let mut tiny = [0u8; 20];
        assert!(apply_rewrite_adding(&view, &rw(None), 3, &[9, 9], &mut tiny).is_err());
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
