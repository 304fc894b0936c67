//! Commands the control daemon sends (`Request.command`) and the success payloads the dataplane
//! answers with (`ReplyOk`). Field-level checks live in `validate.rs`; the JSON forms are in
//! `docs/control-socket.md`.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::congestion::SessionStatsReport;
use crate::ids::{SessionId, SubscriptionId, TrackId};
use crate::notification::ShardStats;
use crate::vocab::{Candidate, Codec, DtlsRole, ExtIds, MediaKind, Source};

/// What the control daemon asks of the dataplane. The `type` field selects the variant.
///
/// Field-less commands are written `Ping {}` rather than `Ping`: serde ignores unknown fields on
/// unit variants of internally tagged enums, and a typo must not pass silently.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
// One command per control-socket request, never stored in bulk: a `CreateSession` inline is
// cheaper than a box per request.
#[allow(clippy::large_enum_variant)]
pub enum Command {
    /// Create a session on a shard → `ReplyOk::SessionCreated`.
    CreateSession(CreateSession),
    /// Close a session and everything on it (its tracks and subscriptions) → `Done`.
    CloseSession { session: SessionId },
    /// Supply the remote ICE credentials and DTLS fingerprint learned after `CreateSession`
    /// (e.g. from the SDP answer to an offer the server made) → `Done`.
    SetRemote {
        session: SessionId,
        remote_ufrag: String,
        remote_pwd: String,
        remote_fingerprint: Option<String>,
    },
    /// New local ICE credentials (and the remote's, when known); DTLS/SRTP state is kept → `Done`.
    IceRestart {
        session: SessionId,
        ufrag: String,
        pwd: String,
        remote_ufrag: Option<String>,
        remote_pwd: Option<String>,
    },
    /// Start accepting a published track on a session → `Done`.
    AddTrack(AddTrack),
    /// Stop a track; its subscriptions end too → `Done`.
    RemoveTrack { track: TrackId },
    /// Forward a track to a subscriber session → `Done`, once the subscriber's worker has the
    /// subscription. The publisher's worker (when another) is told right after, in order with
    /// any later command for it: packets it reads before that are not forwarded (a subscriber
    /// starts at a keyframe anyway).
    Subscribe(Subscribe),
    /// Stop forwarding → `Done`.
    Unsubscribe { subscription: SubscriptionId },
    /// Drop (muted) or forward a track's media for all its subscribers → `Done`.
    SetMuted { track: TrackId, muted: bool },
    /// Highest spatial and temporal layer (0-based, inclusive) a subscription may receive → `Done`.
    SetLayerCap {
        subscription: SubscriptionId,
        max_spatial: u8,
        max_temporal: u8,
    },
    /// Bandwidth-allocation priority of a subscription or of a whole session → `Done`.
    SetPriority {
        target: PriorityTarget,
        priority: u8,
    },
    /// One page of sessions with id > `after` (all when `after` is null), for resync →
    /// `ReplyOk::Sessions`.
    ListSessions {
        #[serde(default)]
        after: Option<SessionId>,
    },
    /// One page of tracks with id > `after` → `ReplyOk::Tracks`.
    ListTracks {
        #[serde(default)]
        after: Option<TrackId>,
    },
    /// One page of subscriptions with id > `after` → `ReplyOk::Subscriptions`.
    ListSubscriptions {
        #[serde(default)]
        after: Option<SubscriptionId>,
    },
    /// Liveness check → `ReplyOk::Pong`.
    Ping {},
    /// Counters of every shard now → `ReplyOk::Stats`.
    Stats {},
    /// Stop the dataplane process: it answers `Done`, then closes every session and exits, as
    /// on SIGTERM. How the control daemon stops a dataplane it spawned; an embedding process
    /// (tests) decides itself what a request means for it.
    Shutdown {},
    /// One session's estimate, allocations and forwarder drops → `ReplyOk::SessionStats`.
    SessionStats { session: SessionId },
    /// Relay one layer of a published track over a trunk session (cascade) → `Done`: its
    /// packets go out with their sequence numbers, timestamps and payloads unchanged, under
    /// `ssrc`. A relay is a subscription of the trunk session: `unsubscribe` stops it,
    /// `list_subscriptions` lists it, NACKs and PLIs from the trunk are answered as a
    /// subscriber's are. One command per layer: the layers a trunk carries are the relays
    /// that exist.
    RelayTrack(RelayTrack),
    /// A server message into a room's data-channel relay (`POST /api/rooms/{room}/data`,
    /// issue 17) → `Done` once a worker has it; delivery is counted like a relayed message's.
    SendData(SendData),
    /// What a data session may send, changed live (a grant, a role, control granted or revoked,
    /// the host moving or leaving) → `Done`. Also recorded in the session's `DataSpec`, so
    /// `list_sessions` and a resync see it. Since version 4.
    UpdateData(UpdateData),
}

/// `Command::UpdateData`: the new `can_publish` and `input_to` of a data session (both replace
/// what `DataSpec` had).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateData {
    /// A session created with `data`.
    pub session: SessionId,
    /// `DataSpec::can_publish`.
    pub can_publish: bool,
    /// `DataSpec::input_to`; `null` clears the input route.
    #[serde(default)]
    pub input_to: Option<String>,
}

/// `Command::SendData`: `payload` goes to the data sessions of `room` (only those whose
/// participant is in `to`, when it names any) on their `_reliable` or `_lossy` channel, stamped
/// `from` (the control daemon's server sender, which no participant id can equal).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendData {
    /// The relay group (`DataSpec::room`), 1–128 bytes.
    pub room: String,
    /// The sender id stamped on the message, 1–128 bytes.
    pub from: String,
    /// Destination participant ids (at most 64, 1–128 bytes each); empty: the whole room.
    #[serde(default)]
    pub to: Vec<String>,
    /// `_reliable` (true) or `_lossy`.
    pub reliable: bool,
    /// Binary (PPID 53/57) or text (51/56) message.
    #[serde(default)]
    pub binary: bool,
    /// The payload; with the envelope at most 65,536 bytes (the relay's message limit).
    pub payload: Vec<u8>,
}

impl Command {
    /// Every `type` value a command may carry, for error messages that name an unknown one.
    pub const TYPES: &'static [&'static str] = &[
        "create_session",
        "close_session",
        "set_remote",
        "ice_restart",
        "add_track",
        "remove_track",
        "subscribe",
        "unsubscribe",
        "set_muted",
        "set_layer_cap",
        "set_priority",
        "list_sessions",
        "list_tracks",
        "list_subscriptions",
        "ping",
        "stats",
        "shutdown",
        "session_stats",
        "relay_track",
        "send_data",
        "update_data",
    ];
}

/// `Command::CreateSession`'s fields; also echoed back by `ListSessions`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateSession {
    pub session: SessionId,
    pub ice: IceParams,
    /// The peer's certificate fingerprint from SDP (`"sha-256 AB:CD:…"`); required for
    /// `webrtc` mode before DTLS can finish, may come later through `SetRemote`.
    #[serde(default)]
    pub remote_fingerprint: Option<String>,
    pub dtls_role: DtlsRole,
    /// Preferred shard (e.g. the one holding the session's room peers); the dataplane may pick
    /// another and says which in the reply. On the wire `worker_hint`.
    #[serde(default, rename = "worker_hint")]
    pub shard_hint: Option<u16>,
    pub mode: TransportMode,
    pub quality: Quality,
    /// Data channels (SDP `m=application … webrtc-datachannel`) and the relay they join;
    /// absent: none (the session's DTLS application data is discarded).
    #[serde(default)]
    pub data: Option<DataSpec>,
}

/// A session's data channels and where its messages go (issue 17). Messages a peer sends on a
/// channel labelled `_reliable` or `_lossy` are relayed, stamped with `participant`, to the other
/// data sessions of `room` (or to the participants the message names); each session receives on
/// its own channel of the same label.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataSpec {
    /// The relay group (the control daemon's room name), 1–128 bytes.
    pub room: String,
    /// The id stamped on this session's messages, 1–128 bytes (never taken from the client).
    pub participant: String,
    /// May this session's messages be relayed (the `can_publish_data` grant)?
    #[serde(default = "yes")]
    pub can_publish: bool,
    /// Open `_reliable` and `_lossy` from our side once SCTP is up (subscriber connections,
    /// whose peer opens none).
    #[serde(default)]
    pub open_channels: bool,
    /// The peer's SDP `a=max-message-size` (absent: 64 KiB; 0: any size).
    #[serde(default)]
    pub remote_max_message_size: Option<u32>,
    /// Messages per second this session may send (burst: one second's worth); absent: 1000.
    #[serde(default)]
    pub max_rate: Option<u32>,
    /// The input route (seed 000's remote control, D87): the participant that messages on this
    /// session's `_input` channel go to — the host, while this session's participant is a
    /// controller holding control. Absent: its `_input` messages are dropped (`not_permitted`).
    /// Since version 4.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_to: Option<String>,
}

fn yes() -> bool {
    true
}

/// ICE credentials (RFC 8839 §5.4: ufrag 4–256, pwd 22–256 ice-chars).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IceParams {
    /// Our ufrag: the dataplane demuxes the first STUN binding by it, so it must be unique.
    pub ufrag: String,
    pub pwd: String,
    #[serde(default)]
    pub remote_ufrag: Option<String>,
    #[serde(default)]
    pub remote_pwd: Option<String>,
}

/// How the session's media is carried.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum TransportMode {
    /// ICE-lite + DTLS-SRTP.
    Webrtc {},
    /// Unencrypted RTP/RTCP (rtcp-mux) to a fixed remote, e.g. a recorder or an ingest box on a
    /// private network. No ICE, no DTLS.
    PlainRtp {
        remote: SocketAddr,
        /// Local port to bind; `null` lets the dataplane pick one of its media ports.
        #[serde(default)]
        local_port: Option<u16>,
    },
    /// A node-to-node trunk (cascade): no ICE or DTLS; `remote` (the peer dataplane's media
    /// address) is where everything goes and the only source accepted. Its published tracks
    /// are the relays the peer sends (`add_track` on this session, the peer's relay SSRCs).
    Trunk {
        remote: SocketAddr,
        /// Local port to bind; `null` lets the dataplane pick one of its media ports.
        #[serde(default)]
        local_port: Option<u16>,
        crypto: TrunkCrypto,
        /// Nothing authenticated from the peer for this long (ms, 500..=60000) raises
        /// `trunk_silent`; `null`: [`DEFAULT_TRUNK_SILENCE_MS`]. The trunk's own reports (every
        /// 250–500 ms) keep an idle trunk from going silent. Since version 5.
        #[serde(default)]
        silence_ms: Option<u32>,
    },
}

/// A trunk's `silence_ms` when none is given.
pub const DEFAULT_TRUNK_SILENCE_MS: u32 = 2_000;
/// The range `silence_ms` must be in.
pub const TRUNK_SILENCE_MS: std::ops::RangeInclusive<u32> = 500..=60_000;

/// How a trunk is protected.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum TrunkCrypto {
    /// Plain RTP, for a network the operator trusts.
    Trusted {},
    /// SRTP (AEAD_AES_128_GCM) keyed by HKDF from the dataplane's cluster secret
    /// (`dataplane.trunk_secret_file`) and this identity; the peer uses the same epoch with
    /// the names swapped. No key material crosses the control socket.
    Srtp {
        /// This node's name and the peer's, 1-64 bytes each, different.
        local_node: String,
        remote_node: String,
        /// Bumped each time the pair's trunk is re-created (a restarted node must not reuse a
        /// key with reset sequence numbers).
        epoch: u64,
    },
}

/// `Command::RelayTrack`'s fields.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelayTrack {
    /// The relay's id, in the subscription id space.
    pub subscription: SubscriptionId,
    /// The trunk session.
    pub session: SessionId,
    pub track: TrackId,
    /// The simulcast layer (index into the track's `layers`).
    pub layer: u8,
    /// The SSRC the layer has on the trunk (the peer's `add_track` names it).
    pub ssrc: u32,
    #[serde(default)]
    pub rtx_ssrc: Option<u32>,
    pub payload_type: u8,
    #[serde(default)]
    pub rtx_payload_type: Option<u8>,
    #[serde(default)]
    pub ext_ids: ExtIds,
}

impl RelayTrack {
    /// The subscription this relay is.
    pub fn as_subscribe(&self) -> Subscribe {
        Subscribe {
            subscription: self.subscription,
            session: self.session,
            track: self.track,
            ssrc: self.ssrc,
            rtx_ssrc: self.rtx_ssrc,
            payload_type: self.payload_type,
            rtx_payload_type: self.rtx_payload_type,
            ext_ids: self.ext_ids,
        }
    }
}

/// Egress limits of a session.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Quality {
    /// Upper bound for the bandwidth estimate towards this peer, bits per second (> 0).
    pub max_bitrate_bps: u64,
    /// Share of a shard's capacity when it is short: higher wins (0–255).
    pub priority: u8,
}

/// `Command::AddTrack`'s fields; also echoed back by `ListTracks`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddTrack {
    /// The publisher session.
    pub session: SessionId,
    pub track: TrackId,
    pub kind: MediaKind,
    pub codec: Codec,
    /// One entry per simulcast layer, lowest first; a single entry for plain or SVC streams.
    pub layers: Vec<Layer>,
    #[serde(default)]
    pub ext_ids: ExtIds,
    /// End-to-end encrypted payload: forward without reading codec payload descriptors
    /// (keyframe detection then relies on the dependency descriptor).
    #[serde(default)]
    pub e2ee: bool,
    pub source: Source,
    /// The track's `a=mid`: packets from an SSRC the offer did not name are bound to this track
    /// when their MID header extension says it (RFC 8843 §9.2). 1-32 token characters.
    #[serde(default)]
    pub mid: Option<String>,
}

/// One simulcast layer (or the only stream). A layer is identified by `rid` (RFC 8851) when the
/// SSRCs are not signalled, by `ssrc` otherwise.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Layer {
    #[serde(default)]
    pub rid: Option<String>,
    #[serde(default)]
    pub ssrc: Option<u32>,
    #[serde(default)]
    pub rtx_ssrc: Option<u32>,
}

/// `Command::Subscribe`'s fields; also echoed back by `ListSubscriptions`. The SSRCs and payload
/// types are what the subscriber's SDP negotiated; the dataplane rewrites to them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Subscribe {
    pub subscription: SubscriptionId,
    /// The subscriber session.
    pub session: SessionId,
    pub track: TrackId,
    pub ssrc: u32,
    #[serde(default)]
    pub rtx_ssrc: Option<u32>,
    pub payload_type: u8,
    #[serde(default)]
    pub rtx_payload_type: Option<u8>,
    #[serde(default)]
    pub ext_ids: ExtIds,
}

/// What `SetPriority` applies to: `{"subscription": 7}` or `{"session": 3}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PriorityTarget {
    Subscription(SubscriptionId),
    Session(SessionId),
}

/// A successful reply's payload. The `type` field selects the variant.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ReplyOk {
    /// The command took effect; nothing to report.
    Done {},
    /// Answer to `CreateSession`.
    SessionCreated {
        /// On the wire `worker`.
        #[serde(rename = "worker")]
        shard: u16,
        local_candidates: Vec<Candidate>,
    },
    /// Answer to `ListSessions`; `next` is the `after` for the next page, `null` on the last.
    Sessions {
        sessions: Vec<SessionInfo>,
        next: Option<SessionId>,
    },
    /// Answer to `ListTracks`.
    Tracks {
        tracks: Vec<TrackInfo>,
        next: Option<TrackId>,
    },
    /// Answer to `ListSubscriptions`.
    Subscriptions {
        subscriptions: Vec<SubscriptionInfo>,
        next: Option<SubscriptionId>,
    },
    /// Answer to `Ping`.
    Pong {},
    /// Answer to `Stats`: one entry per shard (on the wire `workers`).
    Stats {
        #[serde(rename = "workers")]
        shards: Vec<ShardStats>,
    },
    /// Answer to `SessionStats`.
    SessionStats(SessionStatsReport),
}

/// A session as the dataplane holds it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionInfo {
    /// The creating command as last amended (`SetRemote`, `IceRestart`, `SetPriority`).
    pub spec: CreateSession,
    /// On the wire `worker`.
    #[serde(rename = "worker")]
    pub shard: u16,
    pub state: SessionState,
}

/// Connection progress of a session.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionState {
    /// Waiting for the first valid STUN binding (or, for plain RTP, for the first packet).
    New,
    /// ICE connected, DTLS handshaking.
    Connecting,
    /// Media flows.
    Connected,
    /// ICE consent lost; media is held until it comes back or the session times out.
    Disconnected,
}

/// A track as the dataplane holds it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrackInfo {
    pub spec: AddTrack,
    pub muted: bool,
    /// Indexes into `spec.layers` that have received media.
    pub active_layers: Vec<u8>,
}

/// A subscription as the dataplane holds it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionInfo {
    pub spec: Subscribe,
    pub max_spatial: u8,
    pub max_temporal: u8,
    pub priority: u8,
}
