//! Shared tooling of the `session_*` scenario tests: certificates, session
//! pairs, an in-memory exchange of control datagrams, time advanced by hand,
//! and a test "shard" that fans published packets out and keeps the
//! packet history the Session relies on the shard for.
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use rtp_core::dtls::{ClientVersion, DtlsCert, DtlsRole};
use rtp_core::forward::{Codec, MediaKind};
use rtp_core::ice::{IceClientConfig, IceConfig};
use rtp_core::packet::{write_rtp_header, RtpHeader};
use rtp_core::session::{
    DownTrackConfig, ExtIds, LayerSsrc, Session, SessionConfig, SessionMode, SessionOutput,
    UpTrackConfig,
};

pub const SERVER: &str = "127.0.0.1:5000";
pub const TWCC_ID: u8 = 3;
pub const PUB_SSRC: u32 = 0x1111_0001;
pub const PUB_RTX_SSRC: u32 = 0x1111_0002;
pub const PT_VP8: u8 = 96;
pub const PT_RTX: u8 = 97;
pub const DOWN_SSRC: u32 = 0x2222_0001;
pub const DOWN_RTX_SSRC: u32 = 0x2222_0002;
pub const PT_DOWN: u8 = 100;
pub const PT_DOWN_RTX: u8 = 101;

pub fn addr(s: &str) -> SocketAddr {
    s.parse().expect("test address")
}

#[allow(clippy::disallowed_methods)] // the one clock read a test needs
pub fn t0() -> Instant {
    Instant::now()
}

pub fn cert() -> DtlsCert {
    DtlsCert::generate(SystemTime::UNIX_EPOCH + Duration::from_secs(1_750_000_000))
        .expect("certificate")
}

/// A WebRTC server session and the client that connects to it from `client_addr`.
pub fn webrtc_pair(now: Instant, tag: &str, client_addr: SocketAddr) -> (Session, Session) {
    webrtc_pair_offering(now, tag, client_addr, ClientVersion::Auto)
}

/// [`webrtc_pair`] with a client that offers `version` (`Dtls12` reaches the server's own
/// DTLS 1.2 engine, `Auto` and `Dtls13` dimpl's).
pub fn webrtc_pair_offering(
    now: Instant,
    tag: &str,
    client_addr: SocketAddr,
    version: ClientVersion,
) -> (Session, Session) {
    let (sc, cc) = (cert(), cert());
    let srv_ufrag = format!("s{tag}");
    let srv_pwd = format!("server-password-{tag}-0123456789");
    let cli_ufrag = format!("c{tag}");
    let cli_pwd = format!("client-password-{tag}-0123456789");
    let server = Session::new(
        now,
        SessionConfig::new(SessionMode::WebRtc {
            ice: IceConfig::new(srv_ufrag.clone(), srv_pwd.clone()),
            dtls_role: DtlsRole::Server,
            remote_fingerprint: Some(cc.fingerprint()),
        }),
        &sc,
    )
    .expect("server session");
    let mut ice =
        IceClientConfig::new((&cli_ufrag, &cli_pwd), (&srv_ufrag, &srv_pwd), addr(SERVER));
    ice.seed = tag.len() as u64 + 7;
    let mut config = SessionConfig::new(SessionMode::WebRtcClient {
        ice,
        dtls_role: DtlsRole::Client,
        remote_fingerprint: Some(sc.fingerprint()),
    });
    config.dtls.client_version = version;
    let client = Session::new(now, config, &cc).expect("client session");
    let _ = client_addr;
    (server, client)
}

/// Plain-RTP sessions on both ends.
pub fn plain_pair(now: Instant, client_addr: SocketAddr) -> (Session, Session) {
    let c = cert();
    let server = Session::new(
        now,
        SessionConfig::new(SessionMode::PlainRtp {
            remote: client_addr,
        }),
        &c,
    )
    .expect("plain server");
    let client = Session::new(
        now,
        SessionConfig::new(SessionMode::PlainRtp {
            remote: addr(SERVER),
        }),
        &c,
    )
    .expect("plain client");
    (server, client)
}

/// Move control datagrams both ways until neither side has any; returns
/// the outputs the receiving sides produced (media included).
pub fn exchange(
    now: Instant,
    a: &mut Session,
    a_addr: SocketAddr,
    b: &mut Session,
    b_addr: SocketAddr,
) -> usize {
    let mut buf = vec![0u8; 2048];
    let mut moved = 0;
    for _ in 0..1000 {
        let mut any = false;
        while let Some((n, dest)) = a.poll_transmit(now, &mut buf) {
            assert_eq!(dest, b_addr.into());
            let _ = b.handle_datagram(now, a_addr, &mut buf[..n]);
            while b.poll_output().is_some() {}
            any = true;
            moved += 1;
        }
        while let Some((n, dest)) = b.poll_transmit(now, &mut buf) {
            assert_eq!(dest, a_addr.into());
            let _ = a.handle_datagram(now, b_addr, &mut buf[..n]);
            while a.poll_output().is_some() {}
            any = true;
            moved += 1;
        }
        if !any {
            return moved;
        }
    }
    panic!("control exchange did not settle");
}

/// Run both sessions (exchanging and advancing time to their timers) for `span`.
pub fn run_for(
    now: &mut Instant,
    span: Duration,
    a: &mut Session,
    a_addr: SocketAddr,
    b: &mut Session,
    b_addr: SocketAddr,
) {
    let end = *now + span;
    for _ in 0..100_000 {
        exchange(*now, a, a_addr, b, b_addr);
        if *now >= end {
            return;
        }
        let next = [a.poll_timeout(), b.poll_timeout()]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(end)
            .clamp(*now + Duration::from_millis(1), end);
        *now = next;
        a.handle_timeout(*now);
        b.handle_timeout(*now);
    }
    panic!("run_for did not reach its end");
}

/// ICE + DTLS between a server session and its client.
pub fn connect(
    now: &mut Instant,
    server: &mut Session,
    client: &mut Session,
    client_addr: SocketAddr,
) {
    let srv = addr(SERVER);
    for _ in 0..10_000 {
        exchange(*now, server, srv, client, client_addr);
        if server.is_connected() && client.is_connected() {
            return;
        }
        let next = [server.poll_timeout(), client.poll_timeout()]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(*now + Duration::from_millis(10))
            .max(*now + Duration::from_millis(1));
        *now = next;
        server.handle_timeout(*now);
        client.handle_timeout(*now);
    }
    panic!("sessions did not connect");
}

pub fn up_track(pt: u8, rtx_pt: u8, ssrc: u32, rtx_ssrc: u32) -> UpTrackConfig {
    UpTrackConfig {
        kind: MediaKind::Video,
        codec: Codec::Vp8,
        clock_rate: 90_000,
        payload_type: pt,
        rtx_payload_type: Some(rtx_pt),
        layers: vec![LayerSsrc {
            ssrc: Some(ssrc),
            rtx_ssrc: Some(rtx_ssrc),
            rid: None,
        }],
        ext: ExtIds {
            transport_cc: Some(TWCC_ID),
            ..ExtIds::default()
        },
        e2ee: false,
        mid: None,
    }
}

pub fn down_track() -> DownTrackConfig {
    DownTrackConfig {
        kind: MediaKind::Video,
        codec: Codec::Vp8,
        clock_rate: 90_000,
        payload_type: PT_DOWN,
        rtx_payload_type: Some(PT_DOWN_RTX),
        ssrc: DOWN_SSRC,
        rtx_ssrc: Some(DOWN_RTX_SSRC),
        ext: ExtIds {
            transport_cc: Some(TWCC_ID),
            ..ExtIds::default()
        },
        e2ee: false,
        priority: 1,
        max_layer: 0,
        relay_layer: None,
        relay_group: 0,
    }
}

/// Packet `i` of a VP8 stream: frames of 3 packets, a keyframe every 30
/// frames; a transport-cc element; payload bytes derived from `i`.
pub fn vp8_packet(i: u32, ssrc: u32, out: &mut [u8]) -> usize {
    let frame = i / 3;
    let first = i.is_multiple_of(3);
    let twcc = (i as u16).to_be_bytes();
    let h = write_rtp_header(
        &RtpHeader {
            pt: PT_VP8,
            marker: i % 3 == 2,
            seq: (i as u16).wrapping_add(1000),
            ts: frame.wrapping_mul(3000),
            ssrc,
            csrcs: &[],
            extensions: &[(TWCC_ID, &twcc)],
        },
        out,
    )
    .expect("header");
    // VP8 descriptor without picture id: S on a frame's first packet.
    out[h] = if first { 0x10 } else { 0x00 };
    let keyframe = frame.is_multiple_of(30);
    out[h + 1] = if keyframe { 0x00 } else { 0x01 };
    let len = h + 2 + 300;
    for (k, b) in out[h + 2..len].iter_mut().enumerate() {
        *b = (k as u32 ^ i) as u8;
    }
    len
}

/// The test's shard: packet history per published track, send buffers per
/// pacer handle.
#[derive(Default)]
pub struct Shard {
    pub history: HashMap<u64, Vec<u8>>,
    pub slots: HashMap<u32, Vec<u8>>,
    pub next_handle: u32,
}

impl Shard {
    pub fn slot(&mut self) -> (u32, Vec<u8>) {
        let h = self.next_handle;
        self.next_handle += 1;
        (h, vec![0u8; 1500])
    }
}

/// What arrived at a receiving client.
#[derive(Debug, Clone)]
pub struct Received {
    pub seq: u16,
    pub ssrc: u32,
    pub pt: u8,
    pub payload: Vec<u8>,
}

pub fn media_of(out: SessionOutput, buf: &[u8]) -> Option<Received> {
    let SessionOutput::Media { meta, .. } = out else {
        return None;
    };
    let len = meta.len;
    let v = rtp_core::RtpView::parse(&buf[..len]).expect("media parses");
    Some(Received {
        seq: v.seq(),
        ssrc: v.ssrc(),
        pt: v.payload_type(),
        payload: v.payload().to_vec(),
    })
}
