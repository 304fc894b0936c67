//! Differential tests against `webrtc-srtp` 0.17 for every profile both
//! implement: our protect output must equal theirs byte for byte, and each
//! side must unprotect the other's output. Sequences start near 65535 so the
//! rollover counter moves from 0 to 1 mid-stream.

use proptest::prelude::*;
use rtp_core::srtp::{ProtectionProfile, SrtpConfig, SrtpContext};
use webrtc_srtp::context::Context;
use webrtc_srtp::protection_profile::ProtectionProfile as TheirProfile;

const PROFILES: [(ProtectionProfile, TheirProfile); 4] = [
    (
        ProtectionProfile::Aes128CmHmacSha1_80,
        TheirProfile::Aes128CmHmacSha1_80,
    ),
    (
        ProtectionProfile::Aes128CmHmacSha1_32,
        TheirProfile::Aes128CmHmacSha1_32,
    ),
    (
        ProtectionProfile::AeadAes128Gcm,
        TheirProfile::AeadAes128Gcm,
    ),
    (
        ProtectionProfile::AeadAes256Gcm,
        TheirProfile::AeadAes256Gcm,
    ),
];

/// One RTP packet's shape; the payload bytes come from `fill`.
#[derive(Debug, Clone)]
struct Shape {
    seq_step: u16,
    payload_len: usize,
    csrcs: usize,
    ext_words: Option<usize>,
    marker: bool,
}

fn shape() -> impl Strategy<Value = Shape> {
    (
        1u16..4,
        prop_oneof![0usize..32, 0usize..1200],
        0usize..3,
        proptest::option::of(0usize..4),
        any::<bool>(),
    )
        .prop_map(|(seq_step, payload_len, csrcs, ext_words, marker)| Shape {
            seq_step,
            payload_len,
            csrcs,
            ext_words,
            marker,
        })
}

fn fill(seed: u32, out: &mut [u8]) {
    let mut x = seed | 1;
    for b in out {
        // xorshift32: cheap deterministic filler.
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        *b = x as u8;
    }
}

fn rtp_packet(s: &Shape, seq: u16, ts: u32, ssrc: u32) -> Vec<u8> {
    let mut p = vec![0x80 | s.csrcs as u8, 96 | if s.marker { 0x80 } else { 0 }];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&ts.to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    for i in 0..s.csrcs {
        p.extend_from_slice(&(0x1000 + i as u32).to_be_bytes());
    }
    if let Some(words) = s.ext_words {
        p[0] |= 0x10;
        // A profile neither one- nor two-byte (RFC 8285), kept as raw data.
        p.extend_from_slice(&[0x12, 0x34]);
        p.extend_from_slice(&(words as u16).to_be_bytes());
        let at = p.len();
        p.resize(at + 4 * words, 0);
        fill(u32::from(seq) ^ 0xabcd, &mut p[at..]);
    }
    let at = p.len();
    p.resize(at + s.payload_len, 0);
    fill(ts ^ u32::from(seq), &mut p[at..]);
    p
}

/// A receiver report with `words` extra 32-bit words of body.
fn rtcp_packet(ssrc: u32, words: usize, seed: u32) -> Vec<u8> {
    let mut p = vec![0x80, 201];
    p.extend_from_slice(&(1 + words as u16).to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.resize(8 + 4 * words, 0);
    fill(seed, &mut p[8..]);
    p
}

fn protect_rtp(ctx: &mut SrtpContext, plain: &[u8]) -> Vec<u8> {
    let mut buf = vec![0u8; plain.len() + 16];
    buf[..plain.len()].copy_from_slice(plain);
    let n = ctx.protect_rtp(&mut buf, plain.len()).unwrap();
    buf.truncate(n);
    buf
}

fn protect_rtcp(ctx: &mut SrtpContext, plain: &[u8]) -> Vec<u8> {
    let mut buf = vec![0u8; plain.len() + 20];
    buf[..plain.len()].copy_from_slice(plain);
    let n = ctx.protect_rtcp(&mut buf, plain.len()).unwrap();
    buf.truncate(n);
    buf
}

fn run_case(key_seed: u32, ssrc: u32, start_seq: u16, ts0: u32, shapes: &[Shape]) {
    for (ours, theirs) in PROFILES {
        let mut key = vec![0u8; ours.master_key_len()];
        let mut salt = vec![0u8; ours.master_salt_len()];
        fill(key_seed, &mut key);
        fill(key_seed.wrapping_add(7), &mut salt);
        let cfg = SrtpConfig::default();
        let mut our_tx = SrtpContext::new(ours, &key, &salt, cfg).unwrap();
        let mut our_rx = SrtpContext::new(ours, &key, &salt, cfg).unwrap();
        let mut their_tx = Context::new(&key, &salt, theirs, None, None).unwrap();
        let mut their_rx = Context::new(&key, &salt, theirs, None, None).unwrap();

        let mut seq = start_seq;
        let mut wrapped = false;
        for (i, s) in shapes.iter().enumerate() {
            // Total advance stays far below 2^16, so a smaller seq means a wrap.
            wrapped |= seq < start_seq;
            let plain = rtp_packet(s, seq, ts0.wrapping_add(960 * i as u32), ssrc);
            let a = protect_rtp(&mut our_tx, &plain);
            let b = their_tx.encrypt_rtp(&plain).unwrap();
            assert_eq!(&a[..], &b[..], "{ours:?} rtp #{i} seq {seq}");
            let back = their_rx.decrypt_rtp(&a).unwrap();
            assert_eq!(&back[..], &plain[..], "{ours:?} theirs unprotect #{i}");
            let mut mine = b.to_vec();
            let n = our_rx.unprotect_rtp(&mut mine).unwrap();
            assert_eq!(&mine[..n], &plain[..], "{ours:?} ours unprotect #{i}");
            seq = seq.wrapping_add(s.seq_step);
        }
        if wrapped {
            assert_eq!(our_tx.roc(ssrc), Some(1));
            assert_eq!(our_rx.roc(ssrc), Some(1));
        }

        // webrtc-srtp numbers SRTCP from 1; RFC 3711 §3.4 says 0. Align ours.
        our_tx.set_srtcp_index(ssrc, 1).unwrap();
        for (i, s) in shapes.iter().enumerate().take(8) {
            let plain = rtcp_packet(ssrc, s.payload_len % 40, key_seed ^ i as u32);
            let a = protect_rtcp(&mut our_tx, &plain);
            let b = their_tx.encrypt_rtcp(&plain).unwrap();
            assert_eq!(&a[..], &b[..], "{ours:?} rtcp #{i}");
            let back = their_rx.decrypt_rtcp(&a).unwrap();
            assert_eq!(&back[..], &plain[..], "{ours:?} theirs rtcp unprotect #{i}");
            let mut mine = b.to_vec();
            let n = our_rx.unprotect_rtcp(&mut mine).unwrap();
            assert_eq!(&mine[..n], &plain[..], "{ours:?} ours rtcp unprotect #{i}");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn matches_webrtc_srtp(
        key_seed in any::<u32>(),
        ssrc in any::<u32>(),
        back in 0u16..24,
        ts0 in any::<u32>(),
        shapes in proptest::collection::vec(shape(), 1..40),
    ) {
        run_case(key_seed, ssrc, u16::MAX - back, ts0, &shapes);
    }

    #[test]
    fn matches_webrtc_srtp_any_start(
        key_seed in any::<u32>(),
        ssrc in any::<u32>(),
        start in any::<u16>(),
        ts0 in any::<u32>(),
        shapes in proptest::collection::vec(shape(), 1..12),
    ) {
        run_case(key_seed, ssrc, start, ts0, &shapes);
    }
}
