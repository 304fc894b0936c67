//! The control daemon's link to the dataplane over its control socket (`docs/control-socket.md`):
//! an async twin of `sluice_proto::ControlClient` on tokio's `UnixStream`, using the
//! same `encode_frame` / `FrameDecoder`.
//!
//! One background task owns the socket. It connects (retrying with backoff while the dataplane
//! is down or restarting), exchanges `hello`, then multiplexes: requests from any task go out in
//! order, replies are routed back to their caller by id, events are broadcast. Every successful
//! handshake bumps [`Link::connected`] so the server can resync its state (a changed `instance`
//! means the dataplane restarted and holds nothing). A gap in event `seq` is reported the same
//! way, because the dataplane dropped events and only a resync can tell what they were.

use crate::lock::Locked;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sluice_proto::{
    encode_frame, Command, ErrorBody, FrameDecoder, Hello, Message, Notification, ReplyOk, Request,
    Role,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::sync::{broadcast, mpsc, oneshot, watch};

/// Why a request to the dataplane did not succeed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LinkError {
    /// Not connected (the dataplane is down, restarting, or not configured).
    #[error("dataplane unavailable")]
    Unavailable,
    /// The connection dropped before the reply came; the effect is unknown until resync.
    #[error("dataplane connection lost")]
    Lost,
    #[error("dataplane did not answer within {0:?}")]
    Timeout(Duration),
    /// The dataplane refused the request.
    #[error("dataplane: {0}")]
    Failed(ErrorBody),
}

/// What a (re)connection looks like to the rest of the daemon.
#[derive(Debug, Clone)]
pub struct Connected {
    /// Increases on every handshake and on every event-sequence gap: each value calls for a
    /// resync.
    pub generation: u64,
    /// The dataplane's hello: media addresses, fingerprint, shards, instance.
    pub hello: Arc<Hello>,
}

/// A cloneable handle to the link task.
#[derive(Debug, Clone)]
pub struct Link {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    out: Mutex<Option<mpsc::UnboundedSender<Outgoing>>>,
    pending: Mutex<HashMap<u64, oneshot::Sender<Result<ReplyOk, LinkError>>>>,
    next_id: AtomicU64,
    events: broadcast::Sender<Notification>,
    connected: watch::Sender<Option<Connected>>,
    instance: String,
    /// Connections not used: the listener runs as another user.
    refused: AtomicU64,
}

#[derive(Debug)]
struct Outgoing {
    id: u64,
    command: Command,
}

impl Link {
    /// How long a request waits for its reply.
    pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

    /// Starts the link task connecting to `path`; `instance` names us in our hello.
    pub fn spawn(path: PathBuf, instance: String) -> Self {
        let (events, _) = broadcast::channel(1024);
        let (connected, _) = watch::channel(None);
        let inner = Arc::new(Inner {
            out: Mutex::new(None),
            pending: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            events,
            connected,
            instance,
            refused: AtomicU64::new(0),
        });
        tokio::spawn(run(Arc::clone(&inner), path));
        Self { inner }
    }

    /// Connections refused because the listener runs as another user.
    pub fn refused_peers(&self) -> u64 {
        self.inner
            .refused
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The current connection, if any.
    pub fn current(&self) -> Option<Connected> {
        self.inner.connected.borrow().clone()
    }

    /// Watch (re)connections; see [`Connected::generation`].
    pub fn connected(&self) -> watch::Receiver<Option<Connected>> {
        self.inner.connected.subscribe()
    }

    /// Dataplane events, in order (a lagging receiver loses the oldest).
    pub fn events(&self) -> broadcast::Receiver<Notification> {
        self.inner.events.subscribe()
    }

    /// Queues `command` without waiting for its reply, which is dropped: it goes out after every
    /// request queued before this call returned and before every one queued after.
    pub fn send(&self, command: Command) -> Result<(), LinkError> {
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let out = self.inner.out.locked();
        let out = out.as_ref().ok_or(LinkError::Unavailable)?;
        out.send(Outgoing { id, command })
            .map_err(|_| LinkError::Unavailable)
    }

    /// Sends `command` and waits for its reply.
    pub async fn request(&self, command: Command) -> Result<ReplyOk, LinkError> {
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        {
            let out = self.inner.out.locked();
            let Some(out) = out.as_ref() else {
                return Err(LinkError::Unavailable);
            };
            self.inner.pending.locked().insert(id, tx);
            if out.send(Outgoing { id, command }).is_err() {
                self.inner.pending.locked().remove(&id);
                return Err(LinkError::Unavailable);
            }
        }
        match tokio::time::timeout(Self::REQUEST_TIMEOUT, rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(LinkError::Lost),
            Err(_) => {
                self.inner.pending.locked().remove(&id);
                Err(LinkError::Timeout(Self::REQUEST_TIMEOUT))
            }
        }
    }
}

/// Connect, serve, and reconnect forever (the task ends with the runtime).
async fn run(inner: Arc<Inner>, path: PathBuf) {
    let mut backoff = Duration::from_millis(50);
    let mut generation = 0u64;
    loop {
        match UnixStream::connect(&path).await {
            Ok(stream) if !same_user(&stream) => {
                inner
                    .refused
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tracing::warn!(
                    path = %path.display(),
                    "the control socket's listener runs as another user: not attaching"
                );
            }
            Ok(stream) => {
                backoff = Duration::from_millis(50);
                if let Err(e) = serve(&inner, stream, &mut generation).await {
                    tracing::warn!(error = %e, "dataplane link closed");
                }
                inner.out.locked().take();
                inner.connected.send_replace(None);
                for (_, tx) in inner.pending.locked().drain() {
                    let _ = tx.send(Err(LinkError::Lost));
                }
            }
            Err(e) => {
                tracing::debug!(path = %path.display(), error = %e, "dataplane not reachable")
            }
        }
        tokio::time::sleep(backoff).await;
        // Connecting to a Unix socket is cheap; a restarted dataplane is found within 200 ms.
        backoff = (backoff * 2).min(Duration::from_millis(200));
    }
}

/// Whether the process listening on `stream`'s other end runs as our user (`SO_PEERCRED`,
/// finding #9): a socket another user bound — in a directory they control — would otherwise
/// receive every session's ICE credentials and announce its own media address and DTLS
/// fingerprint.
fn same_user(stream: &UnixStream) -> bool {
    use std::os::unix::fs::MetadataExt;
    let ours = std::fs::metadata("/proc/self").map(|m| m.uid());
    match (stream.peer_cred(), ours) {
        (Ok(peer), Ok(ours)) => peer.uid() == ours,
        _ => false,
    }
}

async fn serve(inner: &Inner, stream: UnixStream, generation: &mut u64) -> std::io::Result<()> {
    let (mut rd, mut wr) = stream.into_split();
    let mut buf = Vec::new();
    encode_frame(
        &Message::Hello(Hello::control(inner.instance.clone())),
        &mut buf,
    )
    .map_err(std::io::Error::other)?;
    wr.write_all(&buf).await?;

    let mut decoder = FrameDecoder::new();
    let mut read_buf = vec![0u8; 64 * 1024];
    let hello = loop {
        if let Some(msg) = decoder.next_frame().map_err(std::io::Error::other)? {
            match msg {
                Message::Hello(h) if h.role == Role::Dataplane => break h,
                other => {
                    return Err(std::io::Error::other(format!(
                        "expected the dataplane's hello, got {other:?}"
                    )))
                }
            }
        }
        let n = tokio::time::timeout(Duration::from_secs(5), rd.read(&mut read_buf))
            .await
            .map_err(|_| std::io::Error::other("no hello from the dataplane"))??;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        decoder.push(&read_buf[..n]);
    };
    tracing::info!(instance = %hello.instance, shards = hello.shards, media = ?hello.media_addrs, "dataplane connected");
    let (tx, mut rx) = mpsc::unbounded_channel::<Outgoing>();
    *inner.out.locked() = Some(tx);
    let hello = Arc::new(hello);
    *generation += 1;
    inner.connected.send_replace(Some(Connected {
        generation: *generation,
        hello: Arc::clone(&hello),
    }));

    let mut expected_seq = 0u64;
    loop {
        // Drain frames already buffered before reading more.
        while let Some(msg) = decoder.next_frame().map_err(std::io::Error::other)? {
            match msg {
                Message::Reply(reply) => {
                    let waiter = inner.pending.locked().remove(&reply.id);
                    if let Some(tx) = waiter {
                        let _ = tx.send(reply.result.into_result().map_err(LinkError::Failed));
                    }
                }
                Message::Event(event) => {
                    if event.seq != expected_seq {
                        tracing::warn!(
                            expected = expected_seq,
                            got = event.seq,
                            "dataplane dropped events; resyncing"
                        );
                        *generation += 1;
                        inner.connected.send_replace(Some(Connected {
                            generation: *generation,
                            hello: Arc::clone(&hello),
                        }));
                    }
                    expected_seq = event.seq + 1;
                    let _ = inner.events.send(event.event);
                }
                Message::Error(e) => return Err(std::io::Error::other(e.to_string())),
                Message::Hello(_) | Message::Request(_) => {
                    return Err(std::io::Error::other("unexpected hello or request"))
                }
            }
        }
        tokio::select! {
            n = rd.read(&mut read_buf) => {
                let n = n?;
                if n == 0 {
                    return Err(std::io::ErrorKind::UnexpectedEof.into());
                }
                decoder.push(&read_buf[..n]);
            }
            out = rx.recv() => {
                let Some(Outgoing { id, command }) = out else { return Ok(()) };
                buf.clear();
                let msg = Message::Request(Request { id, command });
                if let Err(e) = encode_frame(&msg, &mut buf) {
                    if let Some(tx) = inner.pending.locked().remove(&id) {
                        let _ = tx.send(Err(LinkError::Failed(e.to_error_body())));
                    }
                    continue;
                }
                wr.write_all(&buf).await?;
            }
        }
    }
}
