//! Notifications the dataplane sends unprompted (`Event.event`): connection progress of
//! sessions, media milestones of tracks, and periodic per-shard counters.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::congestion::StreamState;
use crate::ids::{SessionId, SubscriptionId, TrackId};
use crate::vocab::CandidateProtocol;

/// Something that happened in the dataplane. The `type` field selects the variant.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Notification {
    /// The first valid STUN binding request arrived (ICE-lite: we are connected once we answer);
    /// `remote` is the peer's address as seen by us.
    IceConnected {
        session: SessionId,
        remote: SocketAddr,
        /// The transport of the pair: UDP, or a TCP connection to our passive candidate
        /// (ICE-TCP). Absent in older dataplanes' messages: UDP.
        #[serde(default)]
        transport: CandidateProtocol,
    },
    /// No consent refresh (RFC 7675) for the disconnect timeout; media towards the peer stops.
    IceDisconnected { session: SessionId },
    /// The peer nominated or switched to another address (e.g. a network change).
    SelectedPairChanged {
        session: SessionId,
        local: SocketAddr,
        remote: SocketAddr,
        /// As in `IceConnected`.
        #[serde(default)]
        transport: CandidateProtocol,
    },
    /// DTLS finished and SRTP keys are installed. `profile` is the RFC 5764/7714 name, e.g.
    /// `"SRTP_AEAD_AES_128_GCM"`; `version` e.g. `"DTLS 1.2"`.
    DtlsConnected {
        session: SessionId,
        profile: String,
        version: String,
    },
    /// DTLS failed (bad fingerprint, alert, timeout); a `SessionClosed` follows.
    DtlsFailed { session: SessionId, reason: String },
    /// The first packet of a track layer arrived (index into `AddTrack.layers`).
    FirstPacket { track: TrackId, layer: u8 },
    /// A keyframe of a track layer arrived.
    Keyframe { track: TrackId, layer: u8 },
    /// A data-channel receiver fell behind: relayed messages for it are being dropped
    /// (`reliable`: its `_reliable` buffer is over the cap; else its `_lossy` one). Sent once when
    /// dropping starts; `dropped` counts this session's drops of that kind so far. The control
    /// daemon tells the receiver (issue 17).
    DataBehind {
        session: SessionId,
        reliable: bool,
        dropped: u64,
    },
    /// A trunk heard nothing authenticated from its peer for its `silence_ms` (once per
    /// episode; its own reports keep an idle trunk alive, so the path or the peer is gone).
    /// `silent_ms`: since the last packet. Since version 5.
    TrunkSilent { session: SessionId, silent_ms: u64 },
    /// A silent trunk hears its peer again; `silent_ms`: how long it heard nothing.
    TrunkResumed { session: SessionId, silent_ms: u64 },
    /// A trunk suspended (`shed`) or resumed a relay (`relay_track`'s `subscription`) because
    /// of its estimate (D109); `estimate_bps`: the trunk's estimate then. A trunk resumes at
    /// most one relay per 2 s, and a relay is shed again only after a resume. Since version 6.
    RelayShed {
        session: SessionId,
        subscription: SubscriptionId,
        shed: bool,
        estimate_bps: u64,
    },
    /// The session is gone, with everything on it.
    SessionClosed {
        session: SessionId,
        reason: CloseReason,
    },
    /// Periodic per-shard counters.
    StatsSnapshot(ShardStats),
    /// The allocator paused a subscription for bandwidth, or resumed it (only with pausing
    /// enabled: `dataplane.congestion_pause`).
    StreamState {
        session: SessionId,
        subscription: SubscriptionId,
        state: StreamState,
    },
}

impl Notification {
    /// Every `type` value a notification may carry.
    pub const TYPES: &'static [&'static str] = &[
        "ice_connected",
        "ice_disconnected",
        "selected_pair_changed",
        "dtls_connected",
        "dtls_failed",
        "first_packet",
        "keyframe",
        "data_behind",
        "trunk_silent",
        "trunk_resumed",
        "relay_shed",
        "session_closed",
        "stats_snapshot",
        "stream_state",
    ];
}

/// Why a session ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CloseReason {
    /// `CloseSession` (it is still reported, so listeners need only one code path).
    Requested,
    /// ICE never connected, or stayed disconnected past the timeout.
    IceTimeout,
    DtlsFailed,
    /// The peer sent a DTLS close_notify.
    DtlsClosed,
    /// The shard dropped the session after an internal error (counted, see `dropped`).
    Internal,
}

/// One shard's counters, totals since the shard started (subtract snapshots for rates).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShardStats {
    /// On the wire `worker` (the protocol's word before shards were called shards).
    #[serde(rename = "worker")]
    pub shard: u16,
    pub counters: Counters,
}

/// The `Counters::dropped` key of pacer queue-delay bucket `i` (bucket `i` holds packets that
/// waited less than `rtp_core::pacer::DELAY_BUCKET_BOUNDS_MS[i]`; the last, the rest).
pub fn pacer_delay_key(i: usize) -> String {
    use rtp_core::pacer::DELAY_BUCKET_BOUNDS_MS;
    match DELAY_BUCKET_BOUNDS_MS.get(i) {
        Some(bound) => format!("pacer_delay_lt_{bound}ms"),
        None => format!("pacer_delay_ge_{}ms", DELAY_BUCKET_BOUNDS_MS[i - 1]),
    }
}

/// Shard totals. New counters may be added to `dropped` without a version change.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Counters {
    pub rx_packets: u64,
    pub tx_packets: u64,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    /// Dropped packets by reason (`"srtp_auth"`, `"unknown_ssrc"`, `"parse"`, …).
    #[serde(default)]
    pub dropped: BTreeMap<String, u64>,
    /// Sessions on this shard now.
    pub sessions: u32,
    /// Event-loop iterations that hit a phase bound (style.md §4).
    pub loop_overruns: u64,
}
