//! The congestion-control parts of the protocol (version 2): the `session_stats` answer (one
//! session's estimate, what set it, its allocations and forwarder drops) and the
//! `stream_state` notification (the allocator paused or resumed a subscription, only with
//! pausing enabled). What the fields mean is in docs/congestion.md.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::ids::{SessionId, SubscriptionId, TrackId};
use super::vocab::MediaKind;

/// `ReplyOk::SessionStats`: a session as its worker sees it now.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionStatsReport {
    pub session: SessionId,
    /// The worker holding it; `null` while no packet has placed it yet (then the rest is 0).
    pub worker: Option<u16>,
    /// ICE + DTLS done (or plain RTP).
    pub connected: bool,
    /// The send-side estimate towards this peer, bits per second.
    pub estimate_bps: u64,
    /// What set it: `initial`, `twcc`, `remb`, `loss` or `probe`.
    pub estimate_source: String,
    /// A REMB ceiling in force (below what we send and falling), if any.
    pub remb_cap_bps: Option<u64>,
    /// What transport-cc feedback says arrived (about half a second), if it comes.
    pub acked_bps: Option<u64>,
    /// What was sent over the last second.
    pub sent_bps: u64,
    /// The pacer's rate.
    pub pacing_bps: u64,
    pub rtt_ms: Option<u64>,
    /// The latest receiver reports' mean fraction lost of what we send (/256; a packet repaired
    /// before the report counts as received). Since version 6.
    #[serde(default)]
    pub fraction_lost: Option<u8>,
    /// Packets transport-cc feedback reported received and lost since the session started: the
    /// path's loss before repair (a trunk's loss, D108). Since version 6.
    #[serde(default)]
    pub reported_received: u64,
    #[serde(default)]
    pub reported_lost: u64,
    pub probe_packets: u64,
    pub probe_bytes: u64,
    /// Media packets forwarded to this peer, retransmissions sent.
    pub forwarded: u64,
    pub retransmitted: u64,
    /// Packets the forwarder did not send to this peer, by reason (`paused`,
    /// `waiting_for_keyframe`, `not_current_layer`, `temporal_layer`, `padding`, `duplicate`,
    /// `too_late`, `malformed`).
    pub forward_drops: BTreeMap<String, u64>,
    /// What this peer receives.
    pub subscriptions: Vec<SubscriptionStats>,
    /// What this peer publishes: the measured rate of each layer.
    pub tracks: Vec<PublishedTrackStats>,
}

impl SessionStatsReport {
    /// The answer for a session no packet has placed on a worker yet.
    pub fn unplaced(session: SessionId) -> Self {
        Self {
            session,
            worker: None,
            connected: false,
            estimate_bps: 0,
            estimate_source: "initial".into(),
            remb_cap_bps: None,
            acked_bps: None,
            sent_bps: 0,
            pacing_bps: 0,
            rtt_ms: None,
            fraction_lost: None,
            reported_received: 0,
            reported_lost: 0,
            probe_packets: 0,
            probe_bytes: 0,
            forwarded: 0,
            retransmitted: 0,
            forward_drops: BTreeMap::new(),
            subscriptions: Vec::new(),
            tracks: Vec::new(),
        }
    }
}

/// One subscription of a `SessionStatsReport`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionStats {
    pub subscription: SubscriptionId,
    pub track: TrackId,
    pub kind: MediaKind,
    /// The allocator's layer (`null`: audio, paused, or nothing available yet).
    pub allocated_layer: Option<u8>,
    /// The layer being forwarded (it follows the target at the next keyframe).
    pub current_layer: Option<u8>,
    pub target_layer: u8,
    /// Paused by the allocator (only with `dataplane.congestion_pause`).
    pub paused: bool,
    pub muted: bool,
    /// What each of the track's layers costs, bits per second (measured at its publisher).
    pub layer_bps: Vec<u64>,
}

/// One published track of a `SessionStatsReport`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublishedTrackStats {
    pub track: TrackId,
    /// Measured on ingress per layer (2 s window), bits per second; `null`: not sending.
    pub layer_bps: Vec<Option<u64>>,
}

/// The state a `stream_state` notification announces.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StreamState {
    /// Not forwarded: the estimate cannot carry even its lowest layer.
    Paused,
    /// Forwarded again (after a probe found room).
    Active,
}
