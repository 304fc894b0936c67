//! Transport addresses: where a datagram came from or goes, and over which transport. ICE pairs
//! candidates of one transport (RFC 8445 §6.1.2.2; RFC 6544 §6.2 for TCP), so a Session keeps
//! the address that passed a check, and the one the peer nominated, as a [`Remote`]: the
//! transport and the peer's address on it.
//!
//! rtp-core frames nothing. Over TCP (RFC 6544, ICE-TCP) the caller strips the RFC 4571 length
//! prefix from what it reads and adds it to what it sends, and hands each frame in and out like
//! a datagram, naming the connection by the peer's address with [`Protocol::Tcp`] (str0m keeps
//! its framing outside its core the same way). A caller owns at most one connection per peer
//! address and transport, so the pair identifies it.

use std::fmt;
use std::net::SocketAddr;

/// The transport a [`Remote`] is reached over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    /// Datagrams (the common case).
    Udp,
    /// A TCP connection carrying RFC 4571 frames (ICE-TCP, RFC 6544).
    Tcp,
}

impl Protocol {
    /// `"udp"` or `"tcp"`, as in SDP candidates and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Udp => "udp",
            Protocol::Tcp => "tcp",
        }
    }
}

/// A peer's transport address: the transport and the address on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Remote {
    pub proto: Protocol,
    pub addr: SocketAddr,
}

impl Remote {
    /// A UDP peer.
    pub const fn udp(addr: SocketAddr) -> Self {
        Self {
            proto: Protocol::Udp,
            addr,
        }
    }

    /// The peer at the other end of a TCP connection.
    pub const fn tcp(addr: SocketAddr) -> Self {
        Self {
            proto: Protocol::Tcp,
            addr,
        }
    }

    pub fn is_tcp(&self) -> bool {
        self.proto == Protocol::Tcp
    }
}

/// A bare socket address is a UDP peer.
impl From<SocketAddr> for Remote {
    fn from(addr: SocketAddr) -> Self {
        Self::udp(addr)
    }
}

/// `udp/127.0.0.1:5000`, `tcp/[::1]:443`.
impl fmt::Display for Remote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.proto.as_str(), self.addr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_address_on_two_transports_differs() {
        let a: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        assert_ne!(Remote::udp(a), Remote::tcp(a));
        assert_eq!(Remote::from(a), Remote::udp(a));
        assert_eq!(Remote::tcp(a).to_string(), "tcp/127.0.0.1:5000");
        assert!(Remote::tcp(a).is_tcp() && !Remote::udp(a).is_tcp());
    }
}
