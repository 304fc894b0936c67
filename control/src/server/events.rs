//! The event pipeline: every room event of the node goes through here, once. [`EventLog`]
//! numbers it (per-room `seq`, node-wide `n`, an `evt_` id), then [`SseHub`] (bounded
//! backlogs, `Last-Event-ID` replay, lagging subscribers closed) and every webhook lane get
//! the same envelope. WebSocket clients get their own, protocol-shaped messages from the room
//! logic; this is the operator-facing stream (docs/api.md "Events").
//!
//! Events of one room reach SSE and webhooks in `seq` order: numbering and publishing happen
//! under one lock, in the order the room produced them.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use futures_util::Stream;
use serde_json::{json, Value};
use tokio::sync::Notify;

use super::webhooks::Webhooks;
use crate::events::{
    format_event, EventEnvelope, EventLog, SseConfig, SseError, SseHub, SubscriberId,
};
use crate::room::RoomEvent;

/// A quiet SSE stream gets a comment this often.
const KEEP_ALIVE: std::time::Duration = std::time::Duration::from_secs(15);

/// See the module docs.
#[derive(Debug)]
pub(crate) struct Events {
    log: Mutex<EventLog>,
    sse: Mutex<Sse>,
    webhooks: Webhooks,
}

#[derive(Debug)]
struct Sse {
    hub: SseHub,
    /// Wakes each subscriber's stream when its buffer gets something.
    wakers: HashMap<SubscriberId, Arc<Notify>>,
}

impl Events {
    pub(crate) fn new(log: EventLog, sse: SseConfig, webhooks: Webhooks) -> Self {
        Self {
            log: Mutex::new(log),
            sse: Mutex::new(Sse {
                hub: SseHub::new(sse),
                wakers: HashMap::new(),
            }),
            webhooks,
        }
    }

    /// Numbers and publishes the events one room operation produced.
    pub(crate) fn emit_room(&self, events: &[RoomEvent], at_ms: u64) {
        if events.is_empty() {
            return;
        }
        let mut log = self.log.lock().expect("event log lock");
        let envelopes: Vec<EventEnvelope> = events.iter().map(|e| log.append(e, at_ms)).collect();
        self.publish(&envelopes, at_ms);
    }

    /// Numbers and publishes one event that is not a [`RoomEvent`] (hybrid migrations).
    pub(crate) fn emit(&self, room: &str, kind: &str, payload: Value, at_ms: u64) {
        let mut log = self.log.lock().expect("event log lock");
        let envelope = log.append_named(room, kind, payload, at_ms);
        self.publish(std::slice::from_ref(&envelope), at_ms);
    }

    /// To SSE (one batch under one lock: a burst larger than a subscriber's buffer lags it)
    /// and to every webhook lane. Called with the log locked, so per-room order holds.
    fn publish(&self, envelopes: &[EventEnvelope], at_ms: u64) {
        {
            let mut sse = self.sse.lock().expect("sse lock");
            for e in envelopes {
                sse.hub.publish(e);
            }
            for w in sse.wakers.values() {
                w.notify_one();
            }
        }
        for e in envelopes {
            self.webhooks.enqueue(e, at_ms);
        }
    }

    /// An SSE stream of `room` (every room when `None`), resuming after `last_event_id`. It ends
    /// when the subscriber lags (the client reconnects with `Last-Event-ID`); a replay that
    /// cannot reach back far enough starts with `event: gap` naming the missing ids.
    pub(crate) fn subscribe(
        self: &Arc<Self>,
        room: Option<String>,
        last_event_id: Option<&str>,
    ) -> Result<impl Stream<Item = Result<String, Infallible>> + Send + 'static, SseError> {
        let waker = Arc::new(Notify::new());
        let sub = {
            let mut sse = self.sse.lock().expect("sse lock");
            let sub = sse.hub.subscribe(room.as_deref(), last_event_id)?;
            sse.wakers.insert(sub.id, Arc::clone(&waker));
            sub
        };
        let gap = sub.missed.map(|(first, last)| {
            format!(
                "event: gap\ndata: {}\n\n",
                json!({"first": first, "last": last})
            )
        });
        let guard = Unsubscribe {
            events: Arc::clone(self),
            id: sub.id,
        };
        Ok(futures_util::stream::unfold(
            (guard, waker, gap),
            |(guard, waker, gap)| async move {
                if let Some(text) = gap {
                    return Some((Ok(text), (guard, waker, None)));
                }
                loop {
                    let next = {
                        let mut sse = guard.events.sse.lock().expect("sse lock");
                        sse.hub
                            .poll(guard.id)
                            .map(|e| e.map(|e| format_event(sse.hub.event_id(guard.id, &e), &e)))
                    };
                    match next {
                        Ok(Some(text)) => return Some((Ok(text), (guard, waker, None))),
                        Ok(None) => {
                            // A comment now and then keeps proxies from closing a quiet stream.
                            let idle = tokio::time::timeout(KEEP_ALIVE, waker.notified()).await;
                            if idle.is_err() {
                                return Some((Ok(": keep-alive\n\n".into()), (guard, waker, None)));
                            }
                        }
                        Err(e) => {
                            tracing::info!(error = %e, "SSE subscriber closed; it resumes with Last-Event-ID");
                            return None;
                        }
                    }
                }
            },
        ))
    }

    /// Event-stream and webhook metrics.
    pub(crate) fn metrics(&self, out: &mut String) {
        use std::fmt::Write as _;
        let subscribers = self.sse.lock().expect("sse lock").hub.subscriber_count();
        let _ = writeln!(out, "# HELP sluice_sse_subscribers Open event streams.\n# TYPE sluice_sse_subscribers gauge\nsluice_sse_subscribers {subscribers}");
        self.webhooks.metrics(out);
    }
}

/// Removes a subscriber when its stream is dropped (the client went away or lagged).
#[derive(Debug)]
struct Unsubscribe {
    events: Arc<Events>,
    id: SubscriberId,
}

impl Drop for Unsubscribe {
    fn drop(&mut self) {
        if let Ok(mut sse) = self.events.sse.lock() {
            sse.hub.unsubscribe(self.id);
            sse.wakers.remove(&self.id);
        }
    }
}
