//! DTLS-SRTP end to end, in memory: a client and an auto-version server
//! handshake with time advanced by hand, then key SRTP both ways.

mod dtls_harness;

use std::time::Duration;

use dtls_harness::*;
use proptest::prelude::*;
use rtp_core::dtls::{ClientVersion, DtlsEvent, DtlsFailure, DtlsState, DtlsVersion, Fingerprint};
use rtp_core::srtp::{ProtectionProfile, SrtpConfig};

/// The SRTP profile each server picks from dimpl's client offer
/// (AEAD_AES_256_GCM, AEAD_AES_128_GCM, AES128_CM_HMAC_SHA1_80): dimpl's DTLS
/// 1.3 server takes the first it supports (not configurable in dimpl 0.9);
/// our DTLS 1.2 server takes its own first preference (`SrtpProfiles`'s
/// default, AES-128-GCM).
fn expected_profile(v: DtlsVersion) -> ProtectionProfile {
    match v {
        DtlsVersion::Dtls12 => ProtectionProfile::AeadAes128Gcm,
        DtlsVersion::Dtls13 => ProtectionProfile::AeadAes256Gcm,
    }
}

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
    assert_eq!(c, (expected_profile(expect), expect));
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
