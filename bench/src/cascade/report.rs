//! What a cascade run reports: single-node vs cascaded delivery, loss and latency, the latency
//! the trunk adds (per packet against the reference on A), that every published packet
//! crossed the trunk once, and the trunk's CPU cost per relayed packet on each side — as JSON
//! and as a summary.
//!
//! The cost model, per published packet, in worker CPU µs (each phase's `cpu_us` delta over
//! the packets its publishers sent, warm-up included, idle included):
//!
//! | phase | A | B |
//! |---|---|---|
//! | `single` (N on B) | — | ingest + N·send |
//! | `cascade` (ref on A, N on B) | ingest + send + trunk send | trunk receive + N·send |
//! | `a_alone` (1 on A) | ingest + send | — |
//! | `b_alone` (1 on B) | — | ingest + send |
//! | `cascade_1` (ref on A, 1 on B) | ingest + send + trunk send | trunk receive + send |
//!
//! so a subscriber send = (cascade B − cascade_1 B) / (N − 1) (and, as a check, (single B −
//! b_alone B) / (N − 1)), the trunk send on A = cascade A − a_alone A (encrypt + send of the
//! trunk copy), the trunk receive on B = cascade_1 B − send (decrypt + fan-in to the
//! forwarder), its extra over a plain publisher's packet = cascade_1 B − b_alone B, and a plain
//! ingest = b_alone B − send. Each is a difference of like phases on the same dataplane and
//! core, so the workers' idle cost (timers, reports) cancels; what is left is noisy on a
//! shared machine. At a publisher's rate (~260 packets/s) every packet wakes the worker on its
//! own, so an ingest includes a wake-up; a subscriber send is the marginal cost of one more
//! copy in a fan-out.

use serde_json::{json, Value};

use super::*;
use crate::fanout::{generator_verdict, percentiles};
use crate::hist::Histogram;
use crate::report::round;

/// The targets for `recv(subscriber on B) − recv(reference on A)` on loopback (µs).
pub const TARGET_ADDED_P50_US: f64 = 300.0;
pub const TARGET_ADDED_P99_US: f64 = 2000.0;

/// Everything one `fanout --cascade` invocation measured.
#[derive(Debug, Clone)]
pub struct CascadeReport {
    pub config: CascadeConfig,
    pub a_workers: u16,
    pub b_workers: u16,
    pub io_mode: String,
    pub phases: Vec<Phase>,
}

/// The derived per-packet costs (µs); `None` where a baseline is missing.
#[derive(Debug, Clone, Copy, Default)]
pub struct TrunkCost {
    pub subscriber_send_us: Option<f64>,
    pub a_trunk_send_us: Option<f64>,
    pub b_trunk_receive_us: Option<f64>,
    pub plain_ingest_us: Option<f64>,
    /// The trunk receive's extra over a plain publisher packet's ingest (both on B).
    pub b_receive_over_plain_us: Option<f64>,
    /// The subscriber send from the single-node run (a check on `subscriber_send_us`).
    pub subscriber_send_single_us: Option<f64>,
}

fn quantile_us(h: &Histogram, q: f64) -> Option<f64> {
    h.quantile(q).map(|ns| ns as f64 / 1e3)
}

impl Phase {
    /// Worker CPU µs per published packet on A (`true`) or B.
    pub fn cpu_per_packet_us(&self, on_a: bool) -> f64 {
        let d = if on_a { self.a } else { self.b };
        d.cpu_us as f64 / self.gen.sent.max(1) as f64
    }

    /// Loss of the far (B) subscribers, or of all of them without a trunk.
    pub fn far_loss(&self) -> f64 {
        match &self.gen.split {
            Some(s) => {
                let want = self.gen.sent_in_window * u64::from(self.spec.remote);
                1.0 - s.received().1 as f64 / want.max(1) as f64
            }
            None => self.gen.loss(),
        }
    }

    /// The smallest share of the window's packets any one subscriber received.
    pub fn min_subscriber_share(&self) -> Option<f64> {
        let s = self.gen.split.as_ref()?;
        let min = s.per_sub.iter().copied().min()?;
        Some(min as f64 / self.gen.sent_in_window.max(1) as f64)
    }

    fn to_json(&self) -> Value {
        let g = &self.gen;
        json!({
            "name": self.spec.name,
            "publisher_on": if self.spec.publisher_on_a { "a" } else { "b" },
            "local_subscribers": self.spec.local,
            "remote_subscribers": self.spec.remote,
            "setup_s": round(self.setup_s, 3),
            "sent": g.sent,
            "sent_in_window": g.sent_in_window,
            "received": g.received,
            "loss": round(g.loss(), 6),
            "delivered_pps": round(g.delivered_pps(), 0),
            "latency_us": percentiles(&g.latency_all),
            "worker_cpu_us": {"a": self.a.cpu_us, "b": self.b.cpu_us},
            "worker_cpu_us_per_published_packet": {
                "a": round(self.cpu_per_packet_us(true), 3),
                "b": round(self.cpu_per_packet_us(false), 3),
            },
            "rx_packets": {"a": self.a.rx_packets, "b": self.b.rx_packets},
            "tx_packets": {"a": self.a.tx_packets, "b": self.b.tx_packets},
            "trunk_forwarded": self.trunk_forwarded.map(|t| t.0),
            "trunk_retransmitted": self.trunk_forwarded.map(|t| t.1),
            "verify": {"tag_errors": g.tag_errors, "foreign": g.foreign,
                       "pattern_errors": g.pattern_errors, "pattern_checked": g.pattern_checked},
            "generator": {"busy": round(g.busy, 3), "verdict": generator_verdict(g)},
        })
    }
}

impl CascadeReport {
    pub fn phase(&self, name: &str) -> Option<&Phase> {
        self.phases.iter().find(|p| p.spec.name == name)
    }

    /// The trunk's cost per relayed packet, from the phases (see the module doc).
    pub fn trunk_cost(&self) -> TrunkCost {
        let n = f64::from(self.config.fanout.subscribers);
        let cpu = |name: &str, on_a: bool| self.phase(name).map(|p| p.cpu_per_packet_us(on_a));
        let send = match (cpu("cascade", false), cpu("cascade_1", false)) {
            (Some(bn), Some(b1)) if n > 1.0 => Some((bn - b1) / (n - 1.0)),
            _ => None,
        };
        let (a_alone, b_alone) = (cpu("a_alone", true), cpu("b_alone", false));
        let b1 = cpu("cascade_1", false);
        TrunkCost {
            subscriber_send_us: send,
            a_trunk_send_us: cpu("cascade", true).zip(a_alone).map(|(c, b)| c - b),
            b_trunk_receive_us: b1.zip(send).map(|(b1, s)| b1 - s),
            plain_ingest_us: b_alone.zip(send).map(|(b, s)| b - s),
            b_receive_over_plain_us: b1.zip(b_alone).map(|(t, p)| t - p),
            subscriber_send_single_us: cpu("single", false)
                .zip(b_alone)
                .filter(|_| n > 1.0)
                .map(|(s, b)| (s - b) / (n - 1.0)),
        }
    }

    /// Does every published packet cross the trunk exactly once (no retransmission)?
    pub fn crossed_once(&self) -> Option<bool> {
        let p = self.phase("cascade")?;
        let (fwd, rtx) = p.trunk_forwarded?;
        Some(fwd == p.gen.sent && rtx == 0)
    }

    pub fn to_json(&self) -> Value {
        let c = &self.config;
        let f = &c.fanout;
        let single = self.phase("single");
        let casc = self.phase("cascade");
        let split = casc.and_then(|p| p.gen.split.as_ref());
        let q = |h: Option<&Histogram>, q: f64| h.and_then(|h| quantile_us(h, q));
        let single_lat = single.map(|p| &p.gen.latency_all);
        let far_lat = split.map(|s| &s.latency_far);
        let diff = |a: Option<f64>, b: Option<f64>| a.zip(b).map(|(a, b)| round(a - b, 1));
        let pairing = split.and_then(|s| s.pairing.clone());
        let spread = |x: &crate::gen::Spread| {
            let (p50, p99) = (x.p50_ns as f64 / 1e3, x.p99_ns as f64 / 1e3);
            json!({
                "pairs": x.count,
                "p50_us": round(p50, 1),
                "p99_us": round(p99, 1),
                "min_us": round(x.min_ns as f64 / 1e3, 1),
                "max_us": round(x.max_ns as f64 / 1e3, 1),
                "met": p50 <= TARGET_ADDED_P50_US && p99 <= TARGET_ADDED_P99_US,
            })
        };
        let per_packet = pairing.as_ref().map(|p| {
            json!({
                "first_copy": spread(&p.first),
                "every_copy": spread(&p.all),
                "unpaired": p.unpaired,
                "pairs_dropped": split.map_or(0, |s| s.pairs_dropped),
                "target_p50_us": TARGET_ADDED_P50_US,
                "target_p99_us": TARGET_ADDED_P99_US,
            })
        });
        let hop = self
            .phase("cascade_1")
            .and_then(|p| p.gen.split.as_ref())
            .and_then(|s| s.pairing.as_ref())
            .map(|p| spread(&p.all));
        let cost = self.trunk_cost();
        let ratio = |x: Option<f64>| {
            x.zip(cost.subscriber_send_us)
                .filter(|(_, s)| *s > 0.0)
                .map(|(x, s)| round(x / s, 2))
        };
        let us = |x: Option<f64>| x.map(|v| round(v, 3));
        json!({
            "config": {
                "publishers": f.publishers,
                "subscribers": f.subscribers,
                "audio": f.audio,
                "video": f.video,
                "trunk": c.trunk.name(),
                "warmup_s": f.warmup.as_secs_f64(),
                "duration_s": f.duration.as_secs_f64(),
                "a_cores": c.a_cores,
                "b_cores": f.sfu_cores,
                "a_workers": self.a_workers,
                "b_workers": self.b_workers,
                "generator_core": f.generator_core,
                "generator_rx_cores": f.generator_rx_cores,
                "io_mode": self.io_mode,
            },
            "single": single.map(|p| json!({
                "delivered_pps": round(p.gen.delivered_pps(), 0),
                "loss": round(p.gen.loss(), 6),
                "latency_us": percentiles(&p.gen.latency_all),
            })),
            "cascaded": casc.map(|p| json!({
                "delivered_pps": round(
                    split.map_or(0, |s| s.received().1) as f64 / p.gen.window_s.max(1e-9), 0),
                "loss": round(p.far_loss(), 6),
                "min_subscriber_share": p.min_subscriber_share().map(|s| round(s, 4)),
                "latency_us": split.map(|s| percentiles(&s.latency_far)),
                "reference_latency_us": split.map(|s| percentiles(&s.latency_near)),
            })),
            "added_latency_us": {
                "cascaded_minus_single_p50": diff(q(far_lat, 0.5), q(single_lat, 0.5)),
                "cascaded_minus_single_p99": diff(q(far_lat, 0.99), q(single_lat, 0.99)),
                "per_packet_b_minus_reference": per_packet,
                "trunk_hop_alone": hop,
                "method": "generator clock; per packet: receive time of a copy on a B \
                           subscriber minus that of the reference subscriber's copy on A, for \
                           the packet's first copy on B (the trunk's hop: A's trunk send, B's \
                           receive and one send) and for every copy (which adds B's fan-out of \
                           the other N-1 copies, as the single-node run has it too); \
                           trunk_hop_alone: the same in the cascade_1 phase (1 subscriber on B, \
                           no fan-out on B to queue behind)",
            },
            "trunk": casc.map(|p| json!({
                "published": p.gen.sent,
                "relayed": p.trunk_forwarded.map(|t| t.0),
                "retransmitted": p.trunk_forwarded.map(|t| t.1),
                "crossed_once": self.crossed_once(),
                "b_rx_packets": p.b.rx_packets,
            })),
            "trunk_cost_us_per_packet": {
                "a_send": us(cost.a_trunk_send_us),
                "b_receive": us(cost.b_trunk_receive_us),
                "subscriber_send": us(cost.subscriber_send_us),
                "plain_ingest": us(cost.plain_ingest_us),
                "b_receive_minus_plain_ingest": us(cost.b_receive_over_plain_us),
                "subscriber_send_from_single": us(cost.subscriber_send_single_us),
                "a_send_over_subscriber_send": ratio(cost.a_trunk_send_us),
                "b_receive_over_subscriber_send": ratio(cost.b_trunk_receive_us),
                "method": "worker cpu_us per published packet, differenced between phases of \
                           the same run: subscriber send = (cascade B - cascade_1 B)/(N-1); \
                           A send = cascade A - a_alone A; B receive = cascade_1 B - send; \
                           B receive minus plain ingest = cascade_1 B - b_alone B; plain \
                           ingest = b_alone B - send; subscriber send from single = (single B \
                           - b_alone B)/(N-1)",
            },
            "phases": self.phases.iter().map(Phase::to_json).collect::<Vec<_>>(),
        })
    }
}

/// The text summary of a cascade report's JSON.
pub fn summary(j: &Value) -> String {
    let c = &j["config"];
    let mut out = format!(
        "fanout --cascade: {} publisher(s) -> {} subscribers on B; trunk {}; A on cores {}, B on \
         cores {}, generator on core {}; io {}\n",
        c["publishers"],
        c["subscribers"],
        c["trunk"].as_str().unwrap_or(""),
        c["a_cores"],
        c["b_cores"],
        c["generator_core"],
        c["io_mode"].as_str().unwrap_or("")
    );
    out += &format!(
        "  {:<22} {:>13} {:>9} {:>9} {:>9}\n",
        "", "delivered pps", "loss %", "p50 us", "p99 us"
    );
    let pct = |v: &Value| {
        v.as_f64()
            .map_or("-".into(), |l| format!("{:.3}", l * 100.0))
    };
    for (name, r, lat) in [
        ("single node (B)", &j["single"], &j["single"]["latency_us"]),
        (
            "cascaded (A -> B)",
            &j["cascaded"],
            &j["cascaded"]["latency_us"],
        ),
    ] {
        out += &format!(
            "  {:<22} {:>13} {:>9} {:>9} {:>9}\n",
            name,
            r["delivered_pps"].to_string(),
            pct(&r["loss"]),
            lat["p50"].to_string(),
            lat["p99"].to_string()
        );
    }
    let rl = &j["cascaded"]["reference_latency_us"];
    out += &format!(
        "  reference on A: p50 {} us, p99 {} us; least-served B subscriber got {} of the window\n",
        rl["p50"], rl["p99"], j["cascaded"]["min_subscriber_share"]
    );
    let a = &j["added_latency_us"];
    out += &format!(
        "  added latency: cascaded - single p50 {} us, p99 {} us\n",
        a["cascaded_minus_single_p50"], a["cascaded_minus_single_p99"],
    );
    let pp = &a["per_packet_b_minus_reference"];
    for (what, x) in [
        ("first copy on B", &pp["first_copy"]),
        ("every copy on B", &pp["every_copy"]),
        ("only sub on B", &a["trunk_hop_alone"]),
    ] {
        if x.is_null() {
            continue;
        }
        out += &format!(
            "  recv({what}) - recv(ref on A) over {} packets: p50 {} us, p99 {} us, max {} us \
             (targets p50 <= {} us, p99 <= {} us: {})\n",
            x["pairs"],
            x["p50_us"],
            x["p99_us"],
            x["max_us"],
            TARGET_ADDED_P50_US,
            TARGET_ADDED_P99_US,
            if x["met"].as_bool() == Some(true) {
                "met"
            } else {
                "NOT met"
            }
        );
    }
    let t = &j["trunk"];
    out += &format!(
        "  trunk: {} packets published, {} relayed over the trunk, {} retransmitted; each \
         crossed once: {}\n",
        t["published"], t["relayed"], t["retransmitted"], t["crossed_once"]
    );
    let k = &j["trunk_cost_us_per_packet"];
    out += &format!(
        "  trunk cost per relayed packet (worker CPU): A send {} us ({}x a subscriber send), B \
         receive {} us ({}x; {} us more than a plain publisher packet's ingest); subscriber \
         send {} us ({} us from the single-node run), plain ingest {} us\n",
        k["a_send"],
        k["a_send_over_subscriber_send"],
        k["b_receive"],
        k["b_receive_over_subscriber_send"],
        k["b_receive_minus_plain_ingest"],
        k["subscriber_send"],
        k["subscriber_send_from_single"],
        k["plain_ingest"]
    );
    for p in j["phases"].as_array().into_iter().flatten() {
        let cpu = &p["worker_cpu_us_per_published_packet"];
        out += &format!(
            "  phase {:<9} {} local + {} remote: loss {}%, CPU us/published packet A {} B {}; \
             generator {}\n",
            p["name"].as_str().unwrap_or(""),
            p["local_subscribers"],
            p["remote_subscribers"],
            pct(&p["loss"]),
            cpu["a"],
            cpu["b"],
            p["generator"]["verdict"].as_str().unwrap_or("")
        );
    }
    out
}
