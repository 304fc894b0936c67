//! What a [`Session`](super::Session) and its tracks are built from: the
//! transport mode and the sizing of every preallocated component, and the
//! per-track settings the control plane derives from SDP (payload types,
//! SSRCs or RIDs of simulcast layers, RFC 8285 extension ids).

use std::net::SocketAddr;

use crate::bwe::{AllocatorConfig, SendSideBweConfig};
use crate::dtls::{DtlsRole, DtlsSettings, Fingerprint};
use crate::forward::{Codec, MediaKind};
use crate::ice::{IceClientConfig, IceConfig};
use crate::nack::NackConfig;
use crate::pacer::PacerConfig;
use crate::srtp::SrtpConfig;

/// Everything a Session preallocates at construction.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Transport: WebRTC server, WebRTC client, or plain RTP.
    pub mode: SessionMode,
    /// DTLS timers, MTU, the version a client offers and the SRTP profiles a
    /// DTLS 1.2 server prefers.
    pub dtls: DtlsSettings,
    /// SRTP replay window and SSRC table size (raised to what the track
    /// limits below need).
    pub srtp: SrtpConfig,
    /// Loss detection and NACK scheduling of every received layer.
    pub nack: NackConfig,
    /// Packets each published layer may have forwarded (D123; a trunk's are not budgeted).
    pub media_budget: super::MediaBudget,
    /// The session's egress pacer.
    pub pacer: PacerConfig,
    /// The send-side bandwidth estimator (and its prober).
    pub bwe: SendSideBweConfig,
    /// The layer allocator (`max_tracks` is taken from `max_down_tracks`); `allow_pause` is
    /// the pausing policy (docs/congestion.md), off by default.
    pub allocator: AllocatorConfig,
    /// Most UpTracks (published tracks arriving here), e.g. 8.
    pub max_up_tracks: usize,
    /// Most DownTracks (tracks this session receives), e.g. 64.
    pub max_down_tracks: usize,
}

impl SessionConfig {
    /// `mode` with default component settings, 8 up and 64 down tracks.
    pub fn new(mode: SessionMode) -> Self {
        Self {
            mode,
            dtls: DtlsSettings::default(),
            srtp: SrtpConfig::default(),
            nack: NackConfig::default(),
            media_budget: super::MediaBudget::default(),
            pacer: PacerConfig::default(),
            bwe: SendSideBweConfig::default(),
            allocator: AllocatorConfig::default(),
            max_up_tracks: 8,
            max_down_tracks: 64,
        }
    }
}

/// How the session reaches its peer.
#[derive(Debug, Clone)]
pub enum SessionMode {
    /// ICE-lite server + DTLS (server or client role) + SRTP; what browsers use.
    WebRtc {
        /// Our ICE credentials (and the peer's ufrag, if known).
        ice: IceConfig,
        /// Our DTLS role (`a=setup`); the SFU is usually the server.
        dtls_role: DtlsRole,
        /// The peer's `a=fingerprint`, if the remote description arrived.
        remote_fingerprint: Option<Fingerprint>,
    },
    /// Our own client side (tests, load generator): IceClient + DTLS client by default.
    WebRtcClient {
        /// The controlling agent's credentials and the server's address.
        ice: IceClientConfig,
        /// Our DTLS role.
        dtls_role: DtlsRole,
        /// The server's fingerprint.
        remote_fingerprint: Option<Fingerprint>,
    },
    /// Trusted internal links / benchmarks: no ICE, DTLS or SRTP; fixed remote address.
    PlainRtp {
        /// Where everything is sent.
        remote: SocketAddr,
    },
    /// A node-to-node trunk (cascade): no ICE or DTLS, a fixed remote that is also the only
    /// accepted source, and SRTP keyed from the cluster secret (`keys`), or plain RTP on a
    /// trusted network (`keys: None`).
    Trunk {
        /// The peer dataplane's media address.
        remote: SocketAddr,
        /// Derived keys (`TrunkKeys::derive`); `None`: trusted, unencrypted.
        keys: Option<super::trunk::TrunkKeys>,
        /// Nothing authenticated from the peer for this long raises
        /// `SessionEvent::TrunkSilent` (non-zero; the dataplane's default is 2 s).
        silence: std::time::Duration,
    },
}

/// One simulcast layer of a published track: its SSRCs when signalled,
/// or the RID that lets the session learn them from the first packets
/// (RFC 8852 `rtp-stream-id` / `repaired-rtp-stream-id`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LayerSsrc {
    /// Media SSRC (`a=ssrc`), if signalled.
    pub ssrc: Option<u32>,
    /// RTX SSRC (`a=ssrc-group:FID`), if signalled.
    pub rtx_ssrc: Option<u32>,
    /// `a=rid` of the layer.
    pub rid: Option<String>,
}

/// Negotiated RFC 8285 header-extension ids (`a=extmap`); `None` = not negotiated.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExtIds {
    /// Transport-wide sequence number (transport-cc).
    pub transport_cc: Option<u8>,
    /// Absolute send time.
    pub abs_send_time: Option<u8>,
    /// Client-to-mixer audio level (RFC 6464).
    pub audio_level: Option<u8>,
    /// BUNDLE mid (RFC 9143).
    pub mid: Option<u8>,
    /// `rtp-stream-id` (RFC 8852).
    pub rid: Option<u8>,
    /// `repaired-rtp-stream-id` (RFC 8852).
    pub repaired_rid: Option<u8>,
    /// Dependency Descriptor (AV1 RTP spec Appendix A).
    pub dependency_descriptor: Option<u8>,
}

impl ExtIds {
    /// The header-extension ids of every packet the SFU forwards. At ingress each published
    /// packet is renumbered in place from its publisher's negotiated ids to these
    /// (`RtpViewMut::remap_extensions`), and the extensions that belong to the publisher's own
    /// connection (`mid`, `rid`, `repaired-rid`) or that we don't forward are padded out; the
    /// control daemon offers subscribers exactly these ids. Without this a subscriber reads the
    /// publisher's ids with its own meaning — Chromium's audio level on id 1 read as a MID
    /// made it drop every forwarded audio packet.
    pub const FORWARDED: ExtIds = ExtIds {
        transport_cc: Some(3),
        abs_send_time: Some(2),
        audio_level: Some(4),
        mid: None,
        rid: None,
        repaired_rid: None,
        dependency_descriptor: None,
    };

    /// The header-extension ids on a trunk (cascade), both ways and whatever the control plane
    /// says (both ends are ours): the forwarded ids, so a relay carries the publisher's
    /// abs-send-time and audio level unchanged and the trunk's own transport-wide sequence
    /// number (transport-cc, D108) where a subscriber's would be.
    pub const TRUNK: ExtIds = Self::FORWARDED;

    /// Where a publisher's extension `id` goes in a forwarded packet, or `None` to drop it.
    pub fn forwarded_id(&self, id: u8) -> Option<u8> {
        let f = Self::FORWARDED;
        if self.transport_cc == Some(id) {
            f.transport_cc
        } else if self.abs_send_time == Some(id) {
            f.abs_send_time
        } else if self.audio_level == Some(id) {
            f.audio_level
        } else {
            None
        }
    }

    /// Where a forwarded packet's extension `id` (one of [`Self::FORWARDED`]) goes for this
    /// subscriber, or `None` to pad it out. Subscribers we offer to get the forwarded ids
    /// unchanged, but a subscriber that made the offer itself (WHEP, sidecar) picked its own:
    /// aiortc offers audio level on 2, where forwarded packets carry the 3-byte abs-send-time,
    /// and its parser fails on the packet and closes the whole DTLS transport.
    pub fn from_forwarded(&self, id: u8) -> Option<u8> {
        let f = Self::FORWARDED;
        if f.transport_cc == Some(id) {
            self.transport_cc
        } else if f.abs_send_time == Some(id) {
            self.abs_send_time
        } else if f.audio_level == Some(id) {
            self.audio_level
        } else {
            None
        }
    }
}

/// A published track arriving on this session.
#[derive(Debug, Clone)]
pub struct UpTrackConfig {
    /// Audio or video.
    pub kind: MediaKind,
    /// Codec, for keyframe detection.
    pub codec: Codec,
    /// RTP clock rate in Hz.
    pub clock_rate: u32,
    /// Media payload type.
    pub payload_type: u8,
    /// RTX payload type (RFC 4588), if negotiated.
    pub rtx_payload_type: Option<u8>,
    /// Simulcast layers in order low → high (one entry without simulcast).
    pub layers: Vec<LayerSsrc>,
    /// Header-extension ids.
    pub ext: ExtIds,
    /// End-to-end encrypted: the payload is never inspected.
    pub e2ee: bool,
    /// The `a=mid` of the track's m= section: binds an SSRC the offer did not name to this
    /// track when its packets carry the MID header extension (RFC 8843 §9.2).
    pub mid: Option<String>,
}

/// A track this session receives from the SFU.
#[derive(Debug, Clone, Copy)]
pub struct DownTrackConfig {
    /// Audio or video.
    pub kind: MediaKind,
    /// Codec, for forwarding decisions.
    pub codec: Codec,
    /// RTP clock rate in Hz.
    pub clock_rate: u32,
    /// Payload type negotiated with this subscriber (written into every packet).
    pub payload_type: u8,
    /// RTX payload type, if negotiated.
    pub rtx_payload_type: Option<u8>,
    /// Our SSRC towards the subscriber.
    pub ssrc: u32,
    /// Our RTX SSRC, if negotiated.
    pub rtx_ssrc: Option<u32>,
    /// Header-extension ids negotiated with this subscriber.
    pub ext: ExtIds,
    /// End-to-end encrypted: keyframes come from the Dependency Descriptor only.
    pub e2ee: bool,
    /// Allocator weight: higher is served first.
    pub priority: u8,
    /// Highest simulcast layer the subscriber wants.
    pub max_layer: u8,
    /// A trunk relay of one layer (cascade): every packet of this layer passes with its
    /// sequence number, timestamp and payload unchanged (only the SSRC becomes `ssrc`), no
    /// layer switching, no keyframe wait. `None`: a normal subscription.
    pub relay_layer: Option<u8>,
    /// A relay's track: the relays of one track's layers share it (any id; the dataplane uses
    /// the track id), so trunk shedding keeps each track's lowest flowing layer (D109).
    /// Unused for subscriptions.
    pub relay_group: u64,
}

#[cfg(test)]
mod tests {
    use super::ExtIds;

    #[test]
    fn from_forwarded_inverts_forwarded_id_for_a_subscriber() {
        let f = ExtIds::FORWARDED;
        // A publisher/subscriber with aiortc's ids: audio level 2, abs-send-time 3, twcc 5.
        let peer = ExtIds {
            mid: Some(1),
            audio_level: Some(2),
            abs_send_time: Some(3),
            transport_cc: Some(5),
            ..ExtIds::default()
        };
        for id in [2, 3, 5] {
            let fwd = peer.forwarded_id(id).expect("forwarded");
            assert_eq!(peer.from_forwarded(fwd), Some(id));
        }
        assert_eq!(
            peer.forwarded_id(1),
            None,
            "mid stays on the publisher's link"
        );
        let video = ExtIds {
            audio_level: None,
            ..peer
        };
        assert_eq!(video.from_forwarded(f.audio_level.unwrap()), None);
        assert_eq!(peer.from_forwarded(1), None);
        assert_eq!(peer.from_forwarded(15), None);
    }
}
