//! What a Session hands back to its shard: per-datagram outputs
//! ([`SessionOutput`]), life-cycle events ([`SessionEvent`]), track ids and
//! the error of every call ([`SessionError`]).

use std::time::Duration;

use thiserror::Error;

use crate::bwe::{Layer, MAX_LAYERS};
use crate::datachannel::{ChannelId, DataError, Reliability};
use crate::dtls::{DtlsError, DtlsVersion};
use crate::forward::ForwardError;
use crate::ice::IceError;
use crate::nack::RtxError;
use crate::net::Remote;
use crate::packet::rtcp::RtcpError;
use crate::packet::ParseError;
use crate::srtp::{ProtectionProfile, SrtpError};
use crate::stun::StunError;

/// Index of an UpTrack inside its Session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UpId(pub u16);

/// Index of a DownTrack inside its Session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DownId(pub u16);

/// One published packet's forwarding facts: what `SessionOutput::Media` reports, what
/// [`Session::forward`](super::Session::forward) takes, and what the dataplane carries beside
/// the bytes in its cross-shard ring header and fan-out queue — one small `Copy` value instead
/// of four loose arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MediaMeta {
    /// Simulcast layer index.
    pub layer: u8,
    /// Extended sequence number within the layer.
    pub ext_seq: u64,
    /// Plain RTP length.
    pub len: usize,
    /// The packet starts a keyframe.
    pub keyframe: bool,
}

/// What `handle_datagram` / `poll_output` found, for the shard to act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionOutput {
    /// Nothing for the shard (control traffic, or the work was internal).
    None,
    /// A decrypted published RTP packet now sits in `buf[..len]` (in place): fan it out.
    Media {
        /// The UpTrack it belongs to.
        up: UpId,
        /// Layer, extended seq, plain RTP length in the caller's buffer, keyframe.
        meta: MediaMeta,
    },
    /// A subscriber asked for a retransmission of OUR seq `seq` on `down`;
    /// look up `src_ext_seq` in the shard's history for that track and call
    /// `Session::retransmit`.
    Retransmit {
        /// The DownTrack the NACK named.
        down: DownId,
        /// Our outgoing sequence number.
        seq: u16,
        /// The source packet's extended sequence number.
        src_ext_seq: u64,
        /// The simulcast layer it came from (sequence numbers are per layer).
        layer: u8,
    },
    /// A subscriber wants a keyframe of the track `down` forwards (PLI/FIR,
    /// or the Forwarder waiting for a layer switch): route it to the
    /// publisher session's `request_keyframe` (throttled there).
    KeyframeWanted {
        /// The DownTrack.
        down: DownId,
        /// The simulcast layer wanted.
        layer: u8,
    },
}

/// How an SSRC the offer did not signal was bound to a track (RFC 8843 §9.2, RFC 8852).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SsrcBinding {
    /// The `rtp-stream-id` / `repaired-rtp-stream-id` extension named a simulcast layer.
    Rid,
    /// The MID extension named the track's m= section.
    Mid,
    /// The payload type belongs to exactly one of the session's published tracks.
    PayloadType,
}

impl SsrcBinding {
    /// A metric label: `rid`, `mid`, `payload_type`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Rid => "rid",
            Self::Mid => "mid",
            Self::PayloadType => "payload_type",
        }
    }
}

/// Life-cycle events, drained with `Session::poll_event`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SessionEvent {
    /// ICE found a working address.
    IceConnected {
        /// Where media goes (UDP, or a TCP connection).
        remote: Remote,
    },
    /// Consent expired (or, for a client, the checks failed).
    IceDisconnected,
    /// The peer nominated another address (another network, or the other
    /// transport: UDP ↔ TCP).
    SelectedPairChanged {
        /// Where media now goes.
        remote: Remote,
    },
    /// DTLS done, SRTP keyed: media may flow.
    DtlsConnected {
        /// Negotiated SRTP profile.
        profile: ProtectionProfile,
        /// Negotiated DTLS version.
        version: DtlsVersion,
    },
    /// DTLS failed for good; the session is useless.
    DtlsFailed {
        /// Why, for logs.
        reason: String,
    },
    /// First packet of an UpTrack layer.
    FirstPacket {
        /// The UpTrack.
        up: UpId,
        /// The layer.
        layer: u8,
    },
    /// A keyframe started on an UpTrack layer.
    Keyframe {
        /// The UpTrack.
        up: UpId,
        /// The layer.
        layer: u8,
    },
    /// A packet from an SSRC the offer did not name was bound to an UpTrack layer (RFC 8843
    /// §9.2): the SSRC carries that layer's media (or its RTX) from now on.
    SsrcBound {
        /// The UpTrack.
        up: UpId,
        /// The layer.
        layer: u8,
        /// The SSRC now bound.
        ssrc: u32,
        /// Whether it is the layer's RTX stream.
        rtx: bool,
        /// What identified the track.
        by: SsrcBinding,
    },
    /// An ICE restart completed.
    Restarted,
    /// What an UpTrack's publisher really sends per layer (a windowed rate measured on
    /// ingress; `available`: packets within the window), every 500 ms while it sends: the
    /// shard hands it to every subscriber's `set_down_layer_rates`.
    LayerRates {
        /// The UpTrack.
        up: UpId,
        /// Per layer, lowest first (layers the track does not have: unavailable).
        layers: [Layer; MAX_LAYERS],
    },
    /// The allocator paused (`paused`) or resumed a DownTrack for bandwidth (only with
    /// pausing allowed): the subscriber should be told (`stream_state`).
    StreamState {
        /// The DownTrack.
        down: DownId,
        /// Paused now.
        paused: bool,
    },
    /// A trunk shed (`shed`) or resumed a relay for its estimate (D109): a shed relay sends
    /// nothing, RTX included. A trunk resumes at most one relay per hold (2 s); a relay is shed
    /// again only after a resume.
    RelayShed {
        /// The relay's DownTrack.
        down: DownId,
        /// Shed now.
        shed: bool,
        /// The trunk's estimate when it changed, bits per second.
        estimate_bps: u64,
    },
    /// The data channels' SCTP association is established.
    SctpConnected,
    /// The SCTP association ended (lost, aborted, or DTLS closed); every
    /// channel was reported closed before this.
    SctpClosed,
    /// A data channel may carry messages: one we opened (in band: sent
    /// `DATA_CHANNEL_OPEN`; negotiated: the association is up) or one the
    /// peer opened and we acknowledged. Drain events before `poll_data`.
    ChannelOpen {
        /// The channel (its SCTP stream id).
        id: ChannelId,
        /// Its label.
        label: String,
        /// Its sub-protocol (usually empty).
        protocol: String,
        /// Ordered delivery.
        ordered: bool,
        /// Retransmission policy.
        reliability: Reliability,
        /// Opened on a pre-agreed id, without DCEP.
        negotiated: bool,
    },
    /// A trunk heard nothing authenticated from its peer for its `silence` (once per episode):
    /// the path or the peer is gone (an idle trunk still sends its reports every ≤ 500 ms).
    TrunkSilent {
        /// Since the last packet heard.
        silent_for: Duration,
    },
    /// A silent trunk heard its peer again.
    TrunkResumed {
        /// How long it had heard nothing.
        silent_for: Duration,
    },
    /// A data channel ended: closed by either side (stream reset), refused
    /// by the peer, or its association ended. Its id may be reused later.
    ChannelClosed {
        /// The channel.
        id: ChannelId,
    },
}

/// Why a Session call failed. Every datagram error is also counted in
/// [`SessionStats`](super::SessionStats); none is logged per packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum SessionError {
    /// Media or RTCP before ICE + DTLS completed (or after they failed).
    #[error("session not connected")]
    NotConnected,
    /// STUN, DTLS or media from an address ICE has not validated.
    #[error("datagram from an unvalidated address")]
    UnvalidatedSource,
    /// A datagram class we do not speak (ZRTP, TURN channel data, unknown first byte).
    #[error("unsupported datagram class")]
    Unsupported,
    /// RTP that does not parse.
    #[error("malformed RTP: {0}")]
    Rtp(#[from] ParseError),
    /// RTCP that does not parse.
    #[error("malformed RTCP: {0}")]
    Rtcp(#[from] RtcpError),
    /// STUN that does not parse.
    #[error("malformed STUN: {0}")]
    Stun(#[from] StunError),
    /// The ICE agent dropped a STUN message.
    #[error("ICE: {0}")]
    Ice(#[from] IceError),
    /// DTLS refused a datagram or failed.
    #[error("DTLS: {0}")]
    Dtls(#[from] DtlsError),
    /// SRTP/SRTCP protect or unprotect failed.
    #[error("SRTP: {0}")]
    Srtp(#[from] SrtpError),
    /// An RTX packet could not be unpacked or built.
    #[error("RTX: {0}")]
    Rtx(#[from] RtxError),
    /// RTP from an SSRC no UpTrack claims.
    #[error("RTP from an unknown SSRC")]
    UnknownSsrc,
    /// RTP with a payload type the track did not negotiate.
    #[error("unexpected payload type")]
    UnknownPayloadType,
    /// A media packet past its layer's packet budget ([`MediaBudget`](super::MediaBudget)):
    /// received, not forwarded.
    #[error("media over the layer's packet budget")]
    OverBudget,
    /// The caller's buffer cannot hold the packet.
    #[error("buffer too small")]
    BufferTooSmall,
    /// `max_up_tracks` / `max_down_tracks` reached, or a track with too many layers.
    #[error("too many tracks")]
    TooManyTracks,
    /// No track with that id.
    #[error("no such track")]
    NoSuchTrack,
    /// The pacer's queue for this class is full; the packet was not queued.
    #[error("pacer queue full")]
    PacerFull,
    /// The call does not apply to this session's mode.
    #[error("not supported in this session mode")]
    WrongMode,
    /// The configuration is out of range.
    #[error("invalid session configuration")]
    InvalidConfig,
    /// A data-channel call failed.
    #[error("data channel: {0}")]
    Data(#[from] DataError),
}

impl From<ForwardError> for SessionError {
    fn from(_: ForwardError) -> Self {
        Self::BufferTooSmall
    }
}
