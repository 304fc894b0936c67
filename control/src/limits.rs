//! `[limits]`: the bounds on what a client can make the control daemon hold (docs/security.md
//! "Limits"), and the counters of what they refused (`sluice_refused_total{reason}`).
//! Every key is an integer; `SLUICE_LIMITS_<KEY>` and `--limits-<key>` override the file.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

/// The limits, with their defaults in [`Limits::default`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest WebSocket message (and frame) after `join`: an SDP of 256 KiB written as a JSON
    /// string, with its wrapper.
    pub ws_max_message_bytes: usize,
    /// Largest first message (`join`: a token of 8 KiB and a few short fields).
    pub ws_join_max_bytes: usize,
    /// Messages queued for one WebSocket client; a client that lets it fill is disconnected.
    pub ws_queue: usize,
    /// A write to a WebSocket client that takes longer disconnects it.
    pub ws_send_timeout_ms: u64,
    /// The server pings every joined client this often.
    pub ws_ping_interval_s: u64,
    /// A joined client from which nothing (not even a pong) arrives this long is disconnected.
    pub ws_idle_timeout_s: u64,
    /// `input` events a controller may relay per second (a burst of twice that is allowed).
    pub input_per_s: u32,
    /// A client must send its request headers within this time (also an idle keep-alive).
    pub http_header_timeout_s: u64,
    /// Open TCP connections to the HTTP port, all sources together.
    pub max_connections: usize,
    /// Open TCP connections from one source IP.
    pub max_connections_per_ip: usize,
    /// Largest `/api` request body (read only after the admin token checked out).
    pub api_body_max_bytes: usize,
    /// Largest WHIP/WHEP offer or sidecar request body.
    pub sdp_body_max_bytes: usize,
    /// Open SSE streams (`/api/events`).
    pub max_sse_subscribers: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            ws_max_message_bytes: 320 * 1024,
            ws_join_max_bytes: 16 * 1024,
            ws_queue: 256,
            ws_send_timeout_ms: 10_000,
            ws_ping_interval_s: 15,
            ws_idle_timeout_s: 45,
            input_per_s: 200,
            http_header_timeout_s: 10,
            max_connections: 4096,
            max_connections_per_ip: 256,
            api_body_max_bytes: 64 * 1024,
            sdp_body_max_bytes: 320 * 1024,
            max_sse_subscribers: 256,
        }
    }
}

/// The keys of `[limits]`.
pub const KEYS: &[&str] = &[
    "ws_max_message_bytes",
    "ws_join_max_bytes",
    "ws_queue",
    "ws_send_timeout_ms",
    "ws_ping_interval_s",
    "ws_idle_timeout_s",
    "input_per_s",
    "http_header_timeout_s",
    "max_connections",
    "max_connections_per_ip",
    "api_body_max_bytes",
    "sdp_body_max_bytes",
    "max_sse_subscribers",
];

impl Limits {
    /// Sets `key` to `v` (> 0); the error is the message for the key.
    pub fn set(&mut self, key: &str, v: u64) -> Result<(), String> {
        if v == 0 {
            return Err("must be > 0".into());
        }
        let size = |v: u64| usize::try_from(v).map_err(|_| "too large".to_owned());
        match key {
            "ws_max_message_bytes" => {
                if v < 256 * 1024 {
                    return Err("must be at least 262144 (an SDP of 256 KiB)".into());
                }
                self.ws_max_message_bytes = size(v)?;
            }
            "ws_join_max_bytes" => self.ws_join_max_bytes = size(v)?,
            "ws_queue" => self.ws_queue = size(v)?,
            "ws_send_timeout_ms" => self.ws_send_timeout_ms = v,
            "ws_ping_interval_s" => self.ws_ping_interval_s = v,
            "ws_idle_timeout_s" => self.ws_idle_timeout_s = v,
            "input_per_s" => self.input_per_s = u32::try_from(v).map_err(|_| "too large")?,
            "http_header_timeout_s" => self.http_header_timeout_s = v,
            "max_connections" => self.max_connections = size(v)?,
            "max_connections_per_ip" => self.max_connections_per_ip = size(v)?,
            "api_body_max_bytes" => self.api_body_max_bytes = size(v)?,
            "sdp_body_max_bytes" => self.sdp_body_max_bytes = size(v)?,
            "max_sse_subscribers" => self.max_sse_subscribers = size(v)?,
            _ => return Err("unknown key".into()),
        }
        Ok(())
    }
}

/// Why a request, connection or message was refused (the `reason` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// A WebSocket message over `ws_max_message_bytes`.
    WsMessageTooLarge,
    /// A first message over `ws_join_max_bytes`.
    WsJoinTooLarge,
    /// A client whose queue filled or whose write timed out.
    WsSlowReader,
    /// A joined client silent for `ws_idle_timeout_s`.
    WsIdle,
    /// `input` over `input_per_s`.
    InputRate,
    /// Request headers not complete within `http_header_timeout_s`.
    HttpHeaderTimeout,
    /// `max_connections` reached.
    Connections,
    /// `max_connections_per_ip` reached.
    ConnectionsPerIp,
    /// A body refused before it was read: no valid token.
    Unauthenticated,
    /// A body over `api_body_max_bytes` / `sdp_body_max_bytes`.
    BodyTooLarge,
    /// A WHIP/WHEP resource deleted or patched with someone else's token.
    ForeignResource,
    /// A dev token for an identity already in the room.
    DevIdentityTaken,
    /// A dev-mode request whose `Host` is not a loopback name or the bind address.
    Host,
    /// A dev-mode `/rtc` or `/dev/token` request from another origin.
    Origin,
    /// An identity outside the safe character set.
    Identity,
    /// `max_sse_subscribers` reached.
    SseSubscribers,
    /// A `publish` waiting for its offer dropped because its track went away (finding #7).
    PendingPublishDropped,
    /// A publisher offer using a saved `publish` the room's rules no longer allow (#11).
    PendingPublishRechecked,
    /// A WHEP/WHIP/sidecar `recvonly` section left without media: no `can_subscribe` (#10).
    SubscribeNotGranted,
    /// A dataplane subscription removed at once because `can_subscribe` was revoked (#10).
    SubscriptionRevoked,
    /// A `p2p_signal` whose SDP sends media the sender may not publish (#12).
    P2pForbidden,
    /// A join by an identity kicked within `rooms.kick_ban_s` (#26, D38).
    KickedRejoin,
    /// A one-shot participant removed after its media was dead `rooms.oneshot_grace_s` (#14).
    GhostLeft,
    /// A restored participant removed: no resume within `rooms.resume_grace_s` (#14).
    RestoredExpired,
}

const ALL: [Refusal; 24] = [
    Refusal::WsMessageTooLarge,
    Refusal::WsJoinTooLarge,
    Refusal::WsSlowReader,
    Refusal::WsIdle,
    Refusal::InputRate,
    Refusal::HttpHeaderTimeout,
    Refusal::Connections,
    Refusal::ConnectionsPerIp,
    Refusal::Unauthenticated,
    Refusal::BodyTooLarge,
    Refusal::ForeignResource,
    Refusal::DevIdentityTaken,
    Refusal::Host,
    Refusal::Origin,
    Refusal::Identity,
    Refusal::SseSubscribers,
    Refusal::PendingPublishDropped,
    Refusal::PendingPublishRechecked,
    Refusal::SubscribeNotGranted,
    Refusal::SubscriptionRevoked,
    Refusal::P2pForbidden,
    Refusal::KickedRejoin,
    Refusal::GhostLeft,
    Refusal::RestoredExpired,
];

impl Refusal {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Self::WsMessageTooLarge => "ws_message_too_large",
            Self::WsJoinTooLarge => "ws_join_too_large",
            Self::WsSlowReader => "ws_slow_reader",
            Self::WsIdle => "ws_idle",
            Self::InputRate => "input_rate",
            Self::HttpHeaderTimeout => "http_header_timeout",
            Self::Connections => "connections",
            Self::ConnectionsPerIp => "connections_per_ip",
            Self::Unauthenticated => "unauthenticated",
            Self::BodyTooLarge => "body_too_large",
            Self::ForeignResource => "foreign_resource",
            Self::DevIdentityTaken => "dev_identity_taken",
            Self::Host => "host",
            Self::Origin => "origin",
            Self::Identity => "identity",
            Self::SseSubscribers => "sse_subscribers",
            Self::PendingPublishDropped => "pending_publish_dropped",
            Self::PendingPublishRechecked => "pending_publish_rechecked",
            Self::SubscribeNotGranted => "subscribe_not_granted",
            Self::SubscriptionRevoked => "subscription_revoked",
            Self::P2pForbidden => "p2p_forbidden",
            Self::KickedRejoin => "kicked_rejoin",
            Self::GhostLeft => "ghost_left",
            Self::RestoredExpired => "restored_expired",
        }
    }
}

/// Refusals counted by reason.
#[derive(Debug, Default)]
pub struct Refusals([AtomicU64; ALL.len()]);

impl Refusals {
    pub fn count(&self, r: Refusal) {
        self.add(r, 1);
    }

    /// Counts `n` refusals at once (state removed in bulk: several subscriptions, publishes).
    pub fn add(&self, r: Refusal, n: u64) {
        if n > 0 {
            self.0[r as usize].fetch_add(n, Ordering::Relaxed);
        }
    }

    pub fn get(&self, r: Refusal) -> u64 {
        self.0[r as usize].load(Ordering::Relaxed)
    }

    /// `sluice_refused_total{reason}` in the Prometheus text format.
    pub fn write_metrics(&self, out: &mut String) {
        let _ = writeln!(out, "# HELP sluice_refused_total Requests, connections and messages refused by a limit or a room rule, and stale client state removed (label reason; docs/security.md).\n# TYPE sluice_refused_total counter");
        for r in ALL {
            let _ = writeln!(
                out,
                "sluice_refused_total{{reason=\"{}\"}} {}",
                r.label(),
                self.get(r)
            );
        }
    }
}

/// A token bucket: `rate` per second, bursts of `2 × rate` (per connection, so no map).
#[derive(Debug, Clone)]
pub struct Bucket {
    rate: f64,
    tokens: f64,
    last: std::time::Instant,
}

impl Bucket {
    pub fn new(rate: u32) -> Self {
        let rate = f64::from(rate);
        Self {
            rate,
            tokens: 2.0 * rate,
            last: std::time::Instant::now(),
        }
    }

    /// Takes one token if there is one.
    pub fn take(&mut self, now: std::time::Instant) -> bool {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + dt * self.rate).min(2.0 * self.rate);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_refusal_has_its_own_slot() {
        for (i, r) in ALL.iter().enumerate() {
            assert_eq!(*r as usize, i, "{r:?}");
        }
        let mut l = Limits::default();
        for k in KEYS {
            l.set(k, 300_000).unwrap();
        }
        assert!(l.set("ws_queue", 0).is_err());
        assert!(l.set("ws_max_message_bytes", 1000).is_err());
        assert!(l.set("nope", 1).is_err());
    }

    #[test]
    fn bucket_allows_a_burst_then_the_rate() {
        let t0 = std::time::Instant::now();
        let mut b = Bucket::new(10);
        b.last = t0;
        assert_eq!((0..100).filter(|_| b.take(t0)).count(), 20);
        let t1 = t0 + std::time::Duration::from_millis(500);
        assert_eq!((0..100).filter(|_| b.take(t1)).count(), 5);
    }
}
