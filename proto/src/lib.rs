//! `sluice-proto`: the control-socket protocol between the control daemon and the dataplane —
//! typed messages (`Command`, `ReplyOk`/`ErrorBody`, `Notification`), the length-prefixed JSON
//! framing, ids and field validation, a blocking client for tests and tools, the dataplane's
//! connection helper — plus the vocabulary both sides share (media kind, source, codec,
//! header-extension ids, DTLS role, candidate) with the one set of conversions to rtp-core's
//! types (`vocab`).
//!
//! It is its own crate so that the control daemon links only this, not the dataplane (io_uring,
//! sockets, shards), as mediasoup keeps its FlatBuffers schema apart from the worker.
//!
//! The same message types travel over an in-process channel or a Unix socket (style.md §1).
//! The wire format is specified in `docs/control-socket.md`, which is enough to write a client
//! in another language; this module is its reference implementation. Ids are allocated by the
//! control daemon; the dataplane has no notion of rooms.
#![forbid(unsafe_code)]

mod client;
mod command;
mod congestion;
mod conn;
mod frame;
mod ids;
mod message;
mod notification;
mod validate;
mod vocab;

pub use client::{ControlClient, ControlError};
pub use command::{
    AddTrack, Command, CreateSession, DataSpec, IceParams, Layer, PriorityTarget, Quality,
    RelayTrack, ReplyOk, SendData, SessionInfo, SessionState, Subscribe, SubscriptionInfo,
    TrackInfo, TransportMode, TrunkCrypto, UpdateData, DEFAULT_TRUNK_SILENCE_MS, TRUNK_SILENCE_MS,
};
pub use congestion::{PublishedTrackStats, SessionStatsReport, StreamState, SubscriptionStats};
pub use conn::{ControlConn, HELLO_DEADLINE, MAX_OUTPUT_BUFFERED};
pub use frame::{decode_message, encode_frame, FrameDecoder, ProtoError};
pub use ids::{SessionId, SubscriptionId, TrackId};
pub use message::{ErrorBody, ErrorCode, Event, Hello, Message, Reply, ReplyResult, Request, Role};
pub use notification::{pacer_delay_key, CloseReason, Counters, Notification, ShardStats};
pub use validate::{Invalid, MAX_DATA_DESTINATIONS, MAX_DATA_MESSAGE, MAX_LAYERS, MAX_LAYER_INDEX};
pub use vocab::{
    codec_family, Candidate, CandidateProtocol, Codec, DtlsRole, ExtIds, MediaKind, Source,
};

/// The protocol version this build speaks (the frame's version byte and `Hello.version`).
/// 2: `session_stats` and the `stream_state` notification (congestion control, issue 12).
/// 3: trunk sessions (`mode: trunk`) and `relay_track` (cascade, issue 16).
/// 4: `update_data` and `data.input_to` (input over the data channel, D87).
/// 5: a trunk's `silence_ms`, the `trunk_silent` / `trunk_resumed` notifications (D100).
/// 6: transport-cc on trunks and the `relay_shed` notification (D108, D109).
pub const PROTOCOL_VERSION: u8 = 6;
/// Largest frame length N (version byte + JSON), 1 MiB.
pub const MAX_FRAME_LEN: u32 = 1 << 20;

/// Where the control socket is unless configured (`dataplane.control_socket`), for a state
/// directory of `./.sluice`: see [`default_control_socket_in`].
pub fn default_control_socket() -> std::path::PathBuf {
    default_control_socket_in(None)
}

/// Where the control socket is unless configured: `$XDG_RUNTIME_DIR/sluice/` (a per-user
/// 0700 directory), else `/run/sluice/` when running as root, else the state directory
/// (`state_dir`, `./.sluice` when `None`). Never a world-writable directory such as `/tmp`,
/// where another user could create the directory first (security review #9). The dataplane
/// creates the directory 0700 and refuses one that is not its own.
pub fn default_control_socket_in(state_dir: Option<&std::path::Path>) -> std::path::PathBuf {
    use std::os::unix::fs::MetadataExt;
    if let Some(dir) = std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        return std::path::PathBuf::from(dir).join("sluice/dataplane.sock");
    }
    // The owner of /proc/self is this process's effective user.
    let root = std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0);
    if root {
        return std::path::PathBuf::from("/run/sluice/dataplane.sock");
    }
    state_dir
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new(".sluice"))
        .join("dataplane.sock")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The code says shard; the wire keeps the protocol's first word, `worker`, so a control
    /// daemon and a dataplane of different builds still understand each other.
    #[test]
    fn wire_names_keep_worker() {
        let created = serde_json::to_value(ReplyOk::SessionCreated {
            shard: 1,
            local_candidates: Vec::new(),
        })
        .unwrap();
        assert_eq!(created["worker"], 1);
        let stats = serde_json::to_value(ReplyOk::Stats {
            shards: vec![ShardStats::default()],
        })
        .unwrap();
        assert_eq!(stats["workers"][0]["worker"], 0);
        let hello = serde_json::to_value(Hello::control("c")).unwrap();
        assert_eq!(hello["workers"], 0);
    }
}
