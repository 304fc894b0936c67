//! Cross-thread wake-up for a sleeping worker: an `eventfd(2)` the backend watches next to its
//! socket (a multishot poll SQE for io_uring, a second `pollfd` for the plain backend).

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;

/// Wakes the worker that owns the backend this came from. `Send + Clone`; waking is a single
/// `write(2)` and is safe to call from any thread at any time, including before the worker
/// sleeps (the eventfd stays readable until the worker drains it, so no wake-up is lost).
#[derive(Debug, Clone)]
pub struct Waker {
    /// `None`: the backend was opened without a waker (`SocketConfig::waker`).
    fd: Option<Arc<File>>,
}

impl Waker {
    pub fn wake(&self) {
        // EAGAIN means the counter is saturated, i.e. a wake-up is already pending: fine.
        if let Some(fd) = &self.fd {
            let _ = (&**fd).write(&1u64.to_ne_bytes());
        }
    }
}

/// The backend's side: owns the eventfd and drains it.
#[derive(Debug)]
pub(crate) struct WakeFd {
    fd: Arc<File>,
}

impl Waker {
    /// A waker that wakes nothing (for a backend opened without an eventfd).
    pub(crate) fn none() -> Self {
        Waker { fd: None }
    }
}

impl WakeFd {
    pub(crate) fn new() -> io::Result<Self> {
        // SAFETY: eventfd takes no pointers; a negative return is handled below.
        let raw = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a fresh descriptor that nothing else owns.
        let owned = unsafe { OwnedFd::from_raw_fd(raw) };
        Ok(Self {
            fd: Arc::new(File::from(owned)),
        })
    }

    pub(crate) fn waker(&self) -> Waker {
        Waker {
            fd: Some(Arc::clone(&self.fd)),
        }
    }

    pub(crate) fn raw(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Resets the counter; returns whether a wake-up was pending.
    pub(crate) fn drain(&self) -> bool {
        let mut b = [0u8; 8];
        matches!((&*self.fd).read(&mut b), Ok(8))
    }
}
