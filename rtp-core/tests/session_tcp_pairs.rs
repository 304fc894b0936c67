//! A Session whose peer reaches it over TCP (RFC 6544 ICE-TCP; the caller frames, rtp-core sees
//! one frame at a time from `Remote::tcp(peer)`): it connects and keys DTLS over the TCP pair,
//! sends everything there, follows the peer's nominations between TCP and UDP (Chrome switches
//! nominated pairs; Firefox once picked TCP while a server kept sending UDP, edumeet#72), and a
//! closed TCP connection that carried media disconnects it at once.

mod session_harness;

use std::time::{Duration, Instant};

use rtp_core::dtls::DtlsRole;
use rtp_core::ice::{IceClientConfig, IceConfig};
use rtp_core::net::{Protocol, Remote};
use rtp_core::session::{Session, SessionConfig, SessionEvent, SessionMode};
use rtp_core::stun::{BindingRequest, IceRole, StunClass, StunMessage};
use session_harness::{addr, cert, t0, SERVER};

const SRV: (&str, &str) = ("sTcp", "server-password-tcp-0123456789");
const CLI: (&str, &str) = ("cTcp", "client-password-tcp-0123456789");

/// A server session and a client session whose one pair is `to_server`.
fn pair(now: Instant, to_server: Remote) -> (Session, Session) {
    let (sc, cc) = (cert(), cert());
    let server = Session::new(
        now,
        SessionConfig::new(SessionMode::WebRtc {
            ice: IceConfig::new(SRV.0, SRV.1),
            dtls_role: DtlsRole::Server,
            remote_fingerprint: Some(cc.fingerprint()),
        }),
        &sc,
    )
    .expect("server");
    let client = Session::new(
        now,
        SessionConfig::new(SessionMode::WebRtcClient {
            ice: IceClientConfig::new(CLI, SRV, to_server),
            dtls_role: DtlsRole::Client,
            remote_fingerprint: Some(sc.fingerprint()),
        }),
        &cc,
    )
    .expect("client");
    (server, client)
}

/// Moves datagrams both ways until quiet; every one must go where the sender's pair says.
fn exchange(now: Instant, server: &mut Session, client: &mut Session, client_at: Remote) {
    let server_at = Remote {
        proto: client_at.proto,
        addr: addr(SERVER),
    };
    let mut buf = vec![0u8; 2048];
    for _ in 0..1000 {
        let mut any = false;
        while let Some((n, dest)) = client.poll_transmit(now, &mut buf) {
            assert_eq!(dest, server_at);
            let _ = server.handle_datagram(now, client_at, &mut buf[..n]);
            any = true;
        }
        while let Some((n, dest)) = server.poll_transmit(now, &mut buf) {
            assert_eq!(dest, client_at, "the server answers on the pair it heard");
            let _ = client.handle_datagram(now, server_at, &mut buf[..n]);
            any = true;
        }
        if !any {
            return;
        }
    }
    panic!("exchange did not settle");
}

fn connect(now: &mut Instant, server: &mut Session, client: &mut Session, client_at: Remote) {
    for _ in 0..10_000 {
        exchange(*now, server, client, client_at);
        if server.is_connected() && client.is_connected() {
            return;
        }
        *now += Duration::from_millis(5);
        server.handle_timeout(*now);
        client.handle_timeout(*now);
    }
    panic!("did not connect over {client_at}");
}

/// A nominating check from the client's credentials, as a browser's next check on another pair.
fn nominate(now: Instant, server: &mut Session, from: Remote, tid: u8) {
    let mut buf = [0u8; 256];
    let username = format!("{}:{}", SRV.0, CLI.0);
    let n = BindingRequest {
        transaction_id: [tid; 12],
        username: username.as_bytes(),
        priority: 1,
        role: IceRole::Controlling(7),
        use_candidate: true,
        key: SRV.1.as_bytes(),
    }
    .write(&mut buf)
    .expect("check");
    server
        .handle_datagram(now, from, &mut buf[..n])
        .expect("accepted");
    let mut out = [0u8; 256];
    let (len, dest) = server.poll_transmit(now, &mut out).expect("answered");
    assert_eq!(dest, from, "the answer goes back on the check's transport");
    let resp = StunMessage::parse(&out[..len]).expect("stun");
    assert_eq!(resp.class(), StunClass::Success);
    assert_eq!(resp.xor_mapped_address(), Some(from.addr));
}

fn events(s: &mut Session) -> Vec<SessionEvent> {
    std::iter::from_fn(|| s.poll_event()).collect()
}

#[test]
fn a_session_connects_over_tcp_and_follows_nominations_between_transports() {
    let mut now = t0();
    let client_tcp = Remote::tcp(addr("127.0.0.1:40001"));
    let client_udp = Remote::udp(addr("127.0.0.1:40001"));
    let (mut server, mut client) = pair(now, Remote::tcp(addr(SERVER)));
    connect(&mut now, &mut server, &mut client, client_tcp);
    let ev = events(&mut server);
    assert!(ev.contains(&SessionEvent::IceConnected { remote: client_tcp }));
    assert!(ev
        .iter()
        .any(|e| matches!(e, SessionEvent::DtlsConnected { .. })));
    assert_eq!(server.remote_addr(), Some(client_tcp));
    assert!(server.is_validated(client_tcp));
    assert!(
        !server.is_validated(client_udp),
        "the same address over UDP is another pair"
    );

    // The peer nominates its UDP pair: everything moves there.
    nominate(now, &mut server, client_udp, 1);
    assert_eq!(
        events(&mut server),
        [SessionEvent::SelectedPairChanged { remote: client_udp }]
    );
    assert_eq!(server.remote_addr().map(|r| r.proto), Some(Protocol::Udp));

    // The TCP connection the peer left closes: nothing changes for media.
    server.remote_closed(client_tcp);
    assert!(events(&mut server).is_empty());
    assert_eq!(server.remote_addr(), Some(client_udp));

    // A new TCP connection, nominated: media moves back to TCP.
    let client_tcp2 = Remote::tcp(addr("127.0.0.1:40002"));
    nominate(now, &mut server, client_tcp2, 2);
    assert_eq!(
        events(&mut server),
        [SessionEvent::SelectedPairChanged {
            remote: client_tcp2
        }]
    );
    // ... and when that connection closes, the session is disconnected at once (not after the
    // 30 s consent timeout) and sends nothing anywhere.
    server.remote_closed(client_tcp2);
    assert_eq!(events(&mut server), [SessionEvent::IceDisconnected]);
    assert_eq!(server.remote_addr(), None);
    assert!(!server.is_connected());
    let mut out = [0u8; 2048];
    assert!(server.poll_transmit(now, &mut out).is_none());

    // The UDP pair is still valid: a nomination there reconnects without a new handshake.
    nominate(now, &mut server, client_udp, 3);
    assert_eq!(
        events(&mut server),
        [SessionEvent::IceConnected { remote: client_udp }]
    );
    assert!(server.is_connected());
}
