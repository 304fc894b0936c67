//! The control-socket protocol between the control daemon and the dataplane: typed messages
//! (`Command`, `ReplyOk`/`ErrorBody`, `Notification`), the length-prefixed JSON framing, field
//! validation, a blocking client for tests and tools, and the dataplane's connection helper.
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

pub use client::{ControlClient, ControlError};
pub use command::{
    AddTrack, Candidate, CandidateProtocol, Codec, Command, CreateSession, DtlsRole, ExtIds,
    IceParams, Layer, MediaKind, PriorityTarget, Quality, ReplyOk, SessionInfo, SessionState,
    Source, Subscribe, SubscriptionInfo, TrackInfo, TransportMode,
};
pub use congestion::{PublishedTrackStats, SessionStatsReport, StreamState, SubscriptionStats};
pub use conn::{ControlConn, MAX_OUTPUT_BUFFERED};
pub use frame::{decode_message, encode_frame, FrameDecoder, ProtoError};
pub use ids::{SessionId, SubscriptionId, TrackId};
pub use message::{ErrorBody, ErrorCode, Event, Hello, Message, Reply, ReplyResult, Request, Role};
pub use notification::{pacer_delay_key, CloseReason, Counters, Notification, WorkerStats};
pub use validate::{Invalid, MAX_LAYERS, MAX_LAYER_INDEX};

/// The protocol version this build speaks (the frame's version byte and `Hello.version`).
/// 2: `session_stats` and the `stream_state` notification (congestion control, issue 12).
pub const PROTOCOL_VERSION: u8 = 2;
/// Largest frame length N (version byte + JSON), 1 MiB.
pub const MAX_FRAME_LEN: u32 = 1 << 20;
