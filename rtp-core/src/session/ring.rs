//! A bounded FIFO over storage reserved at construction: pushing into a
//! full ring refuses (the caller counts it) instead of growing. A ring that
//! empties starts again at its first slot, so it writes only as deep as it
//! has ever been full, not round all of its reservation (D117).

use std::collections::VecDeque;

#[derive(Debug)]
pub(super) struct Ring<T> {
    items: VecDeque<T>,
    cap: usize,
}

impl<T> Ring<T> {
    pub(super) fn new(cap: usize) -> Self {
        Self {
            items: VecDeque::with_capacity(cap),
            cap,
        }
    }

    /// Appends `item`; false (and `item` dropped) when full. Below the
    /// reserved capacity a `VecDeque` never reallocates.
    pub(super) fn push(&mut self, item: T) -> bool {
        if self.items.len() >= self.cap {
            return false;
        }
        self.items.push_back(item);
        true
    }

    pub(super) fn pop(&mut self) -> Option<T> {
        let item = self.items.pop_front();
        if self.items.is_empty() {
            // `VecDeque::clear` puts the head back at the first slot.
            self.items.clear();
        }
        item
    }

    #[cfg(test)]
    pub(super) fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_when_full_and_keeps_order() {
        let mut r = Ring::new(2);
        assert!(r.push(1));
        assert!(r.push(2));
        assert!(!r.push(3));
        assert_eq!(r.pop(), Some(1));
        assert!(r.push(4));
        assert_eq!(r.pop(), Some(2));
        assert_eq!(r.pop(), Some(4));
        assert!(r.is_empty());
    }

    #[test]
    fn an_emptied_ring_starts_again_at_its_first_slot() {
        let mut r = Ring::new(256);
        assert!(r.push(0u64));
        let first = r.items.as_slices().0.as_ptr();
        assert_eq!(r.pop(), Some(0));
        // A thousand datagrams' outputs, two at a time, each pair drained.
        for i in 0..1000u64 {
            assert!(r.push(2 * i));
            assert!(r.push(2 * i + 1));
            assert_eq!(r.pop(), Some(2 * i));
            assert_eq!(r.pop(), Some(2 * i + 1));
        }
        assert!(r.push(7));
        assert_eq!(
            r.items.as_slices().0.as_ptr(),
            first,
            "written only two slots deep"
        );
    }
}
