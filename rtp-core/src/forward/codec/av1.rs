//! AV1 RTP payload (AV1 RTP payload specification §4.4 aggregation header,
//! §4.5 OBU elements) and the AV1 OBU header (AV1 spec §5.3.1).
//!
//! ```text
//!  Z Y W W N - - -     aggregation header
//!  [leb128 length]     first OBU element's length, absent when W == 1
//!  OBU header          only when Z == 0 (the element starts an OBU)
//! ```

use super::{CodecError, FrameInfo};

/// Inspect an AV1 RTP payload.
///
/// Keyframe: N=1, "first packet of a coded video sequence". `begins_frame` is
/// !Z, i.e. the packet starts with a fresh OBU rather than a fragment's tail.
/// Temporal / spatial ids come from the first OBU's extension header when present.
pub fn parse(p: &[u8]) -> Result<FrameInfo, CodecError> {
    let agg = *p.first().ok_or(CodecError::Truncated)?;
    let continues = agg & 0x80 != 0;
    let w = (agg >> 4) & 0x03;
    let new_sequence = agg & 0x08 != 0;
    let mut info = FrameInfo {
        keyframe: new_sequence,
        begins_frame: !continues,
        ..FrameInfo::default()
    };
    let mut i = 1;
    if w != 1 {
        let (len, used) = leb128(p.get(i..).ok_or(CodecError::Truncated)?)?;
        i += used;
        if len == 0 {
            return Err(CodecError::Invalid);
        }
    }
    if p.len() <= i {
        return Err(CodecError::Truncated);
    }
    if !continues {
        let obu = p[i];
        if obu & 0x80 != 0 {
            return Err(CodecError::Invalid); // obu_forbidden_bit
        }
        if obu & 0x04 != 0 {
            let ext = *p.get(i + 1).ok_or(CodecError::Truncated)?;
            info.temporal_id = Some(ext >> 5);
            info.spatial_id = Some((ext >> 3) & 0x03);
        }
    }
    Ok(info)
}

/// Unsigned LEB128 (AV1 spec §4.10.5): value and bytes used; at most 8 bytes.
fn leb128(p: &[u8]) -> Result<(u64, usize), CodecError> {
    let mut value = 0u64;
    for (n, &b) in p.iter().take(8).enumerate() {
        value |= u64::from(b & 0x7f) << (7 * n);
        if b & 0x80 == 0 {
            return Ok((value, n + 1));
        }
    }
    if p.len() >= 8 {
        Err(CodecError::Invalid)
    } else {
        Err(CodecError::Truncated)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_sequence_is_a_keyframe() {
        // W=1 (one element, no length), N=1; OBU sequence header (type 1, has_size).
        let f = parse(&[0x18, 0x0A, 0x0B, 0x00]).unwrap();
        assert!(f.keyframe && f.begins_frame);
        assert_eq!(f.temporal_id, None);
    }

    #[test]
    fn delta_with_extension_header() {
        // W=0: leb128 length 3; OBU frame (type 6) with extension: tid 2, sid 1.
        let f = parse(&[0x00, 0x03, 0x34, 0x48, 0x00]).unwrap();
        assert!(!f.keyframe && f.begins_frame);
        assert_eq!((f.temporal_id, f.spatial_id), (Some(2), Some(1)));
        // Z=1: continuation, no OBU header to read.
        let f = parse(&[0x90, 0xFF]).unwrap();
        assert!(!f.begins_frame && f.temporal_id.is_none());
    }

    #[test]
    fn malformed() {
        assert_eq!(parse(&[]), Err(CodecError::Truncated));
        assert_eq!(parse(&[0x10]), Err(CodecError::Truncated));
        assert_eq!(parse(&[0x00, 0x80]), Err(CodecError::Truncated));
        assert_eq!(parse(&[0x00, 0x00, 0x30]), Err(CodecError::Invalid));
        assert_eq!(parse(&[0x10, 0x80]), Err(CodecError::Invalid));
        assert_eq!(parse(&[0x10, 0x34]), Err(CodecError::Truncated));
        assert_eq!(
            parse(&[0x00, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01]),
            Err(CodecError::Invalid)
        );
    }

    #[test]
    fn leb128_values() {
        assert_eq!(leb128(&[0x05]), Ok((5, 1)));
        assert_eq!(leb128(&[0xE5, 0x8E, 0x26]), Ok((624_485, 3)));
    }
}
