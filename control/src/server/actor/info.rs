//! What a room tells its signaling clients when something changes (docs/protocol.md), and the
//! `ParticipantInfo` / `TrackInfo` shapes the protocol and the API share.

use serde_json::{json, Value};

use super::RoomCtx;
use crate::room::{LeaveReason, Participant, RoomEvent, RoomEventKind, Track};
use crate::server::hub::ClientMsg;

impl RoomCtx {
    /// The signaling side of a room event: who in the room hears what.
    pub(crate) fn tell_clients(&mut self, ev: &RoomEvent) {
        let room = self.name.as_str();
        let hub = &self.app.hub;
        match &ev.kind {
            RoomEventKind::ParticipantJoined { identity, .. } => {
                if let Some(info) = self.rooms.participant(room, identity).map(participant_info) {
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
                self.hybrid.policy = None;
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
