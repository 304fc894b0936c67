//! Shared scenario-test tooling: a deterministic in-memory network
//! ([`Netem`]) and small packet builders. Include with `mod common;`.
//! Each test binary uses a different subset, hence the dead-code allowance.
#![allow(dead_code, unused_imports)]

pub mod netem;

pub use netem::{Netem, NetemConfig, NetemStats, DUPLICATE_GAP, REORDER_EXTRA};

use std::time::Instant;

/// A base instant for a scenario; everything after it is advanced by hand.
#[allow(clippy::disallowed_methods)] // the one clock read a test needs
pub fn t0() -> Instant {
    Instant::now()
}

/// A minimal RTP packet (no CSRC, no extension, no padding) whose payload is
/// `payload_len` bytes, each the low byte of `seq` (handy for checking that
/// a recovered packet is the right one).
pub fn rtp_packet(seq: u16, ts: u32, ssrc: u32, pt: u8, payload_len: usize) -> Vec<u8> {
    let mut p = Vec::with_capacity(12 + payload_len);
    p.push(0x80);
    p.push(pt & 0x7f);
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&ts.to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.resize(12 + payload_len, seq as u8);
    p
}
