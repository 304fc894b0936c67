//! The cross-shard mesh: one bounded SPSC ring per ordered pair of shards, made at start-up
//! (style.md §4, glommio's mesh), plus each shard's `Waker` so a producer can rouse a sleeping
//! consumer.
//!
//! Fan-out choice: a published packet crosses to another shard as a COPY in a preallocated
//! ring slot — one copy per remote shard that has subscribers, never one per subscriber. The
//! alternative (lending a read-only view of the owner's pool buffer and waiting for every
//! handle to come back) needs a cross-thread `unsafe` view of the slab and makes the owner's
//! buffer lifetime depend on the slowest shard; a ≤1.5 kB memcpy per remote shard costs far
//! less than the per-subscriber SRTP protect that follows, so the copy was chosen.
//! `crossbeam_queue::ArrayQueue` stores items inline in one allocation made at construction:
//! push and pop never allocate. A full ring drops the item (counted by the producer).
//!
//! The slots are fixed-size and `Copy`, which suits media. Data-channel messages (issue 17, up to
//! 64 KiB) do not travel here: they have their own bounded ring of boxed messages per pair
//! ([`DATA_RING_CAPACITY`]), so media slots stay small and a chatty channel never displaces media.

use std::time::Instant;

use crossbeam_queue::ArrayQueue;
use rtp_core::session::MediaMeta;

use super::data::DataMsg;
use crate::proto::TrackId;
use crate::sys::Waker;

/// Longest RTP packet that crosses shards (a 1500-byte MTU datagram's payload fits).
pub const MAX_RING_PACKET: usize = 1500;

/// Items per ring. Each item is ~1.5 kB inline, so a ring costs ~384 kB; n shards make
/// n·(n−1) rings.
pub const RING_CAPACITY: usize = 256;

/// Data-channel messages per ring (boxed: a ring costs 8 kB until used). A full ring drops the
/// message, counted `ring_full` by the sender's shard.
pub const DATA_RING_CAPACITY: usize = 1024;

/// What travels between shards.
#[derive(Debug, Clone, Copy)]
pub enum RingItem {
    /// A decrypted published packet of `track`, for the receiving shard's subscribers.
    Media(RingPacket),
    /// A subscriber on the sending shard wants a keyframe of `track` (routed to its publisher).
    KeyframeWanted { track: TrackId, layer: u8 },
    /// The layer rates `track`'s publisher measured (published on the sending shard), for the
    /// receiving shard's subscribers' allocators.
    LayerRates {
        track: TrackId,
        layers: [rtp_core::bwe::Layer; rtp_core::bwe::MAX_LAYERS],
    },
    /// A datagram that landed on the wrong shard (plain RTP with a shared port: the kernel's
    /// SO_REUSEPORT hash picked another socket than the session's shard).
    Datagram(RingDatagram),
}

/// A published packet for another shard: its track, the facts the session reported with it,
/// when its datagram was received (for the SFU latency histograms), and its bytes.
#[derive(Debug, Clone, Copy)]
pub struct RingPacket {
    pub track: TrackId,
    pub meta: MediaMeta,
    pub rx: Instant,
    pub data: [u8; MAX_RING_PACKET],
}

#[derive(Debug, Clone, Copy)]
pub struct RingDatagram {
    pub src: std::net::SocketAddr,
    pub len: u16,
    pub data: [u8; MAX_RING_PACKET],
}

/// All rings of the process: `rings[from * n + to]` (the diagonal is unused).
#[derive(Debug)]
pub struct Mesh {
    n: usize,
    rings: Vec<ArrayQueue<RingItem>>,
    data: Vec<ArrayQueue<Box<DataMsg>>>,
    wakers: Vec<Waker>,
}

impl Mesh {
    /// Builds n·n rings (the n diagonal ones have capacity 1 and are never used, which keeps
    /// indexing branch-free) and keeps the shards' wakers.
    pub fn new(wakers: Vec<Waker>) -> Self {
        let n = wakers.len();
        let rings = (0..n * n)
            .map(|i| ArrayQueue::new(if i / n == i % n { 1 } else { RING_CAPACITY }))
            .collect();
        let data = (0..n * n)
            .map(|i| {
                ArrayQueue::new(if i / n == i % n {
                    1
                } else {
                    DATA_RING_CAPACITY
                })
            })
            .collect();
        Self {
            n,
            rings,
            data,
            wakers,
        }
    }

    pub fn shards(&self) -> usize {
        self.n
    }

    /// Pushes without waking; false (the item is dropped) when the ring is full.
    #[must_use]
    pub fn push(&self, from: usize, to: usize, item: RingItem) -> bool {
        self.rings[from * self.n + to].push(item).is_ok()
    }

    pub fn pop(&self, from: usize, to: usize) -> Option<RingItem> {
        self.rings[from * self.n + to].pop()
    }

    /// A data-channel message for shard `to`; gives it back when the data ring is full.
    pub fn push_data(&self, from: usize, to: usize, msg: Box<DataMsg>) -> Result<(), Box<DataMsg>> {
        self.data[from * self.n + to].push(msg)
    }

    pub fn pop_data(&self, from: usize, to: usize) -> Option<Box<DataMsg>> {
        self.data[from * self.n + to].pop()
    }

    pub fn wake(&self, shard: usize) {
        self.wakers[shard].wake();
    }

    pub fn waker(&self, shard: usize) -> &Waker {
        &self.wakers[shard]
    }
}
