//! `TrackRouter`: per track this shard has an interest in, its NACK cache (one `PacketHistory`
//! per (track, shard): the only copy of each published packet here), its publisher (when local)
//! or source shard, its local subscribers and the shards it feeds; and the fan-out queue.
//!
//! Fan-out reads the packet from its history slot — the copy the receive path made — and writes
//! each subscriber's copy straight into a fresh pool buffer (rewrite + SRTP), so a published
//! packet is copied once per subscriber and once into the history, never through a scratch
//! buffer. Audio fans out at once. Video is queued as [`Job`]s and forwarded in bounded slices
//! ([`TrackRouter::run_slice`]), so a keyframe to hundreds of subscribers never holds up the
//! audio, RTCP or STUN that arrives meanwhile by more than one slice. A slice takes a window of
//! up to [`WINDOW`] queued packets of one track and gives each subscriber in turn the whole
//! window: subscribers are served round-robin across the burst, and each gets a run of
//! equal-size packets the I/O half can send as one GSO message.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use rtp_core::nack::{HistoryConfig, PacketHistory};
use rtp_core::session::{DownId, MediaMeta, Session, UpId};
use rtp_core::RtpView;

use crate::pool::BufId;
use crate::proto::{MediaKind, SubscriptionId, TrackId};

use super::counters::{Drop, ShardCounters};
use super::io::Io;
use super::latency::LatClass;
use super::mesh::MAX_RING_PACKET;
use super::table::{SessionTable, Slot};

/// Packets in each (track, shard) NACK cache: ~1 s of 1 Mbit/s video. A multiple of 1, 2 and 3:
/// a simulcast track's layers each get their own share of the slots ([`history_key`]).
const HISTORY_PACKETS: usize = 510;
/// Queued video packets awaiting fan-out; beyond, new ones are dropped (counted).
const MAX_JOBS: usize = 4096;
/// Packets of one track given to each subscriber in turn (the GSO run and round-robin quantum).
pub(super) const WINDOW: usize = 8;

/// A track this shard has interest in.
#[derive(Debug)]
pub(super) struct TrackState {
    pub history: PacketHistory,
    pub kind: MediaKind,
    /// The publisher session, when it lives here.
    pub publisher: Option<(Slot, UpId)>,
    /// The publisher's shard, when it lives elsewhere.
    pub source: Option<u16>,
    /// Local subscribers.
    pub subs: Vec<(Slot, DownId)>,
    /// Other shards with subscribers (only meaningful on the publisher's shard).
    pub remote: Vec<u16>,
    pub muted: bool,
    /// Simulcast layers the track has (the NACK cache's key, [`history_key`]).
    pub layers: u8,
    /// The publisher's latest measured layer rates (for new subscribers).
    pub rates: Option<[rtp_core::bwe::Layer; rtp_core::bwe::MAX_LAYERS]>,
}

impl TrackState {
    pub fn new(kind: MediaKind) -> Self {
        Self {
            history: PacketHistory::new(HistoryConfig {
                capacity: HISTORY_PACKETS,
                max_age: Duration::from_secs(1),
                max_packet_len: MAX_RING_PACKET,
            }),
            kind,
            publisher: None,
            source: None,
            subs: Vec::new(),
            remote: Vec::new(),
            muted: false,
            layers: 1,
            rates: None,
        }
    }

    pub fn unused(&self) -> bool {
        self.publisher.is_none() && self.subs.is_empty() && self.remote.is_empty()
    }
}

/// Where a packet of `layer` goes in its track's NACK cache. Each simulcast layer numbers its
/// packets on its own, so the cache keys them `ext_seq × layers + layer`: with a capacity that
/// is a multiple of `layers`, a slot only ever holds one layer's packets. Keyed by `ext_seq`
/// alone, the layers overwrote each other's slots (and a layer whose sequence numbers happen
/// to be lower was refused as stale), so NACKs for the layer a subscriber was switched to
/// (its keyframe, on a congested path) went unanswered.
pub(super) fn history_key(ext_seq: u64, layer: u8, layers: u8) -> u64 {
    let n = u64::from(layers.clamp(1, 3));
    ext_seq.saturating_mul(n) + u64::from(layer).min(n - 1)
}

/// A video packet waiting for (the rest of) its fan-out.
#[derive(Debug, Clone, Copy)]
pub(super) struct Job {
    pub track: TrackId,
    pub meta: MediaMeta,
    /// When its source datagram was received (on whichever shard).
    pub rx: Instant,
}

/// The window being fanned out: the first `len` jobs, up to subscriber `cursor`.
#[derive(Debug, Default, Clone, Copy)]
struct Window {
    len: usize,
    cursor: usize,
}

/// See the module docs.
#[derive(Debug)]
pub(super) struct TrackRouter {
    pub tracks: HashMap<TrackId, TrackState>,
    pub subs: HashMap<SubscriptionId, (Slot, DownId)>,
    jobs: VecDeque<Job>,
    window: Window,
    /// Free buffers fan-out leaves to the receive path.
    reserve: usize,
}

impl TrackRouter {
    pub fn new(reserve: usize) -> Self {
        Self {
            tracks: HashMap::new(),
            subs: HashMap::new(),
            jobs: VecDeque::with_capacity(MAX_JOBS),
            window: Window::default(),
            reserve,
        }
    }

    pub fn track_mut(&mut self, track: TrackId, kind: MediaKind) -> &mut TrackState {
        self.tracks
            .entry(track)
            .or_insert_with(|| TrackState::new(kind))
    }

    pub fn forget_if_unused(&mut self, track: TrackId) {
        if self.tracks.get(&track).is_some_and(TrackState::unused) {
            self.tracks.remove(&track);
        }
    }

    /// Free buffers fan-out (and probing) leaves to the receive path.
    pub fn reserve(&self) -> usize {
        self.reserve
    }

    /// Video packets waiting for fan-out.
    pub fn pending(&self) -> usize {
        self.jobs.len()
    }

    /// Stores published packet `pkt` of `track` in its history (the one copy on this shard);
    /// false when there is nothing to fan out (unknown or muted track).
    pub fn store(
        &mut self,
        now: Instant,
        track: TrackId,
        meta: MediaMeta,
        pkt: &[u8],
        counters: &mut ShardCounters,
    ) -> bool {
        let Some(ts) = self.tracks.get_mut(&track) else {
            counters.drop(Drop::UnknownTrack);
            return false;
        };
        if ts.muted {
            return false;
        }
        // Stale/too long only costs a NACK answer later; counted by the history itself.
        let _ = ts
            .history
            .insert(now, history_key(meta.ext_seq, meta.layer, ts.layers), pkt);
        true
    }

    /// Fans the stored packet out to the local subscribers: audio now, video through the queue.
    #[allow(clippy::too_many_arguments)]
    pub fn fan_out(
        &mut self,
        now: Instant,
        rx: Instant,
        track: TrackId,
        meta: MediaMeta,
        table: &mut SessionTable,
        io: &mut Io,
        counters: &mut ShardCounters,
    ) {
        let Some(ts) = self.tracks.get_mut(&track) else {
            return;
        };
        if ts.subs.is_empty() {
            return;
        }
        if ts.kind == MediaKind::Audio {
            let TrackState {
                history,
                subs,
                layers,
                ..
            } = ts;
            let Some(bytes) = history.get(now, history_key(meta.ext_seq, meta.layer, *layers))
            else {
                counters.drop(Drop::FanoutStale);
                return;
            };
            let Ok(view) = RtpView::parse(bytes) else {
                counters.drop(Drop::Parse);
                return;
            };
            for &sub in subs.iter() {
                forward_one(
                    now,
                    rx,
                    &view,
                    meta,
                    LatClass::Audio,
                    sub,
                    self.reserve,
                    table,
                    io,
                    counters,
                );
            }
            return;
        }
        if self.jobs.len() == MAX_JOBS {
            counters.drop(Drop::FanoutBacklog);
            return;
        }
        self.jobs.push_back(Job { track, meta, rx });
    }

    /// Forwards up to `budget` queued copies; returns how many it made (or skipped).
    pub fn run_slice(
        &mut self,
        now: Instant,
        budget: usize,
        table: &mut SessionTable,
        io: &mut Io,
        counters: &mut ShardCounters,
    ) -> usize {
        let mut done = 0;
        // Bounded: every pass forwards at least one copy or retires at least one job.
        while done < budget {
            let Some(front) = self.jobs.front().copied() else {
                break;
            };
            if self.window.len == 0 {
                let mut w = 1;
                while w < WINDOW && self.jobs.get(w).is_some_and(|j| j.track == front.track) {
                    w += 1;
                }
                self.window = Window { len: w, cursor: 0 };
            }
            let Window { len, mut cursor } = self.window;
            let finished = match self.tracks.get_mut(&front.track) {
                None => true,
                Some(ts) => {
                    let TrackState {
                        history,
                        subs,
                        layers,
                        ..
                    } = ts;
                    while cursor < subs.len() && done < budget {
                        let sub = subs[cursor];
                        for job in self.jobs.range(..len) {
                            let key = history_key(job.meta.ext_seq, job.meta.layer, *layers);
                            let Some(bytes) = history.get(now, key) else {
                                counters.drop(Drop::FanoutStale);
                                continue;
                            };
                            let Ok(view) = RtpView::parse(bytes) else {
                                counters.drop(Drop::Parse);
                                continue;
                            };
                            forward_one(
                                now,
                                job.rx,
                                &view,
                                job.meta,
                                LatClass::Video,
                                sub,
                                self.reserve,
                                table,
                                io,
                                counters,
                            );
                        }
                        done += len;
                        cursor += 1;
                    }
                    cursor >= subs.len()
                }
            };
            if finished {
                self.jobs.drain(..len);
                self.window = Window::default();
                done += 1;
            } else {
                self.window.cursor = cursor;
            }
        }
        done
    }

    /// Drops every queued packet of `track` (it went away).
    pub fn forget_jobs(&mut self, track: TrackId) {
        if self.jobs.iter().any(|j| j.track == track) {
            self.jobs.retain(|j| j.track != track);
            self.window = Window::default();
        }
    }
}

/// One subscriber's copy: decide, rewrite into a fresh buffer, protect, queue in its pacer.
#[allow(clippy::too_many_arguments)]
fn forward_one(
    now: Instant,
    rx: Instant,
    view: &RtpView<'_>,
    meta: MediaMeta,
    class: LatClass,
    (slot, down): (Slot, DownId),
    reserve: usize,
    table: &mut SessionTable,
    io: &mut Io,
    counters: &mut ShardCounters,
) {
    let Some(entry) = table.get_mut(slot) else {
        return;
    };
    // Audio leaves in this iteration's urgent pass: it never piles up in a pacer.
    let queues = class != LatClass::Audio;
    if !admit(io, reserve, queues, &entry.session, counters) {
        return;
    }
    let Some(buf) = io.pool.take() else {
        counters.drop(Drop::PoolEmpty);
        return;
    };
    match entry
        .session
        .forward(now, down, view, meta, &mut io.pool.get_mut(buf)[..], buf)
    {
        Ok(Some(_)) => {
            counters.forwarded += 1;
            io.latency.copied(buf, class, rx, now);
            // Only its pacer changed: audio to the priority pass, video to the round-robin.
            match class {
                LatClass::Audio => table.mark_audio(slot),
                _ => table.mark_ready(slot),
            }
        }
        Ok(None) => {
            io.pool.give(buf);
            // The Forwarder may have asked for a keyframe (drained with the session).
            table.mark_dirty(slot);
        }
        Err(_) => {
            io.pool.give(buf);
            counters.drop(Drop::ForwardError);
        }
    }
}

/// Whether a copy for `session` may take a pool buffer. The last `reserve` buffers stay with
/// the receive path: if queued copies took them all, the worker could not receive (io_uring's
/// buffer ring runs dry and its receive disarms) and would fall further behind; dropping a copy
/// is the cheaper loss. And a copy that will wait in its pacer (`queues`) is refused to a
/// session already holding as many queued copies as the pool has free beyond the reserve: a
/// dynamic threshold (Choudhury and Hahne's, for a switch's shared buffer), so that sessions
/// whose pacers cannot drain — a subscriber reporting no bandwidth and NACKing everything —
/// cannot take the pool from the others. `n` such sessions hold at most `n / (n + 1)` of it;
/// a session that keeps up holds a few copies and meets the threshold only when the pool is
/// all but empty anyway (`tests/hostile_peers.rs`).
fn admit(
    io: &Io,
    reserve: usize,
    queues: bool,
    session: &Session<BufId>,
    counters: &mut ShardCounters,
) -> bool {
    let Some(spare) = io.pool.free_count().checked_sub(reserve).filter(|&n| n > 0) else {
        counters.drop(Drop::PoolEmpty);
        return false;
    };
    if queues && session.pacer_stats().total_queued() >= spare {
        counters.drop(Drop::PoolShare);
        return false;
    }
    true
}

/// A retransmission for subscriber `slot`'s `down` of source packet `src_ext_seq` of `layer`.
#[allow(clippy::too_many_arguments)]
pub(super) fn retransmit(
    now: Instant,
    reserve: usize,
    ts: &mut TrackState,
    slot: Slot,
    down: DownId,
    seq: u16,
    (src_ext_seq, layer): (u64, u8),
    table: &mut SessionTable,
    io: &mut Io,
    counters: &mut ShardCounters,
) {
    let Some(orig) = ts
        .history
        .get(now, history_key(src_ext_seq, layer, ts.layers))
    else {
        counters.drop(Drop::HistoryMiss);
        return;
    };
    let Ok(view) = RtpView::parse(orig) else {
        counters.drop(Drop::Parse);
        return;
    };
    let Some(entry) = table.get_mut(slot) else {
        return;
    };
    if !admit(io, reserve, true, &entry.session, counters) {
        return;
    }
    let Some(buf) = io.pool.take() else {
        counters.drop(Drop::PoolEmpty);
        return;
    };
    match entry
        .session
        .retransmit(now, down, seq, &view, &mut io.pool.get_mut(buf)[..], buf)
    {
        Ok(Some(_)) => {
            // A NACK answer's SFU latency runs from the NACK's arrival.
            io.latency.copied(buf, LatClass::Rtx, now, now);
            table.mark_dirty(slot);
        }
        Ok(None) => io.pool.give(buf),
        Err(_) => {
            io.pool.give(buf);
            counters.drop(Drop::ForwardError);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Three simulcast layers whose sequence numbers lie far apart (the low layer's lowest, as
    /// Chromium's random starts often make them) interleaved into one NACK cache: every
    /// packet of every layer is still there half a second later. Keyed by ext_seq alone the
    /// top layer overwrote the low layer's slots, and the low layer's (numerically older)
    /// packets were refused as stale: NACKs for the layer a congested subscriber was switched
    /// to went unanswered (`history_miss`).
    #[test]
    #[allow(clippy::disallowed_methods)] // a test needs some base instant
    fn simulcast_layers_keep_their_own_history_slots() {
        let t = Instant::now();
        let mut ts = TrackState::new(MediaKind::Video);
        ts.layers = 3;
        // Starts 70 and 110 cache-widths apart: the same slots, were the layers not kept apart.
        let starts = [1_000u64, 1_000 + 510 * 70, 1_000 + 510 * 110];
        let mut last = [0u64; 3];
        // 200 ms of 130 packets/s top, 60 mid, 30 low.
        for ms in 0..200u64 {
            let now = t + Duration::from_millis(ms);
            for (layer, every) in [(0u8, 33u64), (1, 16), (2, 7)] {
                if ms % every == 0 {
                    let l = usize::from(layer);
                    let seq = starts[l] + ms / every;
                    last[l] = seq;
                    let pkt = [layer, seq as u8, 0, 0];
                    let _ = ts
                        .history
                        .insert(now, history_key(seq, layer, ts.layers), &pkt);
                }
            }
        }
        let now = t + Duration::from_millis(500);
        for layer in 0..3u8 {
            let l = usize::from(layer);
            for seq in starts[l]..=last[l] {
                let got = ts.history.get(now, history_key(seq, layer, ts.layers));
                assert_eq!(
                    got.map(|p| (p[0], p[1])),
                    Some((layer, seq as u8)),
                    "layer {layer} seq {seq}"
                );
            }
        }
        // A single-layer track keys by ext_seq itself.
        assert_eq!(history_key(77, 0, 1), 77);
    }
}
