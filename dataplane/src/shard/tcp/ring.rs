//! The send queue of a bound ICE-TCP connection: a fixed ring of bytes, made when the
//! connection binds; nothing grows it afterwards.

/// A fixed ring of bytes to send.
#[derive(Debug)]
pub(super) struct TxRing {
    pub(super) buf: Box<[u8]>,
    head: usize,
    pub(super) len: usize,
}

impl TxRing {
    pub(super) fn new(cap: usize) -> Self {
        Self {
            buf: vec![0; cap].into_boxed_slice(),
            head: 0,
            len: 0,
        }
    }

    /// Appends `bytes` (the caller checked the room).
    pub(super) fn put(&mut self, bytes: &[u8]) {
        let cap = self.buf.len();
        let at = (self.head + self.len) % cap;
        let first = bytes.len().min(cap - at);
        self.buf[at..at + first].copy_from_slice(&bytes[..first]);
        self.buf[..bytes.len() - first].copy_from_slice(&bytes[first..]);
        self.len += bytes.len();
    }

    pub(super) fn slices(&self) -> [&[u8]; 2] {
        let cap = self.buf.len();
        let end = self.head + self.len;
        if end <= cap {
            [&self.buf[self.head..end], &[]]
        } else {
            [&self.buf[self.head..], &self.buf[..end - cap]]
        }
    }

    pub(super) fn consume(&mut self, n: usize) {
        self.head = (self.head + n) % self.buf.len();
        self.len -= n;
        if self.len == 0 {
            self.head = 0;
        }
    }
}
