//! `BufPool`: each worker's fixed slab of packet buffers, allocated once at start-up.
//!
//! Buffers are addressed by [`BufId`] (a `u16`, which is also the buffer id the io_uring
//! provided-buffer ring carries in completions). A buffer is in one of three hands:
//! - free: on the pool's free list ([`BufPool::take`] hands one out);
//! - held: by the worker (it owns the bytes and returns them with [`BufPool::give`]);
//! - lent: to the kernel through an I/O backend in `sys/` (a provided-buffer ring entry). The
//!   backend turns a lent buffer back into a held one when a completion names it, then the
//!   buffer travels in a `RecvMeta` to the worker.
//!
//! No allocation after [`BufPool::new`]: the free list is a preallocated stack. This module is
//! safe code; the memory itself lives in `sys::slab`, which is where the aliasing argument is.
#![forbid(unsafe_code)]

use crate::sys::slab::Slab;

/// Bytes per buffer: a 1500-byte MTU datagram plus headroom (the io_uring backend puts the
/// `io_uring_recvmsg_out` header, address and control messages in front of the payload).
pub const BUF_SIZE: usize = 2048;

/// Largest pool: buffer ids are `u16`.
pub const MAX_BUFS: usize = u16::MAX as usize + 1;

/// Index of one buffer in a [`BufPool`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BufId(pub u16);

impl BufId {
    pub fn index(self) -> usize {
        usize::from(self.0)
    }
}

/// A worker's packet buffers. Not `Sync`: one worker owns it.
#[derive(Debug)]
pub struct BufPool {
    slab: Slab,
    /// Stack of free ids; capacity `len`, never grows.
    free: Vec<u16>,
    /// `is_free[i]` mirrors membership of `free`, to catch a buffer given back twice.
    is_free: Box<[bool]>,
}

impl BufPool {
    /// Allocates `len` buffers (1..=[`MAX_BUFS`]); panics outside that range (configuration).
    pub fn new(len: usize) -> Self {
        assert!(
            (1..=MAX_BUFS).contains(&len),
            "BufPool::new: len {len} not in 1..={MAX_BUFS}"
        );
        // Pop order 0, 1, 2…: the most recently given buffer is reused first (cache-warm).
        let free: Vec<u16> = (0..len)
            .rev()
            .map(|i| u16::try_from(i).expect("len <= MAX_BUFS"))
            .collect();
        Self {
            slab: Slab::new(len),
            free,
            is_free: vec![true; len].into_boxed_slice(),
        }
    }

    /// Total number of buffers.
    pub fn len(&self) -> usize {
        self.slab.len()
    }

    /// Always false: a pool has at least one buffer (kept for clippy's `len_without_is_empty`).
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Buffers on the free list (neither held by the worker nor lent to the kernel).
    pub fn free_count(&self) -> usize {
        self.free.len()
    }

    /// Buffers currently lent to the kernel by a backend.
    pub fn lent_count(&self) -> usize {
        self.slab.lent_count()
    }

    /// Takes a free buffer; `None` when the pool is exhausted (the caller drops the work and
    /// counts it).
    pub fn take(&mut self) -> Option<BufId> {
        let id = self.free.pop()?;
        self.is_free[usize::from(id)] = false;
        Some(BufId(id))
    }

    /// Returns a held buffer to the free list. Panics if it is already free or lent: that is a
    /// double free in the caller, a bug.
    pub fn give(&mut self, id: BufId) {
        let i = id.index();
        assert!(!self.is_free[i], "buffer {i} given back twice");
        assert!(!self.slab.is_lent(i), "buffer {i} given back while lent");
        self.is_free[i] = true;
        self.free.push(id.0);
    }

    /// The bytes of a buffer. Panics if the buffer is lent to the kernel.
    pub fn get(&self, id: BufId) -> &[u8; BUF_SIZE] {
        self.slab.buf(id.index())
    }

    /// The bytes of a buffer, writable. Panics if the buffer is lent to the kernel.
    pub fn get_mut(&mut self, id: BufId) -> &mut [u8; BUF_SIZE] {
        self.slab.buf_mut(id.index())
    }

    /// Takes a free buffer and lends it to the kernel: returns its id and the address the
    /// kernel writes through. For backends only.
    pub(crate) fn lend(&mut self) -> Option<(BufId, *mut u8)> {
        let id = self.take()?;
        Some((id, self.slab.lend(id.index())))
    }

    /// The slab, for a backend ending a loan (`Slab::reclaim`, unsafe, lives in `sys/`); the
    /// buffer is then held by that backend.
    pub(crate) fn slab_mut(&mut self) -> &mut Slab {
        &mut self.slab
    }

    /// Address of a held buffer, for the kernel to read (sends).
    pub(crate) fn ptr(&self, id: BufId) -> *const u8 {
        self.slab.ptr(id.index())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn take_give_roundtrip() {
        let mut pool = BufPool::new(4);
        assert_eq!(pool.free_count(), 4);
        let ids: Vec<BufId> = (0..4).map(|_| pool.take().expect("free buffer")).collect();
        assert_eq!(pool.take(), None);
        assert_eq!(pool.free_count(), 0);
        for id in ids {
            pool.give(id);
        }
        assert_eq!(pool.free_count(), 4);
    }

    #[test]
    fn buffers_are_distinct_and_writable() {
        let mut pool = BufPool::new(3);
        let a = pool.take().expect("free");
        let b = pool.take().expect("free");
        pool.get_mut(a).fill(0xaa);
        pool.get_mut(b).fill(0xbb);
        assert!(pool.get(a).iter().all(|&x| x == 0xaa));
        assert!(pool.get(b).iter().all(|&x| x == 0xbb));
    }

    #[test]
    #[should_panic(expected = "given back twice")]
    fn double_give_panics() {
        let mut pool = BufPool::new(2);
        let a = pool.take().expect("free");
        pool.give(a);
        pool.give(a);
    }

    #[test]
    fn lent_buffer_is_not_readable_until_reclaimed() {
        let mut pool = BufPool::new(2);
        let (id, _ptr) = pool.lend().expect("free");
        assert_eq!(pool.lent_count(), 1);
        assert!(std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _ = pool.get(id);
        }))
        .is_err());
        // No kernel ever saw the pointer, so the loan can end here. Ending a loan is an unsafe
        // operation only the backends perform; a safe test cannot call it, which is the point.
        assert_eq!(pool.free_count(), 1);
    }
}
