//! [`DtlsEndpoint`]: one session's DTLS-SRTP handshake in the sans-IO shape
//! every rtp-core state machine has (`handle_datagram`, `handle_timeout`,
//! `poll_transmit`, `poll_timeout`, `poll_event`), over one of two engines:
//! dimpl for DTLS 1.3 (and the client role), our `v12` server for clients
//! that do not offer DTLS 1.3. A server picks on the first ClientHello
//! (`route.rs`).
//!
//! Adds what the engines leave to the application: the peer certificate
//! check against the SDP fingerprint (RFC 5763 §5, RFC 8842 §5), refusing to
//! report `Connected` until it passed, the SRTP key split (RFC 5764 §4.2, in
//! `keying.rs`) and the application data (data channels, RFC 8261) queue.

use std::collections::VecDeque;
use std::time::Instant;

use super::dimpl_engine::DimplEngine;
use super::keying::Keying;
use super::route::{Route, Router};
use super::v12;
use super::{
    DtlsCert, DtlsError, DtlsEvent, DtlsFailure, DtlsRole, DtlsSettings, DtlsState, DtlsVersion,
    Fingerprint,
};
use crate::srtp::{SrtpConfig, SrtpContext};

/// What an engine tells the endpoint.
#[derive(Debug)]
pub(super) enum EngineEvent {
    PeerCert(Fingerprint),
    Keyed(Keying),
    HandshakeDone(DtlsVersion),
    Closed,
    Failed(DtlsFailure),
    AppData(Vec<u8>),
}

#[derive(Debug)]
enum Engine {
    /// A server before the first ClientHello is whole.
    Routing(Box<Pending>),
    Dimpl(Box<DimplEngine>),
    Ours(Box<v12::Server>),
}

/// What a routing server needs to start either engine.
#[derive(Debug)]
struct Pending {
    router: Router,
    cert: DtlsCert,
    settings: DtlsSettings,
}

/// One DTLS-SRTP endpoint.
///
/// Drive it like the other state machines: feed datagrams whose first byte
/// is 20..=63 (RFC 7983) to [`handle_datagram`](Self::handle_datagram), call
/// [`handle_timeout`](Self::handle_timeout) at [`poll_timeout`](Self::poll_timeout),
/// and after either drain [`poll_transmit`](Self::poll_transmit) until it
/// returns `None`, then [`poll_event`](Self::poll_event). Events surface
/// while transmits are drained, so drain transmits first.
#[derive(Debug)]
pub struct DtlsEndpoint {
    role: DtlsRole,
    engine: Engine,
    state: DtlsState,
    remote_fingerprint: Option<Fingerprint>,
    /// SHA-256 of the peer's leaf certificate, once the engine showed it to us.
    peer_cert: Option<Fingerprint>,
    /// The engine reported the handshake done (before our fingerprint check).
    done: Option<DtlsVersion>,
    keying: Option<Keying>,
    events: VecDeque<DtlsEvent>,
    /// Application data (SCTP packets, RFC 8261) received through dimpl, oldest first.
    app_in: VecDeque<Vec<u8>>,
    app_dropped: u64,
    /// Size the engine asked for when `poll_transmit`'s buffer was too small.
    needed: usize,
    /// Why it failed, once it did.
    failure: Option<DtlsFailure>,
    scratch: Vec<EngineEvent>,
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
        if settings.mtu < MIN_MTU || settings.flight_start_rto.is_zero() {
            return Err(DtlsError::Settings);
        }
        let engine = match role {
            DtlsRole::Client => {
                Engine::Dimpl(Box::new(DimplEngine::new(role, cert, settings, now)?))
            }
            DtlsRole::Server => Engine::Routing(Box::new(Pending {
                router: Router::default(),
                cert: cert.clone(),
                settings: *settings,
            })),
        };
        Ok(Self {
            role,
            engine,
            state: DtlsState::Handshaking,
            remote_fingerprint,
            peer_cert: None,
            done: None,
            keying: None,
            events: VecDeque::with_capacity(4),
            app_in: VecDeque::new(),
            app_dropped: 0,
            needed: 0,
            failure: None,
            scratch: Vec::with_capacity(8),
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
        self.done.or(match &self.engine {
            Engine::Routing(_) => None,
            Engine::Dimpl(d) => d.version(),
            Engine::Ours(_) => Some(DtlsVersion::Dtls12),
        })
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
        if let Engine::Ours(s) = &mut self.engine {
            s.set_expected(Some(fp));
        }
        if self.peer_cert.is_some_and(|peer| !fp.ct_eq(&peer)) {
            self.fail(DtlsFailure::FingerprintMismatch);
            return;
        }
        self.try_connect();
    }

    /// Feed one received datagram. Malformed, replayed or stray records are
    /// dropped and return `Ok`; only fatal errors return `Err(Failed)`,
    /// after which the endpoint is dead.
    pub fn handle_datagram(&mut self, now: Instant, datagram: &[u8]) -> Result<(), DtlsError> {
        if !self.is_active() || self.state == DtlsState::Closed {
            return Err(DtlsError::Inactive);
        }
        match &mut self.engine {
            Engine::Routing(p) => {
                let route = p.router.handle(datagram);
                let (cert, settings) = (p.cert.clone(), p.settings);
                self.start_engine(now, route, &cert, &settings)?;
            }
            Engine::Dimpl(d) => {
                let r = d.handle_datagram(now, datagram);
                let events = if r.is_ok() {
                    d.drain_after_input()
                } else {
                    Vec::new()
                };
                if let Err(f) = r {
                    self.fail(f);
                }
                for e in events {
                    self.on_engine_event(e);
                }
            }
            Engine::Ours(s) => {
                s.handle_datagram(now, datagram);
                self.pump_ours();
            }
        }
        match (self.state, self.failure) {
            (DtlsState::Failed, Some(f)) => Err(DtlsError::Failed(f)),
            _ => Ok(()),
        }
    }

    /// A routing server's hello is whole (or refused): start its engine and
    /// feed it the datagrams kept so far.
    fn start_engine(
        &mut self,
        now: Instant,
        route: Route,
        cert: &DtlsCert,
        settings: &DtlsSettings,
    ) -> Result<(), DtlsError> {
        match route {
            Route::Pending => {}
            Route::TooBig => self.fail(DtlsFailure::Protocol),
            Route::Dimpl(kept) => {
                let mut d = DimplEngine::new(DtlsRole::Server, cert, settings, now)?;
                let r = kept.iter().try_for_each(|dg| d.handle_datagram(now, dg));
                self.engine = Engine::Dimpl(Box::new(d));
                if let Err(f) = r {
                    self.fail(f);
                }
            }
            Route::Ours(kept) => {
                let mut s = new_server(cert, settings)?;
                s.set_expected(self.remote_fingerprint);
                for dg in &kept {
                    s.handle_datagram(now, dg);
                }
                self.engine = Engine::Ours(Box::new(s));
                self.pump_ours();
            }
        }
        Ok(())
    }

    /// Run retransmission and handshake timers due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        if !self.is_active() {
            return;
        }
        match &mut self.engine {
            Engine::Routing(_) => {}
            Engine::Dimpl(d) => {
                if let Err(f) = d.advance(now) {
                    self.fail(f);
                }
            }
            Engine::Ours(s) => {
                s.handle_timeout(now);
                self.pump_ours();
            }
        }
    }

    /// Write the next datagram to send into `out` and return its length;
    /// `None` when there is nothing to send now. `out` should be at least
    /// [`DtlsSettings::mtu`] bytes (see [`needed_buffer`](Self::needed_buffer)).
    pub fn poll_transmit(&mut self, now: Instant, out: &mut [u8]) -> Option<usize> {
        match &mut self.engine {
            Engine::Routing(_) => None,
            Engine::Ours(s) => {
                // A failed or closed server still drains its alert / close_notify.
                let r = s.poll_transmit(out);
                self.pump_ours();
                match r? {
                    Ok(n) => Some(n),
                    Err(needed) => {
                        self.needed = needed;
                        None
                    }
                }
            }
            Engine::Dimpl(_) => self.poll_dimpl(now, out),
        }
    }

    fn poll_dimpl(&mut self, now: Instant, out: &mut [u8]) -> Option<usize> {
        let Engine::Dimpl(d) = &mut self.engine else {
            return None;
        };
        if self.state == DtlsState::Failed {
            return d.poll_farewell(out);
        }
        if let Some(n) = d.poll_pending(out) {
            return Some(n);
        }
        let mut evs = std::mem::take(&mut self.scratch);
        let r = match d.advance(now) {
            Ok(()) => d.poll_transmit(out, &mut evs),
            Err(f) => {
                evs.push(EngineEvent::Failed(f));
                Ok(None)
            }
        };
        for e in evs.drain(..) {
            self.on_engine_event(e);
        }
        self.scratch = evs;
        if self.state == DtlsState::Failed {
            // Whatever dimpl wrote into `out` is not sent: the alert instead.
            let Engine::Dimpl(d) = &mut self.engine else {
                return None;
            };
            return d.poll_farewell(out);
        }
        match r {
            Ok(n) => n,
            Err(needed) => {
                self.needed = needed;
                None
            }
        }
    }

    /// When [`handle_timeout`](Self::handle_timeout) is next due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.state == DtlsState::Failed {
            return None;
        }
        match &self.engine {
            Engine::Routing(_) => None,
            Engine::Dimpl(d) => d.poll_timeout(),
            Engine::Ours(s) => s.poll_timeout(),
        }
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<DtlsEvent> {
        self.events.pop_front()
    }

    /// The next application-data record the peer sent (an SCTP packet for
    /// data channels, RFC 8261), oldest first. Records surface while
    /// [`handle_datagram`](Self::handle_datagram) and
    /// [`poll_transmit`](Self::poll_transmit) run, so drain this after them.
    /// At most [`MAX_APP_RECORDS`] wait; more are dropped and counted
    /// ([`app_records_dropped`](Self::app_records_dropped)).
    pub fn poll_application_data(&mut self) -> Option<Vec<u8>> {
        match &mut self.engine {
            Engine::Ours(s) => s.poll_application_data(),
            _ => self.app_in.pop_front(),
        }
    }

    /// Application records dropped because nobody drained them.
    pub fn app_records_dropped(&self) -> u64 {
        match &self.engine {
            Engine::Ours(s) => s.app_records_dropped(),
            _ => self.app_dropped,
        }
    }

    /// Encrypts `data` as one application-data record; the datagram comes
    /// out of the next [`poll_transmit`](Self::poll_transmit). Only once
    /// `Connected`. Send one record per `poll_transmit` (dimpl queues at most
    /// ten datagrams).
    pub fn send_application_data(&mut self, data: &[u8]) -> Result<(), DtlsError> {
        if self.state != DtlsState::Connected {
            return Err(DtlsError::Inactive);
        }
        let ok = match &mut self.engine {
            Engine::Routing(_) => false,
            Engine::Dimpl(d) => d.send_application_data(data),
            Engine::Ours(s) => s.send_application_data(data).is_ok(),
        };
        ok.then_some(()).ok_or(DtlsError::Inactive)
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
        if !self.is_active() {
            return;
        }
        match &mut self.engine {
            Engine::Routing(_) => {}
            Engine::Dimpl(d) => d.close(),
            Engine::Ours(s) => s.close(),
        }
        self.state = DtlsState::Closed;
    }

    fn is_active(&self) -> bool {
        matches!(self.state, DtlsState::Handshaking | DtlsState::Connected)
    }

    /// Takes what our server reported.
    fn pump_ours(&mut self) {
        let Engine::Ours(s) = &mut self.engine else {
            return;
        };
        let mut evs = std::mem::take(&mut self.scratch);
        while let Some(e) = s.poll_event() {
            match e {
                v12::Event::PeerCert(fp) => evs.push(EngineEvent::PeerCert(fp)),
                v12::Event::Connected { profile, material } => {
                    match Keying::new(profile, &material) {
                        Ok(k) => {
                            evs.push(EngineEvent::Keyed(k));
                            evs.push(EngineEvent::HandshakeDone(DtlsVersion::Dtls12));
                        }
                        Err(f) => evs.push(EngineEvent::Failed(f)),
                    }
                }
                v12::Event::Closed => evs.push(EngineEvent::Closed),
                v12::Event::Failed(f) => evs.push(EngineEvent::Failed(f)),
            }
        }
        for e in evs.drain(..) {
            self.on_engine_event(e);
        }
        self.scratch = evs;
    }

    fn on_engine_event(&mut self, e: EngineEvent) {
        match e {
            EngineEvent::PeerCert(got) => {
                self.peer_cert = Some(got);
                if self
                    .remote_fingerprint
                    .is_some_and(|expect| !expect.ct_eq(&got))
                {
                    self.fail(DtlsFailure::FingerprintMismatch);
                }
            }
            EngineEvent::Keyed(k) => {
                self.keying = Some(k);
                self.try_connect();
            }
            EngineEvent::HandshakeDone(v) => {
                self.done = Some(v);
                self.try_connect();
            }
            EngineEvent::Closed if self.is_active() => {
                self.state = DtlsState::Closed;
                self.events.push_back(DtlsEvent::Closed);
            }
            EngineEvent::Closed => {}
            EngineEvent::Failed(f) => self.fail(f),
            EngineEvent::AppData(data) if self.state == DtlsState::Connected => {
                if self.app_in.len() < MAX_APP_RECORDS {
                    self.app_in.push_back(data);
                } else {
                    self.app_dropped += 1;
                }
            }
            EngineEvent::AppData(_) => {}
        }
    }

    fn try_connect(&mut self) {
        if self.state != DtlsState::Handshaking {
            return;
        }
        let Some(version) = self.done else { return };
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
        let profile = keying.profile();
        self.state = DtlsState::Connected;
        self.events
            .push_back(DtlsEvent::Connected { profile, version });
    }

    fn fail(&mut self, f: DtlsFailure) {
        if !self.is_active() {
            return;
        }
        match &mut self.engine {
            Engine::Routing(_) => {}
            Engine::Dimpl(d) => d.fail(f),
            Engine::Ours(s) => s.abort(alert_for(f)),
        }
        self.state = DtlsState::Failed;
        self.failure = Some(f);
        self.keying = None;
        self.events.push_back(DtlsEvent::Failed(f));
    }
}

fn new_server(cert: &DtlsCert, s: &DtlsSettings) -> Result<v12::Server, DtlsError> {
    let settings = v12::Settings {
        mtu: s.mtu,
        start_rto: s.flight_start_rto,
        retries: s.flight_retries,
        handshake_timeout: s.handshake_timeout,
        cookie: s.server_cookie,
        srtp_profiles: s.srtp_profiles,
    };
    v12::Server::new(settings, cert.cert_der(), cert.key_der()).ok_or(DtlsError::Certificate)
}

/// The alert our server sends when the endpoint refuses for `f` (RFC 5246 §7.2.2).
fn alert_for(f: DtlsFailure) -> u8 {
    match f {
        DtlsFailure::FingerprintMismatch | DtlsFailure::PeerCertificate => {
            v12::ALERT_BAD_CERTIFICATE
        }
        _ => v12::ALERT_HANDSHAKE_FAILURE,
    }
}

/// Smallest MTU we accept: a ClientHello fragment plus headers must fit.
const MIN_MTU: usize = 576;

/// Application-data records kept until the session drains them: a datagram
/// of at most 1500 bytes holds fewer than 50 records, and the session drains
/// after every datagram.
pub const MAX_APP_RECORDS: usize = 64;
