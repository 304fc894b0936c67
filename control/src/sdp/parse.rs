//! SDP text → [`SessionDescription`] (RFC 8866 §5 grammar, §6 attributes).
//!
//! Lenient where browsers differ (LF or CRLF, blank lines, attribute order,
//! unknown attributes kept), strict where a wrong value would mis-route
//! media: the m= line, ports, payload types, fingerprints, setup, extmap ids,
//! rtpmap, candidates, rid and simulcast. Every error names its line.

use std::str::FromStr;

use super::candidate::Candidate;
use super::error::{ParseError, ParseErrorKind};
use super::model::{
    Attribute, Codec, Direction, Extmap, Fingerprint, Fmtp, Formats, Group, MediaKind,
    MediaSection, Msid, Origin, SessionDescription, Setup, SsrcAttr, SsrcGroup,
};
use super::simulcast::{Rid, Simulcast};

/// Largest description accepted; a browser offer with dozens of tracks is well under this.
pub const MAX_SDP_LEN: usize = 256 * 1024;

impl FromStr for SessionDescription {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse(s)
    }
}

/// Parses a whole session description.
pub fn parse(text: &str) -> Result<SessionDescription, ParseError> {
    if text.len() > MAX_SDP_LEN {
        return Err(ParseError {
            line: 0,
            kind: ParseErrorKind::TooLong(text.len()),
        });
    }
    let mut p = Parser {
        sdp: SessionDescription::new(0, 0),
        seen_version: false,
        seen_origin: false,
        media: None,
    };
    let mut last_line = 0;
    for (i, raw) in text.split('\n').enumerate() {
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        last_line = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        p.line(line)
            .map_err(|kind| ParseError { line: i + 1, kind })?;
    }
    let line = last_line;
    if !p.seen_version {
        return Err(ParseError {
            line,
            kind: ParseErrorKind::Version,
        });
    }
    if !p.seen_origin {
        return Err(ParseError {
            line,
            kind: ParseErrorKind::NoOrigin,
        });
    }
    p.finish_media();
    Ok(p.sdp)
}

struct Parser {
    sdp: SessionDescription,
    seen_version: bool,
    seen_origin: bool,
    media: Option<MediaBuilder>,
}

/// A media section being read; rtpmap/fmtp/rtcp-fb may come in any order
/// (Firefox writes all fmtp lines before the rtpmaps), so codecs are joined at the end.
struct MediaBuilder {
    section: MediaSection,
    pending: Vec<PendingCodec>,
}

#[derive(Default)]
struct PendingCodec {
    pt: u8,
    rtpmap: Option<(String, u32, Option<u16>)>,
    fmtp: Option<Fmtp>,
    rtcp_fb: Vec<String>,
}

/// Attributes valid at both session and media level.
enum Shared {
    IceUfrag(String),
    IcePwd(String),
    IceOptions(Vec<String>),
    Fingerprint(Fingerprint),
    Setup(Setup),
    Extmap(Extmap),
}

impl Parser {
    fn line(&mut self, line: &str) -> Result<(), ParseErrorKind> {
        let bytes = line.as_bytes();
        if bytes.len() < 2 || bytes[1] != b'=' || !bytes[0].is_ascii_lowercase() {
            return Err(ParseErrorKind::NotTypeValue);
        }
        let typ = bytes[0] as char;
        let value = &line[2..];
        if !self.seen_version {
            if typ != 'v' || value.trim() != "0" {
                return Err(ParseErrorKind::Version);
            }
            self.seen_version = true;
            return Ok(());
        }
        match typ {
            'm' => {
                if !self.seen_origin {
                    return Err(ParseErrorKind::NoOrigin);
                }
                self.finish_media();
                self.media = Some(MediaBuilder {
                    section: parse_m_line(value)?,
                    pending: Vec::new(),
                });
                Ok(())
            }
            'a' => {
                let (name, val) = match value.split_once(':') {
                    Some((n, v)) => (n, Some(v)),
                    None => (value, None),
                };
                match &mut self.media {
                    Some(m) => m.attribute(name, val),
                    None => session_attribute(&mut self.sdp, name, val),
                }
            }
            _ => match &mut self.media {
                Some(m) => {
                    match typ {
                        'c' => m.section.connection = Some(value.to_string()),
                        _ => m.section.other_lines.push((typ, value.to_string())),
                    }
                    Ok(())
                }
                None => self.session_line(typ, value),
            },
        }
    }

    fn session_line(&mut self, typ: char, value: &str) -> Result<(), ParseErrorKind> {
        match typ {
            'o' => {
                self.sdp.origin = parse_origin(value)?;
                self.seen_origin = true;
            }
            's' => self.sdp.session_name = value.to_string(),
            't' => self.sdp.timing = value.to_string(),
            'c' => self.sdp.connection = Some(value.to_string()),
            'v' => return Err(ParseErrorKind::invalid("repeated v= line", value)),
            _ => self.sdp.other_lines.push((typ, value.to_string())),
        }
        Ok(())
    }

    fn finish_media(&mut self) {
        if let Some(m) = self.media.take() {
            self.sdp.media.push(m.finish());
        }
    }
}

fn session_attribute(
    sdp: &mut SessionDescription,
    name: &str,
    val: Option<&str>,
) -> Result<(), ParseErrorKind> {
    if let Some(shared) = shared_attribute(name, val)? {
        match shared {
            Shared::IceUfrag(v) => sdp.ice_ufrag = Some(v),
            Shared::IcePwd(v) => sdp.ice_pwd = Some(v),
            Shared::IceOptions(v) => sdp.ice_options = v,
            Shared::Fingerprint(v) => sdp.fingerprints.push(v),
            Shared::Setup(v) => sdp.setup = Some(v),
            Shared::Extmap(v) => sdp.extmaps.push(v),
        }
        return Ok(());
    }
    match (name, val) {
        ("ice-lite", None) => sdp.ice_lite = true,
        ("extmap-allow-mixed", None) => sdp.extmap_allow_mixed = true,
        ("msid-semantic", Some(v)) => sdp.msid_semantic = Some(v.to_string()),
        ("group", Some(v)) => {
            let mut it = v.split_ascii_whitespace();
            let semantics = it
                .next()
                .ok_or(ParseErrorKind::Missing("group semantics"))?;
            sdp.groups.push(Group {
                semantics: semantics.to_string(),
                mids: it.map(str::to_string).collect(),
            });
        }
        _ => sdp.attributes.push(unknown(name, val)),
    }
    Ok(())
}

fn shared_attribute(name: &str, val: Option<&str>) -> Result<Option<Shared>, ParseErrorKind> {
    let Some(v) = val else { return Ok(None) };
    Ok(Some(match name {
        "ice-ufrag" => Shared::IceUfrag(v.trim().to_string()),
        "ice-pwd" => Shared::IcePwd(v.trim().to_string()),
        "ice-options" => {
            Shared::IceOptions(v.split_ascii_whitespace().map(str::to_string).collect())
        }
        "fingerprint" => Shared::Fingerprint(
            Fingerprint::parse(v).ok_or_else(|| ParseErrorKind::invalid("fingerprint", v))?,
        ),
        "setup" => Shared::Setup(
            Setup::from_token(v.trim()).ok_or_else(|| ParseErrorKind::invalid("setup", v))?,
        ),
        "extmap" => Shared::Extmap(parse_extmap(v)?),
        _ => return Ok(None),
    }))
}

impl MediaBuilder {
    fn attribute(&mut self, name: &str, val: Option<&str>) -> Result<(), ParseErrorKind> {
        let s = &mut self.section;
        if let Some(shared) = shared_attribute(name, val)? {
            match shared {
                Shared::IceUfrag(v) => s.ice_ufrag = Some(v),
                Shared::IcePwd(v) => s.ice_pwd = Some(v),
                Shared::IceOptions(v) => s.ice_options = v,
                Shared::Fingerprint(v) => s.fingerprints.push(v),
                Shared::Setup(v) => s.setup = Some(v),
                Shared::Extmap(v) => s.extmaps.push(v),
            }
            return Ok(());
        }
        if let (Some(dir), None) = (Direction::from_token(name), val) {
            s.direction = dir;
            return Ok(());
        }
        match (name, val) {
            ("rtcp-mux", None) => s.rtcp_mux = true,
            ("rtcp-rsize", None) => s.rtcp_rsize = true,
            ("bundle-only", None) => s.bundle_only = true,
            ("end-of-candidates", None) => s.end_of_candidates = true,
            ("mid", Some(v)) => s.mid = Some(v.trim().to_string()),
            ("msid", Some(v)) => {
                let mut it = v.split_ascii_whitespace();
                let stream_id = it.next().ok_or(ParseErrorKind::Missing("msid stream id"))?;
                s.msids.push(Msid {
                    stream_id: stream_id.to_string(),
                    track_id: it.next().map(str::to_string),
                });
            }
            ("candidate", Some(v)) => s.candidates.push(Candidate::parse(v)?),
            ("rid", Some(v)) => s.rids.push(Rid::parse(v)?),
            ("simulcast", Some(v)) => s.simulcast = Some(Simulcast::parse(v)?),
            ("sctp-port", Some(v)) => s.sctp_port = Some(num(v, "sctp-port")?),
            ("max-message-size", Some(v)) => s.max_message_size = Some(num(v, "max-message-size")?),
            ("ssrc", Some(v)) => s.ssrcs.push(parse_ssrc(v)?),
            ("ssrc-group", Some(v)) => {
                let mut it = v.split_ascii_whitespace();
                let semantics = it
                    .next()
                    .ok_or(ParseErrorKind::Missing("ssrc-group semantics"))?;
                let ssrcs = it
                    .map(|x| num(x, "ssrc-group ssrc"))
                    .collect::<Result<_, _>>()?;
                s.ssrc_groups.push(SsrcGroup {
                    semantics: semantics.to_string(),
                    ssrcs,
                });
            }
            ("rtpmap", Some(v)) => {
                let (pt, rest) = split_pt(v, "rtpmap")?;
                let rtpmap = parse_rtpmap(rest)?;
                self.pending(pt).rtpmap = Some(rtpmap);
            }
            ("fmtp", Some(v)) => {
                let (pt, rest) = split_pt(v, "fmtp")?;
                self.pending(pt).fmtp = Some(Fmtp::parse(rest));
            }
            ("rtcp-fb", Some(v)) => {
                let (pt, rest) = v.split_once(' ').unwrap_or((v, ""));
                let fb = rest.trim();
                if fb.is_empty() {
                    return Err(ParseErrorKind::Missing("rtcp-fb value"));
                }
                if pt == "*" {
                    s.rtcp_fb_all.push(fb.to_string());
                } else {
                    let pt = parse_pt(pt, "rtcp-fb payload type")?;
                    self.pending(pt).rtcp_fb.push(fb.to_string());
                }
            }
            _ => s.attributes.push(unknown(name, val)),
        }
        Ok(())
    }

    fn pending(&mut self, pt: u8) -> &mut PendingCodec {
        let idx = match self.pending.iter().position(|p| p.pt == pt) {
            Some(i) => i,
            None => {
                self.pending.push(PendingCodec {
                    pt,
                    ..PendingCodec::default()
                });
                self.pending.len() - 1
            }
        };
        &mut self.pending[idx]
    }

    fn finish(mut self) -> MediaSection {
        let pts = match &self.section.formats {
            Formats::Rtp(pts) => pts.clone(),
            Formats::Other(_) => Vec::new(),
        };
        for pt in pts {
            let idx = self.pending.iter().position(|p| p.pt == pt);
            let p = idx
                .map(|i| self.pending.swap_remove(i))
                .unwrap_or(PendingCodec {
                    pt,
                    ..PendingCodec::default()
                });
            let (name, clock_rate, channels) =
                p.rtpmap
                    .or_else(|| static_codec(pt))
                    .unwrap_or((String::new(), 0, None));
            // A PT listed twice in m= (illegal but seen) keeps its first entry only.
            if self.section.codecs.iter().any(|c| c.pt == pt) {
                continue;
            }
            self.section.codecs.push(Codec {
                pt,
                name,
                clock_rate,
                channels,
                fmtp: p.fmtp,
                rtcp_fb: p.rtcp_fb,
            });
        }
        // Attributes for payload types not in m=: kept verbatim rather than dropped.
        self.pending.sort_by_key(|p| p.pt);
        for p in self.pending {
            if let Some((name, clock, ch)) = p.rtpmap {
                let ch = ch.map(|c| format!("/{c}")).unwrap_or_default();
                self.section.attributes.push(Attribute {
                    name: "rtpmap".into(),
                    value: Some(format!("{} {name}/{clock}{ch}", p.pt)),
                });
            }
            if let Some(f) = p.fmtp {
                self.section.attributes.push(Attribute {
                    name: "fmtp".into(),
                    value: Some(format!("{} {}", p.pt, f.raw)),
                });
            }
            for fb in p.rtcp_fb {
                self.section.attributes.push(Attribute {
                    name: "rtcp-fb".into(),
                    value: Some(format!("{} {fb}", p.pt)),
                });
            }
        }
        self.section
    }
}

fn parse_origin(v: &str) -> Result<Origin, ParseErrorKind> {
    let f: Vec<&str> = v.split_ascii_whitespace().collect();
    if f.len() != 6 {
        return Err(ParseErrorKind::invalid("o= (needs 6 fields)", v));
    }
    Ok(Origin {
        username: f[0].to_string(),
        session_id: num(f[1], "o= session id")?,
        session_version: num(f[2], "o= session version")?,
        net_type: f[3].to_string(),
        addr_type: f[4].to_string(),
        address: f[5].to_string(),
    })
}

fn parse_m_line(v: &str) -> Result<MediaSection, ParseErrorKind> {
    let mut it = v.split_ascii_whitespace();
    let kind = it.next().ok_or(ParseErrorKind::Missing("m= media"))?;
    let port_s = it.next().ok_or(ParseErrorKind::Missing("m= port"))?;
    let proto = it.next().ok_or(ParseErrorKind::Missing("m= proto"))?;
    let (port, num_ports) = match port_s.split_once('/') {
        Some((p, n)) => (num(p, "m= port")?, Some(num::<u16>(n, "m= port count")?)),
        None => (num::<u16>(port_s, "m= port")?, None),
    };
    let fmts: Vec<&str> = it.collect();
    if fmts.is_empty() {
        return Err(ParseErrorKind::Missing("m= formats"));
    }
    let formats = if proto.contains("RTP/") {
        let mut pts = Vec::with_capacity(fmts.len());
        for f in fmts {
            let n: u32 = num(f, "m= payload type")?;
            if n > 127 {
                return Err(ParseErrorKind::PtOutOfRange(n));
            }
            pts.push(n as u8);
        }
        Formats::Rtp(pts)
    } else {
        Formats::Other(fmts.into_iter().map(str::to_string).collect())
    };
    let mut m = MediaSection::new(MediaKind::from_token(kind), port, proto, formats);
    m.num_ports = num_ports;
    Ok(m)
}

fn parse_extmap(v: &str) -> Result<Extmap, ParseErrorKind> {
    let mut it = v.split_ascii_whitespace();
    let id_dir = it.next().ok_or(ParseErrorKind::Missing("extmap id"))?;
    let uri = it.next().ok_or(ParseErrorKind::Missing("extmap uri"))?;
    let (id_s, direction) = match id_dir.split_once('/') {
        Some((id, d)) => (
            id,
            Some(
                Direction::from_token(d)
                    .ok_or_else(|| ParseErrorKind::invalid("extmap direction", d))?,
            ),
        ),
        None => (id_dir, None),
    };
    let id: u8 = num(id_s, "extmap id")?;
    if id == 0 {
        return Err(ParseErrorKind::invalid("extmap id", id_s));
    }
    let rest: Vec<&str> = it.collect();
    Ok(Extmap {
        id,
        direction,
        uri: uri.to_string(),
        attributes: (!rest.is_empty()).then(|| rest.join(" ")),
    })
}

fn parse_rtpmap(v: &str) -> Result<(String, u32, Option<u16>), ParseErrorKind> {
    let v = v.trim();
    let mut parts = v.split('/');
    let name = parts.next().filter(|n| !n.is_empty() && !n.contains(' '));
    let name = name.ok_or_else(|| ParseErrorKind::invalid("rtpmap encoding name", v))?;
    let clock = parts
        .next()
        .ok_or(ParseErrorKind::Missing("rtpmap clock rate"))?;
    let clock: u32 = num(clock, "rtpmap clock rate")?;
    let channels = parts
        .next()
        .map(|c| num(c, "rtpmap channels"))
        .transpose()?;
    if parts.next().is_some() {
        return Err(ParseErrorKind::invalid("rtpmap", v));
    }
    Ok((name.to_string(), clock, channels))
}

fn parse_ssrc(v: &str) -> Result<SsrcAttr, ParseErrorKind> {
    let (ssrc, rest) = v.split_once(' ').unwrap_or((v, ""));
    let ssrc = num(ssrc, "ssrc")?;
    let rest = rest.trim();
    if rest.is_empty() {
        return Err(ParseErrorKind::Missing("ssrc attribute"));
    }
    let (attr, value) = match rest.split_once(':') {
        Some((a, v)) => (a, Some(v.to_string())),
        None => (rest, None),
    };
    Ok(SsrcAttr {
        ssrc,
        attr: attr.to_string(),
        value,
    })
}

fn split_pt<'a>(v: &'a str, field: &'static str) -> Result<(u8, &'a str), ParseErrorKind> {
    let (pt, rest) = v.split_once(' ').unwrap_or((v, ""));
    Ok((parse_pt(pt, field)?, rest.trim()))
}

fn parse_pt(s: &str, field: &'static str) -> Result<u8, ParseErrorKind> {
    let n: u32 = num(s, field)?;
    if n > 127 {
        return Err(ParseErrorKind::PtOutOfRange(n));
    }
    Ok(n as u8)
}

fn num<T: FromStr>(s: &str, field: &'static str) -> Result<T, ParseErrorKind> {
    s.trim()
        .parse()
        .map_err(|_| ParseErrorKind::invalid(field, s))
}

fn unknown(name: &str, val: Option<&str>) -> Attribute {
    Attribute {
        name: name.to_string(),
        value: val.map(str::to_string),
    }
}

/// RFC 3551 §6 static payload types browsers may list without an rtpmap.
fn static_codec(pt: u8) -> Option<(String, u32, Option<u16>)> {
    let (name, clock) = match pt {
        0 => ("PCMU", 8000),
        8 => ("PCMA", 8000),
        9 => ("G722", 8000),
        13 => ("CN", 8000),
        _ => return None,
    };
    Some((name.to_string(), clock, None))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n";

    fn with_media(m: &str) -> String {
        format!("{MINIMAL}{m}")
    }

    fn err(text: &str) -> ParseError {
        parse(text).expect_err("should fail")
    }

    #[test]
    fn minimal_session_parses() {
        let s = parse(MINIMAL).unwrap();
        assert_eq!(s.origin.session_id, 1);
        assert_eq!(s.origin.session_version, 2);
        assert!(s.media.is_empty());
    }

    #[test]
    fn lf_only_and_blank_lines_are_accepted() {
        let s = parse("v=0\no=- 1 2 IN IP4 0.0.0.0\n\ns=-\nt=0 0\nm=audio 9 UDP/TLS/RTP/SAVPF 111\na=rtpmap:111 opus/48000/2\n").unwrap();
        assert_eq!(s.media[0].codecs[0].name, "opus");
        assert_eq!(s.media[0].codecs[0].channels, Some(2));
    }

    #[test]
    fn errors_name_line_and_field() {
        let e = err(&with_media("m=audio 70000 UDP/TLS/RTP/SAVPF 111\r\n"));
        assert_eq!(e.line, 5);
        assert_eq!(
            e.to_string(),
            "SDP line 5: m= port: invalid value \"70000\""
        );
        let e = err(&with_media("m=video 9 UDP/TLS/RTP/SAVPF 96 200\r\n"));
        assert_eq!(e.kind, ParseErrorKind::PtOutOfRange(200));
        let e = err(&with_media("m=video 9\r\n"));
        assert_eq!(e.kind, ParseErrorKind::Missing("m= proto"));
        let e = err(&with_media("m=video 9 UDP/TLS/RTP/SAVPF\r\n"));
        assert_eq!(e.kind, ParseErrorKind::Missing("m= formats"));
        let e = err(&with_media(
            "m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=rtpmap:96 VP8\r\n",
        ));
        assert_eq!(
            (e.line, e.kind),
            (6, ParseErrorKind::Missing("rtpmap clock rate"))
        );
        let e = err(&with_media(
            "m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=extmap:0 urn:x\r\n",
        ));
        assert!(matches!(
            e.kind,
            ParseErrorKind::Invalid {
                field: "extmap id",
                ..
            }
        ));
        let e = err(&with_media(
            "m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=setup:sideways\r\n",
        ));
        assert!(matches!(
            e.kind,
            ParseErrorKind::Invalid { field: "setup", .. }
        ));
        let e = err(&with_media(
            "m=video 9 UDP/TLS/RTP/SAVPF 96\r\nnonsense\r\n",
        ));
        assert_eq!((e.line, e.kind), (6, ParseErrorKind::NotTypeValue));
    }

    #[test]
    fn header_errors() {
        assert_eq!(err("").kind, ParseErrorKind::Version);
        assert_eq!(err("v=1\r\n").kind, ParseErrorKind::Version);
        assert_eq!(
            err("v=0\r\nm=audio 9 RTP/AVP 0\r\n").kind,
            ParseErrorKind::NoOrigin
        );
        assert_eq!(err("v=0\r\ns=-\r\n").kind, ParseErrorKind::NoOrigin);
        let e = err("v=0\r\no=- x 2 IN IP4 1.2.3.4\r\n");
        assert!(matches!(
            e.kind,
            ParseErrorKind::Invalid {
                field: "o= session id",
                ..
            }
        ));
        let long = "a".repeat(MAX_SDP_LEN + 1);
        assert_eq!(err(&long).kind, ParseErrorKind::TooLong(MAX_SDP_LEN + 1));
    }

    #[test]
    fn codecs_join_in_any_attribute_order() {
        // Firefox order: fmtp and rtcp-fb before rtpmap.
        let s = parse(&with_media(
            "m=video 9 UDP/TLS/RTP/SAVPF 120 124\r\na=fmtp:124 apt=120\r\na=fmtp:120 max-fs=12288;max-fr=60\r\na=rtcp-fb:120 nack pli\r\na=rtcp-fb:* transport-cc\r\na=rtpmap:120 VP8/90000\r\na=rtpmap:124 rtx/90000\r\na=rtpmap:99 VP9/90000\r\n",
        ))
        .unwrap();
        let m = &s.media[0];
        assert_eq!(m.codecs.len(), 2);
        assert_eq!(m.codecs[0].param("max-fr"), Some("60"));
        assert_eq!(m.codecs[0].rtcp_fb, ["nack pli"]);
        assert_eq!(m.rtx_for(120), Some(124));
        assert_eq!(m.rtcp_fb_all, ["transport-cc"]);
        // rtpmap for a PT not in m= is kept, not dropped.
        assert_eq!(m.attributes[0].value.as_deref(), Some("99 VP9/90000"));
    }

    #[test]
    fn static_pt_without_rtpmap_gets_its_name() {
        let s = parse(&with_media("m=audio 9 RTP/AVP 0 8\r\n")).unwrap();
        assert_eq!(s.media[0].codecs[1].name, "PCMA");
        assert_eq!(s.media[0].codecs[1].clock_rate, 8000);
    }

    #[test]
    fn application_section_keeps_tokens() {
        let s = parse(&with_media(
            "m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\na=sctp-port:5000\r\na=max-message-size:262144\r\n",
        ))
        .unwrap();
        let m = &s.media[0];
        assert_eq!(m.formats, Formats::Other(vec!["webrtc-datachannel".into()]));
        assert_eq!(m.sctp_port, Some(5000));
        assert_eq!(m.max_message_size, Some(262_144));
    }
}
