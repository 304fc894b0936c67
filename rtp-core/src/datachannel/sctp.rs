//! [`Sctp`]: one session's SCTP association over DTLS (RFC 8261), in the
//! sans-IO shape of the other state machines, on `sctp-proto`.
//!
//! The DTLS server side (the SFU's usual role) waits for the peer's INIT;
//! the DTLS client side (our test peer, the load generator) sends it once
//! DTLS is up. Both keep the first association only: browsers resend INIT on
//! slow links (str0m#642), and once an association exists new ones are
//! refused, so a peer cannot make the endpoint's tables grow.
//!
//! Clock: sctp-proto's `Endpoint::connect` reads `Instant::now()` once, to
//! arm the INIT retransmission timer. Only the client role calls it (the
//! SFU never does); see docs/decisions.md D33 for why that is acceptable and
//! what it changes in tests. Every other call here takes `now`.

use std::collections::VecDeque;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use sctp_proto::{
    Association, AssociationHandle, ClientConfig, DatagramEvent, Endpoint, EndpointConfig, Event,
    Payload, ServerConfig, TransportConfig,
};

use super::DataConfig;

/// Largest DATA payload per SCTP packet. An SCTP packet is then at most
/// 1080 + 28 bytes, and its DTLS record (at most 37 bytes of DTLS 1.2 AEAD
/// overhead) fits dimpl's 1150-byte datagrams.
pub(super) const MAX_PAYLOAD: u32 = 1080;
/// Outbound SCTP packets waiting for DTLS; one `poll_transmit` of the
/// association yields at most a congestion window of them.
const MAX_OUT: usize = 256;
/// SCTP over DTLS has no addresses (RFC 8261 §4); sctp-proto wants one.
const FAKE_ADDR: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::UNSPECIFIED), 5000);
/// Retransmission timeouts. RFC 9260's 1 s minimum is for the open internet;
/// WebRTC stacks go lower because a data channel's latency is the point
/// (dcsctp's minimum is a few hundred ms). The first RTO is 1 s, as TCP's.
const RTO_INITIAL: Duration = Duration::from_millis(1000);
const RTO_MIN: Duration = Duration::from_millis(200);
const RTO_MAX: Duration = Duration::from_secs(10);

/// Where the association is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum SctpState {
    /// Waiting for DTLS (client) or for the peer's INIT (server).
    Idle,
    /// INIT sent or received, handshake running.
    Connecting,
    /// Data may flow.
    Established,
    /// Lost, aborted or never possible again.
    Closed,
}

/// See the module docs.
pub(super) struct Sctp {
    endpoint: Endpoint,
    handle: Option<AssociationHandle>,
    assoc: Option<Association>,
    /// The client role's settings until it connects.
    client: Option<ClientConfig>,
    out: VecDeque<Bytes>,
    state: SctpState,
    last_now: Instant,
}

impl Sctp {
    /// An association-to-be; `client` sends INIT once [`connect`](Self::connect) is called.
    pub(super) fn new(cfg: &DataConfig, client: bool, now: Instant) -> Self {
        let transport = Arc::new(transport_config(cfg));
        let mut ep = EndpointConfig::new();
        ep.max_payload_size(MAX_PAYLOAD);
        // A server config even for the client role: sctp-proto unwraps it on
        // any INIT, and a client refuses new associations anyway.
        let mut server = ServerConfig::new();
        server.transport = Arc::clone(&transport);
        let mut endpoint = Endpoint::new(Arc::new(ep), Some(Arc::new(server)));
        let client = client.then(|| {
            let mut c = ClientConfig::new();
            c.transport = transport;
            c
        });
        if client.is_some() {
            endpoint.reject_new_associations();
        }
        Self {
            endpoint,
            handle: None,
            assoc: None,
            client,
            out: VecDeque::new(),
            state: SctpState::Idle,
            last_now: now,
        }
    }

    pub(super) fn state(&self) -> SctpState {
        self.state
    }

    /// DTLS is up: the client role sends its INIT now (sctp-proto reads the
    /// clock here, see the module docs); the server role keeps waiting.
    pub(super) fn connect(&mut self) {
        let Some(cfg) = self.client.take() else {
            return;
        };
        match self.endpoint.connect(cfg, FAKE_ADDR) {
            Ok((handle, assoc)) => {
                self.handle = Some(handle);
                self.assoc = Some(assoc);
                self.state = SctpState::Connecting;
            }
            Err(_) => self.state = SctpState::Closed,
        }
    }

    /// One SCTP packet from a DTLS application record.
    pub(super) fn handle_input(&mut self, now: Instant, packet: Vec<u8>) {
        if self.state == SctpState::Closed {
            return;
        }
        let now = self.advance(now);
        let Some((handle, ev)) =
            self.endpoint
                .handle(now, FAKE_ADDR, None, None, Bytes::from(packet))
        else {
            return;
        };
        match ev {
            DatagramEvent::NewAssociation(a) if self.assoc.is_none() => {
                self.handle = Some(handle);
                self.assoc = Some(a);
                self.state = SctpState::Connecting;
                self.endpoint.reject_new_associations();
            }
            // A second association (only possible before the refusal above
            // took effect for a simultaneous INIT): keep the first.
            DatagramEvent::NewAssociation(_) => {}
            DatagramEvent::AssociationEvent(e) if Some(handle) == self.handle => {
                if let Some(a) = self.assoc.as_mut() {
                    a.handle_event(e);
                }
            }
            DatagramEvent::AssociationEvent(_) => {}
        }
        self.forward_endpoint_events();
    }

    pub(super) fn handle_timeout(&mut self, now: Instant) {
        let now = self.advance(now);
        if let Some(a) = self.assoc.as_mut() {
            a.handle_timeout(now);
        }
        self.forward_endpoint_events();
    }

    pub(super) fn poll_timeout(&self) -> Option<Instant> {
        self.assoc.as_ref()?.poll_timeout()
    }

    /// The next SCTP packet to put in a DTLS record.
    pub(super) fn poll_packet(&mut self, now: Instant) -> Option<Bytes> {
        if self.out.is_empty() {
            let now = self.advance(now);
            while let Some(t) = self.endpoint.poll_transmit() {
                self.queue(t.payload);
            }
            if let Some(t) = self.assoc.as_mut().and_then(|a| a.poll_transmit(now)) {
                self.queue(t.payload);
            }
        }
        self.out.pop_front()
    }

    /// The association's next event; tracks the state it implies.
    pub(super) fn poll_event(&mut self) -> Option<Event> {
        let e = self.assoc.as_mut()?.poll()?;
        match e {
            Event::Connected => self.state = SctpState::Established,
            Event::HandshakeFailed { .. } | Event::AssociationLost { .. } => {
                self.state = SctpState::Closed;
            }
            _ => {}
        }
        Some(e)
    }

    /// The association, for stream operations (none before INIT).
    pub(super) fn assoc(&mut self) -> Option<&mut Association> {
        self.assoc.as_mut()
    }

    /// Ends the association (a peer broke a limit). Nothing more is sent or
    /// accepted; the caller closes its channels.
    pub(super) fn abort(&mut self) {
        // Dropped, not just closed: its `AssociationLost` would report the
        // end a second time, and its packets are ignored from now on.
        if let Some(mut a) = self.assoc.take() {
            let _ = a.close();
        }
        self.out.clear();
        self.state = SctpState::Closed;
    }

    fn queue(&mut self, payload: Payload) {
        if let Payload::RawEncode(packets) = payload {
            for p in packets {
                // Bounded: sctp-proto emits at most a congestion window per
                // poll, and `poll_packet` only polls again once this is empty.
                if self.out.len() < MAX_OUT {
                    self.out.push_back(p);
                }
            }
        }
    }

    fn forward_endpoint_events(&mut self) {
        let (Some(a), Some(h)) = (self.assoc.as_mut(), self.handle) else {
            return;
        };
        while let Some(e) = a.poll_endpoint_event() {
            if let Some(back) = self.endpoint.handle_event(h, e) {
                a.handle_event(back);
            }
        }
    }

    /// sctp-proto's timers subtract instants: keep its time monotonic.
    fn advance(&mut self, now: Instant) -> Instant {
        self.last_now = self.last_now.max(now);
        self.last_now
    }
}

impl std::fmt::Debug for Sctp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sctp")
            .field("state", &self.state)
            .field("queued", &self.out.len())
            .finish_non_exhaustive()
    }
}

fn transport_config(cfg: &DataConfig) -> TransportConfig {
    TransportConfig::default()
        .with_max_receive_message_size(cfg.max_message_size)
        // Until the peer's SDP says otherwise (RFC 8841 §6.1: 64 KiB when absent).
        .with_max_send_message_size(65_536)
        .with_max_receive_buffer_size(cfg.receive_buffer)
        .with_max_num_inbound_streams(cfg.max_streams)
        .with_max_num_outbound_streams(cfg.max_streams)
        // ICE decides when the peer is gone, not SCTP (str0m does the same).
        .with_max_init_retransmits(None)
        .with_max_data_retransmits(None)
        .with_rto_initial_ms(RTO_INITIAL.as_millis() as u64)
        .with_rto_min_ms(RTO_MIN.as_millis() as u64)
        .with_rto_max_ms(RTO_MAX.as_millis() as u64)
        .with_local_port(cfg.sctp_port)
        .with_remote_port(cfg.remote_sctp_port)
}
