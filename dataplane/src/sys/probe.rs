//! Start-up capability probe: which io_uring opcodes and features, and which UDP offloads, this
//! kernel offers. The dataplane logs [`Capabilities::log_line`] once and picks its backend from
//! it ([`super::IoMode::Auto`]).

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::OnceLock;
use std::time::Duration;

use io_uring::{opcode, register::Probe, IoUring};

use super::socket::setsockopt_int;
use super::uring::UringIo;
use super::{RecvMeta, SocketConfig};
use crate::pool::BufPool;

/// What the kernel offers.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Capabilities {
    /// An io_uring instance can be created (not disabled by sysctl/seccomp).
    pub io_uring: bool,
    /// A multishot recvmsg over a buffer ring received a loopback datagram (6.0+).
    pub recvmsg_multishot: bool,
    /// `IORING_REGISTER_PBUF_RING` works (5.19+).
    pub buf_ring: bool,
    /// `IORING_OP_SEND_ZC` is known (6.0+); not used yet.
    pub send_zc: bool,
    /// `UDP_SEGMENT` accepted (4.18+).
    pub gso: bool,
    /// `UDP_GRO` accepted (5.0+).
    pub gro: bool,
    /// `SO_INCOMING_CPU` settable (4.4+; honoured by reuseport since 4.6).
    pub incoming_cpu: bool,
    /// `uname -r`.
    pub kernel: String,
}

impl Capabilities {
    /// Whether the io_uring backend can run here.
    pub fn uring_usable(&self) -> bool {
        self.io_uring && self.buf_ring && self.recvmsg_multishot
    }

    /// The one line the dataplane logs at start-up.
    pub fn log_line(&self) -> String {
        let yn = |b: bool| if b { "yes" } else { "no" };
        format!(
            "kernel {} io_uring={} recvmsg_multishot={} buf_ring={} send_zc={} gso={} gro={} \
             incoming_cpu={} -> backend {}",
            self.kernel,
            yn(self.io_uring),
            yn(self.recvmsg_multishot),
            yn(self.buf_ring),
            yn(self.send_zc),
            yn(self.gso),
            yn(self.gro),
            yn(self.incoming_cpu),
            if self.uring_usable() {
                "io_uring"
            } else {
                "socket"
            },
        )
    }
}

/// The probe result, computed once per process.
pub fn capabilities() -> &'static Capabilities {
    static CAPS: OnceLock<Capabilities> = OnceLock::new();
    CAPS.get_or_init(probe)
}

/// Probes now (tens of microseconds to a few milliseconds; sends one loopback datagram).
pub fn probe() -> Capabilities {
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "unknown".to_owned());
    let (io_uring, send_zc) = match IoUring::<io_uring::squeue::Entry>::new(8) {
        Ok(ring) => {
            let mut p = Probe::new();
            let known = ring.submitter().register_probe(&mut p).is_ok();
            (true, known && p.is_supported(opcode::SendZc::CODE))
        }
        Err(_) => (false, false),
    };
    let (buf_ring, recvmsg_multishot) = if io_uring {
        uring_recv_works()
    } else {
        (false, false)
    };
    let (gso, gro, incoming_cpu) = match UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)) {
        Ok(s) => {
            let fd = s.as_raw_fd();
            (
                setsockopt_int(fd, libc::SOL_UDP, libc::UDP_SEGMENT, 0).is_ok(),
                setsockopt_int(fd, libc::SOL_UDP, libc::UDP_GRO, 1).is_ok(),
                setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_INCOMING_CPU, 0).is_ok(),
            )
        }
        Err(_) => (false, false, false),
    };
    Capabilities {
        io_uring,
        recvmsg_multishot,
        buf_ring,
        send_zc,
        gso,
        gro,
        incoming_cpu,
        kernel,
    }
}

/// Opens a real io_uring backend on loopback and receives one datagram through it: the only
/// reliable test for multishot recvmsg (the opcode probe cannot tell multishot support).
fn uring_recv_works() -> (bool, bool) {
    let cfg = SocketConfig {
        reuse_port: false,
        gso: false,
        ..SocketConfig::new(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
    };
    let mut pool = BufPool::new(4);
    let Ok(mut io) = UringIo::open(&cfg, 4) else {
        return (false, false);
    };
    let mut got = false;
    let target = io.socket().local_addr().ok().and_then(|a| a.as_socket());
    let sender = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0));
    if let (Some(target), Ok(sender)) = (target, sender) {
        let mut out = [RecvMeta::default(); 1];
        // Arm first, then send, then wait: at most 20 × 10 ms.
        let _ = io.recv(&mut pool, &mut out);
        if sender.send_to(b"probe", target).is_ok() {
            for _ in 0..20 {
                let _ = io.wait(Some(Duration::from_millis(10)), false);
                if let Ok(1) = io.recv(&mut pool, &mut out) {
                    got = out[0].len == 5;
                    pool.give(out[0].buf);
                    break;
                }
            }
        }
    }
    let _ = io.shutdown(&mut pool);
    (true, got)
}
