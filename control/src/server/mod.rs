//! The control daemon's servers: HTTP API (`api`), WebSocket signaling at `/rtc` (`signal`),
//! WHIP/WHEP and sidecar sessions (`whip`), metrics/health/drain/static files (`ops`), dev-mode
//! tokens for the demo page (`dev`), all on one axum router; plus the WebSocket client registry
//! (`hub`), the event pipeline to SSE and webhooks (`events`, `webhooks`), the dataplane driver
//! (`media`) and persistence.
//!
//! Locks: `rooms` is a std mutex held only for synchronous `Rooms` calls; `media` is an async
//! mutex held across dataplane requests. Order: media, then rooms; never the reverse.

mod adopt;
mod api;
mod dev;
mod error;
mod events;
mod hub;
mod hybrid;
mod media;
mod ops;
mod p2p;
mod persist;
mod signal;
mod translate;
mod webhooks;
mod whip;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use serde_json::{json, Value};
use sluice_proto::{Counters, Notification};

use tokio::sync::Notify;
pub use webhooks::WebhookSetupError;

pub use error::ApiError;

use crate::auth::Keyring;
use crate::events::{SseConfig, WebhookConfig};
use crate::hybrid::turn::TurnConfig;
use crate::hybrid::HybridConfig;
use crate::link::Link;
use crate::room::{
    LeaveReason, Participant, RoomEvent, RoomEventKind, Rooms, RoomsConfig, RoomsState, Track,
};
use crate::store::{FileStore, MemoryStore, Store};
use events::Events;
use hub::{ClientMsg, Hub};
use media::Media;
use webhooks::Webhooks;

/// How to run the server.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    pub http: SocketAddr,
    /// API key → secret (access and admin tokens).
    pub api_keys: BTreeMap<String, String>,
    pub rooms: RoomsConfig,
    /// Persist rooms here (and load them at start).
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
    /// SSE backlogs, per-subscriber buffer and subscriber cap.
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
}

/// A running server.
#[derive(Debug)]
pub struct Server {
    pub addr: SocketAddr,
    app: Arc<App>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Debug)]
pub(crate) struct App {
    pub(crate) keyring: Keyring,
    /// Signs `/dev/token` answers; `None`: dev tokens are off.
    pub(crate) dev_key: Option<(String, Vec<u8>)>,
    /// The HTTP listen IP: announced for a wildcard-bound dataplane (`sdp::announce_ip`).
    pub(crate) http_ip: std::net::IpAddr,
    pub(crate) rooms: Mutex<Rooms>,
    pub(crate) media: tokio::sync::Mutex<Media>,
    pub(crate) link: Option<Link>,
    pub(crate) hub: Hub,
    pub(crate) events: Arc<Events>,
    pub(crate) draining: AtomicBool,
    pub(crate) drained: Notify,
    pub(crate) worker_stats: Mutex<BTreeMap<u16, Counters>>,
    /// Per-room P2P/SFU policies (see [`hybrid`]).
    pub(crate) hybrid: Mutex<hybrid::Hybrid>,
    /// Wakes the hybrid timer loop early (a policy armed a sooner deadline).
    pub(crate) hybrid_wake: Notify,
    /// Durable state (see [`crate::store`]); what was last handed to it, to diff against.
    store: Arc<dyn Store>,
    persisted: tokio::sync::Mutex<persist::Persisted>,
    /// Published tracks as stored (see [`adopt`]).
    pub(crate) track_index: Mutex<adopt::TrackIndex>,
    dirty: Notify,
    static_dir: Option<PathBuf>,
    drain_deadline: Duration,
}

impl Server {
    /// Binds, loads persisted state, connects to the dataplane (lazily) and serves.
    pub async fn start(opts: ServerOptions) -> std::io::Result<Self> {
        let mut keyring = Keyring::new();
        for (k, s) in &opts.api_keys {
            keyring.insert(k.clone(), s.as_bytes());
        }
        let store: Arc<dyn Store> = match &opts.state_file {
            Some(p) => Arc::new(FileStore::open(p).map_err(std::io::Error::other)?),
            None => Arc::new(MemoryStore::default()),
        };
        let snapshot = store.load().map_err(std::io::Error::other)?;
        let persisted = persist::Persisted::from_snapshot(&snapshot);
        let state = RoomsState {
            rooms: persisted.rooms.clone(),
            next_id: snapshot.next_id,
        };
        let track_index = persisted.tracks.clone();
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
            opts.sse.clone(),
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
        let app = Arc::new(App {
            keyring,
            dev_key: first_key.clone().filter(|_| opts.dev_tokens),
            http_ip: opts.http.ip(),
            rooms: Mutex::new(Rooms::from_state(rooms_config, state)),
            media: tokio::sync::Mutex::new(Media::default()),
            link,
            hub: Hub::default(),
            events,
            draining: AtomicBool::new(false),
            drained: Notify::new(),
            worker_stats: Mutex::new(BTreeMap::new()),
            hybrid: Mutex::new(hybrid::Hybrid::new(opts.hybrid.clone(), opts.turn.clone())),
            hybrid_wake: Notify::new(),
            store,
            persisted: tokio::sync::Mutex::new(persisted),
            track_index: Mutex::new(track_index),
            dirty: Notify::new(),
            static_dir: opts.static_dir.clone(),
            drain_deadline: opts.drain_deadline,
        });
        tokio::spawn(persist::persist_loop(Arc::clone(&app)));
        if app.link.is_some() {
            tokio::spawn(dataplane_loop(Arc::clone(&app)));
        }
        tokio::spawn(timer_loop(Arc::clone(&app)));
        tokio::spawn(hybrid::hybrid_loop(Arc::clone(&app)));
        let listener = tokio::net::TcpListener::bind(opts.http)
            .await
            .map_err(|e| {
                std::io::Error::new(e.kind(), format!("control.http {}: {e}", opts.http))
            })?;
        let addr = listener.local_addr()?;
        let router = router(Arc::clone(&app));
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, router).await {
                tracing::error!(error = %e, "http server stopped");
            }
        });
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

    /// Hands every change to the store now and waits until it is durable.
    pub async fn persist(&self) {
        self.app.persist().await;
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

    /// Stops serving (what is not persisted yet is handed to the store in the background; see
    /// [`Server::shutdown`] to wait for it).
    pub fn stop(self) {
        let app = Arc::clone(&self.app);
        tokio::spawn(async move { app.persist().await });
        self.task.abort();
    }

    /// Stops serving once every change is durable.
    pub async fn shutdown(self) {
        self.app.persist().await;
        self.app.events.flush(self.app.store.as_ref()).await;
        self.task.abort();
    }
}

fn router(app: Arc<App>) -> axum::Router {
    api::routes()
        .merge(whip::routes())
        .merge(signal::routes())
        .merge(dev::routes())
        .merge(ops::routes())
        .with_state(app)
}

impl App {
    pub(crate) fn now_ms(&self) -> u64 {
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
    }

    pub(crate) fn mark_dirty(&self) {
        self.dirty.notify_one();
    }

    pub(crate) fn start_drain(self: &Arc<Self>) {
        if self.draining.swap(true, Ordering::SeqCst) {
            return;
        }
        tracing::info!("draining: new joins refused");
        let app = Arc::clone(self);
        tokio::spawn(async move {
            let deadline = tokio::time::Instant::now() + app.drain_deadline;
            loop {
                let occupied = app
                    .rooms
                    .lock()
                    .expect("rooms lock")
                    .list()
                    .any(|r| !r.participants.is_empty());
                if !occupied || tokio::time::Instant::now() >= deadline {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            app.drained.notify_waiters();
            app.drained.notify_one();
        });
    }

    /// Feeds room events to WS clients, SSE and webhooks.
    pub(crate) fn emit(&self, events: Vec<RoomEvent>) {
        if events.is_empty() {
            return;
        }
        self.mark_dirty();
        self.events.emit_room(&events, self.now_ms());
        for ev in events {
            self.to_clients(&ev);
        }
    }

    fn to_clients(&self, ev: &RoomEvent) {
        let room = ev.room.as_str();
        let hub = &self.hub;
        match &ev.kind {
            RoomEventKind::ParticipantJoined { identity, .. } => {
                let info = self
                    .rooms
                    .lock()
                    .expect("rooms lock")
                    .participant(room, identity)
                    .map(participant_info);
                if let Some(info) = info {
                    hub.broadcast(
                        room,
                        Some(identity),
                        &json!({"type": "participant_joined", "participant": info}),
                    );
                }
            }
            RoomEventKind::ParticipantLeft {
                identity,
                sid,
                reason,
            } => {
                let msg = json!({"type": "participant_left", "sid": sid, "identity": identity});
                hub.broadcast(room, Some(identity), &msg);
                if *reason == LeaveReason::Kicked {
                    hub.send_to(room, identity, ClientMsg::Close("kicked".into()));
                }
            }
            RoomEventKind::TrackPublished { identity, track } => {
                let psid = self
                    .rooms
                    .lock()
                    .expect("rooms lock")
                    .participant(room, identity)
                    .map(|p| p.sid.clone())
                    .unwrap_or_default();
                hub.broadcast(
                    room,
                    Some(identity),
                    &json!({"type": "track_published", "participant_sid": psid, "track": track_info(track, &psid)}),
                );
            }
            RoomEventKind::TrackUnpublished { track_id, .. } => {
                hub.broadcast(
                    room,
                    None,
                    &json!({"type": "track_unpublished", "track_sid": track_id}),
                );
            }
            RoomEventKind::TrackMuted {
                track_id, muted, ..
            } => {
                hub.broadcast(
                    room,
                    None,
                    &json!({"type": "track_muted", "track_sid": track_id, "muted": muted}),
                );
            }
            RoomEventKind::RoleChanged { identity, to, .. } => {
                hub.broadcast(
                    room,
                    None,
                    &json!({"type": "role_changed", "identity": identity, "role": to}),
                );
            }
            RoomEventKind::ControlRequested { identity } => {
                let host = self
                    .rooms
                    .lock()
                    .expect("rooms lock")
                    .room(room)
                    .and_then(|r| r.host().map(|h| h.identity.clone()));
                if let Some(host) = host {
                    hub.send_to(
                        room,
                        &host,
                        ClientMsg::Json(json!({"type": "control_requested", "identity": identity})),
                    );
                }
            }
            RoomEventKind::ControlGranted { identity, .. } => {
                hub.broadcast(
                    room,
                    None,
                    &json!({"type": "control_granted", "identity": identity}),
                );
            }
            RoomEventKind::ControlRevoked { identity, .. } => {
                hub.broadcast(
                    room,
                    None,
                    &json!({"type": "control_revoked", "identity": identity}),
                );
            }
            RoomEventKind::HostTransferred { to, .. } => {
                hub.broadcast(
                    room,
                    None,
                    &json!({"type": "host_transferred", "identity": to}),
                );
            }
            RoomEventKind::RoomDeleted { .. } => {
                self.forget_policy(room);
                hub.broadcast(
                    room,
                    None,
                    &json!({"type": "leave", "reason": "room_deleted"}),
                );
            }
            _ => {}
        }
    }
}

/// Identities that left in `events`.
pub(crate) fn departed(events: &[RoomEvent]) -> Vec<(String, String)> {
    events
        .iter()
        .filter_map(|e| match &e.kind {
            RoomEventKind::ParticipantLeft {
                identity, reason, ..
            } if *reason != LeaveReason::Replaced => Some((e.room.clone(), identity.clone())),
            _ => None,
        })
        .collect()
}

/// ParticipantInfo (docs/protocol.md).
pub(crate) fn participant_info(p: &Participant) -> Value {
    json!({
        "sid": p.sid,
        "identity": p.identity,
        "name": p.name,
        "role": p.role,
        "grants": p.grants,
        "metadata": p.metadata,
        "tracks": p.tracks.values().map(|t| track_info(t, &p.sid)).collect::<Vec<_>>(),
    })
}

/// TrackInfo (docs/protocol.md).
pub(crate) fn track_info(t: &Track, participant_sid: &str) -> Value {
    json!({
        "sid": t.id,
        "kind": t.kind,
        "source": t.source,
        "name": "",
        "muted": t.muted,
        "simulcast": t.layers.iter().map(|l| json!({"rid": l.rid, "width": 0, "height": 0})).collect::<Vec<_>>(),
        "participant_sid": participant_sid,
    })
}

async fn timer_loop(app: Arc<App>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let now = app.now_ms();
        let events = app.rooms.lock().expect("rooms lock").handle_timeout(now);
        app.emit(events);
    }
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
    loop {
        tokio::select! {
            changed = connected.changed() => {
                if changed.is_err() { return; }
                let is_up = connected.borrow_and_update().is_some();
                if is_up {
                    let adopt = first;
                    first = false;
                    if let Err(e) = app.resync(adopt).await {
                        tracing::warn!(error = %e, "resync failed");
                    }
                }
            }
            ev = events.recv() => match ev {
                Ok(Notification::StatsSnapshot(ws)) => {
                    app.worker_stats.lock().expect("stats lock").insert(ws.worker, ws.counters);
                }
                Ok(Notification::SessionClosed { session, reason }) => {
                    tracing::debug!(%session, ?reason, "session closed by the dataplane");
                    app.session_closed(session).await;
                }
                Ok(_) => {}
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(n, "dataplane events lagged");
                }
                Err(_) => return,
            }
        }
    }
}
