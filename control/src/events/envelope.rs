//! [`EventEnvelope`] and the per-room [`EventLog`] that numbers them.
//!
//! Each room's events get `seq` 1, 2, 3… with no reuse, also across a
//! restart (the counters are persisted with the rooms) and across a room
//! being deleted and created again, so a receiver can order by `seq` and spot
//! gaps. `id` (`evt_<uuid v4>`) is the idempotency key: a retried webhook
//! carries the same id.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::room::RoomEvent;

/// One event as delivered by webhooks and SSE (the JSON body of both).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventEnvelope {
    /// `evt_<uuid v4>`, unique per event; de-duplicate on it.
    pub id: String,
    pub room: String,
    /// Per-room sequence number, from 1, increasing by 1.
    pub seq: u64,
    /// Event name, e.g. `participant_left` (same as `payload.event`).
    pub kind: String,
    /// When it happened, unix milliseconds.
    pub at_ms: u64,
    /// The event's fields (see [`crate::room::RoomEventKind`]).
    pub payload: serde_json::Value,
}

/// Assigns sequence numbers and ids. Its counters are the persisted part.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventLog {
    /// Last `seq` used per room name. Kept after a room is deleted so a
    /// re-created room keeps counting up (a few bytes per room name ever used).
    last_seq: BTreeMap<String, u64>,
}

impl EventLog {
    pub fn new() -> Self {
        Self::default()
    }

    /// Wraps `event` in the next envelope of its room.
    pub fn append(&mut self, event: &RoomEvent, at_ms: u64) -> EventEnvelope {
        let seq = self.last_seq.entry(event.room.clone()).or_insert(0);
        *seq += 1;
        EventEnvelope {
            id: format!("evt_{}", uuid_v4()),
            room: event.room.clone(),
            seq: *seq,
            kind: event.kind.name().to_owned(),
            at_ms,
            payload: serde_json::to_value(&event.kind)
                .expect("room events are plain data and always serialize"),
        }
    }

    /// Last `seq` given out in `room` (0 if none).
    pub fn last_seq(&self, room: &str) -> u64 {
        self.last_seq.get(room).copied().unwrap_or(0)
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
    }

    #[test]
    fn uuid_shape() {
        let id = uuid_v4();
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "4");
        assert!(matches!(&id[19..20], "8" | "9" | "a" | "b"));
    }
}
