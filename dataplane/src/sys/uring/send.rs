//! The io_uring backend's send half: [`UringIo::submit`] turns a batch into `IORING_OP_SENDMSG`
//! SQEs from one of two [`SendSet`]s, `on_send` reaps their completions (buffers back to the pool,
//! or refused transmits kept for [`UringIo::requeue`]). See the parent module for the design.

use std::io;
use std::os::fd::AsRawFd;
use std::ptr;

use io_uring::opcode;
use io_uring::types::Fd;

use super::super::plain::segments;
use super::super::tx::{TxCursor, TxSlots};
use super::super::{SendOutcome, Transmit};
use super::{Cqe, UringIo, UD_SEND, URING_TX_IOVS, URING_TX_MSGS};
use crate::pool::BufPool;

/// One set of send messages and the transmits they carry, owned by the ring until every
/// message's completion was reaped.
pub(super) struct SendSet {
    pub(super) slots: Box<TxSlots>,
    /// The transmits of the last submit from this set, indexed like the batch `fill` saw.
    pub(super) carried: Vec<Transmit>,
    /// Messages submitted whose completion has not been reaped.
    pub(super) pending: usize,
}

impl SendSet {
    pub(super) fn new() -> Self {
        Self {
            slots: TxSlots::new(URING_TX_MSGS, URING_TX_IOVS),
            carried: Vec::with_capacity(URING_TX_IOVS),
            pending: 0,
        }
    }
}

impl UringIo {
    /// Hands `batch` to the kernel as send SQEs, submitted with the next enter (the worker's
    /// wait). `batch[..consumed]` then belongs to the ring: each buffer goes back to `pool` when
    /// its completion is reaped (`recv`), or comes back through [`UringIo::requeue`] when the
    /// kernel refused it. `batch[consumed..]` stays with the caller: both sets of messages are
    /// still in flight, or the batch is larger than a set.
    pub fn submit(&mut self, pool: &BufPool, batch: &[Transmit]) -> io::Result<SendOutcome> {
        if batch.is_empty() {
            return Ok(SendOutcome::default());
        }
        let Some(k) = (0..2).find(|&k| self.sends[k].pending == 0) else {
            self.stats.tx_slots_busy += 1;
            return Ok(SendOutcome::default());
        };
        let mut cur = TxCursor::default();
        let set = &mut self.sends[k];
        set.slots
            .fill(pool, batch, &mut cur, self.gso, self.v6, &mut self.stats);
        set.carried.clear();
        set.carried.extend_from_slice(&batch[..cur.tx]);
        let n = set.slots.len;
        let fd = Fd(self.sock.as_raw_fd());
        for j in 0..n {
            let hdr = ptr::addr_of!(self.sends[k].slots.hdrs[j].msg_hdr);
            let sqe = opcode::SendMsg::new(fd, hdr)
                .flags(libc::MSG_DONTWAIT as u32)
                .build()
                .user_data(UD_SEND | (k as u64) << 16 | j as u64);
            self.push_sqe(&sqe)?;
            self.sends[k].pending += 1;
        }
        Ok(SendOutcome {
            sent: cur.tx,
            consumed: cur.tx,
        })
    }

    /// Puts the transmits the kernel refused since the last call at the front of `tx`, oldest
    /// first, so the caller sends them again before anything newer.
    pub fn requeue(&mut self, tx: &mut Vec<Transmit>) {
        let n = self.refused.len();
        if n == 0 {
            return;
        }
        let old = tx.len();
        tx.extend_from_slice(&self.refused);
        tx.copy_within(..old, n);
        tx[..n].copy_from_slice(&self.refused);
        self.refused.clear();
    }

    /// Messages submitted whose completion has not been reaped yet.
    pub fn in_flight(&self) -> usize {
        self.sends[0].pending + self.sends[1].pending
    }

    /// A send completion: the buffers of the transmits its message finished go back to the pool,
    /// or, when the kernel refused the message for want of room (or GSO), back to the caller.
    pub(super) fn on_send(&mut self, e: Cqe, pool: &mut BufPool) {
        let k = ((e.ud >> 16) & 1) as usize;
        let j = (e.ud & 0xffff) as usize;
        let set = &mut self.sends[k];
        if set.pending == 0 || j >= set.slots.len {
            // Not ours (cannot happen: every SQE we push is counted).
            self.stats.tx_errors += 1;
            return;
        }
        set.pending -= 1;
        let first = set.slots.first[j] as usize;
        let done = usize::from(set.slots.done[j]);
        let carried = &set.carried[first..(first + done).min(set.carried.len())];
        let res = e.res;
        let refuse = res == -libc::EAGAIN || (res == -libc::EIO && set.slots.seg[j] != 0);
        if res >= 0 {
            self.stats.tx_datagrams += segments(&set.slots, j);
            self.stats.tx_gso_messages += u64::from(set.slots.seg[j] != 0);
        } else if refuse && done > 0 {
            if res == -libc::EIO {
                // GSO refused by the device: off for this socket; the caller's retry goes out
                // one datagram per message (quinn-udp documents the same fallback).
                self.gso = false;
                self.stats.gso_disabled = true;
            } else {
                self.want_out = true;
            }
            self.stats.tx_retry += carried.len() as u64;
            self.refused.extend_from_slice(carried);
            return;
        } else if res == -libc::EAGAIN {
            self.stats.tx_would_block += 1;
        } else {
            self.stats.tx_errors += 1;
        }
        for t in carried {
            pool.give(t.buf);
        }
    }
}
