//! The plain-socket backend: `recvmmsg(2)` into pool buffers, `sendmmsg(2)` from them, and
//! `poll(2)` on the socket plus the waker's eventfd to sleep. Works on any Linux; used when
//! io_uring is missing or disabled (`SLUICE_IO=socket`).

use std::io;
use std::os::fd::AsRawFd;
use std::ptr;
use std::time::Duration;

use socket2::Socket;

use super::net::{decode_addr, parse_cmsgs, AddrBuf, CtrlBuf, ADDR_LEN, RX_CTRL_LEN_STAMPED};
use super::socket::{open_udp, Opened};
use super::tx::{TxCursor, TxSlots, TX_IOVS, TX_SLOTS};
use super::waker::{WakeFd, Waker};
use super::{IoStats, RecvMeta, SendOutcome, SocketConfig, Transmit};
use crate::pool::{BufId, BufPool, BUF_SIZE};

/// Datagrams per `recvmmsg`.
const RX_BATCH: usize = 64;

/// Receive slots: the `mmsghdr`s point at the iovecs, names and control areas next to them.
/// Boxed so those pointers stay valid when the backend moves.
struct RxSlots {
    hdrs: [libc::mmsghdr; RX_BATCH],
    iovs: [libc::iovec; RX_BATCH],
    names: [AddrBuf; RX_BATCH],
    ctrl: [CtrlBuf<RX_CTRL_LEN_STAMPED>; RX_BATCH],
    ids: [BufId; RX_BATCH],
}

/// `recvmmsg`/`sendmmsg` backend.
pub struct SocketIo {
    sock: Socket,
    v6: bool,
    gso: bool,
    /// `None` when opened with `SocketConfig::waker == false`.
    wake: Option<WakeFd>,
    /// A descriptor whose readability ends the wait too ([`SocketIo::watch`]).
    extra: Option<std::os::fd::RawFd>,
    rx: Box<RxSlots>,
    tx: Box<TxSlots>,
    stats: IoStats,
}

impl std::fmt::Debug for SocketIo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SocketIo")
            .field("sock", &self.sock)
            .field("gso", &self.gso)
            .field("stats", &self.stats)
            .finish()
    }
}

impl SocketIo {
    pub fn open(cfg: &SocketConfig) -> io::Result<Self> {
        let Opened { sock, v6, gso, .. } = open_udp(cfg)?;
        let rx = Box::new(RxSlots {
            // SAFETY: all-zero mmsghdr/iovec are valid (null pointers, zero lengths).
            hdrs: unsafe { std::mem::zeroed() },
            // SAFETY: as above.
            iovs: unsafe { std::mem::zeroed() },
            names: [AddrBuf([0; ADDR_LEN]); RX_BATCH],
            ctrl: [CtrlBuf([0; RX_CTRL_LEN_STAMPED]); RX_BATCH],
            ids: [BufId(0); RX_BATCH],
        });
        Ok(Self {
            sock,
            v6,
            gso,
            wake: if cfg.waker {
                Some(WakeFd::new()?)
            } else {
                None
            },
            extra: None,
            rx,
            tx: TxSlots::new(TX_SLOTS, TX_IOVS),
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
        self.wake.as_ref().map_or_else(Waker::none, WakeFd::waker)
    }

    /// Ends the wait when `fd` becomes readable too (the worker's TCP epoll).
    pub fn watch(&mut self, fd: std::os::fd::RawFd) {
        self.extra = Some(fd);
    }

    pub fn recv(&mut self, pool: &mut BufPool, out: &mut [RecvMeta]) -> io::Result<usize> {
        let want = out.len().min(RX_BATCH);
        let rx = &mut *self.rx;
        let mut n = 0;
        while n < want {
            let Some(id) = pool.take() else {
                self.stats.rx_pool_empty += 1;
                break;
            };
            rx.ids[n] = id;
            rx.iovs[n] = libc::iovec {
                iov_base: pool.get_mut(id).as_mut_ptr().cast(),
                iov_len: BUF_SIZE,
            };
            let h = &mut rx.hdrs[n].msg_hdr;
            h.msg_name = rx.names[n].0.as_mut_ptr().cast();
            h.msg_namelen = ADDR_LEN as libc::socklen_t;
            h.msg_iov = ptr::addr_of_mut!(rx.iovs[n]);
            h.msg_iovlen = 1;
            h.msg_control = rx.ctrl[n].0.as_mut_ptr().cast();
            h.msg_controllen = RX_CTRL_LEN_STAMPED as _;
            h.msg_flags = 0;
            rx.hdrs[n].msg_len = 0;
            n += 1;
        }
        if n == 0 {
            return Ok(0);
        }
        // SAFETY: the first `n` headers point at iovecs/names/control areas inside `*rx`, which
        // is borrowed for the call, and each iovec at a whole BUF_SIZE pool buffer this backend
        // holds (taken above, not lent, no Rust reference to it alive). recvmmsg only writes
        // inside those areas, bounded by the lengths we set, and returns before we touch them.
        let got = unsafe {
            libc::recvmmsg(
                self.sock.as_raw_fd(),
                rx.hdrs.as_mut_ptr(),
                n as libc::c_uint,
                libc::MSG_DONTWAIT,
                ptr::null_mut(),
            )
        };
        let got = if got < 0 {
            let e = io::Error::last_os_error();
            for &id in &rx.ids[..n] {
                pool.give(id);
            }
            return match e.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(0),
                _ => {
                    self.stats.rx_errors += 1;
                    Err(e)
                }
            };
        } else {
            got as usize
        };
        let mut filled = 0;
        for i in 0..got {
            let h = &rx.hdrs[i];
            let id = rx.ids[i];
            let flags = h.msg_hdr.msg_flags;
            let name_len = (h.msg_hdr.msg_namelen as usize).min(ADDR_LEN);
            // msg_controllen is size_t on glibc, socklen_t on musl.
            #[allow(clippy::unnecessary_cast)]
            let ctrl_len = (h.msg_hdr.msg_controllen as usize).min(RX_CTRL_LEN_STAMPED);
            let src = decode_addr(&rx.names[i].0[..name_len]);
            if flags & libc::MSG_TRUNC != 0 {
                self.stats.rx_truncated += 1;
                pool.give(id);
                continue;
            }
            let Some(src) = src else {
                self.stats.rx_errors += 1;
                pool.give(id);
                continue;
            };
            let info = parse_cmsgs(&rx.ctrl[i].0[..ctrl_len]);
            if let Some(d) = info.rxq_drops {
                self.stats.rx_queue_drops = d;
            }
            out[filled] = RecvMeta {
                buf: id,
                offset: 0,
                len: h.msg_len as usize,
                src,
                dst: info.dst,
                segment: info.segment,
                proto: rtp_core::net::Protocol::Udp,
                stamp: info.stamp,
            };
            filled += 1;
        }
        for &id in &rx.ids[got..n] {
            pool.give(id);
        }
        self.stats.rx_datagrams += filled as u64;
        Ok(filled)
    }

    pub fn send(&mut self, pool: &BufPool, batch: &[Transmit]) -> io::Result<usize> {
        Ok(self.send_batch(pool, batch, false)?.sent)
    }

    /// [`Backend::try_send`](super::Backend::try_send).
    pub fn try_send(&mut self, pool: &BufPool, batch: &[Transmit]) -> io::Result<SendOutcome> {
        self.send_batch(pool, batch, true)
    }

    /// [`Backend::submit`](super::Backend::submit): sends in order until the socket's buffer is
    /// full and gives the buffers of what it dealt with back to `pool` at once (the kernel
    /// copied them).
    pub fn submit(&mut self, pool: &mut BufPool, batch: &[Transmit]) -> io::Result<SendOutcome> {
        let o = self.send_batch(pool, batch, true)?;
        for t in &batch[..o.consumed] {
            pool.give(t.buf);
        }
        Ok(o)
    }

    /// Sends `batch`; with `stop_when_full`, stops at the first message a full socket buffer
    /// refuses and says where (otherwise such messages are dropped and counted).
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
            let (n, full_at) = self.flush(stop_when_full)?;
            sent += n;
            if let Some(j) = full_at {
                return Ok(SendOutcome {
                    sent,
                    consumed: self.tx.resume[j] as usize,
                });
            }
        }
        Ok(SendOutcome {
            sent,
            consumed: batch.len(),
        })
    }

    /// Sends the filled slots with as few `sendmmsg` calls as the kernel allows. Returns the
    /// transmits completed and, with `stop_when_full`, the first message a full socket buffer
    /// refused.
    fn flush(&mut self, stop_when_full: bool) -> io::Result<(usize, Option<usize>)> {
        let tx = &mut *self.tx;
        let mut sent = 0usize;
        let mut at = 0usize;
        while at < tx.len {
            // SAFETY: headers `at..len` were filled by `TxSlots::fill` and point into `*tx`
            // (borrowed for the call) and at held pool buffers the caller's `&BufPool` keeps
            // alive; the kernel only reads them, before sendmmsg returns.
            let rc = unsafe {
                libc::sendmmsg(
                    self.sock.as_raw_fd(),
                    tx.hdrs.as_mut_ptr().add(at),
                    (tx.len - at) as libc::c_uint,
                    0,
                )
            };
            if rc > 0 {
                for j in at..at + rc as usize {
                    sent += usize::from(tx.done[j]);
                    self.stats.tx_datagrams += segments(tx, j);
                    self.stats.tx_gso_messages += u64::from(tx.seg[j] != 0);
                }
                at += rc as usize;
                continue;
            }
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::EAGAIN) if stop_when_full => {
                    self.stats.tx_retry += (tx.len - at) as u64;
                    return Ok((sent, Some(at)));
                }
                Some(libc::EAGAIN) => {
                    self.stats.tx_would_block += (tx.len - at) as u64;
                    break;
                }
                Some(libc::EIO) if tx.seg[at] != 0 => {
                    // The NIC or driver cannot segment (quinn-udp documents the same): stop
                    // using GSO on this socket and resend this message a segment at a time.
                    self.gso = false;
                    self.stats.gso_disabled = true;
                    let ok = send_segmented(&self.sock, tx, at, &mut self.stats);
                    if ok {
                        sent += usize::from(tx.done[at]);
                    }
                    at += 1;
                }
                _ => {
                    self.stats.tx_errors += 1;
                    at += 1;
                }
            }
        }
        Ok((sent, None))
    }

    /// Sleeps until a datagram, a wake-up or (with `writable`) room in the send buffer.
    pub fn wait(&mut self, timeout: Option<Duration>, writable: bool) -> io::Result<()> {
        let mut fds = [
            libc::pollfd {
                fd: self.sock.as_raw_fd(),
                events: if writable {
                    libc::POLLIN | libc::POLLOUT
                } else {
                    libc::POLLIN
                },
                revents: 0,
            },
            libc::pollfd {
                // poll(2) ignores a negative fd: no waker, no wake-ups.
                fd: self.wake.as_ref().map_or(-1, WakeFd::raw),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: self.extra.unwrap_or(-1),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        let ms = match timeout {
            None => -1,
            // Round up so a sub-millisecond timer does not become a busy loop.
            Some(t) => i32::try_from(t.as_nanos().div_ceil(1_000_000)).unwrap_or(i32::MAX),
        };
        // SAFETY: `fds` is a local array of three initialised pollfds and its length is passed.
        let rc = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
        if rc < 0 {
            let e = io::Error::last_os_error();
            return if e.kind() == io::ErrorKind::Interrupted {
                Ok(())
            } else {
                Err(e)
            };
        }
        if fds[1].revents != 0 {
            if let Some(w) = &self.wake {
                w.drain();
            }
        }
        Ok(())
    }
}

/// Datagrams message `j` puts on the wire.
pub(crate) fn segments(tx: &TxSlots, j: usize) -> u64 {
    let seg = usize::from(tx.seg[j]);
    if seg == 0 {
        return 1;
    }
    let bytes: usize = tx.msg_iovs(j).iter().map(|v| v.iov_len).sum();
    bytes.div_ceil(seg) as u64
}

/// Sends GSO message `j` without GSO, one `sendmsg` per segment. Returns whether all went out.
pub(crate) fn send_segmented(sock: &Socket, tx: &TxSlots, j: usize, stats: &mut IoStats) -> bool {
    let seg = usize::from(tx.seg[j]);
    let h = &tx.hdrs[j].msg_hdr;
    let mut all = true;
    for v in tx.msg_iovs(j) {
        let mut off = 0;
        while off < v.iov_len {
            let piece = seg.min(v.iov_len - off);
            let mut one = libc::iovec {
                iov_base: v.iov_base.cast::<u8>().wrapping_add(off).cast(),
                iov_len: piece,
            };
            // SAFETY: all-zero msghdr is valid; fields set below.
            let mut m: libc::msghdr = unsafe { std::mem::zeroed() };
            m.msg_name = h.msg_name;
            m.msg_namelen = h.msg_namelen;
            m.msg_iov = &mut one;
            m.msg_iovlen = 1;
            // SAFETY: `m` points at `one` (this frame), at the slot's name inside `tx`, and at a
            // part of a held pool buffer (the iovec came from `fill`, which checked bounds); the
            // kernel only reads them during the call.
            let rc = unsafe { libc::sendmsg(sock.as_raw_fd(), &m, 0) };
            if rc < 0 {
                stats.tx_errors += 1;
                all = false;
            } else {
                stats.tx_datagrams += 1;
            }
            off += piece;
        }
    }
    all
}
