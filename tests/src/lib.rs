//! Cross-crate scenario tests.

pub mod netem;
