//! What the SFU adds to a packet's trip, measured inside the shard: from the moment its source
//! datagram was received (the receive batch's one clock read: the `recvmmsg` return or the
//! CQE reap) to the moment its copy was handed to the kernel (the submit's one clock read), per
//! class — audio, video, retransmission — and the same minus the time the copy waited in its
//! subscriber's pacer, which the pacer counts separately (`pacer_*`). Copies crossing shards
//! carry their receive instant in the ring header.
//!
//! One stamp per pool buffer (a copy lives in exactly one buffer from the forward to the
//! submit), fixed-bucket histograms, no allocation; the snapshot turns them into `lat_*` entries
//! of the stats map (docs/control-socket.md).

use std::time::Instant;

use crate::pool::BufId;

/// Bucket upper bounds, µs; the last bucket is everything at or above the last bound.
pub const BOUNDS_US: [u64; 24] = [
    25, 50, 100, 250, 500, 750, 1_000, 1_500, 2_000, 3_000, 5_000, 7_500, 10_000, 15_000, 20_000,
    25_000, 30_000, 40_000, 50_000, 75_000, 100_000, 150_000, 250_000, 500_000,
];
const BUCKETS: usize = BOUNDS_US.len() + 1;

/// Which histogram a copy lands in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(super) enum LatClass {
    Audio = 0,
    Video = 1,
    Rtx = 2,
}

const CLASSES: [&str; 3] = ["audio", "video", "rtx"];
/// A buffer holding no measured copy (control packets, free buffers).
const NONE: u8 = u8::MAX;

#[derive(Debug, Clone, Copy)]
struct Stamp {
    rx: Instant,
    enq: Instant,
    paced_us: u32,
    class: u8,
}

#[derive(Debug, Clone, Copy, Default)]
struct Hist {
    buckets: [u64; BUCKETS],
    count: u64,
    sum_us: u64,
    max_us: u64,
}

impl Hist {
    fn record(&mut self, us: u64) {
        let i = BOUNDS_US
            .iter()
            .position(|&b| us < b)
            .unwrap_or(BOUNDS_US.len());
        self.buckets[i] += 1;
        self.count += 1;
        self.sum_us = self.sum_us.saturating_add(us);
        self.max_us = self.max_us.max(us);
    }
}

/// The stamps and histograms of one shard.
#[derive(Debug)]
pub(super) struct Latency {
    stamps: Box<[Stamp]>,
    /// Receive → handed to the kernel, per class.
    total: [Hist; 3],
    /// The same without the pacer's queueing.
    sfu: [Hist; 3],
}

impl Latency {
    pub fn new(buffers: usize, now: Instant) -> Self {
        let s = Stamp {
            rx: now,
            enq: now,
            paced_us: 0,
            class: NONE,
        };
        Self {
            stamps: vec![s; buffers].into_boxed_slice(),
            total: [Hist::default(); 3],
            sfu: [Hist::default(); 3],
        }
    }

    /// `buf` now holds a copy of a packet received at `rx`, queued in a pacer at `now`.
    pub fn copied(&mut self, buf: BufId, class: LatClass, rx: Instant, now: Instant) {
        if let Some(s) = self.stamps.get_mut(buf.index()) {
            *s = Stamp {
                rx,
                enq: now,
                paced_us: 0,
                class: class as u8,
            };
        }
    }

    /// The copy in `buf` left its pacer at `now`.
    pub fn dequeued(&mut self, buf: BufId, now: Instant) {
        if let Some(s) = self.stamps.get_mut(buf.index()) {
            let us = now.saturating_duration_since(s.enq).as_micros();
            s.paced_us = u32::try_from(us).unwrap_or(u32::MAX);
        }
    }

    /// `buf` holds something not measured (a control packet).
    pub fn unmeasured(&mut self, buf: BufId) {
        if let Some(s) = self.stamps.get_mut(buf.index()) {
            s.class = NONE;
        }
    }

    /// `buf` was handed to the kernel at `at`; counted once.
    pub fn handed(&mut self, buf: BufId, at: Instant) {
        let Some(s) = self.stamps.get_mut(buf.index()) else {
            return;
        };
        let c = usize::from(s.class);
        if c >= CLASSES.len() {
            return;
        }
        s.class = NONE;
        let total = at.saturating_duration_since(s.rx).as_micros() as u64;
        self.total[c].record(total);
        self.sfu[c].record(total.saturating_sub(u64::from(s.paced_us)));
    }

    /// `(name, value)` entries for the stats map: `lat_{class}_…` (receive → kernel) and
    /// `lat_sfu_{class}_…` (without pacer queueing): `_lt_{bound}us` buckets, `_ge_500000us`,
    /// `_packets`, `_us_sum`, `_us_max`.
    pub fn entries(&self) -> impl Iterator<Item = (String, u64)> + '_ {
        let sets = [("lat", &self.total), ("lat_sfu", &self.sfu)];
        sets.into_iter().flat_map(|(prefix, hists)| {
            hists.iter().enumerate().flat_map(move |(c, h)| {
                let name = CLASSES[c];
                let buckets = h.buckets.iter().enumerate().map(move |(i, &n)| {
                    let key = match BOUNDS_US.get(i) {
                        Some(b) => format!("{prefix}_{name}_lt_{b}us"),
                        None => format!("{prefix}_{name}_ge_{}us", BOUNDS_US[BOUNDS_US.len() - 1]),
                    };
                    (key, n)
                });
                let totals = [
                    (format!("{prefix}_{name}_packets"), h.count),
                    (format!("{prefix}_{name}_us_sum"), h.sum_us),
                    (format!("{prefix}_{name}_us_max"), h.max_us),
                ];
                buckets.chain(totals)
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn total_and_sfu_latency_per_class() {
        #[allow(clippy::disallowed_methods)]
        let t0 = Instant::now();
        let mut l = Latency::new(4, t0);
        let us = Duration::from_micros;
        // Audio: received at t0, copied at +100 µs, out of the pacer at once, handed at +300.
        l.copied(BufId(0), LatClass::Audio, t0, t0 + us(100));
        l.dequeued(BufId(0), t0 + us(100));
        l.handed(BufId(0), t0 + us(300));
        // Video: copied at +1 ms, paced 20 ms, handed at +21.5 ms: 1.5 ms of it is the SFU's.
        l.copied(BufId(1), LatClass::Video, t0, t0 + us(1_000));
        l.dequeued(BufId(1), t0 + us(21_000));
        l.handed(BufId(1), t0 + us(21_500));
        // A control packet and a second hand-off of the same copy are not counted.
        l.unmeasured(BufId(2));
        l.handed(BufId(2), t0 + us(5));
        l.handed(BufId(0), t0 + us(900));
        let m: std::collections::BTreeMap<String, u64> = l.entries().collect();
        assert_eq!(m["lat_audio_lt_500us"], 1);
        assert_eq!(m["lat_sfu_audio_lt_500us"], 1);
        assert_eq!(m["lat_audio_packets"], 1);
        assert_eq!(m["lat_video_lt_25000us"], 1);
        assert_eq!(m["lat_sfu_video_lt_2000us"], 1);
        assert_eq!(m["lat_video_us_max"], 21_500);
        assert_eq!(m["lat_rtx_packets"], 0);
        assert_eq!(m.len(), 2 * 3 * (BUCKETS + 3));
    }
}
