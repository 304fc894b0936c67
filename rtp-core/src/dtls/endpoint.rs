//! [`DtlsEndpoint`]: one session's DTLS-SRTP handshake in the sans-IO shape
//! every rtp-core state machine has (`handle_datagram`, `handle_timeout`,
//! `poll_transmit`, `poll_timeout`, `poll_event`), wrapping a [`dimpl::Dtls`].
//!
//! Adds what dimpl leaves to the application: the peer certificate check
//! against the SDP fingerprint (RFC 5763 §5, RFC 8842 §5), refusing to
//! report `Connected` until it passed, and the SRTP key split
//! (RFC 5764 §4.2, in `keying.rs`).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dimpl::{Dtls, Output, ProtocolVersion};

use super::keying::Keying;
use super::{
    DtlsCert, DtlsError, DtlsEvent, DtlsFailure, DtlsRole, DtlsState, DtlsVersion, Fingerprint,
};
use crate::srtp::{SrtpConfig, SrtpContext};

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

/// Knobs for one endpoint. The defaults are dimpl's, which suit WebRTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DtlsSettings {
    /// Version a client offers (ignored by a server).
    pub client_version: ClientVersion,
    /// Largest datagram dimpl produces. 1150 keeps a flight under any
    /// tunnel's MTU; the dataplane's transmit buffers must be at least this.
    pub mtu: usize,
    /// First retransmission timeout; doubles per retry with ±25% jitter.
    pub flight_start_rto: Duration,
    /// Retransmissions per flight (excluding the first send).
    pub flight_retries: usize,
    /// Deadline for the whole handshake.
    pub handshake_timeout: Duration,
    /// Server only: demand a stateless cookie round trip (HelloVerifyRequest
    /// in 1.2, HelloRetryRequest in 1.3) before keeping state. ICE has
    /// already checked the address, so this costs a round trip for little.
    pub server_cookie: bool,
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
            rng_seed: None,
        }
    }
}

/// One DTLS-SRTP endpoint.
///
/// Drive it like the other state machines: feed datagrams whose first byte
/// is 20..=63 (RFC 7983) to [`handle_datagram`](Self::handle_datagram), call
/// [`handle_timeout`](Self::handle_timeout) at [`poll_timeout`](Self::poll_timeout),
/// and after either drain [`poll_transmit`](Self::poll_transmit) until it
/// returns `None`, then [`poll_event`](Self::poll_event). Events surface
/// while transmits are drained, so drain transmits first.
pub struct DtlsEndpoint {
    role: DtlsRole,
    dtls: Dtls,
    state: DtlsState,
    remote_fingerprint: Option<Fingerprint>,
    /// SHA-256 of the peer's leaf certificate, once dimpl showed it to us.
    peer_cert: Option<Fingerprint>,
    /// dimpl reported the handshake done (before our fingerprint check).
    handshake_done: bool,
    keying: Option<Keying>,
    version: Option<DtlsVersion>,
    timeout: Option<Instant>,
    last_now: Instant,
    events: VecDeque<DtlsEvent>,
    /// Application data (SCTP packets, RFC 8261) received, oldest first.
    app_in: VecDeque<Vec<u8>>,
    /// Records dropped because `app_in` was full.
    app_dropped: u64,
    /// Size dimpl asked for when `poll_transmit`'s buffer was too small.
    needed: usize,
    /// After a failure: dimpl may still hold the alert it queued (drain it once).
    farewell_dimpl: bool,
    /// After a failure dimpl sent no alert for: the fatal alert we send ourselves.
    farewell_alert: Option<u8>,
}

impl DtlsEndpoint {
    /// An endpoint with default settings. `remote_fingerprint` is the peer's
    /// SDP `a=fingerprint`; pass `None` when the remote description has not
    /// arrived yet and call [`set_remote_fingerprint`](Self::set_remote_fingerprint)
    /// later: the handshake may finish first, but `Connected` waits for it.
    pub fn new(
        role: DtlsRole,
        cert: &DtlsCert,
        remote_fingerprint: Option<Fingerprint>,
        now: Instant,
    ) -> Self {
        Self::with_settings(
            role,
            cert,
            remote_fingerprint,
            &DtlsSettings::default(),
            now,
        )
        .expect("default DTLS settings are in range")
    }

    /// An endpoint with explicit settings.
    pub fn with_settings(
        role: DtlsRole,
        cert: &DtlsCert,
        remote_fingerprint: Option<Fingerprint>,
        settings: &DtlsSettings,
        now: Instant,
    ) -> Result<Self, DtlsError> {
        if settings.mtu < MIN_MTU {
            return Err(DtlsError::Settings);
        }
        let mut builder = dimpl::Config::builder()
            .mtu(settings.mtu)
            .flight_start_rto(settings.flight_start_rto)
            .flight_retries(settings.flight_retries)
            .handshake_timeout(settings.handshake_timeout)
            .use_server_cookie(settings.server_cookie)
            // WebRTC is mutually authenticated: the server needs the
            // client's certificate to check it against the SDP.
            .require_client_certificate(true);
        if let Some(seed) = settings.rng_seed {
            builder = builder.dangerously_set_rng_seed(seed);
        }
        let config = Arc::new(builder.build().map_err(|_| DtlsError::Settings)?);
        let c = cert.to_dimpl();
        let dtls = match role {
            DtlsRole::Server => Dtls::new_auto(config, c, now),
            DtlsRole::Client => {
                let mut d = match settings.client_version {
                    ClientVersion::Auto => Dtls::new_auto(config, c, now),
                    ClientVersion::Dtls12 => Dtls::new_12(config, c, now),
                    ClientVersion::Dtls13 => Dtls::new_13(config, c, now),
                };
                d.set_active(true);
                d
            }
        };
        Ok(Self {
            role,
            dtls,
            state: DtlsState::Handshaking,
            remote_fingerprint,
            peer_cert: None,
            handshake_done: false,
            keying: None,
            version: None,
            timeout: None,
            last_now: now,
            events: VecDeque::with_capacity(4),
            app_in: VecDeque::new(),
            app_dropped: 0,
            needed: 0,
            farewell_dimpl: false,
            farewell_alert: None,
        })
    }

    /// Our role.
    pub fn role(&self) -> DtlsRole {
        self.role
    }

    /// Where the endpoint is.
    pub fn state(&self) -> DtlsState {
        self.state
    }

    /// The negotiated version, once the peer's first flight decided it.
    pub fn version(&self) -> Option<DtlsVersion> {
        self.version
            .or_else(|| version_from(self.dtls.protocol_version()))
    }

    /// The buffer size `poll_transmit` needed and did not get (0 if none).
    /// Only a caller whose buffers are smaller than the MTU ever sees this.
    pub fn needed_buffer(&self) -> usize {
        self.needed
    }

    /// Learn (or replace, before connecting) the fingerprint the peer must
    /// present. Poll events afterwards: this may produce `Connected` or
    /// `Failed` when the handshake already finished.
    pub fn set_remote_fingerprint(&mut self, fp: Fingerprint) {
        if self.state != DtlsState::Handshaking {
            return;
        }
        self.remote_fingerprint = Some(fp);
        if let Some(peer) = self.peer_cert {
            if !fp.ct_eq(&peer) {
                self.fail(DtlsFailure::FingerprintMismatch);
                return;
            }
        }
        self.try_connect();
    }

    /// Feed one received datagram. Malformed, replayed or stray records are
    /// dropped inside dimpl and return `Ok`; only fatal errors return
    /// `Err(Failed)`, after which the endpoint is dead.
    pub fn handle_datagram(&mut self, now: Instant, datagram: &[u8]) -> Result<(), DtlsError> {
        if !self.is_active() || self.state == DtlsState::Closed {
            return Err(DtlsError::Inactive);
        }
        self.advance(now)?;
        if let Err(e) = self.dtls.handle_packet(datagram) {
            return Err(self.fatal(&e));
        }
        Ok(())
    }

    /// Run retransmission and handshake timers due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.is_active() {
            let _ = self.advance(now);
        }
    }

    /// Write the next datagram to send into `out` and return its length;
    /// `None` when there is nothing to send now. `out` should be at least
    /// [`DtlsSettings::mtu`] bytes (see [`needed_buffer`](Self::needed_buffer)).
    pub fn poll_transmit(&mut self, now: Instant, out: &mut [u8]) -> Option<usize> {
        // A locally closed endpoint still drains its close_notify; a failed one its alert.
        if self.state == DtlsState::Failed {
            return self.poll_farewell(out);
        }
        if self.advance(now).is_err() {
            return self.poll_farewell(out);
        }
        // Bounded: each iteration consumes one queued output of dimpl, and
        // dimpl ends every poll cycle with `Timeout`.
        for _ in 0..MAX_OUTPUTS_PER_POLL {
            match self.dtls.poll_output(out) {
                Output::Packet(p) => return Some(p.len()),
                Output::Timeout(t) => {
                    self.timeout = Some(t);
                    self.after_cycle();
                    return None;
                }
                Output::BufferTooSmall { needed } => {
                    self.needed = needed;
                    return None;
                }
                Output::PeerCert(der) => self.on_peer_cert(Fingerprint::of_der(der)),
                Output::Connected => {
                    self.handshake_done = true;
                    self.version = version_from(self.dtls.protocol_version());
                }
                Output::KeyingMaterial(km, profile) => match Keying::new(profile, &km) {
                    Ok(k) => self.keying = Some(k),
                    Err(f) => self.fail(f),
                },
                Output::CloseNotify if self.state != DtlsState::Closed => {
                    self.state = DtlsState::Closed;
                    self.events.push_back(DtlsEvent::Closed);
                }
                Output::ApplicationData(data) if self.state == DtlsState::Connected => {
                    if self.app_in.len() < MAX_APP_RECORDS {
                        self.app_in.push_back(data.to_vec());
                    } else {
                        self.app_dropped += 1;
                    }
                }
                _ => {}
            }
            if self.state == DtlsState::Failed {
                return self.poll_farewell(out);
            }
        }
        None
    }

    /// The fatal alert of a failed handshake (RFC 6347 §4.1.2.7, RFC 5246 §7.2.2), so the peer
    /// stops instead of retransmitting into silence: the one dimpl queued when it detected the
    /// failure, else, in DTLS 1.2, one of ours in epoch 0 (the checks that fail here — the SDP
    /// fingerprint, a missing certificate or SRTP profile — run before we send
    /// ChangeCipherSpec). Nothing for DTLS 1.3, where the peer only reads alerts under the
    /// handshake keys dimpl does not lend out.
    fn poll_farewell(&mut self, out: &mut [u8]) -> Option<usize> {
        for _ in 0..MAX_OUTPUTS_PER_POLL {
            if !self.farewell_dimpl {
                break;
            }
            match self.dtls.poll_output(out) {
                // Only an alert record: never a handshake flight dimpl still had queued.
                Output::Packet(p) if p.first() == Some(&21) => {
                    self.farewell_alert = None;
                    return Some(p.len());
                }
                Output::Timeout(_) | Output::BufferTooSmall { .. } => self.farewell_dimpl = false,
                _ => {}
            }
        }
        self.farewell_dimpl = false;
        let desc = self.farewell_alert.take()?;
        let record = alert_record(desc);
        let dst = out.get_mut(..record.len())?;
        dst.copy_from_slice(&record);
        Some(record.len())
    }

    /// When [`handle_timeout`](Self::handle_timeout) is next due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            DtlsState::Failed => None,
            _ => self.timeout,
        }
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<DtlsEvent> {
        self.events.pop_front()
    }

    /// The next application-data record the peer sent (an SCTP packet for
    /// data channels, RFC 8261), oldest first. Records surface while
    /// [`poll_transmit`](Self::poll_transmit) drains dimpl, so drain this
    /// after it. At most [`MAX_APP_RECORDS`] wait; more are dropped and counted
    /// ([`app_records_dropped`](Self::app_records_dropped)).
    pub fn poll_application_data(&mut self) -> Option<Vec<u8>> {
        self.app_in.pop_front()
    }

    /// Application records dropped because nobody drained them.
    pub fn app_records_dropped(&self) -> u64 {
        self.app_dropped
    }

    /// Encrypts `data` as one application-data record; the datagram comes
    /// out of the next [`poll_transmit`](Self::poll_transmit). Only once
    /// `Connected`. Send one record per `poll_transmit` (dimpl queues at most
    /// ten datagrams).
    pub fn send_application_data(&mut self, data: &[u8]) -> Result<(), DtlsError> {
        if self.state != DtlsState::Connected {
            return Err(DtlsError::Inactive);
        }
        match self.dtls.send_application_data(data) {
            Ok(_) => Ok(()),
            Err(_) => Err(DtlsError::Inactive),
        }
    }

    /// Outbound and inbound SRTP contexts (each protects SRTP and SRTCP),
    /// keyed per RFC 5764 §4.2 with our role's write key outbound. `None`
    /// until `Connected`, and after failure or close.
    pub fn srtp_contexts(&self, config: SrtpConfig) -> Option<(SrtpContext, SrtpContext)> {
        if self.state != DtlsState::Connected {
            return None;
        }
        self.keying.as_ref()?.contexts(self.role, config)
    }

    /// Send `close_notify` (drain `poll_transmit`) and stop. During the
    /// handshake this simply aborts.
    pub fn close(&mut self) {
        if self.is_active() {
            let _ = self.dtls.close();
            self.state = DtlsState::Closed;
        }
    }

    fn is_active(&self) -> bool {
        matches!(self.state, DtlsState::Handshaking | DtlsState::Connected)
    }

    /// Move dimpl's logical clock to `now` (it needs this before input too,
    /// and a client sends its first ClientHello only once it has run).
    /// dimpl wants monotonic time, so an earlier `now` is clamped.
    fn advance(&mut self, now: Instant) -> Result<(), DtlsError> {
        let now = now.max(self.last_now);
        self.last_now = now;
        match self.dtls.handle_timeout(now) {
            Ok(()) => Ok(()),
            Err(e) => Err(self.fatal(&e)),
        }
    }

    fn on_peer_cert(&mut self, got: Fingerprint) {
        self.peer_cert = Some(got);
        if let Some(expect) = self.remote_fingerprint {
            if !expect.ct_eq(&got) {
                self.fail(DtlsFailure::FingerprintMismatch);
            }
        }
    }

    /// dimpl ended a poll cycle: everything it learnt from the last input
    /// has been seen, so a finished handshake with no keys will stay so.
    fn after_cycle(&mut self) {
        if self.state == DtlsState::Handshaking && self.handshake_done && self.keying.is_none() {
            self.fail(DtlsFailure::NoSrtpProfile);
            return;
        }
        self.try_connect();
    }

    fn try_connect(&mut self) {
        if self.state != DtlsState::Handshaking || !self.handshake_done {
            return;
        }
        let Some(keying) = &self.keying else { return };
        let Some(expect) = self.remote_fingerprint else {
            return; // wait for set_remote_fingerprint
        };
        let Some(peer) = self.peer_cert else {
            self.fail(DtlsFailure::NoPeerCertificate);
            return;
        };
        if !expect.ct_eq(&peer) {
            self.fail(DtlsFailure::FingerprintMismatch);
            return;
        }
        let Some(version) = self.version() else {
            self.fail(DtlsFailure::Protocol);
            return;
        };
        let profile = keying.profile();
        self.state = DtlsState::Connected;
        self.events
            .push_back(DtlsEvent::Connected { profile, version });
    }

    fn fatal(&mut self, e: &dimpl::Error) -> DtlsError {
        let f = failure_from(e);
        self.fail(f);
        // dimpl found it: it may have queued its own alert (an empty client Certificate does).
        self.farewell_dimpl = self.state == DtlsState::Failed;
        DtlsError::Failed(f)
    }

    fn fail(&mut self, f: DtlsFailure) {
        if self.is_active() {
            self.farewell_alert = match (self.version(), f) {
                (Some(DtlsVersion::Dtls12), DtlsFailure::Timeout) => None,
                (Some(DtlsVersion::Dtls12), DtlsFailure::FingerprintMismatch)
                | (Some(DtlsVersion::Dtls12), DtlsFailure::NoPeerCertificate)
                | (Some(DtlsVersion::Dtls12), DtlsFailure::PeerCertificate) => {
                    Some(ALERT_BAD_CERTIFICATE)
                }
                (Some(DtlsVersion::Dtls12), _) => Some(ALERT_HANDSHAKE_FAILURE),
                _ => None,
            };
            self.state = DtlsState::Failed;
            self.keying = None;
            self.timeout = None;
            self.events.push_back(DtlsEvent::Failed(f));
        }
    }
}

impl std::fmt::Debug for DtlsEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DtlsEndpoint")
            .field("role", &self.role)
            .field("state", &self.state)
            .field("version", &self.version())
            .field("dtls", &self.dtls)
            .finish_non_exhaustive()
    }
}

fn version_from(v: Option<ProtocolVersion>) -> Option<DtlsVersion> {
    match v? {
        ProtocolVersion::DTLS1_2 => Some(DtlsVersion::Dtls12),
        ProtocolVersion::DTLS1_3 => Some(DtlsVersion::Dtls13),
        _ => None,
    }
}

fn failure_from(e: &dimpl::Error) -> DtlsFailure {
    match e {
        dimpl::Error::Timeout(_) => DtlsFailure::Timeout,
        dimpl::Error::CertificateError(dimpl::CertificateError::NoClientCertificateReceived)
        | dimpl::Error::CertificateError(dimpl::CertificateError::NoServerCertificateReceived) => {
            DtlsFailure::NoPeerCertificate
        }
        dimpl::Error::CertificateError(_) => DtlsFailure::PeerCertificate,
        dimpl::Error::SecurityError(_) => DtlsFailure::Security,
        dimpl::Error::CryptoError(_) => DtlsFailure::Crypto,
        _ => DtlsFailure::Protocol,
    }
}

/// A plaintext (epoch 0) fatal alert record of DTLS 1.2 (RFC 6347 §4.1). Its sequence number is
/// far above any a handshake uses, so the peer's replay window takes it.
fn alert_record(description: u8) -> [u8; 15] {
    let mut r = [0u8; 15];
    r[0] = 21; // alert
    r[1..3].copy_from_slice(&[0xfe, 0xfd]); // DTLS 1.2
                                            // epoch 0 (bytes 3..5), 48-bit sequence number (bytes 5..11)
    r[5..11].copy_from_slice(&[0x00, 0x00, 0x7f, 0xff, 0xff, 0xf0]);
    r[11..13].copy_from_slice(&2u16.to_be_bytes());
    r[13] = 2; // fatal
    r[14] = description;
    r
}

/// RFC 5246 §7.2.2 alert descriptions we send.
const ALERT_HANDSHAKE_FAILURE: u8 = 40;
const ALERT_BAD_CERTIFICATE: u8 = 42;

/// Smallest MTU we accept: a ClientHello fragment plus headers must fit.
const MIN_MTU: usize = 576;

/// Application-data records kept until the session drains them: a datagram
/// of at most 1500 bytes holds fewer than 50 records, and the session drains
/// after every datagram.
pub const MAX_APP_RECORDS: usize = 64;

/// Upper bound on dimpl outputs handled in one `poll_transmit` call; a
/// handshake cycle yields a handful of events before its packet or timeout.
const MAX_OUTPUTS_PER_POLL: usize = 64;
