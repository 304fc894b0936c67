//! SRTP and SRTCP: in-place protect/unprotect over caller-owned buffers.
//!
//! Owns the protection profiles negotiated by DTLS-SRTP (RFC 5764 §4.1.2,
//! RFC 7714 §14.2), the session-key derivation (RFC 3711 §4.3 with a key
//! derivation rate of zero, RFC 7714 §11), the AES-CM + HMAC-SHA1 transforms
//! (RFC 3711 §4.1.1, §4.2), the AES-GCM AEAD transforms (RFC 7714 §8, §9),
//! the rollover-counter estimation (RFC 3711 §3.3.1, Appendix A) and the
//! replay windows (RFC 3711 §3.3.2) for SRTP and SRTCP.
//!
//! A [`SrtpContext`] is one direction of one master key. All key schedules
//! and per-SSRC state are built at construction; the per-packet paths do not
//! allocate.

mod cipher;
mod context;
mod kdf;
mod profile;
mod replay;
mod srtcp;
mod ssrc_table;

pub use context::{SrtpConfig, SrtpContext};
pub use kdf::{derive_session_keys, SessionKeys, StreamKeys};
pub use profile::ProtectionProfile;
pub use replay::ReplayWindow;

use thiserror::Error;

/// Why an SRTP/SRTCP operation failed. Counted by reason, never logged per packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum SrtpError {
    /// The packet is shorter than its header plus trailer and tag.
    #[error("packet too short")]
    TooShort,
    /// The caller's buffer has no room for the tag / trailer.
    #[error("buffer too small for the protected packet")]
    BufferTooSmall,
    /// The authentication tag did not verify.
    #[error("authentication failed")]
    AuthFailed,
    /// The packet index was already received (RFC 3711 §3.3.2).
    #[error("replayed packet")]
    Replayed,
    /// The packet index is older than the replay window.
    #[error("packet older than the replay window")]
    TooOld,
    /// Master key or salt length does not match the profile.
    #[error("bad key or salt length")]
    BadKeyLength,
    /// A new SSRC on an outbound context with every slot in use.
    #[error("too many SSRCs for this context")]
    TooManySsrcs,
    /// The bytes are not an RTP/RTCP packet (bad version, extension overrun).
    #[error("malformed packet")]
    Malformed,
    /// The configuration is out of range.
    #[error("invalid SRTP configuration")]
    BadConfig,
    /// A valid but unsupported form, e.g. unencrypted SRTCP under AES-GCM.
    #[error("unsupported SRTP form")]
    Unsupported,
    /// The crypto library refused an operation (should not happen with valid keys).
    #[error("crypto backend error")]
    Crypto,
}
