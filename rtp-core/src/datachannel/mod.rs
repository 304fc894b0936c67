//! WebRTC data channels: SCTP over DTLS (RFC 8261, RFC 8831) with the Data
//! Channel Establishment Protocol (DCEP, RFC 8832), one association per
//! session, time passed in.
//!
//! Owns the channel table of a session: in-band channels opened with DCEP
//! (`DATA_CHANNEL_OPEN` / `DATA_CHANNEL_ACK`, RFC 8832 §5), negotiated
//! channels on pre-agreed stream ids (RFC 8832 §4 "out-of-band"), stream-id
//! parity (RFC 8832 §6: the DTLS client opens even ids, the DTLS server odd
//! ones), channel close by SCTP stream reset (RFC 8831 §6.7, RFC 6525), the
//! WebRTC payload protocol identifiers (string 51, binary 53, empty string 56
//! and empty binary 57, each empty message carried as one byte, RFC 8831
//! §6.6), and `max-message-size` (RFC 8841 §6) in both directions.
//!
//! SCTP itself is `sctp-proto` (str0m's sans-IO SCTP, docs/decisions.md D32),
//! wrapped in `sctp.rs`; `dcep.rs` parses and writes the DCEP messages;
//! `channels.rs` is the channel table the [`Session`] drives, `opening.rs`
//! its DCEP handshake.
//! Unlike media, this path allocates per message (sctp-proto copies every
//! packet and message into `Bytes`): it is off the media path, and
//! `tests/datachannel_alloc_cost.rs` measures what it costs.
//!
//! Every input is untrusted: a malformed DCEP message, data on a stream that
//! was never opened, an unknown PPID or a stream id beyond what we announced
//! is dropped and counted in [`DataStats`], never a panic; a peer that goes
//! past the stream limit loses its association (only its own).
//!
//! [`Session`]: crate::session::Session

mod channels;
mod dcep;
mod drain;
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod fuzzing;
mod opening;
mod sctp;
#[cfg(test)]
mod tests;

pub use dcep::{DcepError, DcepMessage, DcepOpen, MAX_LABEL_LEN};
pub use drain::Backlog;

pub(crate) use channels::{DataChannels, DataEvent};

use thiserror::Error;

/// A data channel: its SCTP stream identifier (the `id` of an
/// `RTCDataChannel`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChannelId(pub u16);

impl std::fmt::Display for ChannelId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// How hard SCTP tries to deliver a message (RFC 8832 §5.1 channel types,
/// RFC 3758 partial reliability).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Reliability {
    /// Retransmitted until acknowledged (`DATA_CHANNEL_RELIABLE`).
    #[default]
    Reliable,
    /// At most this many retransmissions (`maxRetransmits`); 0 sends once.
    MaxRetransmits(u32),
    /// Retransmitted for at most this many milliseconds (`maxPacketLifeTime`).
    MaxLifetimeMs(u32),
}

/// A channel to open, with the `RTCDataChannelInit` fields that travel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelConfig {
    /// The channel's label (at most [`MAX_LABEL_LEN`] bytes).
    pub label: String,
    /// The sub-protocol (at most [`MAX_LABEL_LEN`] bytes), usually empty.
    pub protocol: String,
    /// Messages arrive in the order they were sent.
    pub ordered: bool,
    /// Retransmission policy.
    pub reliability: Reliability,
    /// RFC 8832 priority (256 is "normal" in browsers); carried, not acted on.
    pub priority: u16,
    /// `Some(id)`: a negotiated channel on a stream id both sides agreed out of
    /// band (no DCEP); `None`: in-band, we pick an id of our parity and send
    /// `DATA_CHANNEL_OPEN`.
    pub negotiated: Option<u16>,
}

impl ChannelConfig {
    /// An in-band, ordered, reliable channel called `label`.
    pub fn reliable(label: impl Into<String>) -> Self {
        Self {
            label: label.into(),
            protocol: String::new(),
            ordered: true,
            reliability: Reliability::Reliable,
            priority: 256,
            negotiated: None,
        }
    }

    /// An in-band, unordered channel that never retransmits (`{ordered:
    /// false, maxRetransmits: 0}`): what arrives arrives, nothing waits.
    pub fn lossy(label: impl Into<String>) -> Self {
        Self {
            ordered: false,
            reliability: Reliability::MaxRetransmits(0),
            ..Self::reliable(label)
        }
    }
}

/// Data-channel settings of a session (what it advertises in SDP and how
/// much it buffers). Build with [`DataConfig::default`] and adjust.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataConfig {
    /// Largest message we accept (our SDP `a=max-message-size`); a peer that
    /// sends more loses its association (sctp-proto refuses the reassembly).
    pub max_message_size: u32,
    /// SCTP receive buffer (advertised window), shared by all channels.
    /// At least twice `max_message_size`, so one incomplete message never
    /// blocks a complete one.
    pub receive_buffer: u32,
    /// Bytes queued for sending (unacknowledged or not yet sent) across all
    /// channels beyond which [`send_data`](crate::session::Session::send_data)
    /// returns [`DataError::Full`].
    pub max_buffered: usize,
    /// SCTP streams announced in INIT (both directions, RFC 9260 §5.1.1):
    /// channel ids must stay below it. A peer that uses an id at or above it
    /// loses its association.
    pub max_streams: u16,
    /// Channels open (or opening, or closing) at once; a further remote
    /// `DATA_CHANNEL_OPEN` is refused with a stream reset.
    pub max_channels: u16,
    /// Our SCTP port (SDP `a=sctp-port`; 5000 in every browser).
    pub sctp_port: u16,
    /// The peer's SCTP port (its `a=sctp-port`).
    pub remote_sctp_port: u16,
}

impl Default for DataConfig {
    /// 64 KiB messages (what RFC 8841 §6.1 assumes when SDP says nothing),
    /// a 256 KiB receive window, 1 MiB of send buffer, 1024 streams (Chrome's
    /// count), 256 channels, port 5000 on both sides.
    fn default() -> Self {
        Self {
            max_message_size: 65_536,
            receive_buffer: 262_144,
            max_buffered: 1 << 20,
            max_streams: 1024,
            max_channels: 256,
            sctp_port: 5000,
            remote_sctp_port: 5000,
        }
    }
}

impl DataConfig {
    /// Checks the settings; the error names the field.
    pub fn validate(&self) -> Result<(), DataError> {
        let bad = |field: &'static str| Err(DataError::InvalidConfig(field));
        if self.max_message_size == 0 {
            return bad("max_message_size");
        }
        if u64::from(self.receive_buffer) < 2 * u64::from(self.max_message_size) {
            return bad("receive_buffer");
        }
        if self.max_buffered == 0 {
            return bad("max_buffered");
        }
        if self.max_streams < 2 {
            return bad("max_streams");
        }
        if self.max_channels == 0 {
            return bad("max_channels");
        }
        if self.sctp_port == 0 {
            return bad("sctp_port");
        }
        if self.remote_sctp_port == 0 {
            return bad("remote_sctp_port");
        }
        Ok(())
    }
}

/// A message [`poll_data`](crate::session::Session::poll_data) wrote into the
/// caller's buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataMeta {
    /// The channel it came on.
    pub channel: ChannelId,
    /// Binary (PPID 53/57) rather than string (51/56).
    pub binary: bool,
    /// Bytes written at the start of the buffer (0 for an empty message).
    pub len: usize,
}

/// Why a data-channel call failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum DataError {
    /// The session was built without data channels (no `m=application`).
    #[error("data channels are not enabled on this session")]
    NotEnabled,
    /// The SCTP association failed or was closed; no channel can open again.
    #[error("the SCTP association is closed")]
    Closed,
    /// No channel with this id.
    #[error("no data channel with id {0}")]
    NoSuchChannel(ChannelId),
    /// The channel is opening (association not up yet) or closing.
    #[error("data channel {0} is not open")]
    NotOpen(ChannelId),
    /// The message is larger than the peer accepts (its SDP
    /// `a=max-message-size`) or than the whole send buffer.
    #[error("message of {len} bytes is over the limit of {max} bytes (the peer's max-message-size or our send buffer)")]
    TooBig {
        /// The message's size.
        len: usize,
        /// The largest message that may be sent.
        max: usize,
    },
    /// Sending would queue more than `DataConfig::max_buffered` bytes; the
    /// message was not queued. Retry when `buffered_amount` has fallen.
    #[error(
        "send buffer full: {buffered} bytes queued, this message would pass the limit of {max}"
    )]
    Full {
        /// Bytes queued across all channels now.
        buffered: usize,
        /// `DataConfig::max_buffered`.
        max: usize,
    },
    /// `max_channels` channels exist, or every id of our parity is taken.
    #[error("too many data channels")]
    TooManyChannels,
    /// A negotiated id that is taken, or at or above `max_streams`.
    #[error("data channel id {0} is in use or out of range")]
    IdUnavailable(u16),
    /// A label or protocol longer than [`MAX_LABEL_LEN`] bytes.
    #[error("data channel {0} longer than {max} bytes", max = MAX_LABEL_LEN)]
    LabelTooLong(&'static str),
    /// A `DataConfig` field out of range.
    #[error("invalid data channel setting `{0}`")]
    InvalidConfig(&'static str),
}

/// Data-channel counters of one session: traffic, refusals, and input
/// dropped by reason (none is logged per message).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DataStats {
    /// Messages handed to the caller by `poll_data`.
    pub messages_in: u64,
    /// Their bytes.
    pub bytes_in: u64,
    /// Messages accepted by `send_data`.
    pub messages_out: u64,
    /// Their bytes.
    pub bytes_out: u64,
    /// `send_data` refused with `Full`.
    pub refused_full: u64,
    /// `send_data` refused with `TooBig`.
    pub refused_too_big: u64,
    /// Channels that reached open (ours and the peer's).
    pub channels_opened: u64,
    /// Channels closed after being open.
    pub channels_closed: u64,
    /// Remote `DATA_CHANNEL_OPEN`s refused (wrong parity, stream in use,
    /// malformed, too many channels).
    pub channels_refused: u64,
    /// DCEP messages that did not parse or came where none is expected.
    pub drop_dcep: u64,
    /// User messages on a stream no channel was opened on.
    pub drop_unopened: u64,
    /// Messages with a PPID that is not DCEP, string or binary.
    pub drop_unknown_ppid: u64,
    /// Messages larger than the buffer the caller gave `poll_data`.
    pub drop_truncated: u64,
    /// Associations ended because the peer broke a limit (stream id past
    /// `max_streams`, a message past `max_message_size`).
    pub aborts: u64,
    /// SCTP associations that reached established.
    pub associations: u64,
    /// Channel events dropped because the caller stopped draining them.
    pub events_dropped: u64,
}
