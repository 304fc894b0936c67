//! Outgoing message slots shared by both backends: a preallocated array of `mmsghdr` with the
//! iovecs, destination sockaddrs and `UDP_SEGMENT` control messages they point at, filled from a
//! batch of [`Transmit`]s.
//!
//! GSO (Linux `UDP_SEGMENT`, see `udp(7)`): a run of consecutive transmits to the same
//! destination with the same `segment_size = Some(s)`, each exactly `s` bytes except a shorter
//! last one, becomes ONE message whose iovecs gather the buffers back to back; the kernel cuts it
//! into `s`-byte datagrams. A single transmit longer than `s` (several segments inside one
//! buffer) is sent the same way. When GSO is off for the socket, each transmit is its own message
//! and one longer than `s` is cut here.
//!
//! The slots live in a `Box` owned by the backend, so the pointers between them stay valid while
//! the kernel reads them (for io_uring: until the send CQE; see `uring.rs`).

use std::net::SocketAddr;
use std::ptr;

use super::net::{encode_addr, encode_segment, AddrBuf, CtrlBuf, ADDR_LEN, TX_CTRL_LEN};
use super::{IoStats, Transmit};
use crate::pool::{BufPool, BUF_SIZE};

/// Messages per `sendmmsg` batch of the socket backend (the kernel takes at most UIO_MAXIOV =
/// 1024 per call).
pub(crate) const TX_SLOTS: usize = 256;
/// iovecs shared by the messages of one socket-backend batch.
pub(crate) const TX_IOVS: usize = 1024;
/// Linux's UDP_MAX_SEGMENTS is 64 on older kernels (128 since 6.x); stay under both.
const MAX_GSO_SEGS: usize = 64;
/// Largest UDP payload over IPv4 (65535 − 20 − 8); a GSO message may not exceed it.
const MAX_GSO_BYTES: usize = 65_507;

/// Where filling stopped inside a batch: the next transmit, and the byte offset already sent of
/// it when it is being cut into segments by hand.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct TxCursor {
    pub(crate) tx: usize,
    pub(crate) off: usize,
}

pub(crate) struct TxSlots {
    pub(crate) hdrs: Box<[libc::mmsghdr]>,
    iovs: Box<[libc::iovec]>,
    names: Box<[AddrBuf]>,
    ctrl: Box<[CtrlBuf<TX_CTRL_LEN>]>,
    /// GSO segment size of each message, 0 when none.
    pub(crate) seg: Box<[u16]>,
    /// How many transmits of the batch each message completes (0 for a non-final cut piece).
    pub(crate) done: Box<[u16]>,
    /// The batch index of the first transmit message `j` completes (with `done`: the range
    /// whose buffers may be released, or sent again, when `j` completes).
    pub(crate) first: Box<[u32]>,
    /// Where to resume in the batch when message `j` and every later one were not sent (a
    /// full socket buffer): the first transmit `j` carries, or the one after it when `j` is a
    /// later piece of a transmit cut by hand (its earlier pieces went out; resending them
    /// would duplicate datagrams, so the rest of that one transmit is given up).
    pub(crate) resume: Box<[u32]>,
    /// Messages filled.
    pub(crate) len: usize,
}

impl std::fmt::Debug for TxSlots {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TxSlots").field("len", &self.len).finish()
    }
}

impl TxSlots {
    /// Slots for `msgs` messages gathering at most `iovs` buffers between them.
    pub(crate) fn new(msgs: usize, iovs: usize) -> Box<Self> {
        // SAFETY: mmsghdr and iovec are plain C structs for which all-zero bytes are valid
        // (null pointers, zero lengths).
        let hdr: libc::mmsghdr = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        let iov: libc::iovec = unsafe { std::mem::zeroed() };
        Box::new(Self {
            hdrs: vec![hdr; msgs].into_boxed_slice(),
            iovs: vec![iov; iovs].into_boxed_slice(),
            names: vec![AddrBuf([0; ADDR_LEN]); msgs].into_boxed_slice(),
            ctrl: vec![CtrlBuf([0; TX_CTRL_LEN]); msgs].into_boxed_slice(),
            seg: vec![0; msgs].into_boxed_slice(),
            done: vec![0; msgs].into_boxed_slice(),
            first: vec![0; msgs].into_boxed_slice(),
            resume: vec![0; msgs].into_boxed_slice(),
            len: 0,
        })
    }

    /// Fills messages from `batch` starting at `cur` until the slots or the batch run out.
    pub(crate) fn fill(
        &mut self,
        pool: &BufPool,
        batch: &[Transmit],
        cur: &mut TxCursor,
        gso: bool,
        v6_socket: bool,
        stats: &mut IoStats,
    ) {
        self.len = 0;
        let (max_msgs, max_iovs) = (self.hdrs.len(), self.iovs.len());
        let mut iov_used = 0usize;
        while self.len < max_msgs && cur.tx < batch.len() {
            let t = &batch[cur.tx];
            if !valid(t, pool) {
                stats.bad_transmits += 1;
                *cur = TxCursor {
                    tx: cur.tx + 1,
                    off: 0,
                };
                continue;
            }
            let seg = t.segment_size.map_or(0, usize::from);
            if seg == 0 || (t.len <= seg && !gso) {
                // Plain datagram.
                if iov_used == max_iovs {
                    break;
                }
                self.iovs[iov_used] = iovec(pool, t, 0, t.len);
                self.push(t.dst, v6_socket, iov_used, 1, 0, 1, cur.tx, cur.tx);
                iov_used += 1;
                cur.tx += 1;
            } else if !gso {
                // Longer than one segment, no GSO: cut it here, one piece per message. A transmit
                // is cut within one fill (never split across two), so a caller that hands the
                // filled messages to the kernel whole never owns half a transmit.
                let pieces = (t.len - cur.off).div_ceil(seg);
                if cur.off == 0
                    && (self.len + pieces > max_msgs || iov_used + pieces > max_iovs)
                    && self.len > 0
                {
                    break;
                }
                if iov_used == max_iovs {
                    break;
                }
                let piece = seg.min(t.len - cur.off);
                self.iovs[iov_used] = iovec(pool, t, cur.off, piece);
                let resume = cur.tx + usize::from(cur.off > 0);
                cur.off += piece;
                let finished = cur.off == t.len;
                self.push(
                    t.dst,
                    v6_socket,
                    iov_used,
                    1,
                    0,
                    u16::from(finished),
                    cur.tx,
                    resume,
                );
                iov_used += 1;
                if finished {
                    *cur = TxCursor {
                        tx: cur.tx + 1,
                        off: 0,
                    };
                }
            } else {
                // GSO: gather the run of same-destination, same-size segments that follows.
                let first = iov_used;
                let resume = cur.tx;
                let mut bytes = 0usize;
                let mut segs = 0usize;
                let mut n_tx = 0u16;
                while cur.tx < batch.len() && iov_used < max_iovs {
                    let u = &batch[cur.tx];
                    let same = u.dst == t.dst && u.segment_size == t.segment_size;
                    let u_segs = u.len.div_ceil(seg);
                    if n_tx > 0
                        && (!same
                            || !valid(u, pool)
                            || u.len > seg
                            || segs + u_segs > MAX_GSO_SEGS
                            || bytes + u.len > MAX_GSO_BYTES)
                    {
                        break;
                    }
                    self.iovs[iov_used] = iovec(pool, u, 0, u.len);
                    iov_used += 1;
                    bytes += u.len;
                    segs += u_segs;
                    n_tx += 1;
                    cur.tx += 1;
                    // Only the last piece of a run may be shorter than a segment (or longer
                    // than one, when it is alone and carries several segments itself).
                    if u.len != seg {
                        break;
                    }
                }
                if n_tx == 0 {
                    break;
                }
                let seg16 = if segs > 1 { seg as u16 } else { 0 };
                self.push(
                    t.dst,
                    v6_socket,
                    first,
                    iov_used - first,
                    seg16,
                    n_tx,
                    resume,
                    resume,
                );
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn push(
        &mut self,
        dst: SocketAddr,
        v6: bool,
        iov: usize,
        n_iov: usize,
        seg: u16,
        done: u16,
        first: usize,
        resume: usize,
    ) {
        let j = self.len;
        let name_len = encode_addr(dst, v6, &mut self.names[j]);
        let ctrl_len = if seg > 0 {
            encode_segment(seg, &mut self.ctrl[j])
        } else {
            0
        };
        let h = &mut self.hdrs[j].msg_hdr;
        h.msg_name = self.names[j].0.as_mut_ptr().cast();
        h.msg_namelen = name_len;
        h.msg_iov = ptr::addr_of_mut!(self.iovs[iov]);
        h.msg_iovlen = n_iov as _;
        h.msg_control = if ctrl_len > 0 {
            self.ctrl[j].0.as_mut_ptr().cast()
        } else {
            ptr::null_mut()
        };
        h.msg_controllen = ctrl_len as _;
        h.msg_flags = 0;
        self.hdrs[j].msg_len = 0;
        self.seg[j] = seg;
        self.done[j] = done;
        self.first[j] = first as u32;
        self.resume[j] = resume as u32;
        self.len += 1;
    }

    /// The iovecs of message `j` (for the GSO-refused fallback that resends them one segment at
    /// a time).
    pub(crate) fn msg_iovs(&self, j: usize) -> &[libc::iovec] {
        let h = &self.hdrs[j].msg_hdr;
        let start = (h.msg_iov as usize - self.iovs.as_ptr() as usize) / size_of_iovec();
        // msg_iovlen is size_t on glibc, c_int on musl.
        #[allow(clippy::unnecessary_cast)]
        let n = h.msg_iovlen as usize;
        &self.iovs[start..start + n]
    }
}

fn size_of_iovec() -> usize {
    std::mem::size_of::<libc::iovec>()
}

fn valid(t: &Transmit, pool: &BufPool) -> bool {
    t.len > 0
        && t.buf.index() < pool.len()
        && t.offset
            .checked_add(t.len)
            .is_some_and(|end| end <= BUF_SIZE)
}

fn iovec(pool: &BufPool, t: &Transmit, off: usize, len: usize) -> libc::iovec {
    libc::iovec {
        // The kernel only reads through this pointer (sendmsg). `valid` checked the range.
        iov_base: pool
            .ptr(t.buf)
            .wrapping_add(t.offset + off)
            .cast_mut()
            .cast(),
        iov_len: len,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(pool: &mut BufPool, len: usize, seg: Option<u16>, port: u16) -> Transmit {
        Transmit {
            buf: pool.take().expect("room"),
            offset: 0,
            len,
            dst: SocketAddr::from(([127, 0, 0, 1], port)),
            segment_size: seg,
        }
    }

    /// `resume[j]` is where a caller restarts when message `j` and later were not sent: the
    /// first transmit of `j`, past a transmit whose earlier pieces already left, and never
    /// before an invalid transmit that was skipped.
    #[test]
    fn resume_points_at_the_first_unsent_transmit() {
        let mut pool = BufPool::new(8);
        let mut bad = t(&mut pool, 100, None, 1);
        bad.len = 0;
        let batch = [
            t(&mut pool, 100, None, 1),       // message 0
            bad,                              // skipped, counted
            t(&mut pool, 100, None, 1),       // message 1
            t(&mut pool, 1800, Some(700), 2), // messages 2, 3, 4 (cut: no GSO)
            t(&mut pool, 100, None, 1),       // message 5
        ];
        let mut slots = TxSlots::new(TX_SLOTS, TX_IOVS);
        let mut cur = TxCursor::default();
        let mut stats = IoStats::default();
        slots.fill(&pool, &batch, &mut cur, false, false, &mut stats);
        assert_eq!(slots.len, 6);
        assert_eq!(stats.bad_transmits, 1);
        assert_eq!(&slots.resume[..6], &[0, 2, 3, 4, 4, 4]);
        assert_eq!(&slots.done[..6], &[1, 1, 0, 0, 1, 1]);
        // With GSO, the run to one destination is one message resuming at its first transmit.
        let gso = [
            t(&mut pool, 1000, Some(1000), 3),
            t(&mut pool, 1000, Some(1000), 3),
        ];
        let mut cur = TxCursor::default();
        slots.fill(&pool, &gso, &mut cur, true, false, &mut stats);
        assert_eq!((slots.len, slots.resume[0], slots.done[0]), (1, 0, 2));
    }
}
