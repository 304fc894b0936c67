//! The NACK cache of a published stream (RFC 4585 §6.2.1, RFC 4588 §3): the
//! last `capacity` packets, each stored once, so any subscriber's NACK can be
//! answered with a retransmission.
//!
//! One contiguous buffer of `capacity * max_packet_len` bytes is allocated at
//! construction; a packet lives in slot `ext_seq % capacity` until a newer
//! packet takes the slot or it ages out. Insert and lookup are O(1) and
//! never allocate.

use std::time::{Duration, Instant};

use thiserror::Error;

/// Sizing of a [`PacketHistory`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryConfig {
    /// Number of packet slots (0 is treated as 1).
    pub capacity: usize,
    /// Packets older than this are not returned.
    pub max_age: Duration,
    /// Longest packet a slot holds, in bytes.
    pub max_packet_len: usize,
}

impl Default for HistoryConfig {
    fn default() -> Self {
        Self {
            capacity: 1024,
            max_age: Duration::from_secs(1),
            max_packet_len: 1500,
        }
    }
}

/// Why a packet was not stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum HistoryError {
    /// The packet exceeds `max_packet_len`.
    #[error("packet of {len} bytes exceeds the slot size of {max}")]
    TooLong {
        /// Length of the rejected packet.
        len: usize,
        /// The configured slot size.
        max: usize,
    },
    /// The slot already holds a newer packet: this one is too old to keep.
    #[error("a newer packet already occupies the slot")]
    Stale,
}

/// Counters of a [`PacketHistory`]; monotonic over its life.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HistoryStats {
    /// Packets stored.
    pub inserted: u64,
    /// Packets rejected by `insert`.
    pub rejected: u64,
    /// Lookups answered.
    pub hits: u64,
    /// Lookups for packets never stored, overwritten or expired.
    pub misses: u64,
}

#[derive(Debug, Clone, Copy)]
struct SlotMeta {
    ext_seq: u64,
    len: usize,
    stored_at: Instant,
}

/// Fixed-capacity store of recently sent packets, keyed by extended sequence number.
#[derive(Debug)]
pub struct PacketHistory {
    cfg: HistoryConfig,
    data: Vec<u8>,
    slots: Vec<Option<SlotMeta>>,
    stats: HistoryStats,
}

impl PacketHistory {
    /// Allocate all storage for `cfg.capacity` packets of `cfg.max_packet_len` bytes.
    pub fn new(cfg: HistoryConfig) -> Self {
        let capacity = cfg.capacity.max(1);
        Self {
            cfg: HistoryConfig { capacity, ..cfg },
            data: vec![0; capacity * cfg.max_packet_len],
            slots: vec![None; capacity],
            stats: HistoryStats::default(),
        }
    }

    /// Copy `packet` into the slot of `ext_seq`, replacing whatever older
    /// packet was there. Re-inserting the same sequence number overwrites it.
    pub fn insert(
        &mut self,
        now: Instant,
        ext_seq: u64,
        packet: &[u8],
    ) -> Result<(), HistoryError> {
        let max = self.cfg.max_packet_len;
        if packet.len() > max {
            self.stats.rejected += 1;
            return Err(HistoryError::TooLong {
                len: packet.len(),
                max,
            });
        }
        let i = self.index(ext_seq);
        if self.slots[i].is_some_and(|m| m.ext_seq > ext_seq) {
            self.stats.rejected += 1;
            return Err(HistoryError::Stale);
        }
        let start = i * max;
        self.data[start..start + packet.len()].copy_from_slice(packet);
        self.slots[i] = Some(SlotMeta {
            ext_seq,
            len: packet.len(),
            stored_at: now,
        });
        self.stats.inserted += 1;
        Ok(())
    }

    /// The stored bytes of `ext_seq`, unless overwritten, never stored, or
    /// older than `max_age`.
    pub fn get(&mut self, now: Instant, ext_seq: u64) -> Option<&[u8]> {
        let i = self.index(ext_seq);
        let fresh = self.slots[i].filter(|m| {
            m.ext_seq == ext_seq && now.saturating_duration_since(m.stored_at) <= self.cfg.max_age
        });
        let Some(m) = fresh else {
            self.stats.misses += 1;
            return None;
        };
        self.stats.hits += 1;
        let start = i * self.cfg.max_packet_len;
        Some(&self.data[start..start + m.len])
    }

    /// Counters so far.
    pub fn stats(&self) -> HistoryStats {
        self.stats
    }

    /// The configuration in effect (capacity at least 1).
    pub fn config(&self) -> HistoryConfig {
        self.cfg
    }

    fn index(&self, ext_seq: u64) -> usize {
        (ext_seq % self.slots.len() as u64) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[allow(clippy::disallowed_methods)] // tests need some base instant
    fn t0() -> Instant {
        Instant::now()
    }

    fn history(capacity: usize) -> PacketHistory {
        PacketHistory::new(HistoryConfig {
            capacity,
            max_age: Duration::from_millis(500),
            max_packet_len: 32,
        })
    }

    #[test]
    fn insert_then_get() {
        let t = t0();
        let mut h = history(8);
        h.insert(t, 100, b"hello").unwrap();
        h.insert(t, 101, b"world!").unwrap();
        assert_eq!(h.get(t, 100), Some(&b"hello"[..]));
        assert_eq!(h.get(t, 101), Some(&b"world!"[..]));
        assert_eq!(h.get(t, 102), None);
        assert_eq!(h.stats().hits, 2);
        assert_eq!(h.stats().misses, 1);
    }

    #[test]
    fn overwritten_slot_misses() {
        let t = t0();
        let mut h = history(4);
        for s in 0..6u64 {
            h.insert(t, s, &[s as u8; 3]).unwrap();
        }
        assert_eq!(h.get(t, 1), None); // slot taken by 5
        assert_eq!(h.get(t, 5), Some(&[5u8; 3][..]));
        assert_eq!(h.insert(t, 1, b"x"), Err(HistoryError::Stale));
    }

    #[test]
    fn expires_by_age() {
        let t = t0();
        let mut h = history(4);
        h.insert(t, 7, b"abc").unwrap();
        assert!(h.get(t + Duration::from_millis(500), 7).is_some());
        assert!(h.get(t + Duration::from_millis(501), 7).is_none());
    }

    #[test]
    fn too_long_rejected_and_exact_fit_kept() {
        let t = t0();
        let mut h = history(2);
        assert_eq!(
            h.insert(t, 1, &[0; 33]),
            Err(HistoryError::TooLong { len: 33, max: 32 })
        );
        h.insert(t, 1, &[9; 32]).unwrap();
        assert_eq!(h.get(t, 1), Some(&[9u8; 32][..]));
        assert_eq!(h.stats().rejected, 1);
    }

    #[test]
    fn shorter_packet_replaces_longer_cleanly() {
        let t = t0();
        let mut h = history(1);
        h.insert(t, 1, &[1; 20]).unwrap();
        h.insert(t, 2, &[2; 4]).unwrap();
        assert_eq!(h.get(t, 2), Some(&[2u8; 4][..]));
    }

    #[test]
    fn zero_capacity_is_one() {
        let t = t0();
        let mut h = history(0);
        assert_eq!(h.config().capacity, 1);
        h.insert(t, 3, b"z").unwrap();
        assert_eq!(h.get(t, 3), Some(&b"z"[..]));
    }
}
