//! The relay's threads. Readers (one on the listen socket, one per client's upstream socket)
//! stamp each datagram with its arrival time and queue it, without blocking, on one bounded
//! channel. The scheduler thread owns every decision: it takes datagrams and control commands
//! from that channel in order, asks the direction's [`Impairer`], keeps the survivors in a
//! binary heap ordered by release time, and sends each when its time comes.
//!
//! Each client address gets its own upstream socket, connected to the upstream, so the server
//! sees one 5-tuple per client (ICE needs that) and the kernel filters out anything that does
//! not come from the upstream.

use std::cmp::{Ordering as CmpOrdering, Reverse};
use std::collections::hash_map::Entry;
use std::collections::{BinaryHeap, HashMap};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::impairment::{Direction, DropReason, Impairer, Impairment, Verdict};
use super::pool::{Pool, MAX_DATAGRAM};
use super::relay::RelayConfig;
use super::stats::{bump, Counters};

/// How often a blocked reader looks at the stop flag.
pub(crate) const READ_TIMEOUT: Duration = Duration::from_millis(50);
/// How long the scheduler waits for an event when nothing is queued for release.
const IDLE_WAIT: Duration = Duration::from_millis(100);

/// What the scheduler's channel carries.
#[derive(Debug)]
pub(crate) enum Event {
    Datagram(Datagram),
    Command(Command),
}

#[derive(Debug)]
pub(crate) enum Command {
    Set(Direction, Impairment),
    Pause(Direction),
    Resume(Direction),
    Stop,
}

/// A datagram read by a reader. `client` is its source (up) or its destination (down).
#[derive(Debug)]
pub(crate) struct Datagram {
    direction: Direction,
    client: SocketAddr,
    arrived: Instant,
    buf: Box<[u8]>,
    len: usize,
}

/// What [`run`] needs, built by `Relay::start`.
#[derive(Debug)]
pub(crate) struct Setup {
    pub(crate) listen: UdpSocket,
    pub(crate) config: RelayConfig,
    pub(crate) events: Receiver<Event>,
    /// Cloned into each upstream reader.
    pub(crate) readers_tx: SyncSender<Event>,
    pub(crate) pool: Arc<Pool>,
    pub(crate) counters: Arc<Counters>,
    pub(crate) stop: Arc<AtomicBool>,
}

/// Reads `socket` until `stop`, queueing each datagram for the scheduler. `client` is `None`
/// for the listen socket (the source address is the client) and the owning client for an
/// upstream socket.
pub(crate) fn read_loop(
    socket: UdpSocket,
    direction: Direction,
    client: Option<SocketAddr>,
    tx: &SyncSender<Event>,
    pool: &Pool,
    counters: &Counters,
    stop: &AtomicBool,
) {
    let stats = counters.dir(direction);
    // Receives into this when the pool is dry, so the datagram is still drained and counted.
    let mut spare = vec![0u8; MAX_DATAGRAM + 1].into_boxed_slice();
    while !stop.load(Ordering::Relaxed) {
        let mut buf = pool.take();
        let target = buf.as_deref_mut().unwrap_or(&mut spare[..]);
        let received = match client {
            None => socket.recv_from(target),
            Some(client) => socket.recv(target).map(|n| (n, client)),
        };
        let arrived = Instant::now();
        match received {
            Ok((len, from)) => {
                bump(&stats.received);
                if len > MAX_DATAGRAM {
                    bump(&stats.dropped_other);
                } else if let Some(buf) = buf.take() {
                    let datagram = Datagram {
                        direction,
                        client: from,
                        arrived,
                        buf,
                        len,
                    };
                    match tx.try_send(Event::Datagram(datagram)) {
                        Ok(()) => {}
                        Err(TrySendError::Full(Event::Datagram(d))) => {
                            stats.dropped(DropReason::Queue);
                            pool.give(d.buf);
                        }
                        // The scheduler has gone: the relay is stopping.
                        Err(_) => return,
                    }
                } else {
                    stats.dropped(DropReason::Queue);
                }
            }
            // Timeouts let the loop see `stop`; refused/reset are ICMP errors a connected UDP
            // socket reports for an earlier send, not a broken socket.
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                        | io::ErrorKind::ConnectionRefused
                        | io::ErrorKind::ConnectionReset
                ) => {}
            Err(_) => return,
        }
        if let Some(buf) = buf {
            pool.give(buf);
        }
    }
}

/// The scheduler thread's body.
pub(crate) fn run(setup: Setup) {
    let mut scheduler = Scheduler::new(setup);
    scheduler.run();
    scheduler.finish();
}

struct Scheduler {
    setup: Setup,
    impairers: [Impairer; 2],
    paused: [bool; 2],
    queued: [usize; 2],
    pending: BinaryHeap<Reverse<Pending>>,
    next_seq: u64,
    clients: HashMap<SocketAddr, UdpSocket>,
    readers: Vec<JoinHandle<()>>,
}

/// A datagram waiting for release. Ordered by release time, then by arrival order (`seq`),
/// so equal release times leave first-in first-out and the order is deterministic.
struct Pending {
    release: Instant,
    seq: u64,
    direction: Direction,
    client: SocketAddr,
    buf: Box<[u8]>,
    len: usize,
}

impl Scheduler {
    fn new(setup: Setup) -> Self {
        let seed = setup.config.seed;
        let (up, down) = (setup.config.up, setup.config.down);
        let queue = setup.config.queue_packets;
        let max_clients = setup.config.max_clients;
        Scheduler {
            impairers: [
                Impairer::new(Direction::Up, seed, up),
                Impairer::new(Direction::Down, seed, down),
            ],
            paused: [false; 2],
            queued: [0; 2],
            pending: BinaryHeap::with_capacity(2 * queue),
            next_seq: 0,
            clients: HashMap::with_capacity(max_clients),
            readers: Vec::with_capacity(max_clients),
            setup,
        }
    }

    fn run(&mut self) {
        while !self.setup.stop.load(Ordering::Relaxed) {
            let wait = self.pending.peek().map_or(IDLE_WAIT, |Reverse(p)| {
                p.release.saturating_duration_since(Instant::now())
            });
            match self.setup.events.recv_timeout(wait) {
                Ok(Event::Datagram(d)) => self.accept(d),
                Ok(Event::Command(Command::Stop)) => return,
                Ok(Event::Command(c)) => self.command(c),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
            self.release_due(Instant::now());
        }
    }

    fn finish(mut self) {
        self.setup.stop.store(true, Ordering::Relaxed);
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
    }

    fn command(&mut self, command: Command) {
        match command {
            Command::Set(direction, impairment) => {
                self.impairers[direction.index()].set(impairment);
            }
            Command::Pause(direction) => self.paused[direction.index()] = true,
            Command::Resume(direction) => self.paused[direction.index()] = false,
            Command::Stop => self.setup.stop.store(true, Ordering::Relaxed),
        }
    }

    fn accept(&mut self, d: Datagram) {
        let i = d.direction.index();
        // A cheap refcount bump so the counters stay borrowable across `&mut self` calls.
        let counters = Arc::clone(&self.setup.counters);
        let stats = counters.dir(d.direction);
        if d.direction == Direction::Up && !self.ensure_client(d.client) {
            bump(&stats.dropped_other);
            self.setup.pool.give(d.buf);
            return;
        }
        let (release, reordered, duplicate) =
            match self.impairers[i].decide(d.arrived, d.len, self.paused[i]) {
                Verdict::Deliver {
                    release,
                    reordered,
                    duplicate,
                } => (release, reordered, duplicate),
                Verdict::Drop(reason) => {
                    stats.dropped(reason);
                    self.setup.pool.give(d.buf);
                    return;
                }
            };
        if self.queued[i] >= self.setup.config.queue_packets {
            stats.dropped(DropReason::Queue);
            self.setup.pool.give(d.buf);
            return;
        }
        if reordered {
            bump(&stats.reordered);
        }
        let copy = if duplicate && self.queued[i] + 1 < self.setup.config.queue_packets {
            self.setup.pool.take().map(|mut buf| {
                buf[..d.len].copy_from_slice(&d.buf[..d.len]);
                buf
            })
        } else {
            None
        };
        self.push(release, d.direction, d.client, d.buf, d.len);
        if let Some(buf) = copy {
            bump(&stats.duplicated);
            self.push(release, d.direction, d.client, buf, d.len);
        }
    }

    fn push(
        &mut self,
        release: Instant,
        direction: Direction,
        client: SocketAddr,
        buf: Box<[u8]>,
        len: usize,
    ) {
        self.queued[direction.index()] += 1;
        self.next_seq += 1;
        self.pending.push(Reverse(Pending {
            release,
            seq: self.next_seq,
            direction,
            client,
            buf,
            len,
        }));
    }

    /// Makes sure `client` has its upstream socket and reader; false when the client limit
    /// is reached or the socket cannot be made.
    fn ensure_client(&mut self, client: SocketAddr) -> bool {
        let max_clients = self.setup.config.max_clients;
        let count = self.clients.len();
        let Entry::Vacant(slot) = self.clients.entry(client) else {
            return true;
        };
        if count >= max_clients {
            return false;
        }
        let source = self.setup.config.upstream_source.filter(|_| count == 0);
        let Ok((socket, reader_socket)) = upstream_socket(self.setup.config.upstream, source)
        else {
            return false;
        };
        let (tx, pool, counters, stop) = (
            self.setup.readers_tx.clone(),
            self.setup.pool.clone(),
            self.setup.counters.clone(),
            self.setup.stop.clone(),
        );
        let spawned = thread::Builder::new()
            .name("netem-upstream".into())
            .spawn(move || {
                read_loop(
                    reader_socket,
                    Direction::Down,
                    Some(client),
                    &tx,
                    &pool,
                    &counters,
                    &stop,
                )
            });
        let Ok(reader) = spawned else {
            return false;
        };
        self.readers.push(reader);
        slot.insert(socket);
        self.setup.counters.client_added();
        true
    }

    fn release_due(&mut self, now: Instant) {
        while self
            .pending
            .peek()
            .is_some_and(|Reverse(p)| p.release <= now)
        {
            let Some(Reverse(p)) = self.pending.pop() else {
                break;
            };
            let i = p.direction.index();
            self.queued[i] -= 1;
            let stats = self.setup.counters.dir(p.direction);
            if self.paused[i] {
                stats.dropped(DropReason::Pause);
            } else {
                let payload = &p.buf[..p.len];
                let sent = match p.direction {
                    Direction::Up => self
                        .clients
                        .get(&p.client)
                        .map(|socket| socket.send(payload)),
                    Direction::Down => Some(self.setup.listen.send_to(payload, p.client)),
                };
                match sent {
                    Some(Ok(_)) => bump(&stats.forwarded),
                    _ => bump(&stats.dropped_other),
                }
            }
            self.setup.pool.give(p.buf);
        }
    }
}

/// A socket connected to `upstream` plus a clone for its reader, bound to `source` when given,
/// else to loopback when the upstream is loopback, so the relay opens nothing on other
/// interfaces.
fn upstream_socket(
    upstream: SocketAddr,
    source: Option<SocketAddr>,
) -> io::Result<(UdpSocket, UdpSocket)> {
    let ip = match upstream.ip() {
        ip if ip.is_loopback() => ip,
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    };
    let socket = UdpSocket::bind(source.unwrap_or(SocketAddr::new(ip, 0)))?;
    socket.connect(upstream)?;
    socket.set_read_timeout(Some(READ_TIMEOUT))?;
    let reader = socket.try_clone()?;
    Ok((socket, reader))
}

impl PartialEq for Pending {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == CmpOrdering::Equal
    }
}

impl Eq for Pending {}

impl PartialOrd for Pending {
    fn partial_cmp(&self, other: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(other))
    }
}

impl Ord for Pending {
    fn cmp(&self, other: &Self) -> CmpOrdering {
        (self.release, self.seq).cmp(&(other.release, other.seq))
    }
}
