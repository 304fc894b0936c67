//! Persistence of the control state (rooms, participants, roles, grants,
//! tracks, id and event-sequence counters) in one local JSON file, so a
//! control daemon restart recovers its rooms.
//!
//! - **When**: the daemon calls [`Store::save`] after every mutating
//!   operation, before it answers the request (no debouncing). The state is a
//!   few KB and control operations happen at human rate, so one write and two
//!   fsyncs per operation are cheap, and an acknowledged change is never lost.
//! - **How**: write `<file>.tmp` in the same directory, fsync it, rename it
//!   over `<file>`, fsync the directory — a crash leaves the old or the new
//!   file, never a torn one.
//! - **Load**: a missing file is a first start (`Ok(None)`); an unreadable or
//!   corrupt file is an error naming the file — never a silent reset, since
//!   that would drop every room without anyone noticing.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::events::EventLog;
use crate::room::RoomsState;

/// Everything that survives a restart.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersistedState {
    /// Format version, [`FORMAT_VERSION`]; a newer one is refused, not misread.
    pub version: u32,
    pub rooms: RoomsState,
    pub events: EventLog,
}

/// Why the state could not be loaded or saved. Every variant names the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error("state file {}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("state file {} is corrupt ({reason}); fix or move it away to start empty", path.display())]
    Corrupt { path: PathBuf, reason: String },
    #[error("state file {} has format version {version}, this build reads up to {FORMAT_VERSION}", path.display())]
    UnsupportedVersion { path: PathBuf, version: u32 },
}

/// The state file.
#[derive(Debug, Clone)]
pub struct Store {
    path: PathBuf,
}

impl Store {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Store { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the state; `Ok(None)` if the file does not exist yet.
    pub fn load(&self) -> Result<Option<PersistedState>, StoreError> {
        let bytes = match fs::read(&self.path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(self.io(source)),
        };
        let version: Version =
            serde_json::from_slice(&bytes).map_err(|e| self.corrupt(e.to_string()))?;
        if version.version > FORMAT_VERSION {
            return Err(StoreError::UnsupportedVersion {
                path: self.path.clone(),
                version: version.version,
            });
        }
        let state: PersistedState =
            serde_json::from_slice(&bytes).map_err(|e| self.corrupt(e.to_string()))?;
        Ok(Some(state))
    }

    /// Replaces the file with `state`, atomically and durably.
    pub fn save(&self, state: &PersistedState) -> Result<(), StoreError> {
        let mut state_bytes =
            serde_json::to_vec_pretty(state).expect("the state is plain data and serializes");
        state_bytes.push(b'\n');
        let tmp = tmp_path(&self.path);
        let write = || -> io::Result<()> {
            let mut f = File::create(&tmp)?;
            f.write_all(&state_bytes)?;
            f.sync_all()?;
            drop(f);
            fs::rename(&tmp, &self.path)?;
            // The rename itself is durable only once the directory is synced.
            let dir = match self.path.parent() {
                Some(p) if !p.as_os_str().is_empty() => p,
                _ => Path::new("."),
            };
            File::open(dir)?.sync_all()
        };
        write().map_err(|source| self.io(source))
    }

    fn io(&self, source: io::Error) -> StoreError {
        StoreError::Io {
            path: self.path.clone(),
            source,
        }
    }

    fn corrupt(&self, reason: String) -> StoreError {
        StoreError::Corrupt {
            path: self.path.clone(),
            reason,
        }
    }
}

impl PersistedState {
    pub fn new(rooms: RoomsState, events: EventLog) -> Self {
        PersistedState {
            version: FORMAT_VERSION,
            rooms,
            events,
        }
    }
}

#[derive(Deserialize)]
struct Version {
    version: u32,
}

fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
}

/// Version written by this build.
pub const FORMAT_VERSION: u32 = 1;
