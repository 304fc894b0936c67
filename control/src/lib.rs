//! Sluice control daemon (see issue: control).
//!
//! Its logic core is synchronous and passes time in, so the HTTP/WebSocket
//! layer can wrap it in a `Mutex` or an actor:
//! - [`auth`]: JWT access tokens and admin tokens.
//! - [`room`]: rooms, participants, tracks, roles and grants.
//! - [`sdp`]: offer/answer.
#![forbid(unsafe_code)]

pub mod auth;
pub mod config;
pub mod link;
pub mod room;
pub mod sdp;
pub mod server;
