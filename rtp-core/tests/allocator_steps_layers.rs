//! End-to-end BWE scenario: a sender forwards one simulcast track over a
//! simulated bottleneck whose capacity goes 3 Mbit/s → 400 kbit/s → 3 Mbit/s.
//! The receiver's `TwccReceiver` produces transport-cc feedback, the
//! sender's `SendSideBwe` estimates (and probes, with padding of 1200 bytes, as a
//! Session does: media is application-limited, so only probes show what the path
//! could carry), and the `Allocator` picks the layer.
//! Time is advanced by hand in 1 ms steps.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use rtp_core::bwe::{
    Allocator, AllocatorConfig, Layer, SendSideBwe, SendSideBweConfig, TrackDemand, TwccReceiver,
    TwccReceiverConfig,
};

const PACKET: usize = 1200;
const LAYERS: [u64; 3] = [100_000, 300_000, 1_200_000];
const PROPAGATION_US: u64 = 20_000;
const MAX_QUEUE_US: f64 = 300_000.0;

fn capacity_at(ms: u64) -> f64 {
    match ms {
        0..20_000 => 3_000_000.0,
        20_000..45_000 => 400_000.0,
        _ => 3_000_000.0,
    }
}

#[derive(Debug, Clone, Copy)]
struct Sample {
    ms: u64,
    capacity: f64,
    estimate: u64,
    layer: Option<u8>,
}

#[test]
#[allow(clippy::disallowed_methods)] // the scenario needs some base instant
fn layers_step_down_and_back_up_with_capacity() {
    let t0 = Instant::now();
    let mut bwe = SendSideBwe::new(SendSideBweConfig {
        start_bps: 1_000_000,
        max_bps: 5_000_000,
        ..SendSideBweConfig::default()
    });
    let mut rx = TwccReceiver::new(TwccReceiverConfig::default());
    let mut alloc = Allocator::new(AllocatorConfig::default());
    let demand = [TrackDemand {
        priority: 1,
        layers: LAYERS.map(|bitrate_bps| Layer {
            bitrate_bps,
            available: true,
        }),
        max_layer: 2,
        paused: false,
    }];
    let mut layer = [None];

    let mut in_flight: VecDeque<(u64, u16)> = VecDeque::new(); // (arrival µs, seq)
    let mut link_free_us = 0.0f64; // when the bottleneck finishes its backlog
    let mut credit_bits = 0.0f64;
    let mut seq = 0u16;
    let mut fb = [0u8; 1500];
    let mut samples = Vec::new();
    let (mut sent, mut dropped) = (0u32, 0u32);

    for ms in 0..80_000u64 {
        let now_us = ms * 1000;
        let now = t0 + Duration::from_micros(now_us);
        let capacity = capacity_at(ms);

        if ms % 100 == 0 {
            alloc.allocate(now, bwe.estimate_bps(), &demand, &mut layer);
            bwe.set_probing(true);
            bwe.set_desired(alloc.desired_bps());
            bwe.handle_timeout(now);
        }

        // Pace the chosen layer's bitrate in 1200-byte packets.
        if let Some(l) = layer[0] {
            credit_bits += LAYERS[usize::from(l)] as f64 / 1000.0;
        }
        // Probe padding when the estimator asks (paced by it), then the layer's media.
        let mut probe = bwe.probe_due().is_some_and(|t| t <= now);
        while probe || credit_bits >= (PACKET * 8) as f64 {
            if probe {
                bwe.on_probe_sent(now, seq, PACKET);
            } else {
                credit_bits -= (PACKET * 8) as f64;
                bwe.on_packet_sent(now, seq, PACKET);
            }
            sent += 1;
            let backlog_us = (link_free_us - now_us as f64).max(0.0);
            if backlog_us > MAX_QUEUE_US {
                dropped += 1; // tail drop
            } else {
                link_free_us =
                    link_free_us.max(now_us as f64) + (PACKET * 8) as f64 * 1e6 / capacity;
                in_flight.push_back((link_free_us as u64 + PROPAGATION_US, seq));
            }
            seq = seq.wrapping_add(1);
            probe = bwe.probe_due().is_some_and(|t| t <= now);
        }

        // Deliver, then let the receiver send feedback (return path uncongested).
        while in_flight.front().is_some_and(|(at, _)| *at <= now_us) {
            let (at, s) = in_flight.pop_front().unwrap();
            rx.on_packet(t0 + Duration::from_micros(at), s);
        }
        while let Some(n) = rx.poll_feedback(now, 0x1111, 0x2222, &mut fb) {
            bwe.on_transport_feedback(now + Duration::from_micros(PROPAGATION_US), &fb[12..n])
                .expect("own feedback decodes");
        }

        if ms % 250 == 0 {
            samples.push(Sample {
                ms,
                capacity,
                estimate: bwe.estimate_bps(),
                layer: layer[0],
            });
        }
    }

    println!("  time   capacity   estimate  layer");
    for s in samples.iter().filter(|s| s.ms % 2000 == 0) {
        println!(
            "{:5.1}s {:7.0}k {:9.0}k  {:?}",
            s.ms as f64 / 1000.0,
            s.capacity / 1000.0,
            s.estimate as f64 / 1000.0,
            s.layer
        );
    }
    println!("sent {sent}, dropped at the bottleneck {dropped}");

    let in_range = |a: u64, b: u64| samples.iter().filter(move |s| s.ms >= a && s.ms < b);
    // Phase 1: top layer reached on a 3 Mbit/s link.
    assert!(
        in_range(15_000, 20_000).all(|s| s.layer == Some(2)),
        "top layer on 3 Mbit/s"
    );
    // Capacity drops at 20 s: off the top layer within 3 s...
    let first_down = in_range(20_000, 45_000)
        .find(|s| s.layer < Some(2))
        .expect("steps down")
        .ms;
    assert!(first_down <= 23_000, "stepped down only at {first_down} ms");
    // ...and mostly below it while the link is narrow (an occasional
    // upgrade attempt is the estimator probing).
    let narrow: Vec<_> = in_range(25_000, 45_000).collect();
    let low = narrow.iter().filter(|s| s.layer <= Some(1)).count();
    assert!(
        low * 10 >= narrow.len() * 8,
        "{low}/{} samples below top",
        narrow.len()
    );
    // Capacity returns at 45 s: back to the top layer within 30 s and stays.
    let back_up = in_range(45_000, 80_000)
        .find(|s| s.layer == Some(2))
        .expect("steps back up")
        .ms;
    assert!(back_up <= 75_000, "back up only at {back_up} ms");
    assert!(in_range(77_000, 80_000).all(|s| s.layer == Some(2)));

    // The estimate tracks capacity within a factor (median per phase).
    let median = |a: u64, b: u64| {
        let mut v: Vec<u64> = in_range(a, b).map(|s| s.estimate).collect();
        v.sort_unstable();
        v[v.len() / 2] as f64
    };
    let narrow_est = median(25_000, 45_000);
    assert!(
        (0.4 * 400_000.0..=3.0 * 400_000.0).contains(&narrow_est),
        "narrow-phase estimate {narrow_est}"
    );
    let wide_est = median(70_000, 80_000);
    assert!(
        (0.4 * 3_000_000.0..=2.0 * 3_000_000.0).contains(&wide_est),
        "wide-phase estimate {wide_est}"
    );
}
