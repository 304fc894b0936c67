//! Room roles and permissions (issue 4 §4): every refusal the issue lists,
//! host transfer, identity replacement ("resume"), tiers, empty timeout.

use serde_json::json;
use sluice_control::auth::{Grants, Role, Source};
use sluice_control::room::{
    Actor, ControlState, DeleteReason, Join, LeaveReason, MediaKind, PublishTrack, RoomConfig,
    RoomError, RoomEvent, RoomEventKind, Rooms, RoomsConfig, SimulcastLayer,
};

const R: &str = "pairing";

fn join(identity: &str, role: Role) -> Join {
    Join {
        identity: identity.into(),
        name: None,
        metadata: None,
        role,
        grants: Grants::for_role(role),
    }
}

fn rooms_with(members: &[(&str, Role)]) -> Rooms {
    let mut rooms = Rooms::new(RoomsConfig::default());
    for (i, (id, role)) in members.iter().enumerate() {
        rooms.join(R, join(id, *role), i as u64).unwrap();
    }
    rooms
}

fn camera() -> PublishTrack {
    PublishTrack {
        kind: MediaKind::Video,
        source: Source::Camera,
        layers: vec![],
        muted: false,
    }
}

fn screen() -> PublishTrack {
    PublishTrack {
        kind: MediaKind::Video,
        source: Source::Screen,
        layers: vec![
            SimulcastLayer {
                rid: "q".into(),
                max_bitrate_bps: Some(150_000),
            },
            SimulcastLayer {
                rid: "f".into(),
                max_bitrate_bps: None,
            },
        ],
        muted: false,
    }
}

fn published_id(events: &[RoomEvent]) -> String {
    events
        .iter()
        .find_map(|e| match &e.kind {
            RoomEventKind::TrackPublished { track, .. } => Some(track.id.clone()),
            _ => None,
        })
        .expect("a TrackPublished event")
}

fn names(events: &[RoomEvent]) -> Vec<&'static str> {
    events.iter().map(|e| e.kind.name()).collect()
}

fn forbidden(r: Result<impl std::fmt::Debug, RoomError>) -> String {
    match r {
        Err(RoomError::Forbidden { why }) => why,
        other => panic!("expected Forbidden, got {other:?}"),
    }
}

fn rejected(r: Result<impl std::fmt::Debug, RoomError>) -> String {
    match r {
        Err(RoomError::Rejected { reason }) => reason,
        other => panic!("expected Rejected, got {other:?}"),
    }
}

#[test]
fn first_join_creates_room_and_emits_in_order() {
    let mut rooms = Rooms::new(RoomsConfig::default());
    let events = rooms.join(R, join("host", Role::Host), 0).unwrap();
    assert_eq!(names(&events), ["room_created", "participant_joined"]);
    assert!(events.iter().all(|e| e.room == R));
}

#[test]
fn join_to_missing_room_without_auto_create_is_not_found() {
    let mut rooms = Rooms::new(RoomsConfig {
        auto_create: false,
        ..RoomsConfig::default()
    });
    let err = rooms.join(R, join("a", Role::Viewer), 0).unwrap_err();
    assert_eq!(
        err,
        RoomError::NotFound {
            what: format!("room {R:?}")
        }
    );
}

#[test]
fn viewer_cannot_publish_even_with_grants() {
    let mut rooms = rooms_with(&[("h", Role::Host), ("v", Role::Viewer)]);
    let why = forbidden(rooms.publish(R, "v", camera()));
    assert!(why.contains("viewers cannot publish"), "{why}");
    // A token that grants publishing does not lift a viewer.
    let mut j = join("v2", Role::Viewer);
    j.grants = Grants::for_role(Role::Host);
    rooms.join(R, j, 5).unwrap();
    forbidden(rooms.publish(R, "v2", camera()));
}

#[test]
fn publish_needs_grant_and_source() {
    let mut rooms = rooms_with(&[("h", Role::Host), ("c", Role::Controller)]);
    // Screen sharing belongs to the host.
    let why = forbidden(rooms.publish(R, "c", screen()));
    assert!(why.contains("controller may not publish screen"), "{why}");
    let mut grants = Grants::for_role(Role::Host);
    grants.can_publish_sources = vec![Source::Microphone];
    rooms.set_grants(R, "h", grants.clone()).unwrap();
    let why = forbidden(rooms.publish(R, "h", camera()));
    assert!(why.contains("can_publish_sources"), "{why}");
    grants.can_publish = false;
    rooms.set_grants(R, "h", grants).unwrap();
    let why = forbidden(rooms.publish(R, "h", camera()));
    assert!(why.contains("can_publish"), "{why}");
    // Wrong kind for the source is a bad request.
    let mut rooms = rooms_with(&[("h", Role::Host)]);
    let mut bad = camera();
    bad.kind = MediaKind::Audio;
    assert!(matches!(
        rooms.publish(R, "h", bad),
        Err(RoomError::Invalid { field: "kind", .. })
    ));
}

#[test]
fn fourth_controller_is_rejected_with_reason() {
    let mut rooms = rooms_with(&[
        ("h", Role::Host),
        ("c1", Role::Controller),
        ("c2", Role::Controller),
        ("c3", Role::Controller),
    ]);
    let reason = rejected(rooms.join(R, join("c4", Role::Controller), 9));
    assert_eq!(
        reason,
        format!("room {R:?} already has 3 controllers (max_controllers = 3)")
    );
    // Also through a role change; a viewer joins fine.
    rooms.join(R, join("v", Role::Viewer), 9).unwrap();
    rejected(rooms.set_role(R, "v", Role::Controller));
    // A configurable limit.
    let mut rooms = Rooms::new(RoomsConfig::default());
    let config = RoomConfig {
        max_controllers: 1,
        ..RoomConfig::default()
    };
    rooms.create_room(R, config, 0).unwrap();
    rooms.join(R, join("c1", Role::Controller), 1).unwrap();
    rejected(rooms.join(R, join("c2", Role::Controller), 2));
}

#[test]
fn second_host_is_rejected() {
    let mut rooms = rooms_with(&[("h", Role::Host), ("c", Role::Controller)]);
    let reason = rejected(rooms.join(R, join("h2", Role::Host), 3));
    assert!(reason.contains("already has a host"), "{reason}");
    let reason = rejected(rooms.set_role(R, "c", Role::Host));
    assert!(reason.contains("use transfer_host"), "{reason}");
}

#[test]
fn only_host_grants_and_revokes_control() {
    let mut rooms = rooms_with(&[
        ("h", Role::Host),
        ("c1", Role::Controller),
        ("c2", Role::Controller),
        ("v", Role::Viewer),
    ]);
    let ev = rooms.request_control(R, "c1").unwrap();
    assert_eq!(names(&ev), ["control_requested"]);
    assert!(rooms.request_control(R, "c1").unwrap().is_empty());
    let why = forbidden(rooms.request_control(R, "v"));
    assert!(
        why.contains("only controllers may request control"),
        "{why}"
    );

    let why = forbidden(rooms.grant_control(R, "c2", "c1"));
    assert_eq!(
        why,
        "only the host may grant control (\"c2\" is a controller)"
    );
    forbidden(rooms.grant_control(R, "v", "c1"));
    rejected(rooms.grant_control(R, "h", "v"));

    let ev = rooms.grant_control(R, "h", "c1").unwrap();
    assert_eq!(names(&ev), ["control_granted"]);
    assert_eq!(
        rooms.participant(R, "c1").unwrap().control,
        ControlState::Granted
    );
    forbidden(rooms.revoke_control(R, "c2", "c1"));
    let ev = rooms.revoke_control(R, "h", "c1").unwrap();
    assert_eq!(names(&ev), ["control_revoked"]);
    // A controller may give up its own control.
    rooms.grant_control(R, "h", "c2").unwrap();
    assert_eq!(
        names(&rooms.revoke_control(R, "c2", "c2").unwrap()),
        ["control_revoked"]
    );
}

#[test]
fn input_only_from_granted_controller_to_host() {
    let mut rooms = rooms_with(&[
        ("h", Role::Host),
        ("c1", Role::Controller),
        ("c2", Role::Controller),
    ]);
    let click = json!({"type": "click", "x": 10, "y": 20});
    let why = forbidden(rooms.relay_input(R, "c1", click.clone()));
    assert_eq!(why, "\"c1\" has not been granted control; input is refused");
    rooms.request_control(R, "c1").unwrap();
    forbidden(rooms.relay_input(R, "c1", click.clone()));
    rooms.grant_control(R, "h", "c1").unwrap();
    let relay = rooms.relay_input(R, "c1", click.clone()).unwrap();
    assert_eq!((relay.to.as_str(), relay.from.as_str()), ("h", "c1"));
    assert_eq!(relay.event, click);
    forbidden(rooms.relay_input(R, "c2", click.clone()));
    forbidden(rooms.relay_input(R, "h", click.clone()));
    rooms.revoke_control(R, "h", "c1").unwrap();
    forbidden(rooms.relay_input(R, "c1", click));
}

#[test]
fn host_transfer_only_to_controller_by_host_or_admin() {
    let mut rooms = rooms_with(&[
        ("h", Role::Host),
        ("c", Role::Controller),
        ("v", Role::Viewer),
    ]);
    let screen_id = published_id(&rooms.publish(R, "h", screen()).unwrap());
    let cam_id = published_id(&rooms.publish(R, "h", camera()).unwrap());
    rooms.subscribe(R, "v", &screen_id).unwrap();
    rooms.grant_control(R, "h", "c").unwrap();

    let reason = rejected(rooms.transfer_host(R, Actor::Participant("h"), "v"));
    assert!(
        reason.contains("only be transferred to a controller"),
        "{reason}"
    );
    forbidden(rooms.transfer_host(R, Actor::Participant("c"), "c"));

    let ev = rooms
        .transfer_host(R, Actor::Participant("h"), "c")
        .unwrap();
    assert_eq!(
        names(&ev),
        [
            "role_changed",
            "track_unpublished",
            "role_changed",
            "host_transferred"
        ]
    );
    let old = rooms.participant(R, "h").unwrap();
    assert_eq!(old.role, Role::Controller);
    // The old host's screen is gone (hosts alone share the screen), the camera stays.
    assert!(!old.tracks.contains_key(&screen_id) && old.tracks.contains_key(&cam_id));
    assert!(!rooms
        .participant(R, "v")
        .unwrap()
        .subscriptions
        .contains(&screen_id));
    let new = rooms.participant(R, "c").unwrap();
    assert_eq!((new.role, new.control), (Role::Host, ControlState::None));
    // An admin can move it back.
    rooms.transfer_host(R, Actor::Admin, "h").unwrap();
    assert_eq!(rooms.room(R).unwrap().host().unwrap().identity, "h");
}

#[test]
fn same_identity_replaces_old_session() {
    let mut rooms = rooms_with(&[("h", Role::Host), ("v", Role::Viewer)]);
    let cam = published_id(&rooms.publish(R, "h", camera()).unwrap());
    rooms.subscribe(R, "v", &cam).unwrap();
    let old_sid = rooms.participant(R, "h").unwrap().sid.clone();
    // Rejoining as host is not a second host.
    let ev = rooms.join(R, join("h", Role::Host), 100).unwrap();
    assert_eq!(
        names(&ev),
        [
            "track_unpublished",
            "participant_left",
            "participant_joined"
        ]
    );
    match &ev[1].kind {
        RoomEventKind::ParticipantLeft { sid, reason, .. } => {
            assert_eq!((sid, *reason), (&old_sid, LeaveReason::Replaced));
        }
        other => panic!("{other:?}"),
    }
    let p = rooms.participant(R, "h").unwrap();
    assert_ne!(p.sid, old_sid);
    assert!(p.tracks.is_empty());
    assert!(rooms.participant(R, "v").unwrap().subscriptions.is_empty());
    assert_eq!(rooms.room(R).unwrap().participants.len(), 2);
    // A full room still admits a resume.
    let mut rooms = Rooms::new(RoomsConfig::default());
    let config = RoomConfig {
        max_participants: 1,
        ..RoomConfig::default()
    };
    rooms.create_room(R, config, 0).unwrap();
    rooms.join(R, join("a", Role::Viewer), 1).unwrap();
    rejected(rooms.join(R, join("b", Role::Viewer), 2));
    rooms.join(R, join("a", Role::Viewer), 3).unwrap();
}

#[test]
fn mute_by_publisher_or_admin() {
    let mut rooms = rooms_with(&[("h", Role::Host), ("c", Role::Controller)]);
    let cam = published_id(&rooms.publish(R, "h", camera()).unwrap());
    forbidden(rooms.mute_track(R, Actor::Participant("c"), &cam, true));
    let ev = rooms.mute_track(R, Actor::Admin, &cam, true).unwrap();
    assert_eq!(names(&ev), ["track_muted"]);
    assert!(rooms
        .mute_track(R, Actor::Participant("h"), &cam, true)
        .unwrap()
        .is_empty());
    rooms
        .mute_track(R, Actor::Participant("h"), &cam, false)
        .unwrap();
    assert!(matches!(
        rooms.mute_track(R, Actor::Admin, "TR_999", true),
        Err(RoomError::NotFound { .. })
    ));
}

#[test]
fn subscribe_needs_grant() {
    let mut rooms = rooms_with(&[("h", Role::Host), ("v", Role::Viewer)]);
    let cam = published_id(&rooms.publish(R, "h", camera()).unwrap());
    let mut grants = Grants::for_role(Role::Viewer);
    grants.can_subscribe = false;
    rooms.set_grants(R, "v", grants).unwrap();
    let why = forbidden(rooms.subscribe(R, "v", &cam));
    assert!(why.contains("can_subscribe"), "{why}");
    assert!(matches!(
        rooms.subscribe(R, "h", &cam),
        Err(RoomError::Invalid {
            field: "track_id",
            ..
        })
    ));
}

#[test]
fn metadata_needs_grant() {
    let mut rooms = rooms_with(&[("h", Role::Host), ("v", Role::Viewer)]);
    forbidden(rooms.set_metadata(R, Actor::Participant("v"), "v", Some("x".into())));
    let mut grants = Grants::for_role(Role::Viewer);
    grants.can_update_metadata = true;
    rooms.set_grants(R, "v", grants).unwrap();
    forbidden(rooms.set_metadata(R, Actor::Participant("v"), "h", Some("x".into())));
    rooms
        .set_metadata(R, Actor::Participant("v"), "v", Some("x".into()))
        .unwrap();
    assert_eq!(
        rooms.participant(R, "v").unwrap().metadata.as_deref(),
        Some("x")
    );
}

#[test]
fn only_host_ends_session_and_everyone_leaves() {
    let mut rooms = rooms_with(&[("h", Role::Host), ("v", Role::Viewer)]);
    forbidden(rooms.end_session(R, "v"));
    let ev = rooms.end_session(R, "h").unwrap();
    assert_eq!(
        names(&ev),
        ["participant_left", "participant_left", "room_deleted"]
    );
    assert!(matches!(
        ev[2].kind,
        RoomEventKind::RoomDeleted {
            reason: DeleteReason::EndedByHost
        }
    ));
    assert!(rooms.room(R).is_none());
}

#[test]
fn empty_room_times_out() {
    let mut rooms = Rooms::new(RoomsConfig::default());
    let config = RoomConfig {
        empty_timeout_s: 10,
        ..RoomConfig::default()
    };
    rooms.create_room(R, config, 1_000).unwrap();
    assert_eq!(rooms.poll_timeout(), Some(11_000));
    rooms.join(R, join("a", Role::Viewer), 5_000).unwrap();
    assert_eq!(rooms.poll_timeout(), None);
    assert!(rooms.handle_timeout(60_000).is_empty());
    rooms.leave(R, "a", 20_000).unwrap();
    assert!(rooms.handle_timeout(29_999).is_empty());
    let ev = rooms.handle_timeout(30_000);
    assert_eq!(names(&ev), ["room_deleted"]);
    assert!(rooms.list().next().is_none());
}

#[test]
fn tiers_rank_host_and_controllers_before_viewers() {
    let rooms = Rooms::new(RoomsConfig::default());
    let (h, c, v) = (
        rooms.tier(Role::Host),
        rooms.tier(Role::Controller),
        rooms.tier(Role::Viewer),
    );
    assert!(h.priority < v.priority && c.priority < v.priority);
    assert_eq!(h.max_bitrate_bps, 4_000_000);
    assert_eq!(v.max_bitrate_bps, 2_000_000);
}

#[test]
fn refused_operations_change_nothing() {
    let mut rooms = rooms_with(&[
        ("h", Role::Host),
        ("c1", Role::Controller),
        ("c2", Role::Controller),
        ("c3", Role::Controller),
    ]);
    let before = rooms.state().clone();
    let _ = rooms.join(R, join("c4", Role::Controller), 50);
    let _ = rooms.transfer_host(R, Actor::Participant("c1"), "c2");
    let _ = rooms.publish(R, "c1", screen());
    let _ = rooms.join(R, join("", Role::Viewer), 50);
    assert_eq!(rooms.state(), &before);
}

#[test]
fn bad_input_names_the_field() {
    let mut rooms = Rooms::new(RoomsConfig::default());
    assert!(matches!(
        rooms.join(R, join("", Role::Viewer), 0),
        Err(RoomError::Invalid {
            field: "identity",
            ..
        })
    ));
    assert!(matches!(
        rooms.create_room("bad\nname", RoomConfig::default(), 0),
        Err(RoomError::Invalid { field: "room", .. })
    ));
    rooms.join(R, join("h", Role::Host), 0).unwrap();
    let mut dup = screen();
    dup.layers[1].rid = "q".into();
    assert!(matches!(
        rooms.publish(R, "h", dup),
        Err(RoomError::Invalid {
            field: "layers",
            ..
        })
    ));
    assert!(matches!(
        rooms.kick(R, "nobody", 1),
        Err(RoomError::NotFound { .. })
    ));
}
