//! [`FileStore`]: the embedded [`Store`]. The state lives in memory; a writer thread puts it in
//! one file after changes: `<file>.tmp` created fresh (`O_EXCL`, mode 0600), written, fsynced,
//! renamed over `<file>`, then the directory fsynced, so a crash leaves the old or the new file,
//! never a torn one. [`Store::apply`] resolves once a write that includes its ops is on disk;
//! calls that arrive while a write runs share the next one (group commit), so a burst of joins
//! costs a few writes, not one each. A write encodes only the rooms changed since the last one
//! ([`Encoder`]).

use crate::lock::Locked;
use std::collections::BTreeSet;
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};

use serde::Deserialize;
use tokio::sync::watch;

use super::encode::Encoder;
use super::{
    PersistedRoom, PersistedState, SavedCodec, SavedTrack, Store, StoreError, StoreFuture, StoreOp,
    FORMAT_VERSION,
};
use crate::events::EventLog;
use crate::room::{MediaKind, RoomsState};

/// The state file. See the module docs.
#[derive(Debug)]
pub struct FileStore {
    path: PathBuf,
    shared: Arc<Shared>,
    written: watch::Receiver<Written>,
}

#[derive(Debug)]
struct Shared {
    image: Mutex<Image>,
    changed: Condvar,
}

#[derive(Debug)]
struct Image {
    state: PersistedState,
    /// Ops applied so far (a version number of the image).
    version: u64,
    /// Rooms changed since the writer last looked (it re-encodes only these).
    dirty: BTreeSet<String>,
    closed: bool,
}

/// What the writer has done: the image version its last attempt covered, and whether it
/// reached the disk.
#[derive(Debug, Clone, Default)]
struct Written {
    attempted: u64,
    durable: u64,
    error: Option<String>,
}

impl FileStore {
    /// Opens the state at `path`: loads it (migrating format 1, moving a corrupt file aside),
    /// creates its directory (mode 0700) if needed and starts the writer.
    pub fn open(path: impl Into<PathBuf>) -> Result<Self, StoreError> {
        let path = path.into();
        let dir = parent(&path).to_path_buf();
        if !dir.exists() {
            DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&dir)
                .map_err(|source| io_err(&path, source))?;
        } else if let Ok(meta) = fs::metadata(&dir) {
            if meta.permissions().mode() & 0o077 != 0 {
                tracing::warn!(dir = %dir.display(), "the state directory is readable by others; 0700 is advised");
            }
        }
        let state = load(&path)?;
        let shared = Arc::new(Shared {
            image: Mutex::new(Image {
                dirty: state.rooms.keys().cloned().collect(),
                state,
                version: 0,
                closed: false,
            }),
            changed: Condvar::new(),
        });
        let (tx, written) = watch::channel(Written::default());
        let writer_shared = Arc::clone(&shared);
        let writer_path = path.clone();
        std::thread::Builder::new()
            .name("sluice-store".into())
            .spawn(move || writer(&writer_shared, &writer_path, &tx))
            .map_err(|source| io_err(&path, source))?;
        Ok(Self {
            path,
            shared,
            written,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Store for FileStore {
    fn load(&self) -> Result<PersistedState, StoreError> {
        Ok(self.shared.image.locked().state.clone())
    }

    fn load_room(&self, name: &str) -> Result<Option<PersistedRoom>, StoreError> {
        let image = self.shared.image.locked();
        Ok(image.state.rooms.get(name).cloned())
    }

    fn apply(&self, ops: Vec<StoreOp>) -> StoreFuture<'_, Result<(), StoreError>> {
        let version = {
            let mut image = self.shared.image.locked();
            if image.closed {
                return Box::pin(async { Err(StoreError::Closed) });
            }
            for op in ops {
                if let Some(room) = op.room_changed() {
                    if !image.dirty.contains(room) {
                        image.dirty.insert(room.to_owned());
                    }
                }
                image.state.apply(op);
            }
            image.version += 1;
            image.version
        };
        self.shared.changed.notify_one();
        let mut written = self.written.clone();
        Box::pin(async move {
            let w = written
                .wait_for(|w| w.attempted >= version)
                .await
                .map_err(|_| StoreError::Closed)?
                .clone();
            if w.durable >= version {
                Ok(())
            } else {
                Err(StoreError::Io {
                    path: self.path.clone(),
                    source: io::Error::other(w.error.unwrap_or_default()),
                })
            }
        })
    }
}

impl Drop for FileStore {
    fn drop(&mut self) {
        if let Ok(mut image) = self.shared.image.lock() {
            image.closed = true;
        }
        self.shared.changed.notify_one();
    }
}

/// Writes the image whenever it changed, until closed (after a last write).
fn writer(shared: &Shared, path: &Path, tx: &watch::Sender<Written>) {
    let mut written = 0u64;
    let mut encoder = Encoder::default();
    loop {
        let (head, version, closed) = {
            let mut image = shared.image.locked();
            while image.version == written && !image.closed {
                image = shared.changed.wait(image).expect("store lock");
            }
            if image.version == written {
                return;
            }
            let dirty = std::mem::take(&mut image.dirty);
            let head = encoder.refresh(&image.state, dirty);
            (head, image.version, image.closed)
        };
        let bytes = encoder.file(&head);
        match write_atomically(path, &bytes) {
            Ok(()) => {
                written = version;
                tx.send_modify(|w| {
                    w.attempted = version;
                    w.durable = version;
                    w.error = None;
                });
            }
            Err(e) => {
                tracing::error!(path = %path.display(), error = %e, "could not write the state file; retrying");
                tx.send_modify(|w| {
                    w.attempted = version;
                    w.error = Some(e.to_string());
                });
                if closed {
                    return;
                }
                std::thread::sleep(std::time::Duration::from_millis(500));
            }
        }
        if closed && written == version {
            return;
        }
    }
}

/// temp (O_EXCL, 0600) + fsync + rename + directory fsync.
fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = tmp_path(path);
    // A temp file left by a crash mid-write: ours, stale.
    match fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    fs::rename(&tmp, path)?;
    // The rename itself is durable only once the directory is synced.
    File::open(parent(path))?.sync_all()
}

/// Reads the state file: empty when it does not exist, migrated from format 1, moved aside when
/// corrupt.
fn load(path: &Path) -> Result<PersistedState, StoreError> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(PersistedState::empty()),
        Err(source) => return Err(io_err(path, source)),
    };
    let value: serde_json::Value = match serde_json::from_slice(&bytes) {
        Ok(v) => v,
        Err(e) => return set_aside(path, &e.to_string()),
    };
    let version = match value.get("version") {
        None => 0,
        Some(v) => match v.as_u64().and_then(|v| u32::try_from(v).ok()) {
            Some(v) => v,
            None => return set_aside(path, "`version` is not a number"),
        },
    };
    if version > FORMAT_VERSION {
        return Err(StoreError::UnsupportedVersion {
            path: path.to_path_buf(),
            version,
        });
    }
    if version == FORMAT_VERSION {
        return match serde_json::from_value::<PersistedState>(value) {
            Ok(s) => Ok(s),
            Err(e) => set_aside(path, &e.to_string()),
        };
    }
    let migrated = match migrate_v1(value, version, &tracks_path(path)) {
        Ok(s) => s,
        Err(e) => return set_aside(path, &e),
    };
    let mut bytes = serde_json::to_vec_pretty(&migrated).expect("the state serializes");
    bytes.push(b'\n');
    write_atomically(path, &bytes).map_err(|source| io_err(path, source))?;
    let tracks = tracks_path(path);
    if tracks.exists() {
        if let Err(e) = fs::remove_file(&tracks) {
            tracing::warn!(path = %tracks.display(), error = %e, "could not remove the migrated track index");
        }
    }
    tracing::info!(path = %path.display(), from = version, to = FORMAT_VERSION, rooms = migrated.rooms.len(), "state file migrated");
    Ok(migrated)
}

/// Moves a corrupt state file aside and starts empty (see the module docs).
fn set_aside(path: &Path, reason: &str) -> Result<PersistedState, StoreError> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".corrupt-{now}"));
    let aside = path.with_file_name(name);
    fs::rename(path, &aside).map_err(|source| io_err(path, source))?;
    tracing::error!(
        path = %path.display(),
        moved_to = %aside.display(),
        reason,
        "state file corrupt: moved aside, starting with no rooms"
    );
    Ok(PersistedState::empty())
}

/// Format 1: `{"rooms": {name: Room}, "next_id"}` as the server wrote it (no version), or the
/// store's `{"version": 1, "rooms": {"rooms", "next_id"}, "events": {"last_seq"}}`; tracks in
/// `<stem>.tracks.json` (`{sid: {room, owner, owner_sid, dp, kind, codec}}`).
fn migrate_v1(
    value: serde_json::Value,
    version: u32,
    tracks: &Path,
) -> Result<PersistedState, String> {
    #[derive(Deserialize)]
    struct V1 {
        rooms: RoomsState,
        #[serde(default)]
        events: EventLog,
    }
    #[derive(Deserialize)]
    struct V1Track {
        room: String,
        owner: String,
        owner_sid: String,
        dp: u64,
        kind: String,
        codec: SavedCodec,
    }
    let (rooms, events) = if version == 0 {
        let rooms: RoomsState = serde_json::from_value(value).map_err(|e| e.to_string())?;
        (rooms, EventLog::default())
    } else {
        let v1: V1 = serde_json::from_value(value).map_err(|e| e.to_string())?;
        (v1.rooms, v1.events)
    };
    let mut state = PersistedState::empty();
    state.next_id = rooms.next_id;
    state.rooms = rooms
        .rooms
        .into_iter()
        .map(|(name, room)| {
            (
                name,
                PersistedRoom {
                    room,
                    tracks: Default::default(),
                },
            )
        })
        .collect();
    state.events.last_seq = events.rooms().map(|(r, s)| (r.to_owned(), s)).collect();
    let index: std::collections::BTreeMap<String, V1Track> = match fs::read(tracks) {
        Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            tracing::warn!(path = %tracks.display(), error = %e, "track index unreadable; ignored");
            Default::default()
        }),
        Err(_) => Default::default(),
    };
    for (sid, t) in index {
        let kind = match t.kind.as_str() {
            "audio" => MediaKind::Audio,
            "video" => MediaKind::Video,
            _ => continue,
        };
        if let Some(r) = state.rooms.get_mut(&t.room) {
            r.tracks.insert(
                sid,
                SavedTrack {
                    owner: t.owner,
                    owner_sid: t.owner_sid,
                    dp: t.dp,
                    kind,
                    codec: t.codec,
                },
            );
        }
    }
    Ok(state)
}

/// Where format 1 kept the published tracks: `state.json` → `state.tracks.json`.
pub(crate) fn tracks_path(state_file: &Path) -> PathBuf {
    state_file.with_extension("tracks.json")
}

fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
}

fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

fn io_err(path: &Path, source: io::Error) -> StoreError {
    StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}
