//! Sluice's benchmark harness.
//!
//! - [`cli`]: the `sluice-bench` command line (usage text, options, their parsing).
//! - [`micro`]: the `sluice-bench micro` command — per-operation costs of rtp-core's hot paths,
//!   each SRTP figure beside the bare cost of the same aws-lc-rs call on the same buffer.
//! - [`measure`]: the timing loop shared by the commands (interleaved rounds, medians).
//! - [`limit`]: the machine's ceiling (`sendmmsg` → `recvmmsg` of pre-encrypted packets).
//! - [`fanout`]: the SFU under real-shaped media load; [`gen`] is its load generator.
//! - [`cascade`]: `fanout --cascade`, the fan-out through a trunk between two dataplanes.
//! - [`ramp`]: raises subscribers until loss or latency breaks; [`plot`] draws it as SVG.
//! - [`webrtc_gen`], [`webrtc_rx`], [`webrtc_fanout`]: WebRTC (ICE, DTLS, SRTP) load peers, `--cipher gcm|cm`.
//! - [`janus`]: the Janus VideoRoom peer for `compare --peer janus`; [`compare`] interleaves
//!   the two ramps over several rounds and reports medians and spreads.
//! - [`sfu_stats`]: what the dataplane's workers report about a run (pacer queueing, SFU latency);
//!   [`memory`]: what the SFU process holds (resident memory per subscriber).
//! - [`media`], [`tag`], [`hist`], [`cpu`], [`report`]: media shapes, payload tags, latency
//!   histograms, /proc CPU accounting, report plumbing.
//!
//! Criterion benches for the same paths live in `benches/rtp_core.rs`.
#![forbid(unsafe_code)]

pub mod cascade;
pub mod cli;
pub mod compare;
pub mod cpu;
pub mod fanout;
pub mod gen;
pub mod hist;
pub mod janus;
pub mod limit;
pub mod measure;
pub mod media;
pub mod memory;
pub mod micro;
pub mod plot;
pub mod ramp;
pub mod report;
pub mod sample;
pub mod sfu_stats;
pub mod tag;
pub mod webrtc_fanout;
pub mod webrtc_gen;
pub mod webrtc_rx;
