//! How loaded this node's dataplane is, from the shards' own stats (issue 15 "load published
//! from the dataplane's stats … against a measured capacity"; docs/cluster.md "Load", D93).
//!
//! Each shard's snapshot carries its thread's CPU time (`cpu_us`), its packet totals, its
//! event-loop overruns and its pacer queueing-delay histogram. Between two snapshots of one
//! shard (their arrival instants, passed in) that gives:
//!
//! - **busy**: the share of the shard's core it used — the measured capacity is the core
//!   itself, so no configured figure has to be right;
//! - **pps** in + out, and from the two the **measured capacity** in pps the node would reach
//!   with every shard fully busy (sum of pps / busy per shard, once a shard is busy enough to
//!   extrapolate from);
//! - **saturation**: overruns (a phase hit its bound: the shard is behind) or packets leaving
//!   the pacer late (≥ 100 ms) — signs the shard is full whatever its CPU share says.
//!
//! **Pressure** (‰) = the busiest shard's busy share, or 1,000 when a shard is saturated.
//! Placement compares it with the participant count against `cluster.capacity` and takes the
//! larger (`cluster::choose`). Rates older than [`STALE`] (the dataplane went away) count as 0.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use sluice_proto::{pacer_delay_key, Counters};

use crate::cluster::NodeLoad;

/// Rates from a shard not heard of for this long are dropped.
pub(crate) const STALE: Duration = Duration::from_secs(5);
/// Overruns per second from which a shard counts as saturated.
const OVERRUNS_SATURATED: f64 = 20.0;
/// Share of paced packets leaving at or after [`LATE_BUCKET`] from which a shard counts as
/// saturated.
const LATE_SATURATED: f64 = 0.02;
/// Index of the pacer delay bucket from which a packet is late (`pacer_delay_lt_200ms` holds
/// 100–200 ms: buckets 6.. are ≥ 100 ms).
const LATE_BUCKET: usize = 6;
/// A shard below this busy share is too idle to extrapolate a capacity from.
const MIN_BUSY_FOR_CAPACITY: f64 = 0.2;

/// The dataplane totals of one shard that load is computed from.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Sample {
    at: Instant,
    cpu_us: u64,
    packets: u64,
    overruns: u64,
    paced: u64,
    late: u64,
}

impl Sample {
    fn of(at: Instant, c: &Counters) -> Self {
        let get = |k: &str| c.dropped.get(k).copied().unwrap_or(0);
        let late = (LATE_BUCKET..rtp_core::pacer::DELAY_BUCKETS)
            .map(|i| get(&pacer_delay_key(i)))
            .sum();
        Self {
            at,
            cpu_us: get("cpu_us"),
            packets: c.rx_packets + c.tx_packets,
            overruns: c.loop_overruns,
            paced: get("pacer_packets"),
            late,
        }
    }
}

/// One shard's rates over its last two snapshots.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct ShardRate {
    /// Share of its core, 0..=1.
    pub busy: f64,
    pub pps: f64,
    pub saturated: bool,
    sessions: u32,
    at: Option<Instant>,
}

/// Keeps each shard's previous snapshot and its latest rates.
#[derive(Debug, Default)]
pub(crate) struct LoadSampler {
    prev: BTreeMap<u16, Sample>,
    rates: BTreeMap<u16, ShardRate>,
}

/// Most shards tracked (a dataplane has one per core; ids beyond are ignored).
const MAX_SHARDS: usize = 1024;

impl LoadSampler {
    /// A shard's snapshot arrived at `now`.
    pub(crate) fn observe(&mut self, now: Instant, shard: u16, c: &Counters) {
        if !self.prev.contains_key(&shard) && self.prev.len() >= MAX_SHARDS {
            return;
        }
        let s = Sample::of(now, c);
        if let Some(p) = self.prev.insert(shard, s) {
            let dt = s.at.saturating_duration_since(p.at).as_secs_f64();
            // A restarted dataplane starts its totals again: skip that one interval.
            let restarted = s.cpu_us < p.cpu_us || s.packets < p.packets;
            if dt >= 0.05 && !restarted {
                let paced = s.paced.saturating_sub(p.paced);
                let late = s.late.saturating_sub(p.late);
                let overruns = s.overruns.saturating_sub(p.overruns) as f64 / dt;
                self.rates.insert(
                    shard,
                    ShardRate {
                        busy: ((s.cpu_us - p.cpu_us) as f64 / 1e6 / dt).clamp(0.0, 1.0),
                        pps: (s.packets - p.packets) as f64 / dt,
                        saturated: overruns >= OVERRUNS_SATURATED
                            || (paced > 0 && late as f64 / paced as f64 >= LATE_SATURATED),
                        sessions: c.sessions,
                        at: Some(now),
                    },
                );
                return;
            }
        }
        if let Some(r) = self.rates.get_mut(&shard) {
            r.sessions = c.sessions;
        }
    }

    /// The node's load at `now` from the shards heard of within [`STALE`].
    pub(crate) fn node_load(&self, now: Instant) -> NodeLoad {
        let live = || {
            self.rates.values().filter(move |r| {
                r.at.is_some_and(|at| now.saturating_duration_since(at) < STALE)
            })
        };
        let busy = live().map(|r| r.busy).fold(0.0, f64::max);
        let saturated = live().any(|r| r.saturated);
        let capacity: f64 = live()
            .filter(|r| r.busy >= MIN_BUSY_FOR_CAPACITY)
            .map(|r| r.pps / r.busy)
            .sum();
        let busy = (busy * 1000.0).round() as u64;
        NodeLoad {
            sessions: live().map(|r| u64::from(r.sessions)).sum(),
            pps: live().map(|r| r.pps).sum::<f64>().round() as u64,
            busy,
            pressure: if saturated { 1000 } else { busy },
            capacity_pps: capacity.round() as u64,
        }
    }

    /// Each live shard's busy share (for `/metrics`).
    pub(crate) fn busy_by_shard(&self, now: Instant) -> Vec<(u16, f64)> {
        self.rates
            .iter()
            .filter(|(_, r)| {
                r.at.is_some_and(|at| now.saturating_duration_since(at) < STALE)
            })
            .map(|(w, r)| (*w, r.busy))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counters(cpu_ms: u64, packets: u64, overruns: u64, paced: u64, late: u64) -> Counters {
        let mut c = Counters {
            rx_packets: packets / 2,
            tx_packets: packets - packets / 2,
            sessions: 3,
            loop_overruns: overruns,
            ..Counters::default()
        };
        c.dropped.insert("cpu_us".into(), cpu_ms * 1000);
        c.dropped.insert("pacer_packets".into(), paced);
        c.dropped.insert(pacer_delay_key(LATE_BUCKET), late);
        c
    }

    #[test]
    fn busy_share_pps_and_measured_capacity() {
        let t0 = Instant::now();
        let mut s = LoadSampler::default();
        s.observe(t0, 0, &counters(1_000, 10_000, 0, 0, 0));
        s.observe(t0, 1, &counters(1_000, 10_000, 0, 0, 0));
        assert_eq!(s.node_load(t0).pressure, 0, "one snapshot gives no rate");
        let t1 = t0 + Duration::from_secs(1);
        // Shard 0: 250 ms of CPU for 50,000 packets in 1 s; shard 1: 200 ms for 20,000.
        s.observe(t1, 0, &counters(1_250, 60_000, 0, 100, 0));
        s.observe(t1, 1, &counters(1_200, 30_000, 0, 100, 0));
        let l = s.node_load(t1);
        assert_eq!(l.busy, 250);
        assert_eq!(l.pressure, 250);
        assert_eq!(l.pps, 70_000);
        assert_eq!(l.sessions, 6);
        // 50,000 / 0.25 + 20,000 / 0.2 = 300,000 pps at full load.
        assert_eq!(l.capacity_pps, 300_000);
        // Below 20 % busy a shard's fixed costs (timers, RTCP) dominate: no extrapolation.
        let t2 = t1 + Duration::from_secs(1);
        s.observe(t2, 0, &counters(1_260, 61_000, 0, 100, 0));
        s.observe(t2, 1, &counters(1_400, 50_000, 0, 100, 0));
        assert_eq!(s.node_load(t2).capacity_pps, 100_000);
    }

    #[test]
    fn overruns_or_late_pacing_saturate_whatever_the_cpu_share() {
        let t0 = Instant::now();
        let t1 = t0 + Duration::from_secs(1);
        let mut s = LoadSampler::default();
        s.observe(t0, 0, &counters(0, 0, 0, 0, 0));
        s.observe(t1, 0, &counters(300, 1_000, 25, 0, 0));
        assert_eq!(s.node_load(t1).pressure, 1000);
        let mut s = LoadSampler::default();
        s.observe(t0, 0, &counters(0, 0, 0, 0, 0));
        s.observe(t1, 0, &counters(300, 1_000, 0, 1_000, 30));
        assert_eq!(s.node_load(t1).pressure, 1000);
        s.observe(
            t1 + Duration::from_secs(1),
            0,
            &counters(600, 2_000, 0, 2_000, 31),
        );
        assert_eq!(s.node_load(t1 + Duration::from_secs(1)).pressure, 300);
    }

    #[test]
    fn stale_and_restarted_shards_do_not_count() {
        let t0 = Instant::now();
        let t1 = t0 + Duration::from_secs(1);
        let mut s = LoadSampler::default();
        s.observe(t0, 0, &counters(0, 0, 0, 0, 0));
        s.observe(t1, 0, &counters(900, 1_000, 0, 0, 0));
        assert_eq!(s.node_load(t1).busy, 900);
        assert_eq!(s.node_load(t1 + STALE).busy, 0, "the dataplane went away");
        // A new dataplane: totals start again; the falling interval is skipped.
        let t2 = t1 + Duration::from_secs(1);
        s.observe(t2, 0, &counters(10, 10, 0, 0, 0));
        assert_eq!(s.node_load(t2).busy, 900);
        s.observe(t2 + Duration::from_secs(1), 0, &counters(110, 20, 0, 0, 0));
        assert_eq!(s.node_load(t2 + Duration::from_secs(1)).busy, 100);
    }

    #[test]
    fn shard_count_is_bounded() {
        let t0 = Instant::now();
        let mut s = LoadSampler::default();
        for w in 0..=u16::MAX {
            s.observe(t0, w, &counters(0, 0, 0, 0, 0));
        }
        assert_eq!(s.prev.len(), MAX_SHARDS);
    }
}
