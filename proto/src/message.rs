//! The frame payloads: the envelope every frame carries (`Message`), the `Hello` handshake, and
//! request/reply/event wrappers. What a command or a notification means is in `command.rs` and
//! `notification.rs`; the byte layout is in `frame.rs`.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::command::{Command, ReplyOk};
use crate::notification::Notification;
use crate::PROTOCOL_VERSION;

/// One frame's JSON object. The `type` field selects the variant.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Message {
    /// First frame in each direction: who is speaking and what it offers.
    Hello(Hello),
    /// Control → dataplane: do something; answered by exactly one `Reply` with the same id.
    Request(Request),
    /// Dataplane → control: the outcome of the request with the same id.
    Reply(Reply),
    /// Dataplane → control: something happened; `seq` increases by one per event per connection.
    Event(Event),
    /// Either direction: the connection cannot continue (bad framing, bad version); the sender
    /// closes after writing it.
    Error(ErrorBody),
}

/// The handshake, sent once by each side before anything else.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hello {
    /// Protocol version the sender speaks; equals the frame's version byte.
    pub version: u8,
    /// Which end of the socket this is.
    pub role: Role,
    /// Node or process instance name, for logs and for telling restarts apart.
    pub instance: String,
    /// Number of dataplane shards (`0` from the control daemon); on the wire `workers`.
    #[serde(default, rename = "workers")]
    pub shards: u16,
    /// Media addresses the dataplane announces in ICE candidates (`ip:port`); empty from control.
    #[serde(default)]
    pub media_addrs: Vec<SocketAddr>,
    /// The dataplane's DTLS certificate fingerprint for SDP `a=fingerprint`, e.g.
    /// `"sha-256 AB:CD:…"`; `null` from control.
    #[serde(default)]
    pub fingerprint: Option<String>,
}

impl Hello {
    /// The control daemon's hello: only the role and an instance name.
    pub fn control(instance: impl Into<String>) -> Self {
        Self {
            version: PROTOCOL_VERSION,
            role: Role::Control,
            instance: instance.into(),
            shards: 0,
            media_addrs: Vec::new(),
            fingerprint: None,
        }
    }
}

/// Which end of the control socket a `Hello` comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Control,
    Dataplane,
}

/// A command with the id its reply will carry. Ids are chosen by the control daemon; they need
/// only be unique among its outstanding requests.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Request {
    pub id: u64,
    pub command: Command,
}

/// The answer to the request with the same `id`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reply {
    pub id: u64,
    pub result: ReplyResult,
}

/// `{"ok": {...}}` or `{"error": {...}}` on the wire.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplyResult {
    Ok(ReplyOk),
    Error(ErrorBody),
}

impl ReplyResult {
    /// The std `Result` view.
    pub fn into_result(self) -> Result<ReplyOk, ErrorBody> {
        match self {
            Self::Ok(ok) => Ok(ok),
            Self::Error(err) => Err(err),
        }
    }
}

impl From<Result<ReplyOk, ErrorBody>> for ReplyResult {
    fn from(result: Result<ReplyOk, ErrorBody>) -> Self {
        match result {
            Ok(ok) => Self::Ok(ok),
            Err(err) => Self::Error(err),
        }
    }
}

/// A notification with its per-connection sequence number. A gap in `seq` means the dataplane
/// dropped events because the control daemon was not reading; resync with the list commands.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Event {
    pub seq: u64,
    pub event: Notification,
}

/// A failed request or a fatal connection error.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(deny_unknown_fields)]
#[error("{code}: {message}{}", field.as_deref().map(|f| format!(" (field `{f}`)")).unwrap_or_default())]
pub struct ErrorBody {
    pub code: ErrorCode,
    /// Human-readable detail; not meant to be parsed.
    pub message: String,
    /// The offending field as a dotted path (`"ice.ufrag"`, `"layers[1].ssrc"`) when one is to
    /// blame.
    #[serde(default)]
    pub field: Option<String>,
}

impl ErrorBody {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            field: None,
        }
    }

    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }
}

/// Why a request failed (style.md §5: a bad request is not the same as an impossible one).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The request is malformed or a value is out of range; retrying it unchanged cannot work.
    Invalid,
    /// Well-formed but not possible now (duplicate id, shard full, wrong state).
    Rejected,
    /// The id it names does not exist (any more).
    NotFound,
    /// A dataplane bug or resource failure; the request may or may not have taken effect.
    Internal,
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Invalid => "invalid",
            Self::Rejected => "rejected",
            Self::NotFound => "not_found",
            Self::Internal => "internal",
        })
    }
}
