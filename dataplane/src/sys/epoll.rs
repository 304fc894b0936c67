//! A small `epoll(7)` instance: a worker's TCP sockets (its ICE-TCP listener and connections)
//! report readiness here, and the worker's backend watches the epoll descriptor itself (an
//! io_uring multishot poll, or one more `pollfd`), so TCP activity ends the worker's wait like
//! a datagram does. Level-triggered: what a worker leaves unread for its next iteration is
//! reported again.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// Readable (or a new connection on a listener), or the peer closed its side.
pub const READ: u32 = (libc::EPOLLIN | libc::EPOLLRDHUP) as u32;
/// Readable and writable (a connection with bytes queued to send).
pub const READ_WRITE: u32 = READ | libc::EPOLLOUT as u32;

/// One readiness report: the token given to [`Epoll::add`] and what is ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Ready {
    pub token: u64,
    pub readable: bool,
    pub writable: bool,
    /// Error or hang-up: the connection is finished.
    pub hangup: bool,
}

#[derive(Debug)]
pub struct Epoll {
    fd: OwnedFd,
    /// Preallocated event array for `wait`.
    events: Vec<libc::epoll_event>,
}

impl Epoll {
    /// An epoll instance reporting at most `batch` descriptors per [`Epoll::wait`].
    pub fn new(batch: usize) -> io::Result<Self> {
        // SAFETY: epoll_create1 takes no pointers; a negative return is handled below.
        let raw = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a fresh descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        Ok(Self {
            fd,
            events: vec![libc::epoll_event { events: 0, u64: 0 }; batch.max(1)],
        })
    }

    pub fn raw(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    fn ctl(&self, op: libc::c_int, fd: RawFd, token: u64, events: u32) -> io::Result<()> {
        let mut ev = libc::epoll_event { events, u64: token };
        // SAFETY: `ev` is a valid epoll_event on the stack for the duration of the call; the
        // kernel copies it. A bad `fd` is reported as an error, not undefined behaviour.
        let rc = unsafe { libc::epoll_ctl(self.fd.as_raw_fd(), op, fd, &mut ev) };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    pub fn add(&self, fd: RawFd, token: u64, events: u32) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_ADD, fd, token, events)
    }

    pub fn modify(&self, fd: RawFd, token: u64, events: u32) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_MOD, fd, token, events)
    }

    pub fn delete(&self, fd: RawFd) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_DEL, fd, 0, 0)
    }

    /// What is ready now (never blocks), at most the batch size given to [`Epoll::new`].
    pub fn wait(&mut self, out: &mut Vec<Ready>) -> io::Result<usize> {
        out.clear();
        let cap = self.events.len().min(i32::MAX as usize) as libc::c_int;
        // SAFETY: `events` holds `cap` initialised epoll_events the kernel may overwrite; the
        // timeout 0 makes the call return at once.
        let n = unsafe { libc::epoll_wait(self.fd.as_raw_fd(), self.events.as_mut_ptr(), cap, 0) };
        if n < 0 {
            let e = io::Error::last_os_error();
            return if e.kind() == io::ErrorKind::Interrupted {
                Ok(0)
            } else {
                Err(e)
            };
        }
        for ev in &self.events[..n as usize] {
            let bits = ev.events;
            out.push(Ready {
                token: ev.u64,
                readable: bits & (libc::EPOLLIN as u32) != 0,
                writable: bits & (libc::EPOLLOUT as u32) != 0,
                hangup: bits & ((libc::EPOLLERR | libc::EPOLLHUP | libc::EPOLLRDHUP) as u32) != 0,
            });
        }
        Ok(n as usize)
    }
}
