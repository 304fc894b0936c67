//! DTLS-SRTP end to end, in memory: a client and an auto-version server
//! handshake with time advanced by hand, then key SRTP both ways.

use std::time::{Duration, Instant, SystemTime};

use proptest::prelude::*;
use rtp_core::dtls::{
    ClientVersion, DtlsCert, DtlsEndpoint, DtlsEvent, DtlsFailure, DtlsRole, DtlsSettings,
    DtlsState, DtlsVersion, Fingerprint,
};
use rtp_core::srtp::{ProtectionProfile, SrtpConfig, SrtpContext};

/// Which way a datagram travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dir {
    ToServer,
    ToClient,
}

struct Pair {
    client: DtlsEndpoint,
    server: DtlsEndpoint,
    client_events: Vec<DtlsEvent>,
    server_events: Vec<DtlsEvent>,
    now: Instant,
    /// Datagrams delivered so far, per direction (for loss filters).
    sent: [usize; 2],
}

impl Pair {
    /// Client pinned to `version`, server auto; both expect the right fingerprints.
    fn new(version: ClientVersion) -> Self {
        let (c, s) = (cert(), cert());
        let (cfp, sfp) = (c.fingerprint(), s.fingerprint());
        Self::with(version, &c, &s, Some(sfp), Some(cfp))
    }

    fn with(
        version: ClientVersion,
        client_cert: &DtlsCert,
        server_cert: &DtlsCert,
        client_expects: Option<Fingerprint>,
        server_expects: Option<Fingerprint>,
    ) -> Self {
        let now = base();
        let settings = DtlsSettings {
            client_version: version,
            rng_seed: Some(7),
            ..DtlsSettings::default()
        };
        let client = DtlsEndpoint::with_settings(
            DtlsRole::Client,
            client_cert,
            client_expects,
            &settings,
            now,
        )
        .expect("client");
        let server = DtlsEndpoint::with_settings(
            DtlsRole::Server,
            server_cert,
            server_expects,
            &DtlsSettings {
                rng_seed: Some(11),
                ..DtlsSettings::default()
            },
            now,
        )
        .expect("server");
        Self {
            client,
            server,
            client_events: Vec::new(),
            server_events: Vec::new(),
            now,
            sent: [0, 0],
        }
    }

    /// Move datagrams both ways until neither side has anything to send.
    /// `keep(dir, index, datagram)` decides delivery. Returns datagrams moved.
    fn exchange(&mut self, keep: &mut dyn FnMut(Dir, usize, &[u8]) -> bool) -> usize {
        let mut moved = 0;
        let mut buf = [0u8; 2048];
        for _ in 0..64 {
            let mut round = 0;
            while let Some(n) = self.client.poll_transmit(self.now, &mut buf) {
                assert!((20..=63).contains(&buf[0]), "RFC 7983 DTLS range");
                assert!(n <= 1150, "datagram {n} over the MTU");
                let i = self.sent[0];
                self.sent[0] += 1;
                if keep(Dir::ToServer, i, &buf[..n]) {
                    let _ = self.server.handle_datagram(self.now, &buf[..n]);
                }
                round += 1;
            }
            while let Some(n) = self.server.poll_transmit(self.now, &mut buf) {
                assert!((20..=63).contains(&buf[0]), "RFC 7983 DTLS range");
                assert!(n <= 1150, "datagram {n} over the MTU");
                let i = self.sent[1];
                self.sent[1] += 1;
                if keep(Dir::ToClient, i, &buf[..n]) {
                    let _ = self.client.handle_datagram(self.now, &buf[..n]);
                }
                round += 1;
            }
            self.collect_events();
            moved += round;
            if round == 0 {
                break;
            }
        }
        moved
    }

    fn collect_events(&mut self) {
        while let Some(e) = self.client.poll_event() {
            self.client_events.push(e);
        }
        while let Some(e) = self.server.poll_event() {
            self.server_events.push(e);
        }
    }

    /// Jump to the earliest timer and fire both sides' timers.
    fn advance_to_timeout(&mut self) -> bool {
        let next = [self.client.poll_timeout(), self.server.poll_timeout()]
            .into_iter()
            .flatten()
            .min();
        let Some(t) = next else { return false };
        self.now = self.now.max(t);
        self.client.handle_timeout(self.now);
        self.server.handle_timeout(self.now);
        true
    }

    /// Run until both sides are settled (connected, failed or closed) or
    /// `limit` of simulated time passed.
    fn run(&mut self, keep: &mut dyn FnMut(Dir, usize, &[u8]) -> bool, limit: Duration) {
        let end = self.now + limit;
        for _ in 0..200 {
            self.exchange(keep);
            let settled = |s: DtlsState| s != DtlsState::Handshaking;
            if settled(self.client.state()) && settled(self.server.state()) {
                return;
            }
            if self.now >= end || !self.advance_to_timeout() {
                return;
            }
        }
    }

    fn handshake(&mut self) {
        self.run(&mut |_, _, _| true, Duration::from_secs(5));
    }
}

#[allow(clippy::disallowed_methods)]
fn base() -> Instant {
    Instant::now()
}

fn cert() -> DtlsCert {
    DtlsCert::generate(SystemTime::UNIX_EPOCH + Duration::from_secs(1_750_000_000))
        .expect("generate")
}

fn connected(events: &[DtlsEvent]) -> Option<(ProtectionProfile, DtlsVersion)> {
    events.iter().find_map(|e| match *e {
        DtlsEvent::Connected { profile, version } => Some((profile, version)),
        _ => None,
    })
}

fn rtp(seq: u16) -> Vec<u8> {
    let mut p = vec![0x80, 111, 0, 0, 0, 0, 0x10, 0, 0x11, 0x22, 0x33, 0x44];
    p[2..4].copy_from_slice(&seq.to_be_bytes());
    p.extend((0..160).map(|i| (i as u8) ^ (seq as u8)));
    p
}

fn rtcp_rr() -> Vec<u8> {
    // RR, no report blocks, sender SSRC 0x11223344, then one SDES-less pad.
    vec![0x80, 201, 0, 1, 0x11, 0x22, 0x33, 0x44]
}

/// Protect with `tx`, unprotect with `rx`, expect the plaintext back.
fn round_trip(tx: &mut SrtpContext, rx: &mut SrtpContext, seq: u16) {
    let plain = rtp(seq);
    let mut buf = [0u8; 1500];
    buf[..plain.len()].copy_from_slice(&plain);
    let n = tx.protect_rtp(&mut buf, plain.len()).expect("protect rtp");
    assert_ne!(&buf[12..plain.len()], &plain[12..], "payload encrypted");
    let m = rx.unprotect_rtp(&mut buf[..n]).expect("unprotect rtp");
    assert_eq!(&buf[..m], &plain[..]);

    let plain = rtcp_rr();
    buf[..plain.len()].copy_from_slice(&plain);
    let n = tx
        .protect_rtcp(&mut buf, plain.len())
        .expect("protect rtcp");
    let m = rx.unprotect_rtcp(&mut buf[..n]).expect("unprotect rtcp");
    assert_eq!(&buf[..m], &plain[..]);
}

fn assert_srtp_works(pair: &Pair) {
    let cfg = SrtpConfig::default();
    let (mut c_out, mut c_in) = pair.client.srtp_contexts(cfg).expect("client keys");
    let (mut s_out, mut s_in) = pair.server.srtp_contexts(cfg).expect("server keys");
    for seq in [1u16, 2, 3] {
        round_trip(&mut c_out, &mut s_in, seq);
        round_trip(&mut s_out, &mut c_in, seq);
    }
}

/// dimpl's client offers AEAD_AES_256_GCM, AEAD_AES_128_GCM,
/// AES128_CM_HMAC_SHA1_80 in that order and its server takes the first it
/// supports, so two dimpl peers agree on AES-256-GCM. Not configurable in
/// dimpl 0.9; browsers offer the same list, so this is what they will get.
const EXPECTED_PROFILE: ProtectionProfile = ProtectionProfile::AeadAes256Gcm;

fn check_handshake(version: ClientVersion, expect: DtlsVersion) {
    let mut p = Pair::new(version);
    p.handshake();
    assert_eq!(
        p.client.state(),
        DtlsState::Connected,
        "{:?}",
        p.client_events
    );
    assert_eq!(
        p.server.state(),
        DtlsState::Connected,
        "{:?}",
        p.server_events
    );
    let c = connected(&p.client_events).expect("client Connected event");
    let s = connected(&p.server_events).expect("server Connected event");
    assert_eq!(c, s, "both sides agree");
    assert_eq!(c, (EXPECTED_PROFILE, expect));
    assert_eq!(p.client.version(), Some(expect));
    assert_eq!(p.server.version(), Some(expect));
    assert_srtp_works(&p);
}

#[test]
fn dtls12_client_connects_to_auto_server() {
    check_handshake(ClientVersion::Dtls12, DtlsVersion::Dtls12);
}

#[test]
fn dtls13_client_connects_to_auto_server() {
    check_handshake(ClientVersion::Dtls13, DtlsVersion::Dtls13);
}

#[test]
fn auto_client_gets_dtls13_from_auto_server() {
    check_handshake(ClientVersion::Auto, DtlsVersion::Dtls13);
}

#[test]
fn dropped_first_flight_is_retransmitted() {
    for version in [ClientVersion::Dtls12, ClientVersion::Dtls13] {
        let mut p = Pair::new(version);
        let start = p.now;
        // Lose the client's first ClientHello and the server's first answer.
        p.run(
            &mut |dir, i, _| !(i == 0 && (dir == Dir::ToServer || dir == Dir::ToClient)),
            Duration::from_secs(10),
        );
        assert_eq!(p.client.state(), DtlsState::Connected, "{version:?}");
        assert_eq!(p.server.state(), DtlsState::Connected, "{version:?}");
        assert!(p.now > start, "a timer had to fire");
        assert!(
            p.now - start < Duration::from_secs(5),
            "{:?}",
            p.now - start
        );
        assert_srtp_works(&p);
    }
}

#[test]
fn wrong_fingerprint_fails_the_checking_client() {
    for version in [ClientVersion::Dtls12, ClientVersion::Dtls13] {
        let (c, s, other) = (cert(), cert(), cert());
        let mut p = Pair::with(
            version,
            &c,
            &s,
            Some(other.fingerprint()),
            Some(c.fingerprint()),
        );
        p.run(&mut |_, _, _| true, Duration::from_secs(2));
        assert_eq!(p.client.state(), DtlsState::Failed, "{version:?}");
        assert!(p
            .client_events
            .contains(&DtlsEvent::Failed(DtlsFailure::FingerprintMismatch)));
        assert!(connected(&p.client_events).is_none());
        assert!(p.client.srtp_contexts(SrtpConfig::default()).is_none());
        // The server never gets the client's final flight (1.2) or may finish
        // (1.3, where the client's certificate comes last); either way the
        // client refuses, so no media can flow.
        assert_eq!(p.client.poll_timeout(), None);
    }
}

#[test]
fn wrong_fingerprint_fails_the_checking_server() {
    for version in [ClientVersion::Dtls12, ClientVersion::Dtls13] {
        let (c, s, other) = (cert(), cert(), cert());
        let mut p = Pair::with(
            version,
            &c,
            &s,
            Some(s.fingerprint()),
            Some(other.fingerprint()),
        );
        p.run(&mut |_, _, _| true, Duration::from_secs(2));
        assert_eq!(p.server.state(), DtlsState::Failed, "{version:?}");
        assert!(p
            .server_events
            .contains(&DtlsEvent::Failed(DtlsFailure::FingerprintMismatch)));
        assert!(connected(&p.server_events).is_none());
        assert!(p.server.srtp_contexts(SrtpConfig::default()).is_none());
    }
}

/// Issue 20: a handshake the server refuses ends with a fatal alert the peer reads, not silence
/// (OpenSSL clients retransmitted for ever and stayed `connecting`). DTLS 1.2: the server's own
/// check fails in epoch 0, so its alert is plaintext `bad_certificate` and the client stops.
#[test]
fn refused_dtls12_handshake_ends_with_a_fatal_alert() {
    let (c, s, other) = (cert(), cert(), cert());
    let mut p = Pair::with(
        ClientVersion::Dtls12,
        &c,
        &s,
        Some(s.fingerprint()),
        Some(other.fingerprint()),
    );
    let mut last_to_client = Vec::new();
    p.run(
        &mut |dir, _, d| {
            if dir == Dir::ToClient {
                last_to_client = d.to_vec();
            }
            true
        },
        Duration::from_secs(2),
    );
    assert_eq!(p.server.state(), DtlsState::Failed);
    // content type alert, DTLS 1.2, epoch 0, length 2, fatal, bad_certificate.
    assert_eq!(
        &last_to_client[..5],
        &[21, 0xfe, 0xfd, 0, 0],
        "{last_to_client:02x?}"
    );
    assert_eq!(&last_to_client[11..], &[0, 2, 2, 42]);
    // The client read it and gave up at once instead of retransmitting.
    assert_eq!(p.client.state(), DtlsState::Failed, "{:?}", p.client_events);
    // Exactly one alert: a failed endpoint has nothing more to send.
    let mut buf = [0u8; 2048];
    assert_eq!(p.server.poll_transmit(p.now, &mut buf), None);
}

#[test]
fn connected_waits_for_a_late_remote_fingerprint() {
    let (c, s) = (cert(), cert());
    let mut p = Pair::with(ClientVersion::Auto, &c, &s, Some(s.fingerprint()), None);
    p.run(&mut |_, _, _| true, Duration::from_secs(2));
    assert_eq!(p.client.state(), DtlsState::Connected);
    assert_eq!(p.server.state(), DtlsState::Handshaking);
    assert!(p.server.srtp_contexts(SrtpConfig::default()).is_none());
    p.server.set_remote_fingerprint(c.fingerprint());
    p.collect_events();
    assert_eq!(p.server.state(), DtlsState::Connected);
    assert!(connected(&p.server_events).is_some());
    assert_srtp_works(&p);
}

#[test]
fn late_wrong_fingerprint_fails() {
    let (c, s) = (cert(), cert());
    let mut p = Pair::with(ClientVersion::Dtls12, &c, &s, Some(s.fingerprint()), None);
    p.run(&mut |_, _, _| true, Duration::from_secs(2));
    p.server.set_remote_fingerprint(s.fingerprint());
    p.collect_events();
    assert_eq!(p.server.state(), DtlsState::Failed);
    assert!(p.server.srtp_contexts(SrtpConfig::default()).is_none());
}

#[test]
fn close_notify_reaches_the_peer() {
    let mut p = Pair::new(ClientVersion::Auto);
    p.handshake();
    p.client.close();
    assert_eq!(p.client.state(), DtlsState::Closed);
    p.exchange(&mut |_, _, _| true);
    assert_eq!(p.server.state(), DtlsState::Closed);
    assert!(p.server_events.contains(&DtlsEvent::Closed));
}

#[test]
fn fingerprint_sdp_round_trip() {
    let c = cert();
    let sdp = c.fingerprint().to_sdp();
    assert!(sdp.starts_with("sha-256 "));
    assert_eq!(Fingerprint::parse_sdp(&sdp), Ok(c.fingerprint()));
    assert!(c.fingerprint().matches_der(c.cert_der()));
}

#[test]
fn handshake_allocations() {
    let (c, s) = (cert(), cert());
    let (cfp, sfp) = (c.fingerprint(), s.fingerprint());
    for version in [ClientVersion::Dtls12, ClientVersion::Dtls13] {
        let info = allocation_counter::measure(|| {
            let mut p = Pair::with(version, &c, &s, Some(sfp), Some(cfp));
            p.handshake();
            assert_eq!(p.server.state(), DtlsState::Connected);
        });
        println!(
            "{version:?}: one handshake, both endpoints incl. construction: {} allocations, \
             {} bytes total, peak {} bytes live",
            info.count_total, info.bytes_total, info.bytes_max
        );
    }
}

/// A datagram that passes RFC 7983 demux to DTLS (first byte 20..=63), or
/// anything at all.
fn garbage() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        (20u8..=63, proptest::collection::vec(any::<u8>(), 0..300)).prop_map(|(b, mut v)| {
            v.insert(0, b);
            v
        }),
        // A plausible record header (handshake or application data, DTLS
        // 1.2 version, epoch 0/1) with a random body.
        (
            prop_oneof![Just(22u8), Just(23u8), Just(21u8), 0x20u8..=0x3f],
            0u8..2,
            proptest::collection::vec(any::<u8>(), 0..200)
        )
            .prop_map(|(t, epoch, body)| {
                let mut v = vec![t, 0xfe, 0xfd, 0, epoch, 0, 0, 0, 0, 0, 9];
                v.extend_from_slice(&(body.len() as u16).to_be_bytes());
                v.extend(body);
                v
            }),
        proptest::collection::vec(any::<u8>(), 0..100),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn garbage_before_handshake_does_not_panic(
        junk in proptest::collection::vec(garbage(), 1..6),
        v13 in any::<bool>(),
    ) {
        let version = if v13 { ClientVersion::Dtls13 } else { ClientVersion::Dtls12 };
        let mut p = Pair::new(version);
        for j in &junk {
            let _ = p.server.handle_datagram(p.now, j);
            let _ = p.client.handle_datagram(p.now, j);
        }
        p.handshake();
        // No panic is the property; a garbage datagram is allowed to be
        // fatal before the handshake, but then the event says so.
        for (ep, ev) in [(&p.client, &p.client_events), (&p.server, &p.server_events)] {
            match ep.state() {
                DtlsState::Connected => prop_assert!(connected(ev).is_some()),
                DtlsState::Failed => {
                    prop_assert!(ev.iter().any(|e| matches!(e, DtlsEvent::Failed(_))))
                }
                _ => {}
            }
        }
    }

    /// Only a plaintext Alert (21) or Handshake (22) record can end a
    /// handshake early (an epoch-0 alert is unauthenticated by design; dimpl
    /// treats a bogus epoch-0 handshake message as fatal). Anything else in
    /// the DTLS demux range is dropped and the handshake completes.
    #[test]
    fn non_handshake_garbage_before_handshake_is_ignored(
        junk in proptest::collection::vec(
            (20u8..=63, proptest::collection::vec(any::<u8>(), 0..300))
                .prop_filter("not alert/handshake", |(b, _)| *b != 21 && *b != 22)
                .prop_map(|(b, mut v)| { v.insert(0, b); v }),
            1..6,
        ),
        v13 in any::<bool>(),
    ) {
        let version = if v13 { ClientVersion::Dtls13 } else { ClientVersion::Dtls12 };
        let mut p = Pair::new(version);
        for j in &junk {
            prop_assert!(p.server.handle_datagram(p.now, j).is_ok());
            prop_assert!(p.client.handle_datagram(p.now, j).is_ok());
        }
        p.handshake();
        prop_assert_eq!(p.server.state(), DtlsState::Connected, "{:?}", p.server_events);
        prop_assert_eq!(p.client.state(), DtlsState::Connected, "{:?}", p.client_events);
    }

    #[test]
    fn garbage_after_handshake_keeps_the_session(
        junk in proptest::collection::vec(garbage(), 1..8),
        v13 in any::<bool>(),
    ) {
        let version = if v13 { ClientVersion::Dtls13 } else { ClientVersion::Dtls12 };
        let mut p = Pair::new(version);
        p.handshake();
        prop_assert_eq!(p.server.state(), DtlsState::Connected);
        for j in &junk {
            let _ = p.server.handle_datagram(p.now, j);
            let _ = p.client.handle_datagram(p.now, j);
        }
        p.exchange(&mut |_, _, _| true);
        p.now += Duration::from_secs(1);
        p.exchange(&mut |_, _, _| true);
        prop_assert_eq!(p.server.state(), DtlsState::Connected, "{:?}", p.server_events);
        prop_assert_eq!(p.client.state(), DtlsState::Connected, "{:?}", p.client_events);
        assert_srtp_works(&p);
    }
}
