//! A fixed-capacity FIFO for agent events, so raising an event never
//! allocates. Events are rare (a handful per connection), so a small ring is
//! plenty; if the owner stops polling and it fills, the oldest event is
//! dropped, because the newest one describes the current state.

/// Ring of up to `N` events.
#[derive(Debug, Clone)]
pub(crate) struct EventQueue<E: Copy, const N: usize> {
    items: [Option<E>; N],
    head: usize,
    len: usize,
}

impl<E: Copy, const N: usize> EventQueue<E, N> {
    pub(crate) fn new() -> Self {
        Self {
            items: [None; N],
            head: 0,
            len: 0,
        }
    }

    /// Appends `event`; returns false when the oldest event had to be dropped.
    pub(crate) fn push(&mut self, event: E) -> bool {
        if N == 0 {
            return false;
        }
        let fits = self.len < N;
        if !fits {
            self.head = (self.head + 1) % N;
            self.len -= 1;
        }
        self.items[(self.head + self.len) % N] = Some(event);
        self.len += 1;
        fits
    }

    pub(crate) fn pop(&mut self) -> Option<E> {
        if self.len == 0 {
            return None;
        }
        let e = self.items[self.head].take();
        self.head = (self.head + 1) % N;
        self.len -= 1;
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifo_order_and_wrap() {
        let mut q: EventQueue<u32, 3> = EventQueue::new();
        for round in 0..4u32 {
            assert!(q.push(round * 10));
            assert!(q.push(round * 10 + 1));
            assert_eq!(q.pop(), Some(round * 10));
            assert_eq!(q.pop(), Some(round * 10 + 1));
            assert_eq!(q.pop(), None);
        }
    }

    #[test]
    fn overflow_drops_oldest() {
        let mut q: EventQueue<u32, 2> = EventQueue::new();
        assert!(q.push(1));
        assert!(q.push(2));
        assert!(!q.push(3));
        assert_eq!(q.pop(), Some(2));
        assert_eq!(q.pop(), Some(3));
        assert_eq!(q.pop(), None);
    }
}
