//! The one error shape of the HTTP API and the signaling protocol: a code
//! (`invalid`, `unauthorized`, `forbidden`, `rejected`, `not_found`, `unavailable`, `too_large`,
//! `internal`), a human message, and the offending field when one is to blame. Over HTTP it is
//! `{"error": {"code", "message", "field"?}}` with the matching status; an `unavailable` (503)
//! also says `Retry-After: 1` (RFC 9110 §10.2.3), which WHIP clients honour (RFC 9725 §4.6).

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use crate::auth::AuthError;
use crate::link::LinkError;
use crate::room::RoomError;
use crate::sdp::{NegotiationError, ParseError};

/// A refused request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ApiError {
    pub code: &'static str,
    pub message: String,
    pub field: Option<String>,
}

impl ApiError {
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            field: None,
        }
    }

    /// Bad input in `field`.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new("invalid", message).with_field(field)
    }

    pub fn rejected(message: impl Into<String>) -> Self {
        Self::new("rejected", message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new("not_found", message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new("forbidden", message)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new("unauthorized", message)
    }

    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    pub fn status(&self) -> StatusCode {
        match self.code {
            "invalid" => StatusCode::BAD_REQUEST,
            "unauthorized" => StatusCode::UNAUTHORIZED,
            "forbidden" => StatusCode::FORBIDDEN,
            "not_found" => StatusCode::NOT_FOUND,
            "rejected" => StatusCode::CONFLICT,
            "unavailable" => StatusCode::SERVICE_UNAVAILABLE,
            "too_large" => StatusCode::PAYLOAD_TOO_LARGE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// `{code, message, field?}`.
    pub fn body(&self) -> Value {
        let mut v = json!({"code": self.code, "message": self.message});
        if let Some(f) = &self.field {
            v["field"] = json!(f);
        }
        v
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let mut r = (status, axum::Json(json!({ "error": self.body() }))).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        r
    }
}

impl From<RoomError> for ApiError {
    fn from(e: RoomError) -> Self {
        let message = e.to_string();
        match e {
            RoomError::Invalid { field, .. } => Self::invalid(field, message),
            RoomError::Rejected { .. } => Self::rejected(message),
            RoomError::NotFound { .. } => Self::not_found(message),
            RoomError::Forbidden { .. } => Self::forbidden(message),
        }
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        let message = e.to_string();
        match e {
            // One answer for an unknown key and a wrong signature, without the key id: a caller
            // cannot probe which API keys exist (finding #31).
            AuthError::UnknownKey { .. } | AuthError::BadSignature => {
                Self::unauthorized("token signature does not verify").with_field("token")
            }
            AuthError::WrongRoom { .. } | AuthError::NotAdmin => Self::forbidden(message),
            _ => Self::unauthorized(message).with_field("token"),
        }
    }
}

impl From<LinkError> for ApiError {
    fn from(e: LinkError) -> Self {
        match e {
            LinkError::Failed(body) => {
                let mut err = Self::new("internal", format!("dataplane refused: {body}"));
                if let Some(f) = body.field {
                    err.field = Some(f);
                }
                err
            }
            // Not connected, connection lost, no answer in time: the dataplane is restarting or
            // overloaded, and the same request may well succeed in a moment — a 503 with
            // Retry-After, not a 409 that says the request itself cannot be served.
            LinkError::Unavailable | LinkError::Lost | LinkError::Timeout(_) => {
                Self::new("unavailable", e.to_string())
            }
        }
    }
}

impl From<ParseError> for ApiError {
    fn from(e: ParseError) -> Self {
        Self::invalid("sdp", format!("unparsable SDP: {e}"))
    }
}

impl From<NegotiationError> for ApiError {
    fn from(e: NegotiationError) -> Self {
        Self::invalid("sdp", format!("cannot serve this SDP: {e}"))
    }
}
