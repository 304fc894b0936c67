//! What one fanout run reports: delivered rates, loss, latency percentiles, the SFU's CPU and
//! its own latency histograms, the generator's verdict — as a summary and as JSON.

use super::*;
use crate::memory::SfuMemory;

/// What one fanout run measured.
#[derive(Debug, Clone)]
pub struct FanoutReport {
    pub config: FanoutConfig,
    pub gen: GenReport,
    pub workers: u16,
    pub io_mode: String,
    /// Last stats snapshot of each worker (totals since it started).
    pub worker_stats: BTreeMap<u16, ShardStats>,
    /// Each worker's snapshots bracketing the measurement window (see [`Window`]): the
    /// SFU-side deltas cover the steady state the end-to-end figures cover.
    pub window_stats: Window,
    pub setup_s: f64,
    /// The SRTP profile DTLS negotiated (`--cipher gcm|cm`); `None` for plain RTP.
    pub srtp_profile: Option<&'static str>,
    /// The SFU process's resident memory before and after the run (`None`: pid unknown).
    pub sfu_memory: Option<SfuMemory>,
}

impl FanoutReport {
    pub fn loss(&self) -> f64 {
        self.gen.loss()
    }

    pub fn p99_ms(&self) -> f64 {
        self.gen.latency_all.quantile(0.99).unwrap_or(0) as f64 / 1e6
    }

    /// Pacer queueing delay over the run (see [`PacerQueueing`]).
    pub fn pacer_queueing(&self) -> PacerQueueing {
        PacerQueueing::between(&self.window_stats.start, &self.window_stats.end)
    }

    /// What the SFU added inside itself over the run (see [`SfuLatency`]).
    pub fn sfu_latency(&self) -> SfuLatency {
        SfuLatency::between(&self.window_stats.start, &self.window_stats.end)
    }

    /// SFU worker CPU seconds per delivered packet over the window.
    pub fn cpu_per_packet_s(&self) -> f64 {
        let cpu: f64 = self.worker_cpu().iter().map(|(_, s)| s).sum();
        cpu / (self.gen.received.max(1) as f64)
    }

    /// The keyframe fan-out floor (issue 19): a keyframe burst of `KEYFRAME_PACKETS` packets to
    /// every subscriber, at the measured CPU cost per delivered packet, spread over the workers:
    /// the last copy cannot leave earlier than this.
    pub fn keyframe_floor_ms(&self) -> f64 {
        let subs = f64::from(self.config.subscribers) * f64::from(self.config.publishers);
        f64::from(crate::media::Profile::VIDEO.key_packets) * subs * self.cpu_per_packet_s()
            / f64::from(self.workers.max(1))
            * 1e3
    }

    /// SFU worker threads' CPU seconds in the window (`sluice-shard-*`).
    pub fn worker_cpu(&self) -> Vec<(String, f64)> {
        self.gen
            .sfu_cpu
            .iter()
            .filter(|(_, name, _)| name.starts_with("sluice-shard"))
            .map(|(_, n, s)| (n.clone(), *s))
            .collect()
    }

    pub fn to_json(&self, limit: Option<&LimitReport>) -> Value {
        let g = &self.gen;
        let window = g.window_s.max(1e-9);
        let workers: Vec<Value> = self
            .worker_cpu()
            .into_iter()
            .map(|(n, s)| json!({"thread": n, "cpu_s": round(s, 3), "busy": round(s / window, 3)}))
            .collect();
        let stats: Vec<Value> = self
            .worker_stats
            .values()
            .map(|w| {
                json!({
                    "worker": w.shard,
                    "rx_packets": w.counters.rx_packets,
                    "tx_packets": w.counters.tx_packets,
                    "sessions": w.counters.sessions,
                    "loop_overruns": w.counters.loop_overruns,
                    "dropped": w.counters.dropped,
                    // Delays, not losses (the worker reports them in the same map).
                    "send_retry": w.counters.dropped.get("send_retry").copied().unwrap_or(0),
                })
            })
            .collect();
        let ratio = limit.map(|l| g.delivered_pps() / l.rx_pps.max(1e-9));
        let c = &self.config;
        json!({
            "config": {
                "publishers": c.publishers,
                "subscribers": c.subscribers,
                "audio": c.audio,
                "video": c.video,
                "cipher": c.cipher.name(),
                "srtp_profile": self.srtp_profile,
                "warmup_s": c.warmup.as_secs_f64(),
                "duration_s": c.duration.as_secs_f64(),
                "sfu_workers": self.workers,
                "sfu_cores": c.sfu_cores,
                "generator_core": c.generator_core,
                "generator_threads": 1 + c.generator_rx_cores.len(),
                "generator_rx_cores": c.generator_rx_cores,
                "io_mode": self.io_mode,
                "audio_pps_per_stream": Profile::AUDIO.pps(),
                "video_bps_per_stream": round(Profile::VIDEO.bps(), 0),
            },
            "setup_s": round(self.setup_s, 3),
            "sent_in_window": g.sent_in_window,
            "expected": g.expected,
            "received": g.received,
            "loss": round(g.loss(), 6),
            "delivered_pps": round(g.delivered_pps(), 0),
            "delivered_mbit_s": round(g.delivered_bps() / 1e6, 3),
            "latency_us": {
                "all": percentiles(&g.latency_all),
                "audio": percentiles(&g.latency_audio),
                "video": percentiles(&g.latency_video),
                "method": if c.kernel_arrival {
                    "the kernel's receive time at the subscriber's socket (SO_TIMESTAMPNS) \
                     minus the send time in the payload tag; includes the generator's send \
                     system call and both loopback hops"
                } else {
                    "the time the generator read the copy minus the send time in the payload \
                     tag, one clock; includes the generator's send and receive system calls, \
                     its backlog of other sockets, and both loopback hops"
                },
                "arrival": if c.kernel_arrival { "kernel" } else { "read" },
            },
            "pacer_queueing": self.pacer_queueing().to_json(),
            "sfu_memory": self.sfu_memory.map(|m| m.to_json()),
            "sfu_latency": self.sfu_latency().to_json(
                self.keyframe_floor_ms(),
                self.cpu_per_packet_s() * 1e6,
            ),
            "sfu_worker_cpu": workers,
            "sfu_worker_stats": stats,
            "generator": {
                "busy": round(g.busy, 3),
                "busy_per_thread": g.busy_per_thread.iter().map(|b| round(*b, 3)).collect::<Vec<_>>(),
                "rx_pps": round(g.delivered_pps(), 0),
                "limit_rx_pps": limit.map(|l| round(l.rx_pps, 0)),
                "fraction_of_limit_receiver": ratio.map(|r| round(r, 3)),
                "max_send_lateness_ms": round(g.max_send_lateness_ns as f64 / 1e6, 3),
                "rx_queue_drops": g.rx_queue_drops,
                "tx_would_block": g.tx_would_block,
                "verdict": generator_verdict(g),
            },
            "verify": {
                "tag_errors": g.tag_errors,
                "foreign": g.foreign,
                "pattern_checked": g.pattern_checked,
                "pattern_errors": g.pattern_errors,
                "rtcp": g.rtcp,
                "other": g.received_other,
                "method": format!(
                    "{}every datagram parsed and its tag read; 1 in {} bodies checked in full",
                    if c.cipher == Cipher::None {
                        ""
                    } else {
                        "every packet SRTP-authenticated and decrypted by the subscriber's \
                         session; "
                    },
                    gen::PATTERN_SAMPLE
                ),
            },
            "ratio_to_limit": ratio.map(|r| round(r, 3)),
            "target_ratio_to_limit": 0.70,
        })
    }
}

/// Prints a fanout report's JSON (`FanoutReport::to_json`) as the command's text summary.
pub fn print_summary(f: &Value, lim: Option<&LimitReport>) {
    let c = &f["config"];
    println!(
        "fanout: {} publisher(s) -> {} subscribers, cipher {} (SRTP profile {}), {} SFU worker(s) on cores {}, generator on core {}",
        c["publishers"], c["subscribers"], c["cipher"], c["srtp_profile"], c["sfu_workers"], c["sfu_cores"], c["generator_core"]
    );
    println!(
        "  delivered {} pps, {} Mbit/s; loss {:.4}%",
        f["delivered_pps"],
        f["delivered_mbit_s"],
        f["loss"].as_f64().unwrap_or(0.0) * 100.0
    );
    for k in ["all", "audio", "video"] {
        let l = &f["latency_us"][k];
        println!(
            "  latency {k:<5} p50 {} us  p99 {} us  p99.9 {} us  max {} us",
            l["p50"], l["p99"], l["p999"], l["max"]
        );
    }
    println!(
        "  (arrival: {})",
        match f["latency_us"]["arrival"].as_str() {
            Some("read") => "when the generator read the copy, --arrival read",
            _ => "the kernel's receive time at the subscriber's socket",
        }
    );
    for w in f["sfu_worker_cpu"].as_array().into_iter().flatten() {
        println!(
            "  SFU {}: {} CPU s, busy {}",
            w["thread"], w["cpu_s"], w["busy"]
        );
    }
    let q = &f["pacer_queueing"];
    if q["exposed_by_dataplane"].as_bool() == Some(true) {
        println!(
            "  pacer queueing: {} packets, mean {} us, max {} us (since start); p50 < {} ms, p99 < {} ms, p99.9 < {} ms",
            q["packets"], q["mean_us"], q["max_us"], q["p50_below_ms"], q["p99_below_ms"], q["p999_below_ms"]
        );
    } else {
        println!("  pacer queueing: not exported by the dataplane (video latency includes it)");
    }
    let l = &f["sfu_latency"];
    if l["exposed_by_dataplane"].as_bool() == Some(true) {
        for (set, name) in [
            ("receive_to_kernel", "in the SFU"),
            ("without_pacer", "without pacer"),
        ] {
            for c in ["audio", "video", "rtx"] {
                let h = &l[set][c];
                println!(
                    "  {name:<13} {c:<5} {} packets, mean {} us, p50 < {} us, p99 < {} us, p99.9 < {} us",
                    h["packets"], h["mean_us"], h["p50_below_us"], h["p99_below_us"], h["p999_below_us"]
                );
            }
        }
        println!(
            "  keyframe floor {} ms ({}); video without pacer p99 / floor = {}",
            l["keyframe_floor_ms"],
            l["keyframe_floor_method"],
            l["video_without_pacer_p99_over_floor"]
        );
    }
    let m = &f["sfu_memory"];
    if !m.is_null() {
        let mb = |k: &str| m[k].as_u64().unwrap_or(0) as f64 / 1024.0;
        let runs = m["runs"].as_u64().unwrap_or(1);
        println!(
            "  memory ({}): resident {:.1} MiB before the sessions, {:.1} MiB after the run ({} KiB per subscriber{}), peak {:.1} MiB",
            m["process"].as_str().unwrap_or(""),
            mb("rss_before_kib"),
            mb("rss_after_kib"),
            m["per_subscriber_kib"],
            if runs > 1 {
                format!("; over {runs} runs of the step: the earlier runs' freed memory is in it")
            } else {
                String::new()
            },
            mb("peak_kib")
        );
    }
    println!(
        "  generator: {}",
        f["generator"]["verdict"].as_str().unwrap_or("")
    );
    if let Some(l) = lim {
        println!(
            "  limit {:.0} pps -> fanout/limit = {} (target >= 0.70)",
            l.rx_pps, f["ratio_to_limit"]
        );
    }
    println!(
        "  verified: {} tag errors, {} foreign, {} of {} sampled bodies wrong",
        f["verify"]["tag_errors"],
        f["verify"]["foreign"],
        f["verify"]["pattern_errors"],
        f["verify"]["pattern_checked"]
    );
}

/// Why the generator was or was not the bottleneck, in words. The generator is the bottleneck
/// when its busiest thread's core is saturated or the kernel dropped datagrams at its sockets (it did not read
/// them in time). Late frames alone are not: the tag carries the actual send time, so loss and
/// latency stay exact; on a shared machine other processes on the generator's core delay it.
pub fn generator_verdict(g: &GenReport) -> String {
    let late_ms = g.max_send_lateness_ns as f64 / 1e6;
    if g.busy < 0.9 && g.rx_queue_drops == 0 {
        format!(
            "not the bottleneck: generator core {:.0}% busy, no kernel drops at its sockets \
             (frames sent up to {late_ms:.1} ms after their due time)",
            g.busy * 100.0
        )
    } else {
        format!(
            "MAY BE the bottleneck: generator core {:.0}% busy, {} kernel drops at its \
             sockets, frames up to {late_ms:.1} ms late",
            g.busy * 100.0,
            g.rx_queue_drops
        )
    }
}

pub fn percentiles(h: &Histogram) -> Value {
    let us = |q: f64| h.quantile(q).map(|ns| round(ns as f64 / 1e3, 1));
    json!({
        "count": h.count(),
        "p50": us(0.5),
        "p90": us(0.9),
        "p99": us(0.99),
        "p999": us(0.999),
        "max": round(h.max() as f64 / 1e3, 1),
    })
}

/// Each worker's stats snapshots around the generator's measurement window: at `start` the
/// first one the worker sent after the window opened, at `end` the last one it sent before
/// the window closed (the workers send one every [`super::STATS_INTERVAL`]). A delta between
/// them leaves out the warm-up — the first keyframe, the start estimate's pacing, the setup's
/// handshakes — and the drain, as the generator's own figures do. A worker with no snapshot in
/// the window keeps the one from before the generator started, or the last one.
#[derive(Debug, Clone, Default)]
pub struct Window {
    pub start: BTreeMap<u16, ShardStats>,
    pub end: BTreeMap<u16, ShardStats>,
}

impl Window {
    /// From snapshots taken before the run (`before`) and after it (`last`), and the ones
    /// taken at the window's edges (`opened`, `closed`), any of which may miss a worker.
    pub fn pick(
        before: &BTreeMap<u16, ShardStats>,
        opened: &BTreeMap<u16, ShardStats>,
        closed: &BTreeMap<u16, ShardStats>,
        last: &BTreeMap<u16, ShardStats>,
    ) -> Self {
        let mut w = Window::default();
        for (&shard, l) in last {
            let start = opened.get(&shard).or(before.get(&shard));
            let end = closed.get(&shard).unwrap_or(l);
            if let Some(s) = start {
                w.start.insert(shard, s.clone());
            }
            w.end.insert(shard, end.clone());
        }
        w
    }
}
