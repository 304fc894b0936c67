//! The room data the control daemon keeps (and persists): rooms, their
//! participants, tracks and subscriptions, plus the configuration types.
//! Plain data with serde derives; the rules live in [`super::Rooms`].

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

pub use sluice_proto::MediaKind;

use crate::auth::{Grants, Role, Source};

/// Per-room settings, given at creation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RoomConfig {
    /// Participants admitted at once (a resume of the same identity does not count twice).
    pub max_participants: u32,
    /// Media topology setting (issue 8): pinned SFU, pinned P2P mesh, or automatic.
    pub mode: RoomMode,
    /// Seconds a room may stay empty (including right after creation) before it is deleted.
    pub empty_timeout_s: u64,
    /// Controllers admitted at once, and so also the most that can hold control.
    pub max_controllers: u32,
    pub metadata: Option<String>,
    /// This room's hybrid policy knobs when they differ from the daemon's `[hybrid]`
    /// (`POST /api/rooms {"hybrid": {...}}`); `None`: the daemon's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hybrid: Option<crate::hybrid::HybridConfig>,
}

/// The room's topology setting (seed 000 "Decision 2", issue 8); see [`crate::hybrid`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RoomMode {
    /// Pinned SFU: today's behaviour.
    #[default]
    Sfu,
    /// Pinned P2P mesh (up to `p2p_limit` participants).
    P2p,
    /// The hybrid policy decides by participant count and capabilities.
    Auto,
}

impl RoomMode {
    pub fn as_str(self) -> &'static str {
        match self {
            RoomMode::Sfu => "sfu",
            RoomMode::P2p => "p2p",
            RoomMode::Auto => "auto",
        }
    }
}

/// One room.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Room {
    pub name: String,
    pub config: RoomConfig,
    pub created_at_ms: u64,
    /// Since when the room has had nobody in it; `None` while occupied.
    pub empty_since_ms: Option<u64>,
    /// Participants by identity.
    pub participants: BTreeMap<String, Participant>,
}

/// One participant, keyed by identity within its room.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Participant {
    /// Server-assigned id of this session of the identity; changes on resume.
    pub sid: String,
    pub identity: String,
    pub name: Option<String>,
    pub metadata: Option<String>,
    pub role: Role,
    pub grants: Grants,
    pub joined_at_ms: u64,
    /// Published tracks by track id.
    pub tracks: BTreeMap<String, Track>,
    /// Track ids (of other participants) this participant receives.
    pub subscriptions: BTreeSet<String>,
    pub control: ControlState,
}

/// Where a controller stands on remote control of the host's screen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ControlState {
    #[default]
    None,
    Requested,
    Granted,
}

/// One published track.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Track {
    pub id: String,
    pub kind: MediaKind,
    pub source: Source,
    /// Simulcast layers, lowest first; empty for a single-encoding track.
    pub layers: Vec<SimulcastLayer>,
    pub muted: bool,
}

/// One simulcast encoding, named by its RID (RFC 8851).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimulcastLayer {
    pub rid: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_bitrate_bps: Option<u64>,
}

/// What a publish request asks for; the server assigns the track id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishTrack {
    pub kind: MediaKind,
    pub source: Source,
    pub layers: Vec<SimulcastLayer>,
    pub muted: bool,
}

/// Who asks for an operation that either the participant itself or an
/// administrator (HTTP API with an admin token) may perform.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Actor<'a> {
    Participant(&'a str),
    Admin,
}

/// Media quality a role gets from the dataplane's allocator (seed 000,
/// "Dynamic Roles with Quality Tiers").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct QualityTier {
    /// Ceiling on what is forwarded to (and accepted from) one participant.
    pub max_bitrate_bps: u64,
    /// Lower is served first when bandwidth is short.
    pub priority: u8,
}

/// The tier of each role; configurable, defaults from seed 000.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TierTable {
    pub host: QualityTier,
    pub controller: QualityTier,
    pub viewer: QualityTier,
}

/// A request to join, usually built from verified token claims.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Join {
    pub identity: String,
    pub name: Option<String>,
    pub metadata: Option<String>,
    pub role: Role,
    pub grants: Grants,
}

/// Daemon-wide room settings (from the config file, not persisted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomsConfig {
    /// A join naming a missing room creates it with `default_room`.
    pub auto_create: bool,
    pub default_room: RoomConfig,
    pub tiers: TierTable,
    /// Stale participants and kicks (`control.kick_ban_s`, `control.oneshot_grace_s`,
    /// `control.resume_grace_s`; docs/security.md).
    pub lifetimes: Lifetimes,
}

/// How long a kick lasts and how long a participant without a live connection stays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifetimes {
    /// After a kick, tokens issued at or before it are refused for this long (D38).
    pub kick_ban_s: u64,
    /// A WHIP/WHEP/sidecar participant whose media has been dead this long leaves.
    pub oneshot_grace_s: u64,
    /// A participant restored from the state file that has not resumed this long leaves.
    pub resume_grace_s: u64,
}

impl Default for Lifetimes {
    fn default() -> Self {
        Lifetimes {
            kick_ban_s: 6 * 3600,
            oneshot_grace_s: 30,
            resume_grace_s: 60,
        }
    }
}

impl Default for RoomConfig {
    fn default() -> Self {
        RoomConfig {
            max_participants: 100,
            mode: RoomMode::Sfu,
            empty_timeout_s: 300,
            max_controllers: 3,
            metadata: None,
            hybrid: None,
        }
    }
}

impl TierTable {
    pub fn tier(&self, role: Role) -> QualityTier {
        match role {
            Role::Host => self.host,
            Role::Controller => self.controller,
            Role::Viewer => self.viewer,
        }
    }
}

impl Default for TierTable {
    fn default() -> Self {
        TierTable {
            host: QualityTier {
                max_bitrate_bps: 4_000_000,
                priority: 1,
            },
            controller: QualityTier {
                max_bitrate_bps: 4_000_000,
                priority: 2,
            },
            viewer: QualityTier {
                max_bitrate_bps: 2_000_000,
                priority: 3,
            },
        }
    }
}

impl Default for RoomsConfig {
    fn default() -> Self {
        RoomsConfig {
            auto_create: true,
            default_room: RoomConfig::default(),
            tiers: TierTable::default(),
            lifetimes: Lifetimes::default(),
        }
    }
}

impl Join {
    /// The join a verified access token asks for.
    pub fn from_claims(claims: &crate::auth::Claims) -> Self {
        Join {
            identity: claims.sub.clone(),
            name: claims.name.clone(),
            metadata: claims.metadata.clone(),
            role: claims.role,
            grants: claims.grants.clone(),
        }
    }
}

impl Room {
    pub fn host(&self) -> Option<&Participant> {
        self.participants.values().find(|p| p.role == Role::Host)
    }

    /// Participants with `role`, not counting `except` (the identity being replaced or changed).
    pub(crate) fn count_role(&self, role: Role, except: &str) -> usize {
        self.participants
            .values()
            .filter(|p| p.role == role && p.identity != except)
            .count()
    }

    /// Who publishes `track_id`, if anyone here does.
    pub fn track_owner(&self, track_id: &str) -> Option<&Participant> {
        self.participants
            .values()
            .find(|p| p.tracks.contains_key(track_id))
    }
}
