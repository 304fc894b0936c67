//! `ControlConn`: the dataplane's end of one control connection, for a dedicated control thread
//! (no tokio). It owns a nonblocking `UnixStream`, decodes incoming frames, answers protocol
//! errors itself, numbers outgoing events and buffers output until the socket takes it.
//!
//! The control thread's loop, one connection at a time:
//!
//! 1. `fill(Some(tick))`: wait up to `tick` for bytes (the only place it blocks);
//! 2. `next_message()` until `None`: execute each `Request`, `reply(id, result)`;
//! 3. drain shard notifications into `notify`;
//! 4. `flush()`; drop the connection once `is_done()`.
//!
//! Protocol rules it enforces (`docs/control-socket.md`): the peer's first message is a
//! `Hello` of the same version from the control role; a bad frame that names a request id gets
//! an `invalid` reply and the connection lives on; any other bad frame gets an `Error` frame and
//! the connection closes. Output is capped: past `MAX_OUTPUT_BUFFERED`, events are dropped
//! (their `seq` is still used up, so the control daemon sees the gap and resyncs); a reply
//! that finds the output full ends the connection instead (a peer that asks and never reads is
//! not served without bound, and replies cannot be skipped the way events can). A peer that
//! sends no `Hello` within [`HELLO_DEADLINE`] is dropped (`hello_overdue`), so an idle
//! connection cannot hold the one control slot.

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use crate::frame::{encode_frame, FrameDecoder, ProtoError};
use crate::message::{ErrorBody, ErrorCode, Event, Hello, Message, Reply, ReplyResult, Role};
use crate::notification::Notification;
use crate::PROTOCOL_VERSION;

/// Output bytes a `ControlConn` holds before it drops events.
pub const MAX_OUTPUT_BUFFERED: usize = 8 << 20;
/// How long an accepted peer has to send its `Hello`.
pub const HELLO_DEADLINE: Duration = Duration::from_secs(5);
/// Socket reads per `fill`, so one chatty peer cannot hold the control thread.
const READS_PER_FILL: usize = 16;

/// One accepted control connection. See the module docs.
#[derive(Debug)]
pub struct ControlConn {
    stream: UnixStream,
    decoder: FrameDecoder,
    read_buf: Box<[u8]>,
    out: Vec<u8>,
    /// Bytes of `out` already written to the socket.
    written: usize,
    next_seq: u64,
    events_dropped: u64,
    peer_hello: Option<Hello>,
    /// EOF from the peer, or we decided to close (after flushing `out`).
    closing: bool,
    /// Output overflowed with a reply: drop the connection without flushing.
    abandoned: bool,
    accepted_at: Instant,
}

impl ControlConn {
    /// Takes an accepted stream, makes it nonblocking and queues our `Hello`.
    pub fn new(stream: UnixStream, ours: &Hello) -> io::Result<Self> {
        stream.set_nonblocking(true)?;
        let mut conn = Self {
            stream,
            decoder: FrameDecoder::new(),
            read_buf: vec![0; 64 * 1024].into_boxed_slice(),
            out: Vec::new(),
            written: 0,
            next_seq: 0,
            events_dropped: 0,
            peer_hello: None,
            abandoned: false,
            accepted_at: Instant::now(),
            closing: false,
        };
        conn.queue(&Message::Hello(ours.clone()));
        Ok(conn)
    }

    /// Reads what the peer has sent. With `Some(wait)`, blocks up to `wait` for the first bytes
    /// (a zero `wait` is treated as nonblocking); with `None`, never blocks. Returns the bytes
    /// read; EOF marks the connection closing.
    pub fn fill(&mut self, wait: Option<Duration>) -> io::Result<usize> {
        let mut total = 0;
        if let Some(wait) = wait.filter(|w| !w.is_zero()) {
            self.stream.set_nonblocking(false)?;
            self.stream.set_read_timeout(Some(wait))?;
            let first = self.read_once();
            self.stream.set_nonblocking(true)?;
            match first? {
                Some(0) => return Ok(0),
                Some(n) => total += n,
                None => return Ok(0),
            }
        }
        for _ in 0..READS_PER_FILL {
            match self.read_once()? {
                Some(0) | None => break,
                Some(n) => total += n,
            }
        }
        Ok(total)
    }

    /// `Some(n)` bytes read (0 = EOF, now closing), `None` = nothing available.
    fn read_once(&mut self) -> io::Result<Option<usize>> {
        loop {
            match self.stream.read(&mut self.read_buf) {
                Ok(0) => {
                    self.closing = true;
                    return Ok(Some(0));
                }
                Ok(n) => {
                    self.decoder.push(&self.read_buf[..n]);
                    return Ok(Some(n));
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return Ok(None)
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// The next message for the caller. Protocol errors are answered here and never surface;
    /// after a fatal one this returns `None` and `is_done` becomes true once flushed.
    pub fn next_message(&mut self) -> Option<Message> {
        // Bounded: each iteration consumes a frame or returns.
        while !self.closing {
            let msg = match self.decoder.next_frame() {
                Ok(Some(msg)) => msg,
                Ok(None) => return None,
                Err(ProtoError::BadMessage {
                    id: Some(id),
                    field,
                    detail,
                }) if self.peer_hello.is_some() => {
                    let body = ErrorBody {
                        code: ErrorCode::Invalid,
                        message: detail,
                        field,
                    };
                    self.reply(id, ReplyResult::Error(body));
                    continue;
                }
                Err(e) => {
                    self.fail(e.to_error_body());
                    return None;
                }
            };
            match (&self.peer_hello, msg) {
                (None, Message::Hello(hello)) => {
                    if hello.version != PROTOCOL_VERSION {
                        let msg =
                            format!("hello version {} is not {PROTOCOL_VERSION}", hello.version);
                        self.fail(ErrorBody::new(ErrorCode::Invalid, msg).with_field("version"));
                        return None;
                    }
                    if hello.role != Role::Control {
                        self.fail(
                            ErrorBody::new(ErrorCode::Invalid, "expected role control")
                                .with_field("role"),
                        );
                        return None;
                    }
                    self.peer_hello = Some(hello.clone());
                    return Some(Message::Hello(hello));
                }
                (None, _) => {
                    self.fail(
                        ErrorBody::new(ErrorCode::Invalid, "first message must be hello")
                            .with_field("type"),
                    );
                    return None;
                }
                (Some(_), Message::Request(req)) => return Some(Message::Request(req)),
                (Some(_), Message::Error(e)) => {
                    // The peer is closing; nothing to answer.
                    self.closing = true;
                    return Some(Message::Error(e));
                }
                (Some(_), Message::Hello(_) | Message::Reply(_) | Message::Event(_)) => {
                    let detail = "control may send only request frames after hello";
                    self.fail(ErrorBody::new(ErrorCode::Invalid, detail).with_field("type"));
                    return None;
                }
            }
        }
        None
    }

    /// The peer's `Hello`, once received.
    pub fn peer_hello(&self) -> Option<&Hello> {
        self.peer_hello.as_ref()
    }

    /// Queues the reply to request `id`. A reply too large for one frame becomes an `internal`
    /// error reply (list commands page their results to stay below the limit).
    pub fn reply(&mut self, id: u64, result: impl Into<ReplyResult>) {
        if self.pending_output() > MAX_OUTPUT_BUFFERED {
            self.abandoned = true;
            self.closing = true;
            return;
        }
        let msg = Message::Reply(Reply {
            id,
            result: result.into(),
        });
        if let Err(e) = encode_frame(&msg, &mut self.out) {
            let body = ErrorBody::new(ErrorCode::Internal, format!("reply not sent: {e}"));
            self.queue(&Message::Reply(Reply {
                id,
                result: ReplyResult::Error(body),
            }));
        }
    }

    /// Queues an event with the next `seq`. Returns false (and counts it) if it was dropped
    /// because the peer is not reading.
    pub fn notify(&mut self, event: Notification) -> bool {
        let seq = self.next_seq;
        self.next_seq += 1;
        if self.pending_output() > MAX_OUTPUT_BUFFERED {
            self.events_dropped += 1;
            return false;
        }
        self.queue(&Message::Event(Event { seq, event }));
        true
    }

    /// Writes buffered output until the socket would block. Errors mean the connection is dead.
    pub fn flush(&mut self) -> io::Result<()> {
        // Bounded: each write either makes progress or ends the loop.
        while self.written < self.out.len() {
            match self.stream.write(&self.out[self.written..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if self.written == self.out.len() {
            self.out.clear();
            self.written = 0;
        }
        Ok(())
    }

    /// Bytes queued but not yet written.
    pub fn pending_output(&self) -> usize {
        self.out.len() - self.written
    }

    /// Events dropped by `notify` because output was full.
    pub fn events_dropped(&self) -> u64 {
        self.events_dropped
    }

    /// True once the connection should be dropped: the peer closed, or we are closing and every
    /// queued byte (the `Error` frame included) is written.
    pub fn is_done(&self) -> bool {
        self.abandoned || (self.closing && self.pending_output() == 0)
    }

    /// True when the peer has not said `Hello` within `deadline` of the accept.
    pub fn hello_overdue(&self, deadline: Duration) -> bool {
        self.peer_hello.is_none() && self.accepted_at.elapsed() >= deadline
    }

    /// True when output overflowed with a reply (the peer does not read): see the module docs.
    pub fn abandoned(&self) -> bool {
        self.abandoned
    }

    /// The socket, e.g. for `poll(2)` readiness in a multiplexing control thread.
    pub fn stream(&self) -> &UnixStream {
        &self.stream
    }

    fn fail(&mut self, body: ErrorBody) {
        self.queue(&Message::Error(body));
        self.closing = true;
    }

    fn queue(&mut self, msg: &Message) {
        // Hello, Error and error replies are small; only list replies can exceed a frame.
        if encode_frame(msg, &mut self.out).is_err() {
            self.closing = true;
        }
    }
}
