//! An [`IceClient`] talking to an [`IceLite`] server through an in-memory
//! "network" (datagrams handed over by hand, time advanced by hand): connect,
//! retransmission after loss, wrong password, consent expiry on both sides,
//! an address change, ICE restart, role conflict, garbage input, and zero
//! allocations per check after warm-up.

use std::net::SocketAddr;

use rtp_core::net::Remote;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use rtp_core::ice::{
    IceClient, IceClientConfig, IceClientEvent, IceClientState, IceConfig, IceEvent, IceLite,
    IceState,
};
use rtp_core::stun::{BindingRequest, IceRole, StunClass, StunMessage, StunMethod, StunWriter};

const SRV: (&str, &str) = ("srvU", "server-password-0123456789");
const CLI: (&str, &str) = ("cliU", "client-password-0123456789");
const MS: Duration = Duration::from_millis(1);
const SEC: Duration = Duration::from_secs(1);

#[allow(clippy::disallowed_methods)] // the test needs a base instant; rtp-core never reads the clock
fn t0() -> Instant {
    Instant::now()
}

fn addr(port: u16) -> Remote {
    Remote::udp(SocketAddr::from(([127, 0, 0, 1], port)))
}

/// Client and server joined by a lossy, instantaneous in-memory link.
struct Pair {
    server: IceLite,
    client: IceClient,
    now: Instant,
    server_addr: Remote,
    /// Where the client's datagrams appear to come from (a NAT may change it).
    client_src: Remote,
    /// Datagrams client → server to drop, counted down.
    drop_to_server: u32,
    /// Both directions black-holed.
    blackhole: bool,
    server_events: Vec<IceEvent>,
    client_events: Vec<IceClientEvent>,
}

impl Pair {
    fn new(client_pwd_for_server: &str) -> Self {
        let server = IceLite::new(IceConfig {
            remote_ufrag: Some(CLI.0.into()),
            consent_timeout: 3 * SEC,
            ..IceConfig::new(SRV.0, SRV.1)
        });
        Self::with(server, client_pwd_for_server)
    }

    fn with(server: IceLite, client_pwd_for_server: &str) -> Self {
        let client = IceClient::new(IceClientConfig {
            consent_interval: SEC,
            consent_timeout: 3 * SEC,
            seed: 42,
            ..IceClientConfig::new(CLI, (SRV.0, client_pwd_for_server), addr(3478))
        });
        Self {
            server,
            client,
            now: t0(),
            server_addr: addr(3478),
            client_src: addr(50000),
            drop_to_server: 0,
            blackhole: false,
            server_events: Vec::new(),
            client_events: Vec::new(),
        }
    }

    /// Delivers everything the client has to send, and the answers.
    fn flush(&mut self) {
        let mut buf = [0u8; 512];
        let mut out = [0u8; 512];
        for _ in 0..16 {
            let Some((n, to)) = self.client.poll_transmit(self.now, &mut buf) else {
                break;
            };
            assert_eq!(to, self.server_addr);
            if self.blackhole || self.drop_to_server > 0 {
                self.drop_to_server = self.drop_to_server.saturating_sub(1);
                continue;
            }
            let msg = StunMessage::parse(&buf[..n]).unwrap();
            let answer = self
                .server
                .handle_stun(self.now, &msg, self.client_src, &mut out)
                .unwrap();
            if let Some(len) = answer {
                let resp = StunMessage::parse(&out[..len]).unwrap();
                self.client
                    .handle_stun(self.now, &resp, self.server_addr)
                    .unwrap();
            }
        }
        self.server_events
            .extend(std::iter::from_fn(|| self.server.poll_event()));
        self.client_events
            .extend(std::iter::from_fn(|| self.client.poll_event()));
    }

    /// Runs both agents' timers up to `until`.
    fn run_until(&mut self, until: Instant) {
        self.flush();
        for _ in 0..10_000 {
            let next = [self.client.poll_timeout(), self.server.poll_timeout()]
                .into_iter()
                .flatten()
                .min();
            match next {
                Some(t) if t <= until => {
                    self.now = self.now.max(t);
                    self.client.handle_timeout(self.now);
                    self.server.handle_timeout(self.now);
                    self.flush();
                }
                _ => break,
            }
        }
        self.now = until;
        self.client.handle_timeout(self.now);
        self.server.handle_timeout(self.now);
        self.flush();
    }

    fn run_for(&mut self, d: Duration) {
        self.run_until(self.now + d);
    }
}

#[test]
fn client_connects_to_lite_server() {
    let mut p = Pair::new(SRV.1);
    p.flush();
    assert_eq!(p.client_events, [IceClientEvent::Connected]);
    assert_eq!(
        p.server_events,
        [IceEvent::Connected {
            selected: addr(50000)
        }]
    );
    assert_eq!(p.client.mapped(), Some(addr(50000).addr));
    assert_eq!(p.server.selected(), Some(addr(50000)));
    // Consent keeps both sides up for a long while.
    p.run_for(60 * SEC);
    assert_eq!(p.client.state(), IceClientState::Connected);
    assert_eq!(p.server.state(), IceState::Connected);
    assert_eq!(p.server_events.len(), 1);
    assert!(p.server.stats().successes > 45);
}

#[test]
fn lost_first_request_is_retransmitted() {
    let mut p = Pair::new(SRV.1);
    p.drop_to_server = 1;
    p.flush();
    assert!(p.client_events.is_empty());
    p.run_for(49 * MS);
    assert!(p.client_events.is_empty());
    p.run_for(MS);
    assert_eq!(p.client_events, [IceClientEvent::Connected]);
    assert_eq!(
        p.server_events,
        [IceEvent::Connected {
            selected: addr(50000)
        }]
    );
    assert_eq!(p.client.stats().retransmits, 1);
}

#[test]
fn wrong_password_gets_401_and_never_connects() {
    let mut p = Pair::new("not-the-server-password");
    p.run_for(30 * SEC);
    assert_eq!(p.client_events, [IceClientEvent::Failed]);
    assert_eq!(p.client.last_error_code(), Some(401));
    assert!(p.server_events.is_empty());
    assert_eq!(p.server.state(), IceState::New);
    assert_eq!(p.server.stats().bad_integrity, 1);
    assert!(!p.server.is_valid(addr(50000)));
}

#[test]
fn consent_expires_on_both_sides_when_the_path_dies() {
    let mut p = Pair::new(SRV.1);
    p.run_for(10 * SEC);
    p.blackhole = true;
    let cut = p.now;
    p.run_for(10 * SEC);
    assert_eq!(
        p.server_events,
        [
            IceEvent::Connected {
                selected: addr(50000)
            },
            IceEvent::Disconnected
        ]
    );
    assert_eq!(
        p.client_events,
        [IceClientEvent::Connected, IceClientEvent::ConsentLost]
    );
    assert_eq!(p.server.selected(), None);
    assert_eq!(p.client.state(), IceClientState::ConsentLost);
    // The last answered check was at most one jittered interval before the cut.
    assert!(p.server.stats().consent_expiries == 1 && p.now - cut == 10 * SEC);
}

#[test]
fn address_change_moves_the_selection() {
    let mut p = Pair::new(SRV.1);
    p.run_for(2 * SEC);
    p.client_src = addr(50001); // NAT rebinding
    p.run_for(2 * SEC);
    assert_eq!(
        p.server_events,
        [
            IceEvent::Connected {
                selected: addr(50000)
            },
            IceEvent::SelectedChanged {
                selected: addr(50001)
            },
        ]
    );
    assert_eq!(p.server.selected(), Some(addr(50001)));
    assert_eq!(p.client.mapped(), Some(addr(50001).addr));
    assert!(p.server.is_valid(addr(50000)) && p.server.is_valid(addr(50001)));
    // Consent now follows the new address only.
    p.run_for(10 * SEC);
    assert_eq!(p.server.state(), IceState::Connected);
}

#[test]
fn ice_restart_answers_old_credentials_until_new_ones_are_used() {
    let new_srv = ("srv2", "server-password-2-abcdefgh");
    let new_cli = ("cli2", "client-password-2-abcdefgh");
    let mut p = Pair::new(SRV.1);
    p.run_for(SEC);
    p.server
        .restart(new_srv.0, new_srv.1, Some(new_cli.0.into()));
    // The client still uses the old credentials: still answered, no events.
    p.run_for(10 * SEC);
    assert_eq!(p.client.state(), IceClientState::Connected);
    assert_eq!(p.server_events.len(), 1);
    // A second client on the old credentials, to probe them afterwards.
    let mut old = IceClient::new(IceClientConfig {
        seed: 7,
        ..IceClientConfig::new(CLI, SRV, addr(3478))
    });
    assert_eq!(
        exchange(&mut p.server, &mut old, p.now, addr(50002)),
        Some(StunClass::Success)
    );
    // The restarted client completes the restart.
    p.client.restart(new_cli, new_srv);
    p.flush();
    assert_eq!(p.client_events.last(), Some(&IceClientEvent::Connected));
    // The probe (which nominated, being a client too) had moved the
    // selection; the restarted client's check completes the restart and
    // takes it back.
    assert_eq!(
        p.server_events[p.server_events.len() - 3..],
        [
            IceEvent::SelectedChanged {
                selected: addr(50002)
            },
            IceEvent::Restarted,
            IceEvent::SelectedChanged {
                selected: addr(50000)
            },
        ]
    );
    assert_eq!(p.server.local_ufrag(), "srv2");
    // Now the old credentials are rejected.
    old.restart(CLI, SRV);
    assert_eq!(
        exchange(&mut p.server, &mut old, p.now, addr(50002)),
        Some(StunClass::Error)
    );
    assert_eq!(old.last_error_code(), Some(401));
    assert_eq!(old.state(), IceClientState::Failed);
    p.run_for(10 * SEC);
    assert_eq!(p.client.state(), IceClientState::Connected);
    assert_eq!(p.server.state(), IceState::Connected);
}

/// One request from `client` (seen from `src`) and the server's answer.
fn exchange(
    server: &mut IceLite,
    client: &mut IceClient,
    now: Instant,
    src: Remote,
) -> Option<StunClass> {
    let (mut buf, mut out) = ([0u8; 512], [0u8; 512]);
    let (n, to) = client.poll_transmit(now, &mut buf)?;
    let msg = StunMessage::parse(&buf[..n]).unwrap();
    let len = server.handle_stun(now, &msg, src, &mut out).unwrap()?;
    let resp = StunMessage::parse(&out[..len]).unwrap();
    client.handle_stun(now, &resp, to).unwrap();
    Some(resp.class())
}

#[test]
fn controlled_peer_gets_role_conflict() {
    let mut p = Pair::new(SRV.1);
    let mut buf = [0u8; 256];
    let n = BindingRequest {
        transaction_id: [3; 12],
        username: b"srvU:cliU",
        priority: 1,
        role: IceRole::Controlled(u64::MAX),
        use_candidate: true,
        key: SRV.1.as_bytes(),
    }
    .write(&mut buf)
    .unwrap();
    let mut out = [0u8; 256];
    let msg = StunMessage::parse(&buf[..n]).unwrap();
    let len = p
        .server
        .handle_stun(p.now, &msg, addr(1), &mut out)
        .unwrap()
        .unwrap();
    let resp = StunMessage::parse(&out[..len]).unwrap();
    assert_eq!(resp.error_code().unwrap().code, 487);
    assert!(resp.verify_integrity(SRV.1.as_bytes()));
    assert_eq!(p.server.stats().role_conflict, 1);
    assert_eq!(p.server.state(), IceState::New);
}

#[test]
fn zero_allocations_per_check_after_warm_up() {
    let mut p = Pair::new(SRV.1);
    p.run_for(5 * SEC);
    // A bad-password peer and an unknown attribute exercise the error paths.
    let mut bad = IceClient::new(IceClientConfig {
        seed: 9,
        ..IceClientConfig::new(CLI, (SRV.0, "wrong-password-abcdefghij"), addr(3478))
    });
    let mut buf = [0u8; 512];
    let mut out = [0u8; 512];
    let mut w =
        StunWriter::new(&mut buf, StunClass::Request, StunMethod::Binding, &[8; 12]).unwrap();
    w.username(b"srvU:cliU").unwrap();
    w.attribute(0x7777, b"x").unwrap();
    w.message_integrity(SRV.1.as_bytes()).unwrap();
    w.fingerprint().unwrap();
    let n420 = w.finish();
    let odd = buf;
    let before = p.server.stats().successes;
    let info = allocation_counter::measure(|| {
        for i in 0..2000u32 {
            if i % 100 == 50 {
                p.client_src = addr(50000 + (i / 100) as u16 % 3);
            }
            p.run_for(100 * MS);
            let msg = StunMessage::parse(&odd[..n420]).unwrap();
            let _ = p.server.handle_stun(p.now, &msg, addr(2), &mut out);
            bad.restart(CLI, (SRV.0, "wrong-password-abcdefghij"));
            let _ = exchange(&mut p.server, &mut bad, p.now, addr(3));
            p.server_events.clear();
            p.client_events.clear();
        }
    });
    let s = p.server.stats();
    assert!(s.successes - before > 150, "{}", s.successes - before);
    assert!(s.unknown_attribute == 2000 && s.bad_integrity == 2000 && s.selected_changes > 10);
    assert_eq!(info.count_total, 0, "allocations per check");
}

/// Random attribute sets, sealed with a valid FINGERPRINT (and sometimes a
/// valid MESSAGE-INTEGRITY) so they get past the first checks.
fn sealed_request(
    kind_class: u8,
    attrs: &[(u16, Vec<u8>)],
    integrity: bool,
    buf: &mut [u8],
) -> usize {
    let class = match kind_class % 4 {
        0 => StunClass::Request,
        1 => StunClass::Indication,
        2 => StunClass::Success,
        _ => StunClass::Error,
    };
    let Ok(mut w) = StunWriter::new(buf, class, StunMethod::Binding, &[kind_class; 12]) else {
        return 0;
    };
    for (kind, value) in attrs {
        let _ = w.attribute(*kind, value);
    }
    if integrity {
        let _ = w.message_integrity(SRV.1.as_bytes());
    }
    let _ = w.fingerprint();
    w.finish()
}

proptest! {
    #[test]
    fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let mut p = Pair::new(SRV.1);
        let mut out = [0u8; 512];
        if let Ok(msg) = StunMessage::parse(&bytes) {
            let _ = p.server.handle_stun(p.now, &msg, addr(1), &mut out);
            let _ = p.client.handle_stun(p.now, &msg, addr(3478));
        }
    }

    #[test]
    fn random_sealed_messages_never_panic(
        kind_class in any::<u8>(),
        attrs in proptest::collection::vec(
            (
                proptest::sample::select(vec![
                    0x0006u16, 0x0008, 0x0009, 0x000A, 0x0020, 0x0024, 0x0025, 0x8022,
                    0x8029, 0x802A, 0x7001, 0xC001,
                ]),
                proptest::collection::vec(any::<u8>(), 0..24),
            ),
            0..8,
        ),
        username in proptest::sample::select(vec!["srvU:cliU", "srvU:", ":", "x", "srvU:cliU:z"]),
        integrity in any::<bool>(),
        out_len in 0usize..200,
    ) {
        let mut p = Pair::new(SRV.1);
        let mut all = vec![(0x0006u16, username.as_bytes().to_vec())];
        all.extend(attrs);
        let mut buf = [0u8; 1024];
        let n = sealed_request(kind_class, &all, integrity, &mut buf);
        let mut out = vec![0u8; out_len];
        if let Ok(msg) = StunMessage::parse(&buf[..n]) {
            if let Ok(Some(len)) = p.server.handle_stun(p.now, &msg, addr(1), &mut out) {
                prop_assert!(StunMessage::parse(&out[..len]).is_ok());
            }
            let _ = p.client.handle_stun(p.now, &msg, addr(3478));
            p.server.handle_timeout(p.now + 100 * SEC);
        }
    }
}
