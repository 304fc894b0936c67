//! What a room tells its signaling clients when something changes (docs/protocol.md), as
//! [`ServerMessage`]s — the adapters decide how they look on the wire.

use super::RoomCtx;
use crate::room::{LeaveReason, RoomEvent, RoomEventKind};
use crate::server::hub::ClientMsg;
use crate::signal::{self, ParticipantInfo, ServerMessage, TrackInfo};

impl RoomCtx {
    /// The signaling side of a room event: who in the room hears what.
    pub(crate) fn tell_clients(&mut self, ev: &RoomEvent) {
        let room = self.name.as_str();
        let hub = &self.app.hub;
        let all = |msg: ServerMessage| hub.broadcast(room, None, &msg);
        match &ev.kind {
            RoomEventKind::ParticipantJoined { identity, .. } => {
                if let Some(p) = self.rooms.participant(room, identity) {
                    let participant = ParticipantInfo::of(p);
                    hub.broadcast(
                        room,
                        Some(identity),
                        &ServerMessage::ParticipantJoined { participant },
                    );
                }
            }
            RoomEventKind::ParticipantLeft {
                identity,
                sid,
                reason,
            } => {
                let msg = ServerMessage::ParticipantLeft {
                    sid: sid.clone(),
                    identity: identity.clone(),
                };
                hub.broadcast(room, Some(identity), &msg);
                if *reason == LeaveReason::Kicked {
                    hub.send_to(
                        room,
                        identity,
                        ClientMsg::Close(signal::LeaveReason::Kicked),
                    );
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
                    &ServerMessage::TrackPublished {
                        cid: None,
                        track: TrackInfo::of(track, &psid),
                        participant_sid: Some(psid),
                    },
                );
            }
            RoomEventKind::TrackUnpublished { track_id, .. } => {
                all(ServerMessage::TrackUnpublished {
                    track_sid: track_id.clone(),
                });
            }
            RoomEventKind::TrackMuted {
                track_id, muted, ..
            } => all(ServerMessage::TrackMuted {
                track_sid: track_id.clone(),
                muted: *muted,
            }),
            RoomEventKind::RoleChanged { identity, to, .. } => all(ServerMessage::RoleChanged {
                identity: identity.clone(),
                role: *to,
            }),
            RoomEventKind::ControlRequested { identity } => {
                let host = self
                    .rooms
                    .room(room)
                    .and_then(|r| r.host().map(|h| h.identity.clone()));
                if let Some(host) = host {
                    hub.send_to(
                        room,
                        &host,
                        ClientMsg::Msg(ServerMessage::ControlRequested {
                            identity: identity.clone(),
                        }),
                    );
                }
            }
            RoomEventKind::ControlGranted { identity, .. } => all(ServerMessage::ControlGranted {
                identity: identity.clone(),
            }),
            RoomEventKind::ControlRevoked { identity, .. } => all(ServerMessage::ControlRevoked {
                identity: identity.clone(),
            }),
            RoomEventKind::HostTransferred { to, .. } => all(ServerMessage::HostTransferred {
                identity: to.clone(),
            }),
            RoomEventKind::RoomDeleted { .. } => {
                self.hybrid.policy = None;
                all(ServerMessage::Leave {
                    reason: signal::LeaveReason::RoomDeleted,
                });
            }
            _ => {}
        }
    }
}
