//! Byte-level codecs for what the kernel exchanges with us around a datagram: `sockaddr_in`/
//! `sockaddr_in6` (RFC 3493 §3.3, Linux layout) and control messages (RFC 3542 §20 `cmsghdr`
//! layout; Linux `IP_PKTINFO`, `IPV6_PKTINFO`, `UDP_GRO`, `UDP_SEGMENT`, `SO_RXQ_OVFL`,
//! `SCM_TIMESTAMPNS`).
//!
//! Everything here is safe code over byte slices: the kernel's output is parsed like any other
//! untrusted input (bounds-checked, unaligned reads via `from_ne_bytes`), so a malformed control
//! message can at worst be ignored, never read out of bounds.

use std::mem::size_of;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::time::Duration;

/// Room for the largest address we use (`sockaddr_in6`, 28 bytes), rounded to 8 so whatever
/// follows it in an io_uring recvmsg buffer stays aligned.
pub(crate) const ADDR_LEN: usize = 32;
const SOCKADDR_IN_LEN: usize = 16;
const SOCKADDR_IN6_LEN: usize = 28;

/// Receive control space: IPV6_PKTINFO (40) + IP_PKTINFO (32) + UDP_GRO (24) + SO_RXQ_OVFL (24)
/// = 120, rounded up.
pub(crate) const RX_CTRL_LEN: usize = 128;
/// The same plus an `SCM_TIMESTAMPNS` (a `timespec`: CMSG_SPACE(16) = 32), for the socket
/// backend, whose sockets may ask for receive timestamps (`SocketConfig::rx_timestamps`).
pub(crate) const RX_CTRL_LEN_STAMPED: usize = RX_CTRL_LEN + 32;
/// Send control space: one UDP_SEGMENT cmsg (CMSG_SPACE(2) = 24), rounded up.
pub(crate) const TX_CTRL_LEN: usize = 32;

const CMSG_HDR: usize = size_of::<libc::cmsghdr>();
const ALIGN: usize = size_of::<usize>();

/// A sockaddr as raw bytes; 8-aligned so it can be handed to the kernel as `msg_name`.
#[derive(Debug, Clone, Copy)]
#[repr(C, align(8))]
pub(crate) struct AddrBuf(pub(crate) [u8; ADDR_LEN]);

/// A control-message area; 8-aligned like the kernel's `CMSG_ALIGN`.
#[derive(Debug, Clone, Copy)]
#[repr(C, align(8))]
pub(crate) struct CtrlBuf<const N: usize>(pub(crate) [u8; N]);

/// Control-message facts about one received datagram.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct RxInfo {
    pub(crate) dst: Option<IpAddr>,
    pub(crate) segment: Option<u16>,
    pub(crate) rxq_drops: Option<u32>,
    /// `SCM_TIMESTAMPNS`: when the kernel received it (`CLOCK_REALTIME`, since the epoch).
    pub(crate) stamp: Option<Duration>,
}

/// Writes `addr` as a sockaddr; returns its length. A v4 address sent from an IPv6 socket is
/// written v4-mapped (`::ffff:a.b.c.d`), which is what a dual-stack socket expects.
pub(crate) fn encode_addr(addr: SocketAddr, v6_socket: bool, out: &mut AddrBuf) -> u32 {
    let b = &mut out.0;
    match (addr, v6_socket) {
        (SocketAddr::V4(a), false) => {
            b[..2].copy_from_slice(&(libc::AF_INET as u16).to_ne_bytes());
            b[2..4].copy_from_slice(&a.port().to_be_bytes());
            b[4..8].copy_from_slice(&a.ip().octets());
            b[8..16].fill(0);
            SOCKADDR_IN_LEN as u32
        }
        (SocketAddr::V4(a), true) => {
            let mapped = SocketAddrV6::new(a.ip().to_ipv6_mapped(), a.port(), 0, 0);
            encode_v6(mapped, b)
        }
        (SocketAddr::V6(a), _) => encode_v6(a, b),
    }
}

fn encode_v6(a: SocketAddrV6, b: &mut [u8; ADDR_LEN]) -> u32 {
    b[..2].copy_from_slice(&(libc::AF_INET6 as u16).to_ne_bytes());
    b[2..4].copy_from_slice(&a.port().to_be_bytes());
    b[4..8].copy_from_slice(&a.flowinfo().to_be_bytes());
    b[8..24].copy_from_slice(&a.ip().octets());
    b[24..28].copy_from_slice(&a.scope_id().to_ne_bytes());
    SOCKADDR_IN6_LEN as u32
}

/// Parses a sockaddr written by the kernel. v4-mapped IPv6 sources are reported as IPv4 so a
/// peer has one address whatever socket family received it.
pub(crate) fn decode_addr(b: &[u8]) -> Option<SocketAddr> {
    let family = u16::from_ne_bytes(b.get(..2)?.try_into().ok()?);
    let port = u16::from_be_bytes(b.get(2..4)?.try_into().ok()?);
    if i32::from(family) == libc::AF_INET {
        let ip: [u8; 4] = b.get(4..8)?.try_into().ok()?;
        Some(SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::from(ip), port)))
    } else if i32::from(family) == libc::AF_INET6 {
        let flow = u32::from_be_bytes(b.get(4..8)?.try_into().ok()?);
        let ip: [u8; 16] = b.get(8..24)?.try_into().ok()?;
        let scope = u32::from_ne_bytes(b.get(24..28)?.try_into().ok()?);
        let ip = Ipv6Addr::from(ip);
        Some(match ip.to_ipv4_mapped() {
            Some(v4) => SocketAddr::V4(SocketAddrV4::new(v4, port)),
            None => SocketAddr::V6(SocketAddrV6::new(ip, port, flow, scope)),
        })
    } else {
        None
    }
}

/// Walks the control messages in `ctrl` (what the kernel filled, `msg_controllen` bytes) and
/// keeps the ones we asked for. Unknown or malformed messages end the walk.
pub(crate) fn parse_cmsgs(ctrl: &[u8]) -> RxInfo {
    let mut info = RxInfo::default();
    let mut at = 0usize;
    while let Some(hdr) = ctrl.get(at..at + CMSG_HDR) {
        let len = read_usize(&hdr[..ALIGN]);
        let level = i32::from_ne_bytes(hdr[ALIGN..ALIGN + 4].try_into().unwrap_or_default());
        let kind = i32::from_ne_bytes(hdr[ALIGN + 4..ALIGN + 8].try_into().unwrap_or_default());
        if len < CMSG_HDR {
            break;
        }
        let Some(data) = ctrl.get(at + CMSG_HDR..at + len) else {
            break;
        };
        match (level, kind) {
            (libc::IPPROTO_IP, libc::IP_PKTINFO) => {
                // struct in_pktinfo { int ifindex; in_addr spec_dst; in_addr addr; }
                if let Some(a) = data.get(8..12).and_then(|s| <[u8; 4]>::try_from(s).ok()) {
                    info.dst = Some(IpAddr::V4(Ipv4Addr::from(a)));
                }
            }
            (libc::IPPROTO_IPV6, libc::IPV6_PKTINFO) => {
                // struct in6_pktinfo { in6_addr addr; int ifindex; }
                if let Some(a) = data.get(..16).and_then(|s| <[u8; 16]>::try_from(s).ok()) {
                    let ip = Ipv6Addr::from(a);
                    info.dst = Some(match ip.to_ipv4_mapped() {
                        Some(v4) => IpAddr::V4(v4),
                        None => IpAddr::V6(ip),
                    });
                }
            }
            (libc::SOL_UDP, libc::UDP_GRO) => {
                if let Some(v) = data.get(..4).and_then(|s| <[u8; 4]>::try_from(s).ok()) {
                    info.segment = u16::try_from(i32::from_ne_bytes(v)).ok();
                }
            }
            (libc::SOL_SOCKET, libc::SCM_TIMESTAMPNS) => {
                // struct timespec { time_t tv_sec; long tv_nsec; } (64-bit fields here)
                let field = |r: std::ops::Range<usize>| {
                    data.get(r)
                        .and_then(|s| <[u8; 8]>::try_from(s).ok())
                        .map(i64::from_ne_bytes)
                };
                if let (Some(s), Some(ns)) = (field(0..8), field(8..16)) {
                    if let (Ok(s), Ok(ns)) = (u64::try_from(s), u32::try_from(ns)) {
                        if ns < 1_000_000_000 {
                            info.stamp = Some(Duration::new(s, ns));
                        }
                    }
                }
            }
            (libc::SOL_SOCKET, libc::SO_RXQ_OVFL) => {
                if let Some(v) = data.get(..4).and_then(|s| <[u8; 4]>::try_from(s).ok()) {
                    info.rxq_drops = Some(u32::from_ne_bytes(v));
                }
            }
            _ => {}
        }
        at += cmsg_align(len);
    }
    info
}

/// Writes one `UDP_SEGMENT` control message; returns the control length to put in the msghdr.
pub(crate) fn encode_segment(seg: u16, out: &mut CtrlBuf<TX_CTRL_LEN>) -> usize {
    let len = CMSG_HDR + size_of::<u16>();
    let b = &mut out.0;
    b[..ALIGN].copy_from_slice(&len.to_ne_bytes());
    b[ALIGN..ALIGN + 4].copy_from_slice(&libc::SOL_UDP.to_ne_bytes());
    b[ALIGN + 4..ALIGN + 8].copy_from_slice(&libc::UDP_SEGMENT.to_ne_bytes());
    b[CMSG_HDR..CMSG_HDR + 2].copy_from_slice(&seg.to_ne_bytes());
    let space = cmsg_align(len);
    b[CMSG_HDR + 2..space].fill(0);
    space
}

fn read_usize(b: &[u8]) -> usize {
    let mut raw = [0u8; ALIGN];
    raw.copy_from_slice(b);
    usize::from_ne_bytes(raw)
}

const fn cmsg_align(len: usize) -> usize {
    (len + ALIGN - 1) & !(ALIGN - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addr_roundtrip_v4_v6_mapped() {
        let mut buf = AddrBuf([0; ADDR_LEN]);
        let v4: SocketAddr = "127.0.0.1:5004".parse().expect("addr");
        let n = encode_addr(v4, false, &mut buf);
        assert_eq!(decode_addr(&buf.0[..n as usize]), Some(v4));
        let n = encode_addr(v4, true, &mut buf);
        assert_eq!(n as usize, SOCKADDR_IN6_LEN);
        assert_eq!(decode_addr(&buf.0[..n as usize]), Some(v4));
        let v6: SocketAddr = "[::1]:9".parse().expect("addr");
        let n = encode_addr(v6, true, &mut buf);
        assert_eq!(decode_addr(&buf.0[..n as usize]), Some(v6));
    }

    #[test]
    fn garbage_addr_and_cmsgs_are_rejected_quietly() {
        assert_eq!(decode_addr(&[0xff; 3]), None);
        assert_eq!(decode_addr(&[0; 28]), None);
        assert_eq!(parse_cmsgs(&[0xff; 40]), RxInfo::default());
        assert_eq!(parse_cmsgs(&[1, 2, 3]), RxInfo::default());
    }

    #[test]
    fn segment_cmsg_parses_as_gro() {
        // The UDP_SEGMENT and UDP_GRO cmsgs differ in type and data width; check the header
        // writer by re-reading it with the GRO type patched in and an int payload.
        let mut c = CtrlBuf([0; TX_CTRL_LEN]);
        let space = encode_segment(1200, &mut c);
        assert_eq!(space, 24);
        let mut rx = [0u8; 24];
        rx[..space].copy_from_slice(&c.0[..space]);
        rx[..ALIGN].copy_from_slice(&(CMSG_HDR + 4).to_ne_bytes());
        rx[ALIGN + 4..ALIGN + 8].copy_from_slice(&libc::UDP_GRO.to_ne_bytes());
        rx[CMSG_HDR..CMSG_HDR + 4].copy_from_slice(&1200i32.to_ne_bytes());
        assert_eq!(parse_cmsgs(&rx).segment, Some(1200));
    }

    #[test]
    fn a_receive_timestamp_parses_and_a_bad_one_is_ignored() {
        let cmsg = |sec: i64, nsec: i64| {
            let mut b = [0u8; 32];
            b[..ALIGN].copy_from_slice(&(CMSG_HDR + 16).to_ne_bytes());
            b[ALIGN..ALIGN + 4].copy_from_slice(&libc::SOL_SOCKET.to_ne_bytes());
            b[ALIGN + 4..ALIGN + 8].copy_from_slice(&libc::SCM_TIMESTAMPNS.to_ne_bytes());
            b[CMSG_HDR..CMSG_HDR + 8].copy_from_slice(&sec.to_ne_bytes());
            b[CMSG_HDR + 8..CMSG_HDR + 16].copy_from_slice(&nsec.to_ne_bytes());
            b
        };
        let ok = parse_cmsgs(&cmsg(1_800_000_000, 5));
        assert_eq!(ok.stamp, Some(Duration::new(1_800_000_000, 5)));
        assert_eq!(parse_cmsgs(&cmsg(-1, 5)).stamp, None);
        assert_eq!(parse_cmsgs(&cmsg(7, 1_000_000_000)).stamp, None);
        assert_eq!(parse_cmsgs(&cmsg(7, 3)[..CMSG_HDR + 12]).stamp, None);
    }
}
