//! ICE candidate attribute (RFC 8839 §5.1): `a=candidate:<foundation>
//! <component> <transport> <priority> <address> <port> typ <type> [raddr <a>]
//! [rport <p>] [tcptype <t>] *(<ext-name> <ext-value>)`.
//!
//! The address is kept as text because browsers hide host addresses behind
//! mDNS names (`<uuid>.local`); [`Candidate::ip`] reads it when it is an IP.

use std::fmt;
use std::net::IpAddr;

use super::error::ParseErrorKind;

/// One ICE candidate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub foundation: String,
    pub component: u16,
    /// `UDP`/`udp`/`TCP` as written.
    pub transport: String,
    pub priority: u32,
    pub address: String,
    pub port: u16,
    pub typ: CandidateType,
    pub raddr: Option<String>,
    pub rport: Option<u16>,
    pub tcptype: Option<String>,
    /// Extension pairs (`generation 0`, `network-id 1`, `ufrag x`), in order.
    pub extensions: Vec<(String, String)>,
}

/// The address to announce for a media socket bound to `bound`. A wildcard bind (`0.0.0.0`,
/// `::`, the dataplane's default without `announce`) is not an address a client can send to —
/// browsers never pair with a `0.0.0.0` candidate — so it becomes the IP the HTTP server listens
/// on (clients reached us there), or loopback when that is a wildcard too or of the other family
/// (a v4 wildcard socket cannot receive on a v6 address). Remote clients behind a wildcard bind
/// need `dataplane.announce`.
pub fn announce_ip(bound: IpAddr, http: IpAddr) -> IpAddr {
    if !bound.is_unspecified() {
        return bound;
    }
    match (bound, http) {
        (IpAddr::V4(_), IpAddr::V4(h)) if !h.is_unspecified() => http,
        (IpAddr::V6(_), IpAddr::V6(h)) if !h.is_unspecified() => http,
        (IpAddr::V4(_), _) => IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
        (IpAddr::V6(_), _) => IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
    }
}

/// The `typ` of a candidate (RFC 8445 §5.1.1).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CandidateType {
    Host,
    Srflx,
    Prflx,
    Relay,
    Other(String),
}

impl Candidate {
    /// A host UDP candidate for component 1 (rtcp-mux), as Sluice advertises its media port.
    pub fn host_udp(foundation: &str, ip: IpAddr, port: u16, priority: u32) -> Self {
        Self {
            foundation: foundation.into(),
            component: 1,
            transport: "udp".into(),
            priority,
            address: ip.to_string(),
            port,
            typ: CandidateType::Host,
            raddr: None,
            rport: None,
            tcptype: None,
            extensions: Vec::new(),
        }
    }

    /// Parses the attribute value (after `candidate:`).
    pub fn parse(value: &str) -> Result<Self, ParseErrorKind> {
        let mut it = value.split_ascii_whitespace();
        let mut next = |field: &'static str| it.next().ok_or(ParseErrorKind::Missing(field));
        let foundation = next("candidate foundation")?.to_string();
        let component = parse_num(next("candidate component")?, "candidate component")?;
        let transport = next("candidate transport")?.to_string();
        let priority = parse_num(next("candidate priority")?, "candidate priority")?;
        let address = next("candidate address")?.to_string();
        let port = parse_num(next("candidate port")?, "candidate port")?;
        let typ_kw = next("candidate typ")?;
        if typ_kw != "typ" {
            return Err(ParseErrorKind::invalid("candidate typ", typ_kw));
        }
        let typ = CandidateType::from_token(next("candidate type")?);
        let mut cand = Self {
            foundation,
            component,
            transport,
            priority,
            address,
            port,
            typ,
            raddr: None,
            rport: None,
            tcptype: None,
            extensions: Vec::new(),
        };
        while let Some(name) = it.next() {
            let Some(val) = it.next() else {
                return Err(ParseErrorKind::invalid(
                    "candidate extension without value",
                    name,
                ));
            };
            match name {
                "raddr" => cand.raddr = Some(val.to_string()),
                "rport" => cand.rport = Some(parse_num(val, "candidate rport")?),
                "tcptype" => cand.tcptype = Some(val.to_string()),
                _ => cand.extensions.push((name.to_string(), val.to_string())),
            }
        }
        Ok(cand)
    }

    /// The address as an IP, `None` for mDNS or other hostnames.
    pub fn ip(&self) -> Option<IpAddr> {
        self.address.parse().ok()
    }

    pub fn is_udp(&self) -> bool {
        self.transport.eq_ignore_ascii_case("udp")
    }
}

impl CandidateType {
    fn from_token(s: &str) -> Self {
        match s {
            "host" => Self::Host,
            "srflx" => Self::Srflx,
            "prflx" => Self::Prflx,
            "relay" => Self::Relay,
            other => Self::Other(other.to_string()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Self::Host => "host",
            Self::Srflx => "srflx",
            Self::Prflx => "prflx",
            Self::Relay => "relay",
            Self::Other(s) => s,
        }
    }
}

impl fmt::Display for Candidate {
    /// Writes the attribute value (without `candidate:`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} {} {} {} {} typ {}",
            self.foundation,
            self.component,
            self.transport,
            self.priority,
            self.address,
            self.port,
            self.typ.as_str()
        )?;
        if let Some(a) = &self.raddr {
            write!(f, " raddr {a}")?;
        }
        if let Some(p) = self.rport {
            write!(f, " rport {p}")?;
        }
        if let Some(t) = &self.tcptype {
            write!(f, " tcptype {t}")?;
        }
        for (k, v) in &self.extensions {
            write!(f, " {k} {v}")?;
        }
        Ok(())
    }
}

fn parse_num<T: std::str::FromStr>(s: &str, field: &'static str) -> Result<T, ParseErrorKind> {
    s.parse().map_err(|_| ParseErrorKind::invalid(field, s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_binds_announce_a_reachable_ip() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(announce_ip(ip("10.0.0.5"), ip("127.0.0.1")), ip("10.0.0.5"));
        assert_eq!(announce_ip(ip("0.0.0.0"), ip("127.0.0.1")), ip("127.0.0.1"));
        assert_eq!(announce_ip(ip("0.0.0.0"), ip("192.0.2.9")), ip("192.0.2.9"));
        assert_eq!(announce_ip(ip("0.0.0.0"), ip("0.0.0.0")), ip("127.0.0.1"));
        assert_eq!(announce_ip(ip("0.0.0.0"), ip("::1")), ip("127.0.0.1"));
        assert_eq!(announce_ip(ip("::"), ip("127.0.0.1")), ip("::1"));
        assert_eq!(announce_ip(ip("::"), ip("2001:db8::1")), ip("2001:db8::1"));
    }

    #[test]
    fn parses_chrome_host_mdns_and_srflx() {
        let c = Candidate::parse(
            "1467250027 1 udp 2122260223 9f2c5b41-7d2e-4c1a-9a8e-3b2f8d6c1e07.local 54400 typ host generation 0 network-id 1",
        )
        .unwrap();
        assert_eq!(c.component, 1);
        assert_eq!(c.port, 54400);
        assert_eq!(c.typ, CandidateType::Host);
        assert_eq!(c.ip(), None);
        assert_eq!(c.extensions.len(), 2);
        let s = Candidate::parse(
            "842163049 1 udp 1686052607 203.0.113.7 54400 typ srflx raddr 192.168.1.20 rport 54400 generation 0",
        )
        .unwrap();
        assert_eq!(s.typ, CandidateType::Srflx);
        assert_eq!(s.rport, Some(54400));
        assert_eq!(Candidate::parse(&s.to_string()).unwrap(), s);
    }

    #[test]
    fn rejects_bad_fields() {
        assert!(matches!(
            Candidate::parse("1 1 udp 1 10.0.0.1 99999 typ host"),
            Err(ParseErrorKind::Invalid {
                field: "candidate port",
                ..
            })
        ));
        assert!(matches!(
            Candidate::parse("1 1 udp 1 10.0.0.1 5000 type host"),
            Err(ParseErrorKind::Invalid {
                field: "candidate typ",
                ..
            })
        ));
        assert!(matches!(
            Candidate::parse("1 1 udp"),
            Err(ParseErrorKind::Missing("candidate priority"))
        ));
        assert!(Candidate::parse("1 1 udp 1 10.0.0.1 5000 typ host raddr").is_err());
    }
}
