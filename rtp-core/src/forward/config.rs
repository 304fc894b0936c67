//! Per-DownTrack forwarding settings, fixed at construction.

use super::codec::Codec;

/// Audio or video: audio has no layers or keyframes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaKind {
    /// Every packet is a valid starting point.
    Audio,
    /// Switches and resumes wait for a keyframe.
    Video,
}

/// Settings of a [`Forwarder`].
#[derive(Debug, Clone, Copy)]
pub struct ForwarderConfig {
    /// The DownTrack's own SSRC.
    pub out_ssrc: u32,
    /// Audio or video.
    pub kind: MediaKind,
    /// Codec of the track: decides how payload descriptors are read.
    pub codec: Codec,
    /// End-to-end encrypted: the payload is opaque, keyframes and temporal ids come
    /// only from [`PacketIn::keyframe_hint`] / [`PacketIn::temporal_hint`].
    pub e2ee: bool,
    /// RTP clock rate (90 000 for video, 48 000 for Opus).
    pub clock_rate: u32,
    /// Forward padding-only packets instead of absorbing their sequence numbers.
    pub forward_padding: bool,
}

impl ForwarderConfig {
    /// A video DownTrack at 90 kHz.
    pub fn video(out_ssrc: u32, codec: Codec) -> Self {
        Self {
            out_ssrc,
            kind: MediaKind::Video,
            codec,
            e2ee: false,
            clock_rate: 90_000,
            forward_padding: false,
        }
    }

    /// An Opus DownTrack at 48 kHz.
    pub fn audio(out_ssrc: u32) -> Self {
        Self {
            out_ssrc,
            kind: MediaKind::Audio,
            codec: Codec::Opus,
            e2ee: false,
            clock_rate: 48_000,
            forward_padding: false,
        }
    }
}
