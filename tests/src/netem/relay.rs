//! The relay's public face: [`RelayConfig`], [`Relay::start`] and the [`RelayHandle`] that
//! changes impairments, pauses directions, reads stats and stops it. The threads themselves
//! live in `scheduler.rs`.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, SyncSender};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{self, JoinHandle};

use super::impairment::{Direction, Impairment, ImpairmentError};
use super::pool::Pool;
use super::scheduler::{self, Command, Event};
use super::stats::{Counters, Stats};

/// Everything a relay needs to start.
#[derive(Clone, Debug)]
pub struct RelayConfig {
    /// Where clients send (port 0 picks a free one; see [`RelayHandle::local_addr`]).
    pub listen: SocketAddr,
    /// The server every client's traffic goes to, and the only address replies come from.
    pub upstream: SocketAddr,
    /// Client → upstream impairment.
    pub up: Impairment,
    /// Upstream → client impairment.
    pub down: Impairment,
    /// Seed of both directions' random streams.
    pub seed: u64,
    /// Permit listen or upstream addresses off loopback (namespaces, lab hosts). Off by
    /// default so a test can only ever move traffic on 127.0.0.1 / ::1.
    pub allow_non_loopback: bool,
    /// Most distinct clients (each costs an upstream socket and a reader thread).
    pub max_clients: usize,
    /// Most datagrams waiting for release per direction; more are queue drops.
    pub queue_packets: usize,
    /// Bind the first client's upstream socket to this address, so that an upstream which
    /// accepts one fixed source (a dataplane trunk, which is told its peer's address up front)
    /// can be given it. `None`: an ephemeral port per client.
    pub upstream_source: Option<SocketAddr>,
}

impl RelayConfig {
    /// A perfect relay (no impairment, seed 0) from `listen` to `upstream`.
    pub fn new(listen: SocketAddr, upstream: SocketAddr) -> Self {
        RelayConfig {
            listen,
            upstream,
            up: Impairment::default(),
            down: Impairment::default(),
            seed: 0,
            allow_non_loopback: false,
            max_clients: 64,
            queue_packets: 1_024,
            upstream_source: None,
        }
    }

    fn impairment(&self, direction: Direction) -> Impairment {
        match direction {
            Direction::Up => self.up,
            Direction::Down => self.down,
        }
    }
}

/// Namespace for [`Relay::start`].
#[derive(Debug)]
pub struct Relay;

impl Relay {
    /// Binds the listen socket and starts the relay threads.
    ///
    /// Fails with `InvalidInput` for a non-loopback address without `allow_non_loopback`, an
    /// invalid impairment or zero limits, and with the bind error otherwise.
    pub fn start(config: RelayConfig) -> io::Result<RelayHandle> {
        let invalid = |msg: String| io::Error::new(io::ErrorKind::InvalidInput, msg);
        if !config.allow_non_loopback {
            let source = config.upstream_source.unwrap_or(config.upstream);
            for (what, addr) in [
                ("listen", config.listen),
                ("upstream", config.upstream),
                ("upstream_source", source),
            ] {
                if !addr.ip().is_loopback() {
                    return Err(invalid(format!(
                        "{what} address {addr} is not loopback (allow_non_loopback is off)"
                    )));
                }
            }
        }
        for direction in Direction::ALL {
            config
                .impairment(direction)
                .validate()
                .map_err(|e| invalid(format!("{direction}: {e}")))?;
        }
        if config.max_clients == 0 || config.queue_packets == 0 {
            return Err(invalid(
                "max_clients and queue_packets must be above zero".into(),
            ));
        }

        let listen = UdpSocket::bind(config.listen)?;
        listen.set_read_timeout(Some(scheduler::READ_TIMEOUT))?;
        let local_addr = listen.local_addr()?;
        let reader_socket = listen.try_clone()?;

        // Room for everything in flight: both directions' release queues (duplicates
        // included), the event channel, and one buffer held by each reader.
        let channel_capacity = config.queue_packets;
        let pool = Arc::new(Pool::new(
            2 * config.queue_packets + channel_capacity + config.max_clients + 1,
        ));
        let counters = Arc::new(Counters::default());
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::sync_channel(channel_capacity);

        let reader = {
            let (tx, pool, counters, stop) =
                (tx.clone(), pool.clone(), counters.clone(), stop.clone());
            thread::Builder::new()
                .name("netem-listen".into())
                .spawn(move || {
                    scheduler::read_loop(
                        reader_socket,
                        Direction::Up,
                        None,
                        &tx,
                        &pool,
                        &counters,
                        &stop,
                    )
                })?
        };
        let scheduler = {
            let setup = scheduler::Setup {
                listen,
                config: config.clone(),
                events: rx,
                readers_tx: tx.clone(),
                pool,
                counters: counters.clone(),
                stop: stop.clone(),
            };
            thread::Builder::new()
                .name("netem-scheduler".into())
                .spawn(move || scheduler::run(setup))
        };
        let scheduler = match scheduler {
            Ok(handle) => handle,
            Err(e) => {
                stop.store(true, Ordering::Relaxed);
                let _ = reader.join();
                return Err(e);
            }
        };

        Ok(RelayHandle {
            local_addr,
            commands: tx,
            counters,
            stop,
            current: Mutex::new([config.up, config.down]),
            threads: vec![reader, scheduler],
        })
    }
}

/// Controls a running relay. Dropping it stops the relay too.
#[derive(Debug)]
pub struct RelayHandle {
    local_addr: SocketAddr,
    commands: SyncSender<Event>,
    counters: Arc<Counters>,
    stop: Arc<AtomicBool>,
    current: Mutex<[Impairment; 2]>,
    threads: Vec<JoinHandle<()>>,
}

impl RelayHandle {
    /// The address clients send to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The impairment `direction` currently applies.
    pub fn impairment(&self, direction: Direction) -> Impairment {
        self.current.lock().unwrap_or_else(PoisonError::into_inner)[direction.index()]
    }

    /// Replaces `direction`'s impairment. It applies to every datagram the relay reads after
    /// this returns (commands and datagrams share one ordered queue).
    pub fn set(&self, direction: Direction, impairment: Impairment) -> Result<(), ImpairmentError> {
        impairment.validate()?;
        self.current.lock().unwrap_or_else(PoisonError::into_inner)[direction.index()] = impairment;
        self.command(Command::Set(direction, impairment));
        Ok(())
    }

    /// Drops everything in `direction`, including datagrams already delayed in the relay,
    /// until [`resume`](Self::resume).
    pub fn pause(&self, direction: Direction) {
        self.command(Command::Pause(direction));
    }

    /// Ends a [`pause`](Self::pause).
    pub fn resume(&self, direction: Direction) {
        self.command(Command::Resume(direction));
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> Stats {
        self.counters.snapshot()
    }

    /// Stops every relay thread, waits for them, and returns the final counters. Datagrams
    /// still waiting for release are discarded uncounted.
    pub fn stop(mut self) -> Stats {
        self.shutdown();
        self.counters.snapshot()
    }

    /// A send error means the scheduler is gone (stopped), so the command has nothing to do.
    fn command(&self, command: Command) {
        let _ = self.commands.send(Event::Command(command));
    }

    fn shutdown(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.command(Command::Stop);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

impl Drop for RelayHandle {
    fn drop(&mut self) {
        self.shutdown();
    }
}
