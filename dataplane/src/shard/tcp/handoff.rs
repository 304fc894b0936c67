//! Connections moving between workers: a connection's first frame named a session another
//! worker owns, so the connection follows it (the stream and the bytes already read).

use std::net::{SocketAddr, TcpStream};
use std::time::Instant;

/// A connection moving to the worker that owns its session: the stream and every byte read from
/// it and not yet handled (starting with the frame that named the session).
#[derive(Debug)]
pub struct Handoff {
    pub stream: TcpStream,
    pub peer: SocketAddr,
    pub bytes: Vec<u8>,
    pub deadline: Instant,
}

/// Connections in flight to each worker: one bounded queue per worker (a full one closes the
/// connection, counted).
#[derive(Debug)]
pub struct Handoffs {
    queues: Vec<crossbeam_queue::ArrayQueue<Handoff>>,
}

/// Hand-overs a worker may have waiting.
const HANDOFF_CAPACITY: usize = 64;

impl Handoffs {
    pub fn new(workers: usize) -> Self {
        Self {
            queues: (0..workers)
                .map(|_| crossbeam_queue::ArrayQueue::new(HANDOFF_CAPACITY))
                .collect(),
        }
    }

    /// False (the connection is dropped, closing it) when `to`'s queue is full.
    pub fn push(&self, to: usize, h: Handoff) -> bool {
        self.queues.get(to).is_some_and(|q| q.push(h).is_ok())
    }

    pub fn pop(&self, me: usize) -> Option<Handoff> {
        self.queues.get(me)?.pop()
    }
}
