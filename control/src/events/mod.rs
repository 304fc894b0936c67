//! Room events out of the daemon: the per-room [`EventLog`] (sequence
//! numbers, idempotency ids), the [`WebhookQueue`] of one receiver URL
//! (at-least-once, ordered per room, signed; pure state machine, the HTTP
//! layer posts) and the [`SseHub`] (server-sent events with `Last-Event-ID`
//! replay). All sans-IO, time passed in.
//!
//! The daemon's pipeline (`server/events.rs`): every [`crate::room::RoomEvent`]
//! an operation returns goes through [`EventLog::append`]; its counters are
//! committed to the store; then the envelope goes to every URL's
//! [`WebhookQueue::enqueue`] and to [`SseHub::publish`].

mod envelope;
mod signature;
mod sse;
mod webhook;

pub use envelope::{EventEnvelope, EventLog};
pub use signature::{
    sign_webhook, verify_webhook, SignatureError, EVENT_ID_HEADER, SIGNATURE_HEADER,
};
pub use sse::{format_event, SseConfig, SseError, SseHub, SubscriberId, Subscription};
pub use webhook::{redact_url, Delivery, WebhookConfig, WebhookQueue, WebhookStats};
