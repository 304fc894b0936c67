//! The in-memory DTLS harness of the DTLS tests: a client and a server
//! endpoint, datagrams moved by hand through a delivery filter, time
//! advanced to the next timer.
#![allow(dead_code)] // each test file uses part of it

use std::time::{Duration, Instant, SystemTime};

use rtp_core::dtls::{
    ClientVersion, DtlsCert, DtlsEndpoint, DtlsEvent, DtlsRole, DtlsSettings, DtlsState,
    DtlsVersion, Fingerprint,
};
use rtp_core::srtp::{ProtectionProfile, SrtpConfig, SrtpContext};

/// Which way a datagram travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    ToServer,
    ToClient,
}

pub struct Pair {
    pub client: DtlsEndpoint,
    pub server: DtlsEndpoint,
    pub client_events: Vec<DtlsEvent>,
    pub server_events: Vec<DtlsEvent>,
    pub now: Instant,
    /// Datagrams delivered so far, per direction (for loss filters).
    pub sent: [usize; 2],
}

impl Pair {
    /// Client pinned to `version`, server auto; both expect the right fingerprints.
    pub fn new(version: ClientVersion) -> Self {
        let (c, s) = (cert(), cert());
        let (cfp, sfp) = (c.fingerprint(), s.fingerprint());
        Self::with(version, &c, &s, Some(sfp), Some(cfp))
    }

    pub fn with(
        version: ClientVersion,
        client_cert: &DtlsCert,
        server_cert: &DtlsCert,
        client_expects: Option<Fingerprint>,
        server_expects: Option<Fingerprint>,
    ) -> Self {
        let client = DtlsSettings {
            client_version: version,
            rng_seed: Some(7),
            ..DtlsSettings::default()
        };
        let server = DtlsSettings {
            rng_seed: Some(11),
            ..DtlsSettings::default()
        };
        Self::configured(
            (&client, client_cert, client_expects),
            (&server, server_cert, server_expects),
        )
    }

    /// Fresh certificates, each side expecting the other's, with these settings.
    pub fn with_settings(client: &DtlsSettings, server: &DtlsSettings) -> Self {
        let (c, s) = (cert(), cert());
        Self::configured(
            (client, &c, Some(s.fingerprint())),
            (server, &s, Some(c.fingerprint())),
        )
    }

    /// (settings, certificate, expected peer fingerprint) of client and server.
    pub fn configured(
        client: (&DtlsSettings, &DtlsCert, Option<Fingerprint>),
        server: (&DtlsSettings, &DtlsCert, Option<Fingerprint>),
    ) -> Self {
        let now = base();
        let client =
            DtlsEndpoint::with_settings(DtlsRole::Client, client.1, client.2, client.0, now)
                .expect("client");
        let server =
            DtlsEndpoint::with_settings(DtlsRole::Server, server.1, server.2, server.0, now)
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
    pub fn exchange(&mut self, keep: &mut dyn FnMut(Dir, usize, &[u8]) -> bool) -> usize {
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

    pub fn collect_events(&mut self) {
        while let Some(e) = self.client.poll_event() {
            self.client_events.push(e);
        }
        while let Some(e) = self.server.poll_event() {
            self.server_events.push(e);
        }
    }

    /// Jump to the earliest timer and fire both sides' timers.
    pub fn advance_to_timeout(&mut self) -> bool {
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
    pub fn run(&mut self, keep: &mut dyn FnMut(Dir, usize, &[u8]) -> bool, limit: Duration) {
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

    pub fn handshake(&mut self) {
        self.run(&mut |_, _, _| true, Duration::from_secs(5));
    }
}

#[allow(clippy::disallowed_methods)]
pub fn base() -> Instant {
    Instant::now()
}

pub fn cert() -> DtlsCert {
    DtlsCert::generate(SystemTime::UNIX_EPOCH + Duration::from_secs(1_750_000_000))
        .expect("generate")
}

pub fn connected(events: &[DtlsEvent]) -> Option<(ProtectionProfile, DtlsVersion)> {
    events.iter().find_map(|e| match *e {
        DtlsEvent::Connected { profile, version } => Some((profile, version)),
        _ => None,
    })
}

pub fn rtp(seq: u16) -> Vec<u8> {
    let mut p = vec![0x80, 111, 0, 0, 0, 0, 0x10, 0, 0x11, 0x22, 0x33, 0x44];
    p[2..4].copy_from_slice(&seq.to_be_bytes());
    p.extend((0..160).map(|i| (i as u8) ^ (seq as u8)));
    p
}

pub fn rtcp_rr() -> Vec<u8> {
    // RR, no report blocks, sender SSRC 0x11223344, then one SDES-less pad.
    vec![0x80, 201, 0, 1, 0x11, 0x22, 0x33, 0x44]
}

/// Protect with `tx`, unprotect with `rx`, expect the plaintext back.
pub fn round_trip(tx: &mut SrtpContext, rx: &mut SrtpContext, seq: u16) {
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

pub fn assert_srtp_works(pair: &Pair) {
    let cfg = SrtpConfig::default();
    let (mut c_out, mut c_in) = pair.client.srtp_contexts(cfg).expect("client keys");
    let (mut s_out, mut s_in) = pair.server.srtp_contexts(cfg).expect("server keys");
    for seq in [1u16, 2, 3] {
        round_trip(&mut c_out, &mut s_in, seq);
        round_trip(&mut s_out, &mut c_in, seq);
    }
}
