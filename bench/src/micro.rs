//! `sluice-bench micro`: the per-operation cost of rtp-core's hot paths.
//!
//! Each SRTP protect figure is measured beside the bare aws-lc-rs call(s) that any SRTP
//! implementation must make on the same buffer with the same session keys — AES-GCM seal for the
//! AEAD profiles; AES-CTR plus HMAC-SHA1 for the AES-CM profiles — in interleaved rounds of the
//! same run. `ratio_to_raw_crypto` = ours / raw; the target is ≤ 1.15 (docs/performance.md).

use std::time::{Duration, Instant};

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_128_GCM, AES_256_GCM};
use aws_lc_rs::cipher::{EncryptingKey, EncryptionContext, UnboundCipherKey, AES_128};
use aws_lc_rs::hmac;
use aws_lc_rs::iv::FixedLength;
use rtp_core::forward::{apply_rewrite, Codec, Decision, Forwarder, ForwarderConfig, PacketIn};
use rtp_core::nack::{HistoryConfig, PacketHistory, SentEntry, SeqMap};
use rtp_core::pacer::{Pacer, PacerConfig, PacketClass};
use rtp_core::srtp::{derive_session_keys, ProtectionProfile};
use rtp_core::RtpView;
use serde_json::{json, Value};

use crate::measure::{self, keep, Budget};
use crate::sample::{self, TAG_ROOM, TWCC_EXT_ID};

/// One line of the report.
#[derive(Debug, Clone)]
pub struct Entry {
    pub name: String,
    pub ns_per_op: f64,
    /// For SRTP protect: the bare crypto library cost on the same buffer, same run.
    pub raw_crypto_ns_per_op: Option<f64>,
}

impl Entry {
    fn plain(name: impl Into<String>, ns: f64) -> Self {
        Self {
            name: name.into(),
            ns_per_op: ns,
            raw_crypto_ns_per_op: None,
        }
    }

    /// ours / raw crypto, when a raw figure exists.
    pub fn ratio_to_raw_crypto(&self) -> Option<f64> {
        self.raw_crypto_ns_per_op.map(|raw| self.ns_per_op / raw)
    }

    pub fn to_json(&self) -> Value {
        let mut v = json!({ "name": self.name, "ns_per_op": round2(self.ns_per_op) });
        if let Some(raw) = self.raw_crypto_ns_per_op {
            v["raw_crypto_ns_per_op"] = json!(round2(raw));
            v["ratio_to_raw_crypto"] = json!(round3(self.ns_per_op / raw));
        }
        v
    }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}
fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Packet sizes measured: a small audio-like and a full video-like packet.
pub const SIZES: [usize; 2] = [100, 1200];
/// Profiles measured.
pub const PROFILES: [ProtectionProfile; 4] = [
    ProtectionProfile::AeadAes128Gcm,
    ProtectionProfile::AeadAes256Gcm,
    ProtectionProfile::Aes128CmHmacSha1_80,
    ProtectionProfile::Aes128CmHmacSha1_32,
];

/// Run every micro case.
pub fn run(budget: Budget) -> Vec<Entry> {
    let mut out = vec![rtp_parse(budget)];
    for profile in PROFILES {
        for size in SIZES {
            out.push(srtp_protect(budget, profile, size));
            out.push(srtp_unprotect(budget, profile, size));
        }
    }
    out.push(forward_rewrite_protect(budget));
    out.extend(nack_cache(budget));
    out.push(pacer(budget));
    out
}

fn rtp_parse(budget: Budget) -> Entry {
    let mut buf = [0u8; 1500];
    sample::rtp_packet(&mut buf, 1200, 1, 90_000);
    let pkt = &buf[..1200];
    let ns = measure::single(budget, || {
        let v = RtpView::parse(keep(pkt)).expect("sample parses");
        keep((v.seq(), v.ts(), v.ssrc(), v.extension(TWCC_EXT_ID)));
    });
    Entry::plain("rtp_parse_1200", ns)
}

/// The bare aws-lc-rs work of protecting one packet, with the sample session keys.
/// (Keys inline, as in rtp-core's own transform, so neither side pays an extra indirection.)
#[allow(clippy::large_enum_variant)]
enum RawCrypto {
    Gcm(LessSafeKey),
    Cm {
        ctr: EncryptingKey,
        auth: hmac::Key,
        tag_len: usize,
    },
}

impl RawCrypto {
    fn new(profile: ProtectionProfile) -> Self {
        let (key, salt) = sample::master(profile);
        let keys = derive_session_keys(profile, &key, &salt).expect("sample keys fit");
        let k = &keys.rtp;
        match profile {
            ProtectionProfile::AeadAes128Gcm | ProtectionProfile::AeadAes256Gcm => {
                let alg = if k.enc_key.len() == 16 {
                    &AES_128_GCM
                } else {
                    &AES_256_GCM
                };
                RawCrypto::Gcm(LessSafeKey::new(
                    UnboundKey::new(alg, &k.enc_key).expect("key length"),
                ))
            }
            ProtectionProfile::Aes128CmHmacSha1_80 | ProtectionProfile::Aes128CmHmacSha1_32 => {
                RawCrypto::Cm {
                    ctr: EncryptingKey::ctr(
                        UnboundCipherKey::new(&AES_128, &k.enc_key).expect("key length"),
                    )
                    .expect("ctr key"),
                    auth: hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, &k.auth_key),
                    tag_len: profile.rtp_tag_len(),
                }
            }
        }
    }

    /// Encrypt `buf[header..len]` and write the tag after it, as SRTP must; returns the new length.
    fn protect(&self, buf: &mut [u8], header: usize, len: usize) -> usize {
        match self {
            RawCrypto::Gcm(key) => {
                let (aad, rest) = buf.split_at_mut(header);
                let tag = key
                    .seal_in_place_separate_tag(
                        Nonce::assume_unique_for_key([7u8; 12]),
                        Aad::from(&*aad),
                        &mut rest[..len - header],
                    )
                    .expect("seal");
                buf[len..len + 16].copy_from_slice(tag.as_ref());
                len + 16
            }
            RawCrypto::Cm { ctr, auth, tag_len } => {
                ctr.less_safe_encrypt(
                    &mut buf[header..len],
                    EncryptionContext::Iv128(FixedLength::from([7u8; 16])),
                )
                .expect("ctr");
                let mut ctx = hmac::Context::with_key(auth);
                ctx.update(&buf[..len]);
                ctx.update(&[0, 0, 0, 0]); // the ROC
                let tag = ctx.sign();
                buf[len..len + tag_len].copy_from_slice(&tag.as_ref()[..*tag_len]);
                len + tag_len
            }
        }
    }
}

fn srtp_protect(budget: Budget, profile: ProtectionProfile, size: usize) -> Entry {
    let mut ours_buf = vec![0u8; size + TAG_ROOM];
    let mut raw_buf = vec![0u8; size + TAG_ROOM];
    let header = sample::rtp_packet(&mut ours_buf, size, 0, 0);
    sample::rtp_packet(&mut raw_buf, size, 0, 0);
    let mut ctx = sample::context(profile);
    let raw = RawCrypto::new(profile);
    let (mut seq_a, mut seq_b) = (0u16, 0u16);
    // Both sides write a fresh sequence number per packet, as a sender does.
    let (ours, raw_ns) = measure::paired(
        budget,
        || {
            seq_a = seq_a.wrapping_add(1);
            ours_buf[2..4].copy_from_slice(&seq_a.to_be_bytes());
            keep(ctx.protect_rtp(&mut ours_buf, size).expect("protect"));
        },
        || {
            seq_b = seq_b.wrapping_add(1);
            raw_buf[2..4].copy_from_slice(&seq_b.to_be_bytes());
            keep(raw.protect(&mut raw_buf, header, size));
        },
    );
    Entry {
        name: format!("srtp_protect_{}_{size}", sample::profile_name(profile)),
        ns_per_op: ours,
        raw_crypto_ns_per_op: Some(raw_ns),
    }
}

/// Unprotect needs a fresh packet every time (the replay window rejects repeats), so packets are
/// protected in untimed batches and unprotected in timed ones; the figure is the median batch.
fn srtp_unprotect(budget: Budget, profile: ProtectionProfile, size: usize) -> Entry {
    const BATCH: usize = 1024;
    let stride = size + TAG_ROOM;
    let mut sender = sample::context(profile);
    let mut receiver = sample::context(profile);
    let mut batch = vec![0u8; BATCH * stride];
    let mut lens = [0usize; BATCH];
    let mut work = vec![0u8; stride];
    let mut seq = 0u16;
    let rounds = budget.rounds.max(1) * (budget.ops_per_round as usize / BATCH).max(1);
    let mut samples = Vec::with_capacity(rounds);
    for round in 0..rounds + 2 {
        for (i, slot) in batch.chunks_exact_mut(stride).enumerate() {
            seq = seq.wrapping_add(1);
            sample::rtp_packet(slot, size, seq, u32::from(seq) * 3000);
            lens[i] = sender.protect_rtp(slot, size).expect("protect");
        }
        let start = Instant::now();
        for (i, slot) in batch.chunks_exact(stride).enumerate() {
            work[..lens[i]].copy_from_slice(&slot[..lens[i]]);
            keep(
                receiver
                    .unprotect_rtp(&mut work[..lens[i]])
                    .expect("unprotect"),
            );
        }
        let ns = start.elapsed().as_nanos() as f64 / BATCH as f64;
        if round >= 2 {
            samples.push(ns); // the first two batches warm up
        }
    }
    samples.sort_by(f64::total_cmp);
    Entry::plain(
        format!("srtp_unprotect_{}_{size}", sample::profile_name(profile)),
        samples[samples.len() / 2],
    )
}

/// One subscriber's share of a forwarded packet: decision, copy + rewrite into its send buffer,
/// sequence-map record, SRTP protect (AES-128-GCM) — 1,200-byte VP8 packets.
fn forward_rewrite_protect(budget: Budget) -> Entry {
    let t0 = Instant::now();
    let mut src = [0u8; 1500];
    sample::vp8_packet(&mut src, 1200, 0, 0);
    let mut out = [0u8; 1500];
    let mut forwarder = Forwarder::new(ForwarderConfig::video(0x5eed_0002, Codec::Vp8));
    let mut seqmap = SeqMap::new(1024);
    let mut ctx = sample::context(ProtectionProfile::AeadAes128Gcm);
    let mut ext = 65_536u64;
    let ns = measure::single(budget, || {
        ext += 1;
        src[2..4].copy_from_slice(&(ext as u16).to_be_bytes());
        src[4..8].copy_from_slice(&((ext as u32).wrapping_mul(3000)).to_be_bytes());
        let view = RtpView::parse(&src[..1200]).expect("sample parses");
        let Decision::Forward(rw) = forwarder.decide(t0, &PacketIn::from_rtp(0, ext, &view)) else {
            panic!("a keyframe stream is forwarded");
        };
        let n = apply_rewrite(&view, &rw, &mut out).expect("room for the copy");
        seqmap.record(
            rw.seq,
            SentEntry {
                src_ext_seq: ext,
                ts_offset: view.ts().wrapping_sub(rw.ts),
                layer: 0,
            },
        );
        keep(ctx.protect_rtp(&mut out, n).expect("protect"));
    });
    Entry::plain("forward_rewrite_protect_aes128gcm_1200", ns)
}

fn nack_cache(budget: Budget) -> Vec<Entry> {
    let t0 = Instant::now();
    let mut history = PacketHistory::new(HistoryConfig {
        capacity: 4096,
        max_age: Duration::from_secs(2),
        max_packet_len: 1500,
    });
    let mut pkt = [0u8; 1500];
    sample::rtp_packet(&mut pkt, 1200, 0, 0);
    let mut ext = 65_536u64;
    let insert = measure::single(budget, || {
        ext += 1;
        keep(history.insert(t0, ext, &pkt[..1200]).is_ok());
    });
    let top = ext;
    let mut i = 0u64;
    let lookup = measure::single(budget, || {
        i = (i + 7) % 4000;
        keep(history.get(t0, top - i).map(|p| p.len()));
    });
    vec![
        Entry::plain("nack_cache_insert_1200", insert),
        Entry::plain("nack_cache_lookup", lookup),
    ]
}

fn pacer(budget: Budget) -> Entry {
    let t0 = Instant::now();
    let mut pacer: Pacer<u32> = Pacer::new(
        PacerConfig {
            initial_rate_bps: 100_000_000_000,
            ..PacerConfig::default()
        },
        t0,
    );
    let mut n = 0u32;
    let mut now = t0;
    let ns = measure::single(budget, || {
        n = n.wrapping_add(1);
        now += Duration::from_micros(1);
        pacer
            .enqueue(now, PacketClass::Video, 1200, n)
            .expect("room in the queue");
        keep(pacer.poll_transmit(now));
    });
    Entry::plain("pacer_enqueue_dequeue", ns)
}

/// The machine, kernel and commit a report came from.
pub fn provenance() -> Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into());
    let commit = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    json!({ "cpu": cpu, "cores": cores, "kernel": kernel, "commit": commit })
}
