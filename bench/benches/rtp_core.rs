//! Criterion benches for rtp-core's hot paths: one bench per path (style.md §7).
//! `cargo bench -p bench` — results land in target/criterion; `sluice-bench micro` gives the
//! quick JSON summary with the raw-crypto ratios.

use std::hint::black_box;
use std::time::{Duration, Instant};

use bench::sample;
use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use rtp_core::forward::{apply_rewrite, Codec, Decision, Forwarder, ForwarderConfig, PacketIn};
use rtp_core::nack::{HistoryConfig, PacketHistory};
use rtp_core::pacer::{Pacer, PacerConfig, PacketClass};
use rtp_core::srtp::ProtectionProfile;
use rtp_core::RtpView;

const PROFILES: [ProtectionProfile; 2] = [
    ProtectionProfile::AeadAes128Gcm,
    ProtectionProfile::Aes128CmHmacSha1_80,
];

fn parse(c: &mut Criterion) {
    let mut buf = [0u8; 1500];
    sample::rtp_packet(&mut buf, 1200, 1, 90_000);
    c.bench_function("rtp_parse_1200", |b| {
        b.iter(|| {
            let v = RtpView::parse(black_box(&buf[..1200])).unwrap();
            black_box((v.seq(), v.extension(sample::TWCC_EXT_ID)))
        })
    });
}

fn srtp(c: &mut Criterion) {
    let mut g = c.benchmark_group("srtp");
    for profile in PROFILES {
        for size in [100usize, 1200] {
            let name = sample::profile_name(profile);
            g.throughput(Throughput::Bytes(size as u64));
            let mut ctx = sample::context(profile);
            let mut buf = vec![0u8; size + sample::TAG_ROOM];
            sample::rtp_packet(&mut buf, size, 0, 0);
            let mut seq = 0u16;
            g.bench_with_input(
                BenchmarkId::new(format!("protect_{name}"), size),
                &size,
                |b, &size| {
                    b.iter(|| {
                        seq = seq.wrapping_add(1);
                        buf[2..4].copy_from_slice(&seq.to_be_bytes());
                        black_box(ctx.protect_rtp(&mut buf, size).unwrap())
                    })
                },
            );
            let mut sender = sample::context(profile);
            let mut receiver = sample::context(profile);
            let mut seq = 0u16;
            g.bench_with_input(
                BenchmarkId::new(format!("unprotect_{name}"), size),
                &size,
                |b, &size| {
                    b.iter_batched_ref(
                        || {
                            seq = seq.wrapping_add(1);
                            let mut p = vec![0u8; size + sample::TAG_ROOM];
                            sample::rtp_packet(&mut p, size, seq, 0);
                            let n = sender.protect_rtp(&mut p, size).unwrap();
                            p.truncate(n);
                            p
                        },
                        |p| black_box(receiver.unprotect_rtp(p).unwrap()),
                        BatchSize::SmallInput,
                    )
                },
            );
        }
    }
    g.finish();
}

/// Forward one 1,200-byte packet to N subscribers: decision + copy/rewrite + protect each.
fn fanout(c: &mut Criterion) {
    let mut g = c.benchmark_group("forward_rewrite_protect");
    let t0 = Instant::now();
    for n in [1usize, 100] {
        let mut subs: Vec<_> = (0..n)
            .map(|i| {
                (
                    Forwarder::new(ForwarderConfig::video(0x100 + i as u32, Codec::Vp8)),
                    sample::context(ProtectionProfile::AeadAes128Gcm),
                )
            })
            .collect();
        let mut src = [0u8; 1500];
        sample::vp8_packet(&mut src, 1200, 0, 0);
        let mut out = [0u8; 1500];
        let mut ext = 65_536u64;
        g.throughput(Throughput::Elements(n as u64));
        g.bench_function(BenchmarkId::new("subscribers", n), |b| {
            b.iter(|| {
                ext += 1;
                src[2..4].copy_from_slice(&(ext as u16).to_be_bytes());
                let view = RtpView::parse(&src[..1200]).unwrap();
                let input = PacketIn::from_rtp(0, ext, &view);
                for (fwd, ctx) in subs.iter_mut() {
                    if let Decision::Forward(rw) = fwd.decide(t0, &input) {
                        let len = apply_rewrite(&view, &rw, &mut out).unwrap();
                        black_box(ctx.protect_rtp(&mut out, len).unwrap());
                    }
                }
            })
        });
    }
    g.finish();
}

fn nack_cache(c: &mut Criterion) {
    let t0 = Instant::now();
    let mut history = PacketHistory::new(HistoryConfig {
        capacity: 4096,
        max_age: Duration::from_secs(2),
        max_packet_len: 1500,
    });
    let mut pkt = [0u8; 1500];
    sample::rtp_packet(&mut pkt, 1200, 0, 0);
    let mut ext = 65_536u64;
    c.bench_function("nack_cache_insert_1200", |b| {
        b.iter(|| {
            ext += 1;
            black_box(history.insert(t0, ext, &pkt[..1200]).is_ok())
        })
    });
    let top = ext;
    let mut i = 0u64;
    c.bench_function("nack_cache_lookup", |b| {
        b.iter(|| {
            i = (i + 7) % 4000;
            black_box(history.get(t0, top - i).map(|p| p.len()))
        })
    });
}

fn pacer(c: &mut Criterion) {
    let t0 = Instant::now();
    let mut pacer: Pacer<u32> = Pacer::new(
        PacerConfig {
            initial_rate_bps: 100_000_000_000,
            ..PacerConfig::default()
        },
        t0,
    );
    let mut now = t0;
    let mut n = 0u32;
    c.bench_function("pacer_enqueue_dequeue", |b| {
        b.iter(|| {
            n = n.wrapping_add(1);
            now += Duration::from_micros(1);
            pacer.enqueue(now, PacketClass::Video, 1200, n).unwrap();
            black_box(pacer.poll_transmit(now))
        })
    });
}

criterion_group!(benches, parse, srtp, fanout, nack_cache, pacer);
criterion_main!(benches);
