//! The control daemon's servers: HTTP API (`api`), WebSocket signaling at `/rtc` (`signal`),
//! WHIP/WHEP and sidecar sessions (`whip`), metrics/health/drain/static files (`ops`), dev-mode
//! tokens for the demo page (`dev`), all on one axum router — adapters of wire formats over
//! the room actors (`actor`), which own each room's state and media (`media`). Beside them: the
//! WebSocket client registry (`hub`), the event pipeline to SSE and webhooks (`events`,
//! `webhooks`) and the store.
//!
//! Locks: only synchronous `std` mutexes remain outside the actors (registry, hub, event log,
//! session→room map, stats), each held for a lookup or an update, never across an await.

mod actor;
mod adopt;
mod api;
mod bounds;
mod cascade;
mod cluster;
mod congestion;
mod connectivity;
mod data_api;
mod data_metrics;
mod dev;
mod error;
mod events;
mod guard;
mod hub;
mod listen;
mod load;
#[cfg(test)]
mod lock_tests;
mod media;
mod ops;
mod placement;
mod signal;
mod webhooks;
mod whip;

use crate::lock::Locked;
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use sluice_proto::{Counters, Notification, SessionId};
use tokio::sync::Notify;

pub use error::ApiError;
pub use webhooks::WebhookSetupError;

use crate::auth::Keyring;
use crate::events::{SseConfig, WebhookConfig};
use crate::hybrid::turn::TurnConfig;
use crate::hybrid::HybridConfig;
use crate::limits::{Limits, Refusals};
use crate::link::Link;
use crate::room::RoomsConfig;
use crate::store::{FileStore, MemoryStore, Store};
use actor::{HybridMetrics, Registry};
use events::Events;
use hub::Hub;
use webhooks::Webhooks;

/// How to run the server.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    pub http: SocketAddr,
    /// API key → secret (access and admin tokens).
    pub api_keys: BTreeMap<String, String>,
    pub rooms: RoomsConfig,
    /// Persist rooms here (and load them at start); `None`: in memory only.
    pub state_file: Option<PathBuf>,
    /// Webhook receivers (`http://` or `https://`).
    pub webhooks: Vec<String>,
    /// Signs webhooks (`Sluice-Signature`); required when `webhooks` is not empty. Never an API
    /// secret: a receiver must not be able to mint tokens.
    pub webhook_secret: Option<String>,
    /// Extra trust roots (PEM) for https receivers, beside the system's.
    pub webhook_ca_file: Option<PathBuf>,
    /// Webhook lane limits and retry timings (per URL).
    pub webhook: WebhookConfig,
    /// SSE backlogs and per-subscriber buffer (the subscriber cap is
    /// `limits.max_sse_subscribers`).
    pub sse: SseConfig,
    /// Served at `/`.
    pub static_dir: Option<PathBuf>,
    /// The dataplane's control socket; `None`: no media (room endpoints only).
    pub dataplane_socket: Option<PathBuf>,
    pub drain_deadline: Duration,
    /// Serve `GET /dev/token` (signed with the first API key). Dev mode only.
    pub dev_tokens: bool,
    /// The `[hybrid]` policy; its `default_mode` is the setting of auto-created rooms.
    pub hybrid: HybridConfig,
    /// `[turn]`: TURN REST credentials in `joined.ice_servers`.
    pub turn: Option<TurnConfig>,
    /// `[limits]`: what clients can make this server hold (docs/security.md).
    pub limits: Limits,
    /// `[cluster]`: one of several nodes on Redis; `None`: a single node.
    pub cluster: Option<crate::cluster::ClusterConfig>,
    /// The bytes the process's allocator holds for live allocations (`sluice_control_heap_bytes`
    /// in `/metrics`: a leak shows here before allocator retention hides it in the resident
    /// size); `None`: not exported. The `sluice` binary counts its global allocator (D122).
    pub heap_bytes: Option<fn() -> usize>,
}

/// A running server.
#[derive(Debug)]
pub struct Server {
    pub addr: SocketAddr,
    app: Arc<App>,
    task: tokio::task::JoinHandle<()>,
}

/// What every room actor and adapter shares.
#[derive(Debug)]
pub(crate) struct App {
    pub(crate) keyring: Keyring,
    /// Signs `/dev/token` answers; `None`: dev tokens are off.
    pub(crate) dev_key: Option<(String, Vec<u8>)>,
    /// The HTTP listen IP: announced for a wildcard-bound dataplane (`sdp::announce_ip`).
    pub(crate) http_ip: std::net::IpAddr,
    pub(crate) rooms_config: RoomsConfig,
    /// The `[hybrid]` configuration (rooms may override it).
    pub(crate) hybrid_config: HybridConfig,
    pub(crate) turn: Option<TurnConfig>,
    pub(crate) registry: Registry,
    /// Room ids (`PA_n`, `TR_n`): the last number used, shared by every room.
    pub(crate) ids: Arc<AtomicU64>,
    /// The highest `ids` value handed to the store.
    pub(crate) ids_stored: AtomicU64,
    /// Dataplane ids (sessions, tracks, subscriptions): the last number used. Starts at a
    /// random point ([`media::dp_id_start`], D105) so that the ids of a node's remote sessions
    /// on an edge never meet the edge's own.
    pub(crate) dp_ids: AtomicU64,
    /// Where `dp_ids` started: ids of this process are in `[start, start + 2^40)`.
    pub(crate) dp_ids_start: u64,
    /// Which room holds each dataplane session (to route `session_closed`).
    pub(crate) session_rooms: Mutex<HashMap<SessionId, String>>,
    pub(crate) link: Option<Link>,
    pub(crate) hub: Hub,
    pub(crate) events: Arc<Events>,
    pub(crate) store: Arc<dyn Store>,
    pub(crate) hybrid_metrics: Mutex<HybridMetrics>,
    pub(crate) draining: AtomicBool,
    pub(crate) drained: Notify,
    /// The latest counters of each dataplane shard.
    pub(crate) shard_stats: Mutex<BTreeMap<u16, Counters>>,
    /// The shards' rates from their snapshots (cluster load, `/metrics`).
    pub(crate) load: Mutex<load::LoadSampler>,
    /// Kicks still in force (D38).
    pub(crate) kicks: bounds::Kicks,
    /// `[cluster]` membership; `None` on a single node.
    pub(crate) cluster: Option<Arc<crate::cluster::Cluster>>,
    /// Trunks and relays toward other nodes (cascade, `cascade/`).
    pub(crate) cascade: cascade::Cascade,
    /// The first API key and its secret: this node's own admin tokens for calls to other nodes.
    pub(crate) node_key: Option<(String, Vec<u8>)>,
    /// Each dataplane session's selected pair (issue 18).
    pub(crate) connectivity: Mutex<connectivity::Connectivity>,
    static_dir: Option<PathBuf>,
    drain_deadline: Duration,
    pub(crate) limits: Limits,
    /// What the limits refused, by reason (`sluice_refused_total`).
    pub(crate) refusals: Arc<Refusals>,
    /// Open HTTP connections (the caps of `limits`).
    pub(crate) connections: listen::Connections,
    /// The allocator's live bytes (`ServerOptions::heap_bytes`).
    pub(crate) heap_bytes: Option<fn() -> usize>,
}

impl Server {
    /// Binds, loads persisted state (a room actor per stored room), connects to the dataplane
    /// (lazily) and serves.
    pub async fn start(opts: ServerOptions) -> std::io::Result<Self> {
        let mut keyring = Keyring::new();
        for (k, s) in &opts.api_keys {
            keyring.insert(k.clone(), s.as_bytes());
        }
        let cluster = match &opts.cluster {
            Some(c) => {
                Some(crate::cluster::Cluster::new(c.clone()).map_err(std::io::Error::other)?)
            }
            None => None,
        };
        let mut store: Arc<dyn Store> = match &opts.state_file {
            Some(p) => Arc::new(FileStore::open(p).map_err(std::io::Error::other)?),
            None => Arc::new(MemoryStore::default()),
        };
        if let Some(c) = &cluster {
            store = Arc::new(crate::cluster::ClusterStore::new(store, Arc::clone(c)));
        }
        let snapshot = store.load().map_err(std::io::Error::other)?;
        let secret = match (&opts.webhook_secret, opts.webhooks.is_empty()) {
            (Some(s), _) => s.as_bytes().to_vec(),
            (None, true) => Vec::new(),
            (None, false) => {
                return Err(std::io::Error::other(
                    "control.webhook_secret: required when webhooks are configured",
                ))
            }
        };
        let webhooks = Webhooks::start(
            &opts.webhooks,
            &secret,
            &opts.webhook,
            opts.webhook_ca_file.as_deref(),
        )
        .map_err(std::io::Error::other)?;
        let events = Events::start(
            snapshot.event_log(),
            snapshot.outbox.clone(),
            SseConfig {
                max_subscribers: opts.limits.max_sse_subscribers,
                ..opts.sse.clone()
            },
            webhooks,
            Arc::clone(&store),
        );
        let link = opts
            .dataplane_socket
            .clone()
            .map(|p| Link::spawn(p, format!("sluice-control-{}", std::process::id())));
        let mut rooms_config = opts.rooms.clone();
        rooms_config.default_room.mode = opts.hybrid.default_mode;
        let first_key = opts
            .api_keys
            .iter()
            .next()
            .map(|(k, s)| (k.clone(), s.as_bytes().to_vec()));
        let refusals = Arc::new(Refusals::default());
        let dp_start = media::dp_id_start();
        let app = Arc::new(App {
            keyring,
            dev_key: first_key.clone().filter(|_| opts.dev_tokens),
            node_key: first_key,
            cascade: cascade::Cascade::default(),
            http_ip: opts.http.ip(),
            rooms_config,
            hybrid_config: opts.hybrid.clone(),
            turn: opts.turn.clone(),
            registry: Registry::default(),
            ids: Arc::new(AtomicU64::new(snapshot.next_id)),
            ids_stored: AtomicU64::new(snapshot.next_id),
            dp_ids: AtomicU64::new(dp_start),
            dp_ids_start: dp_start,
            session_rooms: Mutex::new(HashMap::new()),
            link,
            hub: Hub::new(Arc::clone(&refusals)),
            events,
            store,
            hybrid_metrics: Mutex::new(HybridMetrics::default()),
            draining: AtomicBool::new(false),
            drained: Notify::new(),
            shard_stats: Mutex::new(BTreeMap::new()),
            load: Mutex::new(load::LoadSampler::default()),
            kicks: bounds::Kicks::default(),
            cluster,
            connectivity: Mutex::new(connectivity::Connectivity::new(
                opts.turn
                    .as_ref()
                    .map(|t| connectivity::relay_ips(&t.urls, &t.relay_ips))
                    .unwrap_or_default(),
            )),
            static_dir: opts.static_dir.clone(),
            drain_deadline: opts.drain_deadline,
            limits: opts.limits.clone(),
            refusals,
            connections: listen::Connections::default(),
            heap_bytes: opts.heap_bytes,
        });
        // Every stored room gets its actor now: its empty-room timeout runs, and the first
        // resync adopts its calls.
        for name in snapshot.rooms.keys() {
            app.room_handle(name);
        }
        cluster::start(&app);
        app.start_cascade();
        if app.link.is_some() {
            tokio::spawn(dataplane_loop(Arc::clone(&app)));
        }
        let listener = tokio::net::TcpListener::bind(opts.http)
            .await
            .map_err(|e| {
                std::io::Error::new(e.kind(), format!("control.http {}: {e}", opts.http))
            })?;
        let addr = listener.local_addr()?;
        let router = router(Arc::clone(&app));
        let task = tokio::spawn(listen::serve(Arc::clone(&app), listener, router));
        tracing::info!(%addr, "control listening");
        Ok(Self { addr, app, task })
    }

    /// Enter drain (as `POST /api/drain` does).
    pub fn drain(&self) {
        self.app.start_drain();
    }

    /// Resolves when a drain finished: rooms empty or the deadline passed.
    pub async fn drained(&self) {
        self.app.drained.notified().await;
    }

    /// Waits until every room has handed its changes to the store and they are durable.
    pub async fn persist(&self) {
        self.app.settle_rooms().await;
    }

    /// Asks the dataplane to stop (the `shutdown` command); for a dataplane this daemon spawned.
    pub async fn shutdown_dataplane(&self) -> Result<(), crate::link::LinkError> {
        let link = self
            .app
            .link
            .as_ref()
            .ok_or(crate::link::LinkError::Unavailable)?;
        link.request(sluice_proto::Command::Shutdown {})
            .await
            .map(drop)
    }

    /// Stops serving (room actors persist after every operation, so nothing is pending).
    pub fn stop(self) {
        if let Some(c) = &self.app.cluster {
            c.stop();
        }
        self.task.abort();
    }

    /// Stops serving once every change is durable and the event outbox is empty.
    pub async fn shutdown(self) {
        self.app.settle_rooms().await;
        self.app.events.flush(self.app.store.as_ref()).await;
        if let Some(c) = &self.app.cluster {
            c.leave().await;
        }
        self.task.abort();
    }
}

/// The routes, with the guards of docs/security.md: the admin token checked before an `/api`
/// body is read, body sizes, and in dev mode the `Host`/`Origin` checks.
fn router(app: Arc<App>) -> axum::Router {
    use axum::extract::DefaultBodyLimit;
    use axum::middleware::from_fn_with_state;
    let admin = |r: axum::Router<Arc<App>>, max: usize| {
        r.route_layer(from_fn_with_state(
            (Arc::clone(&app), max),
            guard::admin_first,
        ))
        .layer(DefaultBodyLimit::max(max))
    };
    let mut router = admin(api::routes(), app.limits.api_body_max_bytes)
        .merge(admin(whip::sidecar_routes(), app.limits.sdp_body_max_bytes))
        // A 64 KiB data message in base64 or escaped JSON is larger than an API body.
        .merge(admin(data_api::routes(), app.limits.sdp_body_max_bytes))
        .merge(whip::routes().layer(DefaultBodyLimit::max(app.limits.sdp_body_max_bytes)))
        .merge(signal::routes())
        .merge(dev::routes())
        .merge(cluster::routes())
        .merge(admin(cascade::routes(), app.limits.api_body_max_bytes))
        .merge(ops::routes())
        .merge(admin(congestion::routes(), app.limits.api_body_max_bytes))
        .layer(from_fn_with_state(Arc::clone(&app), cluster::route));
    if app.dev_key.is_some() {
        router = router.layer(from_fn_with_state(Arc::clone(&app), guard::dev_origin));
    }
    router.with_state(app)
}

impl App {
    pub(crate) fn now_ms(&self) -> u64 {
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
    }

    /// Whether every lock of the shared state can be taken now (none is held by a stuck task;
    /// a poisoned one is taken over, see `crate::lock`).
    pub(crate) fn state_locks_free(&self) -> bool {
        !(self.registry.is_held() || self.hub.is_held() || held(&self.session_rooms))
    }

    /// Whether `claims` were signed with the dev key (`/dev/token`).
    pub(crate) fn is_dev_token(&self, claims: &crate::auth::Claims) -> bool {
        self.dev_key.as_ref().is_some_and(|(k, _)| *k == claims.iss)
    }

    pub(crate) fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// Whether the dataplane link is up.
    pub(crate) fn sfu_healthy(&self) -> bool {
        self.link.as_ref().is_some_and(|l| l.current().is_some())
    }

    /// Runs an empty job on every room: each has persisted what it did before.
    async fn settle_rooms(self: &Arc<Self>) {
        for name in self.registry.names() {
            let _ = self
                .in_existing_room(&name, |_| Box::pin(async { Ok(()) }))
                .await;
        }
    }

    pub(crate) fn start_drain(self: &Arc<Self>) {
        if self.draining.swap(true, Ordering::SeqCst) {
            return;
        }
        tracing::info!("draining: new joins refused");
        cluster::drain(self);
        let app = Arc::clone(self);
        tokio::spawn(async move {
            let deadline = tokio::time::Instant::now() + app.drain_deadline;
            loop {
                let occupied = app
                    .registry
                    .summaries()
                    .iter()
                    .any(|s| s.room.as_ref().is_some_and(|r| r.participants > 0));
                if !occupied || tokio::time::Instant::now() >= deadline {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            // A cluster node's rooms empty because their clients were told to reconnect, and
            // one that entered through this node joins again through it: stay a moment to
            // redirect those (their first tries come within a second) before going away.
            if app.cluster.is_some() {
                let linger = (tokio::time::Instant::now() + DRAIN_LINGER).min(deadline);
                tokio::time::sleep_until(linger).await;
            }
            app.drained.notify_waiters();
            app.drained.notify_one();
        });
    }
}

/// How long a drained cluster node keeps answering (redirecting) after its rooms emptied.
const DRAIN_LINGER: Duration = Duration::from_secs(2);

/// Whether another thread holds `m` now.
pub(crate) fn held<T>(m: &Mutex<T>) -> bool {
    matches!(m.try_lock(), Err(std::sync::TryLockError::WouldBlock))
}

/// Resync on every (re)connection; dataplane events into stats and session bookkeeping.
async fn dataplane_loop(app: Arc<App>) {
    let link = app.link.clone().expect("spawned only with a link");
    let mut events = link.events();
    let mut connected = link.connected();
    // The link may have connected before this task subscribed: a fresh receiver counts the
    // current value as seen, and waiting for the next change would skip the first resync (no
    // adoption after a control restart). Look at the current value first.
    connected.mark_changed();
    let mut first = true;
    // The dataplane process we last spoke to: a new one holds nothing.
    let mut instance: Option<String> = None;
    loop {
        tokio::select! {
            changed = connected.changed() => {
                if changed.is_err() { return; }
                let now = connected.borrow_and_update().as_ref().map(|c| c.hello.instance.clone());
                let is_up = now.is_some();
                if is_up {
                    let adopt = first;
                    first = false;
                    if instance.is_some() && instance != now {
                        app.connectivity.locked().dataplane_restarted();
                        app.dataplane_restarted().await;
                    }
                    instance = now;
                    if let Err(e) = app.resync(adopt).await {
                        tracing::warn!(error = %e, "resync failed");
                    }
                }
            }
            ev = events.recv() => match ev {
                Ok(n) => {
                    // A remote session's (this node is its edge): its home applies it.
                    if !app.forward_notification(&n) {
                        app.apply_notification(n).await;
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(n, "dataplane events lagged");
                }
                Err(_) => return,
            }
        }
    }
}

impl App {
    /// A dataplane notification: into stats and session bookkeeping. Also the path of a
    /// remote session's notifications its edge forwards (`cascade/remote.rs`).
    pub(crate) async fn apply_notification(self: &Arc<Self>, n: Notification) {
        let app = self;
        match n {
            n @ (Notification::IceConnected { .. } | Notification::SelectedPairChanged { .. }) => {
                if let Notification::IceConnected { session, .. } = n {
                    app.session_liveness(session, true).await;
                }
                let changed = app.connectivity.locked().on_notification(&n);
                if let Some((session, selected)) = changed {
                    app.connectivity_changed(session, selected).await;
                }
            }
            Notification::StatsSnapshot(ws) => {
                app.load
                    .locked()
                    .observe(std::time::Instant::now(), ws.shard, &ws.counters);
                app.shard_stats.locked().insert(ws.shard, ws.counters);
            }
            Notification::StreamState {
                session,
                subscription,
                state,
            } => {
                app.stream_state(session, subscription, state).await;
            }
            Notification::DataBehind {
                session,
                reliable,
                dropped,
            } => {
                app.data_behind(session, reliable, dropped).await;
            }
            Notification::TrunkSilent { session, silent_ms } => {
                app.trunk_silent(session, silent_ms).await;
            }
            Notification::TrunkResumed { session, silent_ms } => {
                app.trunk_resumed(session, silent_ms).await;
            }
            Notification::RelayShed {
                session,
                subscription,
                shed,
                estimate_bps,
            } => {
                app.relay_shed(session, subscription, shed, estimate_bps)
                    .await;
            }
            Notification::IceDisconnected { session } => {
                app.session_liveness(session, false).await;
            }
            n @ Notification::SessionClosed { session, reason } => {
                app.connectivity.locked().on_notification(&n);
                tracing::debug!(%session, ?reason, "session closed by the dataplane");
                app.session_closed(session).await;
            }
            _ => {}
        }
    }
}
