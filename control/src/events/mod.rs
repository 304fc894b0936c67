//! Room events out of the daemon: the per-room [`EventLog`] (sequence
//! numbers, idempotency ids), the [`WebhookQueue`] (at-least-once, ordered,
//! signed; pure state machine, the HTTP layer posts) and the [`SseHub`]
//! (server-sent events with `Last-Event-ID` replay).
//!
//! The daemon's loop: every [`crate::room::RoomEvent`] an operation returns
//! goes through [`EventLog::append`], then to [`WebhookQueue::enqueue`] and
//! [`SseHub::publish`].

mod envelope;
mod signature;
mod sse;
mod webhook;

pub use envelope::{EventEnvelope, EventLog};
pub use signature::{
    sign_webhook, verify_webhook, SignatureError, EVENT_ID_HEADER, SIGNATURE_HEADER,
};
pub use sse::{format_event, SseConfig, SseError, SseHub, SubscriberId, Subscription};
pub use webhook::{Delivery, WebhookConfig, WebhookQueue, WebhookStats};
