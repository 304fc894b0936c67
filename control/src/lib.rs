//! Sluice control daemon (see issue: control).
#![forbid(unsafe_code)]

pub mod sdp;
