//! Roles and remote control (seed 000, "Decision 5"): a controller requests
//! control, the host grants or revokes it, input goes from a granted
//! controller to the host only; the host role moves only to a controller;
//! an administrator changes roles, grants and metadata.
//!
//! Losing a role or a grant also takes away what it allowed: tracks the new
//! role/grants may not publish are unpublished, and control is cleared for
//! anyone who stops being a controller.

use serde::{Deserialize, Serialize};

use super::error::RoomError;
use super::event::{RoomEvent, RoomEventKind};
use super::model::{Actor, ControlState, Room};
use super::rooms::{check_role_slot, unpublish_track, validate_len, Rooms, MAX_METADATA};
use crate::auth::{Grants, Role};

/// An input event (mouse, keyboard...) to hand to the host's connection.
/// The payload is opaque here; the signaling layer bounds its size.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputRelay {
    /// The host's identity: the only recipient.
    pub to: String,
    pub from: String,
    pub event: serde_json::Value,
}

impl Rooms {
    /// A controller asks the host for control. Asking again (or while
    /// holding control) changes nothing.
    pub fn request_control(
        &mut self,
        room_name: &str,
        identity: &str,
    ) -> Result<Vec<RoomEvent>, RoomError> {
        let room = self.room_mut(room_name)?;
        let p = participant_mut(room, room_name, identity)?;
        if p.role != Role::Controller {
            return Err(RoomError::forbidden(format!(
                "only controllers may request control ({identity:?} is a {})",
                p.role.as_str()
            )));
        }
        if p.control != ControlState::None {
            return Ok(Vec::new());
        }
        p.control = ControlState::Requested;
        Ok(vec![event(
            room_name,
            RoomEventKind::ControlRequested {
                identity: identity.to_owned(),
            },
        )])
    }

    /// The host gives `to` (a controller) control, with or without a request.
    pub fn grant_control(
        &mut self,
        room_name: &str,
        by: &str,
        to: &str,
    ) -> Result<Vec<RoomEvent>, RoomError> {
        let room = self.room_ref(room_name)?;
        require_host(room, room_name, by, "grant control")?;
        let target = room
            .participants
            .get(to)
            .ok_or_else(|| RoomError::participant_not_found(room_name, to))?;
        if target.role != Role::Controller {
            return Err(RoomError::rejected(format!(
                "only controllers can be granted control ({to:?} is a {})",
                target.role.as_str()
            )));
        }
        if target.control == ControlState::Granted {
            return Ok(Vec::new());
        }
        let granted = room
            .participants
            .values()
            .filter(|p| p.control == ControlState::Granted)
            .count();
        let max = room.config.max_controllers as usize;
        if granted >= max {
            return Err(RoomError::rejected(format!(
                "{granted} controllers already hold control (max_controllers = {max})"
            )));
        }
        let room = self.room_mut(room_name)?;
        participant_mut(room, room_name, to)?.control = ControlState::Granted;
        Ok(vec![event(
            room_name,
            RoomEventKind::ControlGranted {
                identity: to.to_owned(),
                by: by.to_owned(),
            },
        )])
    }

    /// The host takes control back from `from` (or refuses its request). A
    /// controller may also give up its own control.
    pub fn revoke_control(
        &mut self,
        room_name: &str,
        by: &str,
        from: &str,
    ) -> Result<Vec<RoomEvent>, RoomError> {
        let room = self.room_ref(room_name)?;
        if by != from {
            require_host(room, room_name, by, "revoke control")?;
        }
        let room = self.room_mut(room_name)?;
        let p = participant_mut(room, room_name, from)?;
        if p.control == ControlState::None {
            return Ok(Vec::new());
        }
        p.control = ControlState::None;
        Ok(vec![event(
            room_name,
            RoomEventKind::ControlRevoked {
                identity: from.to_owned(),
                by: by.to_owned(),
            },
        )])
    }

    /// Routes an input event from a controller holding control to the host.
    pub fn relay_input(
        &self,
        room_name: &str,
        from: &str,
        input: serde_json::Value,
    ) -> Result<InputRelay, RoomError> {
        let room = self.room_ref(room_name)?;
        let p = room
            .participants
            .get(from)
            .ok_or_else(|| RoomError::participant_not_found(room_name, from))?;
        if p.role != Role::Controller || p.control != ControlState::Granted {
            return Err(RoomError::forbidden(format!(
                "{from:?} has not been granted control; input is refused"
            )));
        }
        let host = room
            .host()
            .ok_or_else(|| RoomError::rejected(format!("room {room_name:?} has no host")))?;
        Ok(InputRelay {
            to: host.identity.clone(),
            from: from.to_owned(),
            event: input,
        })
    }

    /// Makes controller `to` the host; the old host (if any) becomes a
    /// controller. `Actor::Participant` must be the current host.
    pub fn transfer_host(
        &mut self,
        room_name: &str,
        by: Actor<'_>,
        to: &str,
    ) -> Result<Vec<RoomEvent>, RoomError> {
        let room = self.room_ref(room_name)?;
        if let Actor::Participant(by) = by {
            require_host(room, room_name, by, "transfer the host role")?;
        }
        let target = room
            .participants
            .get(to)
            .ok_or_else(|| RoomError::participant_not_found(room_name, to))?;
        if target.role != Role::Controller {
            return Err(RoomError::rejected(format!(
                "the host role can only be transferred to a controller ({to:?} is a {})",
                target.role.as_str()
            )));
        }
        let old_host = room.host().map(|h| h.identity.clone());
        let room = self.room_mut(room_name)?;
        let mut events = Vec::new();
        if let Some(old) = &old_host {
            events.extend(change_role(room, old, Role::Controller));
        }
        events.extend(change_role(room, to, Role::Host));
        events.push(event(
            room_name,
            RoomEventKind::HostTransferred {
                from: old_host,
                to: to.to_owned(),
            },
        ));
        Ok(events)
    }

    /// Changes a role through the API. Becoming host while another host is
    /// present is refused (use [`Rooms::transfer_host`]); controller limits apply.
    pub fn set_role(
        &mut self,
        room_name: &str,
        identity: &str,
        role: Role,
    ) -> Result<Vec<RoomEvent>, RoomError> {
        let room = self.room_ref(room_name)?;
        let p = room
            .participants
            .get(identity)
            .ok_or_else(|| RoomError::participant_not_found(room_name, identity))?;
        if p.role == role {
            return Ok(Vec::new());
        }
        check_role_slot(room, identity, role).map_err(|e| match (role, e) {
            (Role::Host, RoomError::Rejected { reason }) => {
                RoomError::rejected(format!("{reason}; use transfer_host"))
            }
            (_, e) => e,
        })?;
        let room = self.room_mut(room_name)?;
        Ok(change_role(room, identity, role))
    }

    /// Replaces a participant's grants through the API; tracks they no longer
    /// allow are unpublished, subscriptions dropped if `can_subscribe` is gone.
    pub fn set_grants(
        &mut self,
        room_name: &str,
        identity: &str,
        grants: Grants,
    ) -> Result<Vec<RoomEvent>, RoomError> {
        let room = self.room_mut(room_name)?;
        let p = participant_mut(room, room_name, identity)?;
        p.grants = grants;
        if !p.grants.can_subscribe {
            p.subscriptions.clear();
        }
        let mut events = unpublish_disallowed(room, identity);
        events.push(updated(room, identity));
        Ok(events)
    }

    /// Sets a participant's metadata: itself with `can_update_metadata`, or an admin.
    pub fn set_metadata(
        &mut self,
        room_name: &str,
        by: Actor<'_>,
        identity: &str,
        metadata: Option<String>,
    ) -> Result<Vec<RoomEvent>, RoomError> {
        if let Some(m) = &metadata {
            validate_len("metadata", m, MAX_METADATA)?;
        }
        let room = self.room_mut(room_name)?;
        let p = participant_mut(room, room_name, identity)?;
        if let Actor::Participant(by) = by {
            if by != identity || !p.grants.can_update_metadata {
                return Err(RoomError::forbidden(format!(
                    "{by:?} may not update the metadata of {identity:?} (needs can_update_metadata, own metadata only)"
                )));
            }
        }
        p.metadata = metadata;
        Ok(vec![updated(room, identity)])
    }
}

/// Sets `identity`'s role (no limit checks) and takes away what the new role
/// no longer allows.
fn change_role(room: &mut Room, identity: &str, role: Role) -> Vec<RoomEvent> {
    let p = room
        .participants
        .get_mut(identity)
        .expect("caller checked the participant exists");
    let from = p.role;
    p.role = role;
    let mut events = Vec::new();
    if role != Role::Controller && p.control != ControlState::None {
        p.control = ControlState::None;
    }
    events.push(event(
        &room.name,
        RoomEventKind::RoleChanged {
            identity: identity.to_owned(),
            from,
            to: role,
        },
    ));
    events.extend(unpublish_disallowed(room, identity));
    events
}

/// Unpublishes `identity`'s tracks that its role or grants no longer allow.
pub(crate) fn unpublish_disallowed(room: &mut Room, identity: &str) -> Vec<RoomEvent> {
    let p = &room.participants[identity];
    let gone: Vec<String> = p
        .tracks
        .values()
        .filter(|t| !(p.role.may_publish(t.source) && p.grants.allows_source(t.source)))
        .map(|t| t.id.clone())
        .collect();
    gone.iter()
        .map(|track_id| unpublish_track(room, identity, track_id))
        .collect()
}

fn require_host(room: &Room, room_name: &str, by: &str, what: &str) -> Result<(), RoomError> {
    let actor = room
        .participants
        .get(by)
        .ok_or_else(|| RoomError::participant_not_found(room_name, by))?;
    if actor.role != Role::Host {
        return Err(RoomError::forbidden(format!(
            "only the host may {what} ({by:?} is a {})",
            actor.role.as_str()
        )));
    }
    Ok(())
}

pub(crate) fn participant_mut<'r>(
    room: &'r mut Room,
    room_name: &str,
    identity: &str,
) -> Result<&'r mut super::model::Participant, RoomError> {
    room.participants
        .get_mut(identity)
        .ok_or_else(|| RoomError::participant_not_found(room_name, identity))
}

fn updated(room: &Room, identity: &str) -> RoomEvent {
    let p = &room.participants[identity];
    event(
        &room.name,
        RoomEventKind::ParticipantUpdated {
            identity: identity.to_owned(),
            grants: p.grants.clone(),
            metadata: p.metadata.clone(),
        },
    )
}

pub(crate) fn event(room: &str, kind: RoomEventKind) -> RoomEvent {
    RoomEvent {
        room: room.to_owned(),
        kind,
    }
}
