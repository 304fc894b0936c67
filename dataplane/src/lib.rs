//! Sluice dataplane (see issue: the dataplane).
//!
//! `unsafe` is confined to [`sys`]; every block there carries a `// SAFETY:` comment.
#![deny(unsafe_op_in_unsafe_fn, clippy::undocumented_unsafe_blocks)]

pub mod pool;
pub mod sys;
