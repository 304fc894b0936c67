//! Remote subscriber sessions (issue 16, docs/cluster.md "Cascading", D103–D106): a room's
//! participant whose subscriber PeerConnection lives on another node's dataplane (an *edge*)
//! while its signaling stays in the room's actor on the *home*.
//!
//! Edge side (this node holds sessions for homes):
//! - `POST /internal/cascade/sessions {home, spec}`: creates the WebRTC session `spec` (ids
//!   the home's, D105) → `{shard, candidates, fingerprint, http_ip}`: what the home's offer
//!   carries instead of its own dataplane's.
//! - `POST /internal/cascade/sessions/op`: `{op: "command", home, command}` (close, set
//!   remote, ICE restart, stats, unsubscribe, temporal cap of a session the home owns);
//!   `{op: "subscribe", home, subscribe, track, relay}` (the home opened `relay` for `track`:
//!   ingest it, subscribe to it); `{op: "layer", home, subscription, track, relay}` (move a
//!   subscription to another layer's relay, the old one released: layers on demand).
//! - The dataplane's notifications about these sessions are not applied here: they go to the
//!   home (`POST /internal/cascade/events`, batched, through a bounded queue; dropped ones are
//!   counted) and the home applies them as its own (`remote_events.rs`).
//! - A home that leaves the registry (lease expired) or restarts: its sessions here close.
//!
//! Home side: the room's actor drives these through `media/node.rs`; the events endpoint
//! accepts notifications only for sessions this node placed on the sending edge. Choosing and
//! counting edges, and the calls to them, are in `remote_home.rs`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sluice_proto::{
    Candidate, Command, CreateSession, Notification, ReplyOk, SessionId, Subscribe, SubscriptionId,
    TransportMode,
};
use tokio::sync::mpsc;

use super::http::{name, parse};
use super::{unavailable, RelaySpec, TrackRef};
use crate::cluster::NodeInfo;
use crate::lock::Locked;
use crate::server::api::{admin, body};
use crate::server::error::ApiError;
use crate::server::App;

/// Remote sessions one node holds for homes, and places on edges, at most (each).
pub(crate) const MAX_REMOTE_SESSIONS: usize = 4096;
/// Subscriptions of one remote session at most (a room caps its tracks well below).
pub(crate) const MAX_REMOTE_SUBS: usize = 512;
/// Notifications waiting to go to their homes at most; more are dropped and counted.
pub(crate) const EVENT_QUEUE: usize = 1024;
/// Placements remembered per edge at most (a burst beyond it counts as this many).
pub(crate) const MAX_RECENT: usize = 1024;
/// How long an edge whose trunk went under our remote sessions is not chosen again.
pub(crate) const AVOID_EDGE: std::time::Duration = std::time::Duration::from_secs(10);
/// Notifications in one `POST /internal/cascade/events` at most.
pub(crate) const EVENT_BATCH: usize = 64;

/// See the module docs.
#[derive(Debug, Default)]
pub(crate) struct Remote {
    /// Edge side: the sessions this dataplane holds for homes.
    held: tokio::sync::Mutex<HashMap<SessionId, Held>>,
    /// Edge side: session → home, read for every dataplane notification.
    pub(super) owners: std::sync::Mutex<HashMap<SessionId, String>>,
    /// Home side: this node's sessions on edges → (edge, its boot when placed).
    pub(crate) placed: std::sync::Mutex<HashMap<SessionId, (String, String)>>,
    /// Home: edges whose trunk went under our sessions' relays, and when: not chosen again for
    /// [`AVOID_EDGE`] (a cut path would make the re-made sessions fail the same way). At most
    /// one entry per peer node (64).
    pub(super) avoid: std::sync::Mutex<HashMap<String, std::time::Instant>>,
    /// Home: sessions placed on each edge lately, not yet in the load that edge publishes
    /// (D111). At most one entry per peer node (64), each at most [`MAX_RECENT`] instants.
    pub(super) recent: std::sync::Mutex<HashMap<String, Vec<std::time::Instant>>>,
    pub(super) queue: OnceLock<mpsc::Sender<(String, Notification)>>,
    pub(crate) metrics: RemoteMetrics,
}

#[derive(Debug, Default)]
pub(crate) struct RemoteMetrics {
    pub(crate) placed_capacity: AtomicU64,
    pub(crate) placed_region: AtomicU64,
    pub(crate) events_forwarded: AtomicU64,
    pub(crate) events_dropped: AtomicU64,
    pub(crate) events_applied: AtomicU64,
    pub(crate) events_refused: AtomicU64,
    pub(crate) remade: AtomicU64,
    pub(crate) limit_refusals: AtomicU64,
    /// Remote subscriptions moved below their layer for a shed relay, and back.
    pub(crate) shed_down: AtomicU64,
    pub(crate) shed_up: AtomicU64,
}

/// A session this edge holds for a home.
#[derive(Debug)]
struct Held {
    home: String,
    home_boot: String,
    subs: HashMap<SubscriptionId, HeldSub>,
}

#[derive(Debug, Clone)]
struct HeldSub {
    /// As sent to this dataplane (its `track` is the ingest's).
    spec: Subscribe,
    track: TrackRef,
}

/// What the edge answers a session creation with.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Created {
    pub(crate) shard: u16,
    pub(crate) candidates: Vec<Candidate>,
    /// The edge dataplane's DTLS fingerprint (`"<hash> <hex>"`).
    pub(crate) fingerprint: String,
    /// The edge's HTTP IP (announced for a wildcard-bound dataplane).
    pub(crate) http_ip: IpAddr,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateReq {
    home: String,
    spec: CreateSession,
}

#[derive(Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum OpReq {
    Command {
        home: String,
        command: Command,
    },
    Subscribe {
        home: String,
        subscribe: Subscribe,
        track: TrackRef,
        relay: RelaySpec,
    },
    Layer {
        home: String,
        subscription: SubscriptionId,
        track: TrackRef,
        relay: RelaySpec,
    },
}

impl Remote {
    /// The participants this node serves media for (D111): those of its rooms (`participants`)
    /// less the ones whose subscriber session it placed on an edge, plus the sessions it holds
    /// for other homes — what `cluster.capacity` is held against and what the registry shows.
    pub(crate) fn media_load(&self, participants: u64) -> u64 {
        let placed = self.placed.locked().len() as u64;
        let held = self.owners.locked().len() as u64;
        participants.saturating_sub(placed) + held
    }

    /// `Ok` when a table of `len` entries has room under `max`; else `too_large` naming
    /// `field`, counted.
    pub(super) fn admit(
        &self,
        len: usize,
        max: usize,
        what: &str,
        field: &str,
    ) -> Result<(), ApiError> {
        if len < max {
            return Ok(());
        }
        self.metrics.limit_refusals.fetch_add(1, Ordering::Relaxed);
        Err(ApiError::new("too_large", format!("{what} limit ({max}) reached")).with_field(field))
    }
}

/// `POST /internal/cascade/sessions` (edge).
pub(super) async fn create(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    json: Result<Json<Value>, JsonRejection>,
) -> Result<Response, ApiError> {
    admin(&app, &headers)?;
    let r: CreateReq = parse(body(json)?)?;
    name("home", &r.home)?;
    if !matches!(r.spec.mode, TransportMode::Webrtc {}) || r.spec.data.is_some() {
        return Err(ApiError::invalid("spec", "only a WebRTC media session"));
    }
    let (home, _) = app.peer(&r.home).await?;
    let fingerprint = app
        .link
        .as_ref()
        .and_then(|l| l.current())
        .and_then(|c| c.hello.fingerprint.clone())
        .ok_or_else(|| unavailable("dataplane unavailable or without a DTLS fingerprint"))?;
    let remote = &app.cascade.remote;
    let mut held = remote.held.lock().await;
    remote.admit(held.len(), MAX_REMOTE_SESSIONS, "remote session", "spec")?;
    let session = r.spec.session;
    if held.contains_key(&session) {
        return Err(ApiError::rejected("session exists").with_field("spec"));
    }
    let (shard, candidates) = app.dp_create_session(r.spec).await?;
    held.insert(
        session,
        Held {
            home: home.id.clone(),
            home_boot: home.boot.clone(),
            subs: HashMap::new(),
        },
    );
    remote.owners.locked().insert(session, home.id.clone());
    drop(held);
    tracing::info!(%session, home = %home.id, "cascade: remote subscriber session created");
    let out = Created {
        shard,
        candidates,
        fingerprint,
        http_ip: app.http_ip,
    };
    Ok((StatusCode::CREATED, Json(out)).into_response())
}

/// `POST /internal/cascade/sessions/op` (edge).
pub(super) async fn op(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    json: Result<Json<Value>, JsonRejection>,
) -> Result<Json<ReplyOk>, ApiError> {
    admin(&app, &headers)?;
    match parse::<OpReq>(body(json)?)? {
        OpReq::Command { home, command } => app.remote_command(&home, command).await.map(Json),
        OpReq::Subscribe {
            home,
            subscribe,
            track,
            relay,
        } => app
            .remote_subscribe(&home, subscribe, track, relay)
            .await
            .map(Json),
        OpReq::Layer {
            home,
            subscription,
            track,
            relay,
        } => app
            .remote_layer(&home, subscription, track, relay)
            .await
            .map(Json),
    }
}

impl App {
    /// Edge: a command of `home` for one of its sessions here.
    async fn remote_command(
        self: &Arc<Self>,
        home: &str,
        command: Command,
    ) -> Result<ReplyOk, ApiError> {
        let mut held = self.cascade.remote.held.lock().await;
        let owned = |held: &HashMap<SessionId, Held>, s: &SessionId| {
            held.get(s)
                .filter(|h| h.home == home)
                .ok_or_else(|| ApiError::not_found("no such remote session").with_field("session"))
                .map(drop)
        };
        let sub_of = |held: &mut HashMap<SessionId, Held>, id: SubscriptionId| {
            held.values_mut()
                .filter(|h| h.home == home)
                .find_map(|h| h.subs.remove(&id))
                .ok_or_else(|| {
                    ApiError::not_found("no such remote subscription").with_field("subscription")
                })
        };
        match command {
            Command::CloseSession { session } => {
                owned(&held, &session)?;
                drop(held);
                let out = self.dp(Command::CloseSession { session }).await;
                self.forget_held(session).await;
                out
            }
            Command::SetRemote { session, .. }
            | Command::IceRestart { session, .. }
            | Command::SessionStats { session } => {
                owned(&held, &session)?;
                drop(held);
                self.dp(command).await
            }
            Command::Unsubscribe { subscription } => {
                let sub = sub_of(&mut held, subscription)?;
                drop(held);
                let out = self.dp(Command::Unsubscribe { subscription }).await;
                self.release_ingest(home, &sub.track).await;
                out
            }
            Command::SetLayerCap {
                subscription,
                max_temporal,
                ..
            } => {
                let known = held
                    .values()
                    .any(|h| h.home == home && h.subs.contains_key(&subscription));
                drop(held);
                if !known {
                    return Err(ApiError::not_found("no such remote subscription")
                        .with_field("subscription"));
                }
                // The ingest carries one layer: only the temporal cap applies here.
                self.dp(Command::SetLayerCap {
                    subscription,
                    max_spatial: 0,
                    max_temporal,
                })
                .await
            }
            _ => Err(ApiError::invalid(
                "command",
                "not a command for a remote session",
            )),
        }
    }

    /// Edge: subscribe a remote session to `track`, whose relay the home opened (`relay`).
    async fn remote_subscribe(
        self: &Arc<Self>,
        home: &str,
        mut spec: Subscribe,
        track: TrackRef,
        relay: RelaySpec,
    ) -> Result<ReplyOk, ApiError> {
        super::http::check_track(&track)?;
        {
            let held = self.cascade.remote.held.lock().await;
            let h = held
                .get(&spec.session)
                .filter(|h| h.home == home)
                .ok_or_else(|| {
                    ApiError::not_found("no such remote session").with_field("session")
                })?;
            let remote = &self.cascade.remote;
            remote.admit(
                h.subs.len(),
                MAX_REMOTE_SUBS,
                "remote subscription",
                "subscription",
            )?;
        }
        spec.track = self.ingest_given(home, &track, &relay).await?;
        if let Err(e) = self.dp(Command::Subscribe(spec.clone())).await {
            self.drop_ingest_user(home, &track).await;
            return Err(e);
        }
        let mut held = self.cascade.remote.held.lock().await;
        match held.get_mut(&spec.session) {
            Some(h) => {
                h.subs.insert(spec.subscription, HeldSub { spec, track });
                Ok(ReplyOk::Done {})
            }
            // Closed meanwhile: the dataplane dropped the subscription with it.
            None => {
                drop(held);
                self.drop_ingest_user(home, &track).await;
                Err(ApiError::not_found("the session closed").with_field("session"))
            }
        }
    }

    /// Edge: move a remote subscription onto `track`'s relay (another layer), releasing the
    /// old one (only the layers the edge's subscribers want cross the trunk).
    async fn remote_layer(
        self: &Arc<Self>,
        home: &str,
        subscription: SubscriptionId,
        track: TrackRef,
        relay: RelaySpec,
    ) -> Result<ReplyOk, ApiError> {
        super::http::check_track(&track)?;
        let old = {
            let held = self.cascade.remote.held.lock().await;
            held.values()
                .filter(|h| h.home == home)
                .find_map(|h| h.subs.get(&subscription).cloned())
                .ok_or_else(|| {
                    ApiError::not_found("no such remote subscription").with_field("subscription")
                })?
        };
        let ingest = self.ingest_given(home, &track, &relay).await?;
        let mut spec = old.spec.clone();
        spec.track = ingest;
        let _ = self.dp(Command::Unsubscribe { subscription }).await;
        let made = self.dp(Command::Subscribe(spec.clone())).await;
        let mut held = self.cascade.remote.held.lock().await;
        let h = held
            .values_mut()
            .find(|h| h.subs.contains_key(&subscription));
        match (made, h) {
            (Ok(_), Some(h)) => {
                h.subs.insert(subscription, HeldSub { spec, track });
                drop(held);
                self.release_ingest(home, &old.track).await;
                tracing::info!(%subscription, layer = old.track.layer, to = ?relay.ssrc, "cascade: remote subscription moved layers");
                Ok(ReplyOk::Done {})
            }
            (made, h) => {
                if let Some(h) = h {
                    h.subs.remove(&subscription);
                }
                drop(held);
                self.drop_ingest_user(home, &track).await;
                self.release_ingest(home, &old.track).await;
                made.and(Err(
                    ApiError::not_found("the session closed").with_field("session")
                ))
            }
        }
    }

    /// Edge: a session held for a home is gone: its subscriptions' ingests are released.
    pub(super) async fn forget_held(self: &Arc<Self>, session: SessionId) {
        self.cascade.remote.owners.locked().remove(&session);
        let gone = self.cascade.remote.held.lock().await.remove(&session);
        if let Some(h) = gone {
            for sub in h.subs.into_values() {
                self.release_ingest(&h.home, &sub.track).await;
            }
        }
    }

    /// Edge sessions held for homes (the resync keeps them).
    pub(crate) async fn held_sessions(&self) -> Vec<SessionId> {
        self.cascade
            .remote
            .held
            .lock()
            .await
            .keys()
            .copied()
            .collect()
    }

    /// Both sides, from the janitor: on the edge, sessions of homes that left the registry or
    /// restarted close; on the home, sessions on such edges are made again (`media/node.rs`).
    pub(crate) async fn remote_janitor(self: &Arc<Self>, nodes: &[NodeInfo]) {
        let live = |id: &str, boot: &str| nodes.iter().any(|n| n.id == id && n.boot == boot);
        let orphaned: Vec<SessionId> = self
            .cascade
            .remote
            .held
            .lock()
            .await
            .iter()
            .filter(|(_, h)| !live(&h.home, &h.home_boot))
            .map(|(s, _)| *s)
            .collect();
        for session in orphaned {
            tracing::info!(%session, "cascade: the home of a remote session is gone: closed");
            let _ = self.dp(Command::CloseSession { session }).await;
            self.forget_held(session).await;
        }
        let lost: Vec<SessionId> = self
            .cascade
            .remote
            .placed
            .locked()
            .iter()
            .filter(|(_, (edge, boot))| !live(edge, boot))
            .map(|(s, _)| *s)
            .collect();
        for session in lost {
            self.remake_subscriber(session).await;
        }
    }

    /// Whether the janitor has remote sessions to watch.
    pub(crate) async fn has_remote_sessions(&self) -> bool {
        !self.cascade.remote.placed.locked().is_empty()
            || !self.cascade.remote.held.lock().await.is_empty()
    }
}

#[cfg(test)]
#[path = "remote_tests.rs"]
mod tests;
