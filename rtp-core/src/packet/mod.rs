//! Zero-copy packet views and in-place writers.
//!
//! - `rtp`: [`RtpView`] / [`RtpViewMut`] over RTP packets (RFC 3550 §5.1),
//!   the extension block, padding.
//! - `ext`: RFC 8285 extension elements ([`Extensions`], [`RtpView::extension`],
//!   [`RtpViewMut::set_extension_value`]), typed values and [`write_rtp_header`].
//! - [`rtcp`]: compound RTCP parse and build (RFC 3550 §6, RFC 4585, RFC 5104,
//!   draft-alvestrand-rmcat-remb, draft-holmer-rmcat-transport-wide-cc-extensions).
//! - `demux`: first-byte demultiplexing of STUN / DTLS / RTP / RTCP (RFC 7983, RFC 5761).

mod demux;
mod ext;
pub mod rtcp;
mod rtp;

pub use demux::{demux, Demuxed};
pub use ext::{
    abs_send_time, abs_send_time_bytes, audio_level, transport_cc_seq, write_rtp_header, ExtError,
    ExtForm, ExtensionIter, Extensions, RtpHeader, ONE_BYTE_PROFILE, TWO_BYTE_PROFILE,
};
pub use rtp::{ParseError, RtpView, RtpViewMut, RTP_VERSION};
