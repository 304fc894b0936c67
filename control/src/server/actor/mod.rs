//! Room actors (docs/decisions.md D19): each room is a task that owns everything of that room —
//! its [`Rooms`] entry, its media (sessions, tracks, subscriptions, offers), its hybrid policy,
//! what it last handed to the store — and runs the jobs sent to it one at a time, each to the
//! end, even when the caller has gone away. Two rooms never wait on each other; a room's
//! dataplane round trips hold only that room.
//!
//! The [`Registry`] maps names to actors and is locked only for the lookup (never across an
//! await). A job is a closure over `&mut RoomCtx` ([`App::in_room`]); the channel is bounded, so a
//! flood of requests for one room makes its callers wait, not the node grow. An actor whose room
//! is gone (deleted, or a join that was refused) and that has nothing left to do retires: it
//! leaves the registry, and jobs that raced into its queue are handed to its successor.
//!
//! Wire formats stay outside: the WebSocket adapter (`signal.rs`), the HTTP API, WHIP/WHEP and a
//! future LiveKit-protocol adapter all call the same room operations here.

mod ghosts;
mod hybrid;
mod info;
mod lifecycle;
mod p2p;
#[cfg(test)]
mod shutdown_tests;

use crate::lock::Locked;
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::bounds::MapSizes;
use super::error::ApiError;
use super::media::Media;
use super::App;
use crate::hybrid::Topology;
use crate::room::{Room, RoomConfig, RoomEvent, Rooms, RoomsState};
use crate::store::{diff_room, diff_tracks, SavedTrack, StoreOp};

pub(crate) use hybrid::{HybridMetrics, JoinTicket, ModeReply};
pub(crate) use lifecycle::{ControlOp, ParticipantPatch};

/// A boxed future borrowing the room.
pub(crate) type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A job for a room actor.
type Job = Box<dyn for<'a> FnOnce(&'a mut RoomCtx) -> BoxFuture<'a, ()> + Send>;

/// Jobs one room queues before its callers wait.
const QUEUE: usize = 64;
/// Actors [`App::dispatch`] starts for one job before it gives up (a retire race takes one).
const DISPATCH_TRIES: usize = 8;

/// A room actor's address, and what it shows without being asked.
#[derive(Debug, Clone)]
pub(crate) struct RoomHandle {
    tx: mpsc::Sender<Job>,
    id: u64,
    summary: Arc<Mutex<Summary>>,
}

/// What the node-wide views (room list, metrics, drain) read of a room without waiting for it.
#[derive(Debug, Clone, Default)]
pub(crate) struct Summary {
    /// `None` while the room does not exist (yet, or any more).
    pub(crate) room: Option<Brief>,
    /// The topology now, once a policy exists.
    pub(crate) mode: Option<Topology>,
    /// Entries in the room's media maps.
    pub(crate) sizes: MapSizes,
}

/// A room in a few fields.
#[derive(Debug, Clone)]
pub(crate) struct Brief {
    pub(crate) name: String,
    pub(crate) config: RoomConfig,
    pub(crate) created_at_ms: u64,
    pub(crate) participants: usize,
    pub(crate) tracks: usize,
}

/// Names → room actors.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    rooms: Mutex<HashMap<String, RoomHandle>>,
    next_id: AtomicU64,
}

/// One room's state, owned by its actor. See the module docs.
#[derive(Debug)]
pub(crate) struct RoomCtx {
    pub(crate) app: Arc<App>,
    pub(crate) name: String,
    /// The room's rules and state; holds this room only (or nothing before creation / after
    /// deletion).
    pub(crate) rooms: Rooms,
    pub(crate) media: Media,
    pub(crate) hybrid: hybrid::RoomHybrid,
    /// Published tracks as stored, for adoption after a control restart.
    pub(crate) saved: BTreeMap<String, SavedTrack>,
    /// Participants restored from the store that have not resumed: identity → (sid, deadline
    /// in unix ms). See `ghosts.rs`.
    pub(crate) unresumed: BTreeMap<String, (String, u64)>,
    /// What the store holds of this room.
    stored: (Option<Room>, BTreeMap<String, SavedTrack>),
    summary: Arc<Mutex<Summary>>,
}

impl Registry {
    pub(crate) fn is_held(&self) -> bool {
        crate::server::held(&self.rooms)
    }

    /// Holds the lock for `d` on this thread (the test of finding #8).
    #[cfg(test)]
    pub(crate) fn hold_for(&self, d: std::time::Duration) {
        let _held = self.rooms.lock();
        std::thread::sleep(d);
    }

    fn get(&self, name: &str) -> Option<RoomHandle> {
        self.rooms.locked().get(name).cloned()
    }

    /// Every room's summary, in name order.
    pub(crate) fn summaries(&self) -> Vec<Summary> {
        let handles: Vec<RoomHandle> = self.rooms.locked().values().cloned().collect();
        let mut out: Vec<Summary> = handles.iter().map(|h| h.summary.locked().clone()).collect();
        out.sort_by(|a, b| {
            let name = |s: &Summary| s.room.as_ref().map(|r| r.name.clone());
            name(a).cmp(&name(b))
        });
        out
    }

    /// Participants in every room of this node (the media load's input, D111).
    pub(crate) fn participants(&self) -> u64 {
        let handles: Vec<RoomHandle> = self.rooms.locked().values().cloned().collect();
        handles
            .iter()
            .filter_map(|h| {
                h.summary
                    .locked()
                    .room
                    .as_ref()
                    .map(|r| r.participants as u64)
            })
            .sum()
    }

    /// The names of every room actor.
    pub(crate) fn names(&self) -> Vec<String> {
        self.rooms.locked().keys().cloned().collect()
    }

    fn remove_if(&self, name: &str, id: u64) {
        let mut rooms = self.rooms.locked();
        if rooms.get(name).is_some_and(|h| h.id == id) {
            rooms.remove(name);
        }
    }
}

impl App {
    /// Runs `f` on room `name` (starting its actor if there is none) and returns its result.
    pub(crate) async fn in_room<T, F>(self: &Arc<Self>, name: &str, f: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: for<'a> FnOnce(&'a mut RoomCtx) -> BoxFuture<'a, Result<T, ApiError>> + Send + 'static,
    {
        self.ensure_home(name).await?;
        self.in_local_room(name, f).await
    }

    /// [`App::in_room`] without the cluster's home check: for a room whose actor runs here.
    pub(crate) async fn in_local_room<T, F>(
        self: &Arc<Self>,
        name: &str,
        f: F,
    ) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: for<'a> FnOnce(&'a mut RoomCtx) -> BoxFuture<'a, Result<T, ApiError>> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move |ctx| {
            Box::pin(async move {
                let r = f(ctx).await;
                // The room list reads the summary: refreshed before the answer, so a client that
                // created a room sees it in `GET /api/rooms` at once (the store write follows in
                // `settle`, as before).
                ctx.update_summary();
                let _ = tx.send(r);
            })
        });
        self.dispatch(name, job).await;
        rx.await
            .map_err(|_| ApiError::new("internal", format!("room {name:?} failed")))?
    }

    /// [`App::in_room`] for a room that must exist already: `not_found` (field `room`) without
    /// starting an actor.
    pub(crate) async fn in_existing_room<T, F>(
        self: &Arc<Self>,
        name: &str,
        f: F,
    ) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: for<'a> FnOnce(&'a mut RoomCtx) -> BoxFuture<'a, Result<T, ApiError>> + Send + 'static,
    {
        if self.registry.get(name).is_none() {
            return Err(super::api::unknown_room(name));
        }
        self.in_local_room(name, move |ctx| {
            Box::pin(async move {
                if ctx.room().is_none() {
                    return Err(super::api::unknown_room(&ctx.name));
                }
                f(ctx).await
            })
        })
        .await
    }

    /// Hands `job` to room `name`'s actor, starting one if needed (or if the one found just
    /// retired). An actor that is gone again at once means the runtime is shutting down (its
    /// tasks are dropped as they are spawned): after a few tries the job is dropped — its caller
    /// gets an error — instead of retrying without ever yielding, which held a shutting-down
    /// runtime forever (a test binary hung in `Runtime::drop` with one worker in this loop).
    async fn dispatch(self: &Arc<Self>, name: &str, mut job: Job) {
        for _ in 0..DISPATCH_TRIES {
            let handle = self.room_handle(name);
            match handle.tx.send(job).await {
                Ok(()) => return,
                Err(mpsc::error::SendError(back)) => {
                    self.registry.remove_if(name, handle.id);
                    job = back;
                    tokio::task::yield_now().await;
                }
            }
        }
        tracing::warn!(room = name, "no room actor took a job (shutting down?)");
    }

    /// The actor of room `name`, started (with what the store holds of the room) if needed.
    pub(crate) fn room_handle(self: &Arc<Self>, name: &str) -> RoomHandle {
        let mut rooms = self.registry.rooms.locked();
        if let Some(h) = rooms.get(name) {
            return h.clone();
        }
        let (tx, rx) = mpsc::channel(QUEUE);
        let handle = RoomHandle {
            tx,
            id: self.registry.next_id.fetch_add(1, Ordering::Relaxed),
            summary: Arc::new(Mutex::new(Summary::default())),
        };
        rooms.insert(name.to_owned(), handle.clone());
        drop(rooms);
        let ctx = RoomCtx::load(Arc::clone(self), name, Arc::clone(&handle.summary));
        tokio::spawn(run(ctx, rx, handle.id));
        handle
    }
}

/// The actor: jobs, timers (empty-room timeout, hybrid deadlines) and SFU health changes, one
/// at a time; retires once its room is gone and nothing is left.
async fn run(mut ctx: RoomCtx, mut rx: mpsc::Receiver<Job>, id: u64) {
    let mut health = ctx.app.link.as_ref().map(|l| l.connected());
    loop {
        let wait = ctx.next_deadline().map_or(Duration::from_secs(3600), |at| {
            Duration::from_millis(at.saturating_sub(ctx.app.now_ms()))
        });
        let health_changed = async {
            match health.as_mut() {
                Some(h) => h.changed().await.is_ok(),
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            job = rx.recv() => match job {
                Some(job) => job(&mut ctx).await,
                None => return,
            },
            _ = tokio::time::sleep(wait) => ctx.on_timer().await,
            alive = health_changed => {
                if alive {
                    ctx.on_sfu_health().await;
                } else {
                    health = None;
                }
            }
        }
        ctx.settle().await;
        if ctx.finished() && retire(&ctx, &mut rx, id) {
            ctx.app.release_home(&ctx.name);
            break;
        }
    }
    // Jobs that got in after the last check: to the room's next actor.
    while let Ok(job) = rx.try_recv() {
        let app = Arc::clone(&ctx.app);
        let name = ctx.name.clone();
        tokio::spawn(async move { app.dispatch(&name, job).await });
    }
}

/// Leaves the registry if no job is waiting; `false`: keep going.
fn retire(ctx: &RoomCtx, rx: &mut mpsc::Receiver<Job>, id: u64) -> bool {
    let mut rooms = ctx.app.registry.rooms.locked();
    if !rx.is_empty() {
        return false;
    }
    if rooms.get(&ctx.name).is_some_and(|h| h.id == id) {
        rooms.remove(&ctx.name);
    }
    rx.close();
    true
}

impl RoomCtx {
    /// A new actor's state: the room as the store has it (or none).
    fn load(app: Arc<App>, name: &str, summary: Arc<Mutex<Summary>>) -> Self {
        let stored = match app.store.load_room(name) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(room = name, error = %e, "room not loaded from the store");
                None
            }
        };
        let (room, saved) = stored.map_or((None, BTreeMap::new()), |r| (Some(r.room), r.tracks));
        let state = RoomsState {
            rooms: room.iter().map(|r| (r.name.clone(), r.clone())).collect(),
            next_id: 0,
        };
        let rooms = Rooms::with_ids(app.rooms_config.clone(), state, Arc::clone(&app.ids));
        let mut ctx = Self {
            unresumed: BTreeMap::new(),
            name: name.to_owned(),
            rooms,
            media: Media::default(),
            hybrid: hybrid::RoomHybrid::default(),
            saved: saved.clone(),
            stored: (room, saved),
            summary,
            app,
        };
        ctx.await_resumes();
        ctx.update_summary();
        ctx
    }

    /// This room, if it exists.
    pub(crate) fn room(&self) -> Option<&Room> {
        self.rooms.room(&self.name)
    }

    /// After every job and timer: the store gets what changed, the summary is refreshed.
    async fn settle(&mut self) {
        self.persist().await;
        self.update_summary();
    }

    /// Hands the room's changes to the store and waits until they are durable.
    pub(crate) async fn persist(&mut self) {
        let room = self.rooms.room(&self.name).cloned();
        let mut ops = diff_room(self.stored.0.as_ref(), room.as_ref());
        if room.is_some() {
            ops.extend(diff_tracks(&self.name, &self.stored.1, &self.saved));
        }
        let ids = self.app.ids.load(Ordering::Relaxed);
        if self.app.ids_stored.fetch_max(ids, Ordering::Relaxed) < ids {
            ops.push(StoreOp::IdsUsed(ids));
        }
        if ops.is_empty() {
            return;
        }
        if let Err(e) = self.app.store.apply(ops).await {
            tracing::error!(room = %self.name, error = %e, "room state not persisted");
        }
        self.stored = (room, self.saved.clone());
    }

    fn update_summary(&self) {
        let brief = self.room().map(|r| Brief {
            name: r.name.clone(),
            config: r.config.clone(),
            created_at_ms: r.created_at_ms,
            participants: r.participants.len(),
            tracks: r.participants.values().map(|p| p.tracks.len()).sum(),
        });
        let mode = self.hybrid.policy.as_ref().map(|p| p.mode());
        let sizes = self.media.sizes();
        let mut s = self.summary.locked();
        s.room = brief;
        s.mode = mode;
        s.sizes = sizes;
    }

    /// Nothing left for this actor: no room, no media, nobody admitted or waiting to join.
    fn finished(&self) -> bool {
        self.room().is_none()
            && self.media.is_empty()
            && self.hybrid.waiters.is_empty()
            && self
                .hybrid
                .policy
                .as_ref()
                .is_none_or(|p| p.members() == 0 && p.queued() == 0)
    }

    /// The earliest timer: the empty-room timeout or a hybrid deadline (unix ms).
    fn next_deadline(&self) -> Option<u64> {
        let room = self.rooms.poll_timeout();
        let policy = self.hybrid.policy.as_ref().and_then(|p| p.poll_timeout());
        room.into_iter()
            .chain(policy)
            .chain(self.ghost_deadline())
            .min()
    }

    async fn on_timer(&mut self) {
        let now = self.app.now_ms();
        self.expire_ghosts(now).await;
        let events = self.rooms.handle_timeout(now);
        self.emit(events);
        self.hybrid_timeout(now).await;
    }

    /// Numbers and publishes room events (SSE, webhooks) and tells the room's clients.
    pub(crate) fn emit(&mut self, events: Vec<RoomEvent>) {
        if events.is_empty() {
            return;
        }
        self.app.events.emit_room(&events, self.app.now_ms());
        for ev in &events {
            self.tell_clients(ev);
        }
    }
}
