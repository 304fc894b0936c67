//! Sluice's benchmark harness.
//!
//! - [`micro`]: the `sluice-bench micro` command — per-operation costs of rtp-core's hot paths,
//!   each SRTP figure beside the bare cost of the same aws-lc-rs call on the same buffer.
//! - [`measure`]: the timing loop shared by the commands (interleaved rounds, medians).
//!
//! Criterion benches for the same paths live in `benches/rtp_core.rs`.
#![forbid(unsafe_code)]

pub mod measure;
pub mod micro;
pub mod sample;
