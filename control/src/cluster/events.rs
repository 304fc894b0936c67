//! Room events across nodes: each room's events are produced once, by its home (the only
//! node where the room runs), which posts its webhooks and publishes the envelope on
//! `sl:events`; every other node hands what it receives to its SSE subscribers only. So a
//! webhook goes out once per event cluster-wide, and an SSE subscriber on any node sees every
//! room's events with the room's own `seq` and `evt_` id.
//!
//! Pub/sub is at-most-once: a node that was disconnected from Redis misses what was published
//! meanwhile (its SSE subscribers see a `seq` gap for the room; webhooks are unaffected).
//! Bounded: the outgoing queue (drops counted), the incoming message size, malformed
//! messages dropped and counted.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use super::Cluster;
use crate::events::EventEnvelope;

/// The channel.
pub const CHANNEL: &str = "sl:events";
/// Outgoing envelopes waiting for Redis.
pub const QUEUE: usize = 4096;
/// Largest message taken from the channel.
pub const MAX_MESSAGE: usize = 256 * 1024;

#[derive(Debug, Serialize, Deserialize)]
struct Wire {
    node: String,
    event: EventEnvelope,
}

/// Publishes this node's envelopes; see the module docs.
#[derive(Debug, Clone)]
pub struct EventBus {
    tx: mpsc::Sender<EventEnvelope>,
    cluster: Arc<Cluster>,
}

impl EventBus {
    /// Starts the publisher and the subscriber; `deliver` gets every other node's envelope.
    pub fn start(
        cluster: Arc<Cluster>,
        deliver: impl Fn(EventEnvelope) + Send + Sync + 'static,
    ) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(publish(Arc::clone(&cluster), rx));
        tokio::spawn(subscribe(Arc::clone(&cluster), deliver));
        Self { tx, cluster }
    }

    /// Queues an envelope for the other nodes (dropped and counted when the queue is full).
    pub fn publish(&self, event: &EventEnvelope) {
        if self.tx.try_send(event.clone()).is_err() {
            self.cluster
                .metrics
                .events_dropped
                .fetch_add(1, Ordering::Relaxed);
        }
    }
}

async fn publish(cluster: Arc<Cluster>, mut rx: mpsc::Receiver<EventEnvelope>) {
    let mut con = cluster.connection();
    while let Some(event) = rx.recv().await {
        let wire = Wire {
            node: cluster.node_id().to_owned(),
            event,
        };
        let Ok(text) = serde_json::to_string(&wire) else {
            continue;
        };
        let r: Result<i64, _> = redis::cmd("PUBLISH")
            .arg(CHANNEL)
            .arg(text)
            .query_async(&mut con)
            .await;
        match r {
            Ok(_) => cluster
                .metrics
                .events_published
                .fetch_add(1, Ordering::Relaxed),
            Err(e) => {
                let _ = cluster.err(e);
                cluster
                    .metrics
                    .events_dropped
                    .fetch_add(1, Ordering::Relaxed)
            }
        };
    }
}

async fn subscribe(cluster: Arc<Cluster>, deliver: impl Fn(EventEnvelope) + Send + Sync) {
    loop {
        match cluster.pubsub().await {
            Ok(mut ps) => {
                if let Err(e) = ps.subscribe(CHANNEL).await {
                    let _ = cluster.err(e);
                } else {
                    let mut stream = ps.on_message();
                    while let Some(msg) = stream.next().await {
                        let payload = msg.get_payload_bytes();
                        let wire = (payload.len() <= MAX_MESSAGE)
                            .then(|| serde_json::from_slice::<Wire>(payload).ok())
                            .flatten();
                        match wire {
                            Some(w) if w.node == cluster.node_id() => {}
                            Some(w) => {
                                cluster
                                    .metrics
                                    .events_received
                                    .fetch_add(1, Ordering::Relaxed);
                                deliver(w.event);
                            }
                            None => {
                                cluster
                                    .metrics
                                    .events_dropped
                                    .fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                    tracing::warn!("cluster: event subscription ended; resubscribing");
                }
            }
            Err(e) => tracing::debug!(error = %e, "cluster: event subscription"),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
