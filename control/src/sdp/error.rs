//! Errors of SDP parsing and offer/answer negotiation.
//!
//! Parse errors name the 1-based line and the field; negotiation errors name
//! the m= section (by mid) and what it lacks, so a client developer can fix
//! the offer from the message alone.

use thiserror::Error;

/// A description that cannot be read. `line` is 1-based; 0 means the whole input.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("SDP line {line}: {kind}")]
pub struct ParseError {
    pub line: usize,
    pub kind: ParseErrorKind,
}

/// Why a line was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ParseErrorKind {
    #[error("input is {0} bytes, above the {max} byte limit", max = super::parse::MAX_SDP_LEN)]
    TooLong(usize),
    #[error("not a `<type>=<value>` line")]
    NotTypeValue,
    #[error("first line must be `v=0`")]
    Version,
    #[error("no `o=` line before the first `m=`")]
    NoOrigin,
    #[error("{0}: missing")]
    Missing(&'static str),
    #[error("{field}: invalid value {value:?}")]
    Invalid { field: &'static str, value: String },
    #[error("m= payload type {0} is above 127")]
    PtOutOfRange(u32),
}

impl ParseErrorKind {
    pub(crate) fn invalid(field: &'static str, value: &str) -> Self {
        // Bounded so a hostile megabyte line does not become a megabyte error.
        let value: String = value.chars().take(64).collect();
        Self::Invalid { field, value }
    }
}

/// An offer or answer Sluice cannot serve. Never accompanied by a partial answer.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum NegotiationError {
    #[error("offer has {0} m= sections but no a=group:BUNDLE; Sluice is BUNDLE-only (RFC 8843)")]
    NoBundle(usize),
    #[error("m= section {index} has no a=mid; BUNDLE needs one in every section (RFC 8843 §7.2)")]
    NoMid { index: usize },
    #[error("m= section mid={mid} has no a=rtcp-mux; Sluice is rtcp-mux only (RFC 5761 §5.1.3)")]
    NoRtcpMux { mid: String },
    #[error("m= section mid={mid} has no a=fingerprint at media or session level (RFC 8842 §5)")]
    NoFingerprint { mid: String },
    #[error("m= section mid={mid} has no sha-256/384/512 a=fingerprint (found {found})")]
    WeakFingerprint { mid: String, found: String },
    #[error("m= section mid={mid} has no a=ice-ufrag/a=ice-pwd at media or session level (RFC 8839 §5.4)")]
    NoIceCredentials { mid: String },
    #[error("m= section mid={mid}: a=setup:{setup} cannot be answered (RFC 8842 §5.1)")]
    BadSetup { mid: String, setup: &'static str },
    #[error(
        "offer is a=ice-lite; Sluice is ICE-lite too and needs a full ICE peer (RFC 8445 §2.5)"
    )]
    BothIceLite,
    #[error("m= section mid={mid} ({kind}) has no codec in common; offered: {offered}")]
    NoCommonCodec {
        mid: String,
        kind: String,
        offered: String,
    },
    #[error("m= section mid={mid} ({kind}) accepts {accepted}; the room's {kind} is sent as {available}: nothing to play in this section")]
    NoTrackInAcceptedCodec {
        mid: String,
        kind: String,
        accepted: String,
        available: String,
    },
    #[error("no m= section could be accepted: {0}")]
    NothingAccepted(String),
    #[error("answer has {answer} m= sections, the offer had {offer} (RFC 3264 §6)")]
    SectionCount { offer: usize, answer: usize },
    #[error("answer m= section {index} has mid {answer:?}, the offer had {offer:?}")]
    MidMismatch {
        index: usize,
        offer: Option<String>,
        answer: Option<String>,
    },
    #[error("answer m= section mid={mid} uses payload type {pt}, which the offer did not contain")]
    UnofferedCodec { mid: String, pt: u8 },
    #[error("answer m= section mid={mid} has direction {answer}, not allowed for offered {offer}")]
    BadDirection {
        mid: String,
        offer: &'static str,
        answer: &'static str,
    },
    #[error("answer does not BUNDLE accepted section mid={0}")]
    NotBundled(String),
}
