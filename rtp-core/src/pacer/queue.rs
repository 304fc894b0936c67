//! A fixed-capacity FIFO ring for one priority class of the pacer.
//!
//! Storage is allocated once in [`ClassQueue::new`]; push and pop never touch
//! the allocator, so the pacer stays allocation-free on the per-packet path.

use std::time::Instant;

/// One queued item together with what the pacer needs to account for it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Queued<T: Copy> {
    pub(crate) item: T,
    pub(crate) size_bytes: usize,
    pub(crate) enqueued_at: Instant,
}

/// Bounded ring buffer of [`Queued`] entries.
#[derive(Debug)]
pub(crate) struct ClassQueue<T: Copy> {
    // `Option` lets us preallocate without requiring `T: Default`.
    slots: Vec<Option<Queued<T>>>,
    head: usize,
    len: usize,
}

impl<T: Copy> ClassQueue<T> {
    /// A queue that holds at most `capacity` entries (0 means it rejects everything).
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            slots: vec![None; capacity],
            head: 0,
            len: 0,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends at the tail; gives the entry back when the ring is full.
    pub(crate) fn push(&mut self, entry: Queued<T>) -> Result<(), Queued<T>> {
        let cap = self.slots.len();
        if self.len >= cap {
            return Err(entry);
        }
        let idx = (self.head + self.len) % cap;
        self.slots[idx] = Some(entry);
        self.len += 1;
        Ok(())
    }

    /// The oldest entry, if any.
    pub(crate) fn front(&self) -> Option<&Queued<T>> {
        if self.len == 0 {
            return None;
        }
        self.slots[self.head].as_ref()
    }

    /// Removes and returns the oldest entry.
    pub(crate) fn pop(&mut self) -> Option<Queued<T>> {
        if self.len == 0 {
            return None;
        }
        let entry = self.slots[self.head].take();
        self.head = (self.head + 1) % self.slots.len();
        self.len -= 1;
        entry
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[allow(clippy::disallowed_methods)] // tests need some base instant
    fn t0() -> Instant {
        Instant::now()
    }

    fn entry(item: u32, at: Instant) -> Queued<u32> {
        Queued {
            item,
            size_bytes: 100,
            enqueued_at: at,
        }
    }

    #[test]
    fn fifo_order_across_wrap() {
        let t = t0();
        let mut q = ClassQueue::new(3);
        for round in 0..5u32 {
            q.push(entry(round * 10, t)).unwrap();
            q.push(entry(round * 10 + 1, t)).unwrap();
            assert_eq!(q.pop().unwrap().item, round * 10);
            assert_eq!(q.front().unwrap().item, round * 10 + 1);
            assert_eq!(q.pop().unwrap().item, round * 10 + 1);
            assert!(q.is_empty());
        }
    }

    #[test]
    fn full_and_zero_capacity() {
        let t = t0();
        let mut q = ClassQueue::new(2);
        q.push(entry(1, t)).unwrap();
        q.push(entry(2, t)).unwrap();
        assert_eq!(q.push(entry(3, t)).unwrap_err().item, 3);
        assert_eq!(q.len(), 2);

        let mut z: ClassQueue<u32> = ClassQueue::new(0);
        assert!(z.push(entry(1, t)).is_err());
        assert!(z.pop().is_none());
        assert!(z.front().is_none());
    }
}
