//! Bandwidth probing: short clusters of packets sent at a target rate above the estimate, and
//! what transport-cc feedback says the path carried of them (the GCC draft's probing, as
//! libwebrtc's `ProbeController` / `ProbeBitrateEstimator` do it, simplified).
//!
//! When: at the start (clusters at 3× and 6× the start estimate), then exponentially (2× the
//! result) while results keep up with their targets, up to the estimator's cap; later, while the
//! owner wants more than the estimate (`desired` above it: an allocator that would upgrade a
//! layer or resume a paused track), one cluster at 2× the estimate every 1–2 s (the interval
//! doubles after a failed probe), each success again continuing exponentially.
//!
//! What: the owner sends padding (or anything) when [`Prober::next_send`] says so and reports
//! every packet that leaves while a cluster is active ([`Prober::on_sent`]); media sent
//! meanwhile counts towards the cluster, padding fills the rest. The cluster ends after
//! `target × cluster_duration` bytes (at least `min_bytes`) and `min_packets` packets.
//!
//! Result: from the acknowledged packets of a cluster, the send rate (bytes but the last over
//! the send span) and the receive rate (bytes but the first over the arrival span of the later
//! two thirds of the cluster, in send order: a shaper's burst allowance lets the first few
//! kilobytes through at line rate, and a short cluster measured from its first packet reads as
//! a path 50 % faster than it is); when the path received noticeably slower than we sent, 95 %
//! of the receive rate, else the smaller of the two. Fixed storage; time is passed in.

use std::time::{Duration, Instant};

/// Tuning of the [`Prober`].
#[derive(Debug, Clone, Copy)]
pub struct ProbeConfig {
    /// Start clusters as multiples of the start estimate.
    pub initial: [f64; 2],
    /// A result at least this share of its target continues exponentially...
    pub continue_share: f64,
    /// ...with a cluster at this multiple of the result.
    pub step: f64,
    /// A cluster carries `target × cluster_duration` bytes...
    pub cluster_duration: Duration,
    /// ...and at least this many packets...
    pub min_packets: u32,
    /// ...and bytes: a cluster a shaper's burst allowance can swallow whole shows nothing.
    pub min_bytes: usize,
    /// Acknowledged packets a result needs.
    pub min_acked: u32,
    /// Wait between probes while more is wanted than estimated (doubles after a failure)...
    pub interval_min: Duration,
    /// ...up to this.
    pub interval_max: Duration,
    /// A cluster with no result this long after it was sent is given up.
    pub result_timeout: Duration,
}

impl Default for ProbeConfig {
    fn default() -> Self {
        Self {
            initial: [3.0, 6.0],
            continue_share: 0.7,
            step: 2.0,
            cluster_duration: Duration::from_millis(30),
            min_packets: 8,
            min_bytes: 10_000,
            min_acked: 5,
            interval_min: Duration::from_secs(1),
            interval_max: Duration::from_secs(2),
            result_timeout: Duration::from_secs(1),
        }
    }
}

/// Counters of a [`Prober`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProbeStats {
    /// Clusters started.
    pub clusters: u64,
    /// Clusters whose result reached the continue share of their target.
    pub successes: u64,
    /// Packets sent as part of a cluster (padding and media).
    pub packets: u64,
    /// Their bytes.
    pub bytes: u64,
    /// The latest result, bits per second.
    pub last_result_bps: Option<u64>,
}

#[derive(Debug, Clone, Copy)]
struct Cluster {
    id: u16,
    target_bps: u64,
}

#[derive(Debug, Clone, Copy)]
struct Active {
    cluster: Cluster,
    started: Instant,
    bytes: usize,
    packets: u32,
    min_bytes: usize,
}

/// Acknowledged packets of a cluster kept for its receive rate (the rest count in the send rate).
const KEPT: usize = 64;

/// What feedback said about one cluster so far.
#[derive(Debug, Clone, Copy)]
struct Measure {
    /// (send µs, arrival µs, size) of acknowledged packets, the first `KEPT`.
    kept: [(i64, i64, u32); KEPT],
    n_kept: usize,
    cluster: Cluster,
    /// Packets sent in it, once sending ended.
    sent: Option<u32>,
    /// When sending ended (results are given up `result_timeout` later).
    ended: Option<Instant>,
    acked: u32,
    lost: u32,
    bytes: u64,
    first_send_us: i64,
    last_send_us: i64,
    last_send_size: u32,
    first_arrival_us: i64,
    first_arrival_size: u32,
    last_arrival_us: i64,
}

impl Measure {
    fn new(cluster: Cluster) -> Self {
        Self {
            kept: [(0, 0, 0); KEPT],
            n_kept: 0,
            cluster,
            sent: None,
            ended: None,
            acked: 0,
            lost: 0,
            bytes: 0,
            first_send_us: i64::MAX,
            last_send_us: i64::MIN,
            last_send_size: 0,
            first_arrival_us: i64::MAX,
            first_arrival_size: 0,
            last_arrival_us: i64::MIN,
        }
    }

    fn rate(&self, min_acked: u32) -> Option<u64> {
        if self.acked < min_acked.max(2) {
            return None;
        }
        let send_span = self.last_send_us - self.first_send_us;
        let recv_span = self.last_arrival_us - self.first_arrival_us;
        if send_span <= 0 || recv_span <= 0 {
            return None;
        }
        let send = (self.bytes - u64::from(self.last_send_size)) as f64 * 8e6 / send_span as f64;
        let recv = self.later_recv_rate().unwrap_or(
            (self.bytes - u64::from(self.first_arrival_size)) as f64 * 8e6 / recv_span as f64,
        );
        let r = if recv < 0.9 * send {
            0.95 * recv
        } else {
            send.min(recv)
        };
        Some(r as u64)
    }
}

impl Measure {
    /// The receive rate of the later two thirds of the kept packets (in send order).
    fn later_recv_rate(&self) -> Option<f64> {
        let mut k = self.kept;
        let n = self.n_kept;
        if n < 6 {
            return None;
        }
        // Insertion sort by send time: at most 64 entries, no allocation.
        for i in 1..n {
            let mut j = i;
            while j > 0 && k[j - 1].0 > k[j].0 {
                k.swap(j - 1, j);
                j -= 1;
            }
        }
        let later = &k[n / 3..n];
        let (first, last) = later
            .iter()
            .fold((i64::MAX, i64::MIN), |(f, l), p| (f.min(p.1), l.max(p.1)));
        let first_size = later.iter().find(|p| p.1 == first).map_or(0, |p| p.2);
        let bytes: u64 = later.iter().map(|p| u64::from(p.2)).sum::<u64>() - u64::from(first_size);
        (last > first).then(|| bytes as f64 * 8e6 / (last - first) as f64)
    }
}

/// Slots for clusters queued and waiting for their result.
const QUEUE: usize = 2;
const MEASURES: usize = 4;

/// Probe scheduling and result estimation; see the module docs.
#[derive(Debug)]
pub struct Prober {
    cfg: ProbeConfig,
    enabled: bool,
    started: bool,
    queue: [Option<Cluster>; QUEUE],
    active: Option<Active>,
    measures: [Option<Measure>; MEASURES],
    next_id: u16,
    interval: Duration,
    next_periodic: Option<Instant>,
    last_now: Option<Instant>,
    stats: ProbeStats,
}

impl Prober {
    /// A prober that sends nothing until [`Prober::set_enabled`] and [`Prober::start`].
    pub fn new(cfg: ProbeConfig) -> Self {
        Self {
            interval: cfg.interval_min,
            cfg,
            enabled: false,
            started: false,
            queue: [None; QUEUE],
            active: None,
            measures: [None; MEASURES],
            next_id: 1,
            next_periodic: None,
            last_now: None,
            stats: ProbeStats::default(),
        }
    }

    /// Counters.
    pub fn stats(&self) -> &ProbeStats {
        &self.stats
    }

    /// Probing needs a receiver that acknowledges packets (transport-cc) and something to
    /// send padding on; without them nothing is probed (a running cluster is dropped).
    pub fn set_enabled(&mut self, enabled: bool) {
        self.enabled = enabled;
        if !enabled {
            self.queue = [None; QUEUE];
            self.end_active();
        }
    }

    /// Whether probing is enabled.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// The start clusters (once): 3× and 6× `estimate_bps`, up to `cap_bps`.
    pub fn start(&mut self, now: Instant, estimate_bps: u64, cap_bps: u64) {
        if self.started || !self.enabled {
            return;
        }
        self.started = true;
        self.last_now = Some(now);
        self.next_periodic = Some(now + self.interval);
        for m in self.cfg.initial {
            let target = ((estimate_bps as f64 * m) as u64).min(cap_bps);
            if target > estimate_bps {
                self.enqueue(target);
            }
        }
    }

    /// Periodic probing while `desired_bps` exceeds `estimate_bps` (below `cap_bps`), and
    /// the timeouts of clusters whose result never came. Call on every timer.
    pub fn tick(&mut self, now: Instant, estimate_bps: u64, desired_bps: u64, cap_bps: u64) {
        self.last_now = Some(now);
        if let Some(a) = self.active {
            // The owner stopped sending (nothing to pad on): give the cluster up.
            let expected = self.cfg.cluster_duration * 4 + Duration::from_millis(100);
            if now.saturating_duration_since(a.started) > expected {
                self.end_active();
            }
        }
        for slot in &mut self.measures {
            let stale = slot.is_some_and(|m| {
                m.ended
                    .is_some_and(|e| now.saturating_duration_since(e) > self.cfg.result_timeout)
            });
            if stale {
                *slot = None;
                self.interval = (self.interval * 2).min(self.cfg.interval_max);
            }
        }
        if !self.enabled || !self.started || self.busy() {
            return;
        }
        let wants = desired_bps > estimate_bps && estimate_bps < cap_bps;
        if !wants {
            return;
        }
        if self.next_periodic.is_none_or(|t| now >= t) {
            self.next_periodic = Some(now + self.interval);
            let target = estimate_bps.saturating_mul(2).min(cap_bps);
            self.enqueue(target);
        }
    }

    fn busy(&self) -> bool {
        self.active.is_some()
            || self.queue.iter().any(Option::is_some)
            || self.measures.iter().any(Option::is_some)
    }

    fn enqueue(&mut self, target_bps: u64) {
        if let Some(slot) = self.queue.iter_mut().find(|s| s.is_none()) {
            let id = self.next_id;
            self.next_id = self.next_id.wrapping_add(1).max(1);
            *slot = Some(Cluster { id, target_bps });
        }
    }

    fn end_active(&mut self) {
        if let Some(a) = self.active.take() {
            let id = a.cluster.id;
            if let Some(m) = self
                .measures
                .iter_mut()
                .flatten()
                .find(|m| m.cluster.id == id)
            {
                m.sent = Some(a.packets);
                m.ended = Some(self.last_now.unwrap_or(a.started));
            }
        }
    }

    /// When the next probe packet is due (now or later); `None` when no cluster is running or
    /// queued.
    pub fn next_send(&self) -> Option<Instant> {
        if !self.enabled {
            return None;
        }
        if let Some(a) = self.active {
            let spent = Duration::from_nanos(
                (a.bytes as u128 * 8 * 1_000_000_000 / u128::from(a.cluster.target_bps.max(1)))
                    as u64,
            );
            return Some(a.started + spent);
        }
        self.queue.iter().flatten().next().and(self.last_now)
    }

    /// Starts the next queued cluster if none runs; returns the running cluster's id.
    fn activate(&mut self, now: Instant) -> Option<u16> {
        if self.active.is_none() {
            let c = self.queue[0].take()?;
            self.queue.rotate_left(1);
            // A measure slot for it (the oldest is given up when all are taken).
            let slot = self
                .measures
                .iter()
                .position(Option::is_none)
                .unwrap_or_default();
            self.measures[slot] = Some(Measure::new(c));
            let min_bytes = ((c.target_bps as f64 * self.cfg.cluster_duration.as_secs_f64() / 8.0)
                .ceil() as usize)
                .max(self.cfg.min_bytes);
            self.active = Some(Active {
                cluster: c,
                started: now,
                bytes: 0,
                packets: 0,
                min_bytes,
            });
            self.stats.clusters += 1;
        }
        self.active.map(|a| a.cluster.id)
    }

    /// A packet of `size` bytes left at `now`. `padding`: sent for probing (it always starts a
    /// queued cluster); media counts only towards a cluster already running. Returns the
    /// cluster to tag the packet with in the send history.
    pub fn on_sent(&mut self, now: Instant, size: usize, padding: bool) -> Option<u16> {
        if !self.enabled {
            return None;
        }
        self.last_now = Some(now);
        let id = if padding {
            self.activate(now)?
        } else {
            self.active?.cluster.id
        };
        let a = self.active.as_mut()?;
        a.bytes += size;
        a.packets += 1;
        self.stats.packets += 1;
        self.stats.bytes += size as u64;
        if a.bytes >= a.min_bytes && a.packets >= self.cfg.min_packets {
            self.end_active();
        }
        Some(id)
    }

    /// Feedback about a packet of cluster `id`: sent at `send_us`, arrived at `arrival_us`
    /// (`None`: reported lost), `size` bytes.
    pub fn on_feedback(&mut self, id: u16, send_us: i64, arrival_us: Option<i64>, size: u32) {
        let Some(m) = self
            .measures
            .iter_mut()
            .flatten()
            .find(|m| m.cluster.id == id)
        else {
            return;
        };
        let Some(at) = arrival_us else {
            m.lost += 1;
            return;
        };
        m.acked += 1;
        m.bytes += u64::from(size);
        if m.n_kept < KEPT {
            m.kept[m.n_kept] = (send_us, at, size);
            m.n_kept += 1;
        }
        if send_us < m.first_send_us {
            m.first_send_us = send_us;
        }
        if send_us > m.last_send_us {
            m.last_send_us = send_us;
            m.last_send_size = size;
        }
        if at < m.first_arrival_us {
            m.first_arrival_us = at;
            m.first_arrival_size = size;
        }
        m.last_arrival_us = m.last_arrival_us.max(at);
    }

    /// The next finished cluster: `(target, result)`; `result` is `None` when too little of it
    /// was acknowledged. Call after each feedback until `None`, apply the result to the
    /// estimate, then hand the new estimate to [`Prober::on_result`].
    pub fn poll_result(&mut self) -> Option<(u64, Option<u64>)> {
        let min_acked = self.cfg.min_acked;
        for slot in &mut self.measures {
            let Some(m) = slot else { continue };
            let Some(sent) = m.sent else { continue };
            if (m.acked + m.lost) * 10 >= sent * 8 {
                let out = (m.cluster.target_bps, m.rate(min_acked));
                *slot = None;
                return Some(out);
            }
        }
        None
    }

    /// What a finished cluster's result means for the next probe: continue exponentially
    /// after a success, back off after a failure.
    pub fn on_result(
        &mut self,
        now: Instant,
        target_bps: u64,
        result: Option<u64>,
        estimate_bps: u64,
        cap_bps: u64,
    ) {
        self.stats.last_result_bps = result.or(self.stats.last_result_bps);
        let ok = result.is_some_and(|r| r as f64 >= self.cfg.continue_share * target_bps as f64);
        if !ok {
            self.interval = (self.interval * 2).min(self.cfg.interval_max);
            self.next_periodic = Some(now + self.interval);
            return;
        }
        self.stats.successes += 1;
        self.interval = self.cfg.interval_min;
        self.next_periodic = Some(now + self.interval);
        // Only the highest cluster of a series continues it.
        let higher_pending = self
            .queue
            .iter()
            .flatten()
            .map(|c| c.target_bps)
            .chain(self.active.map(|a| a.cluster.target_bps))
            .chain(self.measures.iter().flatten().map(|m| m.cluster.target_bps))
            .any(|t| t > target_bps);
        let next = ((result.unwrap_or(0) as f64 * self.cfg.step) as u64).min(cap_bps);
        if !higher_pending && self.enabled && target_bps < cap_bps && next > estimate_bps {
            self.enqueue(next);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[allow(clippy::disallowed_methods)] // tests need some base instant
    fn t0() -> Instant {
        Instant::now()
    }

    /// Sends every due padding packet of 1000 bytes up to `until`, acknowledging each as
    /// arriving at the rate `path_bps` allows; returns the results.
    fn run(p: &mut Prober, t: Instant, until: Duration, path_bps: f64) -> Vec<(u64, Option<u64>)> {
        let mut results = Vec::new();
        let mut link_free = 0.0f64;
        let mut now = t;
        while now < t + until {
            while let Some(due) = p.next_send().filter(|&d| d <= now) {
                let _ = due;
                let id = p.on_sent(now, 1000, true).expect("a cluster runs");
                let send_us = (now - t).as_micros() as i64;
                link_free = link_free.max(send_us as f64) + 8000.0 * 1e6 / path_bps;
                p.on_feedback(id, send_us, Some(link_free as i64 + 20_000), 1000);
            }
            while let Some(r) = p.poll_result() {
                results.push(r);
                p.on_result(now, r.0, r.1, r.1.unwrap_or(0), 20_000_000);
            }
            p.tick(now, 1_000_000, 0, 20_000_000);
            now += Duration::from_micros(500);
        }
        results
    }

    #[test]
    fn start_clusters_climb_exponentially_to_the_cap() {
        let t = t0();
        let mut p = Prober::new(ProbeConfig::default());
        p.set_enabled(true);
        p.start(t, 1_000_000, 20_000_000);
        let results = run(&mut p, t, Duration::from_secs(2), 50e6);
        let targets: Vec<u64> = results.iter().map(|r| r.0).collect();
        assert_eq!(targets[..2], [3_000_000, 6_000_000], "{results:?}");
        assert!(targets.contains(&20_000_000), "{results:?}");
        for (target, r) in &results {
            let r = r.expect("result");
            assert!(r as f64 > 0.9 * *target as f64, "{target}: {r}");
        }
        assert!(p.stats().successes >= 4);
    }

    #[test]
    fn a_narrow_path_reports_its_rate_and_stops() {
        let t = t0();
        let mut p = Prober::new(ProbeConfig::default());
        p.set_enabled(true);
        p.start(t, 1_000_000, 20_000_000);
        let results = run(&mut p, t, Duration::from_secs(2), 2e6);
        // 3 and 6 Mbit/s clusters over a 2 Mbit/s path: both read about 2 Mbit/s.
        for (_, r) in &results {
            let r = r.expect("result");
            assert!((1_700_000..=2_100_000).contains(&r), "{results:?}");
        }
        assert!(results.len() <= 2, "no further probing: {results:?}");
    }

    /// A 400 kbit/s shaper that lets 3,000 bytes through at line rate (sluice-netem's bucket,
    /// like any token-bucket shaper): a cluster at 670 kbit/s must not read as a faster path.
    #[test]
    fn a_shapers_burst_allowance_does_not_inflate_the_result() {
        let t = t0();
        let mut p = Prober::new(ProbeConfig {
            initial: [0.0, 0.0],
            ..ProbeConfig::default()
        });
        p.set_enabled(true);
        p.start(t, 335_000, 20_000_000);
        let (rate, depth) = (400_000.0f64, 3_000.0f64);
        let mut tokens = depth;
        let mut last_us = 0i64;
        let mut link_free = 0.0f64;
        let mut now = t;
        let mut result = None;
        while now < t + Duration::from_secs(3) && result.is_none() {
            while p.next_send().is_some_and(|d| d <= now) {
                let id = p.on_sent(now, 275, true).expect("cluster");
                let send_us = (now - t).as_micros() as i64;
                tokens = (tokens + (send_us - last_us) as f64 * rate / 8e6).min(depth);
                last_us = send_us;
                let at = if tokens >= 275.0 && link_free <= send_us as f64 {
                    tokens -= 275.0;
                    send_us as f64
                } else {
                    link_free = link_free.max(send_us as f64) + 275.0 * 8e6 / rate;
                    link_free
                };
                p.on_feedback(id, send_us, Some(at as i64 + 20_000), 275);
            }
            result = p.poll_result();
            // Wants more than its estimate: a cluster at 670k once the interval passed.
            p.tick(now, 335_000, 2_000_000, 20_000_000);
            now += Duration::from_micros(250);
        }
        let (target, r) = result.expect("a result");
        let r = r.expect("enough acknowledged");
        assert_eq!(target, 670_000);
        assert!(r < 480_000, "a 400 kbit/s shaper read as {r}");
    }

    #[test]
    fn disabled_or_unacknowledged_probes_end() {
        let t = t0();
        let mut p = Prober::new(ProbeConfig::default());
        p.start(t, 1_000_000, 20_000_000);
        assert_eq!(p.next_send(), None, "not enabled");
        p.set_enabled(true);
        p.start(t, 1_000_000, 20_000_000);
        assert_eq!(p.next_send(), Some(t));
        // Sent, never acknowledged: given up after the timeout; no busy-wait meanwhile.
        for i in 0..40 {
            p.on_sent(t + Duration::from_millis(i), 1000, true);
        }
        p.tick(t + Duration::from_secs(3), 1_000_000, 0, 20_000_000);
        p.tick(t + Duration::from_secs(5), 1_000_000, 0, 20_000_000);
        assert_eq!(p.poll_result(), None);
        assert!(!p.busy(), "{p:?}");
    }

    #[test]
    fn periodic_probe_only_while_more_is_wanted() {
        let t = t0();
        let mut p = Prober::new(ProbeConfig {
            initial: [0.0, 0.0],
            ..ProbeConfig::default()
        });
        p.set_enabled(true);
        p.start(t, 1_000_000, 20_000_000);
        p.tick(t + Duration::from_secs(2), 1_000_000, 500_000, 20_000_000);
        assert_eq!(p.next_send(), None, "nothing wanted");
        p.tick(t + Duration::from_secs(3), 1_000_000, 1_500_000, 20_000_000);
        assert_eq!(p.next_send(), Some(t + Duration::from_secs(3)));
    }
}
