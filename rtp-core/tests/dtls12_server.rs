//! Our DTLS 1.2 server (`rtp_core::dtls`, clients that do not offer DTLS
//! 1.3) against dimpl's DTLS 1.2 client, in memory: cookies, fragmentation
//! at a small MTU, loss of any one datagram, the server's SRTP preference,
//! application data with replay, close_notify, timeouts; and hand-made
//! ClientHellos it must refuse with an alert.

mod dtls_harness;

use std::time::Duration;

use dtls_harness::*;
use rtp_core::dtls::{
    ClientVersion, DtlsEvent, DtlsFailure, DtlsSettings, DtlsState, DtlsVersion, SrtpProfiles,
};
use rtp_core::srtp::ProtectionProfile;

fn client12() -> DtlsSettings {
    DtlsSettings {
        client_version: ClientVersion::Dtls12,
        rng_seed: Some(3),
        ..DtlsSettings::default()
    }
}

fn connected_pair(server: &DtlsSettings) -> Pair {
    let mut p = Pair::with_settings(&client12(), server);
    p.handshake();
    assert_eq!(
        p.server.state(),
        DtlsState::Connected,
        "{:?}",
        p.server_events
    );
    assert_eq!(
        p.client.state(),
        DtlsState::Connected,
        "{:?}",
        p.client_events
    );
    p
}

#[test]
fn handshake_with_and_without_cookie() {
    for cookie in [true, false] {
        let p = connected_pair(&DtlsSettings {
            server_cookie: cookie,
            ..DtlsSettings::default()
        });
        assert_eq!(
            connected(&p.server_events),
            Some((ProtectionProfile::AeadAes128Gcm, DtlsVersion::Dtls12))
        );
        assert_eq!(connected(&p.client_events), connected(&p.server_events));
        assert_srtp_works(&p);
        // Cookie: ClientHello, HelloVerifyRequest, ClientHello again.
        let hellos = if cookie { 2 } else { 1 };
        assert!(p.sent[0] > hellos, "{:?}", p.sent);
    }
}

#[test]
fn small_mtu_fragments_every_flight_and_still_connects() {
    let mtu = 576;
    let client = DtlsSettings { mtu, ..client12() };
    let server = DtlsSettings {
        mtu,
        ..DtlsSettings::default()
    };
    let mut p = Pair::with_settings(&client, &server);
    let mut biggest = 0;
    let mut to_client = 0;
    p.run(
        &mut |dir, _, d| {
            if dir == Dir::ToClient {
                biggest = biggest.max(d.len());
                to_client += 1;
            }
            true
        },
        Duration::from_secs(5),
    );
    assert_eq!(
        p.server.state(),
        DtlsState::Connected,
        "{:?}",
        p.server_events
    );
    assert_eq!(
        p.client.state(),
        DtlsState::Connected,
        "{:?}",
        p.client_events
    );
    assert!(biggest <= mtu, "{biggest}");
    // HelloVerifyRequest, flight 4 (> 1 datagram at this MTU), flight 6.
    assert!(to_client >= 4, "{to_client}");
    assert_srtp_works(&p);
}

#[test]
fn any_one_lost_datagram_is_recovered() {
    for dir in [Dir::ToServer, Dir::ToClient] {
        for lost in 0..5 {
            let mut p = Pair::with_settings(&client12(), &DtlsSettings::default());
            p.run(
                &mut |d, i, _| !(d == dir && i == lost),
                Duration::from_secs(20),
            );
            assert_eq!(
                p.server.state(),
                DtlsState::Connected,
                "{dir:?} #{lost}: {:?}",
                p.server_events
            );
            assert_eq!(
                p.client.state(),
                DtlsState::Connected,
                "{dir:?} #{lost}: {:?}",
                p.client_events
            );
            assert_srtp_works(&p);
        }
    }
}

#[test]
fn the_server_picks_its_preferred_srtp_profile() {
    for (prefs, want) in [
        (
            vec![ProtectionProfile::Aes128CmHmacSha1_80],
            ProtectionProfile::Aes128CmHmacSha1_80,
        ),
        (
            vec![
                ProtectionProfile::AeadAes256Gcm,
                ProtectionProfile::AeadAes128Gcm,
            ],
            ProtectionProfile::AeadAes256Gcm,
        ),
        (
            vec![
                ProtectionProfile::Aes128CmHmacSha1_32,
                ProtectionProfile::Aes128CmHmacSha1_80,
            ],
            ProtectionProfile::Aes128CmHmacSha1_80,
        ),
    ] {
        let p = connected_pair(&DtlsSettings {
            srtp_profiles: SrtpProfiles::new(&prefs).unwrap(),
            ..DtlsSettings::default()
        });
        assert_eq!(connected(&p.server_events).map(|c| c.0), Some(want));
        assert_srtp_works(&p);
    }
    assert!(SrtpProfiles::new(&[]).is_err());
    let p = ProtectionProfile::AeadAes128Gcm;
    assert!(SrtpProfiles::new(&[p, p]).is_err());
}

/// dimpl's client does not offer SRTP_AES128_CM_HMAC_SHA1_32: nothing in common.
#[test]
fn no_common_srtp_profile_is_refused_with_an_alert() {
    let server = DtlsSettings {
        srtp_profiles: SrtpProfiles::new(&[ProtectionProfile::Aes128CmHmacSha1_32]).unwrap(),
        ..DtlsSettings::default()
    };
    let mut p = Pair::with_settings(&client12(), &server);
    let mut last = Vec::new();
    p.run(
        &mut |dir, _, d| {
            if dir == Dir::ToClient {
                last = d.to_vec();
            }
            true
        },
        Duration::from_secs(2),
    );
    assert_eq!(p.server.state(), DtlsState::Failed);
    assert!(p
        .server_events
        .contains(&DtlsEvent::Failed(DtlsFailure::NoSrtpProfile)));
    // Plaintext fatal handshake_failure.
    assert_eq!(&last[..5], &[21, 0xfe, 0xfd, 0, 0]);
    assert_eq!(&last[11..], &[0, 2, 2, 40]);
    assert_eq!(p.client.state(), DtlsState::Failed, "{:?}", p.client_events);
}

#[test]
fn application_data_both_ways_and_a_replay_is_dropped() {
    let mut p = connected_pair(&DtlsSettings::default());
    p.client
        .send_application_data(b"sctp from the client")
        .unwrap();
    let mut copy = None;
    p.exchange(&mut |dir, _, d| {
        if dir == Dir::ToServer {
            copy = Some(d.to_vec());
        }
        true
    });
    assert_eq!(
        p.server.poll_application_data().as_deref(),
        Some(&b"sctp from the client"[..])
    );
    // The same record again: the replay window drops it.
    p.server.handle_datagram(p.now, &copy.unwrap()).unwrap();
    assert_eq!(p.server.poll_application_data(), None);
    p.server
        .send_application_data(b"sctp from the server")
        .unwrap();
    p.exchange(&mut |_, _, _| true);
    assert_eq!(
        p.client.poll_application_data().as_deref(),
        Some(&b"sctp from the server"[..])
    );
    assert_eq!(p.server.app_records_dropped(), 0);
    assert_eq!(p.server.state(), DtlsState::Connected);
}

#[test]
fn close_notify_either_way() {
    let mut p = connected_pair(&DtlsSettings::default());
    p.server.close();
    p.exchange(&mut |_, _, _| true);
    assert_eq!(p.client.state(), DtlsState::Closed, "{:?}", p.client_events);
    let mut p = connected_pair(&DtlsSettings::default());
    p.client.close();
    p.exchange(&mut |_, _, _| true);
    assert_eq!(p.server.state(), DtlsState::Closed);
    assert!(p.server_events.contains(&DtlsEvent::Closed));
    assert_eq!(p.server.poll_timeout(), None);
}

#[test]
fn a_silent_client_times_out_without_an_alert() {
    let server = DtlsSettings {
        flight_retries: 2,
        ..DtlsSettings::default()
    };
    let mut p = Pair::with_settings(&client12(), &server);
    // The client's flights 1 and 3 arrive; nothing it sends after that.
    let took = until_server_settles(&mut p, &mut |dir, i, _| dir == Dir::ToClient || i < 2);
    assert_eq!(p.server.state(), DtlsState::Failed);
    assert!(p
        .server_events
        .contains(&DtlsEvent::Failed(DtlsFailure::Timeout)));
    // Flight 4 at 0 s, retransmitted at 1 s and 3 s, given up at 7 s.
    assert!(
        took >= Duration::from_secs(7) && took < Duration::from_secs(12),
        "{took:?}"
    );
    assert_eq!(p.server.poll_timeout(), None);
}

#[test]
fn handshake_deadline() {
    let server = DtlsSettings {
        handshake_timeout: Duration::from_secs(3),
        flight_retries: 10,
        ..DtlsSettings::default()
    };
    let mut p = Pair::with_settings(&client12(), &server);
    let took = until_server_settles(&mut p, &mut |dir, i, _| dir == Dir::ToClient || i < 2);
    assert!(p
        .server_events
        .contains(&DtlsEvent::Failed(DtlsFailure::Timeout)));
    assert!(
        took >= Duration::from_secs(3) && took < Duration::from_secs(4),
        "{took:?}"
    );
}

/// Runs the pair (timers included) until the server is no longer
/// handshaking; returns the simulated time that took.
fn until_server_settles(p: &mut Pair, keep: &mut dyn FnMut(Dir, usize, &[u8]) -> bool) -> Duration {
    let start = p.now;
    for _ in 0..200 {
        p.exchange(keep);
        if p.server.state() != DtlsState::Handshaking || !p.advance_to_timeout() {
            break;
        }
    }
    p.now - start
}

/// A ClientHello body; `knock` leaves out or spoils one part.
fn hello_body(knock: &str) -> Vec<u8> {
    let mut b = vec![0xfe, 0xfd];
    b.extend_from_slice(&[0x11; 32]);
    b.extend_from_slice(&[0, 0]); // session id, cookie
    let suites: &[u8] = if knock == "suites" {
        &[0x00, 0x2f]
    } else {
        &[0xc0, 0x2b, 0x00, 0xff]
    };
    b.extend_from_slice(&(suites.len() as u16).to_be_bytes());
    b.extend_from_slice(suites);
    b.extend_from_slice(&[1, 0]);
    let mut ext = Vec::new();
    let mut add = |ty: u16, data: &[u8]| {
        ext.extend_from_slice(&ty.to_be_bytes());
        ext.extend_from_slice(&(data.len() as u16).to_be_bytes());
        ext.extend_from_slice(data);
    };
    if knock != "ems" {
        add(23, &[]);
    }
    if knock == "dup" {
        add(23, &[]);
    }
    if knock != "srtp" {
        add(14, &[0, 2, 0, 1, 0]);
    }
    if knock != "sigalgs" {
        add(13, &[0, 2, 4, 3]);
    }
    add(
        10,
        if knock == "groups" {
            &[0, 2, 0, 30]
        } else {
            &[0, 2, 0, 23]
        },
    );
    if knock == "versions" {
        add(43, &[2, 0xfe, 0xff]);
    }
    b.extend_from_slice(&(ext.len() as u16).to_be_bytes());
    b.extend_from_slice(&ext);
    if knock == "trailing" {
        b.push(0);
    }
    b
}

/// `body` as ClientHello fragments of `chunk` bytes, one record per datagram.
fn hello_datagrams(body: &[u8], chunk: usize) -> Vec<Vec<u8>> {
    body.chunks(chunk)
        .enumerate()
        .map(|(i, part)| {
            let mut frag = vec![1];
            frag.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
            frag.extend_from_slice(&[0, 0]);
            frag.extend_from_slice(&((i * chunk) as u32).to_be_bytes()[1..]);
            frag.extend_from_slice(&(part.len() as u32).to_be_bytes()[1..]);
            frag.extend_from_slice(part);
            let mut d = vec![22, 0xfe, 0xff, 0, 0, 0, 0, 0, 0, 0, i as u8];
            d.extend_from_slice(&(frag.len() as u16).to_be_bytes());
            d.extend_from_slice(&frag);
            d
        })
        .collect()
}

#[test]
fn refused_hellos_get_their_alert() {
    for (knock, alert, why) in [
        ("ems", 40, DtlsFailure::Security),
        ("suites", 40, DtlsFailure::Protocol),
        ("srtp", 40, DtlsFailure::NoSrtpProfile),
        ("sigalgs", 40, DtlsFailure::Protocol),
        ("groups", 40, DtlsFailure::Protocol),
        ("versions", 70, DtlsFailure::Protocol),
        ("dup", 47, DtlsFailure::Protocol),
        ("trailing", 50, DtlsFailure::Protocol),
    ] {
        let server = DtlsSettings {
            server_cookie: false,
            ..DtlsSettings::default()
        };
        let mut p = Pair::with_settings(&client12(), &server);
        let r = p
            .server
            .handle_datagram(p.now, &hello_datagrams(&hello_body(knock), 4000)[0]);
        assert!(r.is_err(), "{knock}");
        p.collect_events();
        assert_eq!(p.server_events, vec![DtlsEvent::Failed(why)], "{knock}");
        let mut buf = [0u8; 2048];
        let n = p.server.poll_transmit(p.now, &mut buf).expect(knock);
        assert_eq!(&buf[..3], &[21, 0xfe, 0xfd], "{knock}");
        assert_eq!(&buf[n - 2..n], &[2, alert], "{knock}");
        assert_eq!(
            p.server.poll_transmit(p.now, &mut buf),
            None,
            "one alert, nothing else"
        );
    }
}

/// A hello fragmented over three datagrams, delivered out of order, gets
/// its HelloVerifyRequest once whole; a good hello without cookie gets one too.
#[test]
fn a_fragmented_hello_is_answered_once_whole() {
    let mut p = Pair::with_settings(&client12(), &DtlsSettings::default());
    let mut ds = hello_datagrams(&hello_body(""), 30);
    assert!(ds.len() >= 3);
    ds.swap(0, 1);
    let mut buf = [0u8; 2048];
    for (i, d) in ds.iter().enumerate() {
        p.server.handle_datagram(p.now, d).unwrap();
        let out = p.server.poll_transmit(p.now, &mut buf);
        if i + 1 < ds.len() {
            assert_eq!(out, None, "nothing before the hello is whole");
        } else {
            let n = out.expect("HelloVerifyRequest");
            // handshake record, HelloVerifyRequest (3), cookie of 32 bytes.
            assert_eq!((buf[0], buf[13]), (22, 3));
            assert_eq!(n, 13 + 12 + 3 + 32);
        }
    }
    assert_eq!(p.server.state(), DtlsState::Handshaking);
    assert_eq!(p.server.version(), Some(DtlsVersion::Dtls12));
}
