//! Our DTLS 1.2 server (RFC 6347 over RFC 5246) for the clients whose first
//! ClientHello does not offer DTLS 1.3: OpenSSL-based stacks (GStreamer's
//! webrtcbin, aiortc) and any 1.2-only tool. dimpl serves DTLS 1.3 clients
//! (browsers); see `docs/decisions.md` D24 for why this exists.
//!
//! Scope: the one handshake WebRTC uses — HelloVerifyRequest cookie,
//! ECDHE_ECDSA with AES-GCM, a client certificate (ECDSA or RSA) whose
//! fingerprint the endpoint checks, the extended master secret (required),
//! use_srtp and the exporter — plus epoch-1 application data and alerts.
//! No resumption, no renegotiation, no other key exchange. Sans-IO: time is
//! passed in, output waits in a queue for `poll_transmit`. It allocates
//! during the handshake only (off the media path).
//!
//! - `codec`: TLS vectors and integers; `record`: records, replay window;
//! - `handshake`: fragments, reassembly, flights cut to the MTU;
//! - `hello`: ClientHello, HelloVerifyRequest, ServerHello;
//! - `messages`: the other handshake messages; `keys`: all cryptography;
//! - `flow`: the handshake's steps (this file drives them).

mod codec;
mod flow;
mod handshake;
mod hello;
mod keys;
mod messages;
mod record;

pub(crate) use hello::ClientHello;
pub(crate) use record::records;

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::{DtlsFailure, Fingerprint, SrtpProfiles};
use crate::srtp::ProtectionProfile;

use handshake::{Inserted, Item, WriteSeq};
use keys::{RecordKeys, Signer};
use record::{ReplayWindow, ALERT, APPLICATION_DATA, CHANGE_CIPHER_SPEC, HANDSHAKE};

#[cfg(feature = "fuzzing")]
pub(crate) use handshake::MAX_MESSAGE;
pub(crate) use handshake::{fragments, Inserted as FragmentInserted, Reassembler, CLIENT_HELLO};

/// The client-message parsers on raw bytes (fuzzing only).
#[cfg(feature = "fuzzing")]
pub(crate) fn fuzz_client_messages(body: &[u8]) {
    if let Ok(Some(leaf)) = messages::client_certificate(body) {
        assert!(!leaf.is_empty() && leaf.len() <= body.len());
    }
    let _ = messages::client_key_exchange(body);
    let _ = messages::certificate_verify(body);
}

/// Whether `key_der` is an ECDSA P-256/P-384 key of `cert_der`, one the
/// server can sign its ServerKeyExchange with.
pub(crate) fn can_sign(cert_der: &[u8], key_der: &[u8]) -> bool {
    super::der::certificate_public_key(cert_der)
        .ok()
        .and_then(|k| Signer::new(&k, key_der))
        .is_some()
}

/// What the server needs from [`super::DtlsSettings`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Settings {
    pub(crate) mtu: usize,
    pub(crate) start_rto: Duration,
    pub(crate) retries: usize,
    pub(crate) handshake_timeout: Duration,
    pub(crate) cookie: bool,
    pub(crate) srtp_profiles: SrtpProfiles,
}

/// What happened, for the endpoint to act on.
#[derive(Debug)]
pub(crate) enum Event {
    /// The client's leaf certificate (its signature over the handshake
    /// verified); the endpoint compares it with the SDP fingerprint.
    PeerCert(Fingerprint),
    /// Both Finished verified: the exported SRTP keying material.
    Connected {
        profile: ProtectionProfile,
        material: Vec<u8>,
    },
    /// The peer sent close_notify.
    Closed,
    /// The handshake or connection failed (an alert went out if one should).
    Failed(DtlsFailure),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Waiting for a ClientHello (with a valid cookie when cookies are on).
    AwaitHello,
    /// Flight 4 sent; the client's Certificate … Finished come next.
    AwaitClient(flow::Expect),
    /// Our Finished sent; application data flows.
    Connected,
    Failed,
    Closed,
}

/// One session's DTLS 1.2 server.
pub(crate) struct Server {
    settings: Settings,
    cert_der: Vec<u8>,
    signer: Signer,
    /// The SDP fingerprint the client's certificate must have, once known.
    expected: Option<Fingerprint>,
    state: State,
    reasm: Reassembler,
    write: WriteSeq,
    /// Key of the HelloVerifyRequest cookie (an HMAC of the client random).
    cookie_key: [u8; 32],
    /// The handshake in progress (dropped once connected).
    hs: Option<Box<flow::Handshake>>,
    keys: Option<RecordKeys>,
    /// Epoch the client writes in: 1 after its ChangeCipherSpec.
    read_epoch: u16,
    /// Whether we sent ChangeCipherSpec (our alerts then go in epoch 1).
    write_epoch1: bool,
    replay: ReplayWindow,
    /// Our last flight, for retransmission.
    flight: Vec<Item>,
    /// Whether any new part of the client's next flight arrived since we sent ours.
    progress: bool,
    timer: Option<Instant>,
    rto: Duration,
    retries_left: usize,
    deadline: Option<Instant>,
    last_retransmit: Option<Instant>,
    out: VecDeque<Vec<u8>>,
    events: VecDeque<Event>,
    app_in: VecDeque<Vec<u8>>,
    app_dropped: u64,
}

impl Server {
    /// A server with our certificate and key; `None` when the key is not an
    /// ECDSA P-256/P-384 key of that certificate.
    pub(crate) fn new(settings: Settings, cert_der: &[u8], key_der: &[u8]) -> Option<Self> {
        let cert_key = super::der::certificate_public_key(cert_der).ok()?;
        let signer = Signer::new(&cert_key, key_der)?;
        Some(Self {
            settings,
            cert_der: cert_der.to_vec(),
            signer,
            expected: None,
            state: State::AwaitHello,
            reasm: Reassembler::default(),
            write: WriteSeq::default(),
            cookie_key: keys::random()?,
            hs: None,
            keys: None,
            read_epoch: 0,
            write_epoch1: false,
            replay: ReplayWindow::default(),
            flight: Vec::new(),
            progress: false,
            timer: None,
            rto: settings.start_rto,
            retries_left: settings.retries,
            deadline: None,
            last_retransmit: None,
            out: VecDeque::new(),
            events: VecDeque::new(),
            app_in: VecDeque::new(),
            app_dropped: 0,
        })
    }

    /// The fingerprint the client's certificate must hash to: checked before
    /// our Finished goes out, so a wrong client never gets it.
    pub(crate) fn set_expected(&mut self, fp: Option<Fingerprint>) {
        self.expected = fp;
    }

    /// Feeds one datagram. Records that do not parse, authenticate or belong
    /// are dropped; a refused handshake fails the server (see the events).
    pub(crate) fn handle_datagram(&mut self, now: Instant, datagram: &[u8]) {
        if matches!(self.state, State::Failed | State::Closed) {
            return;
        }
        self.deadline
            .get_or_insert(now + self.settings.handshake_timeout);
        let mut retransmit = false;
        for rec in records(datagram) {
            if !record::is_dtls_version(rec.version) {
                continue;
            }
            match self.on_record(now, &rec) {
                Ok(again) => retransmit |= again,
                Err(refusal) => {
                    self.refuse(refusal);
                    return;
                }
            }
            if matches!(self.state, State::Failed | State::Closed) {
                return;
            }
        }
        if retransmit {
            self.retransmit(now, false);
        }
    }

    /// Runs the retransmission timer and the handshake deadline.
    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        if self.deadline.is_some_and(|d| now >= d) && !self.is_settled() {
            self.fail_quietly(DtlsFailure::Timeout);
            return;
        }
        if self.timer.is_some_and(|t| now >= t) {
            if self.retries_left == 0 {
                self.fail_quietly(DtlsFailure::Timeout);
                return;
            }
            self.retries_left -= 1;
            self.rto = (self.rto * 2).min(MAX_RTO);
            self.retransmit(now, true);
        }
    }

    /// The next datagram into `out`: its length, or `Err(needed)` when `out`
    /// is too small (the datagram stays queued).
    pub(crate) fn poll_transmit(&mut self, out: &mut [u8]) -> Option<Result<usize, usize>> {
        let d = self.out.front()?;
        let Some(dst) = out.get_mut(..d.len()) else {
            return Some(Err(d.len()));
        };
        dst.copy_from_slice(d);
        let n = d.len();
        self.out.pop_front();
        Some(Ok(n))
    }

    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        if self.is_settled() {
            return None;
        }
        match (self.timer, self.deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    pub(crate) fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    pub(crate) fn poll_application_data(&mut self) -> Option<Vec<u8>> {
        self.app_in.pop_front()
    }

    pub(crate) fn app_records_dropped(&self) -> u64 {
        self.app_dropped
    }

    /// Encrypts `data` as one application-data record (queued for `poll_transmit`).
    pub(crate) fn send_application_data(&mut self, data: &[u8]) -> Result<(), ()> {
        if self.state != State::Connected
            || data.len() > MAX_APP_RECORD
            || self.out.len() >= MAX_QUEUED
        {
            return Err(());
        }
        self.send_record(APPLICATION_DATA, data).ok_or(())
    }

    /// Sends close_notify (when connected) and stops.
    pub(crate) fn close(&mut self) {
        if self.state == State::Connected {
            let _ = self.send_record(ALERT, &[WARNING, CLOSE_NOTIFY]);
        }
        self.stop(State::Closed);
    }

    /// The endpoint refuses the connection (e.g. the SDP fingerprint does not
    /// match): a fatal `alert` goes out and nothing else.
    pub(crate) fn abort(&mut self, alert: u8) {
        if matches!(self.state, State::Failed | State::Closed) {
            return;
        }
        self.out.clear();
        let _ = self.send_record(ALERT, &[FATAL, alert]);
        self.stop(State::Failed);
    }

    fn is_settled(&self) -> bool {
        matches!(self.state, State::Connected | State::Failed | State::Closed)
    }

    /// One record; `Ok(true)` when it was a retransmission of the client's
    /// previous flight (we answer with ours).
    fn on_record(&mut self, now: Instant, rec: &record::Record<'_>) -> Result<bool, flow::Refusal> {
        let mut plain_buf;
        let plain: &[u8] = if rec.epoch == 0 {
            // Once the client switched to epoch 1 only handshake retransmissions
            // of its earlier flight may still come in plaintext.
            if self.read_epoch == 1 && rec.content_type != HANDSHAKE {
                return Ok(false);
            }
            rec.fragment
        } else if rec.epoch == 1 && self.read_epoch == 1 {
            if !self.replay.is_fresh(rec.seq) {
                return Ok(false);
            }
            let Some(k) = self.keys.as_ref() else {
                return Ok(false);
            };
            plain_buf = rec.fragment.to_vec();
            let Some(n) = k
                .client
                .open(rec.epoch_seq(), rec.content_type, &mut plain_buf)
            else {
                return Ok(false); // RFC 6347 §4.1.2.7: invalid records are discarded
            };
            self.replay.accept(rec.seq);
            plain_buf.truncate(n);
            &plain_buf
        } else {
            return Ok(false);
        };
        match rec.content_type {
            HANDSHAKE => self.on_handshake(now, plain, rec.epoch),
            CHANGE_CIPHER_SPEC if rec.epoch == 0 => {
                self.on_change_cipher_spec(plain)?;
                Ok(false)
            }
            ALERT => {
                self.on_alert(plain, rec.epoch);
                Ok(false)
            }
            APPLICATION_DATA if rec.epoch == 1 && self.state == State::Connected => {
                if self.app_in.len() < MAX_APP_QUEUE {
                    self.app_in.push_back(plain.to_vec());
                } else {
                    self.app_dropped += 1;
                }
                Ok(false)
            }
            _ => Ok(false),
        }
    }

    fn on_handshake(
        &mut self,
        now: Instant,
        plain: &[u8],
        epoch: u16,
    ) -> Result<bool, flow::Refusal> {
        let mut old = false;
        for f in fragments(plain) {
            // The client's Finished is the only handshake message of epoch 1.
            if (epoch == 1) != (f.msg_type == handshake::FINISHED) {
                continue;
            }
            match self.reasm.insert(&f) {
                Inserted::Old => old = true,
                Inserted::Kept => self.progress = true,
                Inserted::Dropped => {}
            }
        }
        while let Some(msg) = self.reasm.pop() {
            self.on_message(now, msg)?;
            if matches!(self.state, State::Failed | State::Closed) {
                break;
            }
        }
        Ok(old && !self.progress)
    }

    fn on_alert(&mut self, plain: &[u8], epoch: u16) {
        // Epoch-0 alerts are unauthenticated: after the handshake they are ignored.
        if plain.len() != 2 || (epoch == 0 && self.state == State::Connected) {
            return;
        }
        if plain[1] == CLOSE_NOTIFY {
            self.events.push_back(Event::Closed);
            self.stop(State::Closed);
        } else if plain[0] == FATAL {
            self.events.push_back(Event::Failed(DtlsFailure::Protocol));
            self.stop(State::Failed);
        }
    }

    /// Queues `items` as our new flight and sends it.
    fn send_flight(
        &mut self,
        now: Instant,
        items: Vec<Item>,
        timer: bool,
    ) -> Result<(), flow::Refusal> {
        self.flight = items;
        self.progress = false;
        self.rto = self.settings.start_rto;
        self.retries_left = self.settings.retries;
        self.timer = timer.then(|| now + self.rto);
        self.emit_flight().ok_or(flow::Refusal::internal())
    }

    fn emit_flight(&mut self) -> Option<()> {
        let cipher = self.keys.as_ref().map(|k| &k.server);
        let dgrams = handshake::pack(&self.flight, self.settings.mtu, &mut self.write, cipher)?;
        self.out.extend(dgrams);
        Some(())
    }

    /// Sends our last flight again: on the timer, or (rate-limited) because
    /// the client repeated its previous flight.
    fn retransmit(&mut self, now: Instant, on_timer: bool) {
        if self.flight.is_empty() {
            return;
        }
        if !on_timer {
            let min_gap = self.settings.start_rto / 4;
            if self
                .last_retransmit
                .is_some_and(|t| now.saturating_duration_since(t) < min_gap)
            {
                return;
            }
        }
        self.last_retransmit = Some(now);
        if on_timer || self.timer.is_some() {
            self.timer = Some(now + self.rto);
        }
        if self.emit_flight().is_none() {
            self.fail_quietly(DtlsFailure::Crypto);
        }
    }

    /// One record in the current write epoch.
    fn send_record(&mut self, content_type: u8, body: &[u8]) -> Option<()> {
        let mut d = Vec::with_capacity(record::HEADER_LEN + record::AEAD_OVERHEAD + body.len());
        if self.write_epoch1 {
            let k = self.keys.as_ref()?;
            let seq = self.write.take(1);
            record::write_sealed(&mut d, &k.server, content_type, 1, seq, body)?;
        } else {
            record::write_plain(&mut d, content_type, 0, self.write.take(0), body);
        }
        self.out.push_back(d);
        Some(())
    }

    /// A refusal: its fatal alert, the failure event, nothing more to send.
    fn refuse(&mut self, r: flow::Refusal) {
        self.out.clear();
        let _ = self.send_record(ALERT, &[FATAL, r.alert]);
        self.events.push_back(Event::Failed(r.failure));
        self.stop(State::Failed);
    }

    /// A failure the peer is not told about (it timed out too).
    fn fail_quietly(&mut self, f: DtlsFailure) {
        self.events.push_back(Event::Failed(f));
        self.stop(State::Failed);
    }

    fn stop(&mut self, state: State) {
        self.state = state;
        self.timer = None;
        self.hs = None;
        self.flight.clear();
        if state == State::Failed {
            self.keys = None;
        }
    }
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("dtls12::Server")
            .field("state", &self.state)
            .field("read_epoch", &self.read_epoch)
            .finish_non_exhaustive()
    }
}

/// Alert levels and the descriptions we send or read (RFC 5246 §7.2).
const WARNING: u8 = 1;
const FATAL: u8 = 2;
const CLOSE_NOTIFY: u8 = 0;
pub(crate) const ALERT_UNEXPECTED_MESSAGE: u8 = 10;
pub(crate) const ALERT_HANDSHAKE_FAILURE: u8 = 40;
pub(crate) const ALERT_BAD_CERTIFICATE: u8 = 42;
pub(crate) const ALERT_ILLEGAL_PARAMETER: u8 = 47;
pub(crate) const ALERT_DECODE_ERROR: u8 = 50;
pub(crate) const ALERT_DECRYPT_ERROR: u8 = 51;
pub(crate) const ALERT_PROTOCOL_VERSION: u8 = 70;
pub(crate) const ALERT_INTERNAL_ERROR: u8 = 80;

/// Retransmission backoff stops doubling here (RFC 6347 §4.2.4.1: 60 s).
const MAX_RTO: Duration = Duration::from_secs(60);
/// Received application records waiting to be drained.
const MAX_APP_QUEUE: usize = 64;
/// Datagrams waiting in `out` beyond which application data is refused.
const MAX_QUEUED: usize = 32;
/// Largest application record plaintext (RFC 6347 §4.1: 2^14).
const MAX_APP_RECORD: usize = 1 << 14;
