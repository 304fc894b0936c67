//! Replay scenarios (RFC 3711 §3.3.2): protected SRTP/SRTCP streams delivered
//! with duplicates, reordering, stale packets and tampering, for every profile.

use rtp_core::srtp::{ProtectionProfile, SrtpConfig, SrtpContext, SrtpError};

const PROFILES: [ProtectionProfile; 4] = [
    ProtectionProfile::Aes128CmHmacSha1_80,
    ProtectionProfile::Aes128CmHmacSha1_32,
    ProtectionProfile::AeadAes128Gcm,
    ProtectionProfile::AeadAes256Gcm,
];
const SSRC: u32 = 0x1234_5678;

fn pair(profile: ProtectionProfile, window: usize) -> (SrtpContext, SrtpContext) {
    let key: Vec<u8> = (0..profile.master_key_len() as u8).collect();
    let salt: Vec<u8> = (0..profile.master_salt_len() as u8)
        .map(|b| b ^ 0x5a)
        .collect();
    let cfg = SrtpConfig {
        replay_window: window,
        ..SrtpConfig::default()
    };
    (
        SrtpContext::new(profile, &key, &salt, cfg).unwrap(),
        SrtpContext::new(profile, &key, &salt, cfg).unwrap(),
    )
}

/// Protected RTP packets for `count` consecutive sequence numbers from `first`.
fn rtp_stream(tx: &mut SrtpContext, first: u16, count: usize) -> Vec<Vec<u8>> {
    (0..count)
        .map(|i| {
            let seq = first.wrapping_add(i as u16);
            let mut buf = vec![0u8; 12 + 40 + 16];
            buf[0] = 0x80;
            buf[1] = 111;
            buf[2..4].copy_from_slice(&seq.to_be_bytes());
            buf[4..8].copy_from_slice(&(i as u32 * 960).to_be_bytes());
            buf[8..12].copy_from_slice(&SSRC.to_be_bytes());
            buf[12..52].fill(i as u8);
            let n = tx.protect_rtp(&mut buf, 52).unwrap();
            buf.truncate(n);
            buf
        })
        .collect()
}

/// Protected RTCP receiver reports with SRTCP indices 0..count.
fn rtcp_stream(tx: &mut SrtpContext, count: usize) -> Vec<Vec<u8>> {
    (0..count)
        .map(|i| {
            let mut buf = vec![0u8; 8 + 16 + 20];
            buf[..4].copy_from_slice(&[0x80, 201, 0, 5]);
            buf[4..8].copy_from_slice(&SSRC.to_be_bytes());
            buf[8..24].fill(i as u8);
            let n = tx.protect_rtcp(&mut buf, 24).unwrap();
            buf.truncate(n);
            buf
        })
        .collect()
}

/// Deliver packet `i` of `stream` through `f` on a private copy.
fn deliver(
    stream: &[Vec<u8>],
    i: usize,
    f: &mut dyn FnMut(&mut [u8]) -> Result<usize, SrtpError>,
) -> Result<usize, SrtpError> {
    let mut copy = stream[i].clone();
    f(&mut copy)
}

/// The shared scenario for a 128-packet window; `stream` has at least 450 packets.
fn scenario(stream: &[Vec<u8>], f: &mut dyn FnMut(&mut [u8]) -> Result<usize, SrtpError>) {
    for i in 0..=100 {
        assert!(deliver(stream, i, f).is_ok(), "in-order {i}");
    }
    assert_eq!(deliver(stream, 100, f), Err(SrtpError::Replayed));
    assert_eq!(deliver(stream, 37, f), Err(SrtpError::Replayed));
    // Jump ahead, then a late first copy inside the window is accepted once.
    assert!(deliver(stream, 200, f).is_ok());
    assert!(deliver(stream, 150, f).is_ok());
    assert_eq!(deliver(stream, 150, f), Err(SrtpError::Replayed));
    // Reordered first copies.
    for i in [160, 155, 158, 156, 101] {
        assert!(deliver(stream, i, f).is_ok(), "reordered {i}");
    }
    for i in [160, 155, 200] {
        assert_eq!(deliver(stream, i, f), Err(SrtpError::Replayed), "dup {i}");
    }
    // 200 - 128 = 72 is just outside the window; 73 is inside but seen.
    assert_eq!(deliver(stream, 72, f), Err(SrtpError::TooOld));
    assert_eq!(deliver(stream, 10, f), Err(SrtpError::TooOld));
    assert_eq!(deliver(stream, 73, f), Err(SrtpError::Replayed));
    // A tampered packet far ahead fails auth and does not move the window:
    // had the top moved to 400, 199 would be too old.
    let mut forged = stream[400].clone();
    let last = forged.len() - 1;
    forged[last] ^= 0x01;
    assert_eq!(f(&mut forged), Err(SrtpError::AuthFailed));
    let mut forged = stream[201].clone();
    forged[20] ^= 0x80;
    assert_eq!(f(&mut forged), Err(SrtpError::AuthFailed));
    assert!(deliver(stream, 199, f).is_ok());
    // The genuine copy of the tampered packet still gets through.
    assert!(deliver(stream, 201, f).is_ok());
    assert!(deliver(stream, 400, f).is_ok());
    assert_eq!(deliver(stream, 201, f), Err(SrtpError::TooOld));
}

#[test]
fn srtp_replay_scenario() {
    for profile in PROFILES {
        let (mut tx, mut rx) = pair(profile, 128);
        let stream = rtp_stream(&mut tx, 1000, 450);
        scenario(&stream, &mut |b| rx.unprotect_rtp(b));
    }
}

#[test]
fn srtcp_replay_scenario() {
    for profile in PROFILES {
        let (mut tx, mut rx) = pair(profile, 128);
        let stream = rtcp_stream(&mut tx, 450);
        scenario(&stream, &mut |b| rx.unprotect_rtcp(b));
    }
}

#[test]
fn replay_across_the_sequence_wrap() {
    for profile in PROFILES {
        let (mut tx, mut rx) = pair(profile, 128);
        // Seqs 65500..=65535 then 0..=63: ROC goes 0 -> 1 mid-stream.
        let stream = rtp_stream(&mut tx, 65500, 100);
        for i in (0..100).filter(|i| i % 3 != 0) {
            assert!(deliver(&stream, i, &mut |b| rx.unprotect_rtp(b)).is_ok());
        }
        assert_eq!(rx.roc(SSRC), Some(1));
        // Late first copies from both sides of the wrap are accepted...
        for i in [33, 36, 39] {
            assert!(deliver(&stream, i, &mut |b| rx.unprotect_rtp(b)).is_ok());
        }
        // ...and duplicates from both sides are replays.
        for i in [34, 35, 37, 40, 98] {
            assert_eq!(
                deliver(&stream, i, &mut |b| rx.unprotect_rtp(b)),
                Err(SrtpError::Replayed),
                "{profile:?} {i}"
            );
        }
    }
}

#[test]
fn window_sizes_bound_the_accepted_age() {
    for window in [64usize, 128, 1024] {
        let (mut tx, mut rx) = pair(ProtectionProfile::AeadAes128Gcm, window);
        let stream = rtp_stream(&mut tx, 0, window + 10);
        let top = window + 9;
        assert!(deliver(&stream, top, &mut |b| rx.unprotect_rtp(b)).is_ok());
        assert_eq!(
            deliver(&stream, top - window, &mut |b| rx.unprotect_rtp(b)),
            Err(SrtpError::TooOld),
            "window {window}"
        );
        assert!(deliver(&stream, top - (window - 1), &mut |b| rx.unprotect_rtp(b)).is_ok());
        assert_eq!(
            deliver(&stream, top - (window - 1), &mut |b| rx.unprotect_rtp(b)),
            Err(SrtpError::Replayed)
        );
    }
}

#[test]
fn per_packet_paths_do_not_allocate() {
    for profile in PROFILES {
        let (mut tx, mut rx) = pair(profile, 1024);
        let mut buf = [0u8; 1300];
        // allocation-counter counts per thread, so parallel tests do not disturb the count.
        let info = allocation_counter::measure(|| {
            for i in 0..3000u32 {
                let seq = (65000u32 + i) as u16;
                buf[..12].copy_from_slice(&[0x80, 96, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
                buf[2..4].copy_from_slice(&seq.to_be_bytes());
                buf[8..12].copy_from_slice(&(SSRC + i % 4).to_be_bytes());
                let len = 12 + (i as usize * 7) % 1200;
                let n = tx.protect_rtp(&mut buf, len).unwrap();
                assert_eq!(rx.unprotect_rtp(&mut buf[..n]), Ok(len));
                buf[..8].copy_from_slice(&[0x80, 201, 0, 1, 0, 0, 0, 0]);
                buf[4..8].copy_from_slice(&(SSRC + i % 4).to_be_bytes());
                let n = tx.protect_rtcp(&mut buf, 8).unwrap();
                assert_eq!(rx.unprotect_rtcp(&mut buf[..n]), Ok(8));
            }
        });
        assert_eq!(info.count_total, 0, "{profile:?}");
    }
}
