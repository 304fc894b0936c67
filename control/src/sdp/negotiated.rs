//! The outcome of a negotiation in the form the control daemon hands the
//! dataplane: per accepted m= section the codec, RTX, header-extension ids,
//! SSRCs and simulcast rids; plus the remote ICE/DTLS parameters.

use super::candidate::Candidate;
use super::local::HeaderExtension;
use super::model::{Fingerprint, Fmtp, MediaKind, MediaSection, Msid, SessionDescription};

/// An answer to a client offer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub sdp: SessionDescription,
    pub accepted: Vec<AcceptedMedia>,
    /// Sections answered with port 0, and why.
    pub rejected: Vec<RejectedMedia>,
    pub remote: RemoteTransport,
    /// The data-channel section, when one was accepted.
    pub data: Option<AcceptedData>,
}

/// The accepted `m=application` data section (SCTP over the bundle's DTLS).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcceptedData {
    pub mid: String,
    /// The peer's `a=max-message-size` for the dataplane (`None`: absent, 64 KiB; 0: any).
    pub remote_max_message_size: Option<u32>,
}

/// One m= section both sides agreed on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcceptedMedia {
    pub mid: String,
    pub kind: MediaKind,
    /// Our direction (the answer's for `answer`, the offer's for `accept_answer`).
    pub direction: super::model::Direction,
    /// The first codec in the answer: the one the sender will use.
    pub codec: NegotiatedCodec,
    /// All accepted codecs in preference order (`codec` first).
    pub codecs: Vec<NegotiatedCodec>,
    pub rtx_pt: Option<u8>,
    pub ext_ids: ExtIds,
    /// Media SSRCs with their RTX SSRC (from `a=ssrc-group:FID`), SIM order when signalled.
    pub ssrcs: Vec<SsrcPair>,
    /// Simulcast layers the publisher sends, in `a=simulcast` order.
    pub rids: Vec<String>,
    pub msid: Option<Msid>,
}

/// A codec both sides accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NegotiatedCodec {
    pub pt: u8,
    pub name: String,
    pub clock_rate: u32,
    pub channels: Option<u16>,
    pub fmtp: Option<Fmtp>,
    pub rtx_pt: Option<u8>,
    pub rtcp_fb: Vec<String>,
}

/// Negotiated RTP header extension ids (RFC 8285), `None` when not negotiated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ExtIds {
    pub mid: Option<u8>,
    pub rid: Option<u8>,
    pub repaired_rid: Option<u8>,
    pub transport_cc: Option<u8>,
    pub abs_send_time: Option<u8>,
    pub audio_level: Option<u8>,
    pub dependency_descriptor: Option<u8>,
    pub video_orientation: Option<u8>,
}

/// A media SSRC and its RTX SSRC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SsrcPair {
    pub ssrc: u32,
    pub rtx_ssrc: Option<u32>,
}

/// An m= section answered with port 0.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectedMedia {
    pub index: usize,
    pub mid: Option<String>,
    pub kind: MediaKind,
    pub reason: RejectReason,
}

/// Why a section was not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RejectReason {
    /// The offer already had port 0 without `a=bundle-only`.
    RejectedByOfferer,
    /// Data channels are off for this session (an existing session created without them).
    DataChannelsUnsupported,
    /// A data section after the one already accepted (one SCTP association per session).
    SecondDataSection,
    UnsupportedKind(String),
    UnsupportedProto(String),
    /// Outside the offer's BUNDLE group.
    NotBundled,
    /// The client answered our offer with port 0 or `a=inactive`.
    RejectedByAnswerer,
}

/// The peer's transport parameters, taken from the BUNDLE-tagged section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteTransport {
    pub ice_ufrag: String,
    pub ice_pwd: String,
    pub fingerprints: Vec<Fingerprint>,
    /// Our DTLS role.
    pub dtls_role: DtlsRole,
    /// Candidates the peer put in the SDP (aiortc, WHIP clients do; browsers trickle).
    pub candidates: Vec<Candidate>,
}

/// Which DTLS side Sluice plays (RFC 5763 §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DtlsRole {
    /// We wrote `a=setup:passive`: the peer sends ClientHello.
    Server,
    /// We wrote `a=setup:active`.
    Client,
}

impl ExtIds {
    /// Records `id` for `ext`.
    pub fn set(&mut self, ext: HeaderExtension, id: u8) {
        let slot = match ext {
            HeaderExtension::Mid => &mut self.mid,
            HeaderExtension::Rid => &mut self.rid,
            HeaderExtension::RepairedRid => &mut self.repaired_rid,
            HeaderExtension::TransportCc => &mut self.transport_cc,
            HeaderExtension::AbsSendTime => &mut self.abs_send_time,
            HeaderExtension::AudioLevel => &mut self.audio_level,
            HeaderExtension::DependencyDescriptor => &mut self.dependency_descriptor,
            HeaderExtension::VideoOrientation => &mut self.video_orientation,
        };
        *slot = Some(id);
    }

    /// The (extension, id) pairs that are set, in [`HeaderExtension::ALL`] order.
    pub fn pairs(&self) -> Vec<(HeaderExtension, u8)> {
        let ids = [
            self.mid,
            self.rid,
            self.repaired_rid,
            self.transport_cc,
            self.abs_send_time,
            self.audio_level,
            self.dependency_descriptor,
            self.video_orientation,
        ];
        HeaderExtension::ALL
            .into_iter()
            .zip(ids)
            .filter_map(|(e, id)| id.map(|id| (e, id)))
            .collect()
    }

    /// Ids of the extensions in `m` that we know.
    pub fn from_section(m: &MediaSection) -> Self {
        let mut ids = Self::default();
        for e in &m.extmaps {
            if let Some(ext) = HeaderExtension::from_uri(&e.uri) {
                ids.set(ext, e.id);
            }
        }
        ids
    }
}

/// Media SSRCs of a section paired with their RTX SSRCs (RFC 5576 §4.2, RFC 4588 §8.7).
pub fn ssrc_pairs(m: &MediaSection) -> Vec<SsrcPair> {
    let fid = |ssrc: u32| {
        m.ssrc_groups
            .iter()
            .find(|g| g.semantics == "FID" && g.ssrcs.len() >= 2 && g.ssrcs[0] == ssrc)
            .map(|g| g.ssrcs[1])
    };
    let rtx: Vec<u32> = m
        .ssrc_groups
        .iter()
        .filter(|g| g.semantics == "FID" && g.ssrcs.len() >= 2)
        .map(|g| g.ssrcs[1])
        .collect();
    let sim = m.ssrc_groups.iter().find(|g| g.semantics == "SIM");
    let mut order: Vec<u32> = sim.map(|g| g.ssrcs.clone()).unwrap_or_default();
    for s in &m.ssrcs {
        if !order.contains(&s.ssrc) && !rtx.contains(&s.ssrc) {
            order.push(s.ssrc);
        }
    }
    order
        .into_iter()
        .map(|ssrc| SsrcPair {
            ssrc,
            rtx_ssrc: fid(ssrc),
        })
        .collect()
}

/// The section's msid: `a=msid`, else the first `a=ssrc:<x> msid:` (Plan B era clients).
pub fn section_msid(m: &MediaSection) -> Option<Msid> {
    if let Some(msid) = m.msids.first() {
        return Some(msid.clone());
    }
    let v = m
        .ssrcs
        .iter()
        .find(|s| s.attr == "msid")?
        .value
        .as_deref()?;
    let mut it = v.split_ascii_whitespace();
    Some(Msid {
        stream_id: it.next()?.to_string(),
        track_id: it.next().map(str::to_string),
    })
}
