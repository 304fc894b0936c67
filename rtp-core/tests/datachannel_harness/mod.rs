//! Two WebRTC sessions (the SFU's DTLS-server session and our DTLS-client
//! peer) with data channels, over a pair of seeded in-memory links
//! (`common::Netem`), time advanced by hand to the next timer, arrival or
//! scheduled send. ICE and DTLS connect over a clean link; SCTP's own
//! handshake and everything after it cross the configured links.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rtp_core::datachannel::{ChannelId, DataConfig, DataMeta};
use rtp_core::session::{Session, SessionEvent};

use crate::common::{Netem, NetemConfig};
use rtp_core::dtls::ClientVersion;

use crate::session_harness::{addr, connect, webrtc_pair_offering, SERVER};

pub const CLIENT: &str = "127.0.0.1:6000";

/// Which end of the pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The SFU's session: DTLS server, odd channel ids.
    Server,
    /// The peer: DTLS client, even channel ids, sends INIT.
    Client,
}

/// A message one side received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Got {
    pub at: Instant,
    pub channel: ChannelId,
    pub binary: bool,
    pub data: Vec<u8>,
}

pub struct Pair {
    pub server: Session,
    pub client: Session,
    /// Client → server.
    pub up: Netem,
    /// Server → client.
    pub down: Netem,
    pub now: Instant,
    pub server_events: Vec<SessionEvent>,
    pub client_events: Vec<SessionEvent>,
    pub server_got: Vec<Got>,
    pub client_got: Vec<Got>,
    /// Whether each side reads its messages (a stalled reader does not).
    pub server_reads: bool,
    pub client_reads: bool,
    buf: Vec<u8>,
    rx: Vec<u8>,
    t0: Instant,
}

impl Pair {
    /// Connected sessions with data channels on both, the given settings,
    /// and an established SCTP association: ICE, DTLS and the SCTP
    /// handshake cross a clean link, everything after it `up` and `down`.
    ///
    /// The handshake is kept off the lossy links because sctp-proto arms
    /// the INIT retransmission timer from the real clock (docs/decisions.md
    /// D33): a lost INIT would make the rest of the run depend on how fast
    /// the test ran. `init_over` runs it over given links instead.
    pub fn new(
        tag: &str,
        server_cfg: DataConfig,
        client_cfg: DataConfig,
        up: NetemConfig,
        down: NetemConfig,
    ) -> Self {
        Self::new_offering(tag, ClientVersion::Auto, server_cfg, client_cfg, up, down)
    }

    /// [`new`](Self::new) with a client that offers DTLS `version` (`Dtls12`: the
    /// server's own DTLS 1.2 engine carries the SCTP packets).
    pub fn new_offering(
        tag: &str,
        version: ClientVersion,
        server_cfg: DataConfig,
        client_cfg: DataConfig,
        up: NetemConfig,
        down: NetemConfig,
    ) -> Self {
        let mut p = Self::init_offering(
            tag,
            version,
            server_cfg,
            client_cfg,
            NetemConfig::default(),
            NetemConfig::default(),
        );
        p.wait_sctp();
        p.up = Netem::new(up);
        p.down = Netem::new(down);
        p
    }

    /// Connected sessions (ICE + DTLS over a clean link), data channels on
    /// both, the SCTP handshake under way over `up` and `down`.
    pub fn init_over(
        tag: &str,
        server_cfg: DataConfig,
        client_cfg: DataConfig,
        up: NetemConfig,
        down: NetemConfig,
    ) -> Self {
        Self::init_offering(tag, ClientVersion::Auto, server_cfg, client_cfg, up, down)
    }

    fn init_offering(
        tag: &str,
        version: ClientVersion,
        server_cfg: DataConfig,
        client_cfg: DataConfig,
        up: NetemConfig,
        down: NetemConfig,
    ) -> Self {
        let mut now = crate::common::t0();
        let (mut server, mut client) = webrtc_pair_offering(now, tag, addr(CLIENT), version);
        connect(&mut now, &mut server, &mut client, addr(CLIENT));
        server
            .enable_data_channels(server_cfg)
            .expect("server data config");
        client
            .enable_data_channels(client_cfg)
            .expect("client data config");
        let rx_len = server_cfg.max_message_size.max(client_cfg.max_message_size) as usize;
        let mut p = Self {
            server,
            client,
            up: Netem::new(up),
            down: Netem::new(down),
            now,
            server_events: Vec::new(),
            client_events: Vec::new(),
            server_got: Vec::new(),
            client_got: Vec::new(),
            server_reads: true,
            client_reads: true,
            buf: vec![0; 2048],
            rx: vec![0; rx_len + 1],
            t0: now,
        };
        p.drain();
        p
    }

    pub fn session(&mut self, side: Side) -> &mut Session {
        match side {
            Side::Server => &mut self.server,
            Side::Client => &mut self.client,
        }
    }

    pub fn events(&self, side: Side) -> &[SessionEvent] {
        match side {
            Side::Server => &self.server_events,
            Side::Client => &self.client_events,
        }
    }

    pub fn got(&self, side: Side) -> &[Got] {
        match side {
            Side::Server => &self.server_got,
            Side::Client => &self.client_got,
        }
    }

    /// Runs until `done` holds (checked after every step) or `limit` of
    /// simulated time passes; returns whether `done` held.
    pub fn run_until(&mut self, limit: Duration, mut done: impl FnMut(&Pair) -> bool) -> bool {
        let end = self.now + limit;
        // Bounded by simulated time: every turn advances it.
        while self.now < end {
            self.drain();
            if done(self) {
                return true;
            }
            self.advance(end);
        }
        self.drain();
        done(self)
    }

    /// Runs for `span` of simulated time.
    pub fn run_for(&mut self, span: Duration) {
        self.run_until(span, |_| false);
    }

    /// Advances time to the next timer or arrival (at most `end`) and runs
    /// the timers due.
    pub fn advance(&mut self, end: Instant) {
        let next = [
            self.server.poll_timeout(),
            self.client.poll_timeout(),
            self.up.next_arrival(),
            self.down.next_arrival(),
        ]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(end)
        .clamp(self.now + Duration::from_micros(100), end);
        self.now = next;
        self.server.handle_timeout(next);
        self.client.handle_timeout(next);
    }

    /// Moves everything due now: transmits onto the links, arrivals into the
    /// sessions, events and messages out, until nothing moves.
    pub fn drain(&mut self) {
        let now = self.now;
        let (s_addr, c_addr) = (addr(SERVER), addr(CLIENT));
        for _ in 0..10_000 {
            let mut moved = false;
            while let Some((n, dest)) = self.client.poll_transmit(now, &mut self.buf) {
                assert_eq!(dest, s_addr.into());
                if std::env::var("TRACE").is_ok() {
                    eprintln!(
                        "UP {} {} {:02x}",
                        (now - self.t0).as_micros(),
                        n,
                        self.buf[0]
                    );
                }
                self.up.send(now, &self.buf[..n]);
                moved = true;
            }
            while let Some((n, dest)) = self.server.poll_transmit(now, &mut self.buf) {
                assert_eq!(dest, c_addr.into());
                if std::env::var("TRACE").is_ok() {
                    eprintln!(
                        "DN {} {} {:02x}",
                        (now - self.t0).as_micros(),
                        n,
                        self.buf[0]
                    );
                }
                self.down.send(now, &self.buf[..n]);
                moved = true;
            }
            while let Some(mut p) = self.up.poll_recv(now) {
                let _ = self.server.handle_datagram(now, c_addr, &mut p);
                while self.server.poll_output().is_some() {}
                moved = true;
            }
            while let Some(mut p) = self.down.poll_recv(now) {
                let _ = self.client.handle_datagram(now, s_addr, &mut p);
                while self.client.poll_output().is_some() {}
                moved = true;
            }
            while let Some(e) = self.server.poll_event() {
                self.server_events.push(e);
                moved = true;
            }
            while let Some(e) = self.client.poll_event() {
                self.client_events.push(e);
                moved = true;
            }
            if self.server_reads {
                while let Some(m) = self.server.poll_data(&mut self.rx) {
                    self.server_got.push(got(now, m, &self.rx));
                    moved = true;
                }
            }
            if self.client_reads {
                while let Some(m) = self.client.poll_data(&mut self.rx) {
                    self.client_got.push(got(now, m, &self.rx));
                    moved = true;
                }
            }
            if !moved {
                return;
            }
        }
        panic!("data exchange did not settle");
    }

    /// The id of the channel `side` saw open with `label`, if any.
    pub fn opened(&self, side: Side, label: &str) -> Option<ChannelId> {
        self.events(side).iter().rev().find_map(|e| match e {
            SessionEvent::ChannelOpen { id, label: l, .. } if l == label => Some(*id),
            _ => None,
        })
    }

    /// Whether `side` saw channel `id` close.
    pub fn closed(&self, side: Side, id: ChannelId) -> bool {
        self.events(side)
            .iter()
            .any(|e| matches!(e, SessionEvent::ChannelClosed { id: i } if *i == id))
    }

    /// Runs until both sides saw the association up.
    pub fn wait_sctp(&mut self) {
        let up = |p: &Pair| {
            [Side::Server, Side::Client].iter().all(|&s| {
                p.events(s)
                    .iter()
                    .any(|e| matches!(e, SessionEvent::SctpConnected))
            })
        };
        assert!(
            self.run_until(Duration::from_secs(60), up),
            "SCTP association did not come up"
        );
    }
}

fn got(at: Instant, m: DataMeta, rx: &[u8]) -> Got {
    Got {
        at,
        channel: m.channel,
        binary: m.binary,
        data: rx[..m.len].to_vec(),
    }
}

/// A link with `loss` random loss and `delay` one way.
pub fn link(seed: u64, loss: f64, delay: Duration) -> NetemConfig {
    NetemConfig {
        seed,
        loss,
        delay,
        ..NetemConfig::default()
    }
}

/// Where the server's session is, for tests that need it.
pub fn server_addr() -> SocketAddr {
    addr(SERVER)
}
