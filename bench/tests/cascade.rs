//! `sluice-bench fanout --cascade` end to end, small and short (not timed): two in-process
//! dataplanes, a publisher and the reference on A, 4 subscribers on B through the trunk, the
//! single-node run and both CPU baselines. The report must say what happened: every published
//! packet crossed the trunk exactly once (A's trunk session counts them) although B has four
//! subscribers, every B subscriber got ≥ 95 % of the window, every far copy paired with the
//! reference's, and every derived figure is there. Then the same over a trusted (plain) trunk,
//! without the baselines. About 10 s in a debug build.

use std::time::Duration;

use bench::cascade::{self, CascadeConfig, CascadeReport, TrunkCipher};
use sluice_dataplane::config::IoChoice;
use sluice_dataplane::sys::affinity;

const N: u32 = 4;

/// The runs take turns: two pairs of dataplanes pinned to the same cores would load each other.
static ONE_RUN: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn config(trunk: TrunkCipher, baselines: bool) -> CascadeConfig {
    let cores = affinity::online_cores().expect("cores");
    let mut cfg = CascadeConfig::default_for(&cores, N, Duration::from_millis(800));
    cfg.fanout.warmup = Duration::from_millis(400);
    cfg.fanout.buffers_per_worker = 4096;
    cfg.fanout.io = IoChoice::Socket;
    cfg.trunk = trunk;
    cfg.baselines = baselines;
    cfg
}

fn check(name: &str, r: &CascadeReport) {
    let j = r.to_json();
    println!("{name}: {j}");
    print!("{}", cascade::summary(&j));
    for p in &r.phases {
        let g = &p.gen;
        assert!(g.sent_in_window > 0, "{name}/{}: nothing sent", p.spec.name);
        assert_eq!(
            (g.tag_errors, g.foreign, g.pattern_errors),
            (0, 0, 0),
            "{name}/{}: wrong copies",
            p.spec.name
        );
        assert!(g.loss() < 0.05, "{name}/{}: loss {}", p.spec.name, g.loss());
    }
    let single = r.phase("single").expect("single phase");
    assert!(single.gen.split.is_none() && single.trunk_forwarded.is_none());
    let c = r.phase("cascade").expect("cascade phase");
    // The trunk: each published packet once, whatever N, nothing retransmitted on loopback.
    let (relayed, rtx) = c.trunk_forwarded.expect("trunk session stats");
    assert_eq!(relayed, c.gen.sent, "{name}: published vs relayed");
    assert_eq!(rtx, 0, "{name}: retransmissions on loopback");
    assert_eq!(r.crossed_once(), Some(true));
    assert_eq!(j["trunk"]["crossed_once"], true);
    // B forwarded N copies of each; it received the trunk's packets (and its RTCP).
    assert!(
        c.b.rx_packets >= relayed,
        "{name}: B received {}",
        c.b.rx_packets
    );
    assert!(c.b.tx_packets >= relayed * u64::from(N) * 95 / 100);
    // Every subscriber, the reference and each on B, got >= 95 % of the window.
    let s = c.gen.split.as_ref().expect("split counts");
    assert_eq!(s.per_sub.len(), N as usize + 1);
    let share = c.min_subscriber_share().expect("shares");
    assert!(share >= 0.95, "{name}: least-served subscriber {share}");
    assert!(c.far_loss() < 0.05, "{name}: far loss {}", c.far_loss());
    let pairing = s.pairing.as_ref().expect("paired");
    assert_eq!(s.pairs_dropped, 0);
    let (all, first) = (&pairing.all, &pairing.first);
    assert!(
        all.count as f64 >= 0.95 * (c.gen.sent_in_window * u64::from(N)) as f64,
        "{name}: {} pairs",
        all.count
    );
    assert!(first.count as f64 >= 0.95 * c.gen.sent_in_window as f64);
    assert!(
        first.count * u64::from(N) >= all.count,
        "one first copy per packet"
    );
    for x in [all, first] {
        assert!(x.min_ns <= x.p50_ns && x.p50_ns <= x.p99_ns && x.p99_ns <= x.max_ns);
    }
    // A packet's first copy on B is never later than its median copy.
    assert!(first.p50_ns <= all.p50_ns);
    for set in ["first_copy", "every_copy"] {
        for k in ["p50_us", "p99_us"] {
            assert!(j["added_latency_us"]["per_packet_b_minus_reference"][set][k].is_number());
        }
    }
    assert!(j["added_latency_us"]["cascaded_minus_single_p50"].is_number());
    assert!(j["cascaded"]["latency_us"]["p99"].is_number());
    assert!(j["single"]["latency_us"]["p99"].is_number());
}

#[test]
fn a_cascade_run_reports_the_trunk_once_per_packet_and_every_subscriber_served() {
    let _turn = ONE_RUN.lock().unwrap_or_else(|e| e.into_inner());
    let r = cascade::run(&config(TrunkCipher::Srtp, true)).expect("cascade runs");
    check("srtp", &r);
    let names: Vec<_> = r.phases.iter().map(|p| p.spec.name).collect();
    assert_eq!(
        names,
        ["single", "cascade", "a_alone", "b_alone", "cascade_1"]
    );
    // The baselines make every cost figure derivable (their values are the benchmark's to
    // report, not this test's to judge: a loaded machine moves them).
    let cost = r.trunk_cost();
    for (what, v) in [
        ("subscriber send", cost.subscriber_send_us),
        ("A trunk send", cost.a_trunk_send_us),
        ("B trunk receive", cost.b_trunk_receive_us),
        ("plain ingest", cost.plain_ingest_us),
        ("B receive over plain", cost.b_receive_over_plain_us),
        ("subscriber send (single)", cost.subscriber_send_single_us),
    ] {
        assert!(v.is_some_and(f64::is_finite), "{what}: {v:?}");
    }
    // The trunk's hop alone: one copy on B per packet, each paired with the reference's.
    let hop = &j_hop(&r);
    assert!(hop["pairs"].as_u64().unwrap_or(0) > 0, "{hop}");
    // The workers' CPU was measured on both sides of the trunk.
    let c = r.phase("cascade").expect("cascade");
    assert!(c.a.cpu_us > 0 && c.b.cpu_us > 0);
}

fn j_hop(r: &CascadeReport) -> serde_json::Value {
    r.to_json()["added_latency_us"]["trunk_hop_alone"].clone()
}

#[test]
fn a_trusted_trunk_carries_the_same() {
    let _turn = ONE_RUN.lock().unwrap_or_else(|e| e.into_inner());
    let r = cascade::run(&config(TrunkCipher::Trusted, false)).expect("cascade runs");
    check("trusted", &r);
    assert_eq!(r.phases.len(), 2);
    assert!(r.trunk_cost().a_trunk_send_us.is_none());
}
