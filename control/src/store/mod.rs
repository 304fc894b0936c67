//! The control daemon's durable state behind one trait, [`Store`]: rooms, participants (roles,
//! grants, control), published tracks (what a restarted daemon needs to adopt a running
//! dataplane's calls), the id counter and the event counters (each room's `seq`, the seq floor,
//! the node-wide event number).
//!
//! The interface is **operations** ([`StoreOp`]: put/delete a room, a participant, a track; set
//! a counter), applied in order and durable when [`Store::apply`] returns — not "save the whole
//! JSON". The embedded implementation ([`FileStore`]) keeps an image in memory and writes one
//! versioned file (temp file + fsync + rename + directory fsync, 0600 in a 0700 directory),
//! committing concurrent calls in one write; the multi-node issue adds a Redis implementation
//! where each op is a hash field (`sl:room:{r}` ...). [`MemoryStore`] keeps the image only.
//!
//! What changed is found by [`diff_room`] (and [`diff_tracks`]): the caller keeps the last
//! persisted copy of what it owns and hands the store the difference.
//!
//! Events are written ahead of delivery: each batch's envelopes go into the `outbox` with their
//! counters, and leave it once handed to SSE and the webhook lanes; a restart delivers what a
//! crash left there first (at least once, same `evt_` ids), so no committed event is lost
//! between the store and its receivers.
//!
//! File format (`FORMAT_VERSION` 2, docs/api.md "State"; written by `encode`): `{"version": 2, "next_id", "rooms":
//! {name: {Room fields, "tracks": {sid: SavedTrack}}}, "events": {"last_seq": {room: seq},
//! "floor", "n"}, "outbox": [{"n", "event": envelope}]}`. Version 1 — the rooms alone (`{"rooms", "next_id"}`, or `{"version": 1,
//! "rooms": {...}, "events": {...}}`) with the published tracks in `<stem>.tracks.json` beside it
//! — is migrated on load: read both, write version 2, remove the tracks file.
//!
//! A corrupt file is moved aside (`<file>.corrupt-<unix ms>`), logged at error level naming both
//! paths, and start-up continues empty: losing room state costs reconnects (clients rejoin, rooms
//! are created again, the dataplane's calls keep running), refusing to start costs the node. A
//! file of a newer format version, or one that cannot be read, stops start-up with a message
//! naming it: a downgrade must not destroy data, and a permission problem is the operator's.

mod encode;
mod file;
mod memory;

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;

use serde::{Deserialize, Serialize};

use crate::events::{EventEnvelope, EventLog};
use crate::room::{MediaKind, Participant, Room, RoomConfig};

pub use file::FileStore;
pub use memory::MemoryStore;

/// Version written by this build.
pub const FORMAT_VERSION: u32 = 2;

/// A boxed future of a store call (the trait is used as `dyn Store`).
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Durable state, by operations. See the module docs.
pub trait Store: Send + Sync + std::fmt::Debug {
    /// Everything persisted (at start-up).
    fn load(&self) -> Result<PersistedState, StoreError>;

    /// One room with its tracks, as persisted (a room actor starting).
    fn load_room(&self, name: &str) -> Result<Option<PersistedRoom>, StoreError>;

    /// Applies `ops` in order; once it resolves `Ok`, a crash keeps them.
    fn apply(&self, ops: Vec<StoreOp>) -> StoreFuture<'_, Result<(), StoreError>>;
}

/// One change to the durable state.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreOp {
    /// Creates the room or updates its own fields (participants and tracks are separate ops).
    PutRoom {
        name: String,
        config: RoomConfig,
        created_at_ms: u64,
        empty_since_ms: Option<u64>,
    },
    /// Removes the room with its participants and tracks.
    DeleteRoom {
        name: String,
    },
    PutParticipant {
        room: String,
        participant: Box<Participant>,
    },
    DeleteParticipant {
        room: String,
        identity: String,
    },
    PutTrack {
        room: String,
        sid: String,
        track: Box<SavedTrack>,
    },
    DeleteTrack {
        room: String,
        sid: String,
    },
    /// Ids (`PA_n`, `TR_n`) used up to `n`; never lowered.
    IdsUsed(u64),
    /// The room's last event `seq`.
    EventSeq {
        room: String,
        seq: u64,
    },
    /// The room was deleted at `seq`: its counter goes, the floor rises to `seq`.
    RetireEventSeq {
        room: String,
        seq: u64,
    },
    /// Node-wide event number used up to `n`; never lowered.
    EventsUsed(u64),
    /// Events committed, not yet delivered.
    Outbox(Vec<StoredEvent>),
    /// Events up to node-wide number `n` were handed to SSE and the webhook lanes.
    Delivered(u64),
}

impl StoreOp {
    /// The room whose entry in `rooms` the op changes, if any (the file encoder re-encodes
    /// only those rooms).
    pub fn room_changed(&self) -> Option<&str> {
        match self {
            StoreOp::PutRoom { name, .. } | StoreOp::DeleteRoom { name } => Some(name),
            StoreOp::PutParticipant { room, .. }
            | StoreOp::DeleteParticipant { room, .. }
            | StoreOp::PutTrack { room, .. }
            | StoreOp::DeleteTrack { room, .. } => Some(room),
            StoreOp::IdsUsed(_)
            | StoreOp::EventSeq { .. }
            | StoreOp::RetireEventSeq { .. }
            | StoreOp::EventsUsed(_)
            | StoreOp::Outbox(_)
            | StoreOp::Delivered(_) => None,
        }
    }
}

/// An event waiting in the outbox, with its node-wide number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredEvent {
    pub n: u64,
    pub event: EventEnvelope,
}

/// Everything that survives a restart (the file's content).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersistedState {
    /// Format version, [`FORMAT_VERSION`]; a newer one is refused, not misread.
    pub version: u32,
    /// Highest id number used (`PA_n`, `TR_n`).
    pub next_id: u64,
    pub rooms: BTreeMap<String, PersistedRoom>,
    pub events: EventCounters,
    /// Committed events not yet delivered when the file was written.
    #[serde(default)]
    pub outbox: Vec<StoredEvent>,
}

/// A room with its published tracks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersistedRoom {
    #[serde(flatten)]
    pub room: Room,
    /// Track sid → what adopting it back from the dataplane needs.
    #[serde(default)]
    pub tracks: BTreeMap<String, SavedTrack>,
}

/// The event counters ([`EventLog`]'s persisted part).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventCounters {
    pub last_seq: BTreeMap<String, u64>,
    pub floor: u64,
    pub n: u64,
}

/// One published track as persisted: what ties a room track (`TR_n`) to the dataplane's
/// `TrackId` and to the codec its publisher negotiated, so a restarted daemon can offer it to
/// participants who join later.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedTrack {
    pub owner: String,
    pub owner_sid: String,
    /// The dataplane's track id.
    pub dp: u64,
    pub kind: MediaKind,
    pub codec: SavedCodec,
}

/// A negotiated codec in a serializable form (`fmtp` as its raw SDP value).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedCodec {
    pub pt: u8,
    pub name: String,
    pub clock_rate: u32,
    pub channels: Option<u16>,
    pub fmtp: Option<String>,
    pub rtx_pt: Option<u8>,
    pub rtcp_fb: Vec<String>,
}

/// Why the state could not be loaded or saved. Every variant names the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error("state file {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("state file {} has format version {version}, this build reads up to {FORMAT_VERSION}; use a newer sluice or move the file away", path.display())]
    UnsupportedVersion { path: PathBuf, version: u32 },
    /// The writer is gone (the daemon is stopping).
    #[error("state store closed")]
    Closed,
}

impl PersistedState {
    /// An empty state of the current version.
    pub fn empty() -> Self {
        Self {
            version: FORMAT_VERSION,
            ..Self::default()
        }
    }

    /// Applies one op to the image.
    pub fn apply(&mut self, op: StoreOp) {
        match op {
            StoreOp::PutRoom {
                name,
                config,
                created_at_ms,
                empty_since_ms,
            } => match self.rooms.get_mut(&name) {
                Some(r) => {
                    r.room.config = config;
                    r.room.created_at_ms = created_at_ms;
                    r.room.empty_since_ms = empty_since_ms;
                }
                None => {
                    self.rooms.insert(
                        name.clone(),
                        PersistedRoom {
                            room: Room {
                                name,
                                config,
                                created_at_ms,
                                empty_since_ms,
                                participants: BTreeMap::new(),
                            },
                            tracks: BTreeMap::new(),
                        },
                    );
                }
            },
            StoreOp::DeleteRoom { name } => {
                self.rooms.remove(&name);
            }
            StoreOp::PutParticipant { room, participant } => {
                if let Some(r) = self.rooms.get_mut(&room) {
                    r.room
                        .participants
                        .insert(participant.identity.clone(), *participant);
                }
            }
            StoreOp::DeleteParticipant { room, identity } => {
                if let Some(r) = self.rooms.get_mut(&room) {
                    r.room.participants.remove(&identity);
                }
            }
            StoreOp::PutTrack { room, sid, track } => {
                if let Some(r) = self.rooms.get_mut(&room) {
                    r.tracks.insert(sid, *track);
                }
            }
            StoreOp::DeleteTrack { room, sid } => {
                if let Some(r) = self.rooms.get_mut(&room) {
                    r.tracks.remove(&sid);
                }
            }
            StoreOp::IdsUsed(n) => self.next_id = self.next_id.max(n),
            StoreOp::EventSeq { room, seq } => {
                let s = self.events.last_seq.entry(room).or_default();
                *s = (*s).max(seq);
            }
            StoreOp::RetireEventSeq { room, seq } => {
                self.events.last_seq.remove(&room);
                self.events.floor = self.events.floor.max(seq);
            }
            StoreOp::EventsUsed(n) => self.events.n = self.events.n.max(n),
            StoreOp::Outbox(events) => self.outbox.extend(events),
            StoreOp::Delivered(n) => self.outbox.retain(|e| e.n > n),
        }
    }

    /// The event log these counters continue.
    pub fn event_log(&self) -> EventLog {
        EventLog::from_parts(
            self.events.last_seq.clone(),
            self.events.floor,
            self.events.n,
        )
    }
}

/// The ops that turn `before` into `after` (either may be absent: created, deleted). Rooms are
/// a few dozen participants, so comparing them whole after each operation is cheap, and the
/// ops stay exact: one participant changed, one op.
pub fn diff_room(before: Option<&Room>, after: Option<&Room>) -> Vec<StoreOp> {
    let mut ops = Vec::new();
    match (before, after) {
        (None, None) => {}
        (Some(b), None) => ops.push(StoreOp::DeleteRoom {
            name: b.name.clone(),
        }),
        (before, Some(a)) => {
            let meta_changed = before.is_none_or(|b| {
                b.config != a.config
                    || b.created_at_ms != a.created_at_ms
                    || b.empty_since_ms != a.empty_since_ms
            });
            if meta_changed {
                ops.push(StoreOp::PutRoom {
                    name: a.name.clone(),
                    config: a.config.clone(),
                    created_at_ms: a.created_at_ms,
                    empty_since_ms: a.empty_since_ms,
                });
            }
            let empty = BTreeMap::new();
            let old = before.map_or(&empty, |b| &b.participants);
            for (identity, p) in &a.participants {
                if old.get(identity) != Some(p) {
                    ops.push(StoreOp::PutParticipant {
                        room: a.name.clone(),
                        participant: Box::new(p.clone()),
                    });
                }
            }
            for identity in old.keys().filter(|i| !a.participants.contains_key(*i)) {
                ops.push(StoreOp::DeleteParticipant {
                    room: a.name.clone(),
                    identity: identity.clone(),
                });
            }
        }
    }
    ops
}

/// The ops that turn a room's saved tracks `before` into `after`.
pub fn diff_tracks(
    room: &str,
    before: &BTreeMap<String, SavedTrack>,
    after: &BTreeMap<String, SavedTrack>,
) -> Vec<StoreOp> {
    let mut ops = Vec::new();
    for (sid, t) in after {
        if before.get(sid) != Some(t) {
            ops.push(StoreOp::PutTrack {
                room: room.to_owned(),
                sid: sid.clone(),
                track: Box::new(t.clone()),
            });
        }
    }
    for sid in before.keys().filter(|s| !after.contains_key(*s)) {
        ops.push(StoreOp::DeleteTrack {
            room: room.to_owned(),
            sid: sid.clone(),
        });
    }
    ops
}
