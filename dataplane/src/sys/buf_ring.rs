//! The io_uring backend's provided-buffer ring (`IORING_REGISTER_PBUF_RING`): page-aligned
//! memory shared with the kernel whose entries are lent pool buffers, and the ring set-up with
//! the best task-run mode the kernel accepts. Used by `uring.rs`.

use std::alloc::{self, Layout};
use std::io;
use std::ptr::{self, NonNull};
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::IoUring;

use super::uring::SQ_ENTRIES;
use crate::pool::{BufId, BUF_SIZE};

/// Kernel limit on provided-buffer ring entries.
const MAX_RING_ENTRIES: usize = 32_768;

/// `struct io_uring_buf`; entry 0's `resv` is the ring's tail, which the kernel reads.
#[repr(C)]
pub(super) struct RawBuf {
    addr: u64,
    len: u32,
    bid: u16,
    resv: u16,
}

/// The provided-buffer ring: page-aligned memory shared with the kernel, plus our mirror of
/// which buffer sits in which entry (the kernel consumes entries in order from its head).
pub(super) struct BufRing {
    pub(super) base: NonNull<RawBuf>,
    pub(super) entries: usize,
    layout: Layout,
    /// Our tail (entries published so far, wrapping).
    pub(super) tail: u16,
    /// Entries published and not yet returned by a completion.
    pub(super) posted: usize,
    /// How many to keep posted.
    pub(super) depth: usize,
    pub(super) ids: Box<[u16]>,
}

impl BufRing {
    pub(super) fn new(depth: usize) -> Self {
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

    pub(super) fn mask(&self) -> usize {
        self.entries - 1
    }

    /// Writes entry `tail` (not yet visible to the kernel); `publish` makes it visible.
    pub(super) fn push(&mut self, id: BufId, addr: *mut u8) {
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

    pub(super) fn publish(&self) {
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

/// Builds a ring with the best task-run mode the kernel accepts.
pub(super) fn build_ring(cq: u32) -> io::Result<IoUring> {
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
