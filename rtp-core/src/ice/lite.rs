//! [`IceLite`]: the ICE-lite agent an SFU runs per Session (RFC 8445 §2.5,
//! §7.3; RFC 7675 on the receiving side).
//!
//! It never sends checks. It answers Binding requests authenticated with the
//! local short-term credentials, remembers each source address that passed
//! as a valid pair, and selects the address the controlling peer nominates
//! with USE-CANDIDATE. A later nomination from another address (NAT
//! rebinding, Wi-Fi to cellular) moves the selection. If the selected address
//! stops sending valid checks for `consent_timeout`, consent is gone and the
//! agent reports [`IceEvent::Disconnected`]; the caller must stop sending
//! media there (RFC 7675 §5.1).
//!
//! Addresses are [`Remote`]s: a transport and an address. A check that
//! arrives over a TCP connection (RFC 6544) validates that connection, not
//! the same address over UDP, and a nomination on it moves media there; when
//! the caller reports the connection closed ([`IceLite::forget`]) it is no
//! longer valid, and if it was selected consent is lost at once.
//!
//! Order of request checks, following RFC 8489 §6.3 and §9.1.3 then
//! RFC 8445 §7.3.1.1: FINGERPRINT (else silently dropped), Binding method
//! (else 400), USERNAME and MESSAGE-INTEGRITY present (else 400), USERNAME
//! `local:remote` known (else 401), integrity with the local password (else
//! 401), unknown comprehension-required attributes (420), ICE-CONTROLLED
//! (487: both sides would be controlled), then success. Only 420 and 487 carry
//! MESSAGE-INTEGRITY, because only they follow a successful authentication.

use std::time::{Duration, Instant};

use super::candidates::CandidateTable;
use super::credentials::{AuthFailure, CredentialSet, Credentials, Which};
use super::queue::EventQueue;
use super::IceError;
use crate::net::Remote;
use crate::stun::{
    write_binding_success, ErrorCode, ErrorResponse, StunClass, StunMessage, StunMethod,
    TRANSACTION_ID_LEN,
};

/// Configuration of an [`IceLite`] agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IceConfig {
    /// Our ufrag, as put in the SDP answer (`a=ice-ufrag`).
    pub local_ufrag: String,
    /// Our password (`a=ice-pwd`), the MESSAGE-INTEGRITY key of checks.
    pub local_pwd: String,
    /// The peer's ufrag when signaling gave it; `None` accepts any.
    pub remote_ufrag: Option<String>,
    /// How long the selected address may go without a valid check before
    /// consent expires (RFC 7675 §5.1: 30 s).
    pub consent_timeout: Duration,
    /// How many remote addresses to remember as valid pairs.
    pub max_candidates: usize,
}

impl IceConfig {
    /// Credentials with the defaults: no remote ufrag, 30 s consent, 8 candidates.
    pub fn new(local_ufrag: impl Into<String>, local_pwd: impl Into<String>) -> Self {
        Self {
            local_ufrag: local_ufrag.into(),
            local_pwd: local_pwd.into(),
            remote_ufrag: None,
            consent_timeout: Duration::from_secs(30),
            max_candidates: 8,
        }
    }
}

/// Connectivity of an [`IceLite`] agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IceState {
    /// No nomination yet.
    New,
    /// An address is selected and has consent.
    Connected,
    /// Consent for the selected address expired; a new nomination reconnects.
    Disconnected,
}

/// What an [`IceLite`] agent reports through [`IceLite::poll_event`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IceEvent {
    /// First nomination (or the first after consent was lost).
    Connected {
        /// Where media now goes.
        selected: Remote,
    },
    /// The peer nominated another address: NAT rebinding, a network change,
    /// or a move between UDP and TCP.
    SelectedChanged {
        /// Where media now goes.
        selected: Remote,
    },
    /// No valid check from the selected address within the consent timeout,
    /// or its TCP connection closed ([`IceLite::forget`]).
    Disconnected,
    /// A check used the credentials given to [`IceLite::restart`]: the
    /// restart is complete and the old credentials are now rejected (the
    /// caller may drop the old ufrag from its demux table).
    Restarted,
}

/// Counters of an [`IceLite`] agent, by outcome and drop reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct IceLiteStats {
    /// Binding requests answered with success.
    pub successes: u64,
    /// Responses and indications, which a lite agent never expects.
    pub ignored: u64,
    /// Dropped without answer: FINGERPRINT missing or wrong.
    pub bad_fingerprint: u64,
    /// 400: not a Binding request, or USERNAME / MESSAGE-INTEGRITY missing.
    pub bad_request: u64,
    /// 401: USERNAME does not name our (current or previous) credentials.
    pub bad_username: u64,
    /// 401: MESSAGE-INTEGRITY does not verify with the matching password.
    pub bad_integrity: u64,
    /// 420: unknown comprehension-required attributes.
    pub unknown_attribute: u64,
    /// 487: the peer also claims the controlled role.
    pub role_conflict: u64,
    /// Checks that carried USE-CANDIDATE and passed.
    pub nominations: u64,
    /// Nominations that moved the selected address.
    pub selected_changes: u64,
    /// Consent expiries of the selected address.
    pub consent_expiries: u64,
    /// Addresses forgotten because their transport went away (a TCP
    /// connection closed); of those, the selected one counts in
    /// `consent_expiries` too.
    pub forgotten: u64,
    /// Restarts completed (first check with new credentials).
    pub restarts: u64,
    /// Remote addresses forgotten because the table was full.
    pub candidates_evicted: u64,
    /// Events dropped because nobody polled them.
    pub events_dropped: u64,
    /// Responses not written because the output buffer was too small.
    pub buffer_too_small: u64,
}

/// The server-side ICE-lite agent of one Session.
#[derive(Debug)]
pub struct IceLite {
    credentials: CredentialSet,
    consent_timeout: Duration,
    candidates: CandidateTable,
    /// Last nominated address; reported by `selected()` only while Connected.
    selected: Option<Remote>,
    consent_deadline: Option<Instant>,
    state: IceState,
    events: EventQueue<IceEvent, EVENT_CAPACITY>,
    stats: IceLiteStats,
}

impl IceLite {
    /// A new agent with no selected address. All storage is reserved here.
    pub fn new(config: IceConfig) -> Self {
        Self {
            credentials: CredentialSet::new(Credentials {
                local_ufrag: config.local_ufrag,
                local_pwd: config.local_pwd,
                remote_ufrag: config.remote_ufrag,
            }),
            consent_timeout: config.consent_timeout,
            candidates: CandidateTable::new(config.max_candidates),
            selected: None,
            consent_deadline: None,
            state: IceState::New,
            events: EventQueue::new(),
            stats: IceLiteStats::default(),
        }
    }

    /// Handles one parsed STUN message that arrived from `src`. Returns the
    /// length of a response written into `out` (a success or an error
    /// response) to send back to `src`, `None` when nothing is to be sent, or
    /// an error when the message was dropped. Never allocates.
    pub fn handle_stun(
        &mut self,
        now: Instant,
        msg: &StunMessage<'_>,
        src: Remote,
        out: &mut [u8],
    ) -> Result<Option<usize>, IceError> {
        if msg.class() != StunClass::Request {
            self.stats.ignored += 1;
            return Ok(None);
        }
        if !msg.verify_fingerprint() {
            self.stats.bad_fingerprint += 1;
            return Err(IceError::BadFingerprint);
        }
        let tid = *msg.transaction_id();
        let ufrags = msg.username_ufrags();
        let (Some((local, remote)), StunMethod::Binding, Some(_)) =
            (ufrags, msg.method(), msg.message_integrity())
        else {
            self.stats.bad_request += 1;
            return self.reply_error(out, tid, ErrorCode::BAD_REQUEST, &[], None);
        };
        let which = match self.credentials.authenticate(msg, local, remote) {
            Ok(which) => which,
            Err(AuthFailure::Username) => {
                self.stats.bad_username += 1;
                return self.reply_error(out, tid, ErrorCode::UNAUTHENTICATED, &[], None);
            }
            Err(AuthFailure::Integrity) => {
                self.stats.bad_integrity += 1;
                return self.reply_error(out, tid, ErrorCode::UNAUTHENTICATED, &[], None);
            }
        };

        let mut unknown = [0u16; MAX_UNKNOWN_LISTED];
        let mut n_unknown = 0;
        for t in msg.unknown_comprehension_required() {
            if n_unknown < unknown.len() {
                unknown[n_unknown] = t;
                n_unknown += 1;
            }
        }
        if n_unknown > 0 {
            self.stats.unknown_attribute += 1;
            let code = ErrorCode::UNKNOWN_ATTRIBUTE;
            return self.reply_error(out, tid, code, &unknown[..n_unknown], Some(which));
        }
        if msg.ice_controlled().is_some() {
            // A lite agent is always controlled (RFC 8445 §6.1.1) and cannot
            // switch, so whatever the tie-breakers say, the peer must.
            self.stats.role_conflict += 1;
            return self.reply_error(out, tid, ErrorCode::ROLE_CONFLICT, &[], Some(which));
        }

        let key = self.credentials.pwd(which);
        let len = match write_binding_success(out, &tid, src.addr, key) {
            Ok(len) => len,
            Err(_) => {
                self.stats.buffer_too_small += 1;
                return Err(IceError::BufferTooSmall);
            }
        };
        self.stats.successes += 1;
        self.accept_check(now, src, msg.use_candidate(), which);
        Ok(Some(len))
    }

    /// The next event, oldest first.
    pub fn poll_event(&mut self) -> Option<IceEvent> {
        self.events.pop()
    }

    /// When consent of the selected address expires unless a check arrives.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            IceState::Connected => self.consent_deadline,
            IceState::New | IceState::Disconnected => None,
        }
    }

    /// Expires consent if its deadline has passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.state != IceState::Connected {
            return;
        }
        if self.consent_deadline.is_some_and(|d| now >= d) {
            self.state = IceState::Disconnected;
            self.consent_deadline = None;
            self.stats.consent_expiries += 1;
            self.push_event(IceEvent::Disconnected);
        }
    }

    /// ICE restart (RFC 8445 §9) with new local credentials and, if the
    /// peer's offer carried them, its new ufrag. Checks with the old
    /// credentials are still answered until the first check with the new ones
    /// succeeds ([`IceEvent::Restarted`]); the selection and consent carry
    /// over, so media is not cut. Restarting again before that replaces the
    /// unproven new credentials and keeps the old working ones.
    pub fn restart(
        &mut self,
        local_ufrag: impl Into<String>,
        local_pwd: impl Into<String>,
        remote_ufrag: Option<String>,
    ) {
        let fresh = Credentials {
            local_ufrag: local_ufrag.into(),
            local_pwd: local_pwd.into(),
            remote_ufrag,
        };
        self.credentials.restart(fresh);
    }

    /// The peer's transport to `remote` is gone (its TCP connection closed):
    /// it is no longer a valid pair, and if it was the selected one consent
    /// is lost at once ([`IceEvent::Disconnected`]) instead of after the
    /// consent timeout. A later nomination over another pair reconnects.
    pub fn forget(&mut self, remote: Remote) {
        if !self.candidates.remove(remote) {
            return;
        }
        self.stats.forgotten += 1;
        if self.state == IceState::Connected && self.selected == Some(remote) {
            self.state = IceState::Disconnected;
            self.consent_deadline = None;
            self.stats.consent_expiries += 1;
            self.push_event(IceEvent::Disconnected);
        }
    }

    /// Where media may be sent: the nominated address while it has consent.
    pub fn selected(&self) -> Option<Remote> {
        match self.state {
            IceState::Connected => self.selected,
            IceState::New | IceState::Disconnected => None,
        }
    }

    /// Current connectivity.
    pub fn state(&self) -> IceState {
        self.state
    }

    /// Whether `addr` passed a check and is still remembered.
    pub fn is_valid(&self, addr: Remote) -> bool {
        self.candidates.contains(addr)
    }

    /// The remembered remote addresses that passed a check.
    pub fn valid_addresses(&self) -> impl Iterator<Item = Remote> + '_ {
        self.candidates.iter()
    }

    /// Our current ufrag (the demux key for incoming checks).
    pub fn local_ufrag(&self) -> &str {
        self.credentials.local_ufrag()
    }

    /// Counters by outcome and reason.
    pub fn stats(&self) -> IceLiteStats {
        self.stats
    }

    /// State changes of a check that was answered with success.
    fn accept_check(&mut self, now: Instant, src: Remote, nominate: bool, which: Which) {
        if self.credentials.confirm(which) {
            self.stats.restarts += 1;
            self.push_event(IceEvent::Restarted);
        }
        if self.candidates.refresh(now, src, self.selected) {
            self.stats.candidates_evicted += 1;
        }
        if nominate {
            self.stats.nominations += 1;
            if self.state != IceState::Connected {
                self.state = IceState::Connected;
                self.selected = Some(src);
                self.push_event(IceEvent::Connected { selected: src });
            } else if self.selected != Some(src) {
                self.selected = Some(src);
                self.stats.selected_changes += 1;
                self.push_event(IceEvent::SelectedChanged { selected: src });
            }
        }
        if self.state == IceState::Connected && self.selected == Some(src) {
            self.consent_deadline = Some(now + self.consent_timeout);
        }
    }

    fn push_event(&mut self, event: IceEvent) {
        if !self.events.push(event) {
            self.stats.events_dropped += 1;
        }
    }

    /// Writes an error response; `auth` names the credentials that
    /// authenticated the request, whose password then keys MESSAGE-INTEGRITY.
    fn reply_error(
        &mut self,
        out: &mut [u8],
        transaction_id: [u8; TRANSACTION_ID_LEN],
        code: u16,
        unknown_attributes: &[u16],
        auth: Option<Which>,
    ) -> Result<Option<usize>, IceError> {
        let response = ErrorResponse {
            transaction_id,
            code,
            reason: reason_phrase(code),
            unknown_attributes,
            integrity_key: auth.map(|w| self.credentials.pwd(w)),
        };
        match response.write(out) {
            Ok(len) => Ok(Some(len)),
            Err(_) => {
                self.stats.buffer_too_small += 1;
                Err(IceError::BufferTooSmall)
            }
        }
    }
}

fn reason_phrase(code: u16) -> &'static [u8] {
    match code {
        ErrorCode::BAD_REQUEST => b"Bad Request",
        ErrorCode::UNAUTHENTICATED => b"Unauthenticated",
        ErrorCode::UNKNOWN_ATTRIBUTE => b"Unknown Attribute",
        ErrorCode::ROLE_CONFLICT => b"Role Conflict",
        _ => b"Error",
    }
}

/// Events a Session produces between polls are few (connect, a path change,
/// a restart); eight leaves room for a slow poller.
const EVENT_CAPACITY: usize = 8;

/// Unknown attribute types listed in one 420 response; more are not listed.
const MAX_UNKNOWN_LISTED: usize = 16;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stun::{attr, BindingRequest, IceRole, StunWriter};

    const UFRAG: &str = "srvU";
    const PWD: &str = "server-password-0123456789";
    const PEER: &str = "cliU";

    fn addr(port: u16) -> Remote {
        Remote::udp(std::net::SocketAddr::from(([127, 0, 0, 1], port)))
    }

    #[allow(clippy::disallowed_methods)] // a test needs some base instant
    fn t0() -> Instant {
        Instant::now()
    }

    fn agent() -> IceLite {
        IceLite::new(IceConfig {
            remote_ufrag: Some(PEER.into()),
            consent_timeout: Duration::from_secs(3),
            ..IceConfig::new(UFRAG, PWD)
        })
    }

    /// A Binding request from the peer: `username`, `pwd`, role, nomination.
    fn request(username: &str, pwd: &str, role: IceRole, nominate: bool, tid: u8) -> Vec<u8> {
        let mut buf = vec![0u8; 256];
        let n = BindingRequest {
            transaction_id: [tid; 12],
            username: username.as_bytes(),
            priority: 1234,
            role,
            use_candidate: nominate,
            key: pwd.as_bytes(),
        }
        .write(&mut buf)
        .unwrap();
        buf.truncate(n);
        buf
    }

    fn good(nominate: bool) -> Vec<u8> {
        request("srvU:cliU", PWD, IceRole::Controlling(9), nominate, 1)
    }

    /// A response boiled down: class, ERROR-CODE, integrity under our
    /// password, XOR-MAPPED-ADDRESS.
    type Answer = (StunClass, Option<u16>, bool, Option<std::net::SocketAddr>);

    /// Feeds `bytes` from `src` and returns the response, if any, boiled down.
    fn feed(
        ice: &mut IceLite,
        now: Instant,
        bytes: &[u8],
        src: Remote,
    ) -> Result<Option<Answer>, IceError> {
        let msg = StunMessage::parse(bytes).unwrap();
        let mut out = [0u8; 256];
        let r = ice.handle_stun(now, &msg, src, &mut out)?;
        Ok(r.map(|n| {
            let resp = StunMessage::parse(&out[..n]).unwrap();
            assert!(resp.verify_fingerprint());
            assert_eq!(resp.transaction_id(), msg.transaction_id());
            (
                resp.class(),
                resp.error_code().map(|e| e.code),
                resp.verify_integrity(PWD.as_bytes()),
                resp.xor_mapped_address(),
            )
        }))
    }

    fn events(ice: &mut IceLite) -> Vec<IceEvent> {
        std::iter::from_fn(|| ice.poll_event()).collect()
    }

    #[test]
    fn nominating_check_connects() {
        let (mut ice, now) = (agent(), t0());
        assert_eq!(ice.state(), IceState::New);
        let r = feed(&mut ice, now, &good(true), addr(5000)).unwrap();
        assert_eq!(
            r,
            Some((StunClass::Success, None, true, Some(addr(5000).addr)))
        );
        assert_eq!(
            events(&mut ice),
            [IceEvent::Connected {
                selected: addr(5000)
            }]
        );
        assert_eq!(ice.state(), IceState::Connected);
        assert_eq!(ice.selected(), Some(addr(5000)));
        assert!(ice.is_valid(addr(5000)));
        assert_eq!(ice.poll_timeout(), Some(now + Duration::from_secs(3)));
        let s = ice.stats();
        assert_eq!((s.successes, s.nominations), (1, 1));
    }

    #[test]
    fn plain_check_is_answered_but_selects_nothing() {
        let (mut ice, now) = (agent(), t0());
        let r = feed(&mut ice, now, &good(false), addr(5000)).unwrap();
        assert_eq!(r.unwrap().0, StunClass::Success);
        assert!(ice.is_valid(addr(5000)));
        assert_eq!(ice.selected(), None);
        assert_eq!(ice.poll_timeout(), None);
        assert!(events(&mut ice).is_empty());
    }

    #[test]
    fn bad_credentials_get_unprotected_401() {
        let (mut ice, now) = (agent(), t0());
        for (username, pwd) in [
            ("other:cliU", PWD),
            ("srvU:other", PWD),
            ("srvU", PWD),
            ("srvU:cliU", "wrong-password-0123456789"),
        ] {
            let req = request(username, pwd, IceRole::Controlling(9), true, 2);
            let r = feed(&mut ice, now, &req, addr(5000)).unwrap().unwrap();
            let want = if username == "srvU" { 400 } else { 401 };
            assert_eq!(
                (r.0, r.1, r.2),
                (StunClass::Error, Some(want), false),
                "{username}"
            );
        }
        let s = ice.stats();
        assert_eq!((s.bad_username, s.bad_integrity, s.bad_request), (2, 1, 1));
        assert_eq!(s.successes, 0);
        assert!(!ice.is_valid(addr(5000)));
        assert_eq!(ice.state(), IceState::New);
        assert!(events(&mut ice).is_empty());
    }

    #[test]
    fn unknown_remote_ufrag_accepts_any_peer() {
        let mut ice = IceLite::new(IceConfig::new(UFRAG, PWD));
        let req = request("srvU:whoever", PWD, IceRole::Controlling(1), false, 3);
        let r = feed(&mut ice, t0(), &req, addr(1)).unwrap().unwrap();
        assert_eq!(r.0, StunClass::Success);
    }

    #[test]
    fn missing_integrity_or_non_binding_is_400() {
        let (mut ice, now) = (agent(), t0());
        let mut buf = [0u8; 128];
        let mut w =
            StunWriter::new(&mut buf, StunClass::Request, StunMethod::Binding, &[4; 12]).unwrap();
        w.username(b"srvU:cliU").unwrap();
        w.fingerprint().unwrap();
        let n = w.finish();
        let r = feed(&mut ice, now, &buf[..n], addr(1)).unwrap().unwrap();
        assert_eq!((r.0, r.1, r.2), (StunClass::Error, Some(400), false));

        let mut w =
            StunWriter::new(&mut buf, StunClass::Request, StunMethod::Other(3), &[5; 12]).unwrap();
        w.username(b"srvU:cliU").unwrap();
        w.message_integrity(PWD.as_bytes()).unwrap();
        w.fingerprint().unwrap();
        let n = w.finish();
        let r = feed(&mut ice, now, &buf[..n], addr(1)).unwrap().unwrap();
        assert_eq!(r.1, Some(400));
        assert_eq!(ice.stats().bad_request, 2);
    }

    #[test]
    fn unknown_required_attribute_is_protected_420() {
        let (mut ice, now) = (agent(), t0());
        let mut buf = [0u8; 128];
        let mut w =
            StunWriter::new(&mut buf, StunClass::Request, StunMethod::Binding, &[6; 12]).unwrap();
        w.username(b"srvU:cliU").unwrap();
        w.attribute(0x7001, b"??").unwrap();
        w.attribute(0xC001, b"optional").unwrap();
        w.message_integrity(PWD.as_bytes()).unwrap();
        w.fingerprint().unwrap();
        let n = w.finish();
        let msg = StunMessage::parse(&buf[..n]).unwrap();
        let mut out = [0u8; 128];
        let len = ice
            .handle_stun(now, &msg, addr(1), &mut out)
            .unwrap()
            .unwrap();
        let resp = StunMessage::parse(&out[..len]).unwrap();
        assert_eq!(resp.error_code().unwrap().code, 420);
        assert_eq!(
            resp.attribute(attr::UNKNOWN_ATTRIBUTES).unwrap().value,
            [0x70, 0x01]
        );
        assert!(resp.verify_integrity(PWD.as_bytes()));
        assert_eq!(ice.stats().unknown_attribute, 1);
        assert!(!ice.is_valid(addr(1)));
    }

    #[test]
    fn controlled_peer_gets_protected_487() {
        let (mut ice, now) = (agent(), t0());
        for tie in [0, u64::MAX] {
            let req = request("srvU:cliU", PWD, IceRole::Controlled(tie), true, 7);
            let r = feed(&mut ice, now, &req, addr(1)).unwrap().unwrap();
            assert_eq!((r.0, r.1, r.2), (StunClass::Error, Some(487), true));
        }
        assert_eq!(ice.stats().role_conflict, 2);
        assert_eq!(ice.state(), IceState::New);
    }

    #[test]
    fn bad_fingerprint_is_dropped_and_responses_ignored() {
        let (mut ice, now) = (agent(), t0());
        let mut req = good(true);
        let last = req.len() - 1;
        req[last] ^= 1;
        assert_eq!(
            feed(&mut ice, now, &req, addr(1)),
            Err(IceError::BadFingerprint)
        );

        let mut buf = [0u8; 128];
        let n = write_binding_success(&mut buf, &[1; 12], addr(1).addr, PWD.as_bytes()).unwrap();
        assert_eq!(feed(&mut ice, now, &buf[..n], addr(1)), Ok(None));
        let s = ice.stats();
        assert_eq!((s.bad_fingerprint, s.ignored), (1, 1));
        assert_eq!(ice.state(), IceState::New);
    }

    #[test]
    fn small_buffer_is_an_error_without_state_change() {
        let (mut ice, now) = (agent(), t0());
        let req = good(true);
        let msg = StunMessage::parse(&req).unwrap();
        let mut out = [0u8; 40];
        assert_eq!(
            ice.handle_stun(now, &msg, addr(1), &mut out),
            Err(IceError::BufferTooSmall)
        );
        assert_eq!(ice.state(), IceState::New);
        assert_eq!(ice.stats().buffer_too_small, 1);
    }

    #[test]
    fn consent_expires_and_renomination_reconnects() {
        let (mut ice, t) = (agent(), t0());
        let s = Duration::from_secs(1);
        feed(&mut ice, t, &good(true), addr(1)).unwrap();
        // Checks from the selected address push the deadline; others don't.
        feed(&mut ice, t + 2 * s, &good(false), addr(1)).unwrap();
        feed(&mut ice, t + 4 * s, &good(false), addr(2)).unwrap();
        assert_eq!(ice.poll_timeout(), Some(t + 5 * s));
        ice.handle_timeout(t + 4 * s);
        assert_eq!(ice.state(), IceState::Connected);
        ice.handle_timeout(t + 5 * s);
        assert_eq!(ice.state(), IceState::Disconnected);
        assert_eq!(ice.selected(), None);
        assert_eq!(ice.poll_timeout(), None);
        // A plain check does not bring it back; a nomination does.
        feed(&mut ice, t + 6 * s, &good(false), addr(1)).unwrap();
        assert_eq!(ice.state(), IceState::Disconnected);
        feed(&mut ice, t + 7 * s, &good(true), addr(1)).unwrap();
        assert_eq!(
            events(&mut ice),
            [
                IceEvent::Connected { selected: addr(1) },
                IceEvent::Disconnected,
                IceEvent::Connected { selected: addr(1) },
            ]
        );
        assert_eq!(ice.poll_timeout(), Some(t + 10 * s));
        assert_eq!(ice.stats().consent_expiries, 1);
    }

    #[test]
    fn nomination_from_new_address_moves_selection() {
        let (mut ice, t) = (agent(), t0());
        feed(&mut ice, t, &good(true), addr(1)).unwrap();
        feed(&mut ice, t, &good(true), addr(1)).unwrap();
        feed(&mut ice, t, &good(true), addr(2)).unwrap();
        assert_eq!(
            events(&mut ice),
            [
                IceEvent::Connected { selected: addr(1) },
                IceEvent::SelectedChanged { selected: addr(2) },
            ]
        );
        assert_eq!(ice.selected(), Some(addr(2)));
        assert_eq!(ice.stats().selected_changes, 1);
    }

    #[test]
    fn restart_keeps_old_credentials_until_new_ones_are_used() {
        let (mut ice, t) = (agent(), t0());
        feed(&mut ice, t, &good(true), addr(1)).unwrap();
        let _ = events(&mut ice);
        ice.restart("newU", "new-password-0123456789", Some("cli2".into()));
        assert_eq!(ice.local_ufrag(), "newU");
        // Old ones still work (media keeps flowing, selection unchanged).
        let r = feed(&mut ice, t, &good(false), addr(1)).unwrap().unwrap();
        assert_eq!(r.0, StunClass::Success);
        assert!(events(&mut ice).is_empty());
        // New ones complete the restart.
        let new = request(
            "newU:cli2",
            "new-password-0123456789",
            IceRole::Controlling(9),
            true,
            8,
        );
        let r = feed(&mut ice, t, &new, addr(1)).unwrap().unwrap();
        assert_eq!(r.0, StunClass::Success);
        assert_eq!(events(&mut ice), [IceEvent::Restarted]);
        // Old ones are now rejected.
        let r = feed(&mut ice, t, &good(false), addr(1)).unwrap().unwrap();
        assert_eq!(r.1, Some(401));
        assert_eq!(ice.stats().restarts, 1);
    }

    #[test]
    fn second_restart_before_completion_keeps_the_working_credentials() {
        let (mut ice, t) = (agent(), t0());
        ice.restart("midU", "mid-password-0123456789", None);
        ice.restart("newU", "new-password-0123456789", None);
        assert_eq!(
            feed(&mut ice, t, &good(false), addr(1)).unwrap().unwrap().0,
            StunClass::Success
        );
        let mid = request(
            "midU:cliU",
            "mid-password-0123456789",
            IceRole::Controlling(9),
            false,
            9,
        );
        assert_eq!(
            feed(&mut ice, t, &mid, addr(1)).unwrap().unwrap().1,
            Some(401)
        );
    }

    #[test]
    fn password_only_restart_tells_the_sets_apart() {
        let (mut ice, t) = (agent(), t0());
        ice.restart(UFRAG, "new-password-0123456789", Some(PEER.into()));
        assert_eq!(
            feed(&mut ice, t, &good(false), addr(1)).unwrap().unwrap().0,
            StunClass::Success
        );
        assert!(events(&mut ice).is_empty());
        let new = request(
            "srvU:cliU",
            "new-password-0123456789",
            IceRole::Controlling(9),
            false,
            9,
        );
        feed(&mut ice, t, &new, addr(1)).unwrap();
        assert_eq!(events(&mut ice), [IceEvent::Restarted]);
        assert_eq!(
            feed(&mut ice, t, &good(false), addr(1)).unwrap().unwrap().1,
            Some(401)
        );
    }

    #[test]
    fn unpolled_events_are_bounded_and_counted() {
        let (mut ice, t) = (agent(), t0());
        for port in 1..=20 {
            feed(&mut ice, t, &good(true), addr(port)).unwrap();
        }
        assert_eq!(events(&mut ice).len(), EVENT_CAPACITY);
        assert_eq!(ice.stats().events_dropped, 20 - EVENT_CAPACITY as u64);
        // The table stays bounded and keeps the selected address.
        assert_eq!(ice.valid_addresses().count(), 8);
        assert!(ice.is_valid(addr(20)));
        assert_eq!(ice.stats().candidates_evicted, 12);
    }

    #[test]
    fn tcp_and_udp_pairs_are_distinct_and_nominations_move_between_them() {
        let (mut ice, t) = (agent(), t0());
        let udp = addr(7000);
        let tcp = Remote::tcp(udp.addr);
        feed(&mut ice, t, &good(false), tcp).unwrap();
        assert!(ice.is_valid(tcp) && !ice.is_valid(udp));
        feed(&mut ice, t, &good(true), udp).unwrap();
        feed(&mut ice, t, &good(true), tcp).unwrap();
        feed(&mut ice, t, &good(true), udp).unwrap();
        assert_eq!(
            events(&mut ice),
            [
                IceEvent::Connected { selected: udp },
                IceEvent::SelectedChanged { selected: tcp },
                IceEvent::SelectedChanged { selected: udp },
            ]
        );
        // A TCP pair the peer does not use closes: nothing changes for media.
        ice.forget(tcp);
        assert!(!ice.is_valid(tcp));
        assert_eq!(ice.selected(), Some(udp));
        assert!(events(&mut ice).is_empty());
    }

    #[test]
    fn forgetting_the_selected_tcp_pair_loses_consent_at_once() {
        let (mut ice, t) = (agent(), t0());
        let tcp = Remote::tcp(addr(7001).addr);
        feed(&mut ice, t, &good(true), tcp).unwrap();
        let _ = events(&mut ice);
        ice.forget(tcp);
        assert_eq!(ice.state(), IceState::Disconnected);
        assert_eq!(ice.selected(), None);
        assert_eq!(ice.poll_timeout(), None);
        assert_eq!(events(&mut ice), [IceEvent::Disconnected]);
        // Forgetting what is not there is a no-op.
        ice.forget(tcp);
        let s = ice.stats();
        assert_eq!((s.forgotten, s.consent_expiries), (1, 1));
        // A nomination over UDP reconnects.
        feed(&mut ice, t, &good(true), addr(7002)).unwrap();
        assert_eq!(
            events(&mut ice),
            [IceEvent::Connected {
                selected: addr(7002)
            }]
        );
    }
}
