//! Server → client messages (docs/protocol.md "Server → client"), typed. Room logic produces
//! these values; the WebSocket adapter writes them as JSON, and another protocol's adapter can
//! translate them instead.

use serde::Serialize;

use super::client::{P2pSignal, PcName};
use super::limits::Json;
use crate::auth::{Grants, Role, Source};
use crate::hybrid::turn::IceServer;
use crate::hybrid::{Reason, Strategy, Topology};
use crate::room::{MediaKind, Participant, RoomMode, Track};

/// What the server can send. The `type` field selects the variant.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    Joined(Box<Joined>),
    JoinQueued {
        position: usize,
        estimated_wait_ms: u64,
    },
    Pong {
        t: Option<Json<256>>,
    },
    Answer {
        pc: PcName,
        sdp: String,
    },
    Offer {
        pc: PcName,
        sdp: String,
    },
    ParticipantJoined {
        participant: ParticipantInfo,
    },
    ParticipantLeft {
        sid: String,
        identity: String,
    },
    /// To the publisher (with its `cid`) or to everyone else (with `participant_sid`).
    TrackPublished {
        #[serde(skip_serializing_if = "Option::is_none")]
        cid: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        participant_sid: Option<String>,
        track: TrackInfo,
    },
    TrackUnpublished {
        track_sid: String,
    },
    TrackMuted {
        track_sid: String,
        muted: bool,
    },
    RoleChanged {
        identity: String,
        role: Role,
    },
    ControlRequested {
        identity: String,
    },
    ControlGranted {
        identity: String,
    },
    ControlRevoked {
        identity: String,
    },
    HostTransferred {
        identity: String,
    },
    Input {
        from: String,
        event: Json<4096>,
    },
    P2pSignal {
        from: String,
        from_identity: String,
        signal: P2pSignal,
    },
    ModeChange {
        id: u64,
        from: Topology,
        to: Topology,
        strategy: Strategy,
        reason: Reason,
        grace_ms: u64,
    },
    ModeChanged {
        id: u64,
        mode: Topology,
    },
    ModePrewarm {},
    ModeSetting {
        setting: RoomMode,
    },
    Notice {
        code: String,
        message: String,
    },
    /// The SFU paused (or resumed) a subscription for bandwidth (docs/congestion.md; only with
    /// `dataplane.congestion_pause`).
    StreamState {
        track_sid: String,
        /// `paused` or `active`.
        state: &'static str,
        reason: &'static str,
    },
    /// Relayed data-channel messages for this client are being dropped: its `_reliable`
    /// (`reliable`) or `_lossy` buffer at the SFU is over the cap because it reads too slowly;
    /// `dropped` counts its drops of that kind so far (issue 17, D62). Sent once per episode.
    DataBehind {
        reliable: bool,
        dropped: u64,
    },
    /// The SFU now relays (`data_channel: true`) or no longer relays this controller's `_input`
    /// data channel to the host (D87/D88): its client sends input there or over the WebSocket.
    InputRoute {
        data_channel: bool,
    },
    /// `[turn]`: fresh TURN credentials, sent at half the lifetime of the previous ones
    /// (`turn.ttl_s`): for PeerConnections made from now on and the next ICE restart.
    IceServers {
        ice_servers: Vec<IceServer>,
    },
    /// `[cluster]`: the room is served by another node; join again at `url`.
    Redirect {
        url: String,
    },
    Leave {
        reason: LeaveReason,
    },
    /// The media server lost this client's sessions (the dataplane restarted): close both
    /// PeerConnections and negotiate anew — a fresh publisher offer (its tracks keep their
    /// sids), and an answer to the subscriber offer that follows. The participant stays.
    Reconnect {
        reason: ReconnectReason,
    },
    Error(ErrorInfo),
}

/// Why `reconnect` was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReconnectReason {
    DataplaneRestarted,
}

/// `joined` (boxed in [`ServerMessage`]: it is the largest).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Joined {
    pub room: RoomInfo,
    pub participant: ParticipantInfo,
    pub participants: Vec<ParticipantInfo>,
    pub mode: ModeInfo,
    pub ice_servers: Vec<IceServer>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RoomInfo {
    pub name: String,
    pub sid: String,
}

/// ParticipantInfo (docs/protocol.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ParticipantInfo {
    pub sid: String,
    pub identity: String,
    pub name: Option<String>,
    pub role: Role,
    pub grants: Grants,
    pub metadata: Option<String>,
    pub tracks: Vec<TrackInfo>,
}

/// TrackInfo (docs/protocol.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TrackInfo {
    pub sid: String,
    pub kind: MediaKind,
    pub source: Source,
    pub name: String,
    pub muted: bool,
    pub simulcast: Vec<LayerInfo>,
    pub participant_sid: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LayerInfo {
    pub rid: String,
    pub width: u32,
    pub height: u32,
}

/// ModeInfo: the topology now, the setting, and the migration under way.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ModeInfo {
    pub mode: Topology,
    pub setting: RoomMode,
    pub migrating: Option<Migrating>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Migrating {
    pub id: u64,
    pub from: Topology,
    pub to: Topology,
    pub strategy: Strategy,
}

/// Why the server ends a client's connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LeaveReason {
    Kicked,
    RoomDeleted,
    Replaced,
    /// `[cluster]`: this node gave the room up (it lost its lease); join again, through any
    /// node.
    Reconnect,
}

/// `error {code, message, field?}` (the `req` of the refused request is added by the adapter).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ErrorInfo {
    pub code: String,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl ParticipantInfo {
    pub fn of(p: &Participant) -> Self {
        Self {
            sid: p.sid.clone(),
            identity: p.identity.clone(),
            name: p.name.clone(),
            role: p.role,
            grants: p.grants.clone(),
            metadata: p.metadata.clone(),
            tracks: p
                .tracks
                .values()
                .map(|t| TrackInfo::of(t, &p.sid))
                .collect(),
        }
    }
}

impl TrackInfo {
    pub fn of(t: &Track, participant_sid: &str) -> Self {
        Self {
            sid: t.id.clone(),
            kind: t.kind,
            source: t.source,
            name: String::new(),
            muted: t.muted,
            simulcast: t
                .layers
                .iter()
                .map(|l| LayerInfo {
                    rid: l.rid.clone(),
                    width: 0,
                    height: 0,
                })
                .collect(),
            participant_sid: participant_sid.to_owned(),
        }
    }
}
