//! [`DtlsSettings`]: the knobs of one [`DtlsEndpoint`](super::DtlsEndpoint),
//! and [`ClientVersion`], what a client offers.

use std::time::Duration;

use super::SrtpProfiles;

/// Which DTLS version a client offers. A server always auto-detects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ClientVersion {
    /// One ClientHello that a 1.2 or a 1.3 server can answer; the server's
    /// reply picks the version.
    #[default]
    Auto,
    /// DTLS 1.2 only.
    Dtls12,
    /// DTLS 1.3 only.
    Dtls13,
}

/// Knobs for one endpoint. The defaults suit WebRTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DtlsSettings {
    /// Version a client offers (ignored by a server).
    pub client_version: ClientVersion,
    /// Largest datagram we produce. 1150 keeps a flight under any tunnel's
    /// MTU; the dataplane's transmit buffers must be at least this.
    pub mtu: usize,
    /// First retransmission timeout; doubles per retry.
    pub flight_start_rto: Duration,
    /// Retransmissions per flight (excluding the first send).
    pub flight_retries: usize,
    /// Deadline for the whole handshake.
    pub handshake_timeout: Duration,
    /// Server only: demand a cookie round trip (HelloVerifyRequest in 1.2,
    /// HelloRetryRequest in 1.3) before the handshake proper.
    pub server_cookie: bool,
    /// Server, DTLS 1.2: the SRTP profiles we accept, most preferred first
    /// (RFC 5764 §4.1.1: the server picks). dimpl's DTLS 1.3 server has a
    /// fixed order of its own.
    pub srtp_profiles: SrtpProfiles,
    /// Seed for dimpl's non-cryptographic randomness (retransmit jitter,
    /// hello randoms); `None` uses system randomness. For tests only.
    pub rng_seed: Option<u64>,
}

impl Default for DtlsSettings {
    fn default() -> Self {
        Self {
            client_version: ClientVersion::Auto,
            mtu: 1150,
            flight_start_rto: Duration::from_secs(1),
            flight_retries: 4,
            handshake_timeout: Duration::from_secs(40),
            server_cookie: true,
            srtp_profiles: SrtpProfiles::default(),
            rng_seed: None,
        }
    }
}
