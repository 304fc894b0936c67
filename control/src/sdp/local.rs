//! What Sluice offers and accepts: ICE/DTLS identity, host candidates, the
//! codec preference list and the RTP header extensions the dataplane reads.
//!
//! Codec matching follows the codec-specific offer/answer rules: VP9
//! `profile-id` (VP9 RTP payload §6), H264 `packetization-mode` and profile
//! from `profile-level-id` with `level-asymmetry-allowed` (RFC 6184 §8.2.2,
//! §8.1), AV1 `profile` (AV1 RTP spec §7.2), channel count for Opus (RFC 7587 §7).

use super::candidate::Candidate;
use super::model::{Codec, Fingerprint, Fmtp, MediaKind};
use super::negotiated::NegotiatedCodec;

/// The server side of every negotiation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalParams {
    pub ice_ufrag: String,
    pub ice_pwd: String,
    /// Our DTLS certificate's fingerprint, e.g. `sha-256 AB:CD:..`.
    pub fingerprint: Fingerprint,
    /// Host candidates of the one media port (the shard's socket).
    pub candidates: Vec<Candidate>,
    /// Codecs in preference order.
    pub codecs: Vec<LocalCodec>,
    /// Header extensions the dataplane understands.
    pub extensions: Vec<HeaderExtension>,
    pub session_id: u64,
    pub session_version: u64,
    /// Whether a data section (`m=application`) may be accepted; `false` for an existing
    /// session created without data channels (they cannot be added to it later).
    pub data_channels: bool,
}

/// One codec we can forward, with the fmtp we ask for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalCodec {
    pub kind: MediaKind,
    pub name: String,
    pub clock_rate: u32,
    pub channels: Option<u16>,
    /// Parameters that identify the variant (profile-id, profile-level-id,
    /// packetization-mode) and parameters we ask for (useinbandfec).
    pub params: Vec<(String, String)>,
    /// Whether we negotiate RTX (RFC 4588) for it.
    pub rtx: bool,
}

/// An RTP header extension Sluice reads or writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum HeaderExtension {
    Mid,
    Rid,
    RepairedRid,
    TransportCc,
    AbsSendTime,
    AudioLevel,
    DependencyDescriptor,
    VideoOrientation,
}

/// RTCP feedback Sluice handles (RFC 4585 §4.2, RFC 5104 §7.1, REMB and transport-cc drafts).
pub const SUPPORTED_RTCP_FB: [&str; 5] =
    ["nack", "nack pli", "ccm fir", "goog-remb", "transport-cc"];

impl LocalParams {
    /// Our identity with the default codec and extension lists.
    pub fn new(
        ice_ufrag: &str,
        ice_pwd: &str,
        fingerprint: Fingerprint,
        candidates: Vec<Candidate>,
        session_id: u64,
    ) -> Self {
        Self {
            ice_ufrag: ice_ufrag.into(),
            ice_pwd: ice_pwd.into(),
            fingerprint,
            candidates,
            codecs: LocalCodec::defaults(),
            extensions: HeaderExtension::ALL.to_vec(),
            session_id,
            session_version: 1,
            data_channels: true,
        }
    }
}

impl LocalCodec {
    /// Opus, VP8, VP9 profiles 0 and 2, H264 constrained baseline and main, AV1.
    pub fn defaults() -> Vec<Self> {
        let p = |kvs: &[(&str, &str)]| -> Vec<(String, String)> {
            kvs.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let video = |name: &str, params| Self {
            kind: MediaKind::Video,
            name: name.into(),
            clock_rate: 90_000,
            channels: None,
            params,
            rtx: true,
        };
        vec![
            Self {
                kind: MediaKind::Audio,
                name: "opus".into(),
                clock_rate: 48_000,
                channels: Some(2),
                params: p(&[("useinbandfec", "1")]),
                rtx: false,
            },
            video("VP8", Vec::new()),
            video("VP9", p(&[("profile-id", "0")])),
            video("VP9", p(&[("profile-id", "2")])),
            video(
                "H264",
                p(&[
                    ("level-asymmetry-allowed", "1"),
                    ("packetization-mode", "1"),
                    ("profile-level-id", "42e01f"),
                ]),
            ),
            video(
                "H264",
                p(&[
                    ("level-asymmetry-allowed", "1"),
                    ("packetization-mode", "1"),
                    ("profile-level-id", "4d001f"),
                ]),
            ),
            video("AV1", Vec::new()),
        ]
    }

    pub fn param(&self, key: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.as_str())
    }

    /// Whether an offered codec is this one (same name, clock, channels and variant).
    pub fn matches(&self, offered: &Codec) -> bool {
        if !self.name.eq_ignore_ascii_case(&offered.name) || self.clock_rate != offered.clock_rate {
            return false;
        }
        if self.kind == MediaKind::Audio
            && self.channels.unwrap_or(1) != offered.channels.unwrap_or(1)
        {
            return false;
        }
        let ours = |k| self.param(k);
        let theirs = |k| offered.param(k);
        match self.name.to_ascii_lowercase().as_str() {
            "vp9" => ours("profile-id").unwrap_or("0") == theirs("profile-id").unwrap_or("0"),
            "av1" => ours("profile").unwrap_or("0") == theirs("profile").unwrap_or("0"),
            "h264" => {
                ours("packetization-mode").unwrap_or("0")
                    == theirs("packetization-mode").unwrap_or("0")
                    && h264_profile(ours("profile-level-id").unwrap_or("42001f")).is_some()
                    && h264_profile(ours("profile-level-id").unwrap_or("42001f"))
                        == h264_profile(theirs("profile-level-id").unwrap_or("42001f"))
            }
            _ => true,
        }
    }

    /// The fmtp to put in the answer for a matched offered codec.
    ///
    /// Video: the offer's parameters unchanged. H264 answers keep the offered
    /// profile-level-id: an answerer may always echo the offered level (RFC 6184
    /// §8.2.2), and as an SFU we forward what the publisher sends. Other
    /// codecs: the offer's parameters with ours set on top (Opus useinbandfec).
    /// The offerer's sender-only parameters stay here (they describe the stream
    /// we forward) and are left out of the answer's SDP (`without_sender_only`).
    pub fn answer_fmtp(&self, offered: &Codec) -> Option<Fmtp> {
        if self.kind == MediaKind::Video {
            return offered.fmtp.clone();
        }
        let mut params: Vec<(String, String)> = offered
            .fmtp
            .as_ref()
            .map(|f| f.params.clone())
            .unwrap_or_default();
        for (k, v) in &self.params {
            match params.iter_mut().find(|(pk, _)| pk.eq_ignore_ascii_case(k)) {
                Some(slot) => slot.1.clone_from(v),
                None => params.push((k.clone(), v.clone())),
            }
        }
        (!params.is_empty()).then(|| Fmtp::from_params(params))
    }

    /// The fmtp we write when we make the offer.
    pub fn offer_fmtp(&self) -> Option<Fmtp> {
        (!self.params.is_empty()).then(|| Fmtp::from_params(self.params.clone()))
    }
}

/// H.264 profiles distinguished by profile_idc and profile-iop (RFC 6184 §8.1,
/// table 5); the level (third byte) is not part of the match.
/// `fmtp` less the parameters that describe the sender of the description they are in: `sprop-*`
/// (RFC 7587 §6.1 `sprop-stereo`, `sprop-maxcapturerate`; RFC 6184 §8.1
/// `sprop-parameter-sets`). Echoed in an answer they would claim the offerer's stream as ours.
/// `None` when nothing is left.
pub fn without_sender_only(fmtp: &Fmtp) -> Option<Fmtp> {
    let sender_only = |k: &str| k.len() > 6 && k[..6].eq_ignore_ascii_case("sprop-");
    if !fmtp.params.iter().any(|(k, _)| sender_only(k)) {
        return Some(fmtp.clone());
    }
    let params: Vec<(String, String)> = fmtp
        .params
        .iter()
        .filter(|(k, _)| !sender_only(k))
        .cloned()
        .collect();
    (!params.is_empty()).then(|| Fmtp::from_params(params))
}

/// Whether a stream sent as `sent` can be received by a peer that accepted
/// `accepted`: same encoding and clock rate, and for codecs with variants the
/// same variant (RFC 6184 §8.2.2: H264 packetization-mode and profile, level
/// free; VP9 `profile-id`; AV1 `profile`; Opus channel count). Payload types
/// may differ: the dataplane rewrites them per subscriber.
pub fn codec_carries(sent: &NegotiatedCodec, accepted: &NegotiatedCodec) -> bool {
    if !sent.name.eq_ignore_ascii_case(&accepted.name) || sent.clock_rate != accepted.clock_rate {
        return false;
    }
    let p = |c: &NegotiatedCodec, k: &str| -> Option<String> {
        c.fmtp.as_ref()?.param(k).map(str::to_owned)
    };
    let eq = |k: &str, default: &str| {
        p(sent, k).unwrap_or_else(|| default.into())
            == p(accepted, k).unwrap_or_else(|| default.into())
    };
    match sent.name.to_ascii_lowercase().as_str() {
        "opus" => sent.channels.unwrap_or(1) == accepted.channels.unwrap_or(1),
        "vp9" => eq("profile-id", "0"),
        "av1" => eq("profile", "0"),
        "h264" => {
            let profile = |c: &NegotiatedCodec| {
                h264_profile(&p(c, "profile-level-id").unwrap_or_else(|| "42001f".into()))
            };
            // A Constrained Baseline stream is a Baseline stream too (RFC 6184 §8.1).
            let compatible = match (profile(sent), profile(accepted)) {
                (Some(H264Profile::ConstrainedBaseline), Some(H264Profile::Baseline)) => true,
                (Some(a), Some(b)) => a == b,
                _ => false,
            };
            eq("packetization-mode", "0") && compatible
        }
        _ => true,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum H264Profile {
    ConstrainedBaseline,
    Baseline,
    Main,
    ConstrainedHigh,
    High,
    Other(u8, u8),
}

fn h264_profile(profile_level_id: &str) -> Option<H264Profile> {
    if profile_level_id.len() != 6 {
        return None;
    }
    let idc = u8::from_str_radix(profile_level_id.get(0..2)?, 16).ok()?;
    let iop = u8::from_str_radix(profile_level_id.get(2..4)?, 16).ok()?;
    u8::from_str_radix(profile_level_id.get(4..6)?, 16).ok()?;
    let set1 = iop & 0x40 != 0;
    Some(match idc {
        0x42 if set1 => H264Profile::ConstrainedBaseline,
        0x4d if iop & 0x80 != 0 => H264Profile::ConstrainedBaseline,
        0x58 if iop & 0xc0 == 0xc0 => H264Profile::ConstrainedBaseline,
        0x42 => H264Profile::Baseline,
        0x4d => H264Profile::Main,
        0x64 if iop & 0x0c == 0x0c => H264Profile::ConstrainedHigh,
        0x64 => H264Profile::High,
        _ => H264Profile::Other(idc, iop),
    })
}

impl HeaderExtension {
    pub const ALL: [Self; 8] = [
        Self::Mid,
        Self::Rid,
        Self::RepairedRid,
        Self::TransportCc,
        Self::AbsSendTime,
        Self::AudioLevel,
        Self::DependencyDescriptor,
        Self::VideoOrientation,
    ];

    pub fn uri(self) -> &'static str {
        match self {
            Self::Mid => "urn:ietf:params:rtp-hdrext:sdes:mid",
            Self::Rid => "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id",
            Self::RepairedRid => "urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id",
            Self::TransportCc => "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01",
            Self::AbsSendTime => "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time",
            Self::AudioLevel => "urn:ietf:params:rtp-hdrext:ssrc-audio-level",
            Self::DependencyDescriptor => {
                "https://aomediacodec.github.io/av1-rtp-spec/#dependency-descriptor-rtp-header-extension"
            }
            Self::VideoOrientation => "urn:3gpp:video-orientation",
        }
    }

    pub fn from_uri(uri: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|e| e.uri() == uri)
    }

    /// Whether the extension makes sense in a section of `kind`.
    pub fn applies_to(self, kind: &MediaKind) -> bool {
        match self {
            Self::AudioLevel => *kind == MediaKind::Audio,
            Self::DependencyDescriptor | Self::VideoOrientation => *kind == MediaKind::Video,
            _ => matches!(kind, MediaKind::Audio | MediaKind::Video),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offered(name: &str, clock: u32, ch: Option<u16>, fmtp: &str) -> Codec {
        Codec {
            pt: 100,
            name: name.into(),
            clock_rate: clock,
            channels: ch,
            fmtp: (!fmtp.is_empty()).then(|| Fmtp::parse(fmtp)),
            rtcp_fb: Vec::new(),
        }
    }

    fn local(name: &str, variant: Option<&str>) -> LocalCodec {
        LocalCodec::defaults()
            .into_iter()
            .find(|c| {
                c.name == name && variant.is_none_or(|v| c.params.iter().any(|(_, pv)| pv == v))
            })
            .expect("default codec exists")
    }

    #[test]
    fn h264_matches_on_profile_and_mode_not_level() {
        let cb = local("H264", Some("42e01f"));
        let main = local("H264", Some("4d001f"));
        let o = |f| offered("H264", 90_000, None, f);
        assert!(cb.matches(&o(
            "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f"
        )));
        assert!(cb.matches(&o("packetization-mode=1;profile-level-id=42e034")));
        assert!(!cb.matches(&o("packetization-mode=0;profile-level-id=42e01f")));
        assert!(!cb.matches(&o("packetization-mode=1;profile-level-id=42001f")));
        assert!(!cb.matches(&o("packetization-mode=1;profile-level-id=640c1f")));
        assert!(main.matches(&o("packetization-mode=1;profile-level-id=4d001f")));
        assert!(!main.matches(&o("packetization-mode=1;profile-level-id=zz001f")));
    }

    #[test]
    fn vp9_matches_on_profile_id_with_default_zero() {
        let p0 = local("VP9", Some("0"));
        let p2 = local("VP9", Some("2"));
        assert!(p0.matches(&offered("VP9", 90_000, None, "")));
        assert!(p0.matches(&offered("vp9", 90_000, None, "profile-id=0")));
        assert!(!p0.matches(&offered("VP9", 90_000, None, "profile-id=2")));
        assert!(p2.matches(&offered("VP9", 90_000, None, "profile-id=2")));
    }

    #[test]
    fn opus_needs_two_channels_and_gets_inband_fec() {
        let opus = local("opus", None);
        assert!(!opus.matches(&offered("opus", 48_000, None, "")));
        let o = offered("opus", 48_000, Some(2), "minptime=10;useinbandfec=0");
        assert!(opus.matches(&o));
        assert_eq!(
            opus.answer_fmtp(&o).unwrap().raw,
            "minptime=10;useinbandfec=1"
        );
    }

    #[test]
    fn extension_uris_round_trip() {
        for e in HeaderExtension::ALL {
            assert_eq!(HeaderExtension::from_uri(e.uri()), Some(e));
        }
        assert!(!HeaderExtension::AudioLevel.applies_to(&MediaKind::Video));
        assert!(HeaderExtension::Mid.applies_to(&MediaKind::Audio));
    }
}
