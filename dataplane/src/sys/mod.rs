//! Everything that touches the kernel for the dataplane's UDP I/O, and the only place in the
//! workspace with `unsafe`. Each worker opens one [`Backend`] on its own thread: an io_uring
//! ring with a multishot `recvmsg` over a provided-buffer ring ([`UringIo`]), or plain
//! `recvmmsg`/`sendmmsg` + `poll(2)` ([`SocketIo`]). Both have the same API and the same
//! semantics; [`IoMode`] picks one, [`probe`] says what the kernel offers.
//!
//! Loop shape (per worker): `recv` (reap: datagrams, and on io_uring the completions of the
//! previous submit's sends), read the clock, feed rtp-core, `submit` the iteration's transmits,
//! `wait` with the next timer as timeout (on io_uring the submit and the wait are one enter).
//!
//! Contracts common to both backends:
//! - `recv` never blocks; it returns datagrams in buffers of the caller's [`BufPool`] which the
//!   worker then holds and returns with [`BufPool::give`] (or reuses for a send). The payload is
//!   at `RecvMeta::offset` inside the buffer (0 for the socket backend, a fixed header size for
//!   io_uring: the kernel writes the `io_uring_recvmsg_out` header, address and control
//!   messages in front of it; we do not move it, to keep receive copy-free).
//! - `submit` takes ownership of the transmits it consumed: the backend gives each buffer back
//!   to the pool when the kernel is done with it (socket: before returning; io_uring: when the
//!   send's completion is reaped). Transmits a full socket buffer refused stay with the caller
//!   (socket) or come back through `requeue` (io_uring), to be sent again first: never dropped
//!   for backpressure. `send`/`try_send` (socket backend only: the load generators and tests)
//!   are complete on return and leave the buffers with the caller.
//! - No allocation after `open`.
//! - Bad transmits and receive errors are counted in [`IoStats`], never logged per packet.

pub mod affinity;
mod buf_ring;
pub mod cred;
pub mod epoll;
mod net;
mod plain;
mod probe;
pub mod process;
pub(crate) mod slab;
mod socket;
mod tx;
mod uring;
mod waker;

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::fd::{AsFd, BorrowedFd};
use std::time::Duration;

pub use plain::SocketIo;
pub use probe::{capabilities, probe, Capabilities};
pub use socket::incoming_cpu;
pub use uring::UringIo;
pub use waker::Waker;

use crate::pool::{BufId, BufPool};

/// How a worker's socket is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocketConfig {
    pub bind: SocketAddr,
    /// `SO_REUSEPORT`, so every worker binds its own socket on the shared media port.
    pub reuse_port: bool,
    /// `SO_RCVBUF` / `SO_SNDBUF` request (the kernel doubles it and caps it at rmem_max/wmem_max).
    pub recv_buf_bytes: Option<usize>,
    pub send_buf_bytes: Option<usize>,
    /// Use `UDP_SEGMENT` for runs of same-size transmits to one destination.
    pub gso: bool,
    /// `UDP_GRO`. Off by default: a coalesced datagram larger than a pool buffer (2048 bytes)
    /// arrives truncated and is dropped, so GRO only helps with larger buffers.
    pub gro: bool,
    /// Give the backend its own waker eventfd. `false` (the socket backend only) saves a file
    /// descriptor per socket for load generators with thousands of sockets: its `waker()` then
    /// wakes nothing and `wait` ends on data or the timeout only.
    pub waker: bool,
    /// `SO_TIMESTAMPNS` (the socket backend only): each datagram carries the time the kernel
    /// received it ([`RecvMeta::stamp`]). For load generators, whose one thread reads thousands
    /// of sockets in turn: a datagram read late would otherwise be measured as arriving late.
    pub rx_timestamps: bool,
}

impl SocketConfig {
    pub fn new(bind: SocketAddr) -> Self {
        Self {
            bind,
            reuse_port: true,
            recv_buf_bytes: None,
            send_buf_bytes: None,
            gso: true,
            gro: false,
            waker: true,
            rx_timestamps: false,
        }
    }
}

/// One received datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecvMeta {
    /// The buffer, now held by the caller.
    pub buf: BufId,
    /// Where the payload starts inside the buffer.
    pub offset: usize,
    pub len: usize,
    pub src: SocketAddr,
    /// Local address the datagram was sent to (`IP_PKTINFO`/`IPV6_PKTINFO`).
    pub dst: Option<IpAddr>,
    /// GRO segment size when several datagrams were coalesced.
    pub segment: Option<u16>,
    /// UDP, or an RFC 4571 frame read from the TCP connection whose peer is `src` (ICE-TCP).
    pub proto: rtp_core::net::Protocol,
    /// When the kernel received it (`CLOCK_REALTIME`, since the Unix epoch), on a socket opened
    /// with [`SocketConfig::rx_timestamps`].
    pub stamp: Option<std::time::Duration>,
}

impl RecvMeta {
    /// Who sent it, over which transport.
    pub fn remote(&self) -> rtp_core::net::Remote {
        rtp_core::net::Remote {
            proto: self.proto,
            addr: self.src,
        }
    }
}

impl Default for RecvMeta {
    fn default() -> Self {
        Self {
            buf: BufId(0),
            offset: 0,
            len: 0,
            src: SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0),
            dst: None,
            segment: None,
            proto: rtp_core::net::Protocol::Udp,
            stamp: None,
        }
    }
}

/// One datagram (or, with `segment_size`, one GSO segment run) to send from a held buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transmit {
    pub buf: BufId,
    pub offset: usize,
    pub len: usize,
    pub dst: SocketAddr,
    /// `Some(s)`: this packet may be sent with GSO together with the transmits right after it
    /// that go to the same `dst` with the same `s` (each exactly `s` bytes but the last); a
    /// single transmit longer than `s` is cut into `s`-byte datagrams.
    pub segment_size: Option<u16>,
}

/// What [`Backend::try_send`] did with a batch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SendOutcome {
    /// Transmits that reached the kernel.
    pub sent: usize,
    /// Transmits dealt with, from the start of the batch: sent, or refused for good (invalid,
    /// or a send error other than a full buffer, counted in [`IoStats`]). `batch[consumed..]`
    /// was not sent because the socket's send buffer is full: send it again once the socket is
    /// writable ([`Backend::wait`] with `writable`).
    pub consumed: usize,
}

/// Counters a backend keeps; the worker exports them as metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct IoStats {
    pub rx_datagrams: u64,
    pub tx_datagrams: u64,
    /// Datagrams larger than the space in a buffer (MSG_TRUNC), dropped.
    pub rx_truncated: u64,
    /// Receive completions/calls that failed (other than would-block), or unparseable.
    pub rx_errors: u64,
    /// Times the receive path found no free buffer in the pool.
    pub rx_pool_empty: u64,
    /// Kernel's count of datagrams dropped on a full receive queue (SO_RXQ_OVFL), last seen.
    pub rx_queue_drops: u32,
    /// io_uring: multishot recvmsg re-armed (ring ran out of buffers, or the kernel ended it).
    pub rx_rearms: u64,
    /// Transmits rejected before reaching the kernel (empty, out of buffer bounds).
    pub bad_transmits: u64,
    /// Datagrams dropped because the socket send buffer was full ([`Backend::send`]).
    pub tx_would_block: u64,
    /// Messages [`Backend::try_send`] left unsent because the socket send buffer was full: the
    /// caller keeps them and sends them again, so these are delays, not losses.
    pub tx_retry: u64,
    /// io_uring: submits that found both message sets still in flight (the transmits waited for
    /// the next iteration).
    pub tx_slots_busy: u64,
    /// Messages sent as a GSO run (`UDP_SEGMENT`: several datagrams in one send).
    pub tx_gso_messages: u64,
    pub tx_errors: u64,
    /// The kernel refused GSO (EIO) once; GSO is now off for this socket.
    pub gso_disabled: bool,
}

/// Which backend to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoMode {
    /// io_uring when the probe says multishot recvmsg and buffer rings work, else sockets.
    Auto,
    Uring,
    Socket,
}

impl IoMode {
    /// `SLUICE_IO=socket|uring` overrides `default` (anything else is ignored).
    pub fn from_env_or(default: IoMode) -> IoMode {
        match std::env::var("SLUICE_IO").as_deref() {
            Ok("socket") => IoMode::Socket,
            Ok("uring") => IoMode::Uring,
            _ => default,
        }
    }

    /// Resolves `Auto` against what the kernel offers.
    pub fn resolve(self, caps: &Capabilities) -> IoMode {
        match self {
            IoMode::Auto if caps.uring_usable() => IoMode::Uring,
            IoMode::Auto => IoMode::Socket,
            other => other,
        }
    }
}

/// A worker's UDP I/O, by enum dispatch.
///
/// One per worker, so the size difference between variants costs nothing worth a `Box` and the
/// extra indirection on every call.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Backend {
    Uring(UringIo),
    Socket(SocketIo),
}

impl Backend {
    /// Opens with [`IoMode::from_env_or`]`(Auto)`. `recv_depth` is how many pool buffers the
    /// backend keeps posted for receiving (io_uring: provided-buffer ring entries, rounded up to
    /// a power of two, at most 32768; socket: ignored beyond a batch of 64).
    pub fn open(cfg: &SocketConfig, recv_depth: usize) -> io::Result<Self> {
        Self::open_mode(IoMode::from_env_or(IoMode::Auto), cfg, recv_depth)
    }

    /// Opens a specific backend. `Uring` fails with `Unsupported` when the probe says it can't
    /// work here. Must be called on the thread that will use the backend (io_uring is set up
    /// SINGLE_ISSUER).
    pub fn open_mode(mode: IoMode, cfg: &SocketConfig, recv_depth: usize) -> io::Result<Self> {
        match mode.resolve(capabilities()) {
            IoMode::Uring => {
                if !capabilities().uring_usable() {
                    return Err(io::Error::new(
                        io::ErrorKind::Unsupported,
                        "io_uring multishot recvmsg with buffer rings unavailable",
                    ));
                }
                Ok(Backend::Uring(UringIo::open(cfg, recv_depth)?))
            }
            _ => Ok(Backend::Socket(SocketIo::open(cfg)?)),
        }
    }

    pub fn mode(&self) -> IoMode {
        match self {
            Backend::Uring(_) => IoMode::Uring,
            Backend::Socket(_) => IoMode::Socket,
        }
    }

    /// Fills `out` with up to `out.len()` received datagrams without blocking.
    pub fn recv(&mut self, pool: &mut BufPool, out: &mut [RecvMeta]) -> io::Result<usize> {
        match self {
            Backend::Uring(b) => b.recv(pool, out),
            Backend::Socket(b) => b.recv(pool, out),
        }
    }

    /// Hands `batch` to the kernel in order and says how far it got: `batch[..consumed]` now
    /// belongs to the backend, which gives each buffer back to `pool` once the kernel is done
    /// with it (socket: before returning; io_uring: when the send's completion is reaped by a
    /// later [`Backend::recv`]; the SQEs go in with the next [`Backend::wait_for`], so one
    /// iteration enters the kernel once). `batch[consumed..]` stays with the caller: the socket's
    /// buffer is full (socket) or the messages in flight fill the ring's slots (io_uring).
    pub fn submit(&mut self, pool: &mut BufPool, batch: &[Transmit]) -> io::Result<SendOutcome> {
        match self {
            Backend::Uring(b) => b.submit(pool, batch),
            Backend::Socket(b) => b.submit(pool, batch),
        }
    }

    /// io_uring: puts the transmits whose send the kernel refused (full send buffer, GSO refused)
    /// back at the front of `tx`, in order, to be submitted again first. Socket: nothing (its
    /// refusals never left the caller's batch).
    pub fn requeue(&mut self, tx: &mut Vec<Transmit>) {
        if let Backend::Uring(b) = self {
            b.requeue(tx);
        }
    }

    /// Send messages submitted whose completion was not reaped yet (io_uring; 0 for sockets).
    pub fn in_flight(&self) -> usize {
        match self {
            Backend::Uring(b) => b.in_flight(),
            Backend::Socket(_) => 0,
        }
    }

    /// Sends `batch`; returns how many transmits reached the kernel. Complete on return, the
    /// buffers stay with the caller. Transmits a full socket buffer refuses are dropped (counted
    /// in `tx_would_block`). Socket backend only (the load generators); io_uring sends go
    /// through [`Backend::submit`].
    pub fn send(&mut self, pool: &BufPool, batch: &[Transmit]) -> io::Result<usize> {
        match self {
            Backend::Uring(_) => Err(uring_sends_submit()),
            Backend::Socket(b) => b.send(pool, batch),
        }
    }

    /// Sends `batch` in order until the socket's send buffer is full, and says how far it got:
    /// the caller keeps `batch[consumed..]` (and its buffers) and tries again when the socket
    /// is writable. Nothing is dropped for a full buffer. Complete on return.
    /// Socket backend only, like [`Backend::send`].
    pub fn try_send(&mut self, pool: &BufPool, batch: &[Transmit]) -> io::Result<SendOutcome> {
        match self {
            Backend::Uring(_) => Err(uring_sends_submit()),
            Backend::Socket(b) => b.try_send(pool, batch),
        }
    }

    /// Sleeps until a datagram or a wake-up is ready, or `timeout` passes (`None`: no limit).
    pub fn wait(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        self.wait_for(timeout, false)
    }

    /// [`Backend::wait`], also ending when the socket can take more datagrams if `writable`
    /// (after a [`Backend::try_send`] that did not finish its batch).
    pub fn wait_for(&mut self, timeout: Option<Duration>, writable: bool) -> io::Result<()> {
        match self {
            Backend::Uring(b) => b.wait(timeout, writable),
            Backend::Socket(b) => b.wait(timeout, writable),
        }
    }

    pub fn waker(&self) -> Waker {
        match self {
            Backend::Uring(b) => b.waker(),
            Backend::Socket(b) => b.waker(),
        }
    }

    /// Makes `fd` becoming readable end [`Backend::wait`] too (a worker's TCP epoll, which
    /// the caller keeps open while the backend lives).
    pub fn watch(&mut self, fd: std::os::fd::RawFd) {
        match self {
            Backend::Uring(b) => b.watch(fd),
            Backend::Socket(b) => b.watch(fd),
        }
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        let addr = match self {
            Backend::Uring(b) => b.socket().local_addr()?,
            Backend::Socket(b) => b.socket().local_addr()?,
        };
        addr.as_socket()
            .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidData))
    }

    pub fn stats(&self) -> &IoStats {
        match self {
            Backend::Uring(b) => b.stats(),
            Backend::Socket(b) => b.stats(),
        }
    }

    /// Whether GSO is (still) in use on this socket.
    pub fn gso(&self) -> bool {
        match self {
            Backend::Uring(b) => b.gso(),
            Backend::Socket(b) => b.gso(),
        }
    }

    /// Sets `SO_INCOMING_CPU` (see [`incoming_cpu`]).
    pub fn set_incoming_cpu(&self, core: usize) -> io::Result<()> {
        incoming_cpu(self.as_fd(), core)
    }

    /// Stops receiving and returns every buffer lent to the kernel to `pool`. Call before
    /// dropping the pool; a pool dropped while buffers are lent leaks its slab rather than let
    /// the kernel write freed memory.
    pub fn shutdown(&mut self, pool: &mut BufPool) -> io::Result<()> {
        match self {
            Backend::Uring(b) => b.shutdown(pool),
            Backend::Socket(_) => Ok(()),
        }
    }
}

fn uring_sends_submit() -> io::Error {
    io::Error::new(
        io::ErrorKind::Unsupported,
        "the io_uring backend sends through Backend::submit",
    )
}

impl AsFd for Backend {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Backend::Uring(b) => b.socket().as_fd(),
            Backend::Socket(b) => b.socket().as_fd(),
        }
    }
}
