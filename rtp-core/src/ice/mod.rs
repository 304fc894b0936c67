//! ICE for an SFU: the ICE-lite agent a server runs for each Session, and a
//! minimal controlling agent that tests and the load generator point at it.
//!
//! Implements:
//! - RFC 8445 §2.5 / §6.1.1: the lite agent has host candidates only, sends no
//!   checks and is always controlled.
//! - RFC 8445 §7.3 (with RFC 8489 §6.3, §9.1.3): answering Binding requests:
//!   short-term credentials (400/401), unknown comprehension-required
//!   attributes (420), role conflict (487, §7.3.1.1), the success response
//!   (§7.3.1.4) and nomination by USE-CANDIDATE (§7.3.1.5, §8.2).
//! - RFC 8445 §9: ICE restart, keeping the old credentials until the new ones
//!   are proven so media is not cut.
//! - RFC 7675: consent freshness, on the receiving side (the lite agent
//!   expires a selected address that stops checking) and on the sending side
//!   (the client's periodic, jittered consent checks).
//! - RFC 8445 §7.2 (client, one candidate pair, nominating every check) with
//!   RFC 8489 §6.2.1 retransmissions.
//!
//! Files: `lite` ([`IceLite`], the server agent), `client` ([`IceClient`]),
//! `credentials` (current and pre-restart short-term credentials),
//! `candidates` (the bounded table of remote addresses that passed a check),
//! `queue` (the fixed event queue both agents use), `rng` (the seeded
//! xorshift behind client transaction ids and jitter).
//!
//! Nothing here allocates after construction (or after `restart`, which
//! takes new owned credentials).

mod candidates;
mod client;
mod credentials;
mod lite;
mod queue;
mod rng;

use thiserror::Error;

pub use client::{IceClient, IceClientConfig, IceClientEvent, IceClientState, IceClientStats};
pub use lite::{IceConfig, IceEvent, IceLite, IceLiteStats, IceState};

/// Why an ICE agent dropped a STUN message (every reason is also counted).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum IceError {
    /// FINGERPRINT is missing or wrong; ICE requires it on every message
    /// (RFC 8445 §7.2.2), so such a message is not ours and gets no answer.
    #[error("FINGERPRINT missing or wrong")]
    BadFingerprint,
    /// The caller's output buffer cannot hold the response.
    #[error("output buffer too small for the response")]
    BufferTooSmall,
    /// A response's MESSAGE-INTEGRITY does not verify with the peer's password.
    #[error("response MESSAGE-INTEGRITY does not verify")]
    BadIntegrity,
    /// A response for our transaction came from another address than the
    /// one the request went to (RFC 8445 §7.2.5.2.1: non-symmetric).
    #[error("response from an unexpected address")]
    UnexpectedSource,
}
