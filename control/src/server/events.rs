//! The event pipeline: every room event of the node goes through here, once. [`EventLog`]
//! numbers it (per-room `seq`, node-wide `n`, an `evt_` id), then [`SseHub`] (bounded
//! backlogs, `Last-Event-ID` replay, lagging subscribers closed) and every webhook lane get
//! the same envelope. WebSocket clients get their own, protocol-shaped messages from the room
//! logic; this is the operator-facing stream (docs/api.md "Events").
//!
//! Write-ahead: an event is delivered only after its counters (`seq`, `n`) are durable in the
//! store, so a crash never makes the node hand out a number twice — after a restart the next
//! event of a room is the last delivered `seq` + 1. Numbering happens under one lock and the
//! numbered batches go through one channel to the committing task, so events of one room reach
//! SSE and webhooks in `seq` order; concurrent batches share one store write.

use crate::lock::Locked;
use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use futures_util::Stream;
use serde_json::{json, Value};
use tokio::sync::{mpsc, Notify};

use super::webhooks::Webhooks;
use crate::events::{
    format_event, EventEnvelope, EventLog, SseConfig, SseError, SseHub, SubscriberId,
};
use crate::room::RoomEvent;
use crate::store::{Store, StoreOp, StoredEvent};

/// A quiet SSE stream gets a comment this often.
const KEEP_ALIVE: std::time::Duration = std::time::Duration::from_secs(15);

/// See the module docs.
#[derive(Debug)]
pub(crate) struct Events {
    log: Mutex<EventLog>,
    /// Node-wide number of the last event handed to SSE and webhooks.
    delivered: std::sync::atomic::AtomicU64,
    /// Numbered batches on their way to the store, then out (see the module docs).
    commit: mpsc::UnboundedSender<Vec<EventEnvelope>>,
    sse: Mutex<Sse>,
    webhooks: Webhooks,
    /// `[cluster]`: this node's events to the other nodes (`cluster/events.rs`).
    pub(crate) bus: std::sync::OnceLock<crate::cluster::events::EventBus>,
}

#[derive(Debug)]
struct Sse {
    hub: SseHub,
    /// Wakes each subscriber's stream when its buffer gets something.
    wakers: HashMap<SubscriberId, Arc<Notify>>,
}

impl Events {
    /// The pipeline, continuing `log`'s counters, committing them to `store`; first it delivers
    /// `outbox`, the events a crash left committed and undelivered.
    pub(crate) fn start(
        log: EventLog,
        outbox: Vec<StoredEvent>,
        sse: SseConfig,
        webhooks: Webhooks,
        store: Arc<dyn Store>,
    ) -> Arc<Self> {
        let (commit, rx) = mpsc::unbounded_channel();
        let events = Arc::new(Self {
            delivered: std::sync::atomic::AtomicU64::new(log.last_n()),
            log: Mutex::new(log),
            commit,
            sse: Mutex::new(Sse {
                hub: SseHub::new(sse),
                wakers: HashMap::new(),
            }),
            webhooks,
            bus: std::sync::OnceLock::new(),
        });
        if !outbox.is_empty() {
            tracing::info!(
                events = outbox.len(),
                "delivering events committed before a crash"
            );
            let now = outbox.last().map_or(0, |e| e.event.at_ms);
            let left: Vec<EventEnvelope> = outbox
                .into_iter()
                .map(|e| EventEnvelope { n: e.n, ..e.event })
                .collect();
            events.publish(&left, now);
        }
        tokio::spawn(commit_loop(Arc::clone(&events), rx, store));
        events
    }

    /// Numbers the events one room operation produced and sends them on.
    pub(crate) fn emit_room(&self, events: &[RoomEvent], at_ms: u64) {
        if events.is_empty() {
            return;
        }
        let mut log = self.log.locked();
        let envelopes: Vec<EventEnvelope> = events.iter().map(|e| log.append(e, at_ms)).collect();
        // Sent under the log lock: the channel's order is the numbering order.
        let _ = self.commit.send(envelopes);
    }

    /// Numbers one event that is not a [`RoomEvent`] (hybrid migrations) and sends it on.
    pub(crate) fn emit(&self, room: &str, kind: &str, payload: Value, at_ms: u64) {
        let mut log = self.log.locked();
        let envelope = log.append_named(room, kind, payload, at_ms);
        let _ = self.commit.send(vec![envelope]);
    }

    /// Empties the outbox of what was delivered (a clean stop: nothing to deliver again).
    pub(crate) async fn flush(&self, store: &dyn Store) {
        let n = self.delivered.load(std::sync::atomic::Ordering::Acquire);
        if let Err(e) = store.apply(vec![StoreOp::Delivered(n)]).await {
            tracing::warn!(error = %e, "event outbox not emptied");
        }
    }

    /// To SSE (one batch under one lock: a burst larger than a subscriber's buffer lags it)
    /// and to every webhook lane.
    fn publish(&self, envelopes: &[EventEnvelope], at_ms: u64) {
        {
            let mut sse = self.sse.locked();
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
        if let Some(bus) = self.bus.get() {
            for e in envelopes {
                bus.publish(e);
            }
        }
    }

    /// Another node's event (its room's home produced it): to SSE only — webhooks are the
    /// home's. Renumbered in this node's stream.
    pub(crate) fn publish_remote(&self, mut envelope: EventEnvelope) {
        envelope.n = self.log.locked().next_n();
        let mut sse = self.sse.locked();
        sse.hub.publish(&envelope);
        for w in sse.wakers.values() {
            w.notify_one();
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
            let mut sse = self.sse.locked();
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
                        let mut sse = guard.events.sse.locked();
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
        let subscribers = self.sse.locked().hub.subscriber_count();
        let _ = writeln!(out, "# HELP sluice_sse_subscribers Open event streams.\n# TYPE sluice_sse_subscribers gauge\nsluice_sse_subscribers {subscribers}");
        self.webhooks.metrics(out);
    }
}

/// Commits each batch's counters (with whatever else queued meanwhile: one store write), then
/// publishes the batches in order.
async fn commit_loop(
    events: Arc<Events>,
    mut rx: mpsc::UnboundedReceiver<Vec<EventEnvelope>>,
    store: Arc<dyn Store>,
) {
    // Delivered up to here: leaves the outbox with the next write.
    let mut delivered = 0;
    while let Some(first) = rx.recv().await {
        let mut batches = vec![first];
        while let Ok(more) = rx.try_recv() {
            batches.push(more);
        }
        let mut ops = vec![StoreOp::Delivered(delivered)];
        let mut n = 0;
        for e in batches.iter().flatten() {
            ops.push(if e.kind == "room_deleted" {
                StoreOp::RetireEventSeq {
                    room: e.room.clone(),
                    seq: e.seq,
                }
            } else {
                StoreOp::EventSeq {
                    room: e.room.clone(),
                    seq: e.seq,
                }
            });
            n = n.max(e.n);
        }
        ops.push(StoreOp::EventsUsed(n));
        ops.push(StoreOp::Outbox(
            batches
                .iter()
                .flatten()
                .map(|e| StoredEvent {
                    n: e.n,
                    event: e.clone(),
                })
                .collect(),
        ));
        if let Err(e) = store.apply(ops).await {
            tracing::error!(error = %e, "event counters not persisted; delivering anyway");
        }
        for batch in &batches {
            let at = batch.first().map_or(0, |e| e.at_ms);
            events.publish(batch, at);
        }
        delivered = n;
        events
            .delivered
            .store(n, std::sync::atomic::Ordering::Release);
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
