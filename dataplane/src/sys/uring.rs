//! The io_uring backend (`io_uring(7)`, Linux ≥ 6.0).
//!
//! Receive: ONE multishot `IORING_OP_RECVMSG` (`RecvMsgMulti`) selects buffers from a
//! provided-buffer ring (`IORING_REGISTER_PBUF_RING`) whose entries are lent pool buffers. Each
//! completion names the buffer the kernel filled with an `io_uring_recvmsg_out` header, the
//! source address (`ADDR_LEN` bytes), control messages (`RX_CTRL_LEN` bytes), then the payload
//! at the fixed offset [`URING_PAYLOAD_OFFSET`]. The request is re-armed when a completion lacks
//! `IORING_CQE_F_MORE` (the ring ran dry, or the kernel ended it).
//!
//! Send: one `IORING_OP_SENDMSG` per message from the shared [`TxSlots`], all submitted with one
//! `io_uring_enter`. `MSG_DONTWAIT` makes each send complete inline (UDP copies the payload into
//! an skb, or fails with EAGAIN instead of being parked on a full socket buffer), so `send`
//! reaps its completions before returning and the buffers are free again on return.
//! `try_send` links the batch's SQEs (`IOSQE_IO_LINK`): a send refused with EAGAIN cancels the
//! ones after it, so "sent up to here, nothing after" holds and the caller can keep the rest
//! for a retry instead of losing it; a writable poll (`POLLOUT`, one-shot) then ends the wait.
//!
//! Wait: `io_uring_enter` with GETEVENTS and an `EXT_ARG` timeout; a multishot poll on the
//! waker's eventfd makes a wake-up a completion too. The ring is set up SINGLE_ISSUER +
//! DEFER_TASKRUN + TASKRUN_FLAG when the kernel has them (6.1+): receive work then runs only
//! when we enter the kernel, in batches, and `IORING_SQ_TASKRUN` tells `recv` when to.

use std::alloc::{self, Layout};
use std::io;
use std::os::fd::AsRawFd;
use std::ptr::{self, NonNull};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use io_uring::types::{Fd, RecvMsgOut, SubmitArgs, Timespec};
use io_uring::{cqueue, opcode, squeue, IoUring};
use socket2::Socket;

use super::net::{decode_addr, parse_cmsgs, ADDR_LEN, RX_CTRL_LEN};
use super::plain::{segments, send_segmented};
use super::socket::{open_udp, Opened};
use super::tx::{TxCursor, TxSlots, TX_SLOTS};
use super::waker::{WakeFd, Waker};
use super::{IoStats, RecvMeta, SendOutcome, SocketConfig, Transmit};
use crate::pool::{BufId, BufPool, BUF_SIZE};

/// Where the payload starts in a buffer filled by the multishot recvmsg:
/// `sizeof(io_uring_recvmsg_out)` + name field + control field.
pub const URING_PAYLOAD_OFFSET: usize = 16 + ADDR_LEN + RX_CTRL_LEN;

const UD_RECV: u64 = 1;
const UD_WAKE: u64 = 2;
const UD_CANCEL: u64 = 3;
const UD_WRITABLE: u64 = 4;
const UD_SEND: u64 = 1 << 32;

/// Longest wait while the receive is disarmed for want of pool buffers.
const DRY_WAIT: Duration = Duration::from_millis(1);
/// Buffer group id of our provided-buffer ring (one ring per io_uring instance).
const BGID: u16 = 0;
/// Kernel limit on provided-buffer ring entries.
const MAX_RING_ENTRIES: usize = 32_768;
/// SQ size: a full tx flush plus the receive, waker and cancel requests.
const SQ_ENTRIES: u32 = (TX_SLOTS as u32 + 8).next_power_of_two();
/// Completions pulled from the CQ per batch while reaping (stack array).
const REAP_BATCH: usize = 64;

/// How a linked flush ended.
#[derive(Debug, Clone, Copy)]
enum FlushEnd {
    Done,
    /// Message `j` found the send buffer full; it and every later one were not sent.
    Full(usize),
    /// Message `j` failed for another reason (counted); the later ones were cancelled.
    Broken(usize),
}

/// The parts of a completion we keep (a copy, so it can wait in the stash).
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

/// `struct io_uring_buf`; entry 0's `resv` is the ring's tail, which the kernel reads.
#[repr(C)]
struct RawBuf {
    addr: u64,
    len: u32,
    bid: u16,
    resv: u16,
}

/// The provided-buffer ring: page-aligned memory shared with the kernel, plus our mirror of
/// which buffer sits in which entry (the kernel consumes entries in order from its head).
struct BufRing {
    base: NonNull<RawBuf>,
    entries: usize,
    layout: Layout,
    /// Our tail (entries published so far, wrapping).
    tail: u16,
    /// Entries published and not yet returned by a completion.
    posted: usize,
    /// How many to keep posted.
    depth: usize,
    ids: Box<[u16]>,
}

impl BufRing {
    fn new(depth: usize) -> Self {
        let depth = depth.clamp(1, MAX_RING_ENTRIES);
        let entries = depth.next_power_of_two();
        let layout = Layout::from_size_align(entries * std::mem::size_of::<RawBuf>(), 4096)
            .expect("ring layout is valid");
        // SAFETY: non-zero size (entries >= 1).
        let raw = unsafe { alloc::alloc_zeroed(layout) };
        let Some(base) = NonNull::new(raw.cast::<RawBuf>()) else {
            alloc::handle_alloc_error(layout)
        };
        Self {
            base,
            entries,
            layout,
            tail: 0,
            posted: 0,
            depth,
            ids: vec![0; entries].into_boxed_slice(),
        }
    }

    fn mask(&self) -> usize {
        self.entries - 1
    }

    /// Writes entry `tail` (not yet visible to the kernel); `publish` makes it visible.
    fn push(&mut self, id: BufId, addr: *mut u8) {
        let idx = usize::from(self.tail) & self.mask();
        let e = self.base.as_ptr().wrapping_add(idx);
        // SAFETY: `idx` < entries, so `e` is inside our allocation. The kernel only reads entries
        // between its head and the published tail; `posted < entries` means this slot is outside
        // that window. We write the three fields by raw pointer and never `resv`, which for entry
        // 0 is the tail the kernel may be reading.
        unsafe {
            ptr::addr_of_mut!((*e).addr).write(addr as u64);
            ptr::addr_of_mut!((*e).len).write(BUF_SIZE as u32);
            ptr::addr_of_mut!((*e).bid).write(id.0);
        }
        self.ids[idx] = id.0;
        self.tail = self.tail.wrapping_add(1);
        self.posted += 1;
    }

    fn publish(&self) {
        // SAFETY: entry 0 is inside our allocation; this only computes the field's address.
        let tail = unsafe { ptr::addr_of_mut!((*self.base.as_ptr()).resv) };
        // SAFETY: `tail` is entry 0's `resv` field, inside our allocation, 2-aligned (the ring is
        // page-aligned), and shared with the kernel only through atomic accesses; Release orders
        // the entry writes above before it, as io_uring requires.
        unsafe { AtomicU16::from_ptr(tail) }.store(self.tail, Ordering::Release);
    }
}

impl Drop for BufRing {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout. The kernel pinned these pages when the
        // ring was registered and keeps its own reference until the io_uring instance goes
        // away, so freeing our mapping cannot make it write freed memory.
        unsafe { alloc::dealloc(self.base.as_ptr().cast(), self.layout) }
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
    /// A one-shot POLLOUT on the socket is pending (armed by `wait` with `writable`).
    out_armed: bool,
    /// The template the multishot recvmsg reads `msg_namelen`/`msg_controllen` from; boxed so
    /// its address is stable while the request is live.
    recv_hdr: Box<libc::msghdr>,
    recv_armed: bool,
    shut: bool,
    tx: Box<TxSlots>,
    /// Receive completions reaped by `send` (which cannot hand buffers out), for `recv`.
    stash: Box<[Cqe]>,
    stash_len: usize,
    stash_head: usize,
    stats: IoStats,
}

impl std::fmt::Debug for UringIo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UringIo")
            .field("sock", &self.sock)
            .field("posted", &self.br.posted)
            .field("gso", &self.gso)
            .field("stats", &self.stats)
            .finish()
    }
}

impl UringIo {
    pub fn open(cfg: &SocketConfig, recv_depth: usize) -> io::Result<Self> {
        let Opened { sock, v6, gso, .. } = open_udp(cfg)?;
        let br = BufRing::new(recv_depth);
        let cq = (br.entries * 2 + 2 * TX_SLOTS).next_power_of_two() as u32;
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
        let stash_cap = br.entries + 16;
        Ok(Self {
            ring,
            br,
            sock,
            v6,
            gso,
            wake: WakeFd::new()?,
            wake_armed: false,
            out_armed: false,
            recv_hdr: Box::new(hdr),
            recv_armed: false,
            shut: false,
            tx: TxSlots::new(),
            stash: vec![Cqe::default(); stash_cap].into_boxed_slice(),
            stash_len: 0,
            stash_head: 0,
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

    pub fn recv(&mut self, pool: &mut BufPool, out: &mut [RecvMeta]) -> io::Result<usize> {
        if self.shut {
            return Ok(0);
        }
        self.arm(pool)?;
        let mut filled = 0;
        // Completions `send` set aside come first: they are older.
        while filled < out.len() && self.stash_len > 0 {
            let e = self.stash[self.stash_head];
            self.stash_head = (self.stash_head + 1) % self.stash.len();
            self.stash_len -= 1;
            filled += self.on_cqe(e, pool, &mut out[filled..]);
        }
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
        Ok(())
    }

    fn push_sqe(&mut self, sqe: &io_uring::squeue::Entry) -> io::Result<()> {
        for _ in 0..2 {
            // SAFETY: every SQE we build points only at memory owned by `self` that outlives the
            // request: `recv_hdr` (boxed, lives until the ring closes), the eventfd (owned by
            // `self.wake`), the socket, and the tx slots (held until the send CQEs are reaped in
            // `flush`).
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
            // Cancel results, late send completions: nothing to do.
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

    pub fn send(&mut self, pool: &BufPool, batch: &[Transmit]) -> io::Result<usize> {
        Ok(self.send_batch(pool, batch, false)?.sent)
    }

    /// [`Backend::try_send`](super::Backend::try_send).
    pub fn try_send(&mut self, pool: &BufPool, batch: &[Transmit]) -> io::Result<SendOutcome> {
        self.send_batch(pool, batch, true)
    }

    fn send_batch(
        &mut self,
        pool: &BufPool,
        batch: &[Transmit],
        stop_when_full: bool,
    ) -> io::Result<SendOutcome> {
        let mut cur = TxCursor::default();
        let mut sent = 0usize;
        // Each round consumes at least one transmit, so the batch length bounds the loop.
        for _ in 0..=batch.len() {
            if cur.tx >= batch.len() {
                break;
            }
            self.tx
                .fill(pool, batch, &mut cur, self.gso, self.v6, &mut self.stats);
            let (n, end) = self.flush(stop_when_full)?;
            sent += n;
            match end {
                FlushEnd::Done => {}
                FlushEnd::Full(j) => {
                    return Ok(SendOutcome {
                        sent,
                        consumed: self.tx.resume[j] as usize,
                    })
                }
                // The link was cut by an error at `j` (counted): go on after it.
                FlushEnd::Broken(j) => {
                    if j + 1 < self.tx.len {
                        cur = TxCursor {
                            tx: self.tx.resume[j + 1] as usize,
                            off: 0,
                        };
                    }
                }
            }
        }
        Ok(SendOutcome {
            sent,
            consumed: batch.len(),
        })
    }

    /// Submits the filled tx slots as SENDMSG SQEs with one enter and reaps their completions.
    /// With `linked`, the SQEs form one chain and the first failure ends it (the rest complete
    /// with ECANCELED); the result then says where.
    fn flush(&mut self, linked: bool) -> io::Result<(usize, FlushEnd)> {
        let n = self.tx.len;
        if n == 0 {
            return Ok((0, FlushEnd::Done));
        }
        let fd = Fd(self.sock.as_raw_fd());
        for j in 0..n {
            let flags = if linked && j + 1 < n {
                squeue::Flags::IO_LINK
            } else {
                squeue::Flags::empty()
            };
            let sqe = opcode::SendMsg::new(fd, ptr::addr_of!(self.tx.hdrs[j].msg_hdr))
                .flags(libc::MSG_DONTWAIT as u32)
                .build()
                .flags(flags)
                .user_data(UD_SEND | j as u64);
            self.push_sqe(&sqe)?;
        }
        self.enter_nowait()?;
        let mut seen = 0usize;
        let mut sent = 0usize;
        let mut full: Option<usize> = None;
        let mut broken: Option<usize> = None;
        // MSG_DONTWAIT sends complete inline, so normally all CQEs are there after the enter;
        // the bounded waits only cover an interrupted enter.
        for _ in 0..100 {
            loop {
                let e = {
                    let mut cq = self.ring.completion();
                    cq.next()
                };
                let Some(e) = e else { break };
                let ud = e.user_data();
                if ud & UD_SEND == 0 {
                    self.stash_cqe(Cqe::from(&e));
                    continue;
                }
                let j = (ud & 0xffff) as usize;
                seen += 1;
                let res = e.result();
                if res >= 0 {
                    sent += usize::from(self.tx.done[j]);
                    self.stats.tx_datagrams += segments(&self.tx, j);
                } else if linked && res == -libc::ECANCELED {
                    // After the link's failure: not sent, resumed by the caller.
                } else if res == -libc::EAGAIN && linked {
                    full = Some(full.map_or(j, |f| f.min(j)));
                } else if res == -libc::EAGAIN {
                    self.stats.tx_would_block += segments(&self.tx, j);
                } else if res == -libc::EIO && self.tx.seg[j] != 0 {
                    // GSO refused by the device: off for this socket, resend split (quinn-udp
                    // documents the same fallback).
                    self.gso = false;
                    self.stats.gso_disabled = true;
                    if send_segmented(&self.sock, &self.tx, j, &mut self.stats) {
                        sent += usize::from(self.tx.done[j]);
                    }
                    broken = Some(broken.map_or(j, |b| b.min(j)));
                } else {
                    self.stats.tx_errors += 1;
                    broken = Some(broken.map_or(j, |b| b.min(j)));
                }
            }
            if seen >= n {
                let end = match (full, broken) {
                    (Some(f), Some(b)) if b < f => FlushEnd::Broken(b),
                    (Some(f), _) => {
                        self.stats.tx_retry += (n - f) as u64;
                        FlushEnd::Full(f)
                    }
                    (None, Some(b)) if linked => FlushEnd::Broken(b),
                    _ => FlushEnd::Done,
                };
                return Ok((sent, end));
            }
            self.wait_cqe(Some(Duration::from_millis(10)))?;
        }
        self.stats.tx_errors += (n - seen) as u64;
        Ok((sent, FlushEnd::Done))
    }

    fn stash_cqe(&mut self, e: Cqe) {
        if e.ud == UD_WRITABLE {
            self.out_armed = false;
            return;
        }
        if e.ud == UD_WAKE {
            // Needs no pool: handle here so wake-ups never fill the stash.
            self.wake.drain();
            if !cqueue::more(e.flags) {
                self.wake_armed = false;
            }
            return;
        }
        if self.stash_len == self.stash.len() {
            // Cannot happen: at most one completion per posted buffer plus one terminal
            // completion per arming can be pending, and the stash holds more than that.
            self.stats.rx_errors += 1;
            return;
        }
        let at = (self.stash_head + self.stash_len) % self.stash.len();
        self.stash[at] = e;
        self.stash_len += 1;
    }

    pub fn wait(&mut self, timeout: Option<Duration>, writable: bool) -> io::Result<()> {
        if writable && !self.out_armed {
            let sqe = opcode::PollAdd::new(Fd(self.sock.as_raw_fd()), libc::POLLOUT as u32)
                .build()
                .user_data(UD_WRITABLE);
            self.push_sqe(&sqe)?;
            self.out_armed = true;
        }
        if self.stash_len > 0 || !self.ring.completion().is_empty() {
            return Ok(());
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
                while self.stash_len > 0 || !self.ring.completion().is_empty() {
                    let e = if self.stash_len > 0 {
                        let e = self.stash[self.stash_head];
                        self.stash_head = (self.stash_head + 1) % self.stash.len();
                        self.stash_len -= 1;
                        e
                    } else {
                        let e = self.ring.completion().next();
                        let Some(e) = e else { break };
                        Cqe::from(&e)
                    };
                    if self.on_cqe(e, pool, &mut sink) == 1 {
                        pool.give(sink[0].buf);
                    }
                }
            }
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

/// Builds a ring with the best task-run mode the kernel accepts.
fn build_ring(cq: u32) -> io::Result<IoUring> {
    let best = IoUring::builder()
        .setup_single_issuer()
        .setup_defer_taskrun()
        .setup_taskrun_flag()
        .setup_cqsize(cq)
        .build(SQ_ENTRIES);
    if let Ok(r) = best {
        return Ok(r);
    }
    let coop = IoUring::builder()
        .setup_coop_taskrun()
        .setup_taskrun_flag()
        .setup_cqsize(cq)
        .build(SQ_ENTRIES);
    if let Ok(r) = coop {
        return Ok(r);
    }
    IoUring::builder().setup_cqsize(cq).build(SQ_ENTRIES)
}
