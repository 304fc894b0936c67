//! Per-subscriber forwarding: which packets of a published track reach one
//! DownTrack, and how their headers are rewritten.
//!
//! Deciding is separate from doing: a [`Forwarder`] looks at an incoming
//! packet's fields and returns a [`Decision`]; [`apply_rewrite`] copies the
//! packet into the subscriber's buffer with the [`Rewrite`] applied. The
//! shared incoming packet is never mutated.
//!
//! - `codec`: payload descriptors (RFC 7741, RFC 9628, RFC 6184, AV1 RTP
//!   spec §4.4 and Appendix A) → [`FrameInfo`].
//! - `config`, `decision`: the forwarder's settings, per-packet input and output.
//! - `forwarder`: simulcast / temporal layer selection and the outgoing
//!   SSRC, sequence-number (RFC 3550 §5.1) and timestamp continuity.
//! - `munger`: sequence-number offsets that hide intentional drops but keep
//!   genuine losses visible for NACK (RFC 4585 §6.2.1).
//! - `rewrite`: the copy-and-rewrite step.
//! - `keyframe`: PLI / FIR throttling per published track (RFC 4585 §6.3.1,
//!   RFC 5104 §4.3.1).

mod codec;
mod config;
mod decision;
mod forwarder;
mod keyframe;
mod munger;
mod rewrite;

pub use codec::{
    find_extension, parse_payload, Codec, CodecError, DependencyDescriptor, FrameInfo,
    Vp8Descriptor,
};
pub use config::{ForwarderConfig, MediaKind};
pub use decision::{Decision, DropReason, PacketIn};
pub use forwarder::{Forwarder, Handoff};
pub use keyframe::{KeyframeRequester, PliThrottle, PliThrottleConfig};
pub use rewrite::{apply_rewrite, apply_rewrite_adding, ForwardError, Rewrite, Vp8Rewrite};
