//! `Shard`: one pinned worker thread per configured core. It owns its UDP backend (opened on
//! its own thread: io_uring is SINGLE_ISSUER), its `BufPool`, the sessions whose packets land on
//! it, and per track it has any interest in a `PacketHistory` (the NACK cache, one copy per
//! (track, shard)) and its local subscribers.
//!
//! One loop iteration (style.md §4), every phase bounded and overruns counted:
//! 1. receive up to `RECV_ROUNDS × RECV_BATCH` datagrams, read the clock once;
//! 2. per datagram: find the session (remote address → slot; on a miss, a STUN binding's
//!    USERNAME → local ufrag → slot; on a miss there, the shared pending registry, where the
//!    first valid packet claims a session) and call `Session::handle_datagram`; act on its
//!    outputs (fan out `Media`, answer `Retransmit` from the local history, route
//!    `KeyframeWanted` to the publisher, maybe on another shard);
//! 3. drain the cross-shard rings (`RING_BUDGET` items from each peer);
//! 4. timers: `handle_timeout` for sessions whose `poll_timeout` passed (a scan, only when the
//!    earliest deadline has passed);
//! 5. drain `poll_event`, `poll_transmit`, `poll_paced` of every session touched this iteration
//!    into `Transmit`s, then `backend.try_send`; what a full socket buffer refuses stays queued
//!    (in `tx`, then in the pacers) and is sent when the socket is writable again — never
//!    dropped for backpressure;
//! 6. the control inbox (`INBOX_BUDGET` commands), a stats snapshot when due;
//! 7. `backend.wait` until the next deadline or a wake-up.

mod build;
mod commands;
pub mod counters;
pub mod mesh;
pub mod msg;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rtp_core::dtls::{DtlsCert, DtlsSettings};
use rtp_core::nack::{HistoryConfig, PacketHistory};
use rtp_core::packet::{demux, Demuxed};
use rtp_core::session::{DownId, Session, SessionEvent, SessionOutput, UpId};
use rtp_core::stun::StunMessage;
use rtp_core::RtpView;

use crate::pool::{BufId, BufPool, BUF_SIZE};
use crate::proto::{CloseReason, Notification, SessionId, SubscriptionId, TrackId};
use crate::sys::{Backend, RecvMeta, Transmit};
use counters::{Drop, PacerTotals, ShardCounters};
use mesh::{Mesh, RingDatagram, RingItem, RingPacket, MAX_RING_PACKET};
use msg::{ShardCmd, ShardMsg, SharedRegistry};

/// Datagrams per `recv` call.
const RECV_BATCH: usize = 64;
/// `recv` calls per iteration before the other phases get their turn.
const RECV_ROUNDS: usize = 4;
/// Ring items taken from each peer shard per iteration.
const RING_BUDGET: usize = 256;
/// Control commands handled per iteration.
const INBOX_BUDGET: usize = 64;
/// Transmits gathered before a `send` (more in one iteration means several sends).
const TX_BATCH: usize = 512;
/// Longest sleep when no timer is due (the inbox and rings wake us anyway).
const MAX_WAIT: Duration = Duration::from_millis(100);
/// Free buffers fan-out never takes: one iteration's worth of receiving (an eighth of a
/// smaller pool).
const FORWARD_RESERVE: usize = RECV_BATCH * RECV_ROUNDS;
/// Longest sleep while transmits wait for room in the socket's send buffer.
const STALL_WAIT: Duration = Duration::from_millis(1);
/// Packets in each (track, shard) NACK cache: ~1 s of 1 Mbit/s video.
const HISTORY_PACKETS: usize = 512;
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
    pub to_control: SyncSender<ShardMsg>,
    pub cert: Arc<DtlsCert>,
    /// DTLS settings of every session (the SRTP profile preference).
    pub dtls: DtlsSettings,
    pub stop: Arc<AtomicBool>,
    pub stats_interval: Duration,
}

/// One session on this shard.
#[derive(Debug)]
struct Entry {
    id: SessionId,
    session: Session<BufId>,
    /// UpId index → the track it carries.
    ups: Vec<Option<TrackId>>,
    /// DownId index → the track and subscription it forwards.
    downs: Vec<Option<(TrackId, SubscriptionId)>>,
    /// Remote addresses entered in `Shard::by_addr` for this session.
    addrs: Vec<SocketAddr>,
    ufrag: Option<String>,
    priority: u8,
    dirty: bool,
    /// `session.poll_timeout()` as of the last time the session was drained (or a command
    /// ran): the timer scan compares these instead of asking every session each time.
    deadline: Option<Instant>,
}

/// A track this shard has interest in.
#[derive(Debug)]
struct TrackState {
    history: PacketHistory,
    /// The publisher session, when it lives here.
    publisher: Option<(u32, UpId)>,
    /// The publisher's shard, when it lives elsewhere.
    source: Option<u16>,
    /// Local subscribers.
    subs: Vec<(u32, DownId)>,
    /// Other shards with subscribers (only meaningful on the publisher's shard).
    remote: Vec<u16>,
    muted: bool,
}

impl TrackState {
    fn new() -> Self {
        Self {
            history: PacketHistory::new(HistoryConfig {
                capacity: HISTORY_PACKETS,
                max_age: Duration::from_secs(1),
                max_packet_len: MAX_RING_PACKET,
            }),
            publisher: None,
            source: None,
            subs: Vec::new(),
            remote: Vec::new(),
            muted: false,
        }
    }

    fn unused(&self) -> bool {
        self.publisher.is_none() && self.subs.is_empty() && self.remote.is_empty()
    }
}

/// See the module docs.
#[derive(Debug)]
pub struct Shard {
    index: usize,
    backend: Backend,
    pool: BufPool,
    mesh: Arc<Mesh>,
    registry: Arc<SharedRegistry>,
    inbox: Receiver<ShardCmd>,
    to_control: SyncSender<ShardMsg>,
    cert: Arc<DtlsCert>,
    dtls: DtlsSettings,
    stop: Arc<AtomicBool>,

    sessions: Vec<Option<Entry>>,
    free_slots: Vec<u32>,
    by_id: HashMap<SessionId, u32>,
    by_addr: HashMap<SocketAddr, u32>,
    by_ufrag: HashMap<String, u32>,
    /// Remotes whose session lives on another shard (learnt from the registry).
    redirect: HashMap<SocketAddr, u16>,
    tracks: HashMap<TrackId, TrackState>,
    subs: HashMap<SubscriptionId, (u32, DownId)>,

    recv: Box<[RecvMeta]>,
    tx: Vec<Transmit>,
    /// The packet being fanned out, copied out of the receive buffer (so the pool can lend
    /// fresh buffers for the copies while it is read).
    scratch: Box<[u8; BUF_SIZE]>,
    dirty: Vec<u32>,
    wake_peers: Vec<bool>,
    next_timer: Option<Instant>,
    /// Free buffers below which the receive loop drains the pacers before going on.
    low_water: usize,
    /// Free buffers fan-out leaves to the receive path ([`FORWARD_RESERVE`] at most).
    forward_reserve: usize,
    counters: ShardCounters,
    stats_interval: Duration,
    next_stats: Instant,
}

impl Shard {
    pub fn new(ctx: ShardContext) -> Self {
        let n = ctx.mesh.shards();
        let pool_len = ctx.pool.len();
        Self {
            index: usize::from(ctx.index),
            backend: ctx.backend,
            pool: ctx.pool,
            mesh: ctx.mesh,
            registry: ctx.registry,
            inbox: ctx.inbox,
            to_control: ctx.to_control,
            cert: ctx.cert,
            dtls: ctx.dtls,
            stop: ctx.stop,
            sessions: Vec::new(),
            free_slots: Vec::new(),
            by_id: HashMap::new(),
            by_addr: HashMap::new(),
            by_ufrag: HashMap::new(),
            redirect: HashMap::new(),
            tracks: HashMap::new(),
            subs: HashMap::new(),
            recv: vec![RecvMeta::default(); RECV_BATCH].into_boxed_slice(),
            tx: Vec::with_capacity(TX_BATCH),
            scratch: Box::new([0; BUF_SIZE]),
            dirty: Vec::with_capacity(pool_len),
            wake_peers: vec![false; n],
            next_timer: None,
            low_water: pool_len / 4,
            forward_reserve: FORWARD_RESERVE.min(pool_len / 8),
            counters: ShardCounters::default(),
            stats_interval: ctx.stats_interval,
            #[allow(clippy::disallowed_methods)]
            next_stats: Instant::now() + ctx.stats_interval,
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
                let timeout = self.wait_timeout(now);
                // Transmits a full socket refused wait in `tx`: wake when it drains.
                let writable = !self.tx.is_empty();
                if let Err(e) = self.backend.wait_for(Some(timeout), writable) {
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
        let slots: Vec<u32> = self.by_id.values().copied().collect();
        for slot in slots {
            self.close_slot(now, slot, CloseReason::Requested, false);
        }
        if let Err(e) = self.backend.shutdown(&mut self.pool) {
            tracing::warn!(shard = self.index, error = %e, "backend shutdown failed");
        }
    }

    /// One loop iteration (module docs); returns the clock reading it used.
    pub fn iteration(&mut self) -> Instant {
        let mut now = None;
        for round in 0..RECV_ROUNDS {
            let n = match self.backend.recv(&mut self.pool, &mut self.recv) {
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!(shard = self.index, error = %e, "recv failed");
                    0
                }
            };
            if n == 0 {
                break;
            }
            #[allow(clippy::disallowed_methods)]
            let t = *now.get_or_insert_with(Instant::now);
            for i in 0..n {
                let meta = self.recv[i];
                self.counters.rx_packets += 1;
                self.counters.rx_bytes += meta.len as u64;
                self.on_datagram(t, meta, true);
                self.pool.give(meta.buf);
                // Every forwarded copy holds a buffer until its pacer lets it go: a keyframe
                // burst in one receive batch is packets × subscribers buffers. When the pool
                // runs low, send what the pacers allow now instead of after the whole batch,
                // so the pool needs to cover one packet's copies, not one batch's.
                if self.pool.free_count() < self.low_water {
                    self.counters.early_drains += 1;
                    self.drain_sessions(t);
                    self.flush_tx();
                }
            }
            if n == RECV_BATCH && round + 1 == RECV_ROUNDS {
                self.counters.loop_overruns += 1;
            }
        }
        #[allow(clippy::disallowed_methods)]
        let now = now.unwrap_or_else(Instant::now);
        self.drain_rings(now);
        if self.next_timer.is_some_and(|t| t <= now) {
            self.run_timers(now);
        }
        self.drain_sessions(now);
        self.flush_tx();
        self.wake_peers_now();
        self.drain_inbox(now);
        // Commands may have produced output (e.g. a PLI, a plain session's first RTCP).
        self.drain_sessions(now);
        self.flush_tx();
        if now >= self.next_stats {
            self.next_stats = now + self.stats_interval;
            self.send_stats();
        }
        now
    }

    fn wait_timeout(&self, now: Instant) -> Duration {
        if !self.tx.is_empty() || !self.dirty.is_empty() {
            // Backpressure: the writable wake-up ends the wait; this is only a safety net.
            return STALL_WAIT;
        }
        let mut deadline = now + MAX_WAIT;
        if let Some(t) = self.next_timer {
            deadline = deadline.min(t);
        }
        deadline = deadline.min(self.next_stats);
        deadline.saturating_duration_since(now)
    }

    // ---- receive path -------------------------------------------------------------------

    fn on_datagram(&mut self, now: Instant, meta: RecvMeta, may_redirect: bool) {
        let slot = match self.by_addr.get(&meta.src) {
            Some(&slot) => slot,
            None => match self.lookup_slow(now, meta, may_redirect) {
                Some(slot) => slot,
                None => return,
            },
        };
        self.feed(now, slot, meta);
    }

    /// First packet from an address: STUN USERNAME → ufrag → local session or a pending one
    /// to claim; otherwise a plain-RTP remote living on another shard.
    fn lookup_slow(&mut self, now: Instant, meta: RecvMeta, may_redirect: bool) -> Option<u32> {
        let bytes = &self.pool.get(meta.buf)[meta.offset..meta.offset + meta.len];
        if let Demuxed::Stun = demux(bytes) {
            let ufrag = StunMessage::parse(bytes)
                .ok()
                .and_then(|m| m.username_ufrags())
                .and_then(|(local, _)| std::str::from_utf8(local).ok());
            if let Some(ufrag) = ufrag {
                if let Some(&slot) = self.by_ufrag.get(ufrag) {
                    return Some(slot);
                }
                let ufrag = ufrag.to_string();
                if let Some(slot) = self.claim(now, &ufrag) {
                    return Some(slot);
                }
            }
            // A consent check of a session another shard owns: hand it over below.
        }
        if may_redirect {
            let target = match self.redirect.get(&meta.src) {
                Some(&t) => Some(t),
                None => {
                    let t = self.registry.lock().remotes.get(&meta.src).copied();
                    if let Some(t) = t {
                        self.redirect.insert(meta.src, t);
                    }
                    t
                }
            };
            if let Some(target) = target.filter(|&t| usize::from(t) != self.index) {
                self.redirect_datagram(meta, usize::from(target));
                return None;
            }
        }
        self.counters.drop(if may_redirect {
            Drop::UnknownSource
        } else {
            Drop::Redirected
        });
        None
    }

    fn redirect_datagram(&mut self, meta: RecvMeta, to: usize) {
        if meta.len > MAX_RING_PACKET {
            self.counters.drop(Drop::TooLong);
            return;
        }
        let mut d = RingDatagram {
            src: meta.src,
            len: meta.len as u16,
            data: [0; MAX_RING_PACKET],
        };
        d.data[..meta.len]
            .copy_from_slice(&self.pool.get(meta.buf)[meta.offset..meta.offset + meta.len]);
        if self.mesh.push(self.index, to, RingItem::Datagram(d)) {
            self.wake_peers[to] = true;
        } else {
            self.counters.drop(Drop::RingFull);
        }
    }

    /// Feeds one datagram to the session in `slot` and acts on everything it produced.
    fn feed(&mut self, now: Instant, slot: u32, meta: RecvMeta) {
        let Some(entry) = self.sessions[slot as usize].as_mut() else {
            return;
        };
        let buf = &mut self.pool.get_mut(meta.buf)[meta.offset..meta.offset + meta.len];
        let first = entry.session.handle_datagram(now, meta.src, buf);
        mark_dirty(&mut self.dirty, entry, slot);
        match first {
            Ok(out) => {
                // A valid packet (ICE check, or plain RTP) from a new address of this session.
                if let std::collections::hash_map::Entry::Vacant(v) = self.by_addr.entry(meta.src) {
                    v.insert(slot);
                    entry.addrs.push(meta.src);
                    publish_remote(&self.registry, entry, meta.src, self.index);
                }
                self.act(now, slot, out, Some(meta));
            }
            Err(e) => {
                self.counters.drop(Drop::of_session_error(&e));
                return;
            }
        }
        // Bounded by the session's fixed output ring.
        while let Some(out) = self.sessions[slot as usize]
            .as_mut()
            .and_then(|e| e.session.poll_output())
        {
            self.act(now, slot, out, Some(meta));
        }
    }

    fn act(&mut self, now: Instant, slot: u32, out: SessionOutput, meta: Option<RecvMeta>) {
        match out {
            SessionOutput::None => {}
            SessionOutput::Media {
                up,
                layer,
                ext_seq,
                len,
                keyframe,
            } => {
                let Some(meta) = meta else { return };
                let Some(track) = self.sessions[slot as usize]
                    .as_ref()
                    .and_then(|e| e.ups.get(usize::from(up.0)).copied().flatten())
                else {
                    self.counters.drop(Drop::UnknownTrack);
                    return;
                };
                if len > MAX_RING_PACKET {
                    self.counters.drop(Drop::TooLong);
                    return;
                }
                self.scratch[..len]
                    .copy_from_slice(&self.pool.get(meta.buf)[meta.offset..meta.offset + len]);
                self.fan_out(now, track, layer, ext_seq, keyframe, len, true);
            }
            SessionOutput::Retransmit {
                down,
                seq,
                src_ext_seq,
            } => self.retransmit(now, slot, down, seq, src_ext_seq),
            SessionOutput::KeyframeWanted { down, layer } => {
                let Some(track) = self.down_track(slot, down) else {
                    return;
                };
                self.keyframe_wanted(now, track, layer);
            }
            #[allow(unreachable_patterns)]
            _ => {}
        }
    }

    fn down_track(&self, slot: u32, down: DownId) -> Option<TrackId> {
        self.sessions[slot as usize]
            .as_ref()
            .and_then(|e| e.downs.get(usize::from(down.0)).copied().flatten())
            .map(|(t, _)| t)
    }

    /// Forwards the packet in `scratch[..len]` of `track` to every local subscriber and, when
    /// it was published here, to every other shard with subscribers.
    #[allow(clippy::too_many_arguments)]
    fn fan_out(
        &mut self,
        now: Instant,
        track: TrackId,
        layer: u8,
        ext_seq: u64,
        keyframe: bool,
        len: usize,
        local_publisher: bool,
    ) {
        let Self {
            tracks,
            sessions,
            pool,
            scratch,
            dirty,
            counters,
            mesh,
            wake_peers,
            index,
            forward_reserve,
            ..
        } = self;
        let Some(ts) = tracks.get_mut(&track) else {
            counters.drop(Drop::UnknownTrack);
            return;
        };
        if ts.muted {
            return;
        }
        let pkt = &scratch[..len];
        // Stale/too long only costs a NACK answer later; counted by the history itself.
        let _ = ts.history.insert(now, ext_seq, pkt);
        let Ok(view) = RtpView::parse(pkt) else {
            counters.drop(Drop::Parse);
            return;
        };
        for &(sub_slot, down) in &ts.subs {
            let Some(entry) = sessions[sub_slot as usize].as_mut() else {
                continue;
            };
            // The last buffers stay with the receive path: if queued copies took them all, the
            // worker could not receive (io_uring's buffer ring runs dry and its receive
            // disarms) and would fall further behind; dropping a copy here is the cheaper loss.
            if pool.free_count() <= *forward_reserve {
                counters.drop(Drop::PoolEmpty);
                continue;
            }
            let Some(buf) = pool.take() else {
                counters.drop(Drop::PoolEmpty);
                continue;
            };
            match entry.session.forward(
                now,
                down,
                &view,
                ext_seq,
                layer,
                &mut pool.get_mut(buf)[..],
                buf,
            ) {
                Ok(Some(_)) => {
                    counters.forwarded += 1;
                    mark_dirty(dirty, entry, sub_slot);
                }
                Ok(None) => pool.give(buf),
                Err(_) => {
                    pool.give(buf);
                    counters.drop(Drop::ForwardError);
                }
            }
        }
        if !local_publisher || ts.remote.is_empty() {
            return;
        }
        let mut p = RingPacket {
            track,
            layer,
            ext_seq,
            keyframe,
            len: len as u16,
            data: [0; MAX_RING_PACKET],
        };
        p.data[..len].copy_from_slice(pkt);
        for &peer in &ts.remote {
            let peer = usize::from(peer);
            if mesh.push(*index, peer, RingItem::Media(p)) {
                counters.ring_out += 1;
                wake_peers[peer] = true;
            } else {
                counters.drop(Drop::RingFull);
            }
        }
    }

    fn retransmit(&mut self, now: Instant, slot: u32, down: DownId, seq: u16, src_ext_seq: u64) {
        let Some(track) = self.down_track(slot, down) else {
            return;
        };
        let Self {
            tracks,
            sessions,
            pool,
            dirty,
            counters,
            ..
        } = self;
        let Some(ts) = tracks.get_mut(&track) else {
            return;
        };
        let Some(orig) = ts.history.get(now, src_ext_seq) else {
            counters.drop(Drop::HistoryMiss);
            return;
        };
        let Ok(view) = RtpView::parse(orig) else {
            counters.drop(Drop::Parse);
            return;
        };
        let Some(entry) = sessions[slot as usize].as_mut() else {
            return;
        };
        let Some(buf) = pool.take() else {
            counters.drop(Drop::PoolEmpty);
            return;
        };
        match entry
            .session
            .retransmit(now, down, seq, &view, &mut pool.get_mut(buf)[..], buf)
        {
            Ok(Some(_)) => mark_dirty(dirty, entry, slot),
            Ok(None) => pool.give(buf),
            Err(_) => {
                pool.give(buf);
                counters.drop(Drop::ForwardError);
            }
        }
    }

    fn keyframe_wanted(&mut self, now: Instant, track: TrackId, layer: u8) {
        let Some(ts) = self.tracks.get(&track) else {
            return;
        };
        if let Some((pub_slot, up)) = ts.publisher {
            if let Some(entry) = self.sessions[pub_slot as usize].as_mut() {
                entry.session.request_keyframe(now, up, layer);
                mark_dirty(&mut self.dirty, entry, pub_slot);
            }
        } else if let Some(src) = ts.source.map(usize::from) {
            if src != self.index {
                let item = RingItem::KeyframeWanted { track, layer };
                if self.mesh.push(self.index, src, item) {
                    self.wake_peers[src] = true;
                } else {
                    self.counters.drop(Drop::RingFull);
                }
            }
        }
    }

    // ---- cross-shard rings --------------------------------------------------------------

    fn drain_rings(&mut self, now: Instant) {
        for from in 0..self.mesh.shards() {
            if from == self.index {
                continue;
            }
            for taken in 0..=RING_BUDGET {
                if taken == RING_BUDGET {
                    self.counters.loop_overruns += 1;
                    // Come back without sleeping: there is more.
                    self.next_timer = Some(now);
                    break;
                }
                let Some(item) = self.mesh.pop(from, self.index) else {
                    break;
                };
                self.on_ring_item(now, item);
            }
        }
    }

    fn on_ring_item(&mut self, now: Instant, item: RingItem) {
        match item {
            RingItem::Media(p) => {
                self.counters.ring_in += 1;
                let len = usize::from(p.len);
                self.scratch[..len].copy_from_slice(&p.data[..len]);
                self.fan_out(now, p.track, p.layer, p.ext_seq, p.keyframe, len, false);
            }
            RingItem::KeyframeWanted { track, layer } => self.keyframe_wanted(now, track, layer),
            RingItem::Datagram(d) => {
                let Some(buf) = self.pool.take() else {
                    self.counters.drop(Drop::PoolEmpty);
                    return;
                };
                let len = usize::from(d.len);
                self.pool.get_mut(buf)[..len].copy_from_slice(&d.data[..len]);
                let meta = RecvMeta {
                    buf,
                    offset: 0,
                    len,
                    src: d.src,
                    ..RecvMeta::default()
                };
                self.on_datagram(now, meta, false);
                self.pool.give(buf);
            }
        }
    }

    fn wake_peers_now(&mut self) {
        for peer in 0..self.wake_peers.len() {
            if std::mem::take(&mut self.wake_peers[peer]) {
                self.mesh.wake(peer);
            }
        }
    }

    // ---- timers and output --------------------------------------------------------------

    /// Runs the timers of the sessions whose cached deadline passed. A session it runs is
    /// marked dirty, and draining it caches its next deadline (and folds it into `next_timer`).
    fn run_timers(&mut self, now: Instant) {
        let mut next: Option<Instant> = None;
        for slot in 0..self.sessions.len() {
            let Some(entry) = self.sessions[slot].as_mut() else {
                continue;
            };
            match entry.deadline {
                Some(t) if t <= now => {
                    entry.session.handle_timeout(now);
                    mark_dirty(&mut self.dirty, entry, slot as u32);
                }
                d => next = min_opt(next, d),
            }
        }
        self.next_timer = next;
    }

    /// Events, control packets and paced media of every session touched this iteration.
    ///
    /// Backpressure: when the socket's send buffer is full and `tx` cannot be flushed, draining
    /// stops. Paced media stays in its session's pacer (nothing is dropped here), and the
    /// sessions not drained yet stay in `dirty` for the next iteration, which the worker starts
    /// as soon as the socket is writable again.
    fn drain_sessions(&mut self, now: Instant) {
        let mut i = 0;
        // `dirty` may grow while we drain (a closed session's cascade); bounded by the slots.
        while i < self.dirty.len() {
            let slot = self.dirty[i];
            i += 1;
            self.drain_events(now, slot);
            let Some(entry) = self.sessions[slot as usize].as_mut() else {
                continue;
            };
            entry.dirty = false;
            let mut stalled = false;
            // Control packets: bounded by the session's queues; each needs a buffer.
            loop {
                if self.tx.len() == TX_BATCH
                    && !flush(
                        &mut self.backend,
                        &mut self.pool,
                        &mut self.tx,
                        &mut self.counters,
                    )
                    && self.tx.len() == TX_BATCH
                {
                    stalled = true;
                    break;
                }
                let Some(buf) = self.pool.take() else {
                    self.counters.drop(Drop::PoolEmpty);
                    break;
                };
                match entry
                    .session
                    .poll_transmit(now, &mut self.pool.get_mut(buf)[..])
                {
                    Some((len, dst)) => self.tx.push(transmit(buf, len, dst)),
                    None => {
                        self.pool.give(buf);
                        break;
                    }
                }
            }
            // Paced media: room in `tx` is made before a packet leaves the pacer, so a full
            // socket leaves it queued there. Bounded by the pacer's budget and queue.
            while !stalled {
                if self.tx.len() == TX_BATCH
                    && !flush(
                        &mut self.backend,
                        &mut self.pool,
                        &mut self.tx,
                        &mut self.counters,
                    )
                    && self.tx.len() == TX_BATCH
                {
                    stalled = true;
                    break;
                }
                let Some((buf, len, dst)) = entry.session.poll_paced(now) else {
                    break;
                };
                self.tx.push(transmit(buf, len, dst));
            }
            entry.deadline = entry.session.poll_timeout();
            self.next_timer = min_opt(self.next_timer, entry.deadline);
            if stalled {
                // This session and the rest wait for the socket: keep them, in order.
                entry.dirty = true;
                self.counters.send_stalls += 1;
                self.dirty.drain(..i - 1);
                return;
            }
            // `poll_transmit` drives DTLS, which reports a finished handshake only then: without
            // this, `DtlsConnected` would wait for the session's next packet or timer.
            self.drain_events(now, slot);
        }
        self.dirty.clear();
    }

    fn drain_events(&mut self, now: Instant, slot: u32) {
        let mut close = None;
        // Bounded by the session's event queue.
        while let Some(ev) = self.sessions[slot as usize]
            .as_mut()
            .and_then(|e| e.session.poll_event())
        {
            let Some(entry) = self.sessions[slot as usize].as_mut() else {
                break;
            };
            let session = entry.id;
            let track_of = |up: UpId| entry.ups.get(usize::from(up.0)).copied().flatten();
            let note = match ev {
                SessionEvent::IceConnected { remote } => {
                    if let std::collections::hash_map::Entry::Vacant(v) = self.by_addr.entry(remote)
                    {
                        v.insert(slot);
                        entry.addrs.push(remote);
                        publish_remote(&self.registry, entry, remote, self.index);
                    }
                    tracing::info!(%session, remote = %remote, "ICE connected");
                    Some(Notification::IceConnected { session, remote })
                }
                SessionEvent::IceDisconnected => Some(Notification::IceDisconnected { session }),
                SessionEvent::SelectedPairChanged { remote } => {
                    let local = self.backend.local_addr().unwrap_or(remote);
                    tracing::info!(%session, remote = %remote, "selected pair changed");
                    Some(Notification::SelectedPairChanged {
                        session,
                        local,
                        remote,
                    })
                }
                SessionEvent::DtlsConnected { profile, version } => {
                    Some(Notification::DtlsConnected {
                        session,
                        profile: format!("{profile:?}"),
                        version: format!("{version:?}"),
                    })
                }
                SessionEvent::DtlsFailed { reason } => {
                    // Once per session: it is closed right after.
                    tracing::warn!(%session, %reason, "DTLS handshake failed");
                    self.counters.dtls_failed += 1;
                    close = Some(CloseReason::DtlsFailed);
                    Some(Notification::DtlsFailed { session, reason })
                }
                SessionEvent::SsrcBound {
                    up,
                    layer,
                    ssrc,
                    rtx,
                    by,
                } => {
                    // At most once per stream slot of a track: bounded.
                    tracing::info!(%session, up = up.0, layer, ssrc, rtx, by = by.as_str(), "unsignaled SSRC bound");
                    self.counters.unsignaled_bound(by);
                    None
                }
                SessionEvent::FirstPacket { up, layer } => {
                    track_of(up).map(|track| Notification::FirstPacket { track, layer })
                }
                SessionEvent::Keyframe { up, layer } => {
                    track_of(up).map(|track| Notification::Keyframe { track, layer })
                }
                #[allow(unreachable_patterns)]
                _ => None,
            };
            if let Some(note) = note {
                // Bounded and preallocated: never allocates on the packet path, never blocks it.
                if self.to_control.try_send(ShardMsg::Event(note)).is_err() {
                    self.counters.drop(Drop::ControlBacklog);
                }
            }
        }
        if let Some(reason) = close {
            if reason == CloseReason::DtlsFailed {
                self.send_farewell(now, slot);
            }
            self.close_slot(now, slot, reason, true);
        }
    }

    /// The fatal alert a failed DTLS handshake queued (RFC 6347 §4.1.2.7: the peer must learn
    /// the handshake is over, not retransmit into silence): queued for sending before the
    /// session is closed. Bounded: an alert is one datagram, a few at most.
    fn send_farewell(&mut self, now: Instant, slot: u32) {
        for _ in 0..FAREWELL_DATAGRAMS {
            let Some(entry) = self.sessions[slot as usize].as_mut() else {
                return;
            };
            let Some(buf) = self.pool.take() else {
                self.counters.drop(Drop::PoolEmpty);
                return;
            };
            match entry
                .session
                .poll_transmit(now, &mut self.pool.get_mut(buf)[..])
            {
                Some((len, dst)) => self.tx.push(transmit(buf, len, dst)),
                None => {
                    self.pool.give(buf);
                    return;
                }
            }
            if self.tx.len() >= TX_BATCH {
                self.flush_tx();
            }
        }
    }

    fn flush_tx(&mut self) {
        flush(
            &mut self.backend,
            &mut self.pool,
            &mut self.tx,
            &mut self.counters,
        );
    }

    fn send_stats(&mut self) {
        let mut pacer = PacerTotals::default();
        for entry in self.sessions.iter().flatten() {
            pacer.add(entry.session.pacer_stats());
        }
        let snap = self.counters.snapshot(
            self.index as u16,
            self.by_id.len() as u32,
            self.backend.stats(),
            &pacer,
        );
        if self.to_control.try_send(ShardMsg::Stats(snap)).is_err() {
            self.counters.drop(Drop::ControlBacklog);
        }
    }

    /// The counters so far (tests).
    pub fn counters(&self) -> &ShardCounters {
        &self.counters
    }
}

/// Tells the other shards that datagrams from `remote` belong to this shard (WebRTC sessions;
/// the control thread enters plain-RTP remotes). Slow path: once per new remote address.
fn publish_remote(registry: &SharedRegistry, entry: &Entry, remote: SocketAddr, shard: usize) {
    if entry.ufrag.is_some() {
        registry.lock().remotes.insert(remote, shard as u16);
    }
}

fn mark_dirty(dirty: &mut Vec<u32>, entry: &mut Entry, slot: u32) {
    if !entry.dirty {
        entry.dirty = true;
        dirty.push(slot);
    }
}

fn transmit(buf: BufId, len: usize, dst: SocketAddr) -> Transmit {
    Transmit {
        buf,
        offset: 0,
        len,
        dst,
        segment_size: None,
    }
}

/// Sends `tx` in order until the socket's send buffer is full: the buffers of what went (or
/// failed for good) go back to the pool, the rest stays at the front of `tx`, in order, for
/// the next try (counted in `send_retry`, never dropped). Returns whether `tx` is now empty.
/// A hard send error drops the batch (logged; it is not per packet: the socket is broken).
fn flush(
    backend: &mut Backend,
    pool: &mut BufPool,
    tx: &mut Vec<Transmit>,
    counters: &mut ShardCounters,
) -> bool {
    if tx.is_empty() {
        return true;
    }
    let consumed = match backend.try_send(pool, tx) {
        Ok(o) => {
            counters.tx_packets += o.sent as u64;
            counters.tx_bytes += tx[..o.consumed.min(tx.len())]
                .iter()
                .map(|t| t.len as u64)
                .sum::<u64>();
            o.consumed.min(tx.len())
        }
        Err(e) => {
            tracing::warn!(error = %e, "send failed");
            tx.len()
        }
    };
    counters.send_retry += (tx.len() - consumed) as u64;
    for t in tx.drain(..consumed) {
        pool.give(t.buf);
    }
    tx.is_empty()
}

fn min_opt(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, None) => a,
        (None, b) => b,
    }
}
