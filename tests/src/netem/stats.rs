//! Relay counters: lock-free per-direction counters the relay threads bump, and the plain
//! [`Stats`] snapshot (with its JSON form) that the handle, the control lines and the binary's
//! exit report hand out.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use super::impairment::{Direction, DropReason};

/// Counters of one direction. At rest (nothing queued):
/// `forwarded + dropped_* == received + duplicated`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DirStats {
    /// Datagrams read from the sending side.
    pub received: u64,
    /// Datagrams written to the receiving side (copies included).
    pub forwarded: u64,
    /// Lost to random or burst loss.
    pub dropped_loss: u64,
    /// Dropped because the direction was paused (on arrival or while queued).
    pub dropped_pause: u64,
    /// Dropped by the rate limiter's queue or the relay's own bounded queues.
    pub dropped_queue: u64,
    /// Dropped for anything else: oversize datagram, client limit, a failed send.
    pub dropped_other: u64,
    /// Extra copies scheduled by `duplicate`.
    pub duplicated: u64,
    /// Datagrams given the extra reorder delay.
    pub reordered: u64,
}

/// A snapshot of both directions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Client → upstream.
    pub up: DirStats,
    /// Upstream → client.
    pub down: DirStats,
    /// Distinct client addresses seen (each has its own upstream socket).
    pub clients: u64,
}

impl Stats {
    /// The counters of `direction`.
    pub fn dir(&self, direction: Direction) -> &DirStats {
        match direction {
            Direction::Up => &self.up,
            Direction::Down => &self.down,
        }
    }

    /// One-line JSON object: `{"up":{…},"down":{…},"clients":N}`.
    pub fn to_json(&self) -> String {
        let mut out = String::with_capacity(512);
        out.push('{');
        for direction in Direction::ALL {
            let s = self.dir(direction);
            let _ = write!(
                out,
                "\"{direction}\":{{\"received\":{},\"forwarded\":{},\"dropped_loss\":{},\
                 \"dropped_pause\":{},\"dropped_queue\":{},\"dropped_other\":{},\
                 \"duplicated\":{},\"reordered\":{}}},",
                s.received,
                s.forwarded,
                s.dropped_loss,
                s.dropped_pause,
                s.dropped_queue,
                s.dropped_other,
                s.duplicated,
                s.reordered
            );
        }
        let _ = write!(out, "\"clients\":{}}}", self.clients);
        out
    }
}

/// Atomic counters shared by the relay threads and the handle.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    dirs: [DirCounters; 2],
    clients: AtomicU64,
}

#[derive(Debug, Default)]
pub(crate) struct DirCounters {
    pub(crate) received: AtomicU64,
    pub(crate) forwarded: AtomicU64,
    pub(crate) dropped_loss: AtomicU64,
    pub(crate) dropped_pause: AtomicU64,
    pub(crate) dropped_queue: AtomicU64,
    pub(crate) dropped_other: AtomicU64,
    pub(crate) duplicated: AtomicU64,
    pub(crate) reordered: AtomicU64,
}

impl Counters {
    pub(crate) fn dir(&self, direction: Direction) -> &DirCounters {
        &self.dirs[direction.index()]
    }

    pub(crate) fn client_added(&self) {
        bump(&self.clients);
    }

    pub(crate) fn snapshot(&self) -> Stats {
        Stats {
            up: self.dirs[0].snapshot(),
            down: self.dirs[1].snapshot(),
            clients: self.clients.load(Ordering::Relaxed),
        }
    }
}

impl DirCounters {
    pub(crate) fn dropped(&self, reason: DropReason) {
        bump(match reason {
            DropReason::Loss => &self.dropped_loss,
            DropReason::Pause => &self.dropped_pause,
            DropReason::Queue => &self.dropped_queue,
        });
    }

    fn snapshot(&self) -> DirStats {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        DirStats {
            received: load(&self.received),
            forwarded: load(&self.forwarded),
            dropped_loss: load(&self.dropped_loss),
            dropped_pause: load(&self.dropped_pause),
            dropped_queue: load(&self.dropped_queue),
            dropped_other: load(&self.dropped_other),
            duplicated: load(&self.duplicated),
            reordered: load(&self.reordered),
        }
    }
}

/// Counters are statistics, not synchronisation: relaxed ordering is enough.
pub(crate) fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_has_every_counter() {
        let c = Counters::default();
        bump(&c.dir(Direction::Up).received);
        c.dir(Direction::Down).dropped(DropReason::Pause);
        c.client_added();
        let json = c.snapshot().to_json();
        assert_eq!(
            json,
            "{\"up\":{\"received\":1,\"forwarded\":0,\"dropped_loss\":0,\"dropped_pause\":0,\
             \"dropped_queue\":0,\"dropped_other\":0,\"duplicated\":0,\"reordered\":0},\
             \"down\":{\"received\":0,\"forwarded\":0,\"dropped_loss\":0,\"dropped_pause\":1,\
             \"dropped_queue\":0,\"dropped_other\":0,\"duplicated\":0,\"reordered\":0},\
             \"clients\":1}"
        );
    }
}
