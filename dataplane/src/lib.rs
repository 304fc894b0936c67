//! Sluice dataplane: the thread-per-core forwarder.
//!
//! - [`config`]: the `[dataplane]` configuration (file, env, flags; errors name the key).
//! - `proto`: the control-socket protocol, which lives in the `sluice-proto` crate (shared with
//!   the control daemon and the bench); re-exported under this name for the crate's own use.
//! - [`pool`]: each worker's fixed slab of packet buffers.
//! - [`shard`]: the pinned per-core workers, their session tables and the cross-shard mesh.
//! - [`control`]: the control thread serving the control socket.
//! - [`runtime`]: `Dataplane::start` / `DataplaneHandle::stop`.
//! - [`testpeer`]: a blocking WebRTC / plain-RTP client for tests and the load generator.
//! - [`sys`]: everything that touches the kernel — io_uring and plain-socket UDP backends,
//!   capability probe, CPU pinning, the cross-thread waker.
//!
//! `unsafe` is confined to [`sys`]; every block there carries a `// SAFETY:` comment.
#![deny(unsafe_op_in_unsafe_fn, clippy::undocumented_unsafe_blocks)]

pub mod config;
pub mod control;
pub mod pool;
pub mod runtime;
pub mod shard;
pub mod sys;
pub mod testpeer;

pub(crate) use sluice_proto as proto;
