//! The steps of the server's handshake (RFC 5246 §7.3, RFC 6347 §4.2.1,
//! RFC 5764 §4.1, RFC 7627): what each client message is checked against,
//! what we answer, and why we refuse.
//!
//! ```text
//! ClientHello            -->
//!                        <--  HelloVerifyRequest          (cookie on)
//! ClientHello + cookie   -->
//!                        <--  ServerHello, Certificate, ServerKeyExchange,
//!                             CertificateRequest, ServerHelloDone
//! Certificate, ClientKeyExchange, CertificateVerify,
//! [ChangeCipherSpec], Finished  -->
//!                        <--  [ChangeCipherSpec], Finished
//! ```

use std::time::Instant;

use aws_lc_rs::{constant_time, hmac};

use super::handshake::{
    Item, Message, CERTIFICATE, CERTIFICATE_REQUEST, CERTIFICATE_VERIFY, CLIENT_HELLO,
    CLIENT_KEY_EXCHANGE, FINISHED, HELLO_VERIFY_REQUEST, SERVER_HELLO, SERVER_HELLO_DONE,
    SERVER_KEY_EXCHANGE,
};
use super::hello::{self, ClientHello, HelloError};
use super::keys::{self, CipherSuite, KeyExchange, RecordKeys, SigScheme};
use super::messages::{self, VERIFY_DATA_LEN};
use super::*;
use crate::dtls::der;

/// The client message the server waits for next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Expect {
    Certificate,
    KeyExchange,
    Verify,
    ChangeCipherSpec,
    Finished,
}

/// Why the server refuses: the alert it sends and the failure it reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Refusal {
    pub(super) alert: u8,
    pub(super) failure: DtlsFailure,
}

impl Refusal {
    const fn new(alert: u8, failure: DtlsFailure) -> Self {
        Self { alert, failure }
    }

    pub(super) const fn internal() -> Self {
        Self::new(ALERT_INTERNAL_ERROR, DtlsFailure::Crypto)
    }

    const fn decode() -> Self {
        Self::new(ALERT_DECODE_ERROR, DtlsFailure::Protocol)
    }

    const fn unexpected() -> Self {
        Self::new(ALERT_UNEXPECTED_MESSAGE, DtlsFailure::Protocol)
    }

    const fn handshake(failure: DtlsFailure) -> Self {
        Self::new(ALERT_HANDSHAKE_FAILURE, failure)
    }
}

/// What one handshake carries between its steps.
pub(super) struct Handshake {
    client_random: [u8; 32],
    server_random: [u8; 32],
    suite: CipherSuite,
    kx: Option<KeyExchange>,
    profile: ProtectionProfile,
    /// Every message from the accepted ClientHello on, in transcript form.
    transcript: Vec<u8>,
    client_cert: Vec<u8>,
    master: Vec<u8>,
    /// message_seq of our next message.
    next_seq: u16,
}

impl Server {
    /// A complete message from the client, in order.
    pub(super) fn on_message(&mut self, now: Instant, msg: Message) -> Result<(), Refusal> {
        match self.state {
            State::AwaitHello if msg.msg_type == CLIENT_HELLO => self.on_client_hello(now, &msg),
            State::AwaitClient(expect) => {
                let step = match (expect, msg.msg_type) {
                    (Expect::Certificate, CERTIFICATE) => Self::on_certificate,
                    (Expect::KeyExchange, CLIENT_KEY_EXCHANGE) => Self::on_key_exchange,
                    (Expect::Verify, CERTIFICATE_VERIFY) => Self::on_certificate_verify,
                    (Expect::Finished, FINISHED) => Self::on_finished,
                    _ => return Err(Refusal::unexpected()),
                };
                step(self, now, &msg)
            }
            // After the handshake: a renegotiation attempt, not supported (ignored).
            State::Connected => Ok(()),
            _ => Err(Refusal::unexpected()),
        }
    }

    fn on_client_hello(&mut self, now: Instant, msg: &Message) -> Result<(), Refusal> {
        let ch = ClientHello::parse(&msg.body).map_err(|e| match e {
            HelloError::Malformed => Refusal::decode(),
            HelloError::Duplicate => Refusal::new(ALERT_ILLEGAL_PARAMETER, DtlsFailure::Protocol),
        })?;
        if !ch.offers_dtls12() {
            return Err(Refusal::new(ALERT_PROTOCOL_VERSION, DtlsFailure::Protocol));
        }
        if self.settings.cookie {
            let want = hmac::sign(
                &hmac::Key::new(hmac::HMAC_SHA256, &self.cookie_key),
                &ch.random,
            );
            if constant_time::verify_slices_are_equal(ch.cookie, want.as_ref()).is_err() {
                // Stateless answer; the client repeats its hello with the cookie.
                let hvr = Message {
                    msg_type: HELLO_VERIFY_REQUEST,
                    message_seq: msg.message_seq,
                    body: hello::hello_verify_request(want.as_ref()),
                };
                self.reasm.reset(msg.message_seq.wrapping_add(1));
                return self.send_flight(now, vec![Item::Handshake { msg: hvr, epoch: 0 }], false);
            }
        }
        let suite = ch
            .suite()
            .ok_or(Refusal::handshake(DtlsFailure::Protocol))?;
        let group = ch
            .group()
            .ok_or(Refusal::handshake(DtlsFailure::Protocol))?;
        if !ch.takes_uncompressed() {
            return Err(Refusal::new(ALERT_ILLEGAL_PARAMETER, DtlsFailure::Protocol));
        }
        if !ch.accepts_signature(self.signer.scheme().id()) {
            return Err(Refusal::handshake(DtlsFailure::Protocol));
        }
        if !ch.extended_master_secret {
            // RFC 7627 §5.2: without it the master secret is not bound to the handshake.
            return Err(Refusal::handshake(DtlsFailure::Security));
        }
        let renegotiation = ch
            .secure_renegotiation()
            .map_err(|_| Refusal::handshake(DtlsFailure::Security))?;
        let profile = self.srtp_profile(&ch)?;
        let kx = KeyExchange::generate(group).ok_or(Refusal::internal())?;
        let server_random: [u8; 32] = keys::random().ok_or(Refusal::internal())?;
        let seq = msg.message_seq;
        let mut transcript = Vec::with_capacity(4096);
        msg.transcript_bytes(&mut transcript);
        let sh = hello::server_hello(
            &server_random,
            suite,
            profile.dtls_id(),
            renegotiation,
            ch.sent_point_formats(),
        );
        let ske = messages::server_key_exchange(&kx, &self.signer, &ch.random, &server_random)
            .ok_or(Refusal::internal())?;
        let bodies = [
            (SERVER_HELLO, sh),
            (CERTIFICATE, messages::certificate(&self.cert_der)),
            (SERVER_KEY_EXCHANGE, ske),
            (CERTIFICATE_REQUEST, messages::certificate_request()),
            (SERVER_HELLO_DONE, Vec::new()),
        ];
        let mut items = Vec::with_capacity(bodies.len());
        for (i, (msg_type, body)) in bodies.into_iter().enumerate() {
            let m = Message {
                msg_type,
                message_seq: seq.wrapping_add(i as u16),
                body,
            };
            m.transcript_bytes(&mut transcript);
            items.push(Item::Handshake { msg: m, epoch: 0 });
        }
        self.hs = Some(Box::new(Handshake {
            client_random: ch.random,
            server_random,
            suite,
            kx: Some(kx),
            profile,
            transcript,
            client_cert: Vec::new(),
            master: Vec::new(),
            next_seq: seq.wrapping_add(5),
        }));
        self.state = State::AwaitClient(Expect::Certificate);
        self.send_flight(now, items, true)
    }

    /// Our most preferred SRTP profile the client offers (RFC 5764 §4.1.1).
    fn srtp_profile(&self, ch: &ClientHello<'_>) -> Result<ProtectionProfile, Refusal> {
        let none = Refusal::handshake(DtlsFailure::NoSrtpProfile);
        let offered: Vec<u16> = ch.srtp().ok_or(none)?.collect();
        self.settings
            .srtp_profiles
            .as_slice()
            .iter()
            .copied()
            .find(|p| offered.contains(&p.dtls_id()))
            .ok_or(none)
    }

    fn on_certificate(&mut self, _now: Instant, msg: &Message) -> Result<(), Refusal> {
        let leaf = messages::client_certificate(&msg.body)
            .map_err(|()| Refusal::decode())?
            // RFC 5246 §7.4.6: a server that requires a certificate answers an empty one so.
            .ok_or(Refusal::handshake(DtlsFailure::NoPeerCertificate))?;
        if der::certificate_public_key(leaf).is_err() {
            return Err(Refusal::new(
                ALERT_BAD_CERTIFICATE,
                DtlsFailure::PeerCertificate,
            ));
        }
        let hs = self.hs.as_deref_mut().ok_or(Refusal::internal())?;
        hs.client_cert = leaf.to_vec();
        msg.transcript_bytes(&mut hs.transcript);
        self.state = State::AwaitClient(Expect::KeyExchange);
        Ok(())
    }

    fn on_key_exchange(&mut self, _now: Instant, msg: &Message) -> Result<(), Refusal> {
        let point = messages::client_key_exchange(&msg.body).ok_or(Refusal::decode())?;
        let hs = self.hs.as_deref_mut().ok_or(Refusal::internal())?;
        let kx = hs.kx.take().ok_or(Refusal::internal())?;
        let pms = kx
            .agree(point)
            .ok_or(Refusal::new(ALERT_ILLEGAL_PARAMETER, DtlsFailure::Crypto))?;
        msg.transcript_bytes(&mut hs.transcript);
        let session_hash = hs.suite.hash(&hs.transcript);
        hs.master =
            keys::master_secret(hs.suite, &pms, session_hash.as_ref()).ok_or(Refusal::internal())?;
        let k = RecordKeys::derive(hs.suite, &hs.master, &hs.client_random, &hs.server_random)
            .ok_or(Refusal::internal())?;
        self.keys = Some(k);
        self.state = State::AwaitClient(Expect::Verify);
        Ok(())
    }

    fn on_certificate_verify(&mut self, _now: Instant, msg: &Message) -> Result<(), Refusal> {
        let (scheme, sig) = messages::certificate_verify(&msg.body).ok_or(Refusal::decode())?;
        // Only what our CertificateRequest offered (RFC 5246 §7.4.8).
        let scheme = SigScheme::from_id(scheme).ok_or(Refusal::new(
            ALERT_ILLEGAL_PARAMETER,
            DtlsFailure::PeerCertificate,
        ))?;
        let hs = self.hs.as_deref_mut().ok_or(Refusal::internal())?;
        let key = der::certificate_public_key(&hs.client_cert)
            .map_err(|_| Refusal::new(ALERT_BAD_CERTIFICATE, DtlsFailure::PeerCertificate))?;
        if !keys::verify(scheme, &key, &hs.transcript, sig) {
            return Err(Refusal::new(
                ALERT_DECRYPT_ERROR,
                DtlsFailure::PeerCertificate,
            ));
        }
        msg.transcript_bytes(&mut hs.transcript);
        let fp = Fingerprint::of_der(&hs.client_cert);
        // Refuse before our Finished when the SDP fingerprint is already known.
        if self.expected.is_some_and(|e| !e.ct_eq(&fp)) {
            return Err(Refusal::new(
                ALERT_BAD_CERTIFICATE,
                DtlsFailure::FingerprintMismatch,
            ));
        }
        self.events.push_back(Event::PeerCert(fp));
        self.state = State::AwaitClient(Expect::ChangeCipherSpec);
        Ok(())
    }

    /// The client's ChangeCipherSpec: it writes epoch 1 from now on. One that
    /// comes before the messages it must follow is dropped (the client
    /// retransmits its whole flight).
    pub(super) fn on_change_cipher_spec(&mut self, body: &[u8]) -> Result<(), Refusal> {
        if body != [1] {
            return Err(Refusal::decode());
        }
        if self.state == State::AwaitClient(Expect::ChangeCipherSpec) {
            self.read_epoch = 1;
            self.state = State::AwaitClient(Expect::Finished);
        }
        Ok(())
    }

    fn on_finished(&mut self, now: Instant, msg: &Message) -> Result<(), Refusal> {
        let hs = self.hs.as_deref_mut().ok_or(Refusal::internal())?;
        let hash = hs.suite.hash(&hs.transcript);
        let want = keys::prf(
            hs.suite,
            &hs.master,
            b"client finished",
            hash.as_ref(),
            VERIFY_DATA_LEN,
        )
        .ok_or(Refusal::internal())?;
        if constant_time::verify_slices_are_equal(&msg.body, &want).is_err() {
            return Err(Refusal::new(ALERT_DECRYPT_ERROR, DtlsFailure::Crypto));
        }
        msg.transcript_bytes(&mut hs.transcript);
        let hash = hs.suite.hash(&hs.transcript);
        let verify = keys::prf(
            hs.suite,
            &hs.master,
            b"server finished",
            hash.as_ref(),
            VERIFY_DATA_LEN,
        )
        .ok_or(Refusal::internal())?;
        let mut seed = Vec::with_capacity(64);
        seed.extend_from_slice(&hs.client_random);
        seed.extend_from_slice(&hs.server_random);
        // RFC 5705 §4 without context; RFC 5764 §4.2's label and length.
        let material = keys::prf(
            hs.suite,
            &hs.master,
            b"EXTRACTOR-dtls_srtp",
            &seed,
            hs.profile.keying_material_len(),
        )
        .ok_or(Refusal::internal())?;
        let profile = hs.profile;
        let finished = Message {
            msg_type: FINISHED,
            message_seq: hs.next_seq,
            body: verify,
        };
        self.send_flight(
            now,
            vec![
                Item::ChangeCipherSpec,
                Item::Handshake {
                    msg: finished,
                    epoch: 1,
                },
            ],
            false,
        )?;
        self.write_epoch1 = true;
        self.hs = None;
        self.state = State::Connected;
        self.events
            .push_back(Event::Connected { profile, material });
        Ok(())
    }
}
