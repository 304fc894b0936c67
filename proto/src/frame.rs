//! Framing: `u32` big-endian length N, then one version byte, then N-1 bytes of UTF-8 JSON
//! holding one `Message` object. `FrameDecoder` is incremental (bytes in, messages out) and never
//! panics on any input; `encode_frame` appends one frame to a caller's buffer.
//!
//! A frame whose length or version is wrong leaves the stream unusable (the peer speaks
//! something else): those errors are fatal. A frame whose JSON is wrong is skipped, the stream
//! stays in sync, and the error carries the request id when it could be read, so the receiver
//! can answer it.

use serde_json::Value;

use crate::command::Command;
use crate::message::{ErrorBody, ErrorCode, Message};
use crate::notification::Notification;
use crate::{MAX_FRAME_LEN, PROTOCOL_VERSION};

/// Why bytes from the peer did not yield a message.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtoError {
    /// The length prefix exceeds `MAX_FRAME_LEN`. Fatal.
    #[error("frame length {len} exceeds the limit of {MAX_FRAME_LEN} bytes")]
    TooLarge { len: u64 },
    /// A length prefix of 0: not even a version byte. Fatal.
    #[error("empty frame: length 0 leaves no room for the version byte")]
    Empty,
    /// The version byte is not ours. Fatal.
    #[error("unsupported protocol version {got}; this side speaks version {PROTOCOL_VERSION}")]
    Version { got: u8 },
    /// The frame was well delimited but its payload is not a message we understand (not UTF-8,
    /// not JSON, unknown `type`, unknown or missing field, bad value). The frame is skipped.
    #[error("bad message{}: {detail}", field.as_deref().map(|f| format!(" (field `{f}`)")).unwrap_or_default())]
    BadMessage {
        /// The request id, when the payload was a JSON object with a numeric `id`.
        id: Option<u64>,
        /// The offending field, when it could be named.
        field: Option<String>,
        detail: String,
    },
}

impl ProtoError {
    /// Whether the connection must be closed (after answering with an `Error` frame).
    pub fn is_fatal(&self) -> bool {
        !matches!(self, Self::BadMessage { .. })
    }

    /// The offending field, if any (`"version"` for a version mismatch).
    pub fn field(&self) -> Option<&str> {
        match self {
            Self::Version { .. } => Some("version"),
            Self::BadMessage { field, .. } => field.as_deref(),
            _ => None,
        }
    }

    /// The wire form of this error (code `invalid`), for an `Error` frame or a `Reply`.
    pub fn to_error_body(&self) -> ErrorBody {
        ErrorBody {
            code: ErrorCode::Invalid,
            message: self.to_string(),
            field: self.field().map(str::to_owned),
        }
    }
}

/// Appends `msg` as one frame to `out`. On error (`TooLarge`: the JSON exceeds the frame limit,
/// e.g. an oversized list page) `out` is left as it was.
pub fn encode_frame(msg: &Message, out: &mut Vec<u8>) -> Result<(), ProtoError> {
    let start = out.len();
    out.extend_from_slice(&[0, 0, 0, 0, PROTOCOL_VERSION]);
    // Writing our own types into a Vec cannot fail: no non-string map keys, no I/O.
    serde_json::to_writer(&mut *out, msg).expect("Message serializes to JSON");
    let len = (out.len() - start - 4) as u64;
    if len > u64::from(MAX_FRAME_LEN) {
        out.truncate(start);
        return Err(ProtoError::TooLarge { len });
    }
    let len = u32::try_from(len).expect("len ≤ MAX_FRAME_LEN fits u32");
    out[start..start + 4].copy_from_slice(&len.to_be_bytes());
    Ok(())
}

/// Incremental decoder: `push` bytes as they arrive, then call `next_frame` until `Ok(None)`.
#[derive(Debug, Default)]
pub struct FrameDecoder {
    buf: Vec<u8>,
    /// Bytes of `buf` already consumed; compacted lazily so `push` stays amortised O(n).
    pos: usize,
}

impl FrameDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends received bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.pos > 0 && self.pos >= self.buf.len() / 2 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes received but not yet returned as a frame.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// The next complete message, `Ok(None)` if more bytes are needed. After a fatal error the
    /// decoder keeps returning it: the stream cannot be resynchronised.
    pub fn next_frame(&mut self) -> Result<Option<Message>, ProtoError> {
        let avail = &self.buf[self.pos..];
        let Some(header) = avail.first_chunk::<4>() else {
            return Ok(None);
        };
        let len = u32::from_be_bytes(*header);
        if len > MAX_FRAME_LEN {
            return Err(ProtoError::TooLarge {
                len: u64::from(len),
            });
        }
        if len == 0 {
            return Err(ProtoError::Empty);
        }
        let version = match avail.get(4) {
            Some(&v) => v,
            None => return Ok(None),
        };
        if version != PROTOCOL_VERSION {
            // Reported before the body arrives: the peer may be waiting for our answer.
            return Err(ProtoError::Version { got: version });
        }
        let total = 4 + len as usize;
        let Some(frame) = avail.get(5..total) else {
            return Ok(None);
        };
        let result = decode_message(frame);
        self.pos += total;
        result.map(Some)
    }
}

/// Parses one frame payload, naming the field at fault where it can.
pub fn decode_message(payload: &[u8]) -> Result<Message, ProtoError> {
    let bad = |id, field: Option<&str>, detail: String| ProtoError::BadMessage {
        id,
        field: field.map(str::to_owned),
        detail,
    };
    let text = std::str::from_utf8(payload)
        .map_err(|e| bad(None, None, format!("payload is not UTF-8: {e}")))?;
    let value: Value =
        serde_json::from_str(text).map_err(|e| bad(None, None, format!("invalid JSON: {e}")))?;
    let Value::Object(obj) = &value else {
        return Err(bad(None, None, "payload is not a JSON object".into()));
    };
    let id = obj.get("id").and_then(Value::as_u64);
    // serde's own message for an unknown internally-tagged variant does not say where it was;
    // check the two nested tags first so the error names the path.
    let kind = match obj.get("type") {
        Some(Value::String(t)) => t.as_str(),
        Some(_) => return Err(bad(id, Some("type"), "`type` must be a string".into())),
        None => return Err(bad(id, Some("type"), "missing field `type`".into())),
    };
    let nested = match kind {
        "hello" | "reply" | "error" => None,
        "request" => Some(("command", Command::TYPES)),
        "event" => Some(("event", Notification::TYPES)),
        other => {
            return Err(bad(
                id,
                Some("type"),
                format!(
                    "unknown message type `{}`; expected hello, request, reply, event or error",
                    clip(other)
                ),
            ))
        }
    };
    if let Some((outer, types)) = nested {
        let field = format!("{outer}.type");
        match obj.get(outer).map(|inner| inner.get("type")) {
            Some(Some(Value::String(t))) if types.contains(&t.as_str()) => {}
            Some(Some(Value::String(t))) => {
                let detail = format!("unknown {outer} type `{}`", clip(t));
                return Err(bad(id, Some(&field), detail));
            }
            Some(_) => return Err(bad(id, Some(&field), format!("missing field `{field}`"))),
            None => return Err(bad(id, Some(outer), format!("missing field `{outer}`"))),
        }
    }
    serde_json::from_value(value).map_err(|e| {
        let detail = e.to_string();
        let field = named_field(&detail).map(str::to_owned);
        ProtoError::BadMessage { id, field, detail }
    })
}

/// The field serde names in "unknown field `x`" / "missing field `x`" messages.
fn named_field(detail: &str) -> Option<&str> {
    let rest = detail
        .strip_prefix("unknown field `")
        .or_else(|| detail.strip_prefix("missing field `"))?;
    rest.split('`').next()
}

/// Bounds how much of a peer-supplied string we echo into an error message.
fn clip(s: &str) -> &str {
    match s.char_indices().nth(64) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Hello;

    fn frame(version: u8, json: &str) -> Vec<u8> {
        let mut out = ((json.len() + 1) as u32).to_be_bytes().to_vec();
        out.push(version);
        out.extend_from_slice(json.as_bytes());
        out
    }

    #[test]
    fn encode_layout_is_length_version_json() {
        let mut out = Vec::new();
        encode_frame(&Message::Hello(Hello::control("c1")), &mut out).unwrap();
        let len = u32::from_be_bytes(out[..4].try_into().unwrap()) as usize;
        assert_eq!(len, out.len() - 4);
        assert_eq!(out[4], PROTOCOL_VERSION);
        let v: Value = serde_json::from_slice(&out[5..]).unwrap();
        assert_eq!(v["type"], "hello");
    }

    #[test]
    fn partial_frames_wait_for_more() {
        let bytes = frame(
            PROTOCOL_VERSION,
            r#"{"type":"request","id":1,"command":{"type":"ping"}}"#,
        );
        let mut dec = FrameDecoder::new();
        for (i, b) in bytes.iter().enumerate() {
            assert_eq!(dec.next_frame(), Ok(None), "complete after {i} bytes");
            dec.push(std::slice::from_ref(b));
        }
        assert!(matches!(dec.next_frame(), Ok(Some(Message::Request(_)))));
        assert_eq!(dec.next_frame(), Ok(None));
        assert_eq!(dec.buffered(), 0);
    }

    #[test]
    fn bad_json_skips_the_frame_and_keeps_sync() {
        let mut bytes = frame(
            PROTOCOL_VERSION,
            r#"{"type":"request","id":9,"command":{"type":"ping","x":1}}"#,
        );
        bytes.extend(frame(
            PROTOCOL_VERSION,
            r#"{"type":"request","id":10,"command":{"type":"ping"}}"#,
        ));
        let mut dec = FrameDecoder::new();
        dec.push(&bytes);
        let err = dec.next_frame().unwrap_err();
        assert!(!err.is_fatal());
        assert_eq!(err.field(), Some("x"));
        assert!(matches!(err, ProtoError::BadMessage { id: Some(9), .. }));
        assert!(matches!(dec.next_frame(), Ok(Some(Message::Request(r))) if r.id == 10));
    }

    #[test]
    fn fatal_errors_repeat() {
        let mut dec = FrameDecoder::new();
        dec.push(&[0, 0, 0, 0]);
        assert_eq!(dec.next_frame(), Err(ProtoError::Empty));
        assert_eq!(dec.next_frame(), Err(ProtoError::Empty));
        let mut dec = FrameDecoder::new();
        let other = PROTOCOL_VERSION.wrapping_add(1);
        dec.push(&[0, 0, 0, 3, other]);
        assert_eq!(dec.next_frame(), Err(ProtoError::Version { got: other }));
        assert!(dec.next_frame().unwrap_err().is_fatal());
    }

    #[test]
    fn clip_bounds_echoed_strings() {
        let long = "é".repeat(100);
        assert_eq!(clip(&long).chars().count(), 64);
        assert_eq!(clip("ab"), "ab");
    }
}
