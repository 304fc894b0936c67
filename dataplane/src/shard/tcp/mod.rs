//! ICE-TCP (RFC 6544 passive candidates, RFC 4571 framing) for one worker: its listener on the
//! TCP media port (`SO_REUSEPORT`, one per worker), the connections it accepted or was handed,
//! and their bounded buffers. Sockets are non-blocking and report to the worker's [`Epoll`],
//! which the backend watches, so a TCP frame wakes the worker like a datagram.
//!
//! Every frame read becomes a [`RecvMeta`] with [`Protocol::Tcp`] in a pool buffer and takes the
//! datagram path (`ingress.rs`). A connection is *bound* once its session validated it (an
//! authenticated Binding request over it); until then it is read one frame per iteration, so
//! the first frame decides: a STUN check for a session on another worker hands the connection
//! over ([`TcpSide::hand_over`]), anything else but a check for a session here closes it.
//!
//! What a hostile peer can grow, and its bound (each refusal counted in [`TcpStats`]):
//! - connections: at most `max_conns` per worker; more are accepted and closed at once;
//! - a connection that is not bound within `stun_timeout` is closed; a bound one that sends
//!   nothing for `idle_timeout` too (consent checks come every few seconds);
//! - receive: one fixed buffer of two maximal frames per connection; a frame longer than a pool
//!   buffer (or empty) closes the connection;
//! - send: one ring of `send_queue_bytes` per bound connection (allocated when it binds). Media
//!   may fill three quarters of it, STUN/DTLS/RTCP all of it; what does not fit is dropped and
//!   counted, media first. The kernel's send buffer is fixed at a quarter of it (`SO_SNDBUF`,
//!   no autotuning), so a slow reader backs up into the ring rather than into the kernel.
//!
//! Nothing here allocates per frame: buffers are made when a connection is accepted or bound.

use std::collections::HashMap;
use std::io::{self, IoSlice, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use rtp_core::net::Protocol;
use socket2::{Domain, Socket, Type};

mod handoff;
mod ring;
mod stats;
#[cfg(test)]
mod tests;

pub use handoff::{Handoff, Handoffs};
use ring::TxRing;
pub use stats::TcpStats;

use crate::pool::{BufPool, BUF_SIZE};
use crate::sys::epoll::{Epoll, Ready, READ, READ_WRITE};
use crate::sys::RecvMeta;

/// Longest frame accepted: what a pool buffer holds.
pub(super) const MAX_FRAME: usize = BUF_SIZE;
/// Receive buffer per connection: two maximal frames with their length prefixes.
const RX_CAP: usize = 2 * (2 + MAX_FRAME);
/// Frames taken from all connections per iteration.
pub(super) const FRAME_BATCH: usize = 128;
/// Connections accepted per iteration.
const ACCEPT_BUDGET: usize = 64;
/// The listener's epoll token (connections use their slot index).
const LISTENER: u64 = u64::MAX;
/// How often timeouts are checked.
const SWEEP: Duration = Duration::from_millis(250);

/// The knobs (`[dataplane]` `tcp_*` keys).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpConfig {
    pub max_conns: usize,
    pub send_queue_bytes: usize,
    pub stun_timeout: Duration,
    pub idle_timeout: Duration,
}

impl TcpConfig {
    /// `SO_SNDBUF` of every connection: a quarter of the send queue (the kernel doubles it for
    /// its bookkeeping), so at most about half the queue again waits in the kernel.
    pub fn kernel_send_buffer(&self) -> usize {
        self.send_queue_bytes / 4
    }
}

impl Default for TcpConfig {
    fn default() -> Self {
        Self {
            max_conns: 1024,
            send_queue_bytes: 256 << 10,
            stun_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(30),
        }
    }
}

#[derive(Debug)]
struct Conn {
    stream: TcpStream,
    peer: SocketAddr,
    rx: Box<[u8; RX_CAP]>,
    rx_len: usize,
    /// Allocated when the connection binds.
    tx: Option<TxRing>,
    /// EPOLLOUT is registered (bytes wait for room in the socket).
    writing: bool,
    /// Not bound: when it must be; bound: when silence closes it.
    deadline: Instant,
    /// Complete frames wait in `rx`.
    pending: bool,
}

/// Why a connection is closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseWhy {
    Garbage,
    /// A deadline passed (counted by the sweep).
    Timeout,
    BadFrame,
    Peer,
    Session,
}

/// See the module docs.
#[derive(Debug)]
pub struct TcpSide {
    listener: TcpListener,
    local: SocketAddr,
    epoll: Epoll,
    cfg: TcpConfig,
    conns: Vec<Option<Conn>>,
    free: Vec<usize>,
    by_peer: HashMap<SocketAddr, usize>,
    ready: Vec<Ready>,
    /// Connections with complete frames left in `rx` (the batch filled up).
    backlog: Vec<usize>,
    /// Connections with bytes queued since the last flush.
    to_flush: Vec<usize>,
    /// Peers of bound connections that closed, for the worker to tell their sessions.
    closed: Vec<SocketAddr>,
    next_sweep: Instant,
    pub stats: TcpStats,
}

/// Opens a listener on `bind` that every worker shares (`SO_REUSEPORT`).
pub fn listen(bind: SocketAddr) -> io::Result<TcpListener> {
    let sock = Socket::new(Domain::for_address(bind), Type::STREAM, None)?;
    sock.set_reuse_address(true)?;
    sock.set_reuse_port(true)?;
    if bind.is_ipv6() {
        sock.set_only_v6(false)?;
    }
    sock.bind(&bind.into())?;
    sock.listen(1024)?;
    sock.set_nonblocking(true)?;
    Ok(sock.into())
}

impl TcpSide {
    pub fn new(listener: TcpListener, cfg: TcpConfig, now: Instant) -> io::Result<Self> {
        listener.set_nonblocking(true)?;
        let local = listener.local_addr()?;
        let epoll = Epoll::new(256)?;
        epoll.add(listener.as_raw_fd(), LISTENER, READ)?;
        let cap = cfg.max_conns.min(1 << 16);
        Ok(Self {
            listener,
            local,
            epoll,
            cfg,
            conns: Vec::with_capacity(cap),
            free: Vec::with_capacity(cap),
            by_peer: HashMap::with_capacity(cap),
            ready: Vec::with_capacity(256),
            backlog: Vec::with_capacity(cap),
            to_flush: Vec::with_capacity(cap),
            closed: Vec::with_capacity(cap),
            next_sweep: now + SWEEP,
            stats: TcpStats::default(),
        })
    }

    pub fn epoll_fd(&self) -> std::os::fd::RawFd {
        self.epoll.raw()
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Open connections.
    pub fn connections(&self) -> usize {
        self.by_peer.len()
    }

    /// Bound connections.
    pub fn bound(&self) -> usize {
        self.conns
            .iter()
            .flatten()
            .filter(|c| c.tx.is_some())
            .count()
    }

    pub fn is_bound(&self, peer: SocketAddr) -> bool {
        self.conn(peer).is_some_and(|c| c.tx.is_some())
    }

    fn conn(&self, peer: SocketAddr) -> Option<&Conn> {
        let &i = self.by_peer.get(&peer)?;
        self.conns[i].as_ref()
    }

    /// When the worker must come back for timeouts (none while there are no connections).
    pub fn next_deadline(&self) -> Option<Instant> {
        (!self.by_peer.is_empty()).then_some(self.next_sweep)
    }

    /// Whether frames wait without the socket being readable again (come back at once).
    pub fn has_backlog(&self) -> bool {
        !self.backlog.is_empty()
    }

    /// Peers whose bound connection closed since the last call.
    pub fn take_closed(&mut self, out: &mut Vec<SocketAddr>) {
        out.clear();
        out.append(&mut self.closed);
    }

    /// Accepts, reads and writes what is ready, and cuts complete frames into pool buffers:
    /// `out` gets at most [`FRAME_BATCH`] frames (`proto` TCP, `src` the peer).
    pub fn poll(&mut self, now: Instant, pool: &mut BufPool, out: &mut Vec<RecvMeta>) {
        out.clear();
        // Frames left over from the last iteration first.
        let mut backlog = std::mem::take(&mut self.backlog);
        for i in backlog.drain(..) {
            self.frames(i, pool, out);
        }
        self.backlog = backlog;
        let mut ready = std::mem::take(&mut self.ready);
        if let Err(e) = self.epoll.wait(&mut ready) {
            tracing::warn!(error = %e, "epoll_wait failed");
        }
        for r in &ready {
            if r.token == LISTENER {
                self.accept(now);
                continue;
            }
            let i = r.token as usize;
            if r.writable {
                self.flush_one(i);
            }
            if r.readable || r.hangup {
                self.read(now, i);
                self.frames(i, pool, out);
            }
        }
        self.ready = ready;
        if now >= self.next_sweep {
            self.next_sweep = now + SWEEP;
            self.sweep(now);
        }
    }

    fn accept(&mut self, now: Instant) {
        for _ in 0..ACCEPT_BUDGET {
            let (stream, peer) = match self.listener.accept() {
                Ok(s) => s,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(_) => {
                    // EMFILE and friends: the backlog waits; counted, not logged per connection.
                    self.stats.accept_errors += 1;
                    return;
                }
            };
            if self.by_peer.len() >= self.cfg.max_conns {
                self.stats.refused_full += 1;
                continue;
            }
            self.stats.accepted += 1;
            let deadline = now + self.cfg.stun_timeout;
            self.insert(stream, peer, Vec::new(), deadline);
        }
    }

    /// Enters a connection (accepted here, or handed over with `bytes` already read).
    fn insert(&mut self, stream: TcpStream, peer: SocketAddr, bytes: Vec<u8>, deadline: Instant) {
        if stream.set_nonblocking(true).is_err() || self.by_peer.contains_key(&peer) {
            self.stats.closed_peer += 1;
            return;
        }
        let _ = stream.set_nodelay(true);
        // A fixed kernel send buffer (no autotuning, which grows it to megabytes on a fast
        // path): a reader that falls behind then backs up into `tx`, where media gives way
        // first, instead of queueing seconds of stale media in the kernel (D64).
        let _ = socket2::SockRef::from(&stream).set_send_buffer_size(self.cfg.kernel_send_buffer());
        let i = self.free.pop().unwrap_or_else(|| {
            self.conns.push(None);
            self.conns.len() - 1
        });
        if self.epoll.add(stream.as_raw_fd(), i as u64, READ).is_err() {
            self.free.push(i);
            self.stats.closed_peer += 1;
            return;
        }
        let mut rx = Box::new([0u8; RX_CAP]);
        let n = bytes.len().min(RX_CAP);
        rx[..n].copy_from_slice(&bytes[..n]);
        self.conns[i] = Some(Conn {
            stream,
            peer,
            rx,
            rx_len: n,
            tx: None,
            writing: false,
            deadline,
            pending: n > 0,
        });
        self.by_peer.insert(peer, i);
        if n > 0 {
            self.backlog.push(i);
        }
    }

    /// A connection another worker handed over.
    pub fn adopt(&mut self, h: Handoff) {
        if self.by_peer.len() >= self.cfg.max_conns {
            self.stats.refused_full += 1;
            return;
        }
        self.stats.adopted += 1;
        self.insert(h.stream, h.peer, h.bytes, h.deadline);
    }

    fn read(&mut self, now: Instant, i: usize) {
        let Some(c) = self.conns.get_mut(i).and_then(Option::as_mut) else {
            return;
        };
        if c.rx_len == RX_CAP {
            return;
        }
        match c.stream.read(&mut c.rx[c.rx_len..]) {
            Ok(0) => self.close(i, CloseWhy::Peer),
            Ok(n) => {
                c.rx_len += n;
                if c.tx.is_some() {
                    c.deadline = now + self.cfg.idle_timeout;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => self.close(i, CloseWhy::Peer),
        }
    }

    /// Cuts complete frames of connection `i` into `out` (one while it is not bound).
    fn frames(&mut self, i: usize, pool: &mut BufPool, out: &mut Vec<RecvMeta>) {
        let Some(c) = self.conns.get_mut(i).and_then(Option::as_mut) else {
            return;
        };
        c.pending = false;
        let mut at = 0;
        let limit = if c.tx.is_some() { usize::MAX } else { 1 };
        let mut taken = 0;
        let mut bad = false;
        while c.rx_len - at >= 2 {
            let len = usize::from(u16::from_be_bytes([c.rx[at], c.rx[at + 1]]));
            if len == 0 || len > MAX_FRAME {
                bad = true;
                break;
            }
            if c.rx_len - at < 2 + len {
                break;
            }
            if out.len() == FRAME_BATCH || taken == limit {
                c.pending = true;
                break;
            }
            let Some(buf) = pool.take() else {
                // Counted by the worker as a pool shortage; the frame waits.
                c.pending = true;
                break;
            };
            pool.get_mut(buf)[..len].copy_from_slice(&c.rx[at + 2..at + 2 + len]);
            out.push(RecvMeta {
                buf,
                offset: 0,
                len,
                src: c.peer,
                proto: Protocol::Tcp,
                ..RecvMeta::default()
            });
            self.stats.rx_frames += 1;
            taken += 1;
            at += 2 + len;
        }
        c.rx.copy_within(at..c.rx_len, 0);
        c.rx_len -= at;
        if bad {
            self.stats.closed_bad_frame += 1;
            self.close(i, CloseWhy::BadFrame);
        } else if c.pending {
            self.backlog.push(i);
        }
    }

    /// Marks the connection to `peer` bound (its session validated it): its send queue is made
    /// and the idle timeout starts.
    pub fn bind(&mut self, now: Instant, peer: SocketAddr) {
        let Some(&i) = self.by_peer.get(&peer) else {
            return;
        };
        let (cap, idle) = (self.cfg.send_queue_bytes, self.cfg.idle_timeout);
        if let Some(c) = self.conns[i].as_mut() {
            if c.tx.is_none() {
                c.tx = Some(TxRing::new(cap));
                c.deadline = now + idle;
                if c.rx_len >= 2 && !c.pending {
                    // More frames may have waited behind the first one.
                    c.pending = true;
                    self.backlog.push(i);
                }
            }
        }
    }

    /// Queues `frame` for `peer` with its RFC 4571 length prefix; `media` frames may use three
    /// quarters of the queue, control frames all of it. Returns whether it was queued.
    pub fn send(&mut self, peer: SocketAddr, frame: &[u8], media: bool) -> bool {
        let Some(&i) = self.by_peer.get(&peer) else {
            self.stats.tx_no_conn += 1;
            return false;
        };
        let Some(c) = self.conns[i].as_mut() else {
            return false;
        };
        let Some(tx) = c.tx.as_mut() else {
            // Not bound: nothing may go to an unvalidated connection.
            self.stats.tx_no_conn += 1;
            return false;
        };
        let cap = tx.buf.len();
        let limit = if media { cap - cap / 4 } else { cap };
        let Ok(len) = u16::try_from(frame.len()) else {
            self.stats.tx_control_dropped += 1;
            return false;
        };
        if tx.len + 2 + frame.len() > limit {
            if media {
                self.stats.tx_media_dropped += 1;
            } else {
                self.stats.tx_control_dropped += 1;
            }
            return false;
        }
        let was_empty = tx.len == 0;
        tx.put(&len.to_be_bytes());
        tx.put(frame);
        self.stats.tx_frames += 1;
        if was_empty && !c.writing {
            self.to_flush.push(i);
        }
        true
    }

    /// Writes what the iteration queued (once per iteration, with the UDP submit).
    pub fn flush(&mut self) {
        let mut list = std::mem::take(&mut self.to_flush);
        for i in list.drain(..) {
            self.flush_one(i);
        }
        self.to_flush = list;
    }

    fn flush_one(&mut self, i: usize) {
        let Some(c) = self.conns.get_mut(i).and_then(Option::as_mut) else {
            return;
        };
        let Some(tx) = c.tx.as_mut() else {
            return;
        };
        let mut failed = false;
        while tx.len > 0 {
            let [a, b] = tx.slices();
            let bufs = [IoSlice::new(a), IoSlice::new(b)];
            match c.stream.write_vectored(&bufs) {
                Ok(0) => {
                    failed = true;
                    break;
                }
                Ok(n) => tx.consume(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    failed = true;
                    break;
                }
            }
        }
        if failed {
            self.close(i, CloseWhy::Peer);
            return;
        }
        let want = tx.len > 0;
        if want != c.writing {
            let events = if want { READ_WRITE } else { READ };
            if self
                .epoll
                .modify(c.stream.as_raw_fd(), i as u64, events)
                .is_ok()
            {
                c.writing = want;
            }
        }
    }

    /// Closes connections past their deadline.
    fn sweep(&mut self, now: Instant) {
        for i in 0..self.conns.len() {
            let Some(c) = self.conns[i].as_ref() else {
                continue;
            };
            if c.deadline > now {
                continue;
            }
            if c.tx.is_some() {
                self.stats.closed_idle += 1;
            } else {
                self.stats.closed_no_stun += 1;
            }
            self.close(i, CloseWhy::Timeout);
        }
    }

    /// Closes the connection to `peer` (its first frame was refused, or its session left).
    pub fn close_peer(&mut self, peer: SocketAddr, why: CloseWhy) {
        if let Some(&i) = self.by_peer.get(&peer) {
            match why {
                CloseWhy::Garbage => self.stats.closed_garbage += 1,
                CloseWhy::Session => self.stats.closed_session += 1,
                _ => {}
            }
            self.close(i, why);
        }
    }

    fn close(&mut self, i: usize, why: CloseWhy) {
        let Some(c) = self.conns.get_mut(i).and_then(Option::take) else {
            return;
        };
        let _ = self.epoll.delete(c.stream.as_raw_fd());
        self.by_peer.remove(&c.peer);
        self.free.push(i);
        if why == CloseWhy::Peer {
            self.stats.closed_peer += 1;
        }
        if c.tx.is_some() && why != CloseWhy::Session {
            self.closed.push(c.peer);
        }
    }

    /// Takes the connection to `peer` out for the worker that owns its session: `frame` (just
    /// read from it) goes first in the hand-over, then whatever followed it.
    pub fn hand_over(&mut self, peer: SocketAddr, frame: &[u8]) -> Option<Handoff> {
        let i = self.by_peer.remove(&peer)?;
        let c = self.conns[i].take()?;
        self.free.push(i);
        let _ = self.epoll.delete(c.stream.as_raw_fd());
        let mut bytes = Vec::with_capacity(2 + frame.len() + c.rx_len);
        bytes.extend_from_slice(&(frame.len() as u16).to_be_bytes());
        bytes.extend_from_slice(frame);
        bytes.extend_from_slice(&c.rx[..c.rx_len]);
        self.stats.handed_over += 1;
        Some(Handoff {
            stream: c.stream,
            peer,
            bytes,
            deadline: c.deadline,
        })
    }

    /// The counters as snapshot entries.
    pub fn entries(&self) -> impl Iterator<Item = (String, u64)> {
        let s = self.stats;
        [
            ("tcp_connections", self.connections() as u64),
            ("tcp_bound", self.bound() as u64),
            ("tcp_accepted", s.accepted),
            ("tcp_refused_full", s.refused_full),
            ("tcp_accept_errors", s.accept_errors),
            ("tcp_closed_garbage", s.closed_garbage),
            ("tcp_closed_bad_frame", s.closed_bad_frame),
            ("tcp_closed_no_stun", s.closed_no_stun),
            ("tcp_closed_idle", s.closed_idle),
            ("tcp_closed_peer", s.closed_peer),
            ("tcp_closed_session", s.closed_session),
            ("tcp_handed_over", s.handed_over),
            ("tcp_adopted", s.adopted),
            ("tcp_handoff_full", s.handoff_full),
            ("tcp_rx_frames", s.rx_frames),
            ("tcp_tx_frames", s.tx_frames),
            ("tcp_tx_media_dropped", s.tx_media_dropped),
            ("tcp_tx_control_dropped", s.tx_control_dropped),
            ("tcp_tx_no_conn", s.tx_no_conn),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
    }
}
