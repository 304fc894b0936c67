//! The io_uring backend (`io_uring(7)`, Linux ≥ 6.0).
//!
//! Receive: ONE multishot `IORING_OP_RECVMSG` (`RecvMsgMulti`) selects buffers from a
//! provided-buffer ring (`IORING_REGISTER_PBUF_RING`) whose entries are lent pool buffers. Each
//! completion names the buffer the kernel filled with an `io_uring_recvmsg_out` header, the
//! source address (`ADDR_LEN` bytes), control messages (`RX_CTRL_LEN` bytes), then the payload
//! at the fixed offset [`URING_PAYLOAD_OFFSET`]. The request is re-armed when a completion lacks
//! `IORING_CQE_F_MORE` (the ring ran dry, or the kernel ended it).
//!
//! Send ([`UringIo::submit`], in `send`): one `IORING_OP_SENDMSG` per message (a GSO run of one
//! destination's equal-size packets is one message) from one of two [`TxSlots`](super::tx::TxSlots)
//! sets; the SQEs go in with the worker's next `io_uring_enter`, which is also its wait, so one
//! iteration enters the kernel once. `MSG_DONTWAIT` makes each send complete inline (UDP copies the
//! payload into an skb, or fails with EAGAIN instead of being parked on a full socket buffer).
//! Completions are reaped by the next `recv`, with the receive completions: only then does each
//! buffer go back to the pool (monoio's "rent": the ring owns a buffer while its op is in flight).
//! A message refused with EAGAIN keeps its transmits, which the caller takes back with
//! [`UringIo::requeue`] and sends again first; a writable poll (`POLLOUT`, one-shot) then ends the
//! wait. Sends are not linked: a link under DEFER_TASKRUN runs each follower as deferred task work,
//! so a refused message may be sent again after later ones (a reorder, counted in `tx_retry`),
//! never lost.
//!
//! Wait: `io_uring_enter` with GETEVENTS and an `EXT_ARG` timeout; a multishot poll on the
//! waker's eventfd makes a wake-up a completion too. The ring is set up SINGLE_ISSUER +
//! DEFER_TASKRUN + TASKRUN_FLAG when the kernel has them (6.1+): receive work then runs only
//! when we enter the kernel, in batches, and `IORING_SQ_TASKRUN` tells `recv` when to.

mod send;

use std::io;
use std::os::fd::AsRawFd;
use std::ptr;
use std::time::Duration;

use io_uring::types::{Fd, RecvMsgOut, SubmitArgs, Timespec};
use io_uring::{cqueue, opcode, IoUring};
use socket2::Socket;

use super::buf_ring::{build_ring, BufRing};
use super::net::{decode_addr, parse_cmsgs, ADDR_LEN, RX_CTRL_LEN};
use super::socket::{open_udp, Opened};
use super::waker::{WakeFd, Waker};
use super::{IoStats, RecvMeta, SocketConfig, Transmit};
use crate::pool::{BufId, BufPool, BUF_SIZE};
use send::SendSet;

/// Where the payload starts in a buffer filled by the multishot recvmsg:
/// `sizeof(io_uring_recvmsg_out)` + name field + control field.
pub const URING_PAYLOAD_OFFSET: usize = 16 + ADDR_LEN + RX_CTRL_LEN;

const UD_RECV: u64 = 1;
const UD_WAKE: u64 = 2;
const UD_CANCEL: u64 = 3;
const UD_WRITABLE: u64 = 4;
/// The watched descriptor ([`UringIo::watch`]: the worker's TCP epoll) became readable.
const UD_EXTRA: u64 = 5;
/// Send completions: `UD_SEND | set << 16 | message`.
const UD_SEND: u64 = 1 << 32;

/// Messages one submit may hold (one set of [`TxSlots`](super::tx::TxSlots)); two sets
/// alternate, so the worker can submit while the previous submit's completions wait to be
/// reaped.
pub(crate) const URING_TX_MSGS: usize = 1024;
/// Buffers the messages of one set may gather (GSO runs read several).
const URING_TX_IOVS: usize = 2048;

/// Longest wait while the receive is disarmed for want of pool buffers.
const DRY_WAIT: Duration = Duration::from_millis(1);
/// Buffer group id of our provided-buffer ring (one ring per io_uring instance).
const BGID: u16 = 0;
/// SQ size: a full set of send messages plus the receive, waker, writable and cancel requests.
pub(super) const SQ_ENTRIES: u32 = (URING_TX_MSGS as u32 + 8).next_power_of_two();
/// Completions pulled from the CQ per batch while reaping (stack array).
const REAP_BATCH: usize = 64;

/// The parts of a completion we keep.
#[derive(Debug, Clone, Copy, Default)]
struct Cqe {
    ud: u64,
    res: i32,
    flags: u32,
}

impl From<&cqueue::Entry> for Cqe {
    fn from(e: &cqueue::Entry) -> Self {
        Self {
            ud: e.user_data(),
            res: e.result(),
            flags: e.flags(),
        }
    }
}

/// io_uring backend.
pub struct UringIo {
    // Field order is drop order: the ring closes before the buffer-ring memory is released.
    ring: IoUring,
    br: BufRing,
    sock: Socket,
    v6: bool,
    gso: bool,
    wake: WakeFd,
    wake_armed: bool,
    /// A descriptor whose readability ends the wait too ([`UringIo::watch`]), and whether its
    /// multishot poll is live.
    extra: Option<std::os::fd::RawFd>,
    extra_armed: bool,
    /// A one-shot POLLOUT on the socket is pending (armed by `wait` with `writable`).
    out_armed: bool,
    /// The template the multishot recvmsg reads `msg_namelen`/`msg_controllen` from; boxed so
    /// its address is stable while the request is live.
    recv_hdr: Box<libc::msghdr>,
    recv_armed: bool,
    shut: bool,
    /// Two message sets: one may wait for its completions while the next submit fills the other.
    sends: [SendSet; 2],
    /// Transmits whose message the kernel refused (send buffer full, or GSO refused), oldest
    /// first, until the caller takes them back ([`UringIo::requeue`]).
    refused: Vec<Transmit>,
    /// A refusal asked for a writable poll.
    want_out: bool,
    stats: IoStats,
}

impl std::fmt::Debug for UringIo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UringIo")
            .field("sock", &self.sock)
            .field("posted", &self.br.posted)
            .field(
                "in_flight",
                &(self.sends[0].pending + self.sends[1].pending),
            )
            .field("gso", &self.gso)
            .field("stats", &self.stats)
            .finish()
    }
}

impl UringIo {
    pub fn open(cfg: &SocketConfig, recv_depth: usize) -> io::Result<Self> {
        let Opened { sock, v6, gso, .. } = open_udp(cfg)?;
        let br = BufRing::new(recv_depth);
        let cq = (br.entries * 2 + 2 * URING_TX_MSGS).next_power_of_two() as u32;
        let ring = build_ring(cq)?;
        if !ring.params().is_feature_ext_arg() {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "io_uring without EXT_ARG",
            ));
        }
        // SAFETY: `br` owns `entries` page-aligned RawBufs that stay allocated until after the
        // ring is closed (field order in UringIo; the kernel also pins the pages).
        unsafe {
            ring.submitter().register_buf_ring_with_flags(
                br.base.as_ptr() as u64,
                br.entries as u16,
                BGID,
                0,
            )?
        };
        // SAFETY: all-zero msghdr is valid; the multishot recvmsg only uses the two lengths.
        let mut hdr: libc::msghdr = unsafe { std::mem::zeroed() };
        hdr.msg_namelen = ADDR_LEN as libc::socklen_t;
        hdr.msg_controllen = RX_CTRL_LEN as _;
        Ok(Self {
            ring,
            br,
            sock,
            v6,
            gso,
            wake: WakeFd::new()?,
            wake_armed: false,
            extra: None,
            extra_armed: false,
            out_armed: false,
            recv_hdr: Box::new(hdr),
            recv_armed: false,
            shut: false,
            sends: [SendSet::new(), SendSet::new()],
            refused: Vec::with_capacity(2 * URING_TX_IOVS),
            want_out: false,
            stats: IoStats::default(),
        })
    }

    pub fn socket(&self) -> &Socket {
        &self.sock
    }

    pub fn stats(&self) -> &IoStats {
        &self.stats
    }

    pub fn gso(&self) -> bool {
        self.gso
    }

    pub fn waker(&self) -> Waker {
        self.wake.waker()
    }

    /// Ends the wait when `fd` becomes readable too (a multishot poll, re-armed as needed). The
    /// caller keeps `fd` open while the backend lives (the kernel holds its own reference to the
    /// file while the poll is in flight, so an early close is not unsound, only deaf).
    pub fn watch(&mut self, fd: std::os::fd::RawFd) {
        self.extra = Some(fd);
        self.extra_armed = false;
    }

    fn arm_extra(&mut self) -> io::Result<()> {
        if let (Some(fd), false) = (self.extra, self.extra_armed) {
            let sqe = opcode::PollAdd::new(Fd(fd), libc::POLLIN as u32)
                .multi(true)
                .build()
                .user_data(UD_EXTRA);
            self.push_sqe(&sqe)?;
            self.extra_armed = true;
        }
        Ok(())
    }

    pub fn recv(&mut self, pool: &mut BufPool, out: &mut [RecvMeta]) -> io::Result<usize> {
        if self.shut {
            return Ok(0);
        }
        self.arm(pool)?;
        let mut filled = 0;
        // Run deferred receive work only when the kernel says there is some (TASKRUN flag), so
        // an idle poll costs no syscall.
        let pending = {
            let sq = self.ring.submission();
            !sq.is_empty() || sq.taskrun()
        };
        if pending && filled < out.len() {
            self.enter_nowait()?;
        }
        let mut batch: [std::mem::MaybeUninit<cqueue::Entry>; REAP_BATCH] =
            [const { std::mem::MaybeUninit::uninit() }; REAP_BATCH];
        while filled < out.len() {
            let room = (out.len() - filled).min(REAP_BATCH);
            let n = {
                let mut cq = self.ring.completion();
                let got = cq.fill(&mut batch[..room]);
                got.len()
            };
            if n == 0 {
                break;
            }
            for slot in &batch[..n] {
                // SAFETY: `fill` initialised the first `n` slots.
                let e = Cqe::from(unsafe { slot.assume_init_ref() });
                filled += self.on_cqe(e, pool, &mut out[filled..]);
            }
        }
        // Keep receiving while the worker processes this batch.
        self.arm(pool)?;
        self.stats.rx_datagrams += filled as u64;
        Ok(filled)
    }

    /// Tops up the buffer ring from the pool and (re-)arms the multishot recvmsg and the waker
    /// poll. The SQEs go in with the next enter.
    fn arm(&mut self, pool: &mut BufPool) -> io::Result<()> {
        let before = self.br.posted;
        while self.br.posted < self.br.depth {
            let Some((id, addr)) = pool.lend() else {
                self.stats.rx_pool_empty += 1;
                break;
            };
            self.br.push(id, addr);
        }
        if self.br.posted != before {
            self.br.publish();
        }
        if !self.recv_armed && self.br.posted > 0 {
            let sqe = opcode::RecvMsgMulti::new(
                Fd(self.sock.as_raw_fd()),
                ptr::addr_of!(*self.recv_hdr),
                BGID,
            )
            .build()
            .user_data(UD_RECV);
            self.push_sqe(&sqe)?;
            self.recv_armed = true;
            self.stats.rx_rearms += 1;
        }
        if !self.wake_armed {
            let sqe = opcode::PollAdd::new(Fd(self.wake.raw()), libc::POLLIN as u32)
                .multi(true)
                .build()
                .user_data(UD_WAKE);
            self.push_sqe(&sqe)?;
            self.wake_armed = true;
        }
        self.arm_extra()
    }

    fn push_sqe(&mut self, sqe: &io_uring::squeue::Entry) -> io::Result<()> {
        for _ in 0..2 {
            // SAFETY: every SQE we build points only at memory owned by `self` that outlives the
            // request: `recv_hdr` (boxed, lives until the ring closes), the eventfd (owned by
            // `self.wake`), the socket, and a send set's slots and the pool buffers they point at
            // (the set is not refilled, and its buffers not released, until every one of its
            // completions was reaped in `on_send`).
            if unsafe { self.ring.submission().push(sqe) }.is_ok() {
                return Ok(());
            }
            self.ring.submit()?;
        }
        Err(io::Error::other("io_uring submission queue stays full"))
    }

    fn enter_nowait(&mut self) -> io::Result<()> {
        match self.ring.submit() {
            Ok(_) => Ok(()),
            Err(e) if matches!(e.raw_os_error(), Some(libc::EINTR | libc::EBUSY)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Handles one completion; returns 1 if it produced a datagram in `out[0]`.
    fn on_cqe(&mut self, e: Cqe, pool: &mut BufPool, out: &mut [RecvMeta]) -> usize {
        if e.ud & UD_SEND != 0 {
            self.on_send(e, pool);
            return 0;
        }
        match e.ud {
            UD_RECV => self.on_recv(e.res, e.flags, pool, out),
            UD_WAKE => {
                self.wake.drain();
                if !cqueue::more(e.flags) {
                    self.wake_armed = false;
                }
                0
            }
            UD_WRITABLE => {
                self.out_armed = false;
                0
            }
            UD_EXTRA => {
                if !cqueue::more(e.flags) {
                    self.extra_armed = false;
                }
                0
            }
            // Cancel results: nothing to do.
            _ => 0,
        }
    }

    fn on_recv(&mut self, res: i32, flags: u32, pool: &mut BufPool, out: &mut [RecvMeta]) -> usize {
        if !cqueue::more(flags) {
            self.recv_armed = false;
        }
        let Some(bid) = cqueue::buffer_select(flags) else {
            if res == -libc::ENOBUFS {
                self.stats.rx_pool_empty += 1;
            } else if res < 0 && res != -libc::ECANCELED {
                self.stats.rx_errors += 1;
            }
            return 0;
        };
        let id = BufId(bid);
        self.br.posted -= 1;
        // SAFETY: this completion hands buffer `bid` back: the kernel took it off the ring and
        // has finished writing it.
        unsafe { pool.slab_mut().reclaim(id.index()) };
        let Ok(len) = usize::try_from(res) else {
            self.stats.rx_errors += 1;
            pool.give(id);
            return 0;
        };
        let meta = {
            let buf = &pool.get(id)[..len.min(BUF_SIZE)];
            match RecvMsgOut::parse(buf, &self.recv_hdr) {
                Err(()) => Err(false),
                Ok(m) if m.is_payload_truncated() || m.flags() & libc::MSG_TRUNC as u32 != 0 => {
                    Err(true)
                }
                Ok(m) => match decode_addr(m.name_data()) {
                    None => Err(false),
                    Some(src) => {
                        let info = parse_cmsgs(m.control_data());
                        Ok((src, info, m.payload_data().len()))
                    }
                },
            }
        };
        match meta {
            Ok((src, info, plen)) => {
                if let Some(d) = info.rxq_drops {
                    self.stats.rx_queue_drops = d;
                }
                out[0] = RecvMeta {
                    buf: id,
                    offset: URING_PAYLOAD_OFFSET,
                    len: plen,
                    src,
                    dst: info.dst,
                    segment: info.segment,
                    proto: rtp_core::net::Protocol::Udp,
                    stamp: info.stamp,
                };
                1
            }
            Err(truncated) => {
                if truncated {
                    self.stats.rx_truncated += 1;
                } else {
                    self.stats.rx_errors += 1;
                }
                pool.give(id);
                0
            }
        }
    }

    /// Submits what [`UringIo::submit`] queued and sleeps until a completion, a wake-up or the
    /// timeout (`Some(ZERO)`: no sleep) — one `io_uring_enter`.
    pub fn wait(&mut self, timeout: Option<Duration>, writable: bool) -> io::Result<()> {
        let writable = writable || std::mem::take(&mut self.want_out);
        if writable && !self.out_armed {
            let sqe = opcode::PollAdd::new(Fd(self.sock.as_raw_fd()), libc::POLLOUT as u32)
                .build()
                .user_data(UD_WRITABLE);
            self.push_sqe(&sqe)?;
            self.out_armed = true;
        }
        if timeout == Some(Duration::ZERO) || !self.ring.completion().is_empty() {
            return self.enter_nowait();
        }
        // No buffers were free to post, so nothing is receiving: datagrams wait in the socket
        // and no completion would end this wait. Come back soon to post what the pool regained.
        let timeout = if self.recv_armed {
            timeout
        } else {
            Some(timeout.map_or(DRY_WAIT, |t| t.min(DRY_WAIT)))
        };
        if !self.wake_armed {
            let sqe = opcode::PollAdd::new(Fd(self.wake.raw()), libc::POLLIN as u32)
                .multi(true)
                .build()
                .user_data(UD_WAKE);
            self.push_sqe(&sqe)?;
            self.wake_armed = true;
        }
        self.arm_extra()?;
        self.wait_cqe(timeout)
    }

    fn wait_cqe(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        let r = match timeout {
            Some(t) => {
                let ts = Timespec::from(t);
                let args = SubmitArgs::new().timespec(&ts);
                self.ring.submitter().submit_with_args(1, &args)
            }
            None => self.ring.submit_and_wait(1),
        };
        match r {
            Ok(_) => Ok(()),
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ETIME | libc::EINTR | libc::EBUSY)
                ) =>
            {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Cancels the multishot recvmsg, unregisters the buffer ring and gives every buffer it
    /// held back to `pool`. Receiving stops for good.
    pub fn shutdown(&mut self, pool: &mut BufPool) -> io::Result<()> {
        if self.shut {
            return Ok(());
        }
        if self.recv_armed {
            let sqe = opcode::AsyncCancel::new(UD_RECV)
                .build()
                .user_data(UD_CANCEL);
            self.push_sqe(&sqe)?;
            let mut sink = [RecvMeta::default(); 1];
            // Bounded: 100 × 10 ms for the final recvmsg completion.
            for _ in 0..100 {
                if !self.recv_armed {
                    break;
                }
                self.wait_cqe(Some(Duration::from_millis(10)))?;
                loop {
                    let e = self.ring.completion().next();
                    let Some(e) = e else { break };
                    if self.on_cqe(Cqe::from(&e), pool, &mut sink) == 1 {
                        pool.give(sink[0].buf);
                    }
                }
            }
        }
        // Transmits the kernel refused are ours again: give their buffers back.
        for t in self.refused.drain(..) {
            pool.give(t.buf);
        }
        self.ring.submitter().unregister_buf_ring(BGID)?;
        // The ring is gone from the kernel: whatever it still held was never handed out.
        let start = self.br.tail.wrapping_sub(self.br.posted as u16);
        for k in 0..self.br.posted {
            let idx = usize::from(start.wrapping_add(k as u16)) & self.br.mask();
            let id = BufId(self.br.ids[idx]);
            // SAFETY: the buffer ring was unregistered above, so the kernel can no longer select
            // (and write) this buffer; the multishot request that could was cancelled.
            unsafe { pool.slab_mut().reclaim(id.index()) };
            pool.give(id);
        }
        self.br.posted = 0;
        self.shut = true;
        self.recv_armed = false;
        Ok(())
    }
}
