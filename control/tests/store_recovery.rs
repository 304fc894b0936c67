//! A control restart recovers rooms, participants, roles, grants, tracks and
//! counters from the state file; a corrupt file is an error naming it.

use sluice_control::auth::{Grants, Role, Source};
use sluice_control::events::EventLog;
use sluice_control::room::{Join, MediaKind, PublishTrack, Rooms, RoomsConfig};
use sluice_control::store::{PersistedState, Store, StoreError};

fn join(identity: &str, role: Role) -> Join {
    Join {
        identity: identity.into(),
        name: Some(identity.to_uppercase()),
        metadata: None,
        role,
        grants: Grants::for_role(role),
    }
}

/// Builds some state, saving after each mutating operation as the daemon does.
fn populated(store: &Store) -> (Rooms, EventLog) {
    let mut rooms = Rooms::new(RoomsConfig::default());
    let mut log = EventLog::new();
    let mut apply = |rooms: &mut Rooms, events: Vec<sluice_control::room::RoomEvent>, now| {
        for e in &events {
            log.append(e, now);
        }
        store
            .save(&PersistedState::new(rooms.state().clone(), log.clone()))
            .unwrap();
    };
    let ev = rooms.join("r", join("host", Role::Host), 1).unwrap();
    apply(&mut rooms, ev, 1);
    let ev = rooms.join("r", join("ctl", Role::Controller), 2).unwrap();
    apply(&mut rooms, ev, 2);
    let ev = rooms.join("r", join("view", Role::Viewer), 3).unwrap();
    apply(&mut rooms, ev, 3);
    let track = PublishTrack {
        kind: MediaKind::Video,
        source: Source::Screen,
        layers: vec![],
        muted: false,
    };
    let ev = rooms.publish("r", "host", track).unwrap();
    apply(&mut rooms, ev, 4);
    let ev = rooms.grant_control("r", "host", "ctl").unwrap();
    apply(&mut rooms, ev, 5);
    let ev = rooms.set_role("r", "view", Role::Controller).unwrap();
    apply(&mut rooms, ev, 6);
    (rooms, log)
}

#[test]
fn restart_recovers_equal_state() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::new(dir.path().join("state.json"));
    assert!(store.load().unwrap().is_none(), "first start has no file");
    let (rooms, log) = populated(&store);
    let expected = rooms.state().clone();
    drop(rooms);

    let loaded = Store::new(dir.path().join("state.json"))
        .load()
        .unwrap()
        .expect("state was saved");
    assert_eq!(loaded.rooms, expected);
    assert_eq!(loaded.events, log);
    assert!(!dir.path().join("state.json.tmp").exists());

    // The recovered daemon keeps going: ids and seqs continue, limits hold.
    let mut rooms = Rooms::from_state(RoomsConfig::default(), loaded.rooms);
    let mut log = loaded.events;
    let before = log.last_seq("r");
    let ev = rooms.join("r", join("late", Role::Viewer), 10).unwrap();
    let env = log.append(&ev[0], 10);
    assert_eq!(env.seq, before + 1);
    let sids: Vec<_> = rooms
        .room("r")
        .unwrap()
        .participants
        .values()
        .map(|p| &p.sid)
        .collect();
    let unique: std::collections::BTreeSet<_> = sids.iter().collect();
    assert_eq!(unique.len(), sids.len(), "no id reused after restart");
    assert!(rooms.join("r", join("host2", Role::Host), 11).is_err());
}

#[test]
fn corrupt_file_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    let store = Store::new(&path);
    populated(&store);
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, &text[..text.len() / 2]).unwrap();
    let err = store.load().unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains(&path.display().to_string()), "{msg}");
    // The file is left as it was for someone to look at.
    assert_eq!(
        std::fs::read_to_string(&path).unwrap().len(),
        text.len() / 2
    );

    std::fs::write(&path, br#"{"version": 1, "rooms": 5}"#).unwrap();
    assert!(matches!(store.load(), Err(StoreError::Corrupt { .. })));
    std::fs::write(&path, br#"{"version": 99}"#).unwrap();
    assert!(matches!(
        store.load(),
        Err(StoreError::UnsupportedVersion { version: 99, .. })
    ));
}

#[test]
fn unwritable_location_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("missing-dir").join("state.json");
    let err = Store::new(&path)
        .save(&PersistedState::default())
        .unwrap_err();
    assert!(matches!(err, StoreError::Io { .. }));
    assert!(err.to_string().contains("state.json"));
}
