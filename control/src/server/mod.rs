//! The control daemon's servers: HTTP API (`api`), WebSocket signaling at `/rtc` (`signal`),
//! WHIP/WHEP and sidecar sessions (`whip`), metrics/health/drain/static files (`ops`), dev-mode
//! tokens for the demo page (`dev`), all on one axum router; plus the glue that feeds room events to clients, SSE and webhooks
//! (`hub`), drives the dataplane (`media`) and persists state.
//!
//! Locks: `rooms` is a std mutex held only for synchronous `Rooms` calls; `media` is an async
//! mutex held across dataplane requests. Order: media, then rooms; never the reverse.

mod adopt;
mod api;
mod congestion;
mod dev;
mod error;
mod hub;
mod hybrid;
mod media;
mod ops;
mod p2p;
mod signal;
mod translate;
mod webhook;
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

pub use error::ApiError;

use crate::auth::Keyring;
use crate::hybrid::turn::TurnConfig;
use crate::hybrid::HybridConfig;
use crate::link::Link;
use crate::room::{
    LeaveReason, Participant, RoomEvent, RoomEventKind, Rooms, RoomsConfig, RoomsState, Track,
};
use hub::{ClientMsg, Hub};
use media::Media;

/// How to run the server.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    pub http: SocketAddr,
    /// API key → secret (tokens and webhook signatures; the first key signs webhooks).
    pub api_keys: BTreeMap<String, String>,
    pub rooms: RoomsConfig,
    /// Persist rooms here (and load them at start).
    pub state_file: Option<PathBuf>,
    pub webhooks: Vec<String>,
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
    pub(crate) webhook_key: Option<(String, Vec<u8>)>,
    /// Signs `/dev/token` answers; `None`: dev tokens are off.
    pub(crate) dev_key: Option<(String, Vec<u8>)>,
    /// The HTTP listen IP: announced for a wildcard-bound dataplane (`sdp::announce_ip`).
    pub(crate) http_ip: std::net::IpAddr,
    pub(crate) rooms: Mutex<Rooms>,
    pub(crate) media: tokio::sync::Mutex<Media>,
    pub(crate) link: Option<Link>,
    pub(crate) hub: Hub,
    pub(crate) draining: AtomicBool,
    pub(crate) drained: Notify,
    pub(crate) worker_stats: Mutex<BTreeMap<u16, Counters>>,
    /// Per-room P2P/SFU policies (see [`hybrid`]).
    pub(crate) hybrid: Mutex<hybrid::Hybrid>,
    /// Wakes the hybrid timer loop early (a policy armed a sooner deadline).
    pub(crate) hybrid_wake: Notify,
    state_file: Option<PathBuf>,
    /// Published tracks as persisted next to the state file (see [`adopt`]).
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
        let state = match &opts.state_file {
            Some(p) => load_state(p)?,
            None => RoomsState::default(),
        };
        let track_index = opts
            .state_file
            .as_deref()
            .map(|p| adopt::load(&adopt::index_path(p)))
            .unwrap_or_default();
        let (webhook_tx, webhook_rx) = if opts.webhooks.is_empty() {
            (None, None)
        } else {
            let (tx, rx) = tokio::sync::mpsc::channel(webhook::QUEUE);
            (Some(tx), Some(rx))
        };
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
            webhook_key: first_key,
            rooms: Mutex::new(Rooms::from_state(rooms_config, state)),
            media: tokio::sync::Mutex::new(Media::default()),
            link,
            hub: Hub::new(webhook_tx),
            draining: AtomicBool::new(false),
            drained: Notify::new(),
            worker_stats: Mutex::new(BTreeMap::new()),
            hybrid: Mutex::new(hybrid::Hybrid::new(opts.hybrid.clone(), opts.turn.clone())),
            hybrid_wake: Notify::new(),
            state_file: opts.state_file.clone(),
            track_index: Mutex::new(track_index),
            dirty: Notify::new(),
            static_dir: opts.static_dir.clone(),
            drain_deadline: opts.drain_deadline,
        });
        if let Some(rx) = webhook_rx {
            tokio::spawn(webhook::deliver(
                Arc::clone(&app),
                opts.webhooks.clone(),
                rx,
            ));
        }
        if app.state_file.is_some() {
            tokio::spawn(persist_loop(Arc::clone(&app)));
        }
        if app.link.is_some() {
            tokio::spawn(dataplane_loop(Arc::clone(&app)));
        }
        tokio::spawn(timer_loop(Arc::clone(&app)));
        tokio::spawn(hybrid::hybrid_loop(Arc::clone(&app)));
        let listener = tokio::net::TcpListener::bind(opts.http).await?;
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

    /// Writes the state file now.
    pub fn persist(&self) {
        self.app.persist_now();
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

    /// Stops serving.
    pub fn stop(self) {
        self.app.persist_now();
        self.task.abort();
    }
}

fn router(app: Arc<App>) -> axum::Router {
    api::routes()
        .merge(whip::routes())
        .merge(signal::routes())
        .merge(dev::routes())
        .merge(ops::routes())
        .merge(congestion::routes())
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

    fn persist_now(&self) {
        let Some(path) = &self.state_file else { return };
        let state = self.rooms.lock().expect("rooms lock").state().clone();
        if let Err(e) = save_state(path, &state) {
            tracing::error!(path = %path.display(), error = %e, "could not persist state");
        }
        let index = self.track_index.lock().expect("index lock").clone();
        let index_path = adopt::index_path(path);
        if let Err(e) = adopt::save(&index_path, &index) {
            tracing::error!(path = %index_path.display(), error = %e, "could not persist tracks");
        }
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
        let now = self.now_ms();
        for ev in events {
            let payload = serde_json::to_value(&ev.kind).unwrap_or(Value::Null);
            self.hub.log(&ev.room, ev.kind.name(), payload, now);
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

async fn persist_loop(app: Arc<App>) {
    loop {
        app.dirty.notified().await;
        // Coalesce bursts: one write per 100 ms at most.
        tokio::time::sleep(Duration::from_millis(100)).await;
        app.persist_now();
    }
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
                Ok(Notification::StreamState { session, subscription, state }) => {
                    app.stream_state(session, subscription, state).await;
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

fn load_state(path: &std::path::Path) -> std::io::Result<RoomsState> {
    match std::fs::read_to_string(path) {
        Ok(text) => serde_json::from_str(&text)
            .map_err(|e| std::io::Error::other(format!("state file {}: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(RoomsState::default()),
        Err(e) => Err(e),
    }
}

/// Write to a temp file, then rename, so a crash never leaves half a file.
fn save_state(path: &std::path::Path, state: &RoomsState) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("json.tmp");
    std::fs::write(
        &tmp,
        serde_json::to_vec_pretty(state).map_err(std::io::Error::other)?,
    )?;
    std::fs::rename(tmp, path)
}
