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
//!   counted) and the home applies them as its own.
//! - A home that leaves the registry (lease expired) or restarts: its sessions here close.
//!
//! Home side: the room's actor drives these through `media/node.rs`; the events endpoint
//! accepts notifications only for sessions this node placed on the sending edge.

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
use serde_json::{json, Value};
use sluice_proto::{
    Candidate, Command, CreateSession, Notification, ReplyOk, SessionId, Subscribe, SubscriptionId,
    TransportMode,
};
use tokio::sync::mpsc;

use super::http::{call, name, parse};
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
/// Notifications in one `POST /internal/cascade/events` at most.
pub(crate) const EVENT_BATCH: usize = 64;

/// See the module docs.
#[derive(Debug, Default)]
pub(crate) struct Remote {
    /// Edge side: the sessions this dataplane holds for homes.
    held: tokio::sync::Mutex<HashMap<SessionId, Held>>,
    /// Edge side: session → home, read for every dataplane notification.
    owners: std::sync::Mutex<HashMap<SessionId, String>>,
    /// Home side: this node's sessions on edges → (edge, its boot when placed).
    pub(crate) placed: std::sync::Mutex<HashMap<SessionId, (String, String)>>,
    queue: OnceLock<mpsc::Sender<(String, Notification)>>,
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EventsReq {
    node: String,
    events: Vec<Notification>,
}

impl Remote {
    /// `Ok` when a table of `len` entries has room under `max`; else `too_large` naming
    /// `field`, counted.
    fn admit(&self, len: usize, max: usize, what: &str, field: &str) -> Result<(), ApiError> {
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
    let (shard, candidates) = match app.dp(Command::CreateSession(r.spec)).await? {
        ReplyOk::SessionCreated {
            shard,
            local_candidates,
        } => (shard, local_candidates),
        other => return Err(ApiError::new("internal", format!("dataplane: {other:?}"))),
    };
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

/// `POST /internal/cascade/events {node, events}` (home): an edge's notifications about the
/// sessions this node placed there, applied as this node's own.
pub(super) async fn events(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    json: Result<Json<Value>, JsonRejection>,
) -> Result<StatusCode, ApiError> {
    admin(&app, &headers)?;
    let r: EventsReq = parse(body(json)?)?;
    name("node", &r.node)?;
    if r.events.len() > EVENT_BATCH {
        return Err(ApiError::invalid(
            "events",
            format!("at most {EVENT_BATCH} per request"),
        ));
    }
    let m = &app.cascade.remote.metrics;
    for n in r.events {
        let ours = session_of(&n).is_some_and(|s| {
            app.cascade
                .remote
                .placed
                .locked()
                .get(&s)
                .is_some_and(|(edge, _)| *edge == r.node)
        });
        if !ours {
            m.events_refused.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        m.events_applied.fetch_add(1, Ordering::Relaxed);
        app.apply_notification(n).await;
    }
    Ok(StatusCode::NO_CONTENT)
}

/// The session a notification is about, for those a remote session forwards.
fn session_of(n: &Notification) -> Option<SessionId> {
    match n {
        Notification::IceConnected { session, .. }
        | Notification::IceDisconnected { session }
        | Notification::SelectedPairChanged { session, .. }
        | Notification::DtlsConnected { session, .. }
        | Notification::DtlsFailed { session, .. }
        | Notification::DataBehind { session, .. }
        | Notification::SessionClosed { session, .. }
        | Notification::StreamState { session, .. } => Some(*session),
        _ => None,
    }
}

impl App {
    /// Edge: `n` is about a session held for a home: queued for it (not applied here).
    pub(crate) fn forward_notification(self: &Arc<Self>, n: &Notification) -> bool {
        let Some(session) = session_of(n) else {
            return false;
        };
        let remote = &self.cascade.remote;
        let Some(home) = remote.owners.locked().get(&session).cloned() else {
            return false;
        };
        if let Notification::SessionClosed { .. } = n {
            let app = Arc::clone(self);
            tokio::spawn(async move { app.forget_held(session).await });
        }
        let tx = remote.queue.get_or_init(|| {
            let (tx, rx) = mpsc::channel(EVENT_QUEUE);
            tokio::spawn(forwarder(Arc::clone(self), rx));
            tx
        });
        match tx.try_send((home, n.clone())) {
            Ok(()) => {}
            Err(_) => {
                remote
                    .metrics
                    .events_dropped
                    .fetch_add(1, Ordering::Relaxed);
            }
        }
        true
    }

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
    async fn forget_held(self: &Arc<Self>, session: SessionId) {
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

    /// Home: one more session placed on `edge` (false: at the bound, counted).
    pub(crate) fn note_placed(&self, session: SessionId, edge: &NodeInfo) -> bool {
        let remote = &self.cascade.remote;
        let mut placed = remote.placed.locked();
        let room = remote.admit(placed.len(), MAX_REMOTE_SESSIONS, "remote session", "node");
        if room.is_err() {
            return false;
        }
        placed.insert(session, (edge.id.clone(), edge.boot.clone()));
        true
    }

    /// Home: asks `edge` to create `spec`.
    pub(crate) async fn remote_create(
        &self,
        edge: &NodeInfo,
        spec: CreateSession,
    ) -> Result<Created, ApiError> {
        let me = self.cluster_or_err()?.node_id().to_owned();
        let answer = call(
            self,
            edge,
            "/internal/cascade/sessions",
            json!({"home": me, "spec": spec}),
        )
        .await;
        match answer {
            Ok((201, v)) => serde_json::from_value(v)
                .map_err(|e| unavailable(format!("edge's session answer: {e}"))),
            Ok((s, v)) => Err(peer_error(s, &v)),
            Err(e) => Err(unavailable(format!("edge node: {e}"))),
        }
    }

    /// Home: one operation on a session of ours on `edge` (see the module docs).
    pub(crate) async fn remote_op(
        &self,
        edge: &NodeInfo,
        mut op: Value,
    ) -> Result<ReplyOk, ApiError> {
        op["home"] = json!(self.cluster_or_err()?.node_id());
        match call(self, edge, "/internal/cascade/sessions/op", op).await {
            Ok((200, v)) => {
                serde_json::from_value(v).map_err(|e| unavailable(format!("edge's answer: {e}")))
            }
            Ok((s, v)) => Err(peer_error(s, &v)),
            Err(e) => Err(unavailable(format!("edge node: {e}"))),
        }
    }
}

/// A peer's refusal as ours (its field and message; its code where it is one of ours).
fn peer_error(status: u16, v: &Value) -> ApiError {
    let e = &v["error"];
    let field = e["field"].as_str().unwrap_or("node").to_owned();
    let msg = e["message"].as_str().unwrap_or("refused").to_owned();
    let code = match status {
        404 => "not_found",
        // The dataplane refused (a state conflict): callers treat `internal` as "already gone".
        500 => "internal",
        _ => "unavailable",
    };
    ApiError::new(code, format!("edge node: {msg}")).with_field(field)
}

/// Edge: sends queued notifications to their homes, a batch per home per round.
async fn forwarder(app: Arc<App>, mut rx: mpsc::Receiver<(String, Notification)>) {
    let m = &app.cascade.remote.metrics;
    while let Some(first) = rx.recv().await {
        let mut by_home: HashMap<String, Vec<Notification>> = HashMap::new();
        by_home.entry(first.0).or_default().push(first.1);
        let mut n = 1;
        while n < EVENT_BATCH {
            let Ok((home, ev)) = rx.try_recv() else { break };
            by_home.entry(home).or_default().push(ev);
            n += 1;
        }
        let me = app.cluster.as_ref().map_or("", |c| c.node_id()).to_owned();
        for (home, events) in by_home {
            let count = events.len() as u64;
            let sent = match app.peer(&home).await {
                Ok((node, _)) => matches!(
                    call(
                        &app,
                        &node,
                        "/internal/cascade/events",
                        json!({"node": me, "events": events}),
                    )
                    .await,
                    Ok((204, _))
                ),
                Err(_) => false,
            };
            let counter = if sent {
                &m.events_forwarded
            } else {
                &m.events_dropped
            };
            counter.fetch_add(count, Ordering::Relaxed);
        }
    }
}

impl Remote {
    /// The `sluice_cascade_remote_*` families of `/metrics`.
    pub(crate) fn write_metrics(&self, out: &mut String) {
        use std::fmt::Write as _;
        let m = &self.metrics;
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let home = self.placed.locked().len();
        let edge = self.owners.locked().len();
        let _ = writeln!(out, "# HELP sluice_cascade_remote_sessions Subscriber sessions on another node's dataplane (home: this node's participants placed on edges; edge: sessions held here for homes).\n# TYPE sluice_cascade_remote_sessions gauge\nsluice_cascade_remote_sessions{{side=\"home\"}} {home}\nsluice_cascade_remote_sessions{{side=\"edge\"}} {edge}");
        let _ = writeln!(out, "# HELP sluice_cascade_edge_placements_total Subscriber sessions placed on an edge, by reason.\n# TYPE sluice_cascade_edge_placements_total counter\nsluice_cascade_edge_placements_total{{reason=\"capacity\"}} {}\nsluice_cascade_edge_placements_total{{reason=\"region\"}} {}", g(&m.placed_capacity), g(&m.placed_region));
        let _ = writeln!(out, "# HELP sluice_cascade_remote_events_total Notifications of remote sessions: forwarded/dropped (edge), applied/refused (home).\n# TYPE sluice_cascade_remote_events_total counter\nsluice_cascade_remote_events_total{{result=\"forwarded\"}} {}\nsluice_cascade_remote_events_total{{result=\"dropped\"}} {}\nsluice_cascade_remote_events_total{{result=\"applied\"}} {}\nsluice_cascade_remote_events_total{{result=\"refused\"}} {}", g(&m.events_forwarded), g(&m.events_dropped), g(&m.events_applied), g(&m.events_refused));
        let _ = writeln!(out, "# HELP sluice_cascade_remote_remade_total Subscriber sessions made again because their edge was lost.\n# TYPE sluice_cascade_remote_remade_total counter\nsluice_cascade_remote_remade_total {}", g(&m.remade));
        let _ = writeln!(out, "# HELP sluice_cascade_remote_limit_refusals_total Remote sessions or subscriptions refused at their bound.\n# TYPE sluice_cascade_remote_limit_refusals_total counter\nsluice_cascade_remote_limit_refusals_total {}", g(&m.limit_refusals));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::lock_tests::options;
    use crate::server::Server;

    #[tokio::test]
    async fn the_event_queue_drops_and_counts_past_its_bound() {
        let server = Server::start(options()).await.unwrap();
        let app = Arc::clone(&server.app);
        let remote = &app.cascade.remote;
        // A queue nobody drains (the forwarder would send to the home).
        let (tx, _rx) = mpsc::channel(EVENT_QUEUE);
        remote.queue.set(tx).unwrap();
        let session = SessionId(77);
        remote.owners.locked().insert(session, "home".into());
        let n = Notification::IceDisconnected { session };
        for _ in 0..EVENT_QUEUE + 5 {
            assert!(
                app.forward_notification(&n),
                "a held session's event goes to its home"
            );
        }
        assert_eq!(remote.metrics.events_dropped.load(Ordering::Relaxed), 5);
        // Another session's is not this edge's to forward.
        let other = Notification::IceDisconnected {
            session: SessionId(78),
        };
        assert!(!app.forward_notification(&other));
        server.stop();
    }

    #[tokio::test]
    async fn placed_sessions_and_subscriptions_refuse_past_their_bound_naming_the_field() {
        let server = Server::start(options()).await.unwrap();
        let app = Arc::clone(&server.app);
        let remote = &app.cascade.remote;
        let edge = NodeInfo {
            id: "b".into(),
            lease_expires_ms: 0,
            boot: "x".into(),
            region: "default".into(),
            advertise: String::new(),
            internal: String::new(),
            capacity: 1,
            load: 0,
            state: "serving".into(),
            reservations: 0,
            rooms: 0,
            dataplane: Default::default(),
            media: String::new(),
        };
        for i in 0..MAX_REMOTE_SESSIONS as u64 {
            assert!(app.note_placed(SessionId(i), &edge));
        }
        assert!(!app.note_placed(SessionId(u64::MAX), &edge));
        assert_eq!(remote.placed.locked().len(), MAX_REMOTE_SESSIONS);
        assert_eq!(remote.metrics.limit_refusals.load(Ordering::Relaxed), 1);
        let e = remote
            .admit(
                MAX_REMOTE_SUBS,
                MAX_REMOTE_SUBS,
                "remote subscription",
                "subscription",
            )
            .unwrap_err();
        assert_eq!(
            (e.code, e.field.as_deref()),
            ("too_large", Some("subscription"))
        );
        assert!(remote
            .admit(MAX_REMOTE_SUBS - 1, MAX_REMOTE_SUBS, "x", "y")
            .is_ok());
        assert_eq!(remote.metrics.limit_refusals.load(Ordering::Relaxed), 2);
        let mut text = String::new();
        remote.write_metrics(&mut text);
        assert!(
            text.contains("sluice_cascade_remote_sessions{side=\"home\"} 4096"),
            "{text}"
        );
        assert!(
            text.contains("sluice_cascade_remote_limit_refusals_total 2"),
            "{text}"
        );
        server.stop();
    }

    #[tokio::test]
    async fn an_edge_may_not_post_more_than_a_batch_nor_events_of_sessions_not_placed_on_it() {
        let server = Server::start(options()).await.unwrap();
        let app = Arc::clone(&server.app);
        let now = crate::auth::unix_seconds(std::time::SystemTime::now());
        let token = crate::auth::mint_admin(
            "k",
            b"lock-test-secret-0123456789",
            &crate::auth::AdminClaims {
                iss: String::new(),
                sub: "node:b".into(),
                admin: true,
                exp: now + 60,
                nbf: now - 5,
                iat: now,
            },
        );
        let mut headers = HeaderMap::new();
        headers.insert("authorization", format!("Bearer {token}").parse().unwrap());
        let ev = |s: u64| json!({"type": "ice_disconnected", "session": s});
        let many: Vec<Value> = (0..EVENT_BATCH as u64 + 1).map(ev).collect();
        let e = events(
            State(Arc::clone(&app)),
            headers.clone(),
            Ok(Json(json!({"node": "b", "events": many}))),
        )
        .await
        .unwrap_err();
        assert_eq!(e.field.as_deref(), Some("events"));
        // Session 5 was placed on `c`, not `b`: `b`'s word about it is refused, counted.
        app.cascade
            .remote
            .placed
            .locked()
            .insert(SessionId(5), ("c".into(), "x".into()));
        let ok = events(
            State(Arc::clone(&app)),
            headers,
            Ok(Json(json!({"node": "b", "events": [ev(5), ev(6)]}))),
        )
        .await
        .unwrap();
        assert_eq!(ok, StatusCode::NO_CONTENT);
        let m = &app.cascade.remote.metrics;
        assert_eq!(m.events_refused.load(Ordering::Relaxed), 2);
        assert_eq!(m.events_applied.load(Ordering::Relaxed), 0);
        server.stop();
    }
}
