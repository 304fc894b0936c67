//! `ControlClient`: a small blocking client over a std `UnixStream`, for tests and tools
//! (`sluice-ctl`-style scripts, the scenario tests). The control daemon proper uses tokio and
//! its own loop but the same `Message` types and framing.
//!
//! One request is outstanding at a time; events that arrive while waiting for a reply are
//! buffered in order and handed out by `next_event`.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::command::{Command, ReplyOk};
use crate::frame::{encode_frame, FrameDecoder, ProtoError};
use crate::message::{ErrorBody, Event, Hello, Message, Request};

/// Why a client call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ControlError {
    #[error("control socket I/O: {0}")]
    Io(#[from] io::Error),
    #[error("undecodable frame from the dataplane: {0}")]
    Proto(#[from] ProtoError),
    /// The dataplane answered the request with an error.
    #[error("request failed: {0}")]
    Failed(ErrorBody),
    /// The dataplane sent an `Error` frame and closed the connection.
    #[error("dataplane closed the connection: {0}")]
    Closed(ErrorBody),
    #[error("connection closed by the peer")]
    Eof,
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The peer broke the protocol (e.g. no `Hello` first).
    #[error("protocol violation: {0}")]
    Unexpected(&'static str),
}

/// Blocking control-socket client. See the module docs.
#[derive(Debug)]
pub struct ControlClient {
    stream: UnixStream,
    decoder: FrameDecoder,
    out: Vec<u8>,
    read_buf: Vec<u8>,
    next_id: u64,
    events: VecDeque<Event>,
    timeout: Duration,
}

impl ControlClient {
    /// How long `hello` and `request` wait for an answer unless `set_timeout` says otherwise.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

    pub fn connect(path: impl AsRef<Path>) -> Result<Self, ControlError> {
        let stream = UnixStream::connect(path)?;
        Ok(Self {
            stream,
            decoder: FrameDecoder::new(),
            out: Vec::new(),
            read_buf: vec![0; 64 * 1024],
            next_id: 1,
            events: VecDeque::new(),
            timeout: Self::DEFAULT_TIMEOUT,
        })
    }

    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    /// Sends our `Hello` and waits for the dataplane's, which must be the first message it sends.
    pub fn hello(&mut self, ours: Hello) -> Result<Hello, ControlError> {
        self.send(&Message::Hello(ours))?;
        let deadline = Instant::now() + self.timeout;
        match self.read_message(deadline)? {
            Some(Message::Hello(theirs)) => Ok(theirs),
            Some(Message::Error(e)) => Err(ControlError::Closed(e)),
            Some(_) => Err(ControlError::Unexpected(
                "first message from the dataplane is not hello",
            )),
            None => Err(ControlError::Timeout(self.timeout)),
        }
    }

    /// Sends `command` and waits for the reply with its id. Replies to other ids (left over from
    /// a request that timed out) are discarded; events are buffered for `next_event`.
    pub fn request(&mut self, command: Command) -> Result<ReplyOk, ControlError> {
        let id = self.next_id;
        self.next_id += 1;
        self.send(&Message::Request(Request { id, command }))?;
        let deadline = Instant::now() + self.timeout;
        // Bounded by the deadline: every iteration either consumes a message or waits on it.
        loop {
            match self.read_message(deadline)? {
                Some(Message::Reply(reply)) if reply.id == id => {
                    return reply.result.into_result().map_err(ControlError::Failed)
                }
                Some(Message::Reply(_)) => {}
                Some(Message::Event(event)) => self.events.push_back(event),
                Some(Message::Error(e)) => return Err(ControlError::Closed(e)),
                Some(Message::Hello(_) | Message::Request(_)) => {
                    return Err(ControlError::Unexpected(
                        "hello or request from the dataplane",
                    ))
                }
                None => return Err(ControlError::Timeout(self.timeout)),
            }
        }
    }

    /// The next event: a buffered one, or one that arrives within `timeout`; `Ok(None)` if none
    /// did. Stray replies are discarded.
    pub fn next_event(&mut self, timeout: Duration) -> Result<Option<Event>, ControlError> {
        if let Some(event) = self.events.pop_front() {
            return Ok(Some(event));
        }
        let deadline = Instant::now() + timeout;
        loop {
            match self.read_message(deadline)? {
                Some(Message::Event(event)) => return Ok(Some(event)),
                Some(Message::Reply(_)) => {}
                Some(Message::Error(e)) => return Err(ControlError::Closed(e)),
                Some(Message::Hello(_) | Message::Request(_)) => {
                    return Err(ControlError::Unexpected(
                        "hello or request from the dataplane",
                    ))
                }
                None => return Ok(None),
            }
        }
    }

    fn send(&mut self, msg: &Message) -> Result<(), ControlError> {
        self.out.clear();
        encode_frame(msg, &mut self.out)?;
        self.stream.write_all(&self.out)?;
        Ok(())
    }

    /// The next message, or `None` once `deadline` passes.
    fn read_message(&mut self, deadline: Instant) -> Result<Option<Message>, ControlError> {
        loop {
            if let Some(msg) = self.decoder.next_frame()? {
                return Ok(Some(msg));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            // A zero read timeout means "block forever" to std; `left` is non-zero here.
            self.stream.set_read_timeout(Some(left))?;
            match self.stream.read(&mut self.read_buf) {
                Ok(0) => return Err(ControlError::Eof),
                Ok(n) => self.decoder.push(&self.read_buf[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return Ok(None)
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
}
