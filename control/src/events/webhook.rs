//! Webhook delivery to one receiver URL as a pure state machine: at-least-once,
//! ordered per room, retried with exponential backoff, bounded. Each URL has
//! its own queue (and the daemon its own task per URL), so a dead receiver
//! delays and fills only its own. The HTTP layer does the POSTs: it calls
//! [`WebhookQueue::poll_due`], sends the [`Delivery`], and reports back with
//! [`WebhookQueue::on_result`] (`ok` = 2xx; a timeout or error is `false` —
//! every delivery handed out must be reported, or its room's lane stays
//! blocked).
//!
//! - **Ordering**: one lane per room. A lane has at most one delivery in
//!   flight and only its head is sent, so `seq` n+1 never reaches the URL
//!   before n is acknowledged (or given up on). Up to `max_in_flight` rooms'
//!   deliveries run at once.
//! - **Retries**: after the k-th failure the event waits
//!   `min(initial_backoff · 2^(k-1), max_backoff)` (1 s, 2 s, 4 s … 5 min);
//!   after `max_attempts` it is dropped and counted. No jitter: one node
//!   sends to a handful of URLs, so there is no herd to spread.
//! - **Bound**: at most `max_queued` events wait for this URL. When full,
//!   the OLDEST waiting event is dropped (and counted), not the new one:
//!   recent events describe the current state, and the receiver sees the gap
//!   in `seq` and can re-read the room through the API.
//! - The queue lives in memory: events not yet delivered when the daemon
//!   stops are lost (a restart resumes `seq`, so the receiver sees a gap).

use std::collections::{BTreeMap, HashMap, VecDeque};

use aws_lc_rs::hmac;

use super::envelope::EventEnvelope;
use super::signature::{sign_with, EVENT_ID_HEADER, SIGNATURE_HEADER};

/// Limits and timings (per URL).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookConfig {
    pub max_queued: usize,
    /// Deliveries (of different rooms) out at once.
    pub max_in_flight: usize,
    pub max_attempts: u32,
    pub initial_backoff_ms: u64,
    pub max_backoff_ms: u64,
}

/// One POST to make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// Pass back to [`WebhookQueue::on_result`].
    pub id: u64,
    pub url: String,
    /// JSON of the [`EventEnvelope`].
    pub body: String,
    /// Value of the [`SIGNATURE_HEADER`].
    pub signature: String,
    /// The envelope's `evt_…` id, also sent as [`EVENT_ID_HEADER`].
    pub event_id: String,
    pub room: String,
    pub seq: u64,
    /// 1 for the first try.
    pub attempt: u32,
}

/// Counters for `/metrics` (totals since start).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WebhookStats {
    pub delivered: u64,
    pub failed_attempts: u64,
    pub dropped_overflow: u64,
    pub dropped_exhausted: u64,
}

/// The delivery queue of one URL.
pub struct WebhookQueue {
    config: WebhookConfig,
    url: String,
    key: hmac::Key,
    lanes: BTreeMap<String, Lane>,
    in_flight: HashMap<u64, String>,
    queued: usize,
    next_order: u64,
    next_delivery: u64,
    stats: WebhookStats,
}

#[derive(Default)]
struct Lane {
    pending: VecDeque<Pending>,
    /// The head is out for delivery.
    busy: bool,
}

struct Pending {
    /// Global enqueue order, to find the oldest when full.
    order: u64,
    event_id: String,
    seq: u64,
    body: String,
    failures: u32,
    next_at_ms: u64,
}

impl WebhookQueue {
    /// A queue posting to `url`, signing with `secret` (`control.webhook_secret`).
    pub fn new(config: WebhookConfig, url: String, secret: &[u8]) -> Self {
        WebhookQueue {
            config,
            url,
            key: hmac::Key::new(hmac::HMAC_SHA256, secret),
            lanes: BTreeMap::new(),
            in_flight: HashMap::new(),
            queued: 0,
            next_order: 0,
            next_delivery: 0,
            stats: WebhookStats::default(),
        }
    }

    /// Queues `envelope`, due at once.
    pub fn enqueue(&mut self, envelope: &EventEnvelope, now_ms: u64) {
        let body = serde_json::to_string(envelope).expect("envelopes always serialize");
        if self.queued >= self.config.max_queued && !self.drop_oldest() {
            // Everything queued is in flight: nothing older can go.
            self.stats.dropped_overflow += 1;
            return;
        }
        self.next_order += 1;
        self.lanes
            .entry(envelope.room.clone())
            .or_default()
            .pending
            .push_back(Pending {
                order: self.next_order,
                event_id: envelope.id.clone(),
                seq: envelope.seq,
                body,
                failures: 0,
                next_at_ms: now_ms,
            });
        self.queued += 1;
    }

    /// The URL this queue posts to.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The next delivery due at `now_ms`, if any: the earliest-due lane head
    /// not already in flight, while fewer than `max_in_flight` are out.
    pub fn poll_due(&mut self, now_ms: u64) -> Option<Delivery> {
        if self.in_flight.len() >= self.config.max_in_flight {
            return None;
        }
        let (key, _) = self
            .lanes
            .iter()
            .filter(|(_, lane)| !lane.busy)
            .filter_map(|(k, lane)| lane.pending.front().map(|p| (k, (p.next_at_ms, p.order))))
            .filter(|(_, (at, _))| *at <= now_ms)
            .min_by_key(|(_, due)| *due)?;
        let key = key.clone();
        self.next_delivery += 1;
        let id = self.next_delivery;
        let lane = self.lanes.get_mut(&key).expect("found above");
        lane.busy = true;
        let head = lane.pending.front().expect("found above");
        let delivery = Delivery {
            id,
            url: self.url.clone(),
            signature: sign_with(&self.key, now_ms / 1000, &head.body),
            body: head.body.clone(),
            event_id: head.event_id.clone(),
            room: key.clone(),
            seq: head.seq,
            attempt: head.failures + 1,
        };
        self.in_flight.insert(id, key);
        Some(delivery)
    }

    /// Records how delivery `id` went. Unknown ids (already reported) are
    /// ignored and return `false`.
    pub fn on_result(&mut self, id: u64, ok: bool, now_ms: u64) -> bool {
        let Some(key) = self.in_flight.remove(&id) else {
            return false;
        };
        let lane = self.lanes.get_mut(&key).expect("in-flight lanes are kept");
        lane.busy = false;
        let head = lane.pending.front_mut().expect("in-flight head is kept");
        let done = if ok {
            self.stats.delivered += 1;
            true
        } else {
            self.stats.failed_attempts += 1;
            head.failures += 1;
            if head.failures >= self.config.max_attempts {
                self.stats.dropped_exhausted += 1;
                true
            } else {
                head.next_at_ms = now_ms.saturating_add(backoff_ms(&self.config, head.failures));
                false
            }
        };
        if done {
            lane.pending.pop_front();
            self.queued -= 1;
            if lane.pending.is_empty() {
                self.lanes.remove(&key);
            }
        }
        true
    }

    /// When [`WebhookQueue::poll_due`] next has something (unix millis); `None` while nothing
    /// waits or every delivery slot is taken.
    pub fn poll_timeout(&self) -> Option<u64> {
        if self.in_flight.len() >= self.config.max_in_flight {
            return None;
        }
        self.lanes
            .values()
            .filter(|lane| !lane.busy)
            .filter_map(|lane| lane.pending.front().map(|p| p.next_at_ms))
            .min()
    }

    /// Events waiting or in flight.
    pub fn len(&self) -> usize {
        self.queued
    }

    pub fn is_empty(&self) -> bool {
        self.queued == 0
    }

    pub fn stats(&self) -> WebhookStats {
        self.stats
    }

    /// Drops the oldest event not in flight; `false` if there is none.
    fn drop_oldest(&mut self) -> bool {
        let victim = self
            .lanes
            .iter()
            .filter_map(|(k, lane)| {
                let idx = usize::from(lane.busy);
                lane.pending.get(idx).map(|p| (p.order, k, idx))
            })
            .min_by_key(|(order, _, _)| *order)
            .map(|(_, k, idx)| (k.clone(), idx));
        let Some((key, idx)) = victim else {
            return false;
        };
        let lane = self.lanes.get_mut(&key).expect("found above");
        lane.pending.remove(idx);
        if lane.pending.is_empty() {
            self.lanes.remove(&key);
        }
        self.queued -= 1;
        self.stats.dropped_overflow += 1;
        true
    }
}

/// The wait after `failures` failed attempts.
fn backoff_ms(config: &WebhookConfig, failures: u32) -> u64 {
    let exp = failures.saturating_sub(1).min(32);
    config
        .initial_backoff_ms
        .saturating_mul(1u64 << exp)
        .min(config.max_backoff_ms)
}

impl Delivery {
    /// Headers to send with the body.
    pub fn headers(&self) -> [(&'static str, &str); 3] {
        [
            ("Content-Type", "application/json"),
            (SIGNATURE_HEADER, &self.signature),
            (EVENT_ID_HEADER, &self.event_id),
        ]
    }
}

/// `url` for logs and metric labels: scheme, host, port and path; user info and the query
/// (where a receiver's token may ride) left out.
pub fn redact_url(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let rest = rest.split(['?', '#']).next().unwrap_or("");
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let host = authority.rsplit('@').next().unwrap_or(authority);
    format!("{scheme}://{host}{path}")
}

impl Default for WebhookConfig {
    fn default() -> Self {
        WebhookConfig {
            max_queued: 10_000,
            max_in_flight: 8,
            max_attempts: 12,
            initial_backoff_ms: 1_000,
            max_backoff_ms: 300_000,
        }
    }
}

impl std::fmt::Debug for WebhookQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookQueue")
            .field("url", &redact_url(&self.url))
            .field("queued", &self.queued)
            .field("in_flight", &self.in_flight.len())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacted_urls_keep_no_secrets() {
        assert_eq!(
            redact_url("https://user:pw@hooks.example:8443/in?token=abc#x"),
            "https://hooks.example:8443/in"
        );
        assert_eq!(redact_url("http://127.0.0.1:9"), "http://127.0.0.1:9");
    }
}
