//! Sluice control daemon (see issue: control).
//!
//! Its logic core is synchronous and passes time in; the server runs it in one actor per room:
//! - [`auth`] — JWT access tokens and admin tokens.
//! - [`room`] — rooms, participants, tracks, roles and grants.
//! - [`events`] — event log, webhook queue, SSE hub.
//! - [`sdp`] — offer/answer.
//! - [`signal`] — the typed signaling messages of `/rtc`.
//! - [`store`] — the state file that survives a restart.
//! - [`config`] — the `[control]` configuration.
//! - [`hybrid`] — the P2P/SFU topology policy and TURN credentials.
//! - [`limits`] — the `[limits]` on what clients can make the daemon hold, and refusal counts.
//! - [`link`] — the async control-socket client to the dataplane.
//! - [`server`] — HTTP API, WebSocket signaling, WHIP/WHEP, metrics.
#![forbid(unsafe_code)]

pub mod auth;
pub mod cluster;
pub mod config;
pub mod events;
pub mod hybrid;
pub mod limits;
pub mod link;
mod lock;
pub mod room;
pub mod sdp;
pub mod server;
pub mod signal;
pub mod store;
