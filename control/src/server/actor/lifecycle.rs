//! Room operations that are not media: create, join (admission by the hybrid policy, then the
//! room's rules), leave, kick, delete, roles, grants, metadata, remote control, host transfer,
//! mute. Each changes the room through [`crate::room::Rooms`] (which checks first and changes
//! only on success), emits the events, and brings the media in line.

use serde_json::{json, Value};

use super::RoomCtx;
use crate::auth::{Grants, Role};
use crate::hybrid::Action;
use crate::limits::Refusal;
use crate::room::{Actor, Join, LeaveReason, RoomConfig, RoomEvent, RoomEventKind};
use crate::server::error::ApiError;
use crate::server::hub::ClientMsg;
use crate::signal::{self, Joined, Json, ParticipantInfo, RoomInfo, ServerMessage};

/// An admin's change to a participant (`PATCH .../participants/{identity}`).
#[derive(Debug, Default)]
pub(crate) struct ParticipantPatch {
    pub(crate) role: Option<Role>,
    pub(crate) grants: Option<Grants>,
    /// `Some(None)`: clear the metadata.
    pub(crate) metadata: Option<Option<String>>,
}

impl RoomCtx {
    /// `POST /api/rooms`.
    pub(crate) fn create_room(&mut self, config: RoomConfig) -> Result<Value, ApiError> {
        let now = self.app.now_ms();
        let events = self.rooms.create_room(&self.name, config, now)?;
        self.emit(events);
        Ok(self.room_json())
    }

    /// The room for the API: name, config, creation time, participant count and mode.
    pub(crate) fn room_json(&mut self) -> Value {
        let Some(r) = self.room() else {
            return json!({"name": self.name});
        };
        let mut out = json!({
            "name": r.name,
            "config": r.config,
            "created_at_ms": r.created_at_ms,
            "num_participants": r.participants.len(),
        });
        let info = serde_json::to_value(self.mode_info()).expect("mode info serializes");
        for k in ["mode", "setting", "migrating"] {
            out[k] = info[k].clone();
        }
        out
    }

    /// Admits `join` (already let in by the policy) into the room and registers its media.
    /// `signaling`: a WebSocket client (gets subscriber offers). On failure the policy's
    /// `actions` still run and it stops counting the participant. The participant's sid.
    pub(crate) async fn join(
        &mut self,
        join: Join,
        iat_s: u64,
        signaling: bool,
        actions: Vec<Action>,
    ) -> Result<String, ApiError> {
        let identity = join.identity.clone();
        let now = self.app.now_ms();
        let joined = self
            .refuse_if_kicked(&identity, iat_s)
            .and_then(|()| Ok(self.rooms.join(&self.name.clone(), join, now)?));
        let events = match joined {
            Ok(events) => events,
            Err(e) => {
                self.run_actions(actions).await;
                self.hybrid_leave(&identity).await;
                self.forget_policy_if_roomless();
                return Err(e);
            }
        };
        let sid = self
            .rooms
            .participant(&self.name, &identity)
            .map(|p| p.sid.clone())
            .ok_or_else(|| ApiError::rejected("the participant left while joining"))?;
        self.media_join(&identity, &sid, signaling).await;
        self.emit(events);
        self.sync_data_rights().await;
        Ok(sid)
    }

    /// The `joined` reply (docs/protocol.md) for `identity`.
    pub(crate) fn joined_reply(&mut self, identity: &str) -> Result<ServerMessage, ApiError> {
        let r = self
            .room()
            .ok_or_else(|| ApiError::not_found("room gone"))?;
        let me = r
            .participants
            .get(identity)
            .ok_or_else(|| ApiError::not_found("participant gone"))?;
        let participants = r
            .participants
            .values()
            .filter(|p| p.identity != identity)
            .map(ParticipantInfo::of)
            .collect();
        let room = RoomInfo {
            name: r.name.clone(),
            sid: format!("RM_{}", r.name),
        };
        let participant = ParticipantInfo::of(me);
        Ok(ServerMessage::Joined(Box::new(Joined {
            room,
            participant,
            participants,
            mode: self.mode_info(),
            ice_servers: self.app.ice_servers(identity),
        })))
    }

    /// A joined WebSocket client can hear now: the policy actions of its join, then offers of
    /// the tracks already in the room.
    pub(crate) async fn client_ready(&mut self, actions: Vec<Action>) {
        self.run_actions(actions).await;
        self.refresh_room().await;
    }

    /// `identity` leaves on its own (`leave`, or its WHIP/sidecar resource deleted).
    pub(crate) async fn leave(&mut self, identity: &str) -> Result<(), ApiError> {
        let now = self.app.now_ms();
        let events = self.rooms.leave(&self.name.clone(), identity, now)?;
        self.depart(events).await;
        Ok(())
    }

    /// A dev token never takes over an identity that is here now: one with a live signaling
    /// connection or a one-shot session (finding #5). A participant restored after a restart
    /// that has not resumed yet can be joined again.
    pub(crate) fn refuse_dev_takeover(&self, identity: &str) -> Result<(), ApiError> {
        let live = self.app.hub.is_connected(&self.name, identity)
            || self.media.peers.get(identity).is_some_and(|p| !p.signaling);
        if live {
            self.app
                .refusals
                .count(crate::limits::Refusal::DevIdentityTaken);
            return Err(ApiError::rejected(format!(
                "{identity:?} is in the room: a dev token cannot take over a connected participant"
            ))
            .with_field("identity"));
        }
        Ok(())
    }

    /// A signaling connection of `identity` as `sid` ended: it leaves, unless it was replaced
    /// by a newer session of the same identity (a resume).
    pub(crate) async fn connection_closed(&mut self, identity: &str, sid: &str) {
        let current = self
            .rooms
            .participant(&self.name, identity)
            .is_some_and(|p| p.sid == sid);
        if current {
            let _ = self.leave(identity).await;
        }
    }

    /// Refuses a join with a token issued at or before `identity` was kicked from this room,
    /// while the kick lasts (`control.kick_ban_s`, D38).
    pub(crate) fn refuse_if_kicked(&self, identity: &str, iat_s: u64) -> Result<(), ApiError> {
        let ban_s = self.rooms.config().lifetimes.kick_ban_s;
        if self
            .app
            .kicks
            .refuses(&self.name, identity, iat_s, self.app.now_ms(), ban_s)
        {
            self.app.refusals.count(Refusal::KickedRejoin);
            return Err(ApiError::forbidden(format!(
                "{identity:?} was kicked from this room: a token issued after the kick is needed"
            ))
            .with_field("token"));
        }
        Ok(())
    }

    /// An admin removes `identity`.
    pub(crate) async fn kick(&mut self, identity: &str) -> Result<(), ApiError> {
        let now = self.app.now_ms();
        let events = self
            .rooms
            .kick(&self.name.clone(), identity, now)
            .map_err(|e| with_room_field(e.into()))?;
        let ban_s = self.rooms.config().lifetimes.kick_ban_s;
        self.app.kicks.record(&self.name, identity, now, ban_s);
        self.depart(events).await;
        Ok(())
    }

    /// `DELETE /api/rooms/{room}`: everyone leaves, then the room goes.
    pub(crate) async fn delete_room(&mut self) -> Result<(), ApiError> {
        let events = self
            .rooms
            .delete_room(&self.name.clone())
            .map_err(|e| with_room_field(e.into()))?;
        for identity in departed(&events) {
            self.app.hub.send_to(
                &self.name,
                &identity,
                ClientMsg::Close(signal::LeaveReason::RoomDeleted),
            );
        }
        self.depart(events).await;
        Ok(())
    }

    /// Emits `events` and closes the media of everyone who left in them.
    async fn depart(&mut self, events: Vec<RoomEvent>) {
        let gone = departed(&events);
        self.emit(events);
        for identity in gone {
            self.media_leave(&identity).await;
        }
        self.sync_data_rights().await;
        self.forget_policy_if_roomless();
    }

    /// `PATCH .../participants/{identity}`: role, grants, metadata, in that order.
    pub(crate) async fn update_participant(
        &mut self,
        identity: &str,
        patch: ParticipantPatch,
    ) -> Result<ParticipantInfo, ApiError> {
        let name = self.name.clone();
        if self.rooms.participant(&name, identity).is_none() {
            return Err(ApiError::not_found(format!(
                "participant {identity:?} not in room {name:?}"
            ))
            .with_field("identity"));
        }
        let mut events = Vec::new();
        if let Some(role) = patch.role {
            events.extend(self.rooms.set_role(&name, identity, role)?);
        }
        if let Some(g) = patch.grants {
            events.extend(self.rooms.set_grants(&name, identity, g)?);
        }
        if let Some(metadata) = patch.metadata {
            events.extend(
                self.rooms
                    .set_metadata(&name, Actor::Admin, identity, metadata)?,
            );
        }
        self.emit(events);
        self.sync_room_tracks().await;
        self.sync_data_rights().await;
        let p = self.rooms.participant(&name, identity).ok_or_else(|| {
            ApiError::not_found(format!("participant {identity:?} left")).with_field("identity")
        })?;
        Ok(ParticipantInfo::of(p))
    }

    /// Mutes or unmutes a track, by its publisher or an admin; the dataplane follows.
    pub(crate) async fn mute(
        &mut self,
        by: Actor<'_>,
        track_sid: &str,
        muted: bool,
    ) -> Result<(), ApiError> {
        let events = self
            .rooms
            .mute_track(&self.name.clone(), by, track_sid, muted)?;
        self.emit(events);
        self.set_track_muted(track_sid, muted).await;
        Ok(())
    }

    /// An admin mutes `identity`'s `track_sid` (both must exist, each named in the error).
    pub(crate) async fn admin_mute(
        &mut self,
        identity: &str,
        track_sid: &str,
        muted: bool,
    ) -> Result<(), ApiError> {
        let name = self.name.clone();
        let p = self.rooms.participant(&name, identity).ok_or_else(|| {
            ApiError::not_found(format!("participant {identity:?} not in room {name:?}"))
                .with_field("identity")
        })?;
        if !p.tracks.contains_key(track_sid) {
            return Err(ApiError::not_found(format!(
                "track {track_sid:?} of {identity:?} not found"
            ))
            .with_field("track_sid"));
        }
        self.mute(Actor::Admin, track_sid, muted).await
    }

    /// Host transfer, by the host or an admin.
    pub(crate) async fn transfer_host(&mut self, by: Actor<'_>, to: &str) -> Result<(), ApiError> {
        let events = self
            .rooms
            .transfer_host(&self.name.clone(), by, to)
            .map_err(|e| with_room_field(e.into()))?;
        self.sync_data_rights().await;
        self.emit(events);
        Ok(())
    }

    /// Remote control between the host and its controllers; the input routes of the data
    /// channels follow before the answer (D87).
    pub(crate) async fn control(
        &mut self,
        by: &str,
        op: ControlOp,
        target: &str,
    ) -> Result<(), ApiError> {
        let name = self.name.clone();
        let events = match op {
            ControlOp::Request => self.rooms.request_control(&name, by)?,
            ControlOp::Grant => self.rooms.grant_control(&name, by, target)?,
            ControlOp::Revoke => self.rooms.revoke_control(&name, by, target)?,
        };
        // The dataplane first: a controller told it holds control finds its route there.
        self.sync_data_rights().await;
        self.emit(events);
        Ok(())
    }

    /// An input event from a controller holding control, to the host only.
    pub(crate) fn relay_input(&mut self, from: &str, event: Json<4096>) -> Result<(), ApiError> {
        let relay = self
            .rooms
            .relay_input(&self.name.clone(), from, event.into_value())?;
        let event = Json::new(relay.event).expect("the same bounded event");
        self.app.hub.send_to(
            &self.name,
            &relay.to,
            ClientMsg::Msg(ServerMessage::Input {
                from: relay.from,
                event,
            }),
        );
        Ok(())
    }

    /// A participant's own metadata.
    pub(crate) fn update_metadata(
        &mut self,
        identity: &str,
        metadata: Option<String>,
    ) -> Result<(), ApiError> {
        let events = self.rooms.set_metadata(
            &self.name.clone(),
            Actor::Participant(identity),
            identity,
            metadata,
        )?;
        self.emit(events);
        Ok(())
    }

    /// Whether `identity` is the room's host.
    pub(crate) fn is_host(&self, identity: &str) -> bool {
        self.rooms
            .participant(&self.name, identity)
            .is_some_and(|p| p.role == Role::Host)
    }
}

/// Remote-control operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ControlOp {
    Request,
    Grant,
    Revoke,
}

/// Identities that left in `events` (not those replaced by their own resume).
fn departed(events: &[RoomEvent]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match &e.kind {
            RoomEventKind::ParticipantLeft {
                identity, reason, ..
            } if *reason != LeaveReason::Replaced => Some(identity.clone()),
            _ => None,
        })
        .collect()
}

/// A `not_found` names the field it is about.
fn with_room_field(e: ApiError) -> ApiError {
    if e.code == "not_found" && e.field.is_none() {
        let f = if e.message.starts_with("participant") {
            "identity"
        } else if e.message.starts_with("track") {
            "track_sid"
        } else {
            "room"
        };
        e.with_field(f)
    } else {
        e
    }
}
