//! `TestPeer`: a blocking client of the dataplane for tests and (later) `sluice-bench`. It is
//! one UDP socket (or one ICE-TCP connection, [`TestPeer::webrtc_tcp`]) plus one rtp-core [`Session`] in `WebRtcClient` mode (ICE controlling client,
//! DTLS client by default, SRTP; RFC 8445 §7.2, RFC 5763/5764, RFC 3711) or in plain-RTP mode,
//! driven with socket read timeouts: the same protocol code the shards run, not a second
//! implementation (issue 3, item 7).
//!
//! The peer publishes with [`TestPeer::publish_rtp`] (plain RTP in, SRTP on the wire) and
//! receives with [`TestPeer::recv_media`], which unprotects, recovers RTX into the original
//! stream, and on the way answers whatever the session needs (consent checks, RTCP reports,
//! its own NACKs). To receive a forwarded stream the peer must know its SSRC:
//! [`TestPeer::expect_stream`] adds it as a track of the client session.
//!
//! Data channels (SCTP over DTLS, DCEP; rtp-core's `datachannel`): with
//! [`TestPeer::enable_data_channels`] before the handshake the peer is the DTLS client's side of
//! the association (it sends INIT; its in-band channels get even ids), opens channels with
//! [`TestPeer::open_channel`], sends with [`TestPeer::send_data`] and receives with
//! [`TestPeer::recv_data`]; the server's channel events are kept for
//! [`TestPeer::wait_channel_open`].
//!
//! Only for loopback tests and load generation: it allocates freely and reads the clock.
#![allow(clippy::disallowed_methods)] // a blocking driver reads the clock by design

use std::collections::VecDeque;
use std::io;
use std::net::{SocketAddr, UdpSocket};

mod data;
mod send;
mod wire;
use std::time::{Duration, Instant, SystemTime};
use wire::Wire;

use rtp_core::datachannel::{ChannelId, DataError};
use rtp_core::dtls::{ClientVersion, DtlsCert, DtlsRole, Fingerprint};
use rtp_core::forward::{Codec, MediaKind};
use rtp_core::ice::IceClientConfig;
use rtp_core::session::{
    ExtIds, LayerSsrc, MediaMeta, Session, SessionConfig, SessionError, SessionEvent, SessionMode,
    SessionOutput, SessionStats, UpTrackConfig,
};
use rtp_core::RtpView;

/// Largest datagram the peer reads or writes.
const DATAGRAM: usize = 2048;
/// Shortest socket read timeout (`set_read_timeout` refuses zero).
const MIN_WAIT: Duration = Duration::from_millis(1);
/// Data-channel events kept for the caller (older ones are dropped).
const MAX_EVENTS: usize = 1024;

/// Why a peer could not be built, connect, or send.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PeerError {
    #[error("socket: {0}")]
    Io(#[from] io::Error),
    #[error("session: {0}")]
    Session(#[from] SessionError),
    #[error("server fingerprint: {0}")]
    Fingerprint(String),
    #[error("DTLS certificate: {0}")]
    Cert(String),
    #[error("not connected after {0:?}")]
    Timeout(Duration),
    /// The handshake failed (e.g. the server's fatal alert arrived).
    #[error("DTLS failed: {0}")]
    DtlsFailed(String),
    #[error("RTCP: {0}")]
    Rtcp(String),
    #[error("data channel: {0}")]
    Data(#[from] DataError),
}

/// ICE username fragment and password of one side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IceCreds {
    pub ufrag: String,
    pub pwd: String,
}

impl IceCreds {
    pub fn new(ufrag: impl Into<String>, pwd: impl Into<String>) -> Self {
        Self {
            ufrag: ufrag.into(),
            pwd: pwd.into(),
        }
    }
}

/// A WebRTC peer's settings: both sides' ICE credentials, the server's fingerprint (the SDP
/// value, `"sha-256 AB:…"`, as in `Hello.fingerprint`), our DTLS role and certificate.
#[derive(Debug)]
pub struct WebRtcPeerConfig {
    /// Our credentials (second half of the USERNAME we send).
    pub local: IceCreds,
    /// The server session's credentials (`CreateSession.ice`).
    pub remote: IceCreds,
    pub server_fingerprint: String,
    /// `Client` (default; the server session is then `DtlsRole::Server`) or `Server`.
    pub dtls_role: DtlsRole,
    /// Our certificate; its fingerprint goes into `CreateSession.remote_fingerprint`.
    pub cert: DtlsCert,
    /// Where the socket binds; `127.0.0.1:0` unless a test wants otherwise.
    pub bind: SocketAddr,
    /// The DTLS version a client offers: `Auto` (1.2 and 1.3, like a browser: the dataplane's
    /// dimpl answers) or `Dtls12` (like OpenSSL-based tools: its own DTLS 1.2 server answers).
    pub dtls_version: ClientVersion,
}

impl WebRtcPeerConfig {
    /// DTLS client role, a fresh certificate, bound to an ephemeral loopback port.
    pub fn new(
        local: IceCreds,
        remote: IceCreds,
        server_fingerprint: &str,
    ) -> Result<Self, PeerError> {
        Ok(Self {
            local,
            remote,
            server_fingerprint: server_fingerprint.to_string(),
            dtls_role: DtlsRole::Client,
            cert: generate_cert()?,
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            dtls_version: ClientVersion::Auto,
        })
    }
}

/// A certificate for a peer (its fingerprint is what the server session must expect).
pub fn generate_cert() -> Result<DtlsCert, PeerError> {
    DtlsCert::generate(SystemTime::now()).map_err(|e| PeerError::Cert(e.to_string()))
}

/// One media packet the peer received, unprotected (and unpacked when it came as RTX).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedRtp {
    pub ssrc: u32,
    pub seq: u16,
    pub ts: u32,
    pub pt: u8,
    pub marker: bool,
    pub payload: Vec<u8>,
    /// It arrived as an RTX retransmission (RFC 4588) and was recovered.
    pub recovered: bool,
}

/// One data-channel message the peer received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedData {
    pub channel: ChannelId,
    pub binary: bool,
    pub data: Vec<u8>,
}

/// What a [`TestPeer`] counted itself (the session's own counters are in
/// [`TestPeer::session_stats`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PeerStats {
    pub datagrams_sent: u64,
    pub datagrams_received: u64,
    pub media_received: u64,
    /// Media datagrams the caller's drop filter discarded before the session saw them.
    pub dropped_on_purpose: u64,
    /// Datagrams the session refused (`handle_datagram` errors).
    pub refused: u64,
}

/// See the module docs.
#[derive(Debug)]
pub struct TestPeer {
    socket: Wire,
    session: Session<u32>,
    server: SocketAddr,
    rx: Vec<u8>,
    tx: Vec<u8>,
    stats: PeerStats,
    /// Data-channel events (`ChannelOpen`, `ChannelClosed`, `Sctp*`), oldest first.
    data_events: VecDeque<SessionEvent>,
    /// Why the DTLS handshake failed, until `handshake` reports it.
    dtls_failed: Option<String>,
    /// Receive buffer for data-channel messages (our max-message-size).
    data_rx: Vec<u8>,
    /// Simulated loss of every datagram either way: (xorshift state, percent).
    loss: Option<(u64, u32)>,
}

impl TestPeer {
    /// Binds `cfg.bind` and builds the client session; nothing is sent yet. The peer's
    /// fingerprint ([`TestPeer::fingerprint`]) and address can then go into `CreateSession`.
    pub fn webrtc(server: SocketAddr, cfg: &WebRtcPeerConfig) -> Result<Self, PeerError> {
        Self::webrtc_on(Wire::Udp(UdpSocket::bind(cfg.bind)?), server, cfg)
    }

    /// [`TestPeer::webrtc`] over ICE-TCP: connects to `server`, the dataplane's TCP media port,
    /// and frames everything per RFC 4571. `recv_buffer` sets the connection's `SO_RCVBUF`
    /// (a small one and a slow reader back the connection up soon).
    pub fn webrtc_tcp(
        server: SocketAddr,
        cfg: &WebRtcPeerConfig,
        recv_buffer: Option<usize>,
    ) -> Result<Self, PeerError> {
        Self::webrtc_on(Wire::tcp(server, recv_buffer)?, server, cfg)
    }

    fn webrtc_on(
        socket: Wire,
        server: SocketAddr,
        cfg: &WebRtcPeerConfig,
    ) -> Result<Self, PeerError> {
        let fp = Fingerprint::parse_sdp(&cfg.server_fingerprint)
            .map_err(|e| PeerError::Fingerprint(e.to_string()))?;
        let mut ice = IceClientConfig::new(
            (&cfg.local.ufrag, &cfg.local.pwd),
            (&cfg.remote.ufrag, &cfg.remote.pwd),
            server,
        );
        // Distinct transaction ids per peer without a random source.
        ice.seed = seed_of(&cfg.local.ufrag);
        ice.tie_breaker ^= ice.seed;
        let mode = SessionMode::WebRtcClient {
            ice,
            dtls_role: cfg.dtls_role,
            remote_fingerprint: Some(fp),
        };
        Self::build(socket, server, mode, &cfg.cert, cfg.dtls_version)
    }

    /// `webrtc` then [`TestPeer::handshake`]: the brief's one-call connect.
    pub fn connect(
        server: SocketAddr,
        cfg: &WebRtcPeerConfig,
        timeout: Duration,
    ) -> Result<Self, PeerError> {
        let mut peer = Self::webrtc(server, cfg)?;
        peer.handshake(timeout)?;
        Ok(peer)
    }

    /// A plain-RTP peer (no ICE, DTLS or SRTP) bound to an ephemeral loopback port; usable at
    /// once. Its address goes into `TransportMode::PlainRtp.remote`.
    pub fn plain(server: SocketAddr) -> Result<Self, PeerError> {
        Self::plain_on(
            UdpSocket::bind(SocketAddr::from(([127, 0, 0, 1], 0)))?,
            server,
        )
    }

    /// A plain-RTP peer on a socket the caller bound.
    pub fn plain_on(socket: UdpSocket, server: SocketAddr) -> Result<Self, PeerError> {
        let cert = generate_cert()?;
        Self::build(
            Wire::Udp(socket),
            server,
            SessionMode::PlainRtp { remote: server },
            &cert,
            ClientVersion::Auto,
        )
    }

    fn build(
        socket: Wire,
        server: SocketAddr,
        mode: SessionMode,
        cert: &DtlsCert,
        dtls_version: ClientVersion,
    ) -> Result<Self, PeerError> {
        let mut config = SessionConfig::new(mode);
        config.dtls.client_version = dtls_version;
        let session = Session::new(Instant::now(), config, cert)?;
        Ok(Self {
            socket,
            session,
            server,
            rx: vec![0; DATAGRAM],
            tx: vec![0; DATAGRAM],
            stats: PeerStats::default(),
            data_events: VecDeque::new(),
            dtls_failed: None,
            data_rx: Vec::new(),
            loss: None,
        })
    }

    /// Runs ICE checks and the DTLS handshake until the session is connected (SRTP keyed and
    /// a nominated pair), or `timeout` passes.
    pub fn handshake(&mut self, timeout: Duration) -> Result<(), PeerError> {
        let deadline = Instant::now() + timeout;
        self.flush()?;
        while !self.session.is_connected() {
            if let Some(reason) = self.dtls_failed.take() {
                return Err(PeerError::DtlsFailed(reason));
            }
            if Instant::now() >= deadline {
                return Err(PeerError::Timeout(timeout));
            }
            self.step(deadline, None)?;
        }
        self.flush()?;
        Ok(())
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.socket
            .local_addr()
            .expect("a bound UDP socket or a connected TCP stream has an address")
    }

    /// The UDP socket, for tests that send raw bytes from the peer's own address (`None` over
    /// ICE-TCP).
    pub fn socket(&self) -> Option<&UdpSocket> {
        match &self.socket {
            Wire::Udp(s) => Some(s),
            Wire::Tcp(_) => None,
        }
    }

    pub fn server(&self) -> SocketAddr {
        self.server
    }

    pub fn is_connected(&self) -> bool {
        self.session.is_connected()
    }

    pub fn session_stats(&self) -> &SessionStats {
        self.session.stats()
    }

    pub fn stats(&self) -> PeerStats {
        self.stats
    }

    /// Our RTCP sender SSRC.
    pub fn rtcp_ssrc(&self) -> u32 {
        self.session.local_ssrc()
    }

    /// Receive a forwarded stream: `ssrc` (and `rtx_ssrc`, with `rtx_pt`) as the server's
    /// Subscribe named them. Without this the session refuses the stream (unknown SSRC).
    pub fn expect_stream(
        &mut self,
        kind: MediaKind,
        codec: Codec,
        clock_rate: u32,
        pt: u8,
        ssrc: u32,
        rtx: Option<(u8, u32)>,
    ) -> Result<(), PeerError> {
        self.session.add_up_track(UpTrackConfig {
            kind,
            codec,
            clock_rate,
            payload_type: pt,
            rtx_payload_type: rtx.map(|(pt, _)| pt),
            layers: vec![LayerSsrc {
                ssrc: Some(ssrc),
                rtx_ssrc: rtx.map(|(_, s)| s),
                rid: None,
            }],
            ext: ExtIds::default(),
            e2ee: false,
            mid: None,
        })?;
        Ok(())
    }

    /// The next media packet, or `None` when `timeout` passes first. Control traffic on the
    /// way (STUN, DTLS, RTCP) is handled, and the session's own packets are sent.
    pub fn recv_media(&mut self, timeout: Duration) -> Result<Option<ReceivedRtp>, PeerError> {
        self.recv_media_dropping(timeout, |_, _| false)
    }

    /// [`TestPeer::recv_media`], but media datagrams for which `drop(ssrc, seq)` is true (read
    /// from the clear SRTP header) are discarded before the session sees them: simulated loss.
    pub fn recv_media_dropping(
        &mut self,
        timeout: Duration,
        mut drop: impl FnMut(u32, u16) -> bool,
    ) -> Result<Option<ReceivedRtp>, PeerError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(m) = self.step(deadline, Some(&mut drop))? {
                return Ok(Some(m));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
        }
    }

    /// Answers whatever arrives and runs the session's timers until `deadline`, discarding
    /// media; for a publisher that must keep its consent and reports alive.
    pub fn pump(&mut self, deadline: Instant) -> Result<(), PeerError> {
        while Instant::now() < deadline {
            self.step(deadline, None)?;
        }
        self.flush()
    }

    /// One wait on the socket (until the next session timer or `deadline`), the datagram it
    /// brought, timers, and everything the session wants sent.
    fn step(
        &mut self,
        deadline: Instant,
        drop: Option<&mut dyn FnMut(u32, u16) -> bool>,
    ) -> Result<Option<ReceivedRtp>, PeerError> {
        let now = Instant::now();
        let wake = self
            .session
            .poll_timeout()
            .map_or(deadline, |t| t.min(deadline));
        self.socket
            .set_read_timeout(wake.saturating_duration_since(now).max(MIN_WAIT))?;
        let mut media = None;
        match self.socket.recv_from(&mut self.rx) {
            Ok((n, src)) => {
                self.stats.datagrams_received += 1;
                if self.lose() {
                    self.stats.dropped_on_purpose += 1;
                } else {
                    media = self.on_datagram(n, src, drop);
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(e) => return Err(e.into()),
        }
        let now = Instant::now();
        if self.session.poll_timeout().is_some_and(|t| t <= now) {
            self.session.handle_timeout(now);
        }
        self.flush()?;
        self.keep_data_events();
        Ok(media)
    }

    /// Keeps the session's data-channel events and a DTLS failure (the rest has no reader here).
    fn keep_data_events(&mut self) {
        // Bounded by the session's event queues.
        while let Some(e) = self.session.poll_event() {
            if let SessionEvent::DtlsFailed { reason } = &e {
                self.dtls_failed = Some(reason.clone());
            }
            if matches!(
                e,
                SessionEvent::ChannelOpen { .. }
                    | SessionEvent::ChannelClosed { .. }
                    | SessionEvent::SctpConnected
                    | SessionEvent::SctpClosed
            ) {
                if self.data_events.len() == MAX_EVENTS {
                    self.data_events.pop_front();
                }
                self.data_events.push_back(e);
            }
        }
    }

    fn on_datagram(
        &mut self,
        n: usize,
        src: SocketAddr,
        drop: Option<&mut dyn FnMut(u32, u16) -> bool>,
    ) -> Option<ReceivedRtp> {
        let pkt = &mut self.rx[..n];
        // RTP (not RTCP: payload types 200..=206 with the marker bit) by RFC 5761 §4.
        let is_rtp = n >= 12 && (128..=191).contains(&pkt[0]) && !(192..=223).contains(&pkt[1]);
        if let (true, Some(drop)) = (is_rtp, drop) {
            let ssrc = u32::from_be_bytes([pkt[8], pkt[9], pkt[10], pkt[11]]);
            let seq = u16::from_be_bytes([pkt[2], pkt[3]]);
            if drop(ssrc, seq) {
                self.stats.dropped_on_purpose += 1;
                return None;
            }
        }
        let rtx_before = self.session.stats().rtx_in;
        let out = match self.session.handle_datagram(Instant::now(), src, pkt) {
            Ok(o) => o,
            Err(_) => {
                self.stats.refused += 1;
                return None;
            }
        };
        let recovered = self.session.stats().rtx_in > rtx_before;
        // The client has no DownTracks: nothing else it outputs needs an answer here.
        while self.session.poll_output().is_some() {}
        let SessionOutput::Media {
            meta: MediaMeta { len, .. },
            ..
        } = out
        else {
            return None;
        };
        let v = RtpView::parse(&self.rx[..len]).ok()?;
        self.stats.media_received += 1;
        Some(ReceivedRtp {
            ssrc: v.ssrc(),
            seq: v.seq(),
            ts: v.ts(),
            pt: v.payload_type(),
            marker: v.marker(),
            payload: v.payload().to_vec(),
            recovered,
        })
    }

    /// Sends every control datagram the session has queued (STUN, DTLS, RTCP).
    /// From now on, `percent` % of the datagrams this peer sends or receives are discarded,
    /// picked by a generator seeded with `seed` (the same seed loses the same datagrams).
    pub fn set_loss(&mut self, seed: u64, percent: u32) {
        self.loss = (percent > 0).then_some((seed | 1, percent.min(100)));
    }

    /// Whether simulated loss takes the next datagram.
    fn lose(&mut self) -> bool {
        let Some((state, percent)) = self.loss.as_mut() else {
            return false;
        };
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        (*state % 100) < u64::from(*percent)
    }

    fn flush(&mut self) -> Result<(), PeerError> {
        // Bounded by the session's queues.
        while let Some((n, dst)) = self.session.poll_transmit(Instant::now(), &mut self.tx) {
            if self.lose() {
                self.stats.dropped_on_purpose += 1;
                continue;
            }
            match self.socket.send_to(&self.tx[..n], dst.addr) {
                Ok(_) => self.stats.datagrams_sent += 1,
                // A full loopback buffer loses the datagram, as a network would.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }
}

/// FNV-1a of the ufrag: a per-peer seed for ICE transaction ids.
fn seed_of(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    h | 1
}

#[cfg(test)]
mod tests {
    use super::*;

    use rtp_core::datachannel::{ChannelConfig, DataConfig};
    use rtp_core::ice::IceConfig;

    /// An rtp-core server session (ICE-lite, DTLS server, data channels) on its own loopback
    /// socket and thread: it opens a channel called "hello" and echoes every message back on
    /// the channel it came on, until `stop` is set.
    fn echo_server(
        peer_fp: Fingerprint,
        stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    ) -> (SocketAddr, String, std::thread::JoinHandle<()>) {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let addr = socket.local_addr().expect("addr");
        let cert = generate_cert().expect("cert");
        let fp = cert.fingerprint().to_sdp();
        let mode = SessionMode::WebRtc {
            ice: IceConfig::new("srvu", "server-password-0123456789"),
            dtls_role: DtlsRole::Server,
            remote_fingerprint: Some(peer_fp),
        };
        let mut s: Session<u32> =
            Session::new(Instant::now(), SessionConfig::new(mode), &cert).expect("server");
        s.enable_data_channels(DataConfig::default()).expect("data");
        let t = std::thread::spawn(move || {
            let (mut buf, mut msg) = (vec![0u8; DATAGRAM], vec![0u8; 65_536]);
            socket
                .set_read_timeout(Some(Duration::from_millis(5)))
                .expect("timeout");
            let mut opened = false;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if let Ok((n, src)) = socket.recv_from(&mut buf) {
                    let _ = s.handle_datagram(Instant::now(), src, &mut buf[..n]);
                    while s.poll_output().is_some() {}
                }
                s.handle_timeout(Instant::now());
                while let Some(e) = s.poll_event() {
                    if matches!(e, SessionEvent::SctpConnected) && !opened {
                        s.open_channel(ChannelConfig::reliable("hello"))
                            .expect("open");
                        opened = true;
                    }
                }
                while let Some(m) = s.poll_data(&mut msg) {
                    s.send_data(Instant::now(), m.channel, m.binary, &msg[..m.len])
                        .expect("echo");
                }
                while let Some((n, dst)) = s.poll_transmit(Instant::now(), &mut buf) {
                    let _ = socket.send_to(&buf[..n], dst.addr);
                }
            }
        });
        (addr, fp, t)
    }

    #[test]
    fn a_webrtc_peer_opens_data_channels_as_the_dtls_client() {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let cert = generate_cert().expect("cert");
        let (server, server_fp, t) = echo_server(cert.fingerprint(), stop.clone());
        let mut cfg = WebRtcPeerConfig::new(
            IceCreds::new("peeru", "peer-password-0123456789"),
            IceCreds::new("srvu", "server-password-0123456789"),
            &server_fp,
        )
        .expect("config");
        cfg.cert = cert;
        let mut peer = TestPeer::webrtc(server, &cfg).expect("peer");
        peer.enable_data_channels(DataConfig::default())
            .expect("data");
        peer.handshake(Duration::from_secs(5)).expect("connected");
        let reliable = peer
            .open_channel(ChannelConfig::reliable("_reliable"))
            .expect("open");
        let lossy = peer
            .open_channel(ChannelConfig::lossy("_lossy"))
            .expect("open");
        assert_eq!(
            (reliable.0, lossy.0),
            (0, 2),
            "the DTLS client's ids are even"
        );
        let hello = peer
            .wait_channel_open("hello", Duration::from_secs(5))
            .expect("the server's channel");
        assert_eq!(hello.0 % 2, 1, "the DTLS server's ids are odd");
        for i in 0..20u8 {
            peer.send_data(reliable, false, format!("r{i}").as_bytes())
                .expect("send");
            peer.send_data(lossy, true, &[i; 300]).expect("send");
        }
        let mut echoed = Vec::new();
        while echoed.len() < 40 {
            match peer.recv_data(Duration::from_secs(5)).expect("recv") {
                Some(m) => echoed.push(m),
                None => break,
            }
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        t.join().expect("server thread");
        let texts: Vec<Vec<u8>> = echoed
            .iter()
            .filter(|m| m.channel == reliable)
            .map(|m| m.data.clone())
            .collect();
        let want: Vec<Vec<u8>> = (0..20).map(|i| format!("r{i}").into_bytes()).collect();
        assert_eq!(texts, want, "reliable echo, in order");
        assert_eq!(
            echoed
                .iter()
                .filter(|m| m.channel == lossy && m.binary)
                .count(),
            20,
            "loopback loses nothing"
        );
        let events = peer.take_data_events();
        assert!(events.contains(&SessionEvent::SctpConnected));
    }

    #[test]
    fn plain_peers_exchange_media_over_loopback() {
        let a_sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let b_sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let (a_addr, b_addr) = (
            a_sock.local_addr().expect("a"),
            b_sock.local_addr().expect("b"),
        );
        let mut a = TestPeer::plain_on(a_sock, b_addr).expect("peer a");
        let mut b = TestPeer::plain_on(b_sock, a_addr).expect("peer b");
        a.expect_stream(MediaKind::Audio, Codec::Opus, 48_000, 111, 0xAB, None)
            .expect("track");
        for seq in 0..5u16 {
            b.publish_rtp(
                seq,
                u32::from(seq) * 960,
                0xAB,
                111,
                false,
                &[seq as u8; 40],
            )
            .expect("send");
        }
        for seq in 0..5u16 {
            let m = a
                .recv_media(Duration::from_secs(2))
                .expect("recv")
                .expect("media in time");
            assert_eq!((m.ssrc, m.seq, m.pt), (0xAB, seq, 111));
            assert_eq!(m.payload, vec![seq as u8; 40]);
            assert!(!m.recovered);
        }
        assert_eq!(a.stats().media_received, 5);
    }
}
