//! H.264 RTP payload (RFC 6184): NAL unit header (§5.3), single NAL unit
//! packets (§5.6), STAP-A (§5.7.1) and FU-A (§5.8).
//!
//! A packet is a keyframe start when an IDR slice (type 5) or a sequence
//! parameter set (type 7) begins in it: encoders send SPS/PPS right before
//! an IDR, so the first of those marks where a decoder can start.

use super::{CodecError, FrameInfo};

const NAL_IDR: u8 = 5;
const NAL_SPS: u8 = 7;
const STAP_A: u8 = 24;
const FU_A: u8 = 28;

fn is_key_nal(nal_type: u8) -> bool {
    nal_type == NAL_IDR || nal_type == NAL_SPS
}

/// Inspect an H.264 RTP payload.
///
/// `begins_frame` means "starts a NAL unit" (single NAL, STAP-A, or an FU-A
/// with its S bit); H.264 does not say where an access unit starts without
/// parsing slice headers.
pub fn parse(p: &[u8]) -> Result<FrameInfo, CodecError> {
    let hdr = *p.first().ok_or(CodecError::Truncated)?;
    if hdr & 0x80 != 0 {
        // F (forbidden_zero_bit) set: the sender marks the NAL as corrupt.
        return Err(CodecError::Invalid);
    }
    let nal_type = hdr & 0x1f;
    let mut info = FrameInfo::default();
    match nal_type {
        1..=23 => {
            info.begins_frame = true;
            info.keyframe = is_key_nal(nal_type);
        }
        STAP_A => {
            info.begins_frame = true;
            let mut rest = &p[1..];
            if rest.is_empty() {
                return Err(CodecError::Truncated);
            }
            while !rest.is_empty() {
                let (len_bytes, after) = rest.split_at_checked(2).ok_or(CodecError::Truncated)?;
                let len = usize::from(u16::from_be_bytes([len_bytes[0], len_bytes[1]]));
                if len == 0 {
                    return Err(CodecError::Invalid);
                }
                let (nal, tail) = after.split_at_checked(len).ok_or(CodecError::Truncated)?;
                if is_key_nal(nal[0] & 0x1f) {
                    info.keyframe = true;
                }
                rest = tail;
            }
        }
        FU_A => {
            let fu = *p.get(1).ok_or(CodecError::Truncated)?;
            let start = fu & 0x80 != 0;
            if start && fu & 0x40 != 0 {
                // S and E both set in one fragment is forbidden (§5.8).
                return Err(CodecError::Invalid);
            }
            info.begins_frame = start;
            info.keyframe = start && is_key_nal(fu & 0x1f);
        }
        // STAP-B, MTAP16/24, FU-B are only for interleaved mode, which we do not negotiate;
        // 0, 30, 31 are undefined.
        _ => return Err(CodecError::Invalid),
    }
    Ok(info)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_nal() {
        assert!(parse(&[0x65, 0x88]).unwrap().keyframe); // IDR
        assert!(parse(&[0x67, 0x42]).unwrap().keyframe); // SPS
        let f = parse(&[0x41, 0x9a]).unwrap(); // non-IDR slice
        assert!(!f.keyframe && f.begins_frame);
        assert!(!parse(&[0x68, 0xce]).unwrap().keyframe); // PPS alone
    }

    #[test]
    fn stap_a_scans_every_nal() {
        let key = [0x78, 0x00, 0x02, 0x67, 0x42, 0x00, 0x01, 0x68];
        assert!(parse(&key).unwrap().keyframe);
        let delta = [0x78, 0x00, 0x01, 0x06, 0x00, 0x02, 0x41, 0x9a];
        assert!(!parse(&delta).unwrap().keyframe);
        assert_eq!(parse(&[0x78, 0x00, 0x05, 0x67]), Err(CodecError::Truncated));
        assert_eq!(parse(&[0x78, 0x00]), Err(CodecError::Truncated));
        assert_eq!(parse(&[0x78]), Err(CodecError::Truncated));
        assert_eq!(parse(&[0x78, 0x00, 0x00]), Err(CodecError::Invalid));
    }

    #[test]
    fn fu_a_start_bit_and_type() {
        assert!(parse(&[0x7c, 0x85, 0x88]).unwrap().keyframe);
        let mid = parse(&[0x7c, 0x05, 0x88]).unwrap();
        assert!(!mid.keyframe && !mid.begins_frame);
        assert!(!parse(&[0x7c, 0x81, 0x9a]).unwrap().keyframe);
        assert_eq!(parse(&[0x7c]), Err(CodecError::Truncated));
        assert_eq!(parse(&[0x7c, 0xC5]), Err(CodecError::Invalid));
    }

    #[test]
    fn invalid_headers() {
        assert_eq!(parse(&[]), Err(CodecError::Truncated));
        assert_eq!(parse(&[0xe5]), Err(CodecError::Invalid));
        assert_eq!(parse(&[0x00]), Err(CodecError::Invalid));
        assert_eq!(parse(&[0x7d, 0x85]), Err(CodecError::Invalid));
    }
}
