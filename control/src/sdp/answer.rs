//! Answering a client's offer (RFC 8829 §5.3 JSEP answers, RFC 3264 §6).
//!
//! Sluice is ICE-lite (RFC 8445 §2.5), BUNDLE-only (RFC 8843 §7.3),
//! rtcp-mux-only (RFC 5761 §5.1.3) and DTLS-SRTP (RFC 5763 §5, RFC 8842 §5):
//! an offer missing any of these is refused with a [`NegotiationError`]
//! rather than answered half-working. Sections Sluice cannot serve (a second
//! data section, unknown media, non-SRTP profiles, sections outside the
//! BUNDLE group) are answered with port 0 and listed in [`Answer::rejected`].
//!
//! The answer keeps the offerer's payload types and extmap ids, orders codecs
//! by our preference, mirrors directions, and turns `a=simulcast:send` into
//! `a=simulcast:recv` with matching `a=rid:<id> recv` lines (RFC 8853 §5.3).

use std::net::IpAddr;

use super::error::NegotiationError;
use super::local::{
    codec_carries, without_sender_only, HeaderExtension, LocalParams, SUPPORTED_RTCP_FB,
};
use super::model::{
    Codec, Direction, Extmap, Fingerprint, Formats, Group, MediaKind, MediaSection,
    SessionDescription, Setup,
};
use super::negotiated::{
    section_msid, ssrc_pairs, AcceptedData, AcceptedMedia, Answer, DtlsRole, ExtIds,
    NegotiatedCodec, RejectReason, RejectedMedia, RemoteTransport,
};
use super::simulcast::{Rid, RidDirection, Simulcast};

impl Answer {
    /// Narrows accepted section `i`, one Sluice sends on (WHEP, a sidecar's receive section),
    /// to the one codec that carries a track sent as `track` (`codec_carries`): the section's
    /// `codec`, `codecs` and `rtx_pt` and its m= line list only that codec and its RTX, so the
    /// receiver is never told to expect a format it will not get. Which codecs the receiver
    /// accepted counts, not their order. Returns `false`, changing nothing, when it accepted
    /// none that carries `track`.
    pub fn send_track_codec(&mut self, i: usize, track: &NegotiatedCodec) -> bool {
        let Some(acc) = self.accepted.get_mut(i) else {
            return false;
        };
        let Some(c) = acc.codecs.iter().find(|c| codec_carries(track, c)).cloned() else {
            return false;
        };
        let keep: Vec<u8> = std::iter::once(c.pt).chain(c.rtx_pt).collect();
        acc.rtx_pt = c.rtx_pt;
        acc.codec = c.clone();
        acc.codecs = vec![c];
        let mid = acc.mid.as_str();
        if let Some(s) = self
            .sdp
            .media
            .iter_mut()
            .find(|m| m.mid.as_deref() == Some(mid))
        {
            s.codecs.retain(|x| keep.contains(&x.pt));
            s.formats = Formats::Rtp(keep);
        }
        true
    }
}

/// `VP8/90000 H264/90000 …`, for error messages naming what a section accepts or a room has.
pub fn codec_names<'a>(codecs: impl IntoIterator<Item = &'a NegotiatedCodec>) -> String {
    let names: Vec<String> = codecs
        .into_iter()
        .map(|c| format!("{}/{}", c.name, c.clock_rate))
        .fold(Vec::new(), |mut acc, n| {
            if !acc.contains(&n) {
                acc.push(n);
            }
            acc
        });
    if names.is_empty() {
        "none".into()
    } else {
        names.join(" ")
    }
}

/// Answers `offer` with our `local` parameters.
pub fn answer(offer: &SessionDescription, local: &LocalParams) -> Result<Answer, NegotiationError> {
    if offer.ice_lite {
        return Err(NegotiationError::BothIceLite);
    }
    let mut data_taken = false;
    let reasons: Vec<Option<RejectReason>> = offer
        .media
        .iter()
        .map(|m| {
            let r = reject_reason(offer, m, local, data_taken);
            data_taken |= r.is_none() && m.kind == MediaKind::Application;
            r
        })
        .collect();
    let live = offer
        .media
        .iter()
        .filter(|m| m.port != 0 || m.bundle_only)
        .count();
    if live > 1 && offer.bundle_mids().is_none() {
        return Err(NegotiationError::NoBundle(live));
    }

    let mut sdp = SessionDescription::new(local.session_id, local.session_version);
    sdp.ice_lite = true;
    sdp.extmap_allow_mixed = offer.extmap_allow_mixed;
    let mut accepted = Vec::new();
    let mut rejected = Vec::new();
    let mut remote = None;
    let mut data = None;
    for (index, (m, reason)) in offer.media.iter().zip(reasons).enumerate() {
        if let Some(reason) = reason {
            sdp.media.push(rejected_section(m));
            rejected.push(RejectedMedia {
                index,
                mid: m.mid.clone(),
                kind: m.kind.clone(),
                reason,
            });
            continue;
        }
        let mid = m.mid.clone().ok_or(NegotiationError::NoMid { index })?;
        let transport = remote_transport(offer, m, &mid)?;
        if m.kind == MediaKind::Application {
            let (section, accepted_data) =
                super::data::answer_section(m, local, &mid, transport.dtls_role);
            remote.get_or_insert(transport);
            sdp.media.push(section);
            data = Some(accepted_data);
            continue;
        }
        let (section, media) = answer_section(offer, m, local, &mid, transport.dtls_role)?;
        remote.get_or_insert(transport);
        sdp.media.push(section);
        accepted.push(media);
    }
    let Some(remote) = remote else {
        let why: Vec<String> = rejected
            .iter()
            .map(|r| format!("{} {:?}", r.mid.as_deref().unwrap_or("?"), r.reason))
            .collect();
        return Err(NegotiationError::NothingAccepted(why.join(", ")));
    };
    // The answerer-tagged section is the first accepted one in the offer's group order.
    let order = offer.bundle_mids().unwrap_or_default();
    let mut mids: Vec<String> = order
        .iter()
        .filter(|mid| {
            accepted.iter().any(|a| &a.mid == *mid)
                || data.as_ref().is_some_and(|d: &AcceptedData| &d.mid == *mid)
        })
        .cloned()
        .collect();
    for mid in accepted
        .iter()
        .map(|a| &a.mid)
        .chain(data.as_ref().map(|d| &d.mid))
    {
        if !mids.contains(mid) {
            mids.push(mid.clone());
        }
    }
    sdp.groups.push(Group {
        semantics: "BUNDLE".into(),
        mids,
    });
    Ok(Answer {
        sdp,
        accepted,
        rejected,
        remote,
        data,
    })
}

fn reject_reason(
    offer: &SessionDescription,
    m: &MediaSection,
    local: &LocalParams,
    data_taken: bool,
) -> Option<RejectReason> {
    if m.port == 0 && !m.bundle_only {
        return Some(RejectReason::RejectedByOfferer);
    }
    match &m.kind {
        MediaKind::Audio | MediaKind::Video => {}
        MediaKind::Application => {
            return super::data::reject_reason(m, local, data_taken)
                .or_else(|| not_bundled(offer, m))
        }
        MediaKind::Other(k) => return Some(RejectReason::UnsupportedKind(k.clone())),
    }
    if !m.is_rtp() || !(m.proto.ends_with("RTP/SAVPF") || m.proto.ends_with("RTP/SAVP")) {
        return Some(RejectReason::UnsupportedProto(m.proto.clone()));
    }
    not_bundled(offer, m)
}

fn not_bundled(offer: &SessionDescription, m: &MediaSection) -> Option<RejectReason> {
    if let (Some(group), Some(mid)) = (offer.bundle_mids(), &m.mid) {
        if !group.contains(mid) {
            return Some(RejectReason::NotBundled);
        }
    }
    None
}

/// Checks ICE, DTLS and rtcp-mux of an accepted section and reads the peer's transport.
pub(super) fn remote_transport(
    sdp: &SessionDescription,
    m: &MediaSection,
    mid: &str,
) -> Result<RemoteTransport, NegotiationError> {
    // RTCP multiplexing is an RTP matter; a data section has none (RFC 8841).
    if !m.rtcp_mux && m.kind != MediaKind::Application {
        return Err(NegotiationError::NoRtcpMux { mid: mid.into() });
    }
    let fingerprints = if m.fingerprints.is_empty() {
        &sdp.fingerprints
    } else {
        &m.fingerprints
    };
    if fingerprints.is_empty() {
        return Err(NegotiationError::NoFingerprint { mid: mid.into() });
    }
    let strong: Vec<Fingerprint> = fingerprints
        .iter()
        .filter(|f| matches!(f.hash.as_str(), "sha-256" | "sha-384" | "sha-512"))
        .cloned()
        .collect();
    if strong.is_empty() {
        let found: Vec<&str> = fingerprints.iter().map(|f| f.hash.as_str()).collect();
        return Err(NegotiationError::WeakFingerprint {
            mid: mid.into(),
            found: found.join(","),
        });
    }
    let ufrag = m.ice_ufrag.as_ref().or(sdp.ice_ufrag.as_ref());
    let pwd = m.ice_pwd.as_ref().or(sdp.ice_pwd.as_ref());
    let (Some(ufrag), Some(pwd)) = (ufrag, pwd) else {
        return Err(NegotiationError::NoIceCredentials { mid: mid.into() });
    };
    // RFC 4145 §4: no a=setup means active.
    let setup = m.setup.or(sdp.setup).unwrap_or(Setup::Active);
    let dtls_role = match setup {
        Setup::ActPass | Setup::Active => DtlsRole::Server,
        Setup::Passive => DtlsRole::Client,
        Setup::HoldConn => {
            return Err(NegotiationError::BadSetup {
                mid: mid.into(),
                setup: setup.as_str(),
            })
        }
    };
    Ok(RemoteTransport {
        ice_ufrag: ufrag.clone(),
        ice_pwd: pwd.clone(),
        fingerprints: strong,
        dtls_role,
        candidates: m.candidates.clone(),
    })
}

fn answer_section(
    offer: &SessionDescription,
    m: &MediaSection,
    local: &LocalParams,
    mid: &str,
    role: DtlsRole,
) -> Result<(MediaSection, AcceptedMedia), NegotiationError> {
    // Extensions first: transport-cc feedback depends on the extension being accepted.
    let mut extmaps = Vec::new();
    let mut ext_ids = ExtIds::default();
    for e in offer.extmaps.iter().chain(&m.extmaps) {
        let Some(ext) = HeaderExtension::from_uri(&e.uri) else {
            continue;
        };
        if !local.extensions.contains(&ext) || !ext.applies_to(&m.kind) {
            continue;
        }
        if extmaps
            .iter()
            .any(|x: &Extmap| x.id == e.id || x.uri == e.uri)
        {
            continue;
        }
        ext_ids.set(ext, e.id);
        extmaps.push(Extmap {
            id: e.id,
            direction: e.direction.map(Direction::reversed),
            uri: e.uri.clone(),
            attributes: None,
        });
    }

    let codecs = intersect_codecs(m, local, ext_ids.transport_cc.is_some());
    let Some(first) = codecs.first().cloned() else {
        let offered: Vec<String> = m
            .codecs
            .iter()
            .filter(|c| !c.is_rtx())
            .map(|c| format!("{}/{}", c.name, c.clock_rate))
            .collect();
        return Err(NegotiationError::NoCommonCodec {
            mid: mid.into(),
            kind: m.kind.to_string(),
            offered: if offered.is_empty() {
                "none".into()
            } else {
                offered.join(" ")
            },
        });
    };

    let direction = m.direction.reversed();
    let mut s = MediaSection::new(m.kind.clone(), 9, &m.proto, Formats::Rtp(Vec::new()));
    let mut pts = Vec::new();
    for c in &codecs {
        pts.push(c.pt);
        s.codecs.push(Codec {
            pt: c.pt,
            name: c.name.clone(),
            clock_rate: c.clock_rate,
            channels: c.channels,
            fmtp: c.fmtp.as_ref().and_then(without_sender_only),
            rtcp_fb: c.rtcp_fb.clone(),
        });
        if let (Some(rtx_pt), Some(offered_rtx)) = (c.rtx_pt, c.rtx_pt.and_then(|p| m.codec(p))) {
            pts.push(rtx_pt);
            s.codecs.push(offered_rtx.clone());
        }
    }
    s.formats = Formats::Rtp(pts);
    transport_attributes(&mut s, local, role);
    s.mid = Some(mid.into());
    s.extmaps = extmaps;
    s.direction = direction;
    s.rtcp_rsize = m.rtcp_rsize;

    let mut rids = Vec::new();
    if let (Some(sim), true, Some(_)) = (&m.simulcast, direction.receives(), ext_ids.rid) {
        let (recv, answer_rids) = answer_simulcast(sim, &m.rids, &s);
        if !recv.is_empty() {
            rids = recv
                .iter()
                .filter_map(|alts| alts.first())
                .map(|r| r.id.clone())
                .collect();
            s.rids = answer_rids;
            s.simulcast = Some(Simulcast {
                send: Vec::new(),
                recv,
            });
        }
    }

    let media = AcceptedMedia {
        mid: mid.into(),
        kind: m.kind.clone(),
        direction,
        rtx_pt: first.rtx_pt,
        codec: first,
        codecs,
        ext_ids,
        ssrcs: ssrc_pairs(m),
        rids,
        msid: section_msid(m),
    };
    Ok((s, media))
}

/// Offered codecs that match ours, ordered by our preference, offer order within one of ours.
fn intersect_codecs(
    m: &MediaSection,
    local: &LocalParams,
    transport_cc: bool,
) -> Vec<NegotiatedCodec> {
    let mut out: Vec<NegotiatedCodec> = Vec::new();
    for lc in local.codecs.iter().filter(|c| c.kind == m.kind) {
        for oc in m.codecs.iter().filter(|c| !c.is_rtx() && lc.matches(c)) {
            if out.iter().any(|n| n.pt == oc.pt) {
                continue;
            }
            let rtcp_fb = oc
                .rtcp_fb
                .iter()
                .chain(&m.rtcp_fb_all)
                .filter(|fb| SUPPORTED_RTCP_FB.contains(&fb.as_str()))
                .filter(|fb| transport_cc || fb.as_str() != "transport-cc")
                .fold(Vec::new(), |mut acc: Vec<String>, fb| {
                    if !acc.contains(fb) {
                        acc.push(fb.clone());
                    }
                    acc
                });
            out.push(NegotiatedCodec {
                pt: oc.pt,
                name: oc.name.clone(),
                clock_rate: oc.clock_rate,
                channels: oc.channels,
                fmtp: lc.answer_fmtp(oc),
                rtx_pt: if lc.rtx { m.rtx_for(oc.pt) } else { None },
                rtcp_fb,
            });
        }
    }
    out
}

/// Our recv simulcast list for the offered send list: rids that the offer
/// declares with `a=rid:<id> send` and whose `pt=` restriction (if any)
/// keeps at least one accepted payload type.
fn answer_simulcast(
    sim: &Simulcast,
    offered_rids: &[Rid],
    s: &MediaSection,
) -> (Vec<Vec<super::simulcast::SimulcastRid>>, Vec<Rid>) {
    let accepted_pts: Vec<u8> = s.codecs.iter().map(|c| c.pt).collect();
    let mut answer_rids: Vec<Rid> = Vec::new();
    let mut recv = Vec::new();
    for alts in &sim.send {
        let kept: Vec<_> = alts
            .iter()
            .filter(|r| {
                let Some(rid) = offered_rids
                    .iter()
                    .find(|o| o.id == r.id && o.direction == RidDirection::Send)
                else {
                    return false;
                };
                let pts: Vec<u8> = rid
                    .pts
                    .iter()
                    .copied()
                    .filter(|p| accepted_pts.contains(p))
                    .collect();
                if !rid.pts.is_empty() && pts.is_empty() {
                    return false;
                }
                if !answer_rids.iter().any(|a| a.id == rid.id) {
                    answer_rids.push(Rid {
                        id: rid.id.clone(),
                        direction: RidDirection::Recv,
                        pts,
                        restrictions: rid.restrictions.clone(),
                    });
                }
                true
            })
            .cloned()
            .collect();
        if !kept.is_empty() {
            recv.push(kept);
        }
    }
    (recv, answer_rids)
}

/// ICE, DTLS, rtcp-mux and our host candidates; repeated in every accepted
/// section as browsers do, so any of them can be the BUNDLE tag.
pub(super) fn transport_attributes(s: &mut MediaSection, local: &LocalParams, role: DtlsRole) {
    let first = local.candidates.iter().find(|c| c.is_udp());
    let (port, ip) = match first {
        Some(c) => (c.port, c.ip()),
        None => (9, None),
    };
    s.port = port;
    s.connection = Some(match ip {
        Some(IpAddr::V6(v6)) => format!("IN IP6 {v6}"),
        Some(IpAddr::V4(v4)) => format!("IN IP4 {v4}"),
        None => "IN IP4 0.0.0.0".into(),
    });
    s.ice_ufrag = Some(local.ice_ufrag.clone());
    s.ice_pwd = Some(local.ice_pwd.clone());
    s.fingerprints = vec![local.fingerprint.clone()];
    s.setup = Some(match role {
        DtlsRole::Server => Setup::Passive,
        DtlsRole::Client => Setup::Active,
    });
    s.rtcp_mux = true;
    s.candidates = local.candidates.clone();
    s.end_of_candidates = true;
}

fn rejected_section(m: &MediaSection) -> MediaSection {
    let mut s = MediaSection::new(m.kind.clone(), 0, &m.proto, m.formats.clone());
    s.connection = Some("IN IP4 0.0.0.0".into());
    s.mid = m.mid.clone();
    s.direction = Direction::Inactive;
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sdp::{Candidate, LocalParams};

    const FP: &str = "sha-256 11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00";

    fn local() -> LocalParams {
        let cand = Candidate::host_udp("1", "192.0.2.10".parse().unwrap(), 40000, 2_130_706_431);
        LocalParams::new(
            "sluiceufrag",
            "sluicepassword0123456789",
            Fingerprint::parse(FP).unwrap(),
            vec![cand],
            7,
        )
    }

    /// A one-section offer: `m=` of `kind` with the given rtpmap/fmtp lines.
    fn offer(kind: &str, direction: &str, pts: &str, codec_lines: &str) -> SessionDescription {
        let text = format!(
            "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\n\
             m={kind} 9 UDP/TLS/RTP/SAVPF {pts}\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\na={direction}\r\n\
             a=rtcp-mux\r\na=ice-ufrag:abcd\r\na=ice-pwd:abcdefghijklmnopqrstuvwx\r\n\
             a=fingerprint:{FP}\r\na=setup:actpass\r\n{codec_lines}"
        );
        text.parse().expect("offer parses")
    }

    /// aiortc's receive-only video section: VP8 first, then two H264 profiles, each with RTX.
    fn vp8_first_viewer() -> SessionDescription {
        offer(
            "video",
            "recvonly",
            "97 98 99 100 101 102",
            "a=rtpmap:97 VP8/90000\r\na=rtpmap:98 rtx/90000\r\na=fmtp:98 apt=97\r\n\
             a=rtpmap:99 H264/90000\r\n\
             a=fmtp:99 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42001f\r\n\
             a=rtpmap:100 rtx/90000\r\na=fmtp:100 apt=99\r\n\
             a=rtpmap:101 H264/90000\r\n\
             a=fmtp:101 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f\r\n\
             a=rtpmap:102 rtx/90000\r\na=fmtp:102 apt=101\r\n",
        )
    }

    fn h264_track(profile_level_id: &str) -> NegotiatedCodec {
        NegotiatedCodec {
            pt: 96,
            name: "H264".into(),
            clock_rate: 90_000,
            channels: None,
            fmtp: Some(crate::sdp::Fmtp::parse(&format!(
                "packetization-mode=1;profile-level-id={profile_level_id}"
            ))),
            rtx_pt: Some(97),
            rtcp_fb: Vec::new(),
        }
    }

    #[test]
    fn viewer_listing_vp8_first_gets_the_h264_track_and_only_h264() {
        let mut ans = answer(&vp8_first_viewer(), &local()).expect("answer");
        // Our preference puts VP8 first: without narrowing the viewer would expect VP8.
        assert_eq!(ans.accepted[0].codec.name, "VP8");
        // GStreamer x264enc's constrained baseline (42c01f) is carried by 42e01f, which our
        // preference puts before 42001f (Baseline, which would carry it too).
        assert!(ans.send_track_codec(0, &h264_track("42c01f")));
        let acc = &ans.accepted[0];
        assert_eq!((acc.codec.name.as_str(), acc.codec.pt), ("H264", 101));
        assert_eq!(acc.rtx_pt, Some(102));
        assert_eq!(acc.codecs.len(), 1);
        let text = ans.sdp.to_string();
        assert!(
            text.contains("m=video 40000 UDP/TLS/RTP/SAVPF 101 102\r\n"),
            "{text}"
        );
        assert!(
            !text.contains("VP8") && !text.contains("a=rtpmap:99"),
            "{text}"
        );
    }

    #[test]
    fn a_codec_the_viewer_lacks_is_refused_and_changes_nothing() {
        let mut ans = answer(&vp8_first_viewer(), &local()).expect("answer");
        let before = ans.clone();
        let mut av1 = h264_track("42e01f");
        av1.name = "AV1".into();
        assert!(!ans.send_track_codec(0, &av1));
        // High profile is not Baseline: refused too.
        assert!(!ans.send_track_codec(0, &h264_track("64001f")));
        assert_eq!(ans, before);
        assert_eq!(
            codec_names(&ans.accepted[0].codecs),
            "VP8/90000 H264/90000",
            "names are listed once each"
        );
    }

    #[test]
    fn codecs_are_matched_by_set_not_order() {
        // The same codecs in the opposite order negotiate the same set.
        let h264_first = offer(
            "video",
            "sendonly",
            "102 97",
            "a=rtpmap:102 H264/90000\r\n\
             a=fmtp:102 packetization-mode=1;profile-level-id=42e01f\r\na=rtpmap:97 VP8/90000\r\n",
        );
        let vp8_first = offer(
            "video",
            "sendonly",
            "97 102",
            "a=rtpmap:97 VP8/90000\r\na=rtpmap:102 H264/90000\r\n\
             a=fmtp:102 packetization-mode=1;profile-level-id=42e01f\r\n",
        );
        let pts = |o: &SessionDescription| {
            let mut v: Vec<u8> = answer(o, &local()).unwrap().accepted[0]
                .codecs
                .iter()
                .map(|c| c.pt)
                .collect();
            v.sort_unstable();
            v
        };
        assert_eq!(pts(&h264_first), vec![97, 102]);
        assert_eq!(pts(&h264_first), pts(&vp8_first));
    }

    #[test]
    fn sender_only_opus_parameters_are_not_echoed() {
        // GStreamer's opus section declares what it sends.
        let o = offer(
            "audio",
            "sendonly",
            "96",
            "a=rtpmap:96 OPUS/48000/2\r\n\
             a=fmtp:96 sprop-maxcapturerate=48000;sprop-stereo=0;stereo=0;useinbandfec=1\r\n",
        );
        let ans = answer(&o, &local()).expect("answer");
        let text = ans.sdp.to_string();
        assert!(!text.contains("sprop-"), "{text}");
        assert!(
            text.contains("a=fmtp:96 stereo=0;useinbandfec=1\r\n"),
            "{text}"
        );
        // What the publisher sends is kept for the sections we offer its subscribers.
        let fmtp = ans.accepted[0].codec.fmtp.as_ref().expect("fmtp");
        assert_eq!(fmtp.param("sprop-stereo"), Some("0"));
    }

    #[test]
    fn h264_parameter_sets_are_not_echoed() {
        let o = offer(
            "video",
            "sendonly",
            "102",
            "a=rtpmap:102 H264/90000\r\n\
             a=fmtp:102 packetization-mode=1;profile-level-id=42c01f;sprop-parameter-sets=Z0LAH9kA,aM4yyA==\r\n",
        );
        let text = answer(&o, &local()).expect("answer").sdp.to_string();
        assert!(
            text.contains("a=fmtp:102 packetization-mode=1;profile-level-id=42c01f\r\n"),
            "{text}"
        );
    }
}
