//! [`IceClient`]: a minimal controlling ICE agent with one local and one
//! remote candidate, as the tests and the load generator need to talk to an
//! [`IceLite`](super::IceLite) server (RFC 8445 §7.2 with RFC 8489 §6.2.1
//! retransmissions; RFC 7675 consent freshness on the sending side).
//!
//! Every check nominates (USE-CANDIDATE): against a lite server the only pair
//! is the one to use. The first check is retransmitted with the same
//! transaction id after `rto`, doubling, up to `max_tries` sends; if none is
//! answered the client reports [`IceClientEvent::Failed`]. Once connected, a
//! consent check goes out every `consent_interval`, jittered to 0.8–1.2× as
//! RFC 7675 §5.1 asks, each with a fresh transaction id and no
//! retransmission; if no response arrives for `consent_timeout` the client
//! reports [`IceClientEvent::ConsentLost`] and stops.
//!
//! Not handled (a lite server never needs it): answering checks from the
//! peer, switching role on 487, several candidate pairs.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::net::Remote;

use super::queue::EventQueue;
use super::rng::XorShift;
use super::IceError;
use crate::stun::{
    BindingRequest, IceRole, StunClass, StunMessage, StunMethod, TRANSACTION_ID_LEN,
};
use crate::time::earliest;

/// Configuration of an [`IceClient`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IceClientConfig {
    /// Our ufrag (second half of the USERNAME we send).
    pub local_ufrag: String,
    /// Our password; it would key checks sent to us, which a lite server never sends.
    pub local_pwd: String,
    /// The server's ufrag (first half of USERNAME).
    pub remote_ufrag: String,
    /// The server's password, keying our requests and its responses.
    pub remote_pwd: String,
    /// The server's one candidate (UDP, or the TCP connection to its passive
    /// ICE-TCP candidate).
    pub remote: Remote,
    /// ICE-CONTROLLING tie-breaker.
    pub tie_breaker: u64,
    /// PRIORITY sent in checks.
    pub priority: u32,
    /// Seed of the transaction-id and jitter generator.
    pub seed: u64,
    /// First retransmission timeout; doubles each retry.
    pub rto: Duration,
    /// Sends of the first check before giving up.
    pub max_tries: u32,
    /// Mean interval between consent checks (RFC 7675 §5.1: 5 s).
    pub consent_interval: Duration,
    /// Time without a response after which consent is lost (RFC 7675: 30 s).
    pub consent_timeout: Duration,
}

impl IceClientConfig {
    /// Credentials and server address with the defaults: 50 ms RTO, 8 tries,
    /// 5 s consent interval, 30 s consent timeout, seed 1, and the priority
    /// of a peer-reflexive candidate (type preference 110, RFC 8445 §5.1.2.2).
    pub fn new(local: (&str, &str), remote: (&str, &str), remote_addr: impl Into<Remote>) -> Self {
        Self {
            local_ufrag: local.0.to_owned(),
            local_pwd: local.1.to_owned(),
            remote_ufrag: remote.0.to_owned(),
            remote_pwd: remote.1.to_owned(),
            remote: remote_addr.into(),
            tie_breaker: 0x5EED_0000_0000_0001,
            priority: (110 << 24) | (65535 << 8) | 255,
            seed: 1,
            rto: Duration::from_millis(50),
            max_tries: 8,
            consent_interval: Duration::from_secs(5),
            consent_timeout: Duration::from_secs(30),
        }
    }
}

/// Connectivity of an [`IceClient`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IceClientState {
    /// Sending the first check.
    Checking,
    /// The server answered; consent checks running.
    Connected,
    /// The first check got an error response or no answer at all.
    Failed,
    /// Connected once, then no response for the consent timeout.
    ConsentLost,
}

/// What an [`IceClient`] reports through [`IceClient::poll_event`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IceClientEvent {
    /// The server answered the nominating check with an authentic success.
    Connected,
    /// The first check was answered with an error or never answered.
    Failed,
    /// Consent expired (RFC 7675 §5.1): stop sending media.
    ConsentLost,
}

/// Counters of an [`IceClient`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct IceClientStats {
    /// Binding requests written, retransmissions included.
    pub requests_sent: u64,
    /// Of those, retransmissions.
    pub retransmits: u64,
    /// Authentic success responses.
    pub successes: u64,
    /// Error responses to our transaction.
    pub error_responses: u64,
    /// Responses to no outstanding transaction (late or duplicated).
    pub stale: u64,
    /// Requests and indications, which the client does not answer.
    pub ignored: u64,
    /// Dropped: MESSAGE-INTEGRITY did not verify.
    pub bad_integrity: u64,
    /// Dropped: FINGERPRINT missing or wrong.
    pub bad_fingerprint: u64,
    /// Dropped: a response from another address than the server's.
    pub bad_source: u64,
    /// Requests not written because the output buffer was too small.
    pub buffer_too_small: u64,
}

/// A controlling ICE agent for one pair, for tests and load generation.
#[derive(Debug)]
pub struct IceClient {
    local_ufrag: String,
    local_pwd: String,
    /// `remote-ufrag:local-ufrag`, built once so checks don't allocate.
    username: String,
    remote_pwd: String,
    remote: Remote,
    tie_breaker: u64,
    priority: u32,
    rto: Duration,
    max_tries: u32,
    consent_interval: Duration,
    consent_timeout: Duration,
    rng: XorShift,
    state: IceClientState,
    transaction: Option<Transaction>,
    /// The outstanding transaction's request is due to be (re)sent.
    send_due: bool,
    next_check: Option<Instant>,
    consent_deadline: Option<Instant>,
    mapped: Option<SocketAddr>,
    last_error_code: Option<u16>,
    events: EventQueue<IceClientEvent, 4>,
    stats: IceClientStats,
}

/// The one outstanding Binding transaction.
#[derive(Debug, Clone, Copy)]
struct Transaction {
    id: [u8; TRANSACTION_ID_LEN],
    sends: u32,
    /// When to resend (or give up); `None` until sent, and always for
    /// consent checks, which are not retransmitted.
    retransmit_at: Option<Instant>,
    retransmits: bool,
}

impl IceClient {
    /// A client whose first check is due at the first `poll_transmit`.
    pub fn new(config: IceClientConfig) -> Self {
        let mut client = Self {
            username: String::new(),
            local_ufrag: String::new(),
            local_pwd: String::new(),
            remote_pwd: String::new(),
            remote: config.remote,
            tie_breaker: config.tie_breaker,
            priority: config.priority,
            rto: config.rto,
            max_tries: config.max_tries.max(1),
            consent_interval: config.consent_interval,
            consent_timeout: config.consent_timeout,
            rng: XorShift::new(config.seed),
            state: IceClientState::Checking,
            transaction: None,
            send_due: false,
            next_check: None,
            consent_deadline: None,
            mapped: None,
            last_error_code: None,
            events: EventQueue::new(),
            stats: IceClientStats::default(),
        };
        client.restart(
            (&config.local_ufrag, &config.local_pwd),
            (&config.remote_ufrag, &config.remote_pwd),
        );
        client
    }

    /// Writes the due Binding request into `out`; returns its length and
    /// destination.
    pub fn poll_transmit(&mut self, now: Instant, out: &mut [u8]) -> Option<(usize, Remote)> {
        if !self.send_due {
            return None;
        }
        let txn = self.transaction.as_mut()?;
        let request = BindingRequest {
            transaction_id: txn.id,
            username: self.username.as_bytes(),
            priority: self.priority,
            role: IceRole::Controlling(self.tie_breaker),
            use_candidate: true,
            key: self.remote_pwd.as_bytes(),
        };
        let Ok(len) = request.write(out) else {
            self.stats.buffer_too_small += 1;
            return None;
        };
        self.send_due = false;
        if txn.sends > 0 {
            self.stats.retransmits += 1;
        }
        txn.sends += 1;
        if txn.retransmits {
            let backoff = 1u32 << (txn.sends - 1).min(16);
            txn.retransmit_at = Some(now + self.rto.saturating_mul(backoff));
        }
        self.stats.requests_sent += 1;
        Some((len, self.remote))
    }

    /// Handles a parsed STUN message from `src`. Only responses to the
    /// outstanding transaction matter; anything else is counted and ignored.
    pub fn handle_stun(
        &mut self,
        now: Instant,
        msg: &StunMessage<'_>,
        src: Remote,
    ) -> Result<(), IceError> {
        let is_response = matches!(msg.class(), StunClass::Success | StunClass::Error);
        if !is_response || msg.method() != StunMethod::Binding {
            self.stats.ignored += 1;
            return Ok(());
        }
        if self
            .transaction
            .is_none_or(|t| &t.id != msg.transaction_id())
        {
            self.stats.stale += 1;
            return Ok(());
        }
        if src != self.remote {
            self.stats.bad_source += 1;
            return Err(IceError::UnexpectedSource);
        }
        if !msg.verify_fingerprint() {
            self.stats.bad_fingerprint += 1;
            return Err(IceError::BadFingerprint);
        }
        if msg.class() == StunClass::Error {
            // 400/401 carry no integrity, so they cannot be authenticated;
            // a test client accepts them (an off-path forger would need the id).
            self.stats.error_responses += 1;
            self.last_error_code = msg.error_code().map(|e| e.code);
            self.end_transaction();
            if self.state == IceClientState::Checking {
                self.state = IceClientState::Failed;
                self.push_event(IceClientEvent::Failed);
            }
            return Ok(());
        }
        if !msg.verify_integrity(self.remote_pwd.as_bytes()) {
            // Keep the transaction: the authentic response may still come.
            self.stats.bad_integrity += 1;
            return Err(IceError::BadIntegrity);
        }
        self.stats.successes += 1;
        self.end_transaction();
        self.mapped = msg.xor_mapped_address();
        self.consent_deadline = Some(now + self.consent_timeout);
        if self.state == IceClientState::Checking {
            self.state = IceClientState::Connected;
            self.next_check = Some(now + self.jittered_interval());
            self.push_event(IceClientEvent::Connected);
        }
        Ok(())
    }

    /// The earliest of: retransmission, next consent check, consent expiry.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let retransmit = self.transaction.and_then(|t| t.retransmit_at);
        let consent = earliest(self.next_check, self.consent_deadline);
        earliest(retransmit, consent)
    }

    /// Runs whatever timers have expired at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        if let Some(txn) = self.transaction.as_mut() {
            if txn.retransmit_at.is_some_and(|t| now >= t) {
                txn.retransmit_at = None;
                if txn.sends >= self.max_tries {
                    self.end_transaction();
                    if self.state == IceClientState::Checking {
                        self.state = IceClientState::Failed;
                        self.push_event(IceClientEvent::Failed);
                    }
                } else {
                    self.send_due = true;
                }
            }
        }
        if self.state != IceClientState::Connected {
            return;
        }
        if self.consent_deadline.is_some_and(|d| now >= d) {
            self.state = IceClientState::ConsentLost;
            self.end_transaction();
            self.next_check = None;
            self.consent_deadline = None;
            self.push_event(IceClientEvent::ConsentLost);
            return;
        }
        if self.next_check.is_some_and(|t| now >= t) {
            self.next_check = Some(now + self.jittered_interval());
            self.begin_transaction(false);
        }
    }

    /// The next event, oldest first.
    pub fn poll_event(&mut self) -> Option<IceClientEvent> {
        self.events.pop()
    }

    /// ICE restart with new credentials (`(ufrag, pwd)` pairs): back to
    /// Checking, with a fresh nominating check due now.
    pub fn restart(&mut self, local: (&str, &str), remote: (&str, &str)) {
        self.local_ufrag.clear();
        self.local_ufrag.push_str(local.0);
        self.local_pwd.clear();
        self.local_pwd.push_str(local.1);
        self.remote_pwd.clear();
        self.remote_pwd.push_str(remote.1);
        self.username.clear();
        self.username.push_str(remote.0);
        self.username.push(':');
        self.username.push_str(local.0);
        self.state = IceClientState::Checking;
        self.next_check = None;
        self.consent_deadline = None;
        self.mapped = None;
        self.last_error_code = None;
        self.begin_transaction(true);
    }

    /// Current connectivity.
    pub fn state(&self) -> IceClientState {
        self.state
    }

    /// Our address as the server saw it (XOR-MAPPED-ADDRESS of the last success).
    pub fn mapped(&self) -> Option<SocketAddr> {
        self.mapped
    }

    /// ERROR-CODE of the last error response, if any since the last restart.
    pub fn last_error_code(&self) -> Option<u16> {
        self.last_error_code
    }

    /// Our ufrag and password, for the SDP offer.
    pub fn local_credentials(&self) -> (&str, &str) {
        (&self.local_ufrag, &self.local_pwd)
    }

    /// The server address checks go to.
    pub fn remote(&self) -> Remote {
        self.remote
    }

    /// Points further checks at another server address (the server moved,
    /// or a test simulates our own address change by rewriting `src`).
    pub fn set_remote(&mut self, remote: impl Into<Remote>) {
        self.remote = remote.into();
    }

    /// Counters.
    pub fn stats(&self) -> IceClientStats {
        self.stats
    }

    fn begin_transaction(&mut self, retransmits: bool) {
        self.transaction = Some(Transaction {
            id: self.rng.transaction_id(),
            sends: 0,
            retransmit_at: None,
            retransmits,
        });
        self.send_due = true;
    }

    fn end_transaction(&mut self) {
        self.transaction = None;
        self.send_due = false;
    }

    /// `consent_interval` scaled by a uniform factor in 0.8..=1.2.
    fn jittered_interval(&mut self) -> Duration {
        let base = self.consent_interval.as_nanos();
        let spread = base * 2 / 5;
        let offset = u128::from(self.rng.next_u64()) % (spread + 1);
        let nanos = base * 4 / 5 + offset;
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }

    fn push_event(&mut self, event: IceClientEvent) {
        // Four slots and at most two events between restarts: never full in
        // practice; if it were, the oldest would go.
        let _ = self.events.push(event);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stun::{write_binding_success, ErrorResponse};

    const SERVER_PWD: &str = "server-password-0123456789";

    fn server() -> Remote {
        Remote::udp(SocketAddr::from(([127, 0, 0, 1], 3478)))
    }

    #[allow(clippy::disallowed_methods)] // a test needs some base instant
    fn t0() -> Instant {
        Instant::now()
    }

    fn client() -> IceClient {
        IceClient::new(IceClientConfig::new(
            ("cliU", "client-password-0123456789"),
            ("srvU", SERVER_PWD),
            server(),
        ))
    }

    /// Sends the due request and returns its transaction id.
    fn send(c: &mut IceClient, now: Instant) -> [u8; 12] {
        let mut buf = [0u8; 256];
        let (n, to) = c.poll_transmit(now, &mut buf).expect("a request is due");
        assert_eq!(to, server());
        let msg = StunMessage::parse(&buf[..n]).unwrap();
        assert_eq!(msg.username(), Some(&b"srvU:cliU"[..]));
        assert!(msg.use_candidate() && msg.ice_controlling().is_some());
        assert!(msg.verify_integrity(SERVER_PWD.as_bytes()) && msg.verify_fingerprint());
        *msg.transaction_id()
    }

    fn answer(c: &mut IceClient, now: Instant, tid: [u8; 12], key: &str) -> Result<(), IceError> {
        let mut buf = [0u8; 128];
        let mapped = SocketAddr::from(([127, 0, 0, 1], 9));
        let n = write_binding_success(&mut buf, &tid, mapped, key.as_bytes()).unwrap();
        c.handle_stun(now, &StunMessage::parse(&buf[..n]).unwrap(), server())
    }

    #[test]
    fn retransmits_with_backoff_then_fails() {
        let (mut c, t) = (client(), t0());
        let tid = send(&mut c, t);
        assert!(c.poll_transmit(t, &mut [0u8; 256]).is_none());
        let mut expected = t;
        for attempt in 1..8u32 {
            expected += Duration::from_millis(50) * (1 << (attempt - 1));
            assert_eq!(c.poll_timeout(), Some(expected));
            c.handle_timeout(expected);
            assert_eq!(send(&mut c, expected), tid, "same transaction id");
        }
        expected += Duration::from_millis(50) * 128;
        assert_eq!(c.poll_timeout(), Some(expected));
        c.handle_timeout(expected);
        assert_eq!(c.poll_event(), Some(IceClientEvent::Failed));
        assert_eq!(c.state(), IceClientState::Failed);
        assert!(c.poll_transmit(expected, &mut [0u8; 256]).is_none());
        assert_eq!((c.stats().requests_sent, c.stats().retransmits), (8, 7));
    }

    #[test]
    fn only_authentic_matching_responses_count() {
        let (mut c, t) = (client(), t0());
        let tid = send(&mut c, t);
        assert_eq!(answer(&mut c, t, [0; 12], SERVER_PWD), Ok(()));
        assert_eq!(c.stats().stale, 1);
        assert_eq!(
            answer(&mut c, t, tid, "not-the-password"),
            Err(IceError::BadIntegrity)
        );
        let mut buf = [0u8; 128];
        let n =
            write_binding_success(&mut buf, &tid, server().addr, SERVER_PWD.as_bytes()).unwrap();
        let other = Remote::udp(SocketAddr::from(([127, 0, 0, 1], 1)));
        let msg = StunMessage::parse(&buf[..n]).unwrap();
        assert_eq!(
            c.handle_stun(t, &msg, other),
            Err(IceError::UnexpectedSource)
        );
        assert_eq!(c.state(), IceClientState::Checking);
        assert_eq!(answer(&mut c, t, tid, SERVER_PWD), Ok(()));
        assert_eq!(c.poll_event(), Some(IceClientEvent::Connected));
        assert_eq!(c.mapped(), Some(SocketAddr::from(([127, 0, 0, 1], 9))));
    }

    #[test]
    fn consent_checks_are_jittered_and_loss_is_reported() {
        let (mut c, t) = (client(), t0());
        let tid = send(&mut c, t);
        answer(&mut c, t, tid, SERVER_PWD).unwrap();
        let mut now = t;
        let mut last_success = t;
        let mut checks = 0;
        // Answer checks for a while, then stop answering.
        for _ in 0..100 {
            let Some(next) = c.poll_timeout() else { break };
            assert!(next > now);
            now = next;
            c.handle_timeout(now);
            let answering = now - t < Duration::from_secs(60);
            if c.poll_transmit(now, &mut [0u8; 256]).is_some() {
                checks += 1;
                let gap = now - last_success;
                let in_range = gap >= Duration::from_secs(4) && gap <= Duration::from_secs(6);
                assert!(!answering || in_range, "{gap:?}");
            }
            if answering {
                if let Some(txn) = c.transaction {
                    answer(&mut c, now, txn.id, SERVER_PWD).unwrap();
                    last_success = now;
                }
            }
        }
        assert_eq!(c.state(), IceClientState::ConsentLost);
        assert!(checks > 15, "{checks}");
        assert_eq!(now - last_success, Duration::from_secs(30));
        assert_eq!(c.poll_event(), Some(IceClientEvent::Connected));
        assert_eq!(c.poll_event(), Some(IceClientEvent::ConsentLost));
        assert_eq!(c.poll_timeout(), None);
    }

    #[test]
    fn error_response_fails_and_restart_recovers() {
        let (mut c, t) = (client(), t0());
        let tid = send(&mut c, t);
        let mut buf = [0u8; 128];
        let n = ErrorResponse {
            transaction_id: tid,
            code: 401,
            reason: b"Unauthenticated",
            unknown_attributes: &[],
            integrity_key: None,
        }
        .write(&mut buf)
        .unwrap();
        c.handle_stun(t, &StunMessage::parse(&buf[..n]).unwrap(), server())
            .unwrap();
        assert_eq!(c.poll_event(), Some(IceClientEvent::Failed));
        assert_eq!(c.last_error_code(), Some(401));
        c.restart(("cli2", "pw2-0123456789012345678"), ("srv2", SERVER_PWD));
        assert_eq!(c.local_credentials(), ("cli2", "pw2-0123456789012345678"));
        let mut out = [0u8; 256];
        let (n, _) = c.poll_transmit(t, &mut out).unwrap();
        let msg = StunMessage::parse(&out[..n]).unwrap();
        assert_eq!(msg.username(), Some(&b"srv2:cli2"[..]));
        assert_eq!(c.state(), IceClientState::Checking);
    }

    #[test]
    fn small_buffer_keeps_the_request_due() {
        let (mut c, t) = (client(), t0());
        assert!(c.poll_transmit(t, &mut [0u8; 30]).is_none());
        assert_eq!(c.stats().buffer_too_small, 1);
        send(&mut c, t);
    }
}
