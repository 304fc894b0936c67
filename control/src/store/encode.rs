//! The state file's bytes, kept per room: a write re-encodes only the rooms its ops changed
//! and copies the rest. Encoding the whole image on every group commit made each write cost
//! O(rooms) under the image lock — with 500 rooms (issue 14's churn), the writer thread spent
//! its time in `serde_json` while every join waited for it.
//!
//! The file is the same JSON document as [`PersistedState`] (docs/api.md "State"): the
//! node-wide fields first, then `"rooms"` with one room per line, in name order.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::{EventCounters, PersistedState, StoredEvent};

/// The node-wide part of the file (everything but `rooms`), encoded on every write: a few
/// counters, one `seq` per room and the undelivered events.
#[derive(Serialize)]
struct Head<'a> {
    version: u32,
    next_id: u64,
    events: &'a EventCounters,
    outbox: &'a [StoredEvent],
}

/// Each room's encoded entry (`"name":{...}`), by name.
#[derive(Debug, Default)]
pub(super) struct Encoder {
    rooms: BTreeMap<String, Vec<u8>>,
}

impl Encoder {
    /// Brings the entries of the rooms in `dirty` up to date with `state` (a room no longer in
    /// it is dropped) and encodes the node-wide part; call it under the image lock, then
    /// [`Encoder::file`] outside it.
    pub fn refresh(&mut self, state: &PersistedState, dirty: BTreeSet<String>) -> Vec<u8> {
        for name in dirty {
            self.rooms.remove(&name);
            if let Some(room) = state.rooms.get(&name) {
                let mut entry = serde_json::to_vec(&name).expect("a string serializes");
                entry.push(b':');
                serde_json::to_writer(&mut entry, room).expect("a room is plain data");
                self.rooms.insert(name, entry);
            }
        }
        debug_assert_eq!(
            self.rooms.len(),
            state.rooms.len(),
            "every room has an entry"
        );
        serde_json::to_vec(&Head {
            version: state.version,
            next_id: state.next_id,
            events: &state.events,
            outbox: &state.outbox,
        })
        .expect("the counters and events are plain data")
    }

    /// The whole file: `head` (from [`Encoder::refresh`]) with the rooms added to it.
    pub fn file(&self, head: &[u8]) -> Vec<u8> {
        let open = head.strip_suffix(b"}").expect("the head is a JSON object");
        let rooms: usize = self.rooms.values().map(|e| e.len() + 2).sum();
        let mut out = Vec::with_capacity(open.len() + rooms + 16);
        out.extend_from_slice(open);
        out.extend_from_slice(b",\n\"rooms\":{");
        for (i, entry) in self.rooms.values().enumerate() {
            out.extend_from_slice(if i == 0 { b"\n" } else { b",\n" });
            out.extend_from_slice(entry);
        }
        out.extend_from_slice(b"\n}}\n");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::room::{Room, RoomConfig};
    use crate::store::{PersistedRoom, StoreOp};

    fn put_room(name: &str) -> StoreOp {
        StoreOp::PutRoom {
            name: name.to_owned(),
            config: RoomConfig::default(),
            created_at_ms: 7,
            empty_since_ms: None,
        }
    }

    /// Applies `ops` to `state` and refreshes only the rooms they name, as the writer does.
    fn step(enc: &mut Encoder, state: &mut PersistedState, ops: Vec<StoreOp>) -> Vec<u8> {
        let dirty = ops
            .iter()
            .filter_map(|op| op.room_changed().map(str::to_owned))
            .collect();
        for op in ops {
            state.apply(op);
        }
        let head = enc.refresh(state, dirty);
        enc.file(&head)
    }

    #[test]
    fn the_file_reads_back_as_the_image_after_each_write() {
        let mut enc = Encoder::default();
        let mut state = PersistedState::empty();
        let bytes = step(&mut enc, &mut state, vec![]);
        let back: PersistedState = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(back, state, "{}", String::from_utf8_lossy(&bytes));

        let batches = vec![
            vec![
                put_room("b"),
                put_room("a \"quoted\"\n"),
                StoreOp::IdsUsed(9),
            ],
            vec![
                StoreOp::EventSeq {
                    room: "b".into(),
                    seq: 3,
                },
                put_room("c"),
            ],
            vec![StoreOp::DeleteRoom { name: "b".into() }],
            vec![StoreOp::PutRoom {
                name: "c".into(),
                config: RoomConfig::default(),
                created_at_ms: 8,
                empty_since_ms: Some(9),
            }],
            vec![
                StoreOp::DeleteRoom { name: "c".into() },
                StoreOp::DeleteRoom {
                    name: "a \"quoted\"\n".into(),
                },
            ],
        ];
        for ops in batches {
            let bytes = step(&mut enc, &mut state, ops);
            let back: PersistedState = serde_json::from_slice(&bytes).unwrap();
            assert_eq!(back, state, "{}", String::from_utf8_lossy(&bytes));
            // A room the ops did not touch is copied, not re-encoded: its entry is the same
            // bytes as a fresh encoding.
            let mut fresh = Encoder::default();
            let all = state.rooms.keys().cloned().collect();
            let head = fresh.refresh(&state, all);
            assert_eq!(fresh.file(&head), bytes);
        }
    }

    #[test]
    fn an_untouched_room_is_not_encoded_again() {
        let mut enc = Encoder::default();
        let mut state = PersistedState::empty();
        step(&mut enc, &mut state, vec![put_room("a"), put_room("b")]);
        // Change "a" behind the encoder's back: a write that names only "b" keeps a's old
        // entry, which shows that only the named rooms are encoded.
        state.rooms.insert(
            "a".into(),
            PersistedRoom {
                room: Room {
                    created_at_ms: 99,
                    ..state.rooms["a"].room.clone()
                },
                tracks: BTreeMap::new(),
            },
        );
        let bytes = step(&mut enc, &mut state, vec![put_room("b")]);
        let back: PersistedState = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(back.rooms["a"].room.created_at_ms, 7);
        assert_eq!(back.rooms.len(), 2);
    }
}
