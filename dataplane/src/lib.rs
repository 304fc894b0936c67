//! Sluice dataplane: the thread-per-core forwarder.
//!
//! - [`config`]: the `[dataplane]` configuration (file, env, flags; errors name the key).

pub mod config;
