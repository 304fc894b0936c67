//! The input and output of one forwarding decision: what the forwarder is
//! told about an incoming packet ([`PacketIn`]) and what it answers
//! ([`Decision`]). The input keeps payload-derived facts and caller-signalled
//! hints apart, so end-to-end encrypted tracks are never inspected.

use super::rewrite::Rewrite;
use crate::packet::RtpView;

/// What the forwarder needs to know about one incoming packet.
#[derive(Debug, Clone, Copy)]
pub struct PacketIn<'a> {
    /// Simulcast (spatial) index of the stream the packet arrived on.
    pub layer: u8,
    /// Extended (unwrapped) sequence number within that stream.
    pub ext_seq: u64,
    /// RTP timestamp.
    pub ts: u32,
    /// RTP marker bit.
    pub marker: bool,
    /// The packet carries only padding.
    pub padding_only: bool,
    /// RTP payload (padding excluded). Never read when the track is E2EE.
    pub payload: &'a [u8],
    /// Caller-signalled keyframe flag (e.g. from the Dependency Descriptor).
    /// For E2EE tracks this is the only source of keyframes (`None` = not a
    /// keyframe); otherwise `Some` overrides what the payload says.
    pub keyframe_hint: Option<bool>,
    /// Caller-signalled temporal layer id; used instead of the payload's for E2EE tracks.
    pub temporal_hint: Option<u8>,
}

impl<'a> PacketIn<'a> {
    /// Fill the fields from a parsed RTP packet; hints start empty.
    pub fn from_rtp(layer: u8, ext_seq: u64, rtp: &RtpView<'a>) -> Self {
        Self {
            layer,
            ext_seq,
            ts: rtp.ts(),
            marker: rtp.marker(),
            padding_only: rtp.is_padding_only(),
            payload: rtp.payload(),
            keyframe_hint: None,
            temporal_hint: None,
        }
    }
}

/// Why a packet was not forwarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DropReason {
    /// The DownTrack is paused or muted.
    Paused,
    /// Nothing is being forwarded yet (start or resume): waiting for a keyframe.
    WaitingForKeyframe,
    /// From a simulcast layer other than the one being forwarded.
    NotCurrentLayer,
    /// Temporal layer above the current target.
    TemporalLayer,
    /// Padding-only packet, not needed by the subscriber.
    Padding,
    /// Seen already.
    Duplicate,
    /// Too old to be given a sequence number consistent with what went out.
    TooLate,
    /// The payload descriptor could not be read.
    Malformed,
}

/// The outcome for one incoming packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Do not send it to this subscriber.
    Drop(DropReason),
    /// Send it with this header rewrite (see [`apply_rewrite`](super::apply_rewrite)).
    Forward(Rewrite),
}
