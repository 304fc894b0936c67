//! [`MemoryStore`]: the [`Store`] of a daemon run without a state file (tests, throw-away
//! nodes): the same image and ops as [`super::FileStore`], never written anywhere.

use crate::lock::Locked;
use std::sync::Mutex;

use super::{PersistedRoom, PersistedState, Store, StoreError, StoreFuture, StoreOp};

/// See the module docs.
#[derive(Debug)]
pub struct MemoryStore {
    image: Mutex<PersistedState>,
}

impl MemoryStore {
    pub fn new(state: PersistedState) -> Self {
        Self {
            image: Mutex::new(state),
        }
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new(PersistedState::empty())
    }
}

impl Store for MemoryStore {
    fn load(&self) -> Result<PersistedState, StoreError> {
        Ok(self.image.locked().clone())
    }

    fn load_room(&self, name: &str) -> Result<Option<PersistedRoom>, StoreError> {
        Ok(self.image.locked().rooms.get(name).cloned())
    }

    fn apply(&self, ops: Vec<StoreOp>) -> StoreFuture<'_, Result<(), StoreError>> {
        let mut image = self.image.locked();
        for op in ops {
            image.apply(op);
        }
        Box::pin(async { Ok(()) })
    }
}
