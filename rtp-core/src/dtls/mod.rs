//! DTLS-SRTP: the handshake that keys SRTP (RFC 5763, RFC 5764) on two
//! sans-IO engines: the [`dimpl`] crate for DTLS 1.3 (RFC 9147) servers and
//! for the client role, and our own DTLS 1.2 server (RFC 6347, `v12`) for
//! clients that do not offer DTLS 1.3 — OpenSSL-based tools whose
//! certificates may be RSA, which dimpl 0.9's 1.2 server does not accept
//! (`docs/decisions.md` D24).
//!
//! Owns our certificate and its SDP fingerprint ([`DtlsCert`],
//! [`Fingerprint`], RFC 8122 §5), the per-session endpoint
//! ([`DtlsEndpoint`]) that routes a server on the first ClientHello
//! (`route.rs`), checks the peer's leaf certificate against the fingerprint
//! from the remote SDP (RFC 5763 §5, RFC 8842 §5), and turns the exported
//! keying material into SRTP contexts (RFC 5764 §4.2). A client can be
//! pinned to either version.
//!
//! DTLS is not on the per-packet path: both engines allocate during the
//! handshake (`tests/dtls_srtp.rs` measures how much). After `Connected`,
//! media never touches this module again; only data-channel records, a
//! `close_notify` or a retransmitted final flight do.

mod cert;
mod der;
mod dimpl_engine;
mod endpoint;
mod fingerprint;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
mod keying;
mod route;
mod settings;
mod v12;

pub use cert::{DtlsCert, CERT_LIFETIME};
pub use endpoint::{DtlsEndpoint, MAX_APP_RECORDS};
pub use fingerprint::{Fingerprint, FingerprintError, FINGERPRINT_LEN};
pub use settings::{ClientVersion, DtlsSettings};

use thiserror::Error;

use crate::srtp::ProtectionProfile;

/// The SRTP protection profiles a DTLS 1.2 server accepts, most preferred
/// first (at most four, no repeats). The default is AEAD_AES_128_GCM,
/// AEAD_AES_256_GCM, then AES128_CM_HMAC_SHA1_80 (RFC 8827 §6.5 requires
/// the last; the AEAD ones cost less per packet, `docs/performance.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SrtpProfiles {
    list: [ProtectionProfile; 4],
    len: usize,
}

impl SrtpProfiles {
    /// `profiles` in order of preference; `Err(Settings)` when empty, longer
    /// than four or repeating one.
    pub fn new(profiles: &[ProtectionProfile]) -> Result<Self, DtlsError> {
        if profiles.is_empty() || profiles.len() > 4 {
            return Err(DtlsError::Settings);
        }
        let mut list = [profiles[0]; 4];
        for (i, p) in profiles.iter().enumerate() {
            if profiles[..i].contains(p) {
                return Err(DtlsError::Settings);
            }
            list[i] = *p;
        }
        Ok(Self {
            list,
            len: profiles.len(),
        })
    }

    /// The profiles, most preferred first.
    pub fn as_slice(&self) -> &[ProtectionProfile] {
        &self.list[..self.len]
    }
}

impl Default for SrtpProfiles {
    fn default() -> Self {
        Self::new(&[
            ProtectionProfile::AeadAes128Gcm,
            ProtectionProfile::AeadAes256Gcm,
            ProtectionProfile::Aes128CmHmacSha1_80,
        ])
        .expect("three distinct profiles")
    }
}

/// Which side of the DTLS handshake we are (RFC 5763 §5: `a=setup`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DtlsRole {
    /// We wait for the ClientHello (`a=setup:passive`); the SFU's usual role.
    Server,
    /// We send the ClientHello (`a=setup:active`).
    Client,
}

/// The negotiated protocol version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DtlsVersion {
    /// DTLS 1.2 (RFC 6347).
    Dtls12,
    /// DTLS 1.3 (RFC 9147).
    Dtls13,
}

/// Where the endpoint is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DtlsState {
    /// Handshake in progress, or done but waiting for the remote fingerprint.
    Handshaking,
    /// Handshake done, peer certificate verified, SRTP keys available.
    Connected,
    /// Fatal error; drop the endpoint.
    Failed,
    /// `close_notify` sent or received.
    Closed,
}

/// Something the owner of the endpoint must act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DtlsEvent {
    /// Handshake done and the peer proved it holds the fingerprinted
    /// certificate: call [`DtlsEndpoint::srtp_contexts`].
    Connected {
        /// The SRTP protection profile both sides agreed on.
        profile: ProtectionProfile,
        /// The DTLS version negotiated.
        version: DtlsVersion,
    },
    /// The endpoint failed and will never connect; drop it.
    Failed(DtlsFailure),
    /// The peer sent `close_notify` (RFC 6347 §4.2.7 / RFC 9147 §5.10).
    Closed,
}

/// Why an endpoint failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Error)]
#[non_exhaustive]
pub enum DtlsFailure {
    /// The peer's certificate does not hash to the fingerprint in its SDP.
    #[error("peer certificate does not match the SDP fingerprint")]
    FingerprintMismatch,
    /// The peer sent no certificate (or an empty one): it has none of the types our
    /// CertificateRequest allows.
    #[error("peer sent no certificate of a type we accept")]
    NoPeerCertificate,
    /// No SRTP profile was negotiated (peer did not offer `use_srtp`, or
    /// only profiles we cannot run).
    #[error("no common SRTP protection profile")]
    NoSrtpProfile,
    /// Flight retries or the handshake deadline ran out.
    #[error("handshake timed out")]
    Timeout,
    /// The peer's certificate or signature did not verify.
    #[error("peer certificate or signature invalid")]
    PeerCertificate,
    /// A security policy was violated (e.g. no extended master secret).
    #[error("security policy violation")]
    Security,
    /// A cryptographic operation failed.
    #[error("cryptographic failure")]
    Crypto,
    /// Any other fatal protocol error reported by the DTLS engine.
    #[error("DTLS protocol error")]
    Protocol,
}

/// Why a DTLS call failed. Counted by reason, never logged per datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum DtlsError {
    /// A certificate or key could not be generated or parsed.
    #[error("invalid DTLS certificate or key")]
    Certificate,
    /// The settings are out of range (zero or huge timers, tiny MTU).
    #[error("invalid DTLS settings")]
    Settings,
    /// This call failed the endpoint; a [`DtlsEvent::Failed`] was queued.
    #[error("DTLS failed: {0}")]
    Failed(DtlsFailure),
    /// The endpoint already failed or closed; the datagram was dropped.
    #[error("DTLS endpoint is no longer active")]
    Inactive,
}
