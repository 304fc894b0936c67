//! What changed in a room: every successful operation returns these, and the
//! daemon feeds them to the event log ([`crate::events`]) for webhooks and SSE
//! and to the signaling layer for the room's clients.

use serde::{Deserialize, Serialize};

use super::model::{RoomConfig, Track};
use crate::auth::{Grants, Role};

/// One change in `room`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomEvent {
    pub room: String,
    pub kind: RoomEventKind,
}

/// The change itself; serialized as the envelope's payload with its
/// snake_case [`RoomEventKind::name`] in `"event"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
#[non_exhaustive]
pub enum RoomEventKind {
    RoomCreated {
        config: RoomConfig,
    },
    RoomDeleted {
        reason: DeleteReason,
    },
    ParticipantJoined {
        identity: String,
        sid: String,
        role: Role,
        name: Option<String>,
    },
    ParticipantLeft {
        identity: String,
        sid: String,
        reason: LeaveReason,
    },
    ParticipantUpdated {
        identity: String,
        grants: Grants,
        metadata: Option<String>,
    },
    TrackPublished {
        identity: String,
        track: Track,
    },
    TrackUnpublished {
        identity: String,
        track_id: String,
    },
    TrackMuted {
        identity: String,
        track_id: String,
        muted: bool,
    },
    RoleChanged {
        identity: String,
        from: Role,
        to: Role,
    },
    ControlRequested {
        identity: String,
    },
    ControlGranted {
        identity: String,
        by: String,
    },
    ControlRevoked {
        identity: String,
        by: String,
    },
    HostTransferred {
        from: Option<String>,
        to: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeleteReason {
    /// Deleted through the HTTP API.
    Api,
    /// Empty for longer than its `empty_timeout_s`.
    EmptyTimeout,
    /// The host ended the session.
    EndedByHost,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LeaveReason {
    Left,
    Kicked,
    /// The same identity joined again (resume); a join event follows.
    Replaced,
    RoomDeleted,
}

impl RoomEventKind {
    /// The snake_case event name used in envelopes, webhooks and SSE.
    pub fn name(&self) -> &'static str {
        match self {
            RoomEventKind::RoomCreated { .. } => "room_created",
            RoomEventKind::RoomDeleted { .. } => "room_deleted",
            RoomEventKind::ParticipantJoined { .. } => "participant_joined",
            RoomEventKind::ParticipantLeft { .. } => "participant_left",
            RoomEventKind::ParticipantUpdated { .. } => "participant_updated",
            RoomEventKind::TrackPublished { .. } => "track_published",
            RoomEventKind::TrackUnpublished { .. } => "track_unpublished",
            RoomEventKind::TrackMuted { .. } => "track_muted",
            RoomEventKind::RoleChanged { .. } => "role_changed",
            RoomEventKind::ControlRequested { .. } => "control_requested",
            RoomEventKind::ControlGranted { .. } => "control_granted",
            RoomEventKind::ControlRevoked { .. } => "control_revoked",
            RoomEventKind::HostTransferred { .. } => "host_transferred",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_matches_serde_tag() {
        let kind = RoomEventKind::TrackMuted {
            identity: "a".into(),
            track_id: "TR_1".into(),
            muted: true,
        };
        let json = serde_json::to_value(&kind).unwrap();
        assert_eq!(json["event"], kind.name());
    }
}
