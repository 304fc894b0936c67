//! `Io`: the shard's I/O half — the backend, the buffer pool, the receive batch, the transmit
//! queue of the iteration and the latency stamps that ride on the buffers.
//!
//! Transmits are queued during the drain phase and handed to the kernel by ONE
//! [`Io::submit`] per iteration (io_uring: SQEs that enter with the wait; sockets: `sendmmsg`).
//! Consecutive datagrams of equal size to one destination — a subscriber's share of a keyframe
//! or an RTX burst — are marked as a GSO run, so the kernel builds one large send and cuts it
//! (`UDP_SEGMENT`); `sys/tx.rs` turns a run into one message. What a full socket buffer refuses
//! stays at the front of the queue for the next submit: never dropped for backpressure.

use std::net::SocketAddr;
use std::time::Instant;

use rtp_core::net::{Protocol, Remote};

use crate::pool::{BufId, BufPool};
use crate::sys::{Backend, IoMode, RecvMeta, Transmit};

use super::counters::ShardCounters;
use super::latency::Latency;
use super::tcp::TcpSide;

/// Transmits one iteration may queue (the drain phase stops when it is full).
pub(super) const TX_CAPACITY: usize = 4096;

/// Why the queue still holds transmits after a submit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Backlog {
    /// Everything went.
    None,
    /// The socket's send buffer is full: wait until it is writable.
    Full,
    /// The backend's send slots are in flight: come back at once, their completions free them.
    Busy,
}

#[derive(Debug)]
pub(super) struct Io {
    pub backend: Backend,
    pub pool: BufPool,
    recv: Box<[RecvMeta]>,
    tx: Vec<Transmit>,
    pub latency: Latency,
    backlog: Backlog,
    /// The kernel refused sends since the last submit (io_uring): the socket is full.
    refused: bool,
    /// ICE-TCP: the listener and connections (None when `ice_tcp` is off).
    pub tcp: Option<TcpSide>,
}

impl Io {
    pub fn new(backend: Backend, pool: BufPool, recv_batch: usize, now: Instant) -> Self {
        let buffers = pool.len();
        Self {
            backend,
            pool,
            recv: vec![RecvMeta::default(); recv_batch].into_boxed_slice(),
            tx: Vec::with_capacity(TX_CAPACITY),
            latency: Latency::new(buffers, now),
            backlog: Backlog::None,
            refused: false,
            tcp: None,
        }
    }

    /// Our address on `proto` (the pair's local side, for reports).
    pub fn local_addr(&self, proto: Protocol) -> Option<SocketAddr> {
        match proto {
            Protocol::Udp => self.backend.local_addr().ok(),
            Protocol::Tcp => self.tcp.as_ref().map(TcpSide::local_addr),
        }
    }

    /// Reaps up to a batch of datagrams (and, on io_uring, the previous submit's send
    /// completions, whose buffers go back to the pool here). Errors are logged, not per packet.
    pub fn recv(&mut self, shard: usize) -> usize {
        match self.backend.recv(&mut self.pool, &mut self.recv) {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(shard, error = %e, "recv failed");
                0
            }
        }
    }

    pub fn received(&self, i: usize) -> RecvMeta {
        self.recv[i]
    }

    /// The bytes of a received datagram.
    pub fn bytes(&self, meta: &RecvMeta) -> &[u8] {
        &self.pool.get(meta.buf)[meta.offset..meta.offset + meta.len]
    }

    /// Transmits the queue can still take this iteration.
    pub fn room(&self) -> usize {
        TX_CAPACITY - self.tx.len()
    }

    pub fn backlog(&self) -> Backlog {
        self.backlog
    }

    /// Queues `buf[..len]` for `dst`. A datagram of the same destination and size as the one
    /// before it joins that one's GSO run. A frame for a TCP connection is copied into that
    /// connection's send queue (or dropped there, counted) and its buffer given back.
    pub fn push(&mut self, buf: BufId, len: usize, dst: Remote) {
        if dst.is_tcp() {
            self.push_tcp(buf, len, dst.addr, true);
            return;
        }
        let dst = dst.addr;
        let segment_size = match self.tx.last() {
            Some(l)
                if l.dst == dst
                    && l.segment_size.is_some_and(|s| usize::from(s) == l.len)
                    && len <= l.len =>
            {
                l.segment_size
            }
            _ => u16::try_from(len).ok(),
        };
        self.tx.push(Transmit {
            buf,
            offset: 0,
            len,
            dst,
            segment_size,
        });
    }

    /// Queues a control packet (STUN, DTLS, RTCP): not counted in the latency histograms.
    pub fn push_control(&mut self, buf: BufId, len: usize, dst: Remote) {
        self.latency.unmeasured(buf);
        if dst.is_tcp() {
            self.push_tcp(buf, len, dst.addr, false);
        } else {
            self.push(buf, len, dst);
        }
    }

    fn push_tcp(&mut self, buf: BufId, len: usize, peer: SocketAddr, media: bool) {
        if let Some(tcp) = self.tcp.as_mut() {
            tcp.send(
                peer,
                &self.pool.get(buf)[..len.min(crate::pool::BUF_SIZE)],
                media,
            );
        }
        self.latency.unmeasured(buf);
        self.pool.give(buf);
    }

    /// Takes back what the kernel refused since the last submit (io_uring), ahead of the rest.
    pub fn requeue(&mut self) {
        let before = self.tx.len();
        self.backend.requeue(&mut self.tx);
        self.refused = self.tx.len() > before;
    }

    /// Hands the queue to the kernel: one clock read, one backend submit. What went is stamped
    /// "handed to the kernel" for the latency histograms; a hard send error drops the batch
    /// (logged once per iteration: the socket is broken, it is not per packet).
    pub fn submit(&mut self, shard: usize, counters: &mut ShardCounters) {
        if let Some(tcp) = self.tcp.as_mut() {
            tcp.flush();
        }
        if self.tx.is_empty() {
            self.backlog = Backlog::None;
            return;
        }
        #[allow(clippy::disallowed_methods)]
        let at = Instant::now();
        let (consumed, sent) = match self.backend.submit(&mut self.pool, &self.tx) {
            Ok(o) => (o.consumed.min(self.tx.len()), o.sent),
            Err(e) => {
                tracing::warn!(shard, error = %e, "send failed");
                for t in &self.tx {
                    self.pool.give(t.buf);
                }
                (self.tx.len(), 0)
            }
        };
        counters.tx_packets += sent as u64;
        for t in &self.tx[..consumed] {
            counters.tx_bytes += t.len as u64;
            self.latency.handed(t.buf, at);
        }
        counters.send_retry += (self.tx.len() - consumed) as u64;
        self.tx.drain(..consumed);
        self.backlog = if self.tx.is_empty() {
            Backlog::None
        } else if self.backend.mode() == IoMode::Uring && !self.refused {
            // The ring's message sets are full or in flight; their completions free them.
            Backlog::Busy
        } else {
            Backlog::Full
        };
    }

    /// Gives back the buffers of everything still queued (shutdown).
    pub fn discard(&mut self) {
        for t in self.tx.drain(..) {
            self.pool.give(t.buf);
        }
    }
}
