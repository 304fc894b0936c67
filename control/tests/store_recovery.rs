//! The embedded store: a restart recovers rooms, participants, roles, grants, tracks and
//! counters from the ops applied; the file is 0600 in a 0700 directory; format 1 (with its
//! `state.tracks.json`) migrates to 2; a corrupt file is moved aside and the daemon starts
//! empty; a newer format, or a file that cannot be read, is refused naming the file.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;

use sluice_control::auth::{Grants, Role, Source};
use sluice_control::events::EventLog;
use sluice_control::room::{Join, MediaKind, PublishTrack, Rooms, RoomsConfig, RoomsState};
use sluice_control::store::{
    diff_room, FileStore, PersistedState, SavedCodec, SavedTrack, Store, StoreError, StoreOp,
    FORMAT_VERSION,
};

fn join(identity: &str, role: Role) -> Join {
    Join {
        identity: identity.into(),
        name: Some(identity.to_uppercase()),
        metadata: None,
        role,
        grants: Grants::for_role(role),
    }
}

fn track() -> SavedTrack {
    SavedTrack {
        owner: "host".into(),
        owner_sid: "PA_1".into(),
        dp: 7,
        kind: MediaKind::Video,
        codec: SavedCodec {
            pt: 96,
            name: "VP8".into(),
            clock_rate: 90_000,
            channels: None,
            fmtp: None,
            rtx_pt: Some(97),
            rtcp_fb: vec!["nack".into()],
        },
    }
}

type Step = dyn Fn(&mut Rooms) -> Vec<sluice_control::room::RoomEvent>;

/// Builds some state, applying each operation's difference and its event counters as the
/// daemon does.
async fn populated(store: &FileStore) -> (Rooms, EventLog) {
    let mut rooms = Rooms::new(RoomsConfig::default());
    let mut log = EventLog::new();
    let steps: Vec<Box<Step>> = vec![
        Box::new(|r| r.join("r", join("host", Role::Host), 1).unwrap()),
        Box::new(|r| r.join("r", join("ctl", Role::Controller), 2).unwrap()),
        Box::new(|r| r.join("r", join("view", Role::Viewer), 3).unwrap()),
        Box::new(|r| {
            r.publish(
                "r",
                "host",
                PublishTrack {
                    kind: MediaKind::Video,
                    source: Source::Screen,
                    layers: vec![],
                    muted: false,
                },
            )
            .unwrap()
        }),
        Box::new(|r| r.grant_control("r", "host", "ctl").unwrap()),
        Box::new(|r| r.set_role("r", "view", Role::Controller).unwrap()),
    ];
    for (i, step) in steps.iter().enumerate() {
        let before = rooms.room("r").cloned();
        let events = step(&mut rooms);
        let mut ops = diff_room(before.as_ref(), rooms.room("r"));
        for e in &events {
            let env = log.append(e, i as u64);
            ops.push(StoreOp::EventSeq {
                room: env.room,
                seq: env.seq,
            });
        }
        ops.push(StoreOp::IdsUsed(rooms.state().next_id));
        ops.push(StoreOp::EventsUsed(log.last_n()));
        store.apply(ops).await.unwrap();
    }
    store
        .apply(vec![StoreOp::PutTrack {
            room: "r".into(),
            sid: "TR_4".into(),
            track: Box::new(track()),
        }])
        .await
        .unwrap();
    (rooms, log)
}

#[tokio::test]
async fn restart_recovers_equal_state() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state").join("state.json");
    let store = FileStore::open(&path).unwrap();
    assert_eq!(store.load().unwrap(), PersistedState::empty());
    let (rooms, log) = populated(&store).await;
    drop(store);

    // 0600 in a 0700 directory, no temp file left.
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&path), 0o600);
    assert_eq!(mode(path.parent().unwrap()), 0o700);
    assert!(!path.with_file_name("state.json.tmp").exists());

    let loaded = FileStore::open(&path).unwrap().load().unwrap();
    assert_eq!(loaded.version, FORMAT_VERSION);
    assert_eq!(loaded.rooms["r"].room, *rooms.room("r").unwrap());
    assert_eq!(loaded.rooms["r"].tracks["TR_4"], track());
    assert_eq!(loaded.next_id, rooms.state().next_id);
    assert_eq!(loaded.event_log(), log);

    // The recovered daemon keeps going: ids and seqs continue, limits hold.
    let state = RoomsState {
        rooms: loaded
            .rooms
            .iter()
            .map(|(n, r)| (n.clone(), r.room.clone()))
            .collect(),
        next_id: loaded.next_id,
    };
    let mut rooms = Rooms::from_state(RoomsConfig::default(), state);
    let mut log = loaded.event_log();
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

#[tokio::test]
async fn concurrent_applies_share_writes_and_all_land() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    let store = std::sync::Arc::new(FileStore::open(&path).unwrap());
    let mut tasks = Vec::new();
    for i in 0..50u64 {
        let store = std::sync::Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            store
                .apply(vec![StoreOp::EventSeq {
                    room: format!("room{i}"),
                    seq: i + 1,
                }])
                .await
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    // Durable means on disk: a fresh reader sees every op.
    let text = std::fs::read_to_string(&path).unwrap();
    let on_disk: PersistedState = serde_json::from_str(&text).unwrap();
    assert_eq!(on_disk.events.last_seq.len(), 50);
    assert_eq!(on_disk.events.last_seq["room49"], 50);
}

#[tokio::test]
async fn corrupt_file_is_moved_aside_and_start_up_continues_empty() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    let store = FileStore::open(&path).unwrap();
    populated(&store).await;
    drop(store);
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, &text[..text.len() / 2]).unwrap();

    let store = FileStore::open(&path).unwrap();
    assert_eq!(store.load().unwrap(), PersistedState::empty());
    let aside: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with("state.json.corrupt-"))
        .collect();
    assert_eq!(aside.len(), 1, "{aside:?}");
    // Kept as it was, for someone to look at.
    let kept = std::fs::read_to_string(dir.path().join(&aside[0])).unwrap();
    assert_eq!(kept.len(), text.len() / 2);
    // A wrong shape is corrupt too.
    drop(store);
    std::fs::write(&path, br#"{"version": 2, "rooms": 5}"#).unwrap();
    assert_eq!(
        FileStore::open(&path).unwrap().load().unwrap(),
        PersistedState::empty()
    );
}

#[test]
fn newer_or_unreadable_files_are_refused_naming_them() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    std::fs::write(&path, br#"{"version": 99}"#).unwrap();
    let err = FileStore::open(&path).unwrap_err();
    assert!(
        matches!(err, StoreError::UnsupportedVersion { version: 99, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains(&path.display().to_string()));
    assert!(path.exists(), "left in place");

    // A directory where the file should be cannot be read: refused, named.
    let odd = dir.path().join("odd.json");
    std::fs::create_dir(&odd).unwrap();
    let err = FileStore::open(&odd).unwrap_err();
    assert!(matches!(err, StoreError::Io { .. }), "{err:?}");
    assert!(err.to_string().contains("odd.json"), "{err}");
}

#[test]
fn format_one_with_its_track_index_migrates_to_two() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    // What the server wrote before format 2: the rooms alone, and the tracks beside them.
    let mut rooms = Rooms::new(RoomsConfig::default());
    rooms.join("r", join("host", Role::Host), 1).unwrap();
    let v1 = serde_json::to_string(rooms.state()).unwrap();
    assert!(!v1.contains("\"version\""));
    std::fs::write(&path, v1).unwrap();
    let tracks = dir.path().join("state.tracks.json");
    let index = serde_json::json!({
        "TR_9": {"room": "r", "owner": "host", "owner_sid": "PA_1", "dp": 7, "kind": "video",
                 "codec": {"pt": 96, "name": "VP8", "clock_rate": 90000, "channels": null,
                           "fmtp": null, "rtx_pt": 97, "rtcp_fb": ["nack"]}},
        "TR_10": {"room": "gone", "owner": "x", "owner_sid": "PA_2", "dp": 8, "kind": "audio",
                  "codec": {"pt": 111, "name": "opus", "clock_rate": 48000, "channels": 2,
                            "fmtp": null, "rtx_pt": null, "rtcp_fb": []}}
    });
    std::fs::write(&tracks, index.to_string()).unwrap();

    let loaded = FileStore::open(&path).unwrap().load().unwrap();
    assert_eq!(loaded.version, 2);
    assert_eq!(loaded.rooms["r"].room, *rooms.room("r").unwrap());
    assert_eq!(loaded.next_id, rooms.state().next_id);
    let mut expected = track();
    expected.codec.rtcp_fb = vec!["nack".into()];
    assert_eq!(
        loaded.rooms["r"].tracks,
        BTreeMap::from([("TR_9".to_owned(), expected)])
    );
    assert!(!tracks.exists(), "folded into the state file");
    let on_disk: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(on_disk["version"], 2);
}
