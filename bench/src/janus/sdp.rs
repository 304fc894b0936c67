//! The SDP the benchmark exchanges with Janus (RFC 8866 syntax, JSEP RFC 8829 usage): the
//! publisher's offer (Opus + VP8, BUNDLE RFC 8843, rtcp-mux RFC 5761, our ICE credentials and
//! host candidate RFC 8839, our DTLS fingerprint with `a=setup:active` RFC 8122/5763), a parser
//! for what Janus sends (its answer to a publisher, its offer to a subscriber), and the
//! subscriber's `recvonly` answer to that offer.
//!
//! Only what a load generator needs: IPv4 UDP host candidates, one codec per section (the
//! first Opus / VP8 payload type offered, plus its RTX if offered), no header extensions.

use std::net::{IpAddr, SocketAddr};

use crate::report::BenchError;

/// Our side of a description.
#[derive(Debug, Clone)]
pub struct Local {
    pub ufrag: String,
    pub pwd: String,
    /// `"sha-256 AB:…"` (the `a=fingerprint` value).
    pub fingerprint: String,
    /// Our one host candidate.
    pub candidate: SocketAddr,
}

/// One m-section of a parsed description.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Media {
    /// `audio`, `video`, `application`, …
    pub kind: String,
    /// 0 when the section is rejected.
    pub port: u16,
    pub proto: String,
    pub mid: Option<String>,
    /// `sendrecv`, `sendonly`, `recvonly` or `inactive` (`sendrecv` when absent).
    pub direction: String,
    /// Payload types in m-line order.
    pub pts: Vec<u8>,
    /// `(pt, encoding name, clock rate, rest)` of each `a=rtpmap`.
    pub rtpmap: Vec<(u8, String, u32, String)>,
    /// `(pt, parameters)` of each `a=fmtp`.
    pub fmtp: Vec<(u8, String)>,
    /// Every SSRC named by `a=ssrc`, in order, without repeats.
    pub ssrcs: Vec<u32>,
    /// `a=ssrc-group:FID primary rtx`.
    pub fid: Option<(u32, u32)>,
}

impl Media {
    /// The payload type of the first `a=rtpmap` whose encoding is `name` (case-insensitive).
    pub fn pt_of(&self, name: &str) -> Option<u8> {
        self.pts.iter().copied().find(|pt| {
            self.rtpmap
                .iter()
                .any(|(p, n, _, _)| p == pt && n.eq_ignore_ascii_case(name))
        })
    }

    /// The RTX payload type whose `apt` is `pt`.
    pub fn rtx_for(&self, pt: u8) -> Option<u8> {
        let apt = format!("apt={pt}");
        self.rtpmap
            .iter()
            .filter(|(_, n, _, _)| n.eq_ignore_ascii_case("rtx"))
            .map(|(p, _, _, _)| *p)
            .find(|p| {
                self.fmtp
                    .iter()
                    .any(|(fp, params)| fp == p && params.split(';').any(|x| x.trim() == apt))
            })
    }

    /// The media SSRC: the FID group's primary, else the first one named.
    pub fn primary_ssrc(&self) -> Option<u32> {
        self.fid.map(|(p, _)| p).or(self.ssrcs.first().copied())
    }
}

/// A parsed remote description: transport attributes (session level, or the first section that
/// has them, as BUNDLE makes them shared) and each m-section.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Remote {
    pub ufrag: String,
    pub pwd: String,
    /// `"sha-256 AB:…"`.
    pub fingerprint: String,
    pub setup: Option<String>,
    /// UDP IPv4/IPv6 candidates, in order.
    pub candidates: Vec<SocketAddr>,
    pub media: Vec<Media>,
}

impl Remote {
    /// The first candidate on `ip`, else the first one.
    pub fn candidate_on(&self, ip: IpAddr) -> Option<SocketAddr> {
        self.candidates
            .iter()
            .copied()
            .find(|c| c.ip() == ip)
            .or(self.candidates.first().copied())
    }
}

fn bad(what: &str) -> BenchError {
    BenchError::Other(format!("SDP: {what}"))
}

/// Parses a description; refuses one without ICE credentials or a fingerprint.
pub fn parse(sdp: &str) -> Result<Remote, BenchError> {
    let mut r = Remote::default();
    let mut cur: Option<Media> = None;
    for line in sdp.lines() {
        let line = line.trim_end_matches('\r');
        let Some((kind, value)) = line.split_once('=') else {
            continue;
        };
        match kind {
            "m" => {
                if let Some(m) = cur.take() {
                    r.media.push(m);
                }
                let mut it = value.split_whitespace();
                let kind = it.next().ok_or_else(|| bad("empty m-line"))?.to_string();
                let port = it
                    .next()
                    .and_then(|p| p.split('/').next())
                    .and_then(|p| p.parse().ok())
                    .ok_or_else(|| bad("m-line port"))?;
                let proto = it.next().unwrap_or_default().to_string();
                let pts = it.filter_map(|p| p.parse().ok()).collect();
                cur = Some(Media {
                    kind,
                    port,
                    proto,
                    pts,
                    direction: "sendrecv".into(),
                    ..Media::default()
                });
            }
            "a" => attribute(value, &mut r, cur.as_mut())?,
            _ => {}
        }
    }
    if let Some(m) = cur.take() {
        r.media.push(m);
    }
    if r.ufrag.is_empty() || r.pwd.is_empty() {
        return Err(bad("no ICE ufrag/pwd"));
    }
    if r.fingerprint.is_empty() {
        return Err(bad("no DTLS fingerprint"));
    }
    Ok(r)
}

fn attribute(value: &str, r: &mut Remote, m: Option<&mut Media>) -> Result<(), BenchError> {
    let (name, rest) = value.split_once(':').unwrap_or((value, ""));
    // Transport attributes: the first value wins (BUNDLE shares one transport).
    let first = |slot: &mut String| {
        if slot.is_empty() {
            *slot = rest.trim().to_string();
        }
    };
    match name {
        "ice-ufrag" => first(&mut r.ufrag),
        "ice-pwd" => first(&mut r.pwd),
        "fingerprint" => first(&mut r.fingerprint),
        "setup" if r.setup.is_none() => r.setup = Some(rest.trim().to_string()),
        "candidate" => {
            // foundation component transport priority address port typ type …
            let f: Vec<&str> = rest.split_whitespace().collect();
            if f.len() >= 8 && f[2].eq_ignore_ascii_case("udp") && f[1] == "1" {
                if let (Ok(ip), Ok(port)) = (f[4].parse::<IpAddr>(), f[5].parse::<u16>()) {
                    let a = SocketAddr::new(ip, port);
                    if !r.candidates.contains(&a) {
                        r.candidates.push(a);
                    }
                }
            }
        }
        _ => {}
    }
    let Some(m) = m else {
        return Ok(());
    };
    match name {
        "mid" => m.mid = Some(rest.trim().to_string()),
        "sendrecv" | "sendonly" | "recvonly" | "inactive" => m.direction = name.to_string(),
        "rtpmap" => {
            let (pt, enc) = rest.split_once(' ').ok_or_else(|| bad("rtpmap"))?;
            let pt = pt.parse().map_err(|_| bad("rtpmap payload type"))?;
            let mut parts = enc.trim().splitn(3, '/');
            let name = parts.next().unwrap_or_default().to_string();
            let rate = parts.next().and_then(|r| r.parse().ok()).unwrap_or(0);
            let extra = parts.next().unwrap_or_default().to_string();
            m.rtpmap.push((pt, name, rate, extra));
        }
        "fmtp" => {
            if let Some((pt, params)) = rest.split_once(' ') {
                if let Ok(pt) = pt.parse() {
                    m.fmtp.push((pt, params.trim().to_string()));
                }
            }
        }
        "ssrc" => {
            let id = rest.split_whitespace().next().and_then(|s| s.parse().ok());
            if let Some(id) = id {
                if !m.ssrcs.contains(&id) {
                    m.ssrcs.push(id);
                }
            }
        }
        "ssrc-group" => {
            let f: Vec<&str> = rest.split_whitespace().collect();
            if f.len() == 3 && f[0] == "FID" {
                if let (Ok(a), Ok(b)) = (f[1].parse(), f[2].parse()) {
                    m.fid = Some((a, b));
                }
            }
        }
        _ => {}
    }
    Ok(())
}

fn session_head(out: &mut String, id: u64, mids: &[String]) {
    out.push_str(&format!(
        "v=0\r\no=- {id} 2 IN IP4 127.0.0.1\r\ns=sluice-bench\r\nt=0 0\r\n"
    ));
    if !mids.is_empty() {
        out.push_str(&format!("a=group:BUNDLE {}\r\n", mids.join(" ")));
    }
    out.push_str("a=msid-semantic: WMS sluice\r\n");
}

/// Transport lines of one section: ICE credentials, fingerprint, `setup:active` (we are the
/// DTLS client either way), rtcp-mux, our candidate.
fn transport(out: &mut String, l: &Local) {
    let ip = match l.candidate.ip() {
        IpAddr::V4(_) => "IP4",
        IpAddr::V6(_) => "IP6",
    };
    out.push_str(&format!(
        "c=IN {ip} {a}\r\na=rtcp:{p} IN {ip} {a}\r\na=ice-ufrag:{u}\r\na=ice-pwd:{pw}\r\n\
         a=fingerprint:{fp}\r\na=setup:active\r\na=rtcp-mux\r\n",
        a = l.candidate.ip(),
        p = l.candidate.port(),
        u = l.ufrag,
        pw = l.pwd,
        fp = l.fingerprint,
    ));
}

fn candidate(out: &mut String, l: &Local) {
    // Host candidate, component 1, priority of a host candidate (RFC 8445 §5.1.2.1).
    out.push_str(&format!(
        "a=candidate:1 1 udp 2130706431 {} {} typ host\r\na=end-of-candidates\r\n",
        l.candidate.ip(),
        l.candidate.port()
    ));
}

/// The publisher's offer: audio (Opus, `audio_pt`) with `ssrcs.0` and video (VP8, `video_pt`,
/// NACK/PLI/FIR/REMB feedback) with `ssrcs.1`, both `sendonly`, bundled on one transport.
pub fn publisher_offer(l: &Local, pts: (u8, u8), ssrcs: (u32, u32), session_id: u64) -> String {
    let mids = ["0".to_string(), "1".to_string()];
    let mut s = String::with_capacity(2048);
    session_head(&mut s, session_id, &mids);
    let (a, v) = pts;
    s.push_str(&format!(
        "m=audio {} UDP/TLS/RTP/SAVPF {a}\r\n",
        l.candidate.port()
    ));
    transport(&mut s, l);
    s.push_str(&format!(
        "a=mid:0\r\na=sendonly\r\na=msid:sluice a0\r\na=rtpmap:{a} opus/48000/2\r\n\
         a=fmtp:{a} minptime=10;useinbandfec=1\r\na=ssrc:{ss} cname:sluice-bench\r\n\
         a=ssrc:{ss} msid:sluice a0\r\n",
        ss = ssrcs.0
    ));
    candidate(&mut s, l);
    s.push_str(&format!(
        "m=video {} UDP/TLS/RTP/SAVPF {v}\r\n",
        l.candidate.port()
    ));
    transport(&mut s, l);
    s.push_str(&format!(
        "a=mid:1\r\na=sendonly\r\na=msid:sluice v0\r\na=rtpmap:{v} VP8/90000\r\n\
         a=rtcp-fb:{v} nack\r\na=rtcp-fb:{v} nack pli\r\na=rtcp-fb:{v} ccm fir\r\n\
         a=rtcp-fb:{v} goog-remb\r\na=ssrc:{ss} cname:sluice-bench\r\n\
         a=ssrc:{ss} msid:sluice v0\r\n",
        ss = ssrcs.1
    ));
    candidate(&mut s, l);
    s
}

/// What the subscriber accepted in one section of Janus's offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Accepted {
    /// Index of the m-section.
    pub index: usize,
    pub audio: bool,
    pub pt: u8,
    pub ssrc: u32,
    /// RTX payload type and SSRC, when offered.
    pub rtx: Option<(u8, u32)>,
}

/// The subscriber's answer to Janus's offer: every audio section with an Opus payload type and
/// every video section with VP8 accepted `recvonly` (with RTX when offered), anything else
/// rejected (port 0). Returns the SDP and what was accepted.
pub fn subscriber_answer(
    offer: &Remote,
    l: &Local,
    session_id: u64,
) -> Result<(String, Vec<Accepted>), BenchError> {
    let mut accepted = Vec::new();
    for (i, m) in offer.media.iter().enumerate() {
        let (audio, codec) = match m.kind.as_str() {
            "audio" => (true, "opus"),
            "video" => (false, "VP8"),
            _ => continue,
        };
        if m.port == 0 {
            continue;
        }
        let (Some(pt), Some(ssrc)) = (m.pt_of(codec), m.primary_ssrc()) else {
            continue;
        };
        let rtx = match (m.rtx_for(pt), m.fid) {
            (Some(rpt), Some((_, rssrc))) => Some((rpt, rssrc)),
            _ => None,
        };
        accepted.push(Accepted {
            index: i,
            audio,
            pt,
            ssrc,
            rtx,
        });
    }
    if accepted.is_empty() {
        return Err(bad("the offer has no Opus or VP8 section with an SSRC"));
    }
    let mids: Vec<String> = accepted
        .iter()
        .filter_map(|a| offer.media[a.index].mid.clone())
        .collect();
    let mut s = String::with_capacity(2048);
    session_head(&mut s, session_id, &mids);
    for (i, m) in offer.media.iter().enumerate() {
        let Some(a) = accepted.iter().find(|a| a.index == i) else {
            let pt = m.pts.first().copied().unwrap_or(0);
            s.push_str(&format!(
                "m={} 0 {} {pt}\r\nc=IN IP4 0.0.0.0\r\n",
                m.kind, m.proto
            ));
            if let Some(mid) = &m.mid {
                s.push_str(&format!("a=mid:{mid}\r\n"));
            }
            s.push_str("a=inactive\r\n");
            continue;
        };
        let pts = match a.rtx {
            Some((r, _)) => format!("{} {r}", a.pt),
            None => a.pt.to_string(),
        };
        s.push_str(&format!(
            "m={} {} UDP/TLS/RTP/SAVPF {pts}\r\n",
            m.kind,
            l.candidate.port()
        ));
        transport(&mut s, l);
        if let Some(mid) = &m.mid {
            s.push_str(&format!("a=mid:{mid}\r\n"));
        }
        s.push_str("a=recvonly\r\n");
        if a.audio {
            s.push_str(&format!("a=rtpmap:{} opus/48000/2\r\n", a.pt));
        } else {
            s.push_str(&format!(
                "a=rtpmap:{p} VP8/90000\r\na=rtcp-fb:{p} nack\r\na=rtcp-fb:{p} nack pli\r\n",
                p = a.pt
            ));
        }
        if let Some((r, _)) = a.rtx {
            s.push_str(&format!(
                "a=rtpmap:{r} rtx/90000\r\na=fmtp:{r} apt={}\r\n",
                a.pt
            ));
        }
        candidate(&mut s, l);
    }
    Ok((s, accepted))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local() -> Local {
        Local {
            ufrag: "ufA1".into(),
            pwd: "passwordpasswordpassword".into(),
            fingerprint: "sha-256 AA:BB:CC".into(),
            candidate: "10.88.0.2:40000".parse().expect("addr"),
        }
    }

    /// A subscriber offer in the shape Janus 1.1 VideoRoom sends (audio + video with RTX).
    const JANUS_OFFER: &str = "v=0\r\no=- 1 1 IN IP4 10.88.0.1\r\ns=VideoRoom 1234\r\nt=0 0\r\n\
a=group:BUNDLE 0 1\r\na=ice-options:trickle\r\na=fingerprint:sha-256 11:22:33\r\n\
a=extmap-allow-mixed\r\na=msid-semantic: WMS janus\r\n\
m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 10.88.0.1\r\na=sendonly\r\na=mid:0\r\n\
a=rtcp-mux\r\na=ice-ufrag:JaNu\r\na=ice-pwd:janusjanusjanusjanus12\r\na=ice-options:trickle\r\n\
a=setup:actpass\r\na=rtpmap:111 opus/48000/2\r\na=ssrc:1001 cname:janus\r\n\
a=candidate:1 1 udp 2015363327 10.88.0.1 20123 typ host\r\n\
a=candidate:2 1 udp 2015363327 10.88.0.2 20124 typ host\r\na=end-of-candidates\r\n\
m=video 9 UDP/TLS/RTP/SAVPF 96 97\r\nc=IN IP4 10.88.0.1\r\na=sendonly\r\na=mid:1\r\n\
a=rtcp-mux\r\na=ice-ufrag:JaNu\r\na=ice-pwd:janusjanusjanusjanus12\r\na=setup:actpass\r\n\
a=rtpmap:96 VP8/90000\r\na=rtcp-fb:96 nack\r\na=rtpmap:97 rtx/90000\r\na=fmtp:97 apt=96\r\n\
a=ssrc-group:FID 2002 2003\r\na=ssrc:2002 cname:janus\r\na=ssrc:2003 cname:janus\r\n\
m=application 0 UDP/DTLS/SCTP webrtc-datachannel\r\na=mid:2\r\n";

    #[test]
    fn parses_janus_offer() {
        let r = parse(JANUS_OFFER).expect("parses");
        assert_eq!(
            (r.ufrag.as_str(), r.pwd.as_str()),
            ("JaNu", "janusjanusjanusjanus12")
        );
        assert_eq!(r.fingerprint, "sha-256 11:22:33");
        assert_eq!(r.setup.as_deref(), Some("actpass"));
        assert_eq!(
            r.candidate_on("10.88.0.1".parse().expect("ip")),
            Some("10.88.0.1:20123".parse().expect("addr"))
        );
        assert_eq!(r.media.len(), 3);
        assert_eq!(r.media[0].pt_of("opus"), Some(111));
        assert_eq!(r.media[0].primary_ssrc(), Some(1001));
        assert_eq!(r.media[1].pt_of("vp8"), Some(96));
        assert_eq!(r.media[1].rtx_for(96), Some(97));
        assert_eq!(r.media[1].primary_ssrc(), Some(2002));
        assert_eq!(r.media[1].direction, "sendonly");
        assert_eq!(r.media[2].port, 0);
    }

    #[test]
    fn refuses_descriptions_without_credentials() {
        assert!(parse("v=0\r\nm=audio 9 RTP/AVP 0\r\n").is_err());
        let no_fp = JANUS_OFFER.replace("a=fingerprint:sha-256 11:22:33\r\n", "");
        assert!(parse(&no_fp).is_err());
    }

    #[test]
    fn answer_accepts_opus_and_vp8_recvonly() {
        let offer = parse(JANUS_OFFER).expect("parses");
        let (sdp, acc) = subscriber_answer(&offer, &local(), 7).expect("answers");
        assert_eq!(acc.len(), 2);
        assert_eq!((acc[0].audio, acc[0].pt, acc[0].ssrc), (true, 111, 1001));
        assert_eq!(acc[1].rtx, Some((97, 2003)));
        assert!(sdp.contains("a=group:BUNDLE 0 1\r\n"));
        assert!(sdp.contains("m=video 40000 UDP/TLS/RTP/SAVPF 96 97\r\n"));
        assert!(sdp.contains("m=application 0 UDP/DTLS/SCTP"));
        assert_eq!(sdp.matches("a=recvonly").count(), 2);
        assert_eq!(sdp.matches("a=setup:active").count(), 2);
        // Our answer parses back with our credentials and candidate.
        let back = parse(&sdp).expect("own answer parses");
        assert_eq!(back.ufrag, "ufA1");
        assert_eq!(back.fingerprint, "sha-256 AA:BB:CC");
        assert_eq!(back.candidates, vec![local().candidate]);
        assert_eq!(back.media[1].fmtp, vec![(97, "apt=96".to_string())]);
    }

    #[test]
    fn offer_has_both_sections_bundled() {
        let sdp = publisher_offer(&local(), (111, 96), (0xAA, 0xBB), 9);
        let r = parse(&sdp).expect("own offer parses");
        assert!(sdp.contains("a=group:BUNDLE 0 1\r\n"));
        assert_eq!(r.media.len(), 2);
        assert_eq!(r.media[0].kind, "audio");
        assert_eq!(r.media[0].pt_of("opus"), Some(111));
        assert_eq!(r.media[0].ssrcs, vec![0xAA]);
        assert_eq!(r.media[1].pt_of("VP8"), Some(96));
        assert_eq!(r.media[1].ssrcs, vec![0xBB]);
        assert!(r.media.iter().all(|m| m.direction == "sendonly"));
        assert_eq!(r.setup.as_deref(), Some("active"));
        assert_eq!(r.candidates, vec![local().candidate]);
        assert_eq!(sdp.matches("a=rtcp-mux").count(), 2);
    }
}
