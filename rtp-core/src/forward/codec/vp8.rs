//! VP8 payload descriptor (RFC 7741 §4.2) and keyframe test (§4.3, RFC 6386 §9.1).
//!
//! ```text
//!  X R N S R PID       (byte 0)
//!  I L T K RSV         (if X)
//!  M PictureID(7/15)   (if I)
//!  TL0PICIDX           (if L)
//!  TID Y KEYIDX        (if T or K)
//! ```

use super::{CodecError, FrameInfo};

/// A parsed VP8 payload descriptor, with the offsets the rewriter needs to
/// munge picture id and TL0PICIDX in a copy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Vp8Descriptor {
    /// N: non-reference frame.
    pub non_reference: bool,
    /// S: start of a VP8 partition.
    pub start_of_partition: bool,
    /// Partition index.
    pub partition_id: u8,
    /// Picture id, 7- or 15-bit.
    pub picture_id: Option<u16>,
    /// True when the picture id uses the 15-bit (M=1) form.
    pub picture_id_long: bool,
    /// Offset of the picture id field within the payload (0 when absent).
    pub picture_id_offset: usize,
    /// TL0PICIDX.
    pub tl0picidx: Option<u8>,
    /// Offset of TL0PICIDX within the payload (0 when absent).
    pub tl0picidx_offset: usize,
    /// Temporal layer index (only when T=1).
    pub tid: Option<u8>,
    /// Y: layer sync.
    pub layer_sync: bool,
    /// KEYIDX (only when K=1).
    pub keyidx: Option<u8>,
    /// Descriptor length; the VP8 payload header starts here.
    pub header_len: usize,
    /// The frame tag says keyframe (only meaningful at S=1, PID=0).
    pub keyframe: bool,
}

impl Vp8Descriptor {
    /// Parse the descriptor at the start of a VP8 RTP payload.
    pub fn parse(payload: &[u8]) -> Result<Self, CodecError> {
        parse(payload)
    }

    /// The codec-independent summary.
    pub fn frame_info(&self) -> FrameInfo {
        let begins = self.start_of_partition && self.partition_id == 0;
        FrameInfo {
            keyframe: self.keyframe,
            begins_frame: begins,
            temporal_id: self.tid,
            spatial_id: None,
            layer_sync: self.layer_sync,
            picture_id: self.picture_id,
            tl0picidx: self.tl0picidx,
        }
    }
}

/// Parse the descriptor at the start of a VP8 RTP payload.
pub fn parse(p: &[u8]) -> Result<Vp8Descriptor, CodecError> {
    let b0 = *p.first().ok_or(CodecError::Truncated)?;
    let mut d = Vp8Descriptor {
        non_reference: b0 & 0x20 != 0,
        start_of_partition: b0 & 0x10 != 0,
        partition_id: b0 & 0x07,
        ..Vp8Descriptor::default()
    };
    let mut i = 1;
    if b0 & 0x80 != 0 {
        let x = *p.get(i).ok_or(CodecError::Truncated)?;
        i += 1;
        if x & 0x80 != 0 {
            let m = *p.get(i).ok_or(CodecError::Truncated)?;
            d.picture_id_offset = i;
            if m & 0x80 != 0 {
                let lo = *p.get(i + 1).ok_or(CodecError::Truncated)?;
                d.picture_id = Some(u16::from_be_bytes([m & 0x7f, lo]));
                d.picture_id_long = true;
                i += 2;
            } else {
                d.picture_id = Some(u16::from(m));
                i += 1;
            }
        }
        if x & 0x40 != 0 {
            d.tl0picidx = Some(*p.get(i).ok_or(CodecError::Truncated)?);
            d.tl0picidx_offset = i;
            i += 1;
        }
        if x & 0x30 != 0 {
            let t = *p.get(i).ok_or(CodecError::Truncated)?;
            i += 1;
            if x & 0x20 != 0 {
                d.tid = Some(t >> 6);
                d.layer_sync = t & 0x20 != 0;
            }
            if x & 0x10 != 0 {
                d.keyidx = Some(t & 0x1f);
            }
        }
    }
    d.header_len = i;
    if d.start_of_partition && d.partition_id == 0 {
        // The VP8 payload header's first byte: size0(3) H(1) VER(3) P(1); P=0 is a keyframe.
        let tag = *p.get(i).ok_or(CodecError::Truncated)?;
        d.keyframe = tag & 0x01 == 0;
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// X=1, S as given, I with 15-bit picture id, L, T; then one frame-tag byte.
    fn full(start: bool, pid: u16, tl0: u8, tid: u8, sync: bool, key: bool) -> Vec<u8> {
        let b0 = 0x80 | if start { 0x10 } else { 0 };
        let t = (tid << 6) | if sync { 0x20 } else { 0 };
        let tag = if key { 0x10 } else { 0x11 };
        vec![
            b0,
            0xE0,
            0x80 | (pid >> 8) as u8,
            pid as u8,
            tl0,
            t,
            tag,
            0xAA,
        ]
    }

    #[test]
    fn keyframe_with_all_fields() {
        let d = parse(&full(true, 0x1234, 7, 0, true, true)).unwrap();
        assert!(d.keyframe);
        assert_eq!(d.picture_id, Some(0x1234));
        assert!(d.picture_id_long);
        assert_eq!((d.picture_id_offset, d.tl0picidx_offset), (2, 4));
        assert_eq!(d.tl0picidx, Some(7));
        assert_eq!(d.tid, Some(0));
        assert!(d.layer_sync);
        assert_eq!(d.header_len, 6);
        let info = d.frame_info();
        assert!(info.keyframe && info.begins_frame);
    }

    #[test]
    fn delta_and_continuation() {
        let d = parse(&full(true, 5, 1, 2, false, false)).unwrap();
        assert!(!d.keyframe);
        assert_eq!(d.tid, Some(2));
        // Continuation packet of a keyframe: S=0 so the tag byte is not a frame tag.
        let d = parse(&full(false, 5, 1, 0, false, true)).unwrap();
        assert!(!d.keyframe && !d.frame_info().begins_frame);
    }

    #[test]
    fn minimal_and_short_picture_id() {
        // No X: one byte descriptor then the frame tag.
        let d = parse(&[0x10, 0x00]).unwrap();
        assert!(d.keyframe && d.picture_id.is_none() && d.tid.is_none());
        // 7-bit picture id.
        let d = parse(&[0x90, 0x80, 0x05, 0x01]).unwrap();
        assert_eq!(d.picture_id, Some(5));
        assert!(!d.picture_id_long && !d.keyframe);
    }

    #[test]
    fn truncated_is_an_error() {
        let p = full(true, 0x1234, 7, 0, true, true);
        for n in 0..7 {
            assert_eq!(parse(&p[..n]), Err(CodecError::Truncated), "len {n}");
        }
    }
}
