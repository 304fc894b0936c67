//! Why a room operation was refused. `Invalid` is a bad request (HTTP 400),
//! `Rejected` is valid but impossible now (409), `NotFound` (404),
//! `Forbidden` is not allowed for this caller (403). Messages are meant for
//! the API's JSON error body, so they name the field, limit or rule.

/// A refused room operation; nothing was changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RoomError {
    #[error("invalid {field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error("rejected: {reason}")]
    Rejected { reason: String },
    #[error("{what} not found")]
    NotFound { what: String },
    #[error("forbidden: {why}")]
    Forbidden { why: String },
}

impl RoomError {
    pub(crate) fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        RoomError::Invalid {
            field,
            reason: reason.into(),
        }
    }

    pub(crate) fn rejected(reason: impl Into<String>) -> Self {
        RoomError::Rejected {
            reason: reason.into(),
        }
    }

    pub(crate) fn forbidden(why: impl Into<String>) -> Self {
        RoomError::Forbidden { why: why.into() }
    }

    pub(crate) fn room_not_found(room: &str) -> Self {
        RoomError::NotFound {
            what: format!("room {room:?}"),
        }
    }

    pub(crate) fn participant_not_found(room: &str, identity: &str) -> Self {
        RoomError::NotFound {
            what: format!("participant {identity:?} in room {room:?}"),
        }
    }

    pub(crate) fn track_not_found(room: &str, track_id: &str) -> Self {
        RoomError::NotFound {
            what: format!("track {track_id:?} in room {room:?}"),
        }
    }
}
