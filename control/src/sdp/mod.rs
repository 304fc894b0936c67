//! SDP for Sluice: parse and print session descriptions (RFC 8866), answer
//! client offers and make server offers for subscribers (RFC 8829 JSEP,
//! RFC 3264 offer/answer), under Sluice's transport rules: ICE-lite
//! (RFC 8839, RFC 8445 §2.5), BUNDLE-only (RFC 8843), rtcp-mux-only
//! (RFC 5761), DTLS-SRTP (RFC 5763, RFC 8842).
//!
//! - [`SessionDescription`]: the typed model; `text.parse()` reads, `to_string()` writes CRLF SDP.
//! - [`answer`]: a client offer → [`Answer`] (SDP plus what the dataplane needs).
//! - [`offer_for_subscriber`] / [`accept_answer`]: the server-made direction.
//!
//! Data channels (`m=application`, [`data`]): one SCTP section per session, answered with
//! `a=sctp-port` and `a=max-message-size` (issue 17).
//! This is a control-path module: it allocates freely.

mod answer;
mod candidate;
mod data;
mod error;
mod local;
mod model;
mod negotiated;
mod parse;
mod simulcast;
mod subscriber;
mod write;

pub use answer::{answer, codec_names};
pub use candidate::{announce_ip, Candidate, CandidateType};
pub use data::{MAX_MESSAGE_SIZE, SCTP_PORT};
pub use error::{NegotiationError, ParseError, ParseErrorKind};
pub use local::{codec_carries, HeaderExtension, LocalCodec, LocalParams, SUPPORTED_RTCP_FB};
pub use model::{
    Attribute, Codec, Direction, Extmap, Fingerprint, Fmtp, Formats, Group, MediaKind,
    MediaSection, Msid, Origin, SessionDescription, Setup, SsrcAttr, SsrcGroup,
};
pub use negotiated::{
    AcceptedData, AcceptedMedia, Answer, DtlsRole, ExtIds, NegotiatedCodec, RejectReason,
    RejectedMedia, RemoteTransport, SsrcPair,
};
pub use parse::{parse, MAX_SDP_LEN};
pub use simulcast::{Rid, RidDirection, Simulcast, SimulcastRid};
pub use subscriber::{accept_answer, offer_for_subscriber, AcceptedAnswer, OutgoingTrack};
