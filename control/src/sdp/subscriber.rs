//! Server-made offers for subscriber connections and validation of the
//! client's answer (RFC 8829 §5.2 offers, §5.10 applying an answer; RFC 3264 §7).
//!
//! Each forwarded track gets one `sendonly` m= section in one BUNDLE group,
//! with `a=setup:actpass` (RFC 5763 §5: the offerer must offer actpass), our
//! ICE-lite credentials and host candidates, one codec with its RTX, and the
//! SSRCs we will send with (`a=ssrc-group:FID` for RTX, RFC 4588 §8.7).

use super::answer::{remote_transport, transport_attributes};
use super::error::NegotiationError;
use super::local::LocalParams;
use super::model::{
    Codec, Direction, Extmap, Fmtp, Formats, Group, MediaKind, MediaSection, Msid,
    SessionDescription, Setup, SsrcAttr, SsrcGroup,
};
use super::negotiated::{
    AcceptedMedia, DtlsRole, ExtIds, NegotiatedCodec, RejectReason, RejectedMedia, RemoteTransport,
    SsrcPair,
};

/// One track forwarded to a subscriber.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingTrack {
    pub mid: String,
    pub kind: MediaKind,
    /// The codec as negotiated with the publisher (PT, fmtp, rtx_pt kept).
    pub codec: NegotiatedCodec,
    pub ssrc: u32,
    pub rtx_ssrc: Option<u32>,
    pub msid: Msid,
    pub ext_ids: ExtIds,
}

/// Outcome of [`accept_answer`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcceptedAnswer {
    pub accepted: Vec<AcceptedMedia>,
    pub rejected: Vec<RejectedMedia>,
    pub remote: RemoteTransport,
}

const PROTO: &str = "UDP/TLS/RTP/SAVPF";

/// A sendonly offer carrying `tracks` to a subscriber.
pub fn offer_for_subscriber(local: &LocalParams, tracks: &[OutgoingTrack]) -> SessionDescription {
    let mut sdp = SessionDescription::new(local.session_id, local.session_version);
    sdp.ice_lite = true;
    sdp.msid_semantic = Some(" WMS *".into());
    sdp.groups.push(Group {
        semantics: "BUNDLE".into(),
        mids: tracks.iter().map(|t| t.mid.clone()).collect(),
    });
    for t in tracks {
        sdp.media.push(track_section(local, t));
    }
    sdp
}

fn track_section(local: &LocalParams, t: &OutgoingTrack) -> MediaSection {
    let mut pts = vec![t.codec.pt];
    pts.extend(t.codec.rtx_pt);
    let mut s = MediaSection::new(t.kind.clone(), 9, PROTO, Formats::Rtp(pts));
    // The role is rewritten to actpass below; passive is only a placeholder.
    transport_attributes(&mut s, local, DtlsRole::Server);
    s.setup = Some(Setup::ActPass);
    s.mid = Some(t.mid.clone());
    s.direction = Direction::SendOnly;
    s.rtcp_rsize = true;
    s.msids.push(t.msid.clone());
    s.extmaps = t
        .ext_ids
        .pairs()
        .into_iter()
        .filter(|(e, _)| e.applies_to(&t.kind))
        .map(|(e, id)| Extmap {
            id,
            direction: None,
            uri: e.uri().into(),
            attributes: None,
        })
        .collect();
    let mut fb: Vec<String> = Vec::new();
    if t.kind == MediaKind::Video {
        fb.extend(["goog-remb", "ccm fir", "nack", "nack pli"].map(String::from));
    }
    if t.ext_ids.transport_cc.is_some() {
        fb.push("transport-cc".into());
    }
    s.codecs.push(Codec {
        pt: t.codec.pt,
        name: t.codec.name.clone(),
        clock_rate: t.codec.clock_rate,
        channels: t.codec.channels,
        fmtp: t.codec.fmtp.clone(),
        rtcp_fb: fb,
    });
    if let Some(rtx_pt) = t.codec.rtx_pt {
        s.codecs.push(Codec {
            pt: rtx_pt,
            name: "rtx".into(),
            clock_rate: t.codec.clock_rate,
            channels: None,
            fmtp: Some(Fmtp::from_params(vec![(
                "apt".into(),
                t.codec.pt.to_string(),
            )])),
            rtcp_fb: Vec::new(),
        });
    }
    let cname = format!("sluice-{}", t.msid.stream_id);
    let mut ssrc_lines = |ssrc: u32| {
        s.ssrcs.push(SsrcAttr {
            ssrc,
            attr: "cname".into(),
            value: Some(cname.clone()),
        });
        let msid = match &t.msid.track_id {
            Some(track) => format!("{} {track}", t.msid.stream_id),
            None => t.msid.stream_id.clone(),
        };
        s.ssrcs.push(SsrcAttr {
            ssrc,
            attr: "msid".into(),
            value: Some(msid),
        });
    };
    ssrc_lines(t.ssrc);
    if let (Some(rtx), Some(_)) = (t.rtx_ssrc, t.codec.rtx_pt) {
        ssrc_lines(rtx);
        s.ssrc_groups.push(SsrcGroup {
            semantics: "FID".into(),
            ssrcs: vec![t.ssrc, rtx],
        });
    }
    s
}

/// Validates the client's answer to our `offer` (RFC 3264 §6: same m= count
/// and order; RFC 8843 §7.3: accepted sections bundled; codecs from the offer).
pub fn accept_answer(
    offer: &SessionDescription,
    answer: &SessionDescription,
) -> Result<AcceptedAnswer, NegotiationError> {
    if offer.media.len() != answer.media.len() {
        return Err(NegotiationError::SectionCount {
            offer: offer.media.len(),
            answer: answer.media.len(),
        });
    }
    let bundle = answer.bundle_mids().unwrap_or_default();
    let mut accepted = Vec::new();
    let mut rejected = Vec::new();
    let mut remote: Option<RemoteTransport> = None;
    for (index, (o, a)) in offer.media.iter().zip(&answer.media).enumerate() {
        if o.mid != a.mid {
            return Err(NegotiationError::MidMismatch {
                index,
                offer: o.mid.clone(),
                answer: a.mid.clone(),
            });
        }
        let mid = a.mid.clone().ok_or(NegotiationError::NoMid { index })?;
        let declined = a.port == 0 && !bundle.contains(&mid);
        if declined || a.direction == Direction::Inactive || o.port == 0 {
            rejected.push(RejectedMedia {
                index,
                mid: Some(mid),
                kind: o.kind.clone(),
                reason: RejectReason::RejectedByAnswerer,
            });
            continue;
        }
        let allowed = match o.direction {
            Direction::SendOnly => matches!(a.direction, Direction::RecvOnly),
            Direction::RecvOnly => matches!(a.direction, Direction::SendOnly),
            Direction::SendRecv => true,
            Direction::Inactive => false,
        };
        if !allowed {
            return Err(NegotiationError::BadDirection {
                mid,
                offer: o.direction.as_str(),
                answer: a.direction.as_str(),
            });
        }
        if !bundle.contains(&mid) {
            return Err(NegotiationError::NotBundled(mid));
        }
        let mut transport = remote_transport(answer, a, &mid)?;
        // We offered actpass; the answer picks the role (RFC 5763 §5).
        transport.dtls_role = match a.setup.or(answer.setup) {
            Some(Setup::Passive) => DtlsRole::Client,
            _ => DtlsRole::Server,
        };
        let mut codecs = Vec::new();
        for c in a.codecs.iter().filter(|c| !c.is_rtx()) {
            let Some(oc) = o.codec(c.pt) else {
                return Err(NegotiationError::UnofferedCodec { mid, pt: c.pt });
            };
            codecs.push(NegotiatedCodec {
                pt: oc.pt,
                name: oc.name.clone(),
                clock_rate: oc.clock_rate,
                channels: oc.channels,
                fmtp: oc.fmtp.clone(),
                rtx_pt: a.rtx_for(c.pt).filter(|p| o.codec(*p).is_some()),
                rtcp_fb: c.rtcp_fb.clone(),
            });
        }
        let Some(first) = codecs.first().cloned() else {
            return Err(NegotiationError::NoCommonCodec {
                mid,
                kind: o.kind.to_string(),
                offered: "answer kept no codec".into(),
            });
        };
        // Extensions the answer kept, with the ids we offered.
        let offered_ids = ExtIds::from_section(o);
        let answered_ids = ExtIds::from_section(a);
        let mut ext_ids = ExtIds::default();
        for (ext, id) in offered_ids.pairs() {
            if answered_ids.pairs().contains(&(ext, id)) {
                ext_ids.set(ext, id);
            }
        }
        let ssrcs = o
            .ssrc_groups
            .iter()
            .find(|g| g.semantics == "FID")
            .map(|g| SsrcPair {
                ssrc: g.ssrcs[0],
                rtx_ssrc: g.ssrcs.get(1).copied(),
            })
            .or_else(|| {
                o.ssrcs.first().map(|s| SsrcPair {
                    ssrc: s.ssrc,
                    rtx_ssrc: None,
                })
            })
            .into_iter()
            .collect();
        remote.get_or_insert(transport);
        accepted.push(AcceptedMedia {
            mid,
            kind: o.kind.clone(),
            direction: o.direction,
            rtx_pt: first.rtx_pt,
            codec: first,
            codecs,
            ext_ids,
            ssrcs,
            rids: Vec::new(),
            msid: o.msids.first().cloned(),
        });
    }
    let Some(remote) = remote else {
        return Err(NegotiationError::NothingAccepted(
            "the answer declined every section".into(),
        ));
    };
    Ok(AcceptedAnswer {
        accepted,
        rejected,
        remote,
    })
}
