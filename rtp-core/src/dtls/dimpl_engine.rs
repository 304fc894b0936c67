//! The dimpl side of [`DtlsEndpoint`](super::DtlsEndpoint): DTLS 1.3 servers
//! (clients that offer 1.3) and every client-role endpoint. Turns dimpl's
//! output stream into the endpoint's [`EngineEvent`]s, and after a failure
//! sends the fatal alert dimpl queued, else one of ours in DTLS 1.2 epoch 0.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use dimpl::{Dtls, Output, ProtocolVersion};

use super::endpoint::EngineEvent;
use super::keying::Keying;
use super::{
    ClientVersion, DtlsCert, DtlsError, DtlsFailure, DtlsRole, DtlsSettings, DtlsVersion,
    Fingerprint,
};

/// One dimpl connection and what the endpoint needs besides it.
pub(super) struct DimplEngine {
    dtls: Dtls,
    timeout: Option<Instant>,
    last_now: Instant,
    /// dimpl reported the handshake done; keys must have come with it.
    done: bool,
    keyed: bool,
    /// After a failure: dimpl may still hold the alert it queued (drain it once).
    farewell_dimpl: bool,
    /// After a failure dimpl sent no alert for: the fatal alert we send ourselves.
    farewell_alert: Option<u8>,
    /// Datagrams dimpl produced while [`drain_after_input`](Self::drain_after_input) emptied
    /// its receive queue, sent first by the next `poll_transmit` (at most [`MAX_PENDING_TX`]).
    pending_tx: VecDeque<Vec<u8>>,
    /// Where `drain_after_input` lets dimpl write (grown to what it asks for, bounded).
    scratch: Vec<u8>,
}

impl DimplEngine {
    pub(super) fn new(
        role: DtlsRole,
        cert: &DtlsCert,
        settings: &DtlsSettings,
        now: Instant,
    ) -> Result<Self, DtlsError> {
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
            dtls,
            timeout: None,
            last_now: now,
            done: false,
            keyed: false,
            farewell_dimpl: false,
            farewell_alert: None,
            pending_tx: VecDeque::new(),
            scratch: Vec::new(),
        })
    }

    /// After an input of a connected engine: takes what dimpl has to say at once, as its API
    /// asks ("poll until Timeout after each mutation"). Application records wait in dimpl's
    /// receive queue until polled, and that queue holds 30 records: a peer whose SCTP sends a
    /// burst (Firefox does) between two `poll_transmit`s of the shard would otherwise make it
    /// fail with `ReceiveQueueFull`. Datagrams dimpl writes on the way (ACKs, post-handshake
    /// messages) wait in `pending_tx`. The handshake keeps its old path: nothing to drain there.
    pub(super) fn drain_after_input(&mut self) -> Vec<EngineEvent> {
        let mut events = Vec::new();
        if !self.done {
            return events;
        }
        let mut buf = std::mem::take(&mut self.scratch);
        if buf.len() < MIN_SCRATCH {
            buf.resize(MIN_SCRATCH, 0);
        }
        for _ in 0..MAX_OUTPUTS_PER_POLL {
            match self.poll_transmit(&mut buf, &mut events) {
                Ok(Some(n)) => {
                    if self.pending_tx.len() < MAX_PENDING_TX {
                        self.pending_tx.push_back(buf[..n].to_vec());
                    }
                }
                Ok(None) => break,
                Err(needed) if needed <= MAX_SCRATCH => buf.resize(needed, 0),
                Err(_) => break,
            }
        }
        self.scratch = buf;
        events
    }

    /// A datagram [`drain_after_input`](Self::drain_after_input) kept, copied into `out`.
    pub(super) fn poll_pending(&mut self, out: &mut [u8]) -> Option<usize> {
        let p = self.pending_tx.pop_front()?;
        let dst = out.get_mut(..p.len())?;
        dst.copy_from_slice(&p);
        Some(p.len())
    }

    pub(super) fn version(&self) -> Option<DtlsVersion> {
        match self.dtls.protocol_version()? {
            ProtocolVersion::DTLS1_2 => Some(DtlsVersion::Dtls12),
            ProtocolVersion::DTLS1_3 => Some(DtlsVersion::Dtls13),
            _ => None,
        }
    }

    pub(super) fn poll_timeout(&self) -> Option<Instant> {
        self.timeout
    }

    /// Moves dimpl's logical clock to `now` (it needs this before input too,
    /// and a client sends its first ClientHello only once it has run).
    /// dimpl wants monotonic time, so an earlier `now` is clamped.
    pub(super) fn advance(&mut self, now: Instant) -> Result<(), DtlsFailure> {
        let now = now.max(self.last_now);
        self.last_now = now;
        self.dtls.handle_timeout(now).map_err(|e| self.fatal(&e))
    }

    pub(super) fn handle_datagram(
        &mut self,
        now: Instant,
        datagram: &[u8],
    ) -> Result<(), DtlsFailure> {
        self.advance(now)?;
        self.dtls
            .handle_packet(datagram)
            .map_err(|e| self.fatal(&e))
    }

    /// The next datagram, collecting what dimpl reported on the way into
    /// `events`. `Err(needed)` when `out` is too small.
    pub(super) fn poll_transmit(
        &mut self,
        out: &mut [u8],
        events: &mut Vec<EngineEvent>,
    ) -> Result<Option<usize>, usize> {
        // Bounded: each iteration consumes one queued output of dimpl, and
        // dimpl ends every poll cycle with `Timeout`.
        for _ in 0..MAX_OUTPUTS_PER_POLL {
            match self.dtls.poll_output(out) {
                Output::Packet(p) => return Ok(Some(p.len())),
                Output::Timeout(t) => {
                    self.timeout = Some(t);
                    // Everything it learnt from the last input has been seen: a
                    // finished handshake with no keys stays so.
                    if self.done && !self.keyed {
                        events.push(EngineEvent::Failed(DtlsFailure::NoSrtpProfile));
                    }
                    return Ok(None);
                }
                Output::BufferTooSmall { needed } => return Err(needed),
                Output::PeerCert(der) => {
                    events.push(EngineEvent::PeerCert(Fingerprint::of_der(der)))
                }
                Output::Connected => {
                    self.done = true;
                    if let Some(v) = self.version() {
                        events.push(EngineEvent::HandshakeDone(v));
                    } else {
                        events.push(EngineEvent::Failed(DtlsFailure::Protocol));
                    }
                }
                Output::KeyingMaterial(km, profile) => match Keying::from_dimpl(profile, &km) {
                    Ok(k) => {
                        self.keyed = true;
                        events.push(EngineEvent::Keyed(k));
                    }
                    Err(f) => events.push(EngineEvent::Failed(f)),
                },
                Output::CloseNotify => events.push(EngineEvent::Closed),
                Output::ApplicationData(data) => events.push(EngineEvent::AppData(data.to_vec())),
                _ => {}
            }
            if events.iter().any(|e| matches!(e, EngineEvent::Failed(_))) {
                return Ok(None);
            }
        }
        Ok(None)
    }

    /// The fatal alert of a failed handshake (RFC 6347 §4.1.2.7, RFC 5246 §7.2.2), so the peer
    /// stops instead of retransmitting into silence: the one dimpl queued when it detected the
    /// failure, else, in DTLS 1.2, one of ours in epoch 0 (the checks that fail here — the SDP
    /// fingerprint, a missing certificate or SRTP profile — run before we send
    /// ChangeCipherSpec). Nothing for DTLS 1.3, where the peer only reads alerts under the
    /// handshake keys dimpl does not lend out.
    pub(super) fn poll_farewell(&mut self, out: &mut [u8]) -> Option<usize> {
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

    /// The endpoint failed for `f`: choose the alert to send.
    pub(super) fn fail(&mut self, f: DtlsFailure) {
        self.timeout = None;
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
    }

    pub(super) fn close(&mut self) {
        let _ = self.dtls.close();
    }

    pub(super) fn send_application_data(&mut self, data: &[u8]) -> bool {
        self.dtls.send_application_data(data).is_ok()
    }

    fn fatal(&mut self, e: &dimpl::Error) -> DtlsFailure {
        // dimpl found it: it may have queued its own alert (an empty client Certificate does).
        self.farewell_dimpl = true;
        failure_from(e)
    }
}

impl std::fmt::Debug for DimplEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DimplEngine")
            .field("dtls", &self.dtls)
            .finish_non_exhaustive()
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

/// Upper bound on dimpl outputs handled in one `poll_transmit` call; a
/// handshake cycle yields a handful of events before its packet or timeout.
const MAX_OUTPUTS_PER_POLL: usize = 64;
/// Datagrams `drain_after_input` keeps for the next `poll_transmit`s; more are dropped (dimpl
/// retransmits what matters, SCTP the rest).
const MAX_PENDING_TX: usize = 16;
/// `drain_after_input`'s buffer: an MTU's record to start, at most a record's 16 KiB plus overhead.
const MIN_SCRATCH: usize = 2048;
const MAX_SCRATCH: usize = 18 * 1024;
