//! [`EventEnvelope`] and the per-room [`EventLog`] that numbers them.
//!
//! Each room's events get `seq` n+1, n+2, … with no reuse, also across a
//! restart (the counters are persisted with the rooms) and across a room
//! being deleted and created again, so a receiver can order by `seq` and spot
//! gaps. A room starts at 1, or above every `seq` a deleted room had (the
//! `floor`), so the log holds counters only for rooms that exist. `id`
//! (`evt_<uuid v4>`) is the idempotency key: a retried webhook carries the
//! same id. `n` numbers every event of the node (the all-rooms SSE stream's id).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::room::RoomEvent;

/// One event as delivered by webhooks and SSE (the JSON body of both, docs/api.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventEnvelope {
    /// `evt_<uuid v4>`, unique per event; de-duplicate on it.
    pub id: String,
    pub room: String,
    /// Per-room sequence number, increasing by 1.
    pub seq: u64,
    /// Event name, e.g. `participant_left` (same as `payload.event` for room events).
    #[serde(rename = "event")]
    pub kind: String,
    /// When it happened, unix milliseconds.
    #[serde(rename = "created_at_ms")]
    pub at_ms: u64,
    /// The event's fields (see [`crate::room::RoomEventKind`]).
    pub payload: serde_json::Value,
    /// Node-wide event number (the all-rooms SSE stream's `id:`); not part of the body.
    #[serde(skip)]
    pub n: u64,
}

/// Assigns sequence numbers and ids. Its counters are the persisted part.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventLog {
    /// Last `seq` used per existing room.
    last_seq: BTreeMap<String, u64>,
    /// Highest `seq` any deleted room reached: where a new room starts.
    #[serde(default)]
    floor: u64,
    /// Last node-wide event number.
    #[serde(default)]
    n: u64,
}

impl EventLog {
    pub fn new() -> Self {
        Self::default()
    }

    /// The next node-wide number, for an event another node numbered (its `seq` and id are
    /// the room's; `n` is this node's stream position).
    pub fn next_n(&mut self) -> u64 {
        self.n += 1;
        self.n
    }

    /// Wraps `event` in the next envelope of its room.
    pub fn append(&mut self, event: &RoomEvent, at_ms: u64) -> EventEnvelope {
        let payload = serde_json::to_value(&event.kind)
            .expect("room events are plain data and always serialize");
        self.append_named(&event.room, event.kind.name(), payload, at_ms)
    }

    /// The next envelope of `room` for an event outside [`crate::room::RoomEventKind`] (the
    /// hybrid policy's `room_mode_changed`, ...). A `room_deleted` retires the room's counter
    /// into the floor.
    pub fn append_named(
        &mut self,
        room: &str,
        kind: &str,
        payload: serde_json::Value,
        at_ms: u64,
    ) -> EventEnvelope {
        let floor = self.floor;
        let seq = self.last_seq.entry(room.to_owned()).or_insert(floor);
        *seq += 1;
        let seq = *seq;
        if kind == "room_deleted" {
            self.last_seq.remove(room);
            self.floor = self.floor.max(seq);
        }
        self.n += 1;
        EventEnvelope {
            id: format!("evt_{}", uuid_v4()),
            room: room.to_owned(),
            seq,
            kind: kind.to_owned(),
            at_ms,
            payload,
            n: self.n,
        }
    }

    /// Last `seq` given out in `room` (the floor if none yet).
    pub fn last_seq(&self, room: &str) -> u64 {
        self.last_seq.get(room).copied().unwrap_or(self.floor)
    }

    /// Last node-wide event number.
    pub fn last_n(&self) -> u64 {
        self.n
    }

    /// Rooms with a counter, and their last `seq`.
    pub fn rooms(&self) -> impl Iterator<Item = (&str, u64)> {
        self.last_seq.iter().map(|(r, s)| (r.as_str(), *s))
    }

    /// The seq floor (see the module docs).
    pub fn floor(&self) -> u64 {
        self.floor
    }

    /// Rebuilds a log from persisted counters.
    pub fn from_parts(rooms: impl IntoIterator<Item = (String, u64)>, floor: u64, n: u64) -> Self {
        EventLog {
            last_seq: rooms.into_iter().collect(),
            floor,
            n,
        }
    }
}

/// A random (version 4, RFC 9562 §5.4) UUID in its 8-4-4-4-12 hex form.
pub(crate) fn uuid_v4() -> String {
    let mut b = [0u8; 16];
    aws_lc_rs::rand::fill(&mut b).expect("the system RNG does not fail after startup");
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex = super::signature::hex(&b);
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::room::{LeaveReason, RoomEventKind};

    fn left(room: &str) -> RoomEvent {
        RoomEvent {
            room: room.into(),
            kind: RoomEventKind::ParticipantLeft {
                identity: "a".into(),
                sid: "PA_1".into(),
                reason: LeaveReason::Left,
            },
        }
    }

    #[test]
    fn seq_is_per_room_and_ids_unique() {
        let mut log = EventLog::new();
        let a1 = log.append(&left("a"), 10);
        let b1 = log.append(&left("b"), 11);
        let a2 = log.append(&left("a"), 12);
        assert_eq!((a1.seq, b1.seq, a2.seq), (1, 1, 2));
        assert_ne!(a1.id, a2.id);
        assert_eq!(a1.kind, "participant_left");
        assert_eq!(a1.payload["reason"], "left");
        assert_eq!(log.last_seq("a"), 2);
        assert_eq!((a1.n, b1.n, a2.n), (1, 2, 3));
    }

    #[test]
    fn a_deleted_room_never_repeats_a_seq_and_is_forgotten() {
        let mut log = EventLog::new();
        log.append(&left("a"), 1);
        log.append(&left("a"), 2);
        let del = log.append_named("a", "room_deleted", serde_json::json!({}), 3);
        assert_eq!(del.seq, 3);
        assert_eq!(log.rooms().count(), 0, "no counter kept for a deleted room");
        let again = log.append(&left("a"), 4);
        assert_eq!(again.seq, 4, "a re-created room continues above the floor");
        let other = log.append(&left("b"), 5);
        assert_eq!(other.seq, 4);
        let json = serde_json::to_value(&again).unwrap();
        assert_eq!(json["event"], "participant_left");
        assert!(json.get("n").is_none() && json.get("created_at_ms").is_some());
    }

    #[test]
    fn uuid_shape() {
        let id = uuid_v4();
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "4");
        assert!(matches!(&id[19..20], "8" | "9" | "a" | "b"));
    }
}
