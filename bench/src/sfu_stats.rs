//! What the dataplane's workers report about a run, beside what the generator measured end to
//! end: the pacer queueing delay and the SFU-added latency, both from the workers' stats map
//! (`pacer_*`, `lat_*`; docs/control-socket.md), differenced over the generator's measurement
//! window (`fanout::Window`: each worker's first snapshot after it opened, its last before it
//! closed).

use std::collections::BTreeMap;

use rtp_core::pacer::{DELAY_BUCKETS, DELAY_BUCKET_BOUNDS_MS};
use serde_json::{json, Value};
use sluice_dataplane::shard::LATENCY_BOUNDS_US;
use sluice_proto::{pacer_delay_key, ShardStats};

use crate::report::round;

/// Pacer queueing delay over a run, summed over workers: the difference of the workers'
/// `pacer_*` counters between the snapshot before the generator started and the last one.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PacerQueueing {
    /// Whether the workers' snapshots carried the counters at all.
    pub exposed: bool,
    pub packets: u64,
    pub delay_us_sum: u64,
    /// Largest delay since the workers started (a maximum cannot be differenced).
    pub max_us: u64,
    /// Packets per delay bucket (`rtp_core::pacer::DELAY_BUCKET_BOUNDS_MS`).
    pub histogram: [u64; DELAY_BUCKETS],
}

impl PacerQueueing {
    /// Sums `after − before` over the workers in `after`.
    pub fn between(before: &BTreeMap<u16, ShardStats>, after: &BTreeMap<u16, ShardStats>) -> Self {
        let mut q = PacerQueueing::default();
        for (w, a) in after {
            let a = &a.counters.dropped;
            let b = before.get(w).map(|b| &b.counters.dropped);
            let delta = |k: &str| {
                let old = b.and_then(|b| b.get(k)).copied().unwrap_or(0);
                a.get(k).copied().unwrap_or(0).saturating_sub(old)
            };
            q.exposed |= a.contains_key("pacer_packets");
            q.packets += delta("pacer_packets");
            q.delay_us_sum += delta("pacer_delay_us_sum");
            q.max_us = q
                .max_us
                .max(a.get("pacer_delay_us_max").copied().unwrap_or(0));
            for (i, slot) in q.histogram.iter_mut().enumerate() {
                *slot += delta(&pacer_delay_key(i));
            }
        }
        q
    }

    pub fn mean_us(&self) -> f64 {
        self.delay_us_sum as f64 / self.packets.max(1) as f64
    }

    /// Upper bound (ms) of the bucket holding quantile `q`; `None` for no packets or when it
    /// falls in the open last bucket (≥ 1 s).
    pub fn quantile_below_ms(&self, q: f64) -> Option<u64> {
        if self.packets == 0 {
            return None;
        }
        let total: u64 = self.histogram.iter().sum();
        let rank = (q * total as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, n) in self.histogram.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return DELAY_BUCKET_BOUNDS_MS.get(i).copied();
            }
        }
        None
    }

    pub fn to_json(&self) -> Value {
        json!({
            "exposed_by_dataplane": self.exposed,
            "packets": self.packets,
            "mean_us": round(self.mean_us(), 1),
            "max_us": self.max_us,
            "p50_below_ms": self.quantile_below_ms(0.50),
            "p99_below_ms": self.quantile_below_ms(0.99),
            "p999_below_ms": self.quantile_below_ms(0.999),
            // In bucket order; `below_ms: null` is the open last bucket (at or above 1 s).
            "histogram": DELAY_BUCKET_BOUNDS_MS.iter().map(|&b| Some(b)).chain([None])
                .zip(self.histogram)
                .map(|(b, n)| json!({"below_ms": b, "packets": n}))
                .collect::<Vec<_>>(),
            "method": "the SFU workers' pacer counters (enqueue to leaving the pacer, every paced \
                       packet of every subscriber session) differenced over the measurement window \
                       (each worker's first snapshot after it opened and its last before it \
                       closed: up to one stats interval shorter at each end); max_us is since \
                       the workers started; percentiles are histogram bucket upper bounds. Audio bypasses \
                       the pacer budget, so most of this is video",
        })
    }
}

/// One latency histogram summed over workers (bucket upper bounds `LATENCY_BOUNDS_US`, the last
/// bucket open).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LatencyHist {
    pub packets: u64,
    pub sum_us: u64,
    /// Largest since the workers started (a maximum cannot be differenced).
    pub max_us: u64,
    pub buckets: Vec<u64>,
}

impl LatencyHist {
    fn between(
        before: &BTreeMap<u16, ShardStats>,
        after: &BTreeMap<u16, ShardStats>,
        prefix: &str,
    ) -> Self {
        let n = LATENCY_BOUNDS_US.len() + 1;
        let mut h = LatencyHist {
            buckets: vec![0; n],
            ..Self::default()
        };
        for (w, a) in after {
            let a = &a.counters.dropped;
            let b = before.get(w).map(|b| &b.counters.dropped);
            let delta = |k: &str| {
                let old = b.and_then(|b| b.get(k)).copied().unwrap_or(0);
                a.get(k).copied().unwrap_or(0).saturating_sub(old)
            };
            h.packets += delta(&format!("{prefix}_packets"));
            h.sum_us += delta(&format!("{prefix}_us_sum"));
            h.max_us = h
                .max_us
                .max(a.get(&format!("{prefix}_us_max")).copied().unwrap_or(0));
            for (i, slot) in h.buckets.iter_mut().enumerate() {
                let key = match LATENCY_BOUNDS_US.get(i) {
                    Some(b) => format!("{prefix}_lt_{b}us"),
                    None => format!(
                        "{prefix}_ge_{}us",
                        LATENCY_BOUNDS_US[LATENCY_BOUNDS_US.len() - 1]
                    ),
                };
                *slot += delta(&key);
            }
        }
        h
    }

    /// Upper bound (µs) of the bucket holding quantile `q`; `None` without packets or in the
    /// open last bucket.
    pub fn quantile_below_us(&self, q: f64) -> Option<u64> {
        let total: u64 = self.buckets.iter().sum();
        if total == 0 {
            return None;
        }
        let rank = (q * total as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return LATENCY_BOUNDS_US.get(i).copied();
            }
        }
        None
    }

    fn to_json(&self) -> Value {
        json!({
            "packets": self.packets,
            "mean_us": round(self.sum_us as f64 / self.packets.max(1) as f64, 1),
            "max_us": self.max_us,
            "p50_below_us": self.quantile_below_us(0.50),
            "p99_below_us": self.quantile_below_us(0.99),
            "p999_below_us": self.quantile_below_us(0.999),
            "histogram": LATENCY_BOUNDS_US.iter().map(|&b| Some(b)).chain([None])
                .zip(&self.buckets)
                .map(|(b, n)| json!({"below_us": b, "packets": n}))
                .collect::<Vec<_>>(),
        })
    }
}

/// The SFU-added latency over a run, per class: receive (the worker's receive batch) → send
/// handed to the kernel (its submit), and the same without pacer queueing.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SfuLatency {
    pub exposed: bool,
    /// audio, video, rtx: receive → kernel.
    pub total: [LatencyHist; 3],
    /// audio, video, rtx: without the pacer's queueing.
    pub sfu: [LatencyHist; 3],
}

impl SfuLatency {
    pub const CLASSES: [&'static str; 3] = ["audio", "video", "rtx"];

    pub fn between(before: &BTreeMap<u16, ShardStats>, after: &BTreeMap<u16, ShardStats>) -> Self {
        let hist = |p: &str| LatencyHist::between(before, after, p);
        let exposed = after
            .values()
            .any(|a| a.counters.dropped.contains_key("lat_audio_packets"));
        Self {
            exposed,
            total: Self::CLASSES.map(|c| hist(&format!("lat_{c}"))),
            sfu: Self::CLASSES.map(|c| hist(&format!("lat_sfu_{c}"))),
        }
    }

    /// `floor_ms`: the keyframe fan-out floor of the run; `cost_us`: SFU CPU per delivered
    /// packet it came from.
    pub fn to_json(&self, floor_ms: f64, cost_us: f64) -> Value {
        let per = |hs: &[LatencyHist; 3]| {
            let mut m = serde_json::Map::new();
            for (c, h) in Self::CLASSES.iter().zip(hs) {
                m.insert((*c).into(), h.to_json());
            }
            Value::Object(m)
        };
        let video_p99 = self.sfu[1].quantile_below_us(0.99);
        json!({
            "exposed_by_dataplane": self.exposed,
            "receive_to_kernel": per(&self.total),
            "without_pacer": per(&self.sfu),
            "keyframe_floor_ms": round(floor_ms, 3),
            "keyframe_floor_method": format!(
                "{} packets x subscribers x {:.2} us (SFU CPU per delivered packet) / workers",
                crate::media::Profile::VIDEO.key_packets, cost_us
            ),
            "video_without_pacer_p99_over_floor": video_p99
                .map(|us| round(us as f64 / 1e3 / floor_ms.max(1e-9), 3)),
            "targets": "audio receive_to_kernel p99 <= 1 ms at 70% of the ramp max; video \
                        without_pacer p99 <= 1.5 x keyframe_floor_ms",
            "method": "the SFU workers' histograms (lat_*: one clock read per receive batch, \
                       one per submit; copies crossing workers carry their receive instant) \
                       differenced over the measurement window (each worker's first snapshot \
                       after it opened and its last before it closed); percentiles are bucket \
                       upper bounds; max_us is since start",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn worker(entries: &[(&str, u64)]) -> ShardStats {
        let mut w = ShardStats::default();
        for &(k, v) in entries {
            w.counters.dropped.insert(k.to_string(), v);
        }
        w
    }

    #[test]
    fn pacer_queueing_is_the_difference_over_workers() {
        let before = BTreeMap::from([(
            0,
            worker(&[
                ("pacer_packets", 10),
                ("pacer_delay_us_sum", 5_000),
                ("pacer_delay_lt_1ms", 10),
            ]),
        )]);
        let after = BTreeMap::from([
            (
                0,
                worker(&[
                    ("pacer_packets", 110),
                    ("pacer_delay_us_sum", 105_000),
                    ("pacer_delay_us_max", 9_000),
                    ("pacer_delay_lt_1ms", 60),
                    ("pacer_delay_lt_10ms", 50),
                ]),
            ),
            (
                1,
                worker(&[
                    ("pacer_packets", 100),
                    ("pacer_delay_us_sum", 100_000),
                    ("pacer_delay_us_max", 30_000),
                    ("pacer_delay_lt_50ms", 100),
                ]),
            ),
        ]);
        let q = PacerQueueing::between(&before, &after);
        assert!(q.exposed);
        assert_eq!(
            (q.packets, q.delay_us_sum, q.max_us),
            (200, 200_000, 30_000)
        );
        assert_eq!(q.mean_us(), 1000.0);
        assert_eq!(q.histogram[..5], [50, 0, 50, 0, 100]);
        assert_eq!(q.quantile_below_ms(0.25), Some(1));
        assert_eq!(q.quantile_below_ms(0.5), Some(10));
        assert_eq!(q.quantile_below_ms(0.99), Some(50));
        let none = PacerQueueing::between(&BTreeMap::new(), &BTreeMap::from([(0, worker(&[]))]));
        assert!(!none.exposed);
        assert_eq!(none.quantile_below_ms(0.5), None);
    }

    #[test]
    fn sfu_latency_is_the_difference_over_workers() {
        let before = BTreeMap::from([(
            0,
            worker(&[("lat_audio_packets", 5), ("lat_audio_lt_250us", 5)]),
        )]);
        let after = BTreeMap::from([(
            0,
            worker(&[
                ("lat_audio_packets", 105),
                ("lat_audio_lt_250us", 55),
                ("lat_audio_lt_750us", 49),
                ("lat_audio_lt_1500us", 1),
                ("lat_audio_us_sum", 30_000),
            ]),
        )]);
        let l = SfuLatency::between(&before, &after);
        assert!(l.exposed);
        assert_eq!(l.total[0].packets, 100);
        assert_eq!(l.total[0].quantile_below_us(0.5), Some(250));
        assert_eq!(l.total[0].quantile_below_us(0.99), Some(750));
        assert_eq!(l.total[0].quantile_below_us(0.999), Some(1500));
        assert_eq!(l.total[1].quantile_below_us(0.5), None);
    }
}
