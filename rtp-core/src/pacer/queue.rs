//! A fixed-capacity FIFO ring for one priority class of the pacer.
//!
//! Storage is reserved once in [`ClassQueue::new`] and written only as far as the queue has
//! ever been deep: an empty queue starts again at its first slot, so a pacer that drains
//! every iteration keeps touching the same few slots, and a session that never queues video
//! never touches its video queue's pages (an audio-only subscriber's 2,048 video and 1,024
//! retransmission slots stay untouched memory). Push and pop never reallocate, so the pacer
//! stays allocation-free on the per-packet path.

use std::time::Instant;

/// One queued item together with what the pacer needs to account for it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Queued<T: Copy> {
    pub(crate) item: T,
    /// Wire bytes (a datagram: well under 4 GiB).
    pub(crate) size_bytes: u32,
    pub(crate) enqueued_at: Instant,
}

/// Bounded ring buffer of [`Queued`] entries.
#[derive(Debug)]
pub(crate) struct ClassQueue<T: Copy> {
    /// The ring: `capacity` reserved, its length the furthest the tail has reached (slots
    /// are filled in order, so the tail's next slot is either written or the next push).
    slots: Vec<Queued<T>>,
    cap: usize,
    head: usize,
    len: usize,
}

impl<T: Copy> ClassQueue<T> {
    /// A queue that holds at most `capacity` entries (0 means it rejects everything).
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            slots: Vec::with_capacity(capacity),
            cap: capacity,
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
        if self.len >= self.cap {
            return Err(entry);
        }
        if self.len == 0 {
            // Empty: back to the first slot, so the slots written are the deepest the queue
            // has been, not every slot the tail ever passed.
            self.head = 0;
        }
        let idx = (self.head + self.len) % self.cap;
        match self.slots.get_mut(idx) {
            Some(slot) => *slot = entry,
            // First time the tail reaches `idx` (== `slots.len()`): within the reserved
            // capacity, so no reallocation.
            None => self.slots.push(entry),
        }
        self.len += 1;
        Ok(())
    }

    /// The oldest entry, if any.
    pub(crate) fn front(&self) -> Option<&Queued<T>> {
        if self.len == 0 {
            return None;
        }
        self.slots.get(self.head)
    }

    /// Removes and returns the oldest entry.
    pub(crate) fn pop(&mut self) -> Option<Queued<T>> {
        if self.len == 0 {
            return None;
        }
        let entry = *self.slots.get(self.head)?;
        self.head = (self.head + 1) % self.cap;
        self.len -= 1;
        Some(entry)
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
    fn writes_only_as_deep_as_it_has_been() {
        let t = t0();
        let mut q = ClassQueue::new(64);
        let reserved = q.slots.capacity();
        // A thousand packets through a queue that drains after each pair: two slots written.
        for i in 0..500u32 {
            q.push(entry(2 * i, t)).unwrap();
            q.push(entry(2 * i + 1, t)).unwrap();
            assert_eq!(q.pop().unwrap().item, 2 * i);
            assert_eq!(q.pop().unwrap().item, 2 * i + 1);
        }
        assert_eq!(q.slots.len(), 2, "only the deepest it has been is written");
        // Never empty: the tail wraps round the whole ring, in order, within the reserve.
        q.push(entry(0, t)).unwrap();
        for i in 0..200u32 {
            q.push(entry(i + 1, t)).unwrap();
            assert_eq!(q.pop().unwrap().item, i);
        }
        assert_eq!(q.slots.len(), 64);
        assert_eq!(q.slots.capacity(), reserved);
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
