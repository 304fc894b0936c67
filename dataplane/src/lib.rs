//! Sluice dataplane: the thread-per-core forwarder.
//!
//! - [`config`]: the `[dataplane]` configuration (file, env, flags; errors name the key).
//! - [`proto`]: the control-socket protocol (frames, messages, client and server helpers).

pub mod config;
pub mod proto;
