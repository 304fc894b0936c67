//! The shared vocabulary of the control socket: media kind, track source, codec, header-extension
//! ids, DTLS role and ICE candidate. The control daemon and the dataplane use these types (not
//! copies of them), and this file holds the one set of conversions to and from rtp-core's own
//! types, so nothing else converts by hand.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

/// Audio or video: a published track's media type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MediaKind {
    Audio,
    Video,
}

impl MediaKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Audio => "audio",
            Self::Video => "video",
        }
    }
}

/// What a track shows, for allocation priority (screen share beats camera).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    Camera,
    Microphone,
    Screen,
    Other,
}

/// The negotiated codec of a published track.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Codec {
    /// SDP encoding name, e.g. `"VP8"`, `"H264"`, `"AV1"`, `"opus"` (case-insensitive).
    pub name: String,
    /// 0–127 (RFC 3550 §5.1: 7 bits).
    pub payload_type: u8,
    /// RTP clock rate in Hz (> 0).
    pub clock_rate: u32,
    /// The RTX payload type (RFC 4588) if retransmissions come in a separate stream.
    #[serde(default)]
    pub rtx_payload_type: Option<u8>,
}

/// Negotiated RTP header-extension ids (RFC 8285: 1–14 in the one-byte form, up to 255 in the
/// two-byte form); `null` = not negotiated.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExtIds {
    #[serde(default)]
    pub transport_cc: Option<u8>,
    #[serde(default)]
    pub abs_send_time: Option<u8>,
    #[serde(default)]
    pub audio_level: Option<u8>,
    #[serde(default)]
    pub mid: Option<u8>,
    #[serde(default)]
    pub rid: Option<u8>,
    #[serde(default)]
    pub repaired_rid: Option<u8>,
    #[serde(default)]
    pub dependency_descriptor: Option<u8>,
}

impl ExtIds {
    /// `(field name, id)` for each negotiated extension.
    pub fn entries(&self) -> [(&'static str, Option<u8>); 7] {
        [
            ("transport_cc", self.transport_cc),
            ("abs_send_time", self.abs_send_time),
            ("audio_level", self.audio_level),
            ("mid", self.mid),
            ("rid", self.rid),
            ("repaired_rid", self.repaired_rid),
            ("dependency_descriptor", self.dependency_descriptor),
        ]
    }
}

/// Our DTLS role (RFC 5763 §5: the answerer with `a=setup:active` is the client).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DtlsRole {
    Server,
    Client,
}

/// A local ICE candidate for the SDP (ICE-lite: host candidates only, RFC 8445 §5.2).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Candidate {
    pub foundation: String,
    pub addr: SocketAddr,
    pub protocol: CandidateProtocol,
    pub priority: u32,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CandidateProtocol {
    #[default]
    Udp,
    Tcp,
}

impl CandidateProtocol {
    /// `"udp"` or `"tcp"` (SDP, metric labels).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Udp => "udp",
            Self::Tcp => "tcp",
        }
    }
}

impl From<rtp_core::net::Protocol> for CandidateProtocol {
    fn from(p: rtp_core::net::Protocol) -> Self {
        match p {
            rtp_core::net::Protocol::Udp => Self::Udp,
            rtp_core::net::Protocol::Tcp => Self::Tcp,
        }
    }
}

// ---- conversions to and from rtp-core ---------------------------------------------------

impl From<MediaKind> for rtp_core::forward::MediaKind {
    fn from(k: MediaKind) -> Self {
        match k {
            MediaKind::Audio => Self::Audio,
            MediaKind::Video => Self::Video,
        }
    }
}

impl From<rtp_core::forward::MediaKind> for MediaKind {
    fn from(k: rtp_core::forward::MediaKind) -> Self {
        match k {
            rtp_core::forward::MediaKind::Audio => Self::Audio,
            rtp_core::forward::MediaKind::Video => Self::Video,
        }
    }
}

/// The codec family rtp-core reads payload descriptors for; SDP encoding names are
/// case-insensitive (RFC 4855 §3), unknown ones forward without descriptor parsing.
impl From<&Codec> for rtp_core::forward::Codec {
    fn from(c: &Codec) -> Self {
        codec_family(&c.name)
    }
}

/// [`From<&Codec>`](Codec) by encoding name alone.
pub fn codec_family(name: &str) -> rtp_core::forward::Codec {
    use rtp_core::forward::Codec as Family;
    match name.to_ascii_lowercase().as_str() {
        "opus" => Family::Opus,
        "vp8" => Family::Vp8,
        "vp9" => Family::Vp9,
        "h264" => Family::H264,
        "av1" => Family::Av1,
        _ => Family::Other,
    }
}

impl From<ExtIds> for rtp_core::session::ExtIds {
    fn from(e: ExtIds) -> Self {
        Self {
            transport_cc: e.transport_cc,
            abs_send_time: e.abs_send_time,
            audio_level: e.audio_level,
            mid: e.mid,
            rid: e.rid,
            repaired_rid: e.repaired_rid,
            dependency_descriptor: e.dependency_descriptor,
        }
    }
}

impl From<rtp_core::session::ExtIds> for ExtIds {
    fn from(e: rtp_core::session::ExtIds) -> Self {
        Self {
            transport_cc: e.transport_cc,
            abs_send_time: e.abs_send_time,
            audio_level: e.audio_level,
            mid: e.mid,
            rid: e.rid,
            repaired_rid: e.repaired_rid,
            dependency_descriptor: e.dependency_descriptor,
        }
    }
}

impl From<DtlsRole> for rtp_core::dtls::DtlsRole {
    fn from(r: DtlsRole) -> Self {
        match r {
            DtlsRole::Server => Self::Server,
            DtlsRole::Client => Self::Client,
        }
    }
}

impl From<rtp_core::dtls::DtlsRole> for DtlsRole {
    fn from(r: rtp_core::dtls::DtlsRole) -> Self {
        match r {
            rtp_core::dtls::DtlsRole::Server => Self::Server,
            rtp_core::dtls::DtlsRole::Client => Self::Client,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions_round_trip() {
        for k in [MediaKind::Audio, MediaKind::Video] {
            assert_eq!(MediaKind::from(rtp_core::forward::MediaKind::from(k)), k);
        }
        for r in [DtlsRole::Server, DtlsRole::Client] {
            assert_eq!(DtlsRole::from(rtp_core::dtls::DtlsRole::from(r)), r);
        }
        let e = ExtIds {
            transport_cc: Some(3),
            abs_send_time: Some(2),
            audio_level: Some(4),
            mid: Some(1),
            rid: Some(10),
            repaired_rid: Some(11),
            dependency_descriptor: Some(12),
        };
        assert_eq!(ExtIds::from(rtp_core::session::ExtIds::from(e)), e);
        assert_eq!(
            ExtIds::from(rtp_core::session::ExtIds::FORWARDED).transport_cc,
            Some(3)
        );
    }

    #[test]
    fn codec_names_are_case_insensitive() {
        use rtp_core::forward::Codec as Family;
        let c = |name: &str| Codec {
            name: name.into(),
            payload_type: 96,
            clock_rate: 90_000,
            rtx_payload_type: None,
        };
        assert_eq!(Family::from(&c("VP8")), Family::Vp8);
        assert_eq!(Family::from(&c("opus")), Family::Opus);
        assert_eq!(Family::from(&c("H264")), Family::H264);
        assert_eq!(Family::from(&c("x-weird")), Family::Other);
    }
}
