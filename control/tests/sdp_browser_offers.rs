//! Real-client offers (Chromium, Firefox, aiortc, OBS WHIP) through parse →
//! answer → print → re-parse, plus the offers Sluice must refuse, round trips,
//! the subscriber offer/answer direction, and a parser robustness property.

use proptest::prelude::*;
use sluice_control::sdp::{
    accept_answer, answer, offer_for_subscriber, parse, Answer, Candidate, Direction, DtlsRole,
    Fingerprint, LocalParams, MediaKind, NegotiationError, OutgoingTrack, RejectReason,
    SessionDescription, Setup,
};

const OUR_FP: &str = "sha-256 11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00";

fn fixture(name: &str) -> String {
    let path = format!("{}/tests/fixtures/sdp/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn local() -> LocalParams {
    let cand = Candidate::host_udp("1", "192.0.2.10".parse().unwrap(), 40000, 2_130_706_431);
    LocalParams::new(
        "sluiceufrag",
        "sluicepassword0123456789",
        Fingerprint::parse(OUR_FP).unwrap(),
        vec![cand],
        77,
    )
}

/// Answers the fixture, prints and re-parses the answer, and checks the
/// invariants every answer must hold.
fn answer_fixture(name: &str) -> (SessionDescription, Answer, SessionDescription) {
    let offer = parse(&fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    let ans = answer(&offer, &local()).unwrap_or_else(|e| panic!("{name}: {e}"));
    let text = ans.sdp.to_string();
    assert!(
        !text.replace("\r\n", "").contains('\n'),
        "{name}: bare LF in answer"
    );
    let re = parse(&text).unwrap_or_else(|e| panic!("{name} answer: {e}\n{text}"));
    assert!(re.ice_lite);
    assert_eq!(re.media.len(), offer.media.len());
    let bundle = re.bundle_mids().expect("answer has BUNDLE");
    let accepted_mids: Vec<&str> = ans.accepted.iter().map(|a| a.mid.as_str()).collect();
    assert_eq!(bundle.len(), accepted_mids.len());
    for (o, a) in offer.media.iter().zip(&re.media) {
        assert_eq!(o.mid, a.mid, "{name}: mids mirrored");
        if a.port == 0 {
            continue;
        }
        assert!(bundle.contains(a.mid.as_ref().unwrap()));
        assert!(a.rtcp_mux);
        assert_eq!(a.ice_ufrag.as_deref(), Some("sluiceufrag"));
        assert_eq!(a.fingerprints[0].to_string(), OUR_FP);
        assert_eq!(a.setup, Some(Setup::Passive));
        assert_eq!(a.direction, o.direction.reversed());
        assert_eq!(a.candidates.len(), 1);
        assert!(a.end_of_candidates);
        for c in &a.codecs {
            let oc = o.codec(c.pt).expect("answer pt was offered");
            assert!(
                oc.name.eq_ignore_ascii_case(&c.name),
                "{name}: pt {} renamed",
                c.pt
            );
            if c.is_rtx() {
                assert!(a.codec(c.apt().unwrap()).is_some(), "rtx apt accepted");
            }
        }
        for e in &a.extmaps {
            let oe = o
                .extmaps
                .iter()
                .find(|x| x.uri == e.uri)
                .expect("ext was offered");
            assert_eq!(oe.id, e.id, "{name}: extmap id kept");
        }
    }
    (offer, ans, re)
}

fn pts(m: &sluice_control::sdp::MediaSection) -> Vec<u8> {
    m.codecs.iter().map(|c| c.pt).collect()
}

#[test]
fn chromium_cam_mic_is_answered_with_our_codec_preference() {
    let (_, ans, re) = answer_fixture("chromium_cam_mic.sdp");
    assert_eq!(re.bundle_mids().unwrap(), ["0", "1"]);
    assert!(re.extmap_allow_mixed);
    let audio = &ans.accepted[0];
    assert_eq!(
        (audio.kind.clone(), audio.codec.pt),
        (MediaKind::Audio, 111)
    );
    assert_eq!(
        audio.codec.fmtp.as_ref().unwrap().raw,
        "minptime=10;useinbandfec=1"
    );
    assert_eq!(audio.codec.rtcp_fb, ["transport-cc"]);
    assert_eq!(pts(&re.media[0]), [111]);
    assert_eq!(audio.ext_ids.audio_level, Some(1));
    assert_eq!(audio.ext_ids.mid, Some(4));
    assert_eq!(audio.ext_ids.video_orientation, None);
    assert_eq!(audio.ssrcs[0].ssrc, 2_838_154_093);

    let video = &ans.accepted[1];
    // VP8, VP9 p0, VP9 p2, H264 CB (106) and main (127) in mode 1, AV1; each with RTX.
    assert_eq!(
        pts(&re.media[1]),
        [96, 97, 98, 99, 100, 101, 106, 107, 127, 125, 45, 46]
    );
    assert_eq!((video.codec.pt, video.rtx_pt), (96, Some(97)));
    assert_eq!(
        video.codec.rtcp_fb,
        ["goog-remb", "transport-cc", "ccm fir", "nack", "nack pli"]
    );
    let h264 = video.codecs.iter().find(|c| c.pt == 106).unwrap();
    assert_eq!(
        h264.fmtp.as_ref().unwrap().param("profile-level-id"),
        Some("42e01f")
    );
    assert_eq!(video.ext_ids.transport_cc, Some(3));
    assert_eq!(video.ext_ids.abs_send_time, Some(2));
    assert_eq!(video.ext_ids.rid, Some(10));
    assert_eq!(video.ext_ids.repaired_rid, Some(11));
    assert_eq!(video.ext_ids.video_orientation, Some(13));
    assert_eq!(video.ext_ids.audio_level, None);
    assert_eq!(video.ssrcs.len(), 1);
    assert_eq!(video.ssrcs[0].ssrc, 1_432_905_237);
    assert_eq!(video.ssrcs[0].rtx_ssrc, Some(3_987_156_512));
    assert_eq!(
        video.msid.as_ref().unwrap().stream_id,
        "5f1c7a0e-3b8d-4e61-a2c9-0d7e4b9f1a36"
    );
    assert_eq!(video.direction, Direction::SendRecv);
    assert!(re.media[1]
        .extmaps
        .iter()
        .all(|e| !e.uri.contains("toffset")));
    assert_eq!(ans.remote.ice_ufrag, "Xk9a");
    assert_eq!(ans.remote.dtls_role, DtlsRole::Server);
}

#[test]
fn chromium_simulcast_gets_recv_rids() {
    let (_, ans, re) = answer_fixture("chromium_simulcast.sdp");
    let v = &re.media[1];
    assert_eq!(v.simulcast.as_ref().unwrap().to_string(), "recv q;h;f");
    let rids: Vec<String> = v.rids.iter().map(|r| r.to_string()).collect();
    assert_eq!(rids, ["q recv", "h recv", "f recv"]);
    assert_eq!(ans.accepted[1].rids, ["q", "h", "f"]);
    assert!(ans.accepted[1].ssrcs.is_empty());
    assert!(re.media[0].simulcast.is_none());
}

#[test]
fn firefox_session_fingerprint_and_directional_extmaps() {
    let (_, ans, re) = answer_fixture("firefox_cam_mic.sdp");
    assert_eq!(ans.remote.fingerprints[0].hash, "sha-256");
    assert_eq!(ans.remote.ice_ufrag, "8d1e4b2a");
    // csrc-audio-level and playout-delay (both /recvonly) are not ours: dropped.
    let audio_uris: Vec<&str> = re.media[0].extmaps.iter().map(|e| e.uri.as_str()).collect();
    assert_eq!(
        audio_uris,
        [
            "urn:ietf:params:rtp-hdrext:ssrc-audio-level",
            "urn:ietf:params:rtp-hdrext:sdes:mid"
        ]
    );
    assert_eq!(pts(&re.media[0]), [109]);
    assert_eq!(
        ans.accepted[0].codec.fmtp.as_ref().unwrap().raw,
        "maxplaybackrate=48000;stereo=1;useinbandfec=1"
    );
    assert_eq!(pts(&re.media[1]), [120, 124, 121, 125]);
    assert_eq!(ans.accepted[1].rids, ["f", "h", "q"]);
    assert_eq!(
        re.media[1].simulcast.as_ref().unwrap().to_string(),
        "recv f;h;q"
    );
    assert_eq!(ans.accepted[1].ext_ids.rid, Some(8));
}

#[test]
fn aiortc_inline_candidates_and_h264_variants() {
    let (_, ans, re) = answer_fixture("aiortc_offer.sdp");
    assert_eq!(ans.remote.candidates.len(), 2);
    assert_eq!(
        ans.remote.candidates[0].ip(),
        Some("192.168.1.50".parse().unwrap())
    );
    assert_eq!(pts(&re.media[0]), [96]);
    // 42001f is Baseline, not Constrained Baseline: not accepted.
    assert_eq!(pts(&re.media[1]), [97, 98, 101, 102]);
    assert_eq!(ans.accepted[1].ssrcs[0].rtx_ssrc, Some(612_377_491));
    assert_eq!(ans.accepted[0].ext_ids.audio_level, Some(2));
    assert_eq!(
        ans.accepted[0].codec.fmtp.as_ref().unwrap().raw,
        "useinbandfec=1"
    );
}

#[test]
fn whip_obs_sendonly_is_answered_recvonly() {
    let (_, ans, re) = answer_fixture("whip_obs.sdp");
    assert!(re.media.iter().all(|m| m.direction == Direction::RecvOnly));
    assert!(ans
        .accepted
        .iter()
        .all(|a| a.direction == Direction::RecvOnly));
    assert_eq!(ans.accepted[1].codec.name, "H264");
    assert_eq!(ans.accepted[1].rtx_pt, None);
    assert_eq!(ans.remote.candidates.len(), 2);
    assert_eq!(re.media[0].port, 40000);
    assert_eq!(re.media[0].connection.as_deref(), Some("IN IP4 192.0.2.10"));
}

fn answer_err(text: &str) -> NegotiationError {
    answer(&parse(text).unwrap(), &local()).expect_err("offer must be refused")
}

#[test]
fn unservable_offers_are_refused_with_a_reason() {
    let e = answer_err(&fixture("bad_no_fingerprint.sdp"));
    assert_eq!(e, NegotiationError::NoFingerprint { mid: "0".into() });
    assert!(e.to_string().contains("a=fingerprint"), "{e}");
    let e = answer_err(&fixture("bad_no_rtcp_mux.sdp"));
    assert_eq!(e, NegotiationError::NoRtcpMux { mid: "0".into() });
    let e = answer_err(&fixture("bad_unsupported_codecs.sdp"));
    assert_eq!(
        e.to_string(),
        "m= section mid=0 (audio) has no codec in common; offered: PCMU/8000 PCMA/8000 G722/8000"
    );
    let cam = fixture("chromium_cam_mic.sdp");
    let e = answer_err(&cam.replace("a=group:BUNDLE 0 1\r\n", ""));
    assert_eq!(e, NegotiationError::NoBundle(2));
    let e = answer_err(&cam.replace("t=0 0\r\n", "t=0 0\r\na=ice-lite\r\n"));
    assert_eq!(e, NegotiationError::BothIceLite);
    let e = answer_err(&cam.replace("a=ice-pwd:pT4m2QwS8vLr0nYc6jHd1eFb\r\n", ""));
    assert_eq!(e, NegotiationError::NoIceCredentials { mid: "0".into() });
    let e = answer_err(&cam.replace("sha-256 7B", "sha-1 7B"));
    assert!(matches!(e, NegotiationError::WeakFingerprint { .. }), "{e}");
    let e = answer_err(&cam.replace("a=mid:1\r\n", ""));
    assert_eq!(e, NegotiationError::NoMid { index: 1 });
}

#[test]
fn passive_offer_makes_us_dtls_client() {
    let text = fixture("whip_obs.sdp").replace("a=setup:actpass", "a=setup:passive");
    let ans = answer(&parse(&text).unwrap(), &local()).unwrap();
    assert_eq!(ans.remote.dtls_role, DtlsRole::Client);
    assert!(ans.sdp.media.iter().all(|m| m.setup == Some(Setup::Active)));
    let text = fixture("whip_obs.sdp").replace("a=setup:actpass", "a=setup:holdconn");
    assert!(matches!(
        answer_err(&text),
        NegotiationError::BadSetup { .. }
    ));
}

#[test]
fn data_channel_accepted_and_unbundled_sections_get_port_zero() {
    let dc = format!("m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\nc=IN IP4 0.0.0.0\r\na=ice-ufrag:abcd\r\na=ice-pwd:0123456789012345678901\r\na=fingerprint:{OUR_FP}\r\na=setup:actpass\r\na=mid:2\r\na=sctp-port:5000\r\na=max-message-size:262144\r\n");
    let text = fixture("chromium_cam_mic.sdp").replace("BUNDLE 0 1", "BUNDLE 0 1 2")
        + &dc
        + "m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:3\r\na=rtpmap:96 VP8/90000\r\na=rtcp-mux\r\n";
    let offer = parse(&text).unwrap();
    let ans = answer(&offer, &local()).unwrap();
    assert_eq!(ans.accepted.len(), 2);
    assert_eq!(ans.rejected.len(), 1);
    assert_eq!(ans.rejected[0].reason, RejectReason::NotBundled);
    let data = ans.data.as_ref().expect("data section accepted");
    assert_eq!(
        (data.mid.as_str(), data.remote_max_message_size),
        ("2", Some(262_144))
    );
    let printed = ans.sdp.to_string();
    assert!(
        printed.contains("m=application 40000 UDP/DTLS/SCTP webrtc-datachannel\r\n"),
        "{printed}"
    );
    assert!(
        printed.contains("a=sctp-port:5000\r\na=max-message-size:65536\r\n"),
        "{printed}"
    );
    let re = parse(&printed).unwrap();
    assert_eq!(re.media[2].kind, MediaKind::Application);
    assert_eq!(re.media[2].setup, Some(Setup::Passive));
    assert!(!re.media[2].rtcp_mux, "no rtcp-mux in a data section");
    assert_eq!(re.media[3].port, 0);
    assert_eq!(re.bundle_mids().unwrap(), ["0", "1", "2"]);

    // A data-only offer (a viewer's publisher connection) is answered with its transport.
    let only_dc = format!(
        "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\n{}",
        dc.replace("mid:2", "mid:0")
    );
    let ans = answer(&parse(&only_dc).unwrap(), &local()).unwrap();
    assert!(ans.accepted.is_empty());
    assert_eq!(ans.data.as_ref().map(|d| d.mid.as_str()), Some("0"));
    assert_eq!(ans.remote.ice_ufrag, "abcd");

    // A second data section, a session without data channels, a foreign profile: port 0.
    let two = only_dc.replace("BUNDLE 0", "BUNDLE 0 1") + &dc.replace("mid:2", "mid:1");
    let ans = answer(&parse(&two).unwrap(), &local()).unwrap();
    assert_eq!(ans.rejected[0].reason, RejectReason::SecondDataSection);
    let mut off = local();
    off.data_channels = false;
    assert!(matches!(
        answer(&parse(&only_dc).unwrap(), &off),
        Err(NegotiationError::NothingAccepted(_))
    ));
    let sctp_only = only_dc.replace("UDP/DTLS/SCTP webrtc-datachannel", "DTLS/SCTP 5000");
    assert!(matches!(
        answer(&parse(&sctp_only).unwrap(), &local()),
        Err(NegotiationError::NothingAccepted(_))
    ));
}

#[test]
fn fixtures_round_trip_through_the_printer() {
    for name in [
        "chromium_cam_mic.sdp",
        "chromium_simulcast.sdp",
        "firefox_cam_mic.sdp",
        "aiortc_offer.sdp",
        "whip_obs.sdp",
        "bad_no_fingerprint.sdp",
        "bad_no_rtcp_mux.sdp",
        "bad_unsupported_codecs.sdp",
    ] {
        let first = parse(&fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        let printed = first.to_string();
        let second = parse(&printed).unwrap_or_else(|e| panic!("{name} reprint: {e}\n{printed}"));
        assert_eq!(first, second, "{name}");
        assert_eq!(printed, second.to_string(), "{name}: printing is stable");
    }
}

/// A browser-style answer to our subscriber offer.
fn client_answer(offer: &SessionDescription) -> SessionDescription {
    let mut a = offer.clone();
    a.ice_lite = false;
    a.msid_semantic = None;
    for m in &mut a.media {
        m.ice_ufrag = Some("cli1".into());
        m.ice_pwd = Some("clientpassword0123456789".into());
        m.setup = Some(Setup::Active);
        m.direction = Direction::RecvOnly;
        m.candidates.clear();
        m.end_of_candidates = false;
        m.ssrcs.clear();
        m.ssrc_groups.clear();
        m.msids.clear();
    }
    a
}

#[test]
fn subscriber_offer_and_client_answer() {
    let publisher = answer_fixture("chromium_cam_mic.sdp").1;
    let tracks: Vec<OutgoingTrack> = publisher
        .accepted
        .iter()
        .enumerate()
        .map(|(i, a)| OutgoingTrack {
            mid: i.to_string(),
            kind: a.kind.clone(),
            codec: a.codec.clone(),
            ssrc: 1000 + i as u32,
            rtx_ssrc: a.rtx_pt.map(|_| 2000 + i as u32),
            msid: a.msid.clone().unwrap(),
            ext_ids: a.ext_ids,
        })
        .collect();
    let offer = offer_for_subscriber(&local(), &tracks);
    let text = offer.to_string();
    let offer = parse(&text).unwrap();
    assert!(offer.ice_lite);
    assert_eq!(offer.bundle_mids().unwrap(), ["0", "1"]);
    let v = &offer.media[1];
    assert_eq!(v.direction, Direction::SendOnly);
    assert_eq!(v.setup, Some(Setup::ActPass));
    assert_eq!(pts(v), [96, 97]);
    assert_eq!(v.rtx_for(96), Some(97));
    assert_eq!(v.ssrc_groups[0].ssrcs, [1001, 2001]);
    assert!(v.codecs[0].rtcp_fb.contains(&"transport-cc".to_string()));
    assert!(offer.media[0]
        .extmaps
        .iter()
        .any(|e| e.id == 1 && e.uri.ends_with("ssrc-audio-level")));

    let client = parse(&client_answer(&offer).to_string()).unwrap();
    let acc = accept_answer(&offer, &client).unwrap();
    assert_eq!(acc.accepted.len(), 2);
    assert_eq!(acc.remote.ice_ufrag, "cli1");
    assert_eq!(acc.remote.dtls_role, DtlsRole::Server);
    assert_eq!(acc.accepted[1].ssrcs[0].rtx_ssrc, Some(2001));
    assert_eq!(acc.accepted[1].ext_ids, tracks[1].ext_ids);
    assert_eq!(acc.accepted[1].rtx_pt, Some(97));

    // Declining a track is fine; bad answers are refused.
    let mut declined = client_answer(&offer);
    declined.media[0].direction = Direction::Inactive;
    let acc = accept_answer(&offer, &declined).unwrap();
    assert_eq!(acc.rejected[0].reason, RejectReason::RejectedByAnswerer);
    let mut bad = client_answer(&offer);
    bad.media[1].direction = Direction::SendOnly;
    assert!(matches!(
        accept_answer(&offer, &bad),
        Err(NegotiationError::BadDirection { .. })
    ));
    let mut bad = client_answer(&offer);
    bad.media[1].codecs[0].pt = 55;
    bad.media[1].formats = sluice_control::sdp::Formats::Rtp(vec![55, 97]);
    assert_eq!(
        accept_answer(&offer, &bad).unwrap_err(),
        NegotiationError::UnofferedCodec {
            mid: "1".into(),
            pt: 55
        }
    );
    let mut bad = client_answer(&offer);
    bad.media[1].mid = Some("x".into());
    assert!(matches!(
        accept_answer(&offer, &bad),
        Err(NegotiationError::MidMismatch { .. })
    ));
    let mut bad = client_answer(&offer);
    bad.media.pop();
    assert!(matches!(
        accept_answer(&offer, &bad),
        Err(NegotiationError::SectionCount { .. })
    ));
    let mut bad = client_answer(&offer);
    bad.media[0].rtcp_mux = false;
    assert!(matches!(
        accept_answer(&offer, &bad),
        Err(NegotiationError::NoRtcpMux { .. })
    ));
}

fn sdp_line() -> impl Strategy<Value = String> {
    let prefix = prop::sample::select(vec![
        "v=",
        "o=",
        "s=",
        "t=",
        "c=",
        "b=",
        "m=",
        "a=",
        "a=rtpmap:",
        "a=fmtp:",
        "a=rtcp-fb:",
        "a=extmap:",
        "a=candidate:",
        "a=ssrc:",
        "a=ssrc-group:",
        "a=rid:",
        "a=simulcast:",
        "a=group:",
        "a=fingerprint:",
        "a=setup:",
        "a=mid:",
        "a=msid:",
        "a=sctp-port:",
        "m=audio ",
        "m=video 9 UDP/TLS/RTP/SAVPF ",
        "m=application 9 UDP/DTLS/SCTP ",
        "",
    ]);
    (prefix, "[ -~\t;,/~:=]{0,40}").prop_map(|(p, rest)| format!("{p}{rest}"))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn random_lines_never_panic(lines in prop::collection::vec(sdp_line(), 0..40), crlf in any::<bool>()) {
        let sep = if crlf { "\r\n" } else { "\n" };
        let text = format!("v=0{sep}o=- 1 1 IN IP4 0.0.0.0{sep}{}", lines.join(sep));
        if let Ok(sdp) = parse(&text) {
            // Whatever parses must print to something that parses again.
            let printed = sdp.to_string();
            prop_assert!(parse(&printed).is_ok(), "{}", printed);
            let _ = answer(&sdp, &local());
        }
    }

    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,300}") {
        let _ = parse(&text);
    }
}
