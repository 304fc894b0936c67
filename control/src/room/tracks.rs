//! Publishing, muting and subscribing to tracks, with the permission rules:
//! publishing needs the role to allow the source ([`Role::may_publish`]) AND
//! `can_publish` AND the source in `can_publish_sources`; subscribing needs
//! `can_subscribe`.

use std::collections::BTreeSet;

use super::error::RoomError;
use super::event::{RoomEvent, RoomEventKind};
use super::model::{Actor, MediaKind, PublishTrack, Track};
use super::roles::{event, participant_mut};
use super::rooms::{unpublish_track, Rooms};
use crate::auth::{Role, Source};

impl Rooms {
    /// Publishes a track; the server assigns its id (`TR_<n>`), found in the
    /// returned `TrackPublished` event.
    pub fn publish(
        &mut self,
        room_name: &str,
        identity: &str,
        track: PublishTrack,
    ) -> Result<Vec<RoomEvent>, RoomError> {
        let room = self.room_ref(room_name)?;
        let p = room
            .participants
            .get(identity)
            .ok_or_else(|| RoomError::participant_not_found(room_name, identity))?;
        let source = source_name(track.source);
        if p.role == Role::Viewer {
            return Err(RoomError::forbidden(format!(
                "viewers cannot publish ({identity:?} is a viewer; change the role first)"
            )));
        }
        if !p.role.may_publish(track.source) {
            return Err(RoomError::forbidden(format!(
                "a {} may not publish {source}",
                p.role.as_str()
            )));
        }
        if !p.grants.can_publish {
            return Err(RoomError::forbidden(format!(
                "{identity:?} lacks the can_publish grant"
            )));
        }
        if !p.grants.allows_source(track.source) {
            return Err(RoomError::forbidden(format!(
                "{source} is not in {identity:?}'s can_publish_sources"
            )));
        }
        validate_track(&track)?;
        if p.tracks.len() >= MAX_TRACKS_PER_PARTICIPANT {
            return Err(RoomError::rejected(format!(
                "{identity:?} already publishes {MAX_TRACKS_PER_PARTICIPANT} tracks"
            )));
        }
        let id = self.next_id("TR");
        let t = Track {
            id: id.clone(),
            kind: track.kind,
            source: track.source,
            layers: track.layers,
            muted: track.muted,
        };
        let room = self.room_mut(room_name)?;
        participant_mut(room, room_name, identity)?
            .tracks
            .insert(id, t.clone());
        Ok(vec![event(
            room_name,
            RoomEventKind::TrackPublished {
                identity: identity.to_owned(),
                track: t,
            },
        )])
    }

    /// Stops publishing a track of one's own.
    pub fn unpublish(
        &mut self,
        room_name: &str,
        identity: &str,
        track_id: &str,
    ) -> Result<Vec<RoomEvent>, RoomError> {
        let room = self.room_mut(room_name)?;
        let p = participant_mut(room, room_name, identity)?;
        if !p.tracks.contains_key(track_id) {
            return Err(RoomError::track_not_found(room_name, track_id));
        }
        Ok(vec![unpublish_track(room, identity, track_id)])
    }

    /// Mutes or unmutes `track_id`: by its publisher or an admin. Setting the
    /// state it already has returns no event.
    pub fn mute_track(
        &mut self,
        room_name: &str,
        by: Actor<'_>,
        track_id: &str,
        muted: bool,
    ) -> Result<Vec<RoomEvent>, RoomError> {
        let room = self.room_mut(room_name)?;
        let owner = room
            .track_owner(track_id)
            .ok_or_else(|| RoomError::track_not_found(room_name, track_id))?
            .identity
            .clone();
        if let Actor::Participant(by) = by {
            if by != owner {
                return Err(RoomError::forbidden(format!(
                    "only {owner:?} (the publisher) or an admin may mute {track_id:?}"
                )));
            }
        }
        let track = participant_mut(room, room_name, &owner)?
            .tracks
            .get_mut(track_id)
            .expect("owner found by this track id");
        if track.muted == muted {
            return Ok(Vec::new());
        }
        track.muted = muted;
        Ok(vec![event(
            room_name,
            RoomEventKind::TrackMuted {
                identity: owner,
                track_id: track_id.to_owned(),
                muted,
            },
        )])
    }

    /// Subscribes `identity` to another participant's track.
    pub fn subscribe(
        &mut self,
        room_name: &str,
        identity: &str,
        track_id: &str,
    ) -> Result<Vec<RoomEvent>, RoomError> {
        let room = self.room_mut(room_name)?;
        let owner = room
            .track_owner(track_id)
            .ok_or_else(|| RoomError::track_not_found(room_name, track_id))?
            .identity
            .clone();
        let p = participant_mut(room, room_name, identity)?;
        if !p.grants.can_subscribe {
            return Err(RoomError::forbidden(format!(
                "{identity:?} lacks the can_subscribe grant"
            )));
        }
        if owner == identity {
            return Err(RoomError::invalid(
                "track_id",
                "a participant cannot subscribe to its own track",
            ));
        }
        p.subscriptions.insert(track_id.to_owned());
        Ok(Vec::new())
    }

    /// Drops a subscription; unknown ones are ignored (idempotent).
    pub fn unsubscribe(
        &mut self,
        room_name: &str,
        identity: &str,
        track_id: &str,
    ) -> Result<Vec<RoomEvent>, RoomError> {
        let room = self.room_mut(room_name)?;
        participant_mut(room, room_name, identity)?
            .subscriptions
            .remove(track_id);
        Ok(Vec::new())
    }
}

fn validate_track(track: &PublishTrack) -> Result<(), RoomError> {
    let kind_ok = match track.source {
        Source::Camera => track.kind == MediaKind::Video,
        Source::Microphone => track.kind == MediaKind::Audio,
        // Screen capture may carry tab/system audio.
        Source::Screen => true,
    };
    if !kind_ok {
        return Err(RoomError::invalid(
            "kind",
            format!("{} cannot be {:?}", source_name(track.source), track.kind),
        ));
    }
    if track.kind == MediaKind::Audio && !track.layers.is_empty() {
        return Err(RoomError::invalid(
            "layers",
            "audio tracks have no simulcast layers",
        ));
    }
    if track.layers.len() > MAX_LAYERS {
        return Err(RoomError::invalid(
            "layers",
            format!("at most {MAX_LAYERS} simulcast layers"),
        ));
    }
    let mut seen = BTreeSet::new();
    for layer in &track.layers {
        // RFC 8851 §10: rid-syntax is alphanumerics, '-' and '_'.
        let ok = !layer.rid.is_empty()
            && layer.rid.len() <= 16
            && layer
                .rid
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !ok {
            return Err(RoomError::invalid(
                "layers",
                format!("bad rid {:?}", layer.rid),
            ));
        }
        if !seen.insert(layer.rid.as_str()) {
            return Err(RoomError::invalid(
                "layers",
                format!("duplicate rid {:?}", layer.rid),
            ));
        }
    }
    Ok(())
}

fn source_name(source: Source) -> &'static str {
    match source {
        Source::Camera => "camera",
        Source::Microphone => "microphone",
        Source::Screen => "screen",
    }
}

pub(crate) const MAX_TRACKS_PER_PARTICIPANT: usize = 16;
const MAX_LAYERS: usize = 3;
