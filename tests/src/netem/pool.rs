//! Datagram buffers, preallocated at relay start so the per-datagram path never allocates.
//! A buffer travels reader → scheduler → (send) → back here. An empty pool means the relay is
//! saturated; the caller drops the datagram and counts it as a queue drop.

use std::sync::{Mutex, PoisonError};

/// Largest datagram the relay forwards. Buffers are one byte longer so a longer datagram
/// (which `recv` truncates silently) shows up as `len > MAX_DATAGRAM` and is dropped.
pub(crate) const MAX_DATAGRAM: usize = 2_048;

#[derive(Debug)]
pub(crate) struct Pool {
    free: Mutex<Vec<Box<[u8]>>>,
}

impl Pool {
    pub(crate) fn new(count: usize) -> Self {
        let free = (0..count)
            .map(|_| vec![0u8; MAX_DATAGRAM + 1].into_boxed_slice())
            .collect();
        Pool {
            free: Mutex::new(free),
        }
    }

    pub(crate) fn take(&self) -> Option<Box<[u8]>> {
        self.free
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop()
    }

    /// Returns a buffer. The vector was built with room for every buffer, so this never
    /// reallocates.
    pub(crate) fn give(&self, buf: Box<[u8]>) {
        self.free
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(buf);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn take_until_empty_then_give_back() {
        let pool = Pool::new(2);
        let a = pool.take().expect("first");
        let b = pool.take().expect("second");
        assert!(pool.take().is_none());
        assert_eq!(a.len(), MAX_DATAGRAM + 1);
        pool.give(a);
        pool.give(b);
        assert!(pool.take().is_some());
    }
}
