//! Opening a worker's UDP socket with the options both backends rely on (`udp(7)`, `ip(7)`,
//! `ipv6(7)`, `socket(7)`): nonblocking, `SO_REUSEPORT`, buffer sizes, `IP_PKTINFO` /
//! `IPV6_RECVPKTINFO` (RFC 3542 §6, the destination address of each datagram, needed on
//! multi-homed hosts), `SO_RXQ_OVFL` (drop counter), `UDP_GRO`, `SO_TIMESTAMPNS` (load
//! generators), and the `SO_INCOMING_CPU` hint.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

use socket2::{Domain, Protocol, Socket, Type};

use super::SocketConfig;

/// An opened socket and the offloads that actually took.
#[derive(Debug)]
pub(crate) struct Opened {
    pub(crate) sock: Socket,
    pub(crate) v6: bool,
    pub(crate) gso: bool,
}

pub(crate) fn open_udp(cfg: &SocketConfig) -> io::Result<Opened> {
    let v6 = cfg.bind.is_ipv6();
    let sock = Socket::new(
        Domain::for_address(cfg.bind),
        Type::DGRAM,
        Some(Protocol::UDP),
    )?;
    sock.set_nonblocking(true)?;
    if cfg.reuse_port {
        sock.set_reuse_port(true)?;
    }
    if let Some(n) = cfg.recv_buf_bytes {
        sock.set_recv_buffer_size(n)?;
    }
    if let Some(n) = cfg.send_buf_bytes {
        sock.set_send_buffer_size(n)?;
    }
    let fd = sock.as_raw_fd();
    if v6 {
        setsockopt_int(fd, libc::IPPROTO_IPV6, libc::IPV6_RECVPKTINFO, 1)?;
        // For v4-mapped traffic on a dual-stack socket; fails harmlessly on v6-only.
        let _ = setsockopt_int(fd, libc::IPPROTO_IP, libc::IP_PKTINFO, 1);
    } else {
        setsockopt_int(fd, libc::IPPROTO_IP, libc::IP_PKTINFO, 1)?;
    }
    // Best effort: only feeds a counter.
    let _ = setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_RXQ_OVFL, 1);
    // GSO needs no socket option to send; probing a zero segment size tells whether the kernel
    // knows UDP_SEGMENT at all.
    let gso = cfg.gso && setsockopt_int(fd, libc::SOL_UDP, libc::UDP_SEGMENT, 0).is_ok();
    if cfg.gro {
        setsockopt_int(fd, libc::SOL_UDP, libc::UDP_GRO, 1)?;
    }
    if cfg.rx_timestamps {
        setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_TIMESTAMPNS, 1)?;
    }
    sock.bind(&cfg.bind.into())?;
    Ok(Opened { sock, v6, gso })
}

/// Sets `SO_INCOMING_CPU` on a socket to `core`.
///
/// What it does: for a group of `SO_REUSEPORT` sockets, the kernel prefers (since Linux 4.6) the
/// socket whose `SO_INCOMING_CPU` equals the CPU that processed the packet's softirq, so with
/// RSS/RPS steering a flow to core N, core N's worker receives it and the packet stays in one
/// core's cache. What it does not: it does not move interrupts or choose the CPU that handles a
/// flow (that is RSS/RPS/XPS, see docs/tuning.md), it is ignored when no socket in the group
/// matches (the usual reuseport hash applies), it is ignored once a reuseport BPF program is
/// attached, and it does not keep a flow on one socket if the NIC's steering changes.
pub fn incoming_cpu(sock: BorrowedFd<'_>, core: usize) -> io::Result<()> {
    let core = i32::try_from(core).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    setsockopt_int(
        sock.as_raw_fd(),
        libc::SOL_SOCKET,
        libc::SO_INCOMING_CPU,
        core,
    )
}

pub(crate) fn setsockopt_int(
    fd: libc::c_int,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: `value` lives on this stack frame for the whole call and its exact size is passed;
    // the kernel only reads it. A bad fd yields EBADF, not UB.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            std::ptr::addr_of!(value).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
