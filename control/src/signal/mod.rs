//! The signaling messages of `/rtc` (docs/protocol.md), as types: [`ClientMessage`] (what a
//! client sends, with every field's limit in its type: SDP 256 KiB, ids 64 bytes, metadata
//! 64 KiB, three simulcast layers, …) and [`ServerMessage`] (what the server sends). No I/O:
//! the WebSocket adapter (`server/signal/`) reads and writes them; room logic produces
//! `ServerMessage` values and never JSON, so a second protocol (a LiveKit-compatible profile)
//! is another adapter over the same rooms.

mod client;
mod limits;
mod server;

pub use client::{
    CandidateInit, Cid, ClientMessage, Empty, Identity, Input, JoinRequest, LayerRequest,
    MessageError, Metadata, ModeFailed, ModeId, ModeReady, Mute, P2pSdp, P2pSignal,
    P2pSignalRequest, PcName, Ping, Publish, Req, Request, Sdp, SdpMessage, SetMode, Sid,
    SimulcastLayer, SubscribeTrack, Target, TrackRef, Trickle,
};
pub use limits::{Json, LayerIndex, List, Text};
pub use server::{
    ErrorInfo, Joined, LayerInfo, LeaveReason, Migrating, ModeInfo, ParticipantInfo,
    ReconnectReason, RoomInfo, ServerMessage, TrackInfo,
};
