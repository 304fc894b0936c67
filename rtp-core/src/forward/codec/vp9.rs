//! VP9 payload descriptor (RFC 9628 §4.2).
//!
//! ```text
//!  I P L F B E V Z            (byte 0)
//!  M PictureID(7/15)          (if I)
//!  TID U SID D                (if L)
//!  TL0PICIDX                  (if L and not F)
//!  P_DIFF N  (up to 3)        (if F and P)
//!  scalability structure      (if V; not needed here, so not read)
//! ```

use super::{CodecError, FrameInfo};

/// Parse the descriptor at the start of a VP9 RTP payload.
///
/// Keyframe: B (start of a frame) and not P (no inter-picture prediction) on
/// spatial layer 0 — the packet a decoder can start from.
pub fn parse(p: &[u8]) -> Result<FrameInfo, CodecError> {
    let b0 = *p.first().ok_or(CodecError::Truncated)?;
    let (has_pid, inter, has_layers, flexible, begins) = (
        b0 & 0x80 != 0,
        b0 & 0x40 != 0,
        b0 & 0x20 != 0,
        b0 & 0x10 != 0,
        b0 & 0x08 != 0,
    );
    let mut info = FrameInfo {
        begins_frame: begins,
        ..FrameInfo::default()
    };
    let mut i = 1;
    if has_pid {
        let m = *p.get(i).ok_or(CodecError::Truncated)?;
        if m & 0x80 != 0 {
            let lo = *p.get(i + 1).ok_or(CodecError::Truncated)?;
            info.picture_id = Some(u16::from_be_bytes([m & 0x7f, lo]));
            i += 2;
        } else {
            info.picture_id = Some(u16::from(m));
            i += 1;
        }
    }
    if has_layers {
        let l = *p.get(i).ok_or(CodecError::Truncated)?;
        i += 1;
        info.temporal_id = Some(l >> 5);
        info.layer_sync = l & 0x10 != 0;
        info.spatial_id = Some((l >> 1) & 0x07);
        if !flexible {
            info.tl0picidx = Some(*p.get(i).ok_or(CodecError::Truncated)?);
            i += 1;
        }
    }
    if flexible && inter {
        // Reference indices: at most three, each with an N (more follow) bit.
        let mut n = 0;
        loop {
            let d = *p.get(i).ok_or(CodecError::Truncated)?;
            i += 1;
            n += 1;
            if d & 0x01 == 0 {
                break;
            }
            if n == 3 {
                return Err(CodecError::Invalid);
            }
        }
    }
    info.keyframe = begins && !inter && info.spatial_id.unwrap_or(0) == 0;
    Ok(info)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_flexible_keyframe() {
        // I L B E, 15-bit pid 300, TID 0 U=0 SID 0 D=0, TL0PICIDX 9.
        let p = [0xA8 | 0x04, 0x81, 0x2C, 0x00, 9, 0xFF];
        let f = parse(&p).unwrap();
        assert!(f.keyframe && f.begins_frame);
        assert_eq!(f.picture_id, Some(300));
        assert_eq!(
            (f.temporal_id, f.spatial_id, f.tl0picidx),
            (Some(0), Some(0), Some(9))
        );
    }

    #[test]
    fn delta_and_upper_spatial_layer() {
        // P set: inter frame.
        let f = parse(&[0xE8, 0x05, 0x40 | 0x10, 3]).unwrap();
        assert!(!f.keyframe);
        assert_eq!(f.temporal_id, Some(2));
        assert!(f.layer_sync);
        // Intra but SID 1: not a starting point on its own.
        let f = parse(&[0xA8, 0x05, 0x02, 3]).unwrap();
        assert_eq!(f.spatial_id, Some(1));
        assert!(!f.keyframe);
        // No B: middle of a frame.
        assert!(!parse(&[0x00]).unwrap().keyframe);
    }

    #[test]
    fn flexible_reference_list() {
        // I P L F B, pid 7-bit, layers, two P_DIFFs.
        let f = parse(&[0xF8, 0x01, 0x20, 0x03, 0x02]).unwrap();
        assert!(!f.keyframe && f.tl0picidx.is_none());
        // Four P_DIFFs with N chained: invalid.
        assert_eq!(
            parse(&[0xF8, 0x01, 0x20, 0x03, 0x03, 0x03, 0x02]),
            Err(CodecError::Invalid)
        );
        assert_eq!(parse(&[0xF8, 0x01, 0x20, 0x03]), Err(CodecError::Truncated));
    }

    #[test]
    fn truncated() {
        assert_eq!(parse(&[]), Err(CodecError::Truncated));
        assert_eq!(parse(&[0x80]), Err(CodecError::Truncated));
        assert_eq!(parse(&[0x80, 0x80]), Err(CodecError::Truncated));
        assert_eq!(parse(&[0x20]), Err(CodecError::Truncated));
        assert_eq!(parse(&[0x20, 0x00]), Err(CodecError::Truncated));
    }
}
