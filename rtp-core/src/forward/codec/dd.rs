//! The Dependency Descriptor RTP header extension (AV1 RTP payload
//! specification, Appendix A.8), read only as far as the mandatory fields and
//! the extended-field flags; plus an RFC 8285 header-extension lookup.
//!
//! ```text
//!  start_of_frame(1) end_of_frame(1) frame_dependency_template_id(6)
//!  frame_number(16)
//!  -- extended fields, only when the extension is longer than 3 bytes --
//!  template_dependency_structure_present_flag(1)
//!  active_decode_targets_present_flag(1)
//!  custom_dtis_flag(1) custom_fdiffs_flag(1) custom_chains_flag(1) ...
//! ```
//!
//! The template dependency structure is sent at the start of every coded video
//! sequence, so "start of frame with the structure present" marks a keyframe.
//! This is what the caller uses to derive a keyframe hint for end-to-end
//! encrypted tracks, whose payloads cannot be read.

use super::CodecError;

/// The fields of a Dependency Descriptor this crate needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DependencyDescriptor {
    /// First packet of a frame.
    pub start_of_frame: bool,
    /// Last packet of a frame.
    pub end_of_frame: bool,
    /// Index into the template structure.
    pub template_id: u8,
    /// 16-bit frame counter.
    pub frame_number: u16,
    /// The template dependency structure follows (new coded video sequence).
    pub structure_present: bool,
    /// An active decode target bitmask follows.
    pub active_decode_targets_present: bool,
}

impl DependencyDescriptor {
    /// Parse the extension element's data (not the RFC 8285 element header).
    pub fn parse(d: &[u8]) -> Result<Self, CodecError> {
        let [b0, hi, lo, rest @ ..] = d else {
            return Err(CodecError::Truncated);
        };
        let flags = rest.first().copied().unwrap_or(0);
        Ok(Self {
            start_of_frame: b0 & 0x80 != 0,
            end_of_frame: b0 & 0x40 != 0,
            template_id: b0 & 0x3f,
            frame_number: u16::from_be_bytes([*hi, *lo]),
            structure_present: flags & 0x80 != 0,
            active_decode_targets_present: flags & 0x40 != 0,
        })
    }

    /// The first packet of a frame that (re)starts the dependency structure.
    pub fn is_keyframe(&self) -> bool {
        self.start_of_frame && self.structure_present
    }
}

/// Find the header-extension element with `id` in an RTP extension block
/// (`profile` and `data` as given by `RtpView::extension_profile` /
/// `extension_data`). Handles the one-byte (0xBEDE) and two-byte (0x100x)
/// forms of RFC 8285 §4.2 / §4.3; other profiles return `None`.
pub fn find_extension(profile: u16, data: &[u8], id: u8) -> Option<&[u8]> {
    let two_byte = match profile {
        0xBEDE => false,
        p if p & 0xfff0 == 0x1000 => true,
        _ => return None,
    };
    let mut i = 0;
    while i < data.len() {
        let b = data[i];
        if b == 0 {
            i += 1; // padding byte
            continue;
        }
        let (el_id, len, start) = if two_byte {
            (b, usize::from(*data.get(i + 1)?), i + 2)
        } else {
            if b >> 4 == 15 {
                return None; // reserved id: stop processing (RFC 8285 §4.2)
            }
            (b >> 4, usize::from(b & 0x0f) + 1, i + 1)
        };
        let body = data.get(start..start + len)?;
        if el_id == id {
            return Some(body);
        }
        i = start + len;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mandatory_and_extended() {
        let dd = DependencyDescriptor::parse(&[0x80 | 0x05, 0x01, 0x02]).unwrap();
        assert!(dd.start_of_frame && !dd.end_of_frame);
        assert_eq!((dd.template_id, dd.frame_number), (5, 0x0102));
        assert!(!dd.is_keyframe());
        let dd = DependencyDescriptor::parse(&[0xC0, 0x00, 0x07, 0x80, 0x12, 0x34]).unwrap();
        assert!(dd.is_keyframe() && dd.end_of_frame);
        let dd = DependencyDescriptor::parse(&[0x00, 0x00, 0x07, 0x80]).unwrap();
        assert!(!dd.is_keyframe(), "structure without start_of_frame");
        assert_eq!(
            DependencyDescriptor::parse(&[0x80, 0x00]),
            Err(CodecError::Truncated)
        );
    }

    #[test]
    fn one_and_two_byte_extensions() {
        // One-byte: id 1 len 2, padding, id 3 len 3.
        let data = [0x11, 0xAA, 0xBB, 0x00, 0x32, 1, 2, 3];
        assert_eq!(find_extension(0xBEDE, &data, 3), Some(&[1u8, 2, 3][..]));
        assert_eq!(find_extension(0xBEDE, &data, 1), Some(&[0xAAu8, 0xBB][..]));
        assert_eq!(find_extension(0xBEDE, &data, 2), None);
        // Element running past the block.
        assert_eq!(find_extension(0xBEDE, &[0x35, 1, 2], 3), None);
        // Two-byte: id 7 len 0, id 9 len 2.
        let data = [7, 0, 9, 2, 0xCC, 0xDD];
        assert_eq!(find_extension(0x1000, &data, 9), Some(&[0xCCu8, 0xDD][..]));
        assert_eq!(find_extension(0x1000, &data, 7), Some(&[][..]));
        assert_eq!(find_extension(0x1234, &data, 9), None);
    }
}
