//! The typed SDP model (RFC 8866 §5) with the WebRTC attributes Sluice reads:
//! ICE (RFC 8839 §5), DTLS fingerprint/setup (RFC 8842, RFC 5763), BUNDLE
//! groups (RFC 8843), extmap (RFC 8285 §5), rtpmap/fmtp/rtcp-fb (RFC 8866 §6.6,
//! RFC 4585 §4.2), ssrc and ssrc-group (RFC 5576), rid (RFC 8851), simulcast
//! (RFC 8853), msid (RFC 8830) and SCTP (RFC 8841).
//!
//! Attributes the model has no field for are kept in order as [`Attribute`]s
//! so printing a parsed description loses nothing that matters.

use std::fmt;

use super::candidate::Candidate;
use super::simulcast::{Rid, Simulcast};

/// One parsed SDP session description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionDescription {
    pub origin: Origin,
    /// `s=`; WebRTC endpoints write `-`.
    pub session_name: String,
    /// Session-level `c=` value, if any (WebRTC puts it in media sections).
    pub connection: Option<String>,
    /// `t=` value, normally `0 0`.
    pub timing: String,
    pub ice_lite: bool,
    pub ice_ufrag: Option<String>,
    pub ice_pwd: Option<String>,
    pub ice_options: Vec<String>,
    pub fingerprints: Vec<Fingerprint>,
    pub setup: Option<Setup>,
    pub groups: Vec<Group>,
    /// Raw `a=msid-semantic:` value, e.g. ` WMS *`.
    pub msid_semantic: Option<String>,
    pub extmap_allow_mixed: bool,
    /// Session-level extmaps apply to every media section (RFC 8285 §5).
    pub extmaps: Vec<Extmap>,
    /// Other session-level lines (`i=`, `u=`, `e=`, `p=`, `b=`, `z=`, `k=`, `r=`), in order.
    pub other_lines: Vec<(char, String)>,
    /// Session-level attributes without a field above.
    pub attributes: Vec<Attribute>,
    pub media: Vec<MediaSection>,
}

/// The `o=` line (RFC 8866 §5.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub username: String,
    pub session_id: u64,
    pub session_version: u64,
    pub net_type: String,
    pub addr_type: String,
    pub address: String,
}

/// One `m=` section and its attributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaSection {
    pub kind: MediaKind,
    pub port: u16,
    /// The `/<number of ports>` suffix of the m= port, rare in WebRTC.
    pub num_ports: Option<u16>,
    pub proto: String,
    pub formats: Formats,
    pub connection: Option<String>,
    pub mid: Option<String>,
    /// `a=sendrecv` etc.; absent means sendrecv (RFC 8866 §6.7).
    pub direction: Direction,
    pub ice_ufrag: Option<String>,
    pub ice_pwd: Option<String>,
    pub ice_options: Vec<String>,
    pub fingerprints: Vec<Fingerprint>,
    pub setup: Option<Setup>,
    pub rtcp_mux: bool,
    pub rtcp_rsize: bool,
    /// RFC 8843 §6: port 0 but bundled, not rejected.
    pub bundle_only: bool,
    pub extmaps: Vec<Extmap>,
    /// One entry per RTP payload type in `formats`, in m= order.
    pub codecs: Vec<Codec>,
    /// `a=rtcp-fb:* <value>`: feedback for every payload type.
    pub rtcp_fb_all: Vec<String>,
    pub ssrcs: Vec<SsrcAttr>,
    pub ssrc_groups: Vec<SsrcGroup>,
    pub rids: Vec<Rid>,
    pub simulcast: Option<Simulcast>,
    pub msids: Vec<Msid>,
    pub candidates: Vec<Candidate>,
    pub end_of_candidates: bool,
    pub sctp_port: Option<u16>,
    pub max_message_size: Option<u64>,
    /// `i=`, `b=`, `k=` lines, in order.
    pub other_lines: Vec<(char, String)>,
    /// Attributes without a field above, in order.
    pub attributes: Vec<Attribute>,
}

/// The media type of an m= line.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum MediaKind {
    Audio,
    Video,
    Application,
    /// `text`, `message`, ...: parsed, never accepted.
    Other(String),
}

/// The format list of an m= line: payload types for RTP profiles, tokens otherwise
/// (`webrtc-datachannel`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Formats {
    Rtp(Vec<u8>),
    Other(Vec<String>),
}

/// Media direction attribute (RFC 8866 §6.7), also used for extmap directions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Direction {
    #[default]
    SendRecv,
    SendOnly,
    RecvOnly,
    Inactive,
}

/// `a=setup` (RFC 4145 §4, RFC 8842 §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Setup {
    Active,
    Passive,
    ActPass,
    HoldConn,
}

/// `a=fingerprint:<hash> <hex>` (RFC 8122 §5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprint {
    /// Lower-cased hash function name, e.g. `sha-256`.
    pub hash: String,
    /// Upper-case colon-separated hex, as written.
    pub value: String,
}

/// `a=group:<semantics> <mid>...` (RFC 5888 §5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    pub semantics: String,
    pub mids: Vec<String>,
}

/// `a=extmap:<id>[/<direction>] <uri> [<attributes>]` (RFC 8285 §5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extmap {
    pub id: u8,
    pub direction: Option<Direction>,
    pub uri: String,
    pub attributes: Option<String>,
}

/// One payload type: rtpmap + fmtp + rtcp-fb gathered by PT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Codec {
    pub pt: u8,
    /// Encoding name as written (`opus`, `VP8`, `H264`, `rtx`); empty when an
    /// unknown dynamic PT had no rtpmap.
    pub name: String,
    pub clock_rate: u32,
    pub channels: Option<u16>,
    pub fmtp: Option<Fmtp>,
    pub rtcp_fb: Vec<String>,
}

/// An `a=fmtp` value: the raw string and its `k=v;k=v` reading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fmtp {
    pub raw: String,
    /// Parameters in order; a value-less token (`0-15` for telephone-event) has key = token, value "".
    pub params: Vec<(String, String)>,
}

/// `a=ssrc:<ssrc> <attr>[:<value>]` (RFC 5576 §4.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SsrcAttr {
    pub ssrc: u32,
    pub attr: String,
    pub value: Option<String>,
}

/// `a=ssrc-group:<semantics> <ssrc>...` (RFC 5576 §4.2): FID pairs media and RTX, SIM lists layers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SsrcGroup {
    pub semantics: String,
    pub ssrcs: Vec<u32>,
}

/// `a=msid:<stream id> [<track id>]` (RFC 8830 §2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Msid {
    pub stream_id: String,
    pub track_id: Option<String>,
}

/// An attribute the model has no field for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attribute {
    pub name: String,
    pub value: Option<String>,
}

impl SessionDescription {
    /// A description with only the mandatory lines, for building offers and answers.
    pub fn new(session_id: u64, session_version: u64) -> Self {
        Self {
            origin: Origin {
                username: "-".into(),
                session_id,
                session_version,
                net_type: "IN".into(),
                addr_type: "IP4".into(),
                address: "127.0.0.1".into(),
            },
            session_name: "-".into(),
            connection: None,
            timing: "0 0".into(),
            ice_lite: false,
            ice_ufrag: None,
            ice_pwd: None,
            ice_options: Vec::new(),
            fingerprints: Vec::new(),
            setup: None,
            groups: Vec::new(),
            msid_semantic: None,
            extmap_allow_mixed: false,
            extmaps: Vec::new(),
            other_lines: Vec::new(),
            attributes: Vec::new(),
            media: Vec::new(),
        }
    }

    /// The mids of the first `a=group:BUNDLE`, if any.
    pub fn bundle_mids(&self) -> Option<&[String]> {
        self.groups
            .iter()
            .find(|g| g.semantics.eq_ignore_ascii_case("BUNDLE"))
            .map(|g| g.mids.as_slice())
    }
}

impl MediaSection {
    /// An empty section of `kind`, for building offers and answers.
    pub fn new(kind: MediaKind, port: u16, proto: &str, formats: Formats) -> Self {
        Self {
            kind,
            port,
            num_ports: None,
            proto: proto.into(),
            formats,
            connection: None,
            mid: None,
            direction: Direction::SendRecv,
            ice_ufrag: None,
            ice_pwd: None,
            ice_options: Vec::new(),
            fingerprints: Vec::new(),
            setup: None,
            rtcp_mux: false,
            rtcp_rsize: false,
            bundle_only: false,
            extmaps: Vec::new(),
            codecs: Vec::new(),
            rtcp_fb_all: Vec::new(),
            ssrcs: Vec::new(),
            ssrc_groups: Vec::new(),
            rids: Vec::new(),
            simulcast: None,
            msids: Vec::new(),
            candidates: Vec::new(),
            end_of_candidates: false,
            sctp_port: None,
            max_message_size: None,
            other_lines: Vec::new(),
            attributes: Vec::new(),
        }
    }

    /// The codec with payload type `pt`.
    pub fn codec(&self, pt: u8) -> Option<&Codec> {
        self.codecs.iter().find(|c| c.pt == pt)
    }

    /// The RTX payload type whose `apt=` is `pt` (RFC 4588 §8.6).
    pub fn rtx_for(&self, pt: u8) -> Option<u8> {
        self.codecs
            .iter()
            .find(|c| c.is_rtx() && c.apt() == Some(pt))
            .map(|c| c.pt)
    }

    /// Whether the section is an RTP one (its proto names an RTP profile).
    pub fn is_rtp(&self) -> bool {
        matches!(self.formats, Formats::Rtp(_))
    }
}

impl Codec {
    pub fn is_rtx(&self) -> bool {
        self.name.eq_ignore_ascii_case("rtx")
    }

    /// The associated payload type of an RTX codec (`apt=`).
    pub fn apt(&self) -> Option<u8> {
        self.param("apt")?.parse().ok()
    }

    /// An fmtp parameter by case-insensitive name.
    pub fn param(&self, key: &str) -> Option<&str> {
        self.fmtp.as_ref()?.param(key)
    }
}

impl Fmtp {
    /// Reads `k=v;k=v` leniently: whitespace around items ignored, empty items skipped.
    pub fn parse(raw: &str) -> Self {
        let params = raw
            .split(';')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|item| match item.split_once('=') {
                Some((k, v)) => (k.trim().to_string(), v.trim().to_string()),
                None => (item.to_string(), String::new()),
            })
            .collect();
        Self {
            raw: raw.to_string(),
            params,
        }
    }

    /// Builds the raw string from parameters.
    pub fn from_params(params: Vec<(String, String)>) -> Self {
        let raw = params
            .iter()
            .map(|(k, v)| {
                if v.is_empty() {
                    k.clone()
                } else {
                    format!("{k}={v}")
                }
            })
            .collect::<Vec<_>>()
            .join(";");
        Self { raw, params }
    }

    pub fn param(&self, key: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.as_str())
    }
}

impl Direction {
    /// The direction an answer uses for an offered direction (RFC 3264 §6.1).
    pub fn reversed(self) -> Self {
        match self {
            Self::SendOnly => Self::RecvOnly,
            Self::RecvOnly => Self::SendOnly,
            other => other,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::SendRecv => "sendrecv",
            Self::SendOnly => "sendonly",
            Self::RecvOnly => "recvonly",
            Self::Inactive => "inactive",
        }
    }

    pub fn from_token(s: &str) -> Option<Self> {
        Some(match s {
            "sendrecv" => Self::SendRecv,
            "sendonly" => Self::SendOnly,
            "recvonly" => Self::RecvOnly,
            "inactive" => Self::Inactive,
            _ => return None,
        })
    }

    /// Whether the remote end of a section with this (local) direction sends to us.
    pub fn receives(self) -> bool {
        matches!(self, Self::SendRecv | Self::RecvOnly)
    }

    pub fn sends(self) -> bool {
        matches!(self, Self::SendRecv | Self::SendOnly)
    }
}

impl Setup {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Passive => "passive",
            Self::ActPass => "actpass",
            Self::HoldConn => "holdconn",
        }
    }

    pub fn from_token(s: &str) -> Option<Self> {
        Some(match s {
            "active" => Self::Active,
            "passive" => Self::Passive,
            "actpass" => Self::ActPass,
            "holdconn" => Self::HoldConn,
            _ => return None,
        })
    }
}

impl MediaKind {
    pub fn as_str(&self) -> &str {
        match self {
            Self::Audio => "audio",
            Self::Video => "video",
            Self::Application => "application",
            Self::Other(s) => s,
        }
    }

    pub fn from_token(s: &str) -> Self {
        match s {
            "audio" => Self::Audio,
            "video" => Self::Video,
            "application" => Self::Application,
            other => Self::Other(other.to_string()),
        }
    }
}

impl Fingerprint {
    /// Parses `sha-256 AB:CD:..` (the `a=fingerprint` value). `None` if either part is missing.
    pub fn parse(s: &str) -> Option<Self> {
        let mut it = s.split_ascii_whitespace();
        let hash = it.next()?;
        let value = it.next()?;
        if it.next().is_some() || !value.bytes().all(|b| b.is_ascii_hexdigit() || b == b':') {
            return None;
        }
        Some(Self {
            hash: hash.to_ascii_lowercase(),
            value: value.to_string(),
        })
    }
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for MediaKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.hash, self.value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fmtp_reads_params_and_bare_tokens() {
        let f = Fmtp::parse("minptime=10; useinbandfec=1");
        assert_eq!(f.param("useinbandfec"), Some("1"));
        assert_eq!(f.param("MINPTIME"), Some("10"));
        let t = Fmtp::parse("0-15");
        assert_eq!(t.params, vec![("0-15".to_string(), String::new())]);
        assert_eq!(Fmtp::from_params(t.params.clone()).raw, "0-15");
    }

    #[test]
    fn fingerprint_rejects_junk() {
        assert!(Fingerprint::parse("sha-256 AB:CD").is_some());
        assert!(Fingerprint::parse("sha-256").is_none());
        assert!(Fingerprint::parse("sha-256 XY:ZZ").is_none());
        assert_eq!(
            Fingerprint::parse("SHA-256 AB").map(|f| f.hash),
            Some("sha-256".into())
        );
    }

    #[test]
    fn direction_reversal() {
        assert_eq!(Direction::SendOnly.reversed(), Direction::RecvOnly);
        assert_eq!(Direction::RecvOnly.reversed(), Direction::SendOnly);
        assert_eq!(Direction::SendRecv.reversed(), Direction::SendRecv);
        assert_eq!(Direction::Inactive.reversed(), Direction::Inactive);
    }
}
