//! `sluice-netem`: a user-space UDP impairment relay, for tests and benchmarks on a kernel
//! without `tc netem`.
//!
//! Clients send to the relay's listen address; the relay forwards each datagram to one
//! upstream (the Sluice server) from a socket of its own per client, so the server sees one
//! 5-tuple per client, and sends the replies back to that client. Each direction applies a
//! seeded [`Impairment`] — loss, Gilbert-Elliott bursts, delay, jitter, reorder, duplicate, a
//! token-bucket rate limit — and can be paused at runtime. Used as a library
//! ([`Relay::start`]) or through the `sluice-netem` binary ([`cli`], [`control`]).
//! The model and the flags are documented in `docs/netem.md`.
#![forbid(unsafe_code)]

pub mod cli;
pub mod control;
mod impairment;
mod pool;
mod relay;
mod scheduler;
mod stats;

pub use impairment::{
    Burst, Direction, DropReason, Impairer, Impairment, ImpairmentError, Verdict, BUCKET_BYTES,
};
pub use relay::{Relay, RelayConfig, RelayHandle};
pub use stats::{DirStats, Stats};
