//! A bounded FIFO over storage reserved at construction: pushing into a
//! full ring refuses (the caller counts it) instead of growing.

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
        self.items.pop_front()
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
}
