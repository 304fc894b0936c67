//! The published-track index a restarted control needs to adopt a running dataplane's calls.
//!
//! Rooms and participants are in the state file; what ties a room track (`TR_n`) to the
//! dataplane's `TrackId` and to the codec its publisher negotiated lives only in the media
//! state, which is not persisted. Without it a control killed mid-call comes back seeing the
//! tracks in its rooms but unable to offer them to anyone who joins later. So every published
//! track is also written to `<state file stem>.tracks.json` (temp file + rename, like the state
//! file), and on the first resync after a start the entries whose `TrackId` the dataplane still
//! holds are adopted back into the media state, with their publisher sessions.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::media::MTrack;
use crate::sdp::{Fmtp, NegotiatedCodec};
use sluice_proto::{MediaKind, TrackId};

/// One published track as persisted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SavedTrack {
    pub(crate) room: String,
    pub(crate) owner: String,
    pub(crate) owner_sid: String,
    /// The dataplane's track id.
    pub(crate) dp: u64,
    /// `audio` or `video`.
    pub(crate) kind: String,
    pub(crate) codec: SavedCodec,
}

/// [`NegotiatedCodec`] in a serializable form (`fmtp` as its raw SDP value).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SavedCodec {
    pub(crate) pt: u8,
    pub(crate) name: String,
    pub(crate) clock_rate: u32,
    pub(crate) channels: Option<u16>,
    pub(crate) fmtp: Option<String>,
    pub(crate) rtx_pt: Option<u8>,
    pub(crate) rtcp_fb: Vec<String>,
}

/// Track sid → saved track.
pub(crate) type TrackIndex = BTreeMap<String, SavedTrack>;

impl SavedTrack {
    pub(crate) fn of(t: &MTrack) -> Self {
        let c = &t.codec;
        Self {
            room: t.room.clone(),
            owner: t.owner.clone(),
            owner_sid: t.owner_sid.clone(),
            dp: t.dp.0,
            kind: t.kind.as_str().to_owned(),
            codec: SavedCodec {
                pt: c.pt,
                name: c.name.clone(),
                clock_rate: c.clock_rate,
                channels: c.channels,
                fmtp: c.fmtp.as_ref().map(|f| f.raw.clone()),
                rtx_pt: c.rtx_pt,
                rtcp_fb: c.rtcp_fb.clone(),
            },
        }
    }

    /// Back to the media state's form; `None` for an unknown kind (a hand-edited file).
    pub(crate) fn to_track(&self) -> Option<MTrack> {
        let kind = match self.kind.as_str() {
            "audio" => MediaKind::Audio,
            "video" => MediaKind::Video,
            _ => return None,
        };
        let c = &self.codec;
        Some(MTrack {
            room: self.room.clone(),
            owner: self.owner.clone(),
            owner_sid: self.owner_sid.clone(),
            dp: TrackId(self.dp),
            kind,
            codec: NegotiatedCodec {
                pt: c.pt,
                name: c.name.clone(),
                clock_rate: c.clock_rate,
                channels: c.channels,
                fmtp: c.fmtp.as_deref().map(Fmtp::parse),
                rtx_pt: c.rtx_pt,
                rtcp_fb: c.rtcp_fb.clone(),
            },
        })
    }
}

/// Where the index of `state_file` lives: `state.json` → `state.tracks.json`.
pub(crate) fn index_path(state_file: &Path) -> PathBuf {
    state_file.with_extension("tracks.json")
}

/// The saved index; empty when there is none. Unlike the state file a corrupt index is not
/// fatal: it only costs the adoption of calls that outlived a restart, so it is logged.
pub(crate) fn load(path: &Path) -> TrackIndex {
    match std::fs::read_to_string(path) {
        Ok(text) => serde_json::from_str(&text).unwrap_or_else(|e| {
            tracing::warn!(path = %path.display(), error = %e, "track index unreadable; ignored");
            TrackIndex::new()
        }),
        Err(e) => {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(path = %path.display(), error = %e, "track index unreadable");
            }
            TrackIndex::new()
        }
    }
}

/// Write to a temp file, then rename, so a crash never leaves half a file.
pub(crate) fn save(path: &Path, index: &TrackIndex) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("json.tmp");
    std::fs::write(
        &tmp,
        serde_json::to_vec_pretty(index).map_err(std::io::Error::other)?,
    )?;
    std::fs::rename(tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn track(kind: MediaKind, fmtp: Option<&str>) -> MTrack {
        MTrack {
            room: "r".into(),
            owner: "alice".into(),
            owner_sid: "PA_1".into(),
            dp: TrackId(7),
            kind,
            codec: NegotiatedCodec {
                pt: 96,
                name: "VP8".into(),
                clock_rate: 90_000,
                channels: None,
                fmtp: fmtp.map(Fmtp::parse),
                rtx_pt: Some(97),
                rtcp_fb: vec!["nack".into(), "nack pli".into()],
            },
        }
    }

    #[test]
    fn round_trips_through_json() {
        let t = track(MediaKind::Video, Some("max-fs=12288;max-fr=60"));
        let saved = SavedTrack::of(&t);
        let text = serde_json::to_string(&saved).unwrap();
        let back: SavedTrack = serde_json::from_str(&text).unwrap();
        let again = back.to_track().unwrap();
        assert_eq!(again.codec, t.codec);
        assert_eq!((again.dp, again.kind, again.owner), (t.dp, t.kind, t.owner));
    }

    #[test]
    fn other_kinds_are_not_read_back() {
        let mut s = SavedTrack::of(&track(MediaKind::Audio, None));
        s.kind = "text".into();
        assert!(s.to_track().is_none());
    }

    #[test]
    fn save_then_load_and_a_corrupt_file_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        let path = index_path(&dir.path().join("state.json"));
        assert_eq!(path.file_name().unwrap(), "state.tracks.json");
        assert!(load(&path).is_empty());
        let idx = TrackIndex::from([(
            "TR_1".to_owned(),
            SavedTrack::of(&track(MediaKind::Audio, None)),
        )]);
        save(&path, &idx).unwrap();
        assert_eq!(load(&path), idx);
        std::fs::write(&path, "{not json").unwrap();
        assert!(load(&path).is_empty());
    }
}
