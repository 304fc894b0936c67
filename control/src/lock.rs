//! Mutexes that survive a panic (finding #8): a thread that panics while holding a lock
//! poisons it, and `lock().expect(..)` would then panic in every later user, taking the whole
//! control plane down with one bug. The data behind each of our locks is updated in one step
//! (a map insert, a counter), so it stays consistent and is taken over as it is.

use std::sync::{Mutex, MutexGuard, PoisonError};

pub(crate) trait Locked<T> {
    /// The guard, poisoned or not.
    fn locked(&self) -> MutexGuard<'_, T>;
}

impl<T> Locked<T> for Mutex<T> {
    fn locked(&self) -> MutexGuard<'_, T> {
        self.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
