//! The raw memory behind [`crate::pool::BufPool`]: one page-aligned allocation of
//! `len × BUF_SIZE` bytes plus a per-buffer "lent to the kernel" flag.
//!
//! Why raw memory instead of a `Box<[[u8; N]]>`: buffers lent to the kernel (a provided-buffer
//! ring, an in-flight `recvmmsg`) are written by the kernel while the worker keeps using other
//! buffers of the same slab. A `Box` or `&mut` covering the whole slab would then alias memory the
//! kernel is writing. Here a Rust reference only ever covers one buffer, and only one that is not
//! lent: [`Slab::buf`] and [`Slab::buf_mut`] refuse lent buffers, and [`Slab::reclaim`] (unsafe)
//! is the only way back from "lent", called by a backend when a completion hands the buffer back.

use std::alloc::{self, Layout};
use std::ptr::NonNull;

use crate::pool::BUF_SIZE;

/// Page alignment: the kernel does not need it for provided buffers, but it keeps every buffer
/// inside as few pages as possible and makes the slab trivially registrable later.
const SLAB_ALIGN: usize = 4096;

#[derive(Debug)]
pub(crate) struct Slab {
    base: NonNull<u8>,
    len: usize,
    lent: Box<[bool]>,
    lent_count: usize,
}

// SAFETY: the slab exclusively owns its allocation (no other handle to it exists outside
// pointers a backend passed to the kernel); moving it to another thread moves that ownership.
// Nothing in it is thread-bound.
unsafe impl Send for Slab {}

impl Slab {
    /// Allocates `len` zeroed buffers. Panics when `len` is 0 or the size overflows: pool sizes
    /// are configuration, checked by `BufPool::new`.
    pub(crate) fn new(len: usize) -> Self {
        let layout = Self::layout(len);
        // SAFETY: `layout` has a non-zero size (len >= 1 is asserted in `layout`).
        let raw = unsafe { alloc::alloc_zeroed(layout) };
        let Some(base) = NonNull::new(raw) else {
            alloc::handle_alloc_error(layout)
        };
        Self {
            base,
            len,
            lent: vec![false; len].into_boxed_slice(),
            lent_count: 0,
        }
    }

    fn layout(len: usize) -> Layout {
        assert!(len > 0, "slab needs at least one buffer");
        let bytes = len
            .checked_mul(BUF_SIZE)
            .expect("slab size overflows usize");
        Layout::from_size_align(bytes, SLAB_ALIGN).expect("slab layout is valid")
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn lent_count(&self) -> usize {
        self.lent_count
    }

    pub(crate) fn is_lent(&self, i: usize) -> bool {
        self.lent[i]
    }

    fn raw(&self, i: usize) -> *mut u8 {
        assert!(i < self.len, "buffer index {i} out of range");
        // In bounds of the allocation by the assert above; wrapping_add needs no unsafe.
        self.base.as_ptr().wrapping_add(i * BUF_SIZE)
    }

    pub(crate) fn buf(&self, i: usize) -> &[u8; BUF_SIZE] {
        assert!(!self.lent[i], "buffer {i} is lent to the kernel");
        let p = self.raw(i).cast::<[u8; BUF_SIZE]>();
        // SAFETY: `p` points at BUF_SIZE initialised (zeroed at allocation) bytes inside our
        // allocation, which lives as long as `self`. The buffer is not lent, so the kernel does
        // not write it; `&self` excludes `buf_mut` on it for the returned lifetime.
        unsafe { &*p }
    }

    pub(crate) fn buf_mut(&mut self, i: usize) -> &mut [u8; BUF_SIZE] {
        assert!(!self.lent[i], "buffer {i} is lent to the kernel");
        let p = self.raw(i).cast::<[u8; BUF_SIZE]>();
        // SAFETY: as in `buf`; `&mut self` makes this the only reference to buffer `i`, and no
        // reference ever spans more than one buffer, so other (possibly lent) buffers are not
        // aliased.
        unsafe { &mut *p }
    }

    /// Pointer for the kernel to read from (a send). The buffer stays usable from Rust: the
    /// kernel only reads it, and `&self` keeps `buf_mut` away while the caller uses the pointer.
    pub(crate) fn ptr(&self, i: usize) -> *const u8 {
        assert!(!self.lent[i], "buffer {i} is lent to the kernel");
        self.raw(i)
    }

    /// Marks buffer `i` lent and returns the pointer the kernel may write through until
    /// [`Slab::reclaim`]. From now on `buf`/`buf_mut` panic for `i`.
    pub(crate) fn lend(&mut self, i: usize) -> *mut u8 {
        assert!(!self.lent[i], "buffer {i} lent twice");
        self.lent[i] = true;
        self.lent_count += 1;
        self.raw(i)
    }

    /// Ends a loan.
    ///
    /// # Safety
    /// The kernel must no longer write to buffer `i`: a completion returned it, the operation
    /// that could write it finished synchronously, or the provided-buffer ring holding it was
    /// unregistered.
    pub(crate) unsafe fn reclaim(&mut self, i: usize) {
        assert!(self.lent[i], "buffer {i} reclaimed but not lent");
        self.lent[i] = false;
        self.lent_count -= 1;
    }
}

impl Drop for Slab {
    fn drop(&mut self) {
        if self.lent_count > 0 {
            // A backend was dropped without `shutdown`, so the kernel might still own some
            // buffers: leaking the slab is the only way to be sure it never writes freed memory.
            return;
        }
        // SAFETY: `base` came from `alloc_zeroed` with this same layout and no buffer is lent, so
        // nothing (Rust or kernel) refers to the memory any more.
        unsafe { alloc::dealloc(self.base.as_ptr(), Self::layout(self.len)) }
    }
}
