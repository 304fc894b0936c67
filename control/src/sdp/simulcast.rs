//! RTP stream identifiers and simulcast: `a=rid` (RFC 8851 §4) and
//! `a=simulcast` (RFC 8853 §5.1).
//!
//! `a=simulcast:send q;h;f` lists simulcast streams separated by `;`; each
//! stream is a `,`-separated list of alternative rids, a leading `~` marks a
//! rid that starts paused.

use std::fmt;

use super::error::ParseErrorKind;

/// `a=rid:<id> <send|recv> [<restrictions>]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rid {
    pub id: String,
    pub direction: RidDirection,
    /// `pt=96,97` restriction, empty when absent.
    pub pts: Vec<u8>,
    /// Other restrictions (`max-width=1280`, `max-fps=30`), in order; value "" when bare.
    pub restrictions: Vec<(String, String)>,
}

/// Direction of a rid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RidDirection {
    Send,
    Recv,
}

/// `a=simulcast` with its send and receive stream lists.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Simulcast {
    pub send: Vec<Vec<SimulcastRid>>,
    pub recv: Vec<Vec<SimulcastRid>>,
}

/// One rid inside a simulcast stream list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimulcastRid {
    pub id: String,
    pub paused: bool,
}

impl Rid {
    pub fn parse(value: &str) -> Result<Self, ParseErrorKind> {
        let mut it = value.split_ascii_whitespace();
        let id = it.next().ok_or(ParseErrorKind::Missing("rid id"))?;
        if !valid_rid_id(id) {
            return Err(ParseErrorKind::invalid("rid id", id));
        }
        let dir = it.next().ok_or(ParseErrorKind::Missing("rid direction"))?;
        let direction = match dir {
            "send" => RidDirection::Send,
            "recv" => RidDirection::Recv,
            other => return Err(ParseErrorKind::invalid("rid direction", other)),
        };
        let mut rid = Self {
            id: id.to_string(),
            direction,
            pts: Vec::new(),
            restrictions: Vec::new(),
        };
        if let Some(params) = it.next() {
            for item in params.split(';').filter(|s| !s.is_empty()) {
                let (k, v) = item.split_once('=').unwrap_or((item, ""));
                if k == "pt" {
                    for pt in v.split(',') {
                        let n: u8 = pt
                            .parse()
                            .ok()
                            .filter(|&n: &u8| n <= 127)
                            .ok_or_else(|| ParseErrorKind::invalid("rid pt", pt))?;
                        rid.pts.push(n);
                    }
                } else {
                    rid.restrictions.push((k.to_string(), v.to_string()));
                }
            }
        }
        if let Some(extra) = it.next() {
            return Err(ParseErrorKind::invalid("rid trailing token", extra));
        }
        Ok(rid)
    }
}

impl Simulcast {
    pub fn parse(value: &str) -> Result<Self, ParseErrorKind> {
        let mut sim = Self::default();
        let mut it = value.split_ascii_whitespace();
        let mut seen = 0;
        while let Some(dir) = it.next() {
            let list = it
                .next()
                .ok_or(ParseErrorKind::Missing("simulcast stream list"))?;
            let parsed = parse_list(list)?;
            match dir {
                "send" if sim.send.is_empty() => sim.send = parsed,
                "recv" if sim.recv.is_empty() => sim.recv = parsed,
                other => return Err(ParseErrorKind::invalid("simulcast direction", other)),
            }
            seen += 1;
        }
        if seen == 0 {
            return Err(ParseErrorKind::Missing("simulcast direction"));
        }
        Ok(sim)
    }

    /// The first alternative of each send stream, in order: the layers a publisher sends.
    pub fn send_rids(&self) -> impl Iterator<Item = &SimulcastRid> {
        self.send.iter().filter_map(|alts| alts.first())
    }
}

fn parse_list(list: &str) -> Result<Vec<Vec<SimulcastRid>>, ParseErrorKind> {
    list.split(';')
        .map(|stream| {
            stream
                .split(',')
                .map(|r| {
                    let (paused, id) = match r.strip_prefix('~') {
                        Some(id) => (true, id),
                        None => (false, r),
                    };
                    if !valid_rid_id(id) {
                        return Err(ParseErrorKind::invalid("simulcast rid", r));
                    }
                    Ok(SimulcastRid {
                        id: id.to_string(),
                        paused,
                    })
                })
                .collect()
        })
        .collect()
}

/// RFC 8851 §10: rid-id = 1*(alpha-numeric / "-" / "_"), at most 255 (RFC 8852 §3.1 caps at 255 bytes).
fn valid_rid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 255
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl fmt::Display for Rid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let dir = match self.direction {
            RidDirection::Send => "send",
            RidDirection::Recv => "recv",
        };
        write!(f, "{} {dir}", self.id)?;
        let mut sep = ' ';
        if !self.pts.is_empty() {
            let pts: Vec<String> = self.pts.iter().map(u8::to_string).collect();
            write!(f, "{sep}pt={}", pts.join(","))?;
            sep = ';';
        }
        for (k, v) in &self.restrictions {
            if v.is_empty() {
                write!(f, "{sep}{k}")?;
            } else {
                write!(f, "{sep}{k}={v}")?;
            }
            sep = ';';
        }
        Ok(())
    }
}

impl fmt::Display for Simulcast {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for (dir, list) in [("send", &self.send), ("recv", &self.recv)] {
            if list.is_empty() {
                continue;
            }
            if !first {
                f.write_str(" ")?;
            }
            first = false;
            write!(f, "{dir} ")?;
            for (i, stream) in list.iter().enumerate() {
                if i > 0 {
                    f.write_str(";")?;
                }
                for (j, r) in stream.iter().enumerate() {
                    if j > 0 {
                        f.write_str(",")?;
                    }
                    if r.paused {
                        f.write_str("~")?;
                    }
                    f.write_str(&r.id)?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_send_list_with_alternatives_and_paused() {
        let s = Simulcast::parse("send q;h,h2;~f recv a").unwrap();
        assert_eq!(s.send.len(), 3);
        assert_eq!(s.send[1].len(), 2);
        assert!(s.send[2][0].paused);
        assert_eq!(s.recv[0][0].id, "a");
        let ids: Vec<&str> = s.send_rids().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["q", "h", "f"]);
        assert_eq!(Simulcast::parse(&s.to_string()).unwrap(), s);
    }

    #[test]
    fn rejects_bad_simulcast() {
        assert!(Simulcast::parse("").is_err());
        assert!(Simulcast::parse("send").is_err());
        assert!(Simulcast::parse("sideways q").is_err());
        assert!(Simulcast::parse("send q;;f").is_err());
        assert!(Simulcast::parse("send q send h").is_err());
    }

    #[test]
    fn parses_rid_restrictions() {
        let r = Rid::parse("h send pt=96,97;max-width=640;max-height=360").unwrap();
        assert_eq!(r.pts, [96, 97]);
        assert_eq!(r.restrictions[0], ("max-width".into(), "640".into()));
        assert_eq!(Rid::parse(&r.to_string()).unwrap(), r);
        assert!(Rid::parse("h sideways").is_err());
        assert!(Rid::parse("h send pt=200").is_err());
        assert!(Rid::parse("h!x send").is_err());
    }
}
