//! Handing the room state to the [`Store`](crate::store::Store): after changes (coalesced over
//! 100 ms), the rooms and published tracks are compared with what the store last got and only
//! the difference goes ([`crate::store::diff_room`]). Event counters are committed by the event
//! pipeline itself, before each event is delivered (`events.rs`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use super::adopt::TrackIndex;
use super::App;
use crate::room::Room;
use crate::store::{diff_room, diff_tracks, PersistedState, StoreOp};

/// What the store holds (as far as this process knows).
#[derive(Debug, Default)]
pub(crate) struct Persisted {
    pub(crate) rooms: BTreeMap<String, Room>,
    pub(crate) tracks: TrackIndex,
    pub(crate) next_id: u64,
}

impl Persisted {
    pub(crate) fn from_snapshot(s: &PersistedState) -> Self {
        Self {
            rooms: s
                .rooms
                .iter()
                .map(|(n, r)| (n.clone(), r.room.clone()))
                .collect(),
            tracks: s
                .rooms
                .iter()
                .filter(|(_, r)| !r.tracks.is_empty())
                .map(|(n, r)| (n.clone(), r.tracks.clone()))
                .collect(),
            next_id: s.next_id,
        }
    }
}

impl App {
    /// Hands what changed since the last call to the store and waits until it is durable.
    pub(crate) async fn persist(&self) {
        let mut persisted = self.persisted.lock().await;
        let (rooms, next_id) = {
            let r = self.rooms.lock().expect("rooms lock");
            (r.state().rooms.clone(), r.state().next_id)
        };
        let tracks = self.track_index.lock().expect("index lock").clone();
        let mut ops = Vec::new();
        let names: std::collections::BTreeSet<&String> =
            rooms.keys().chain(persisted.rooms.keys()).collect();
        for name in names {
            let before = persisted.rooms.get(name);
            let after = rooms.get(name);
            ops.extend(diff_room(before, after));
            if after.is_some() {
                let empty = BTreeMap::new();
                ops.extend(diff_tracks(
                    name,
                    persisted.tracks.get(name).unwrap_or(&empty),
                    tracks.get(name).unwrap_or(&empty),
                ));
            }
        }
        if next_id > persisted.next_id {
            ops.push(StoreOp::IdsUsed(next_id));
        }
        if ops.is_empty() {
            return;
        }
        if let Err(e) = self.store.apply(ops).await {
            tracing::error!(error = %e, "state not persisted");
        }
        persisted.rooms = rooms;
        persisted.tracks = tracks;
        persisted.next_id = next_id;
    }
}

/// Persists after changes, at most once per 100 ms.
pub(crate) async fn persist_loop(app: Arc<App>) {
    loop {
        app.dirty.notified().await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        app.persist().await;
    }
}
