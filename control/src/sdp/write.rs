//! [`SessionDescription`] → SDP text with CRLF line ends (RFC 8866 §5).
//!
//! Lines follow the RFC 8866 §5 order (`v o s i u e p c b t r z k a`, then
//! each `m i c b k a`); attributes are written in a fixed order close to what
//! browsers emit, unknown attributes last. Parsing the output yields the same
//! model.

use std::fmt::{self, Write};

use super::model::{
    Attribute, Direction, Extmap, Formats, MediaKind, MediaSection, SessionDescription,
};

impl fmt::Display for SessionDescription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let o = &self.origin;
        line(f, format_args!("v=0"))?;
        line(
            f,
            format_args!(
                "o={} {} {} {} {} {}",
                o.username, o.session_id, o.session_version, o.net_type, o.addr_type, o.address
            ),
        )?;
        line(f, format_args!("s={}", self.session_name))?;
        other_lines(f, &self.other_lines, "iuep")?;
        if let Some(c) = &self.connection {
            line(f, format_args!("c={c}"))?;
        }
        other_lines(f, &self.other_lines, "b")?;
        line(f, format_args!("t={}", self.timing))?;
        for (t, v) in &self.other_lines {
            if !"iuepb".contains(*t) {
                line(f, format_args!("{t}={v}"))?;
            }
        }
        if self.ice_lite {
            line(f, format_args!("a=ice-lite"))?;
        }
        if let Some(u) = &self.ice_ufrag {
            line(f, format_args!("a=ice-ufrag:{u}"))?;
        }
        if let Some(p) = &self.ice_pwd {
            line(f, format_args!("a=ice-pwd:{p}"))?;
        }
        if !self.ice_options.is_empty() {
            line(
                f,
                format_args!("a=ice-options:{}", self.ice_options.join(" ")),
            )?;
        }
        for fp in &self.fingerprints {
            line(f, format_args!("a=fingerprint:{fp}"))?;
        }
        if let Some(s) = self.setup {
            line(f, format_args!("a=setup:{}", s.as_str()))?;
        }
        for g in &self.groups {
            let mut v = g.semantics.clone();
            for m in &g.mids {
                let _ = write!(v, " {m}");
            }
            line(f, format_args!("a=group:{v}"))?;
        }
        if self.extmap_allow_mixed {
            line(f, format_args!("a=extmap-allow-mixed"))?;
        }
        if let Some(m) = &self.msid_semantic {
            line(f, format_args!("a=msid-semantic:{m}"))?;
        }
        for e in &self.extmaps {
            extmap(f, e)?;
        }
        attributes(f, &self.attributes)?;
        for m in &self.media {
            media(f, m)?;
        }
        Ok(())
    }
}

fn media(f: &mut fmt::Formatter<'_>, m: &MediaSection) -> fmt::Result {
    let mut mline = format!("m={} {}", m.kind, m.port);
    if let Some(n) = m.num_ports {
        let _ = write!(mline, "/{n}");
    }
    let _ = write!(mline, " {}", m.proto);
    match &m.formats {
        Formats::Rtp(pts) => pts.iter().for_each(|pt| {
            let _ = write!(mline, " {pt}");
        }),
        Formats::Other(toks) => toks.iter().for_each(|t| {
            let _ = write!(mline, " {t}");
        }),
    }
    line(f, format_args!("{mline}"))?;
    other_lines(f, &m.other_lines, "i")?;
    if let Some(c) = &m.connection {
        line(f, format_args!("c={c}"))?;
    }
    for (t, v) in &m.other_lines {
        if *t != 'i' {
            line(f, format_args!("{t}={v}"))?;
        }
    }
    if let Some(u) = &m.ice_ufrag {
        line(f, format_args!("a=ice-ufrag:{u}"))?;
    }
    if let Some(p) = &m.ice_pwd {
        line(f, format_args!("a=ice-pwd:{p}"))?;
    }
    if !m.ice_options.is_empty() {
        line(f, format_args!("a=ice-options:{}", m.ice_options.join(" ")))?;
    }
    for fp in &m.fingerprints {
        line(f, format_args!("a=fingerprint:{fp}"))?;
    }
    if let Some(s) = m.setup {
        line(f, format_args!("a=setup:{}", s.as_str()))?;
    }
    if let Some(mid) = &m.mid {
        line(f, format_args!("a=mid:{mid}"))?;
    }
    if m.bundle_only {
        line(f, format_args!("a=bundle-only"))?;
    }
    for e in &m.extmaps {
        extmap(f, e)?;
    }
    // RFC 8841 gives data sections no direction; sendrecv is what an absent one means.
    if m.kind != MediaKind::Application || m.direction != Direction::SendRecv {
        line(f, format_args!("a={}", m.direction))?;
    }
    for msid in &m.msids {
        match &msid.track_id {
            Some(t) => line(f, format_args!("a=msid:{} {t}", msid.stream_id))?,
            None => line(f, format_args!("a=msid:{}", msid.stream_id))?,
        }
    }
    if m.rtcp_mux {
        line(f, format_args!("a=rtcp-mux"))?;
    }
    if m.rtcp_rsize {
        line(f, format_args!("a=rtcp-rsize"))?;
    }
    for fb in &m.rtcp_fb_all {
        line(f, format_args!("a=rtcp-fb:* {fb}"))?;
    }
    for c in &m.codecs {
        if !c.name.is_empty() {
            match c.channels {
                Some(ch) => line(
                    f,
                    format_args!("a=rtpmap:{} {}/{}/{ch}", c.pt, c.name, c.clock_rate),
                )?,
                None => line(
                    f,
                    format_args!("a=rtpmap:{} {}/{}", c.pt, c.name, c.clock_rate),
                )?,
            }
        }
        for fb in &c.rtcp_fb {
            line(f, format_args!("a=rtcp-fb:{} {fb}", c.pt))?;
        }
        if let Some(fmtp) = &c.fmtp {
            line(f, format_args!("a=fmtp:{} {}", c.pt, fmtp.raw))?;
        }
    }
    for r in &m.rids {
        line(f, format_args!("a=rid:{r}"))?;
    }
    if let Some(s) = &m.simulcast {
        line(f, format_args!("a=simulcast:{s}"))?;
    }
    for g in &m.ssrc_groups {
        let mut v = g.semantics.clone();
        for s in &g.ssrcs {
            let _ = write!(v, " {s}");
        }
        line(f, format_args!("a=ssrc-group:{v}"))?;
    }
    for s in &m.ssrcs {
        match &s.value {
            Some(v) => line(f, format_args!("a=ssrc:{} {}:{v}", s.ssrc, s.attr))?,
            None => line(f, format_args!("a=ssrc:{} {}", s.ssrc, s.attr))?,
        }
    }
    if let Some(p) = m.sctp_port {
        line(f, format_args!("a=sctp-port:{p}"))?;
    }
    if let Some(s) = m.max_message_size {
        line(f, format_args!("a=max-message-size:{s}"))?;
    }
    for c in &m.candidates {
        line(f, format_args!("a=candidate:{c}"))?;
    }
    if m.end_of_candidates {
        line(f, format_args!("a=end-of-candidates"))?;
    }
    attributes(f, &m.attributes)
}

fn extmap(f: &mut fmt::Formatter<'_>, e: &Extmap) -> fmt::Result {
    let dir = e.direction.map(|d| format!("/{d}")).unwrap_or_default();
    match &e.attributes {
        Some(a) => line(f, format_args!("a=extmap:{}{dir} {} {a}", e.id, e.uri)),
        None => line(f, format_args!("a=extmap:{}{dir} {}", e.id, e.uri)),
    }
}

fn attributes(f: &mut fmt::Formatter<'_>, attrs: &[Attribute]) -> fmt::Result {
    for a in attrs {
        match &a.value {
            Some(v) => line(f, format_args!("a={}:{v}", a.name))?,
            None => line(f, format_args!("a={}", a.name))?,
        }
    }
    Ok(())
}

fn other_lines(f: &mut fmt::Formatter<'_>, lines: &[(char, String)], types: &str) -> fmt::Result {
    for (t, v) in lines {
        if types.contains(*t) {
            line(f, format_args!("{t}={v}"))?;
        }
    }
    Ok(())
}

fn line(f: &mut fmt::Formatter<'_>, args: fmt::Arguments<'_>) -> fmt::Result {
    f.write_fmt(args)?;
    f.write_str("\r\n")
}
