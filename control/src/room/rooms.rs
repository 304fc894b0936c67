//! [`Rooms`]: the room registry and its lifecycle operations (create, list,
//! delete, join with identity replacement, leave, kick, empty timeout).
//! Role/control rules are in `roles.rs`, tracks and subscriptions in `tracks.rs`.
//!
//! Every operation checks everything first and mutates only when it will
//! succeed, so an `Err` leaves the state untouched.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::error::RoomError;
use super::event::{DeleteReason, LeaveReason, RoomEvent, RoomEventKind};
use super::model::{ControlState, Join, Participant, QualityTier, Room, RoomConfig, RoomsConfig};
use crate::auth::Role;

/// A set of rooms, plus the daemon's room settings. The server gives each room actor its own
/// `Rooms` holding that one room, with the node's shared id counter ([`Rooms::with_ids`]).
#[derive(Debug, Clone)]
pub struct Rooms {
    config: RoomsConfig,
    state: RoomsState,
    /// Shared with other `Rooms` of the node so ids stay unique across rooms; `None`: ids
    /// come from `state.next_id` alone.
    ids: Option<Arc<AtomicU64>>,
}

/// The persisted part of [`Rooms`] (see [`crate::store`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomsState {
    pub rooms: BTreeMap<String, Room>,
    /// Next number for server-assigned ids (`PA_<n>`, `TR_<n>`); persisted so
    /// ids are never reused across a restart.
    pub next_id: u64,
}

impl Rooms {
    pub fn new(config: RoomsConfig) -> Self {
        Self::from_state(config, RoomsState::default())
    }

    /// Rebuilds from a persisted state (after a restart).
    pub fn from_state(config: RoomsConfig, state: RoomsState) -> Self {
        Rooms {
            config,
            state,
            ids: None,
        }
    }

    /// Like [`Rooms::from_state`], taking ids (`PA_n`, `TR_n`) from `ids`, a counter shared by
    /// every `Rooms` of the node (it holds the last number used).
    pub fn with_ids(config: RoomsConfig, state: RoomsState, ids: Arc<AtomicU64>) -> Self {
        Rooms {
            config,
            state,
            ids: Some(ids),
        }
    }

    pub fn state(&self) -> &RoomsState {
        &self.state
    }

    pub fn config(&self) -> &RoomsConfig {
        &self.config
    }

    /// The quality tier of `role` for the dataplane's allocator.
    pub fn tier(&self, role: Role) -> QualityTier {
        self.config.tiers.tier(role)
    }

    pub fn room(&self, name: &str) -> Option<&Room> {
        self.state.rooms.get(name)
    }

    /// Rooms in name order.
    pub fn list(&self) -> impl Iterator<Item = &Room> {
        self.state.rooms.values()
    }

    pub fn participant(&self, room: &str, identity: &str) -> Option<&Participant> {
        self.room(room)?.participants.get(identity)
    }

    /// Creates `name`; creating an existing room is `Rejected`.
    pub fn create_room(
        &mut self,
        name: &str,
        config: RoomConfig,
        now_ms: u64,
    ) -> Result<Vec<RoomEvent>, RoomError> {
        validate_name("room", name, MAX_ROOM_NAME)?;
        validate_room_config(&config)?;
        if self.state.rooms.contains_key(name) {
            return Err(RoomError::rejected(format!("room {name:?} already exists")));
        }
        Ok(vec![self.insert_room(name, config, now_ms)])
    }

    /// Deletes `name` through the API: everyone leaves, then the room goes.
    pub fn delete_room(&mut self, name: &str) -> Result<Vec<RoomEvent>, RoomError> {
        self.remove_room(name, DeleteReason::Api)
    }

    /// Admits a participant. An identity already in the room is replaced
    /// ("resume"): the old session leaves (its tracks unpublished) and the new
    /// one joins, without counting twice against the limits.
    pub fn join(
        &mut self,
        room_name: &str,
        join: Join,
        now_ms: u64,
    ) -> Result<Vec<RoomEvent>, RoomError> {
        validate_identity(&join.identity)?;
        if let Some(name) = &join.name {
            validate_len("name", name, MAX_IDENTITY)?;
        }
        if let Some(metadata) = &join.metadata {
            validate_len("metadata", metadata, MAX_METADATA)?;
        }
        let mut events = Vec::new();
        if !self.state.rooms.contains_key(room_name) {
            if !self.config.auto_create {
                return Err(RoomError::room_not_found(room_name));
            }
            validate_name("room", room_name, MAX_ROOM_NAME)?;
            let config = self.config.default_room.clone();
            events.push(self.insert_room(room_name, config, now_ms));
        }
        let room = self.state.rooms.get(room_name).expect("ensured above");
        let identity = join.identity.as_str();
        let replacing = room.participants.contains_key(identity);
        let limit = room.config.max_participants as usize;
        if !replacing && room.participants.len() >= limit {
            return Err(RoomError::rejected(format!(
                "room {room_name:?} is full (max_participants = {limit})"
            )));
        }
        check_role_slot(room, identity, join.role)?;

        let sid = self.next_id("PA");
        let room = self.state.rooms.get_mut(room_name).expect("ensured above");
        if replacing {
            events.extend(remove_participant(room, identity, LeaveReason::Replaced));
        }
        room.participants.insert(
            join.identity.clone(),
            Participant {
                sid: sid.clone(),
                identity: join.identity.clone(),
                name: join.name.clone(),
                metadata: join.metadata,
                role: join.role,
                grants: join.grants,
                joined_at_ms: now_ms,
                tracks: BTreeMap::new(),
                subscriptions: BTreeSet::new(),
                control: ControlState::None,
            },
        );
        room.empty_since_ms = None;
        events.push(RoomEvent {
            room: room_name.to_owned(),
            kind: RoomEventKind::ParticipantJoined {
                identity: join.identity,
                sid,
                role: join.role,
                name: join.name,
            },
        });
        Ok(events)
    }

    /// The participant leaves on its own.
    pub fn leave(
        &mut self,
        room: &str,
        identity: &str,
        now_ms: u64,
    ) -> Result<Vec<RoomEvent>, RoomError> {
        self.depart(room, identity, LeaveReason::Left, now_ms)
    }

    /// An administrator removes the participant.
    pub fn kick(
        &mut self,
        room: &str,
        identity: &str,
        now_ms: u64,
    ) -> Result<Vec<RoomEvent>, RoomError> {
        self.depart(room, identity, LeaveReason::Kicked, now_ms)
    }

    /// The host ends the session: the room is deleted for everyone.
    pub fn end_session(&mut self, room: &str, by: &str) -> Result<Vec<RoomEvent>, RoomError> {
        let r = self.room_ref(room)?;
        let actor = r
            .participants
            .get(by)
            .ok_or_else(|| RoomError::participant_not_found(room, by))?;
        if actor.role != Role::Host {
            return Err(RoomError::forbidden(format!(
                "only the host may end the session ({by:?} is a {})",
                actor.role.as_str()
            )));
        }
        self.remove_room(room, DeleteReason::EndedByHost)
    }

    /// Deletes rooms that have been empty past their `empty_timeout_s`.
    pub fn handle_timeout(&mut self, now_ms: u64) -> Vec<RoomEvent> {
        let expired: Vec<String> = self
            .state
            .rooms
            .values()
            .filter(|r| empty_deadline(r).is_some_and(|d| d <= now_ms))
            .map(|r| r.name.clone())
            .collect();
        let mut events = Vec::new();
        for name in expired {
            events.extend(
                self.remove_room(&name, DeleteReason::EmptyTimeout)
                    .expect("room listed above"),
            );
        }
        events
    }

    /// When [`Rooms::handle_timeout`] next has work (unix millis).
    pub fn poll_timeout(&self) -> Option<u64> {
        self.state.rooms.values().filter_map(empty_deadline).min()
    }

    pub(crate) fn room_ref(&self, room: &str) -> Result<&Room, RoomError> {
        self.state
            .rooms
            .get(room)
            .ok_or_else(|| RoomError::room_not_found(room))
    }

    pub(crate) fn room_mut(&mut self, room: &str) -> Result<&mut Room, RoomError> {
        self.state
            .rooms
            .get_mut(room)
            .ok_or_else(|| RoomError::room_not_found(room))
    }

    pub(crate) fn next_id(&mut self, prefix: &str) -> String {
        self.state.next_id = match &self.ids {
            Some(ids) => ids.fetch_add(1, Ordering::Relaxed) + 1,
            None => self.state.next_id + 1,
        };
        format!("{prefix}_{}", self.state.next_id)
    }

    fn insert_room(&mut self, name: &str, config: RoomConfig, now_ms: u64) -> RoomEvent {
        self.state.rooms.insert(
            name.to_owned(),
            Room {
                name: name.to_owned(),
                config: config.clone(),
                created_at_ms: now_ms,
                empty_since_ms: Some(now_ms),
                participants: BTreeMap::new(),
            },
        );
        RoomEvent {
            room: name.to_owned(),
            kind: RoomEventKind::RoomCreated { config },
        }
    }

    fn depart(
        &mut self,
        room_name: &str,
        identity: &str,
        reason: LeaveReason,
        now_ms: u64,
    ) -> Result<Vec<RoomEvent>, RoomError> {
        let room = self.room_mut(room_name)?;
        if !room.participants.contains_key(identity) {
            return Err(RoomError::participant_not_found(room_name, identity));
        }
        let events = remove_participant(room, identity, reason);
        if room.participants.is_empty() {
            room.empty_since_ms = Some(now_ms);
        }
        Ok(events)
    }

    fn remove_room(
        &mut self,
        name: &str,
        reason: DeleteReason,
    ) -> Result<Vec<RoomEvent>, RoomError> {
        let room = self.room_mut(name)?;
        let identities: Vec<String> = room.participants.keys().cloned().collect();
        let mut events = Vec::new();
        for identity in identities {
            events.extend(remove_participant(
                room,
                &identity,
                LeaveReason::RoomDeleted,
            ));
        }
        self.state.rooms.remove(name);
        events.push(RoomEvent {
            room: name.to_owned(),
            kind: RoomEventKind::RoomDeleted { reason },
        });
        Ok(events)
    }
}

/// Refuses `role` for `identity` if the room's role limits are reached
/// (not counting `identity` itself, which may be resuming or changing role).
pub(crate) fn check_role_slot(room: &Room, identity: &str, role: Role) -> Result<(), RoomError> {
    match role {
        Role::Host => {
            if let Some(host) = room.host().filter(|h| h.identity != identity) {
                return Err(RoomError::rejected(format!(
                    "room {:?} already has a host ({:?}); a room has one host",
                    room.name, host.identity
                )));
            }
        }
        Role::Controller => {
            let max = room.config.max_controllers as usize;
            if room.count_role(Role::Controller, identity) >= max {
                return Err(RoomError::rejected(format!(
                    "room {:?} already has {max} controllers (max_controllers = {max})",
                    room.name
                )));
            }
        }
        Role::Viewer => {}
    }
    Ok(())
}

/// Removes `identity` (which must exist): its tracks are unpublished and
/// dropped from everyone's subscriptions, then it leaves.
pub(crate) fn remove_participant(
    room: &mut Room,
    identity: &str,
    reason: LeaveReason,
) -> Vec<RoomEvent> {
    let track_ids: Vec<String> = room.participants[identity].tracks.keys().cloned().collect();
    let mut events = Vec::new();
    for track_id in track_ids {
        events.push(unpublish_track(room, identity, &track_id));
    }
    let p = room
        .participants
        .remove(identity)
        .expect("caller checked the participant exists");
    events.push(RoomEvent {
        room: room.name.clone(),
        kind: RoomEventKind::ParticipantLeft {
            identity: p.identity,
            sid: p.sid,
            reason,
        },
    });
    events
}

/// Removes one track (which must exist) and every subscription to it.
pub(crate) fn unpublish_track(room: &mut Room, identity: &str, track_id: &str) -> RoomEvent {
    if let Some(p) = room.participants.get_mut(identity) {
        p.tracks.remove(track_id);
    }
    for p in room.participants.values_mut() {
        p.subscriptions.remove(track_id);
    }
    RoomEvent {
        room: room.name.clone(),
        kind: RoomEventKind::TrackUnpublished {
            identity: identity.to_owned(),
            track_id: track_id.to_owned(),
        },
    }
}

fn empty_deadline(room: &Room) -> Option<u64> {
    room.empty_since_ms
        .map(|since| since.saturating_add(room.config.empty_timeout_s.saturating_mul(1000)))
}

/// Names (rooms, identities) are non-empty, bounded and free of control
/// characters, since they end up in URLs, logs and JSON.
pub(crate) fn validate_name(field: &'static str, value: &str, max: usize) -> Result<(), RoomError> {
    if value.is_empty() {
        return Err(RoomError::invalid(field, "must not be empty"));
    }
    if value.chars().any(char::is_control) {
        return Err(RoomError::invalid(
            field,
            "must not contain control characters",
        ));
    }
    validate_len(field, value, max)
}

/// Identities use a safe character set (finding #6): ASCII letters, digits and `_ . @ -`. They
/// are shown by every client in the room, used as keys and put into URLs; no markup, quotes,
/// spaces or look-alike characters can pass (docs/protocol.md "Identities").
pub(crate) fn validate_identity(value: &str) -> Result<(), RoomError> {
    validate_name("identity", value, MAX_IDENTITY)?;
    if let Some(c) = value.chars().find(|c| !is_identity_char(*c)) {
        return Err(RoomError::invalid(
            "identity",
            format!("{c:?} is not allowed (letters, digits and _ . @ - only)"),
        ));
    }
    Ok(())
}

pub(crate) fn is_identity_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '@' | '-')
}

pub(crate) fn validate_len(field: &'static str, value: &str, max: usize) -> Result<(), RoomError> {
    if value.len() > max {
        return Err(RoomError::invalid(
            field,
            format!("longer than {max} bytes"),
        ));
    }
    Ok(())
}

fn validate_room_config(config: &RoomConfig) -> Result<(), RoomError> {
    if config.max_participants == 0 {
        return Err(RoomError::invalid("max_participants", "must be at least 1"));
    }
    if let Some(metadata) = &config.metadata {
        validate_len("metadata", metadata, MAX_METADATA)?;
    }
    Ok(())
}

pub(crate) const MAX_ROOM_NAME: usize = 128;
pub(crate) const MAX_IDENTITY: usize = 256;
pub(crate) const MAX_METADATA: usize = 64 * 1024;
