//! `Shard`: one pinned worker thread per configured core. It owns its I/O half (`io.rs`: the
//! backend, opened on its own thread since io_uring is SINGLE_ISSUER, the `BufPool`, the
//! transmit queue), its sessions (`table.rs`) and, per track it has any interest in, a
//! `PacketHistory` (the NACK cache, one copy per (track, shard)) and its local subscribers
//! (`router.rs`).
//!
//! One loop iteration (style.md §4: reap, clock once, feed, drain, submit once), every phase
//! bounded and overruns counted:
//! 1. **reap** up to `RECV_ROUNDS × RECV_BATCH` datagrams (and, on io_uring, the completions of
//!    the previous submit's sends, which free their buffers); read the clock once;
//! 2. **feed** (`ingress.rs`): per datagram, find the session (remote → slot; else a STUN
//!    binding's USERNAME → local ufrag → slot; else the shared registry: claim a pending session
//!    after its check authenticated, or hand the datagram to the shard that owns it) and call
//!    `Session::handle_datagram`; act on its outputs: store `Media` in the history and fan audio
//!    out at once, queue video; answer `Retransmit` from the history; route `KeyframeWanted`.
//!    Then the cross-shard rings, due timers and the control inbox (commands feed sessions too);
//! 3. **drain** (`egress.rs`): for every session touched, its events, control packets (STUN,
//!    DTLS, RTCP) and audio first; then one bounded slice of queued video fan-out; then paced
//!    video and retransmissions, sessions served round-robin a window at a time;
//! 4. **submit once** (`io.rs`): the iteration's transmits go to the kernel together, GSO runs
//!    per destination; on io_uring the submit and the wait are one `io_uring_enter`;
//! 5. a stats snapshot when due; wait until the next deadline, a datagram or a wake-up — or not
//!    at all while fan-out or sendable media is left.

pub(crate) mod build;
mod bwe;
mod commands;
pub mod counters;
pub mod data;
mod egress;
mod ingress;
mod io;
mod latency;
pub mod mesh;
pub mod msg;
pub mod registry;
mod relay;
mod route;
mod router;
mod table;
pub mod tcp;
mod tcp_feed;

pub use latency::BOUNDS_US as LATENCY_BOUNDS_US;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rtp_core::dtls::{DtlsCert, DtlsSettings};

use crate::pool::BufPool;
use crate::proto::CloseReason;
use crate::sys::Backend;
use counters::{PacerTotals, ShardCounters};
use io::{Backlog, Io};
use mesh::Mesh;
use msg::{ControlTx, ShardCmd, ShardMsg};
use registry::SharedRegistry;
use route::{RateLimit, RouteCache};
use router::TrackRouter;
use table::{SessionTable, Slot};

/// Datagrams per `recv` call.
const RECV_BATCH: usize = 64;
/// `recv` calls per iteration before the other phases get their turn.
const RECV_ROUNDS: usize = 4;
/// Ring items taken from each peer shard per iteration.
const RING_BUDGET: usize = 256;
/// Control commands handled per iteration.
const INBOX_BUDGET: usize = 64;
/// Copies one iteration makes (one slice): what a new audio packet waits at most. Audio fanned
/// out during the feed phase counts against it; video gets the rest, and at least an eighth.
const SLICE: usize = 256;
/// Longest sleep when no timer is due (the inbox and rings wake us anyway).
const MAX_WAIT: Duration = Duration::from_millis(100);
/// Free buffers fan-out never takes: one iteration's worth of receiving (an eighth of a
/// smaller pool).
const FORWARD_RESERVE: usize = RECV_BATCH * RECV_ROUNDS;
/// Longest sleep while transmits wait for room in the socket's send buffer.
const STALL_WAIT: Duration = Duration::from_millis(1);
/// Registry lookups per second a shard may make for datagrams it cannot place (and its burst).
const SLOW_PATH_RATE: u32 = 5_000;
const SLOW_PATH_BURST: u32 = 500;
/// Datagrams a session that failed its DTLS handshake may still send (its fatal alert).
const FAREWELL_DATAGRAMS: usize = 4;

/// Wraps each shard loop iteration: called with the worker index and the iteration to run.
pub type LoopHook = Arc<dyn Fn(usize, &mut dyn FnMut()) + Send + Sync>;

/// What a shard needs from the runtime.
#[derive(Debug)]
pub struct ShardContext {
    pub index: u16,
    pub backend: Backend,
    pub pool: BufPool,
    pub mesh: Arc<Mesh>,
    pub registry: Arc<SharedRegistry>,
    pub inbox: Receiver<ShardCmd>,
    pub to_control: ControlTx,
    pub cert: Arc<DtlsCert>,
    /// DTLS settings of every session (the SRTP profile preference).
    pub dtls: DtlsSettings,
    pub stop: Arc<AtomicBool>,
    pub stats_interval: Duration,
    /// ICE-TCP: this worker's listener side (None: off).
    pub tcp: Option<tcp::TcpSide>,
    /// Connections handed between workers.
    pub handoffs: Arc<tcp::Handoffs>,
    /// What the configuration decides for every session (pausing, media budgets).
    pub policy: build::SessionPolicy,
    /// The cluster secret SRTP trunks derive their keys from (`dataplane.trunk_secret_file`).
    pub trunk_secret: Option<Arc<[u8]>>,
}

/// See the module docs.
#[derive(Debug)]
pub struct Shard {
    index: usize,
    io: Io,
    table: SessionTable,
    router: TrackRouter,
    mesh: Arc<Mesh>,
    registry: Arc<SharedRegistry>,
    inbox: Receiver<ShardCmd>,
    to_control: ControlTx,
    cert: Arc<DtlsCert>,
    dtls: DtlsSettings,
    stop: Arc<AtomicBool>,
    routes: RouteCache,
    slow_path: RateLimit,
    /// Scratch list for the drain phase (the dirty sessions taken from the table).
    draining: Vec<Slot>,
    wake_peers: Vec<bool>,
    next_timer: Option<Instant>,
    counters: ShardCounters,
    stats_interval: Duration,
    next_stats: Instant,
    /// Data-channel relay (`relay.rs`): each room's data sessions here, the counters, and the
    /// buffer messages are read into.
    data_rooms: data::DataRooms,
    data_counters: data::DataCounters,
    data_buf: Vec<u8>,
    handoffs: Arc<tcp::Handoffs>,
    /// Scratch: the TCP frames of an iteration, and peers whose connection closed.
    tcp_frames: Vec<crate::sys::RecvMeta>,
    tcp_closed: Vec<std::net::SocketAddr>,
    policy: build::SessionPolicy,
    trunk_secret: Option<Arc<[u8]>>,
}

impl Shard {
    pub fn new(ctx: ShardContext) -> Self {
        let n = ctx.mesh.shards();
        let pool_len = ctx.pool.len();
        #[allow(clippy::disallowed_methods)]
        let now = Instant::now();
        let mut io = Io::new(ctx.backend, ctx.pool, RECV_BATCH, now);
        if let Some(t) = ctx.tcp {
            io.backend.watch(t.epoll_fd());
            io.tcp = Some(t);
        }
        Self {
            index: usize::from(ctx.index),
            io,
            table: SessionTable::with_capacity(1024),
            router: TrackRouter::new(FORWARD_RESERVE.min(pool_len / 8)),
            mesh: ctx.mesh,
            registry: ctx.registry,
            inbox: ctx.inbox,
            to_control: ctx.to_control,
            cert: ctx.cert,
            dtls: ctx.dtls,
            stop: ctx.stop,
            routes: RouteCache::new(),
            slow_path: RateLimit::new(SLOW_PATH_RATE, SLOW_PATH_BURST),
            draining: Vec::with_capacity(1024),
            wake_peers: vec![false; n],
            next_timer: None,
            counters: ShardCounters::default(),
            stats_interval: ctx.stats_interval,
            next_stats: now + ctx.stats_interval,
            data_rooms: data::DataRooms::default(),
            data_counters: data::DataCounters::default(),
            data_buf: vec![0; data::MAX_MESSAGE],
            handoffs: ctx.handoffs,
            tcp_frames: Vec::with_capacity(tcp::FRAME_BATCH),
            tcp_closed: Vec::with_capacity(64),
            policy: ctx.policy,
            trunk_secret: ctx.trunk_secret,
        }
    }

    /// Runs until the stop flag is set, then gives every buffer back and closes the backend.
    pub fn run(self) {
        self.run_with(None);
    }

    /// [`Shard::run`], each iteration (and its wait) run inside `hook` when given: tests wrap
    /// it in an allocation counter, which counts per thread.
    pub fn run_with(mut self, hook: Option<LoopHook>) {
        let index = self.index;
        while !self.stop.load(Ordering::Acquire) {
            let mut turn = || {
                let now = self.iteration();
                let (timeout, writable) = self.wait_for(now);
                if let Err(e) = self.io.backend.wait_for(Some(timeout), writable) {
                    tracing::warn!(shard = self.index, error = %e, "backend wait failed");
                }
            };
            match &hook {
                Some(h) => h(index, &mut turn),
                None => turn(),
            }
        }
        #[allow(clippy::disallowed_methods)]
        let now = Instant::now();
        for slot in self.table.slots_in_use() {
            self.close_slot(now, slot, CloseReason::Requested, false);
        }
        self.io.discard();
        if let Err(e) = self.io.backend.shutdown(&mut self.io.pool) {
            tracing::warn!(shard = self.index, error = %e, "backend shutdown failed");
        }
    }

    /// One loop iteration (module docs); returns the clock reading it used.
    pub fn iteration(&mut self) -> Instant {
        // 1. Reap.
        self.io.requeue();
        let forwarded_before = self.counters.forwarded;
        let mut now = None;
        for round in 0..RECV_ROUNDS {
            let n = self.io.recv(self.index);
            if n == 0 {
                break;
            }
            #[allow(clippy::disallowed_methods)]
            let t = *now.get_or_insert_with(Instant::now);
            for i in 0..n {
                let meta = self.io.received(i);
                self.counters.rx_packets += 1;
                self.counters.rx_bytes += meta.len as u64;
                // 2. Feed.
                self.on_datagram(t, t, meta, true);
                self.io.pool.give(meta.buf);
            }
            if n == RECV_BATCH && round + 1 == RECV_ROUNDS {
                self.counters.loop_overruns += 1;
            }
        }
        #[allow(clippy::disallowed_methods)]
        let now = now.unwrap_or_else(Instant::now);
        self.tcp_phase(now);
        self.drain_rings(now);
        self.drain_data_rings(now);
        if self.next_timer.is_some_and(|t| t <= now) {
            self.run_timers(now);
        }
        self.drain_inbox(now);
        // 3. Drain: control and audio of every touched session, one slice of video fan-out,
        // then paced media round-robin.
        self.drain_urgent(now);
        if self.router.pending() > 0 {
            let fed = (self.counters.forwarded - forwarded_before) as usize;
            let budget = SLICE.saturating_sub(fed).max(SLICE / 8);
            let (table, io, counters) = (&mut self.table, &mut self.io, &mut self.counters);
            self.router.run_slice(now, budget, table, io, counters);
            self.drain_urgent(now);
        }
        self.drain_paced(now);
        // 4. Submit once.
        self.io.submit(self.index, &mut self.counters);
        self.wake_peers_now();
        if now >= self.next_stats {
            self.next_stats = now + self.stats_interval;
            self.send_stats();
        }
        now
    }

    /// How long to wait after an iteration, and whether for a writable socket too.
    fn wait_for(&self, now: Instant) -> (Duration, bool) {
        match self.io.backlog() {
            Backlog::Busy => return (Duration::ZERO, false),
            // Backpressure: the writable wake-up ends the wait; the timeout is a safety net.
            Backlog::Full => return (STALL_WAIT, true),
            Backlog::None => {}
        }
        if self.router.pending() > 0 || self.table.has_ready() || self.table.has_dirty() {
            return (Duration::ZERO, false);
        }
        let mut deadline = now + MAX_WAIT;
        if let Some(t) = self.next_timer {
            deadline = deadline.min(t);
        }
        deadline = deadline.min(self.next_stats);
        if let Some(t) = self.io.tcp.as_ref().and_then(tcp::TcpSide::next_deadline) {
            deadline = deadline.min(t);
        }
        (deadline.saturating_duration_since(now), false)
    }

    fn wake_peers_now(&mut self) {
        for peer in 0..self.wake_peers.len() {
            if std::mem::take(&mut self.wake_peers[peer]) {
                self.mesh.wake(peer);
            }
        }
    }

    fn send_stats(&mut self) {
        let mut pacer = PacerTotals::default();
        for entry in self.table.iter() {
            pacer.add(entry.session.pacer_stats());
        }
        let [sessions, remotes, ufrags] = self.table.sizes();
        let [pending, placed, routes, reg_remotes] = self.registry.lock().sizes();
        let maps = [
            ("map_sessions", sessions),
            ("map_remotes", remotes),
            ("map_ufrags", ufrags),
            ("map_tracks", self.router.tracks.len()),
            ("map_route_cache", self.routes.len()),
            ("map_fanout_queue", self.router.pending()),
            // Buffers neither held nor lent: back to its idle value once a load is gone.
            ("map_pool_free", self.io.pool.free_count()),
            ("map_pool_lent", self.io.pool.lent_count()),
            ("registry_pending", pending),
            ("registry_placed", placed),
            ("registry_ufrag_routes", routes),
            ("registry_remotes", reg_remotes),
            ("map_data_rooms", self.data_rooms.len()),
        ]
        .map(|(k, v)| (k.to_string(), v as u64));
        // Not a drop either: this shard thread's CPU time so far (busy share = its rate).
        let cpu = crate::sys::process::thread_cpu_time().as_micros() as u64;
        let cpu = std::iter::once(("cpu_us".to_string(), cpu));
        let tcp = self.io.tcp.as_ref().map(tcp::TcpSide::entries);
        let (congestion, paused) = self.congestion_live();
        let snap = self.counters.snapshot(
            self.index as u16,
            self.table.len() as u32,
            self.io.backend.stats(),
            &pacer,
            (&congestion, paused),
            maps.into_iter()
                .chain(cpu)
                .chain(tcp.into_iter().flatten())
                .chain(self.io.latency.entries())
                .chain(self.data_counters.entries()),
        );
        if !self.to_control.lossy(ShardMsg::Stats(snap)) {
            self.counters.drop(counters::Drop::ControlBacklog);
        }
    }

    /// The data-channel relay's counters so far (tests).
    pub fn data_counters(&self) -> &data::DataCounters {
        &self.data_counters
    }

    /// The counters so far (tests).
    pub fn counters(&self) -> &ShardCounters {
        &self.counters
    }
}

pub(super) fn min_opt(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, None) => a,
        (None, b) => b,
    }
}
