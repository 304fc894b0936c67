//! Zero-copy payload-descriptor readers: just enough of each video payload
//! format to know whether a packet starts a keyframe and which temporal /
//! spatial layer it belongs to.
//!
//! - `vp8`: RFC 7741 §4.2 descriptor, §4.3 / RFC 6386 §9.1 frame tag.
//! - `vp9`: RFC 9628 §4.2 descriptor.
//! - `h264`: RFC 6184 §5.6–§5.8 single NAL, STAP-A, FU-A.
//! - `av1`: AV1 RTP payload spec §4.4 aggregation header (and the first OBU header).
//! - `dd`: the Dependency Descriptor header extension (AV1 RTP spec Appendix A),
//!   mandatory fields plus the structure-present flag.
//!
//! Every reader takes attacker-controlled bytes and returns `Err` on anything
//! it cannot make sense of; none of them panics.

mod av1;
mod dd;
mod h264;
mod vp8;
mod vp9;

pub use dd::{find_extension, DependencyDescriptor};
pub use vp8::Vp8Descriptor;

use thiserror::Error;

/// The codec carried by a track, as negotiated in SDP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    /// Opus audio: every packet stands alone.
    Opus,
    /// VP8 (RFC 7741).
    Vp8,
    /// VP9 (RFC 9628).
    Vp9,
    /// H.264 (RFC 6184), packetization mode 1.
    H264,
    /// AV1 (AV1 RTP payload specification).
    Av1,
    /// Anything else: forwarded opaquely, never a keyframe by inspection.
    Other,
}

/// What a payload descriptor says about the frame a packet belongs to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FrameInfo {
    /// This packet is the first packet of a keyframe (a decoder can start here).
    pub keyframe: bool,
    /// This packet starts a frame (for H.264: starts a NAL unit; for AV1: does not
    /// continue an OBU fragment; approximations documented per codec).
    pub begins_frame: bool,
    /// Temporal layer id, when the descriptor carries one.
    pub temporal_id: Option<u8>,
    /// Spatial layer id (VP9 / AV1 SVC), when the descriptor carries one.
    pub spatial_id: Option<u8>,
    /// The frame is a temporal switching point (VP8 Y bit, VP9 U bit): a receiver
    /// may start decoding this temporal layer here.
    pub layer_sync: bool,
    /// Picture id (7- or 15-bit value), when present.
    pub picture_id: Option<u16>,
    /// TL0PICIDX, when present.
    pub tl0picidx: Option<u8>,
}

/// Why a payload descriptor could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum CodecError {
    /// The payload ends inside the descriptor.
    #[error("payload ends inside the payload descriptor")]
    Truncated,
    /// A field holds a value the format forbids.
    #[error("invalid payload descriptor field")]
    Invalid,
}

/// Read the payload descriptor of `payload` (the RTP payload, padding excluded).
///
/// Audio and unknown codecs return a default [`FrameInfo`] with `keyframe` and
/// `begins_frame` set: every packet is a valid starting point.
pub fn parse_payload(codec: Codec, payload: &[u8]) -> Result<FrameInfo, CodecError> {
    match codec {
        Codec::Vp8 => vp8::parse(payload).map(|d| d.frame_info()),
        Codec::Vp9 => vp9::parse(payload),
        Codec::H264 => h264::parse(payload),
        Codec::Av1 => av1::parse(payload),
        Codec::Opus | Codec::Other => Ok(FrameInfo {
            keyframe: true,
            begins_frame: true,
            ..FrameInfo::default()
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            for codec in [Codec::Opus, Codec::Vp8, Codec::Vp9, Codec::H264, Codec::Av1, Codec::Other] {
                let _ = parse_payload(codec, &bytes);
            }
            let _ = DependencyDescriptor::parse(&bytes);
            let _ = find_extension(0xBEDE, &bytes, 3);
            let _ = find_extension(0x1000, &bytes, 3);
        }
    }

    #[test]
    fn audio_is_always_a_start_point() {
        let info = parse_payload(Codec::Opus, &[]).unwrap();
        assert!(info.keyframe && info.begins_frame);
    }
}
