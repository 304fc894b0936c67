//! Shared tooling of the dataplane's WebRTC tests: an in-process dataplane with 2 workers on
//! 127.0.0.1 (one case per I/O backend), WebRTC test peers connected to a chosen worker, tracks,
//! subscriptions, and deterministic media (payload bytes derived from the sequence number).
#![allow(dead_code)]

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use rtp_core::forward::{Codec as CoreCodec, MediaKind as CoreKind};
use sluice_dataplane::config::{Config, IoChoice};
use sluice_dataplane::runtime::{Dataplane, DataplaneHandle};
use sluice_dataplane::shard::LoopHook;
use sluice_dataplane::sys::{affinity, capabilities};
use sluice_dataplane::testpeer::{generate_cert, IceCreds, TestPeer, WebRtcPeerConfig};
use sluice_proto::{
    AddTrack, Codec, Command, ControlClient, CreateSession, DataSpec, DtlsRole, ExtIds, Hello,
    IceParams, Layer, MediaKind, Quality, ReplyOk, SessionId, SessionState, ShardStats, Source,
    Subscribe, SubscriptionId, TrackId, TransportMode,
};

pub const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
pub const AUDIO_SSRC: u32 = 0x1111;
pub const VIDEO_SSRC: u32 = 0x2222;
pub const PT_AUDIO: u8 = 111;
pub const PT_VIDEO: u8 = 96;
pub const PT_RTX: u8 = 97;
pub const AUDIO_TRACK: TrackId = TrackId(100);
pub const VIDEO_TRACK: TrackId = TrackId(101);
/// Handshakes on a loaded 2-core CI machine in debug builds take a while.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The backends this machine can run; io_uring is skipped with a printed reason.
pub fn choices() -> Vec<IoChoice> {
    let mut v = Vec::new();
    if capabilities().uring_usable() {
        v.push(IoChoice::Uring);
    } else {
        println!("skipping io_uring: {}", capabilities().log_line());
    }
    v.push(IoChoice::Socket);
    v
}

/// The cores the two workers are pinned to (the same core twice on a 1-CPU machine).
pub fn worker_cores() -> [usize; 2] {
    let cores = affinity::online_cores().expect("cores");
    [cores[0], *cores.get(1).unwrap_or(&cores[0])]
}

/// Pins the calling thread to `worker`'s core, so the datagrams it sends land on that worker
/// (`SO_INCOMING_CPU`): a publisher whose packets reach two workers gets them reordered by the
/// hand-over between them.
pub fn pin_to(worker: usize) {
    let _ = affinity::pin_current_thread(worker_cores()[worker]);
}

pub fn config(io: IoChoice, dir: &tempfile::TempDir) -> Config {
    let cores = worker_cores();
    let mut cfg = Config::defaults(2);
    cfg.workers = cores.to_vec();
    cfg.bind = LOCAL;
    cfg.port = 0;
    cfg.control_socket = dir.path().join("ctl.sock");
    cfg.buffers_per_worker = 2048;
    cfg.io = io;
    cfg.stats_interval_ms = 50;
    cfg.recv_buffer_bytes = 1 << 20;
    cfg.send_buffer_bytes = 1 << 20;
    cfg
}

/// A running dataplane and a control connection to it.
pub struct Rig {
    pub dp: Option<DataplaneHandle>,
    pub ctl: ControlClient,
    pub fingerprint: String,
    next_session: u64,
    /// The session [`Rig::publish_tracks`] published on.
    publisher: Option<SessionId>,
}

impl Rig {
    pub fn start(io: IoChoice, dir: &tempfile::TempDir) -> Self {
        Self::start_with(config(io, dir))
    }

    pub fn start_with(cfg: Config) -> Self {
        Self::start_with_hook(cfg, None)
    }

    /// [`Rig::start_with`] with each shard iteration run inside `hook` (allocation counting).
    pub fn start_with_hook(cfg: Config, hook: Option<LoopHook>) -> Self {
        let dp = Dataplane::start_with_hook(cfg, hook).expect("dataplane starts");
        let mut ctl = ControlClient::connect(dp.control_socket()).expect("connect");
        let hello = ctl.hello(Hello::control("test")).expect("hello");
        assert_eq!(hello.shards, 2);
        let fingerprint = hello.fingerprint.expect("dataplane fingerprint");
        Self {
            dp: Some(dp),
            ctl,
            fingerprint,
            next_session: 1,
            publisher: None,
        }
    }

    pub fn dp(&self) -> &DataplaneHandle {
        self.dp.as_ref().expect("running")
    }

    pub fn media_addr(&self) -> std::net::SocketAddr {
        self.dp().local_addrs()[0]
    }

    /// A WebRTC session whose first STUN binding lands on `worker` (the kernel picks the
    /// shard: the peer connects from a thread pinned to that worker's core, and a session
    /// claimed elsewhere is closed and tried again). Returns the peer and its session id.
    pub fn connect_on(&mut self, worker: u16) -> (TestPeer, SessionId) {
        self.connect_with(worker, None)
    }

    /// [`Rig::connect_on`] for a session created with `data` (data channels and their relay).
    pub fn connect_with(&mut self, worker: u16, data: Option<DataSpec>) -> (TestPeer, SessionId) {
        let core = worker_cores()[usize::from(worker)];
        for attempt in 0..16 {
            let id = SessionId(self.next_session);
            self.next_session += 1;
            let server = IceCreds::new(format!("srv{}", id.0), "serverpassword0123456789ab");
            let client = IceCreds::new(format!("cli{}", id.0), "clientpassword0123456789ab");
            let cfg = WebRtcPeerConfig {
                cert: generate_cert().expect("cert"),
                ..WebRtcPeerConfig::new(client, server.clone(), &self.fingerprint).expect("cfg")
            };
            let peer_fp = cfg.cert.fingerprint().to_sdp();
            let mut create = webrtc_session(id, &server, &peer_fp);
            if let Command::CreateSession(c) = &mut create {
                c.data = data.clone();
            }
            match self.ctl.request(create).expect("create session") {
                ReplyOk::SessionCreated { .. } => {}
                other => panic!("unexpected {other:?}"),
            }
            let addr = self.media_addr();
            let peer = std::thread::spawn(move || {
                let _ = affinity::pin_current_thread(core);
                TestPeer::connect(addr, &cfg, CONNECT_TIMEOUT)
            })
            .join()
            .expect("connect thread")
            .expect("peer connects");
            let (w, state) = self.session_info(id);
            if w == worker {
                self.wait_connected(id);
                return (peer, id);
            }
            println!(
                "attempt {attempt}: session {id} landed on worker {w} ({state:?}), wanted {worker}"
            );
            self.ctl
                .request(Command::CloseSession { session: id })
                .expect("close");
        }
        panic!("no session landed on worker {worker} in 16 attempts");
    }

    /// A WebRTC session over ICE-TCP: the peer connects to the TCP media port (the UDP port's
    /// number) with `recv_buffer` as its `SO_RCVBUF`. Whichever worker accepts the connection
    /// claims the session. Returns the peer, its session id and that worker.
    pub fn connect_tcp(&mut self, recv_buffer: Option<usize>) -> (TestPeer, SessionId, u16) {
        let id = SessionId(self.next_session);
        self.next_session += 1;
        let server = IceCreds::new(format!("srv{}", id.0), "serverpassword0123456789ab");
        let client = IceCreds::new(format!("cli{}", id.0), "clientpassword0123456789ab");
        let cfg = WebRtcPeerConfig {
            cert: generate_cert().expect("cert"),
            ..WebRtcPeerConfig::new(client, server.clone(), &self.fingerprint).expect("cfg")
        };
        let peer_fp = cfg.cert.fingerprint().to_sdp();
        match self
            .ctl
            .request(webrtc_session(id, &server, &peer_fp))
            .expect("create session")
        {
            ReplyOk::SessionCreated { .. } => {}
            other => panic!("unexpected {other:?}"),
        }
        let tcp = std::net::SocketAddr::new(LOCAL, self.media_addr().port());
        let mut peer = TestPeer::webrtc_tcp(tcp, &cfg, recv_buffer).expect("tcp peer");
        peer.handshake(CONNECT_TIMEOUT)
            .expect("peer connects over TCP");
        self.wait_connected(id);
        let (worker, _) = self.session_info(id);
        (peer, id, worker)
    }

    /// Worker and state of `id` from `ListSessions`.
    pub fn session_info(&mut self, id: SessionId) -> (u16, SessionState) {
        let mut after = None;
        for _ in 0..100 {
            let ReplyOk::Sessions { sessions, next } = self
                .ctl
                .request(Command::ListSessions { after })
                .expect("list")
            else {
                panic!("not a session list");
            };
            if let Some(s) = sessions.iter().find(|s| s.spec.session == id) {
                return (s.shard, s.state);
            }
            match next {
                Some(n) => after = Some(n),
                None => break,
            }
        }
        panic!("{id} not listed");
    }

    /// Waits until the dataplane reports DTLS done for `id` (the client may finish first).
    pub fn wait_connected(&mut self, id: SessionId) {
        let deadline = Instant::now() + CONNECT_TIMEOUT;
        while Instant::now() < deadline {
            if self.session_info(id).1 == SessionState::Connected {
                return;
            }
            let _ = self.ctl.next_event(Duration::from_millis(10));
        }
        panic!("{id} never reached Connected");
    }

    /// Audio (Opus) and video (VP8, no RTX from the publisher) tracks published by `session`.
    pub fn publish_tracks(&mut self, session: SessionId) {
        self.publisher = Some(session);
        self.ctl
            .request(track(session, AUDIO_TRACK, MediaKind::Audio, AUDIO_SSRC))
            .expect("audio track");
        self.ctl
            .request(track(session, VIDEO_TRACK, MediaKind::Video, VIDEO_SSRC))
            .expect("video track");
    }

    /// Subscribes `session` (subscriber number `i`) to both tracks and tells `peer` to expect
    /// them; returns the (audio, video) SSRCs it will receive. Video comes with RTX.
    pub fn subscribe_both(
        &mut self,
        i: u32,
        session: SessionId,
        peer: &mut TestPeer,
    ) -> (u32, u32) {
        let audio = 0x5000_0000 + i * 16;
        let video = audio + 1;
        let rtx = audio + 2;
        for (t, ssrc, pt, rtx) in [
            (AUDIO_TRACK, audio, PT_AUDIO, None),
            (VIDEO_TRACK, video, PT_VIDEO, Some((PT_RTX, rtx))),
        ] {
            self.ctl
                .request(Command::Subscribe(Subscribe {
                    subscription: SubscriptionId(u64::from(i) * 1000 + t.0),
                    session,
                    track: t,
                    ssrc,
                    rtx_ssrc: rtx.map(|(_, s)| s),
                    payload_type: pt,
                    rtx_payload_type: rtx.map(|(p, _)| p),
                    ext_ids: ExtIds::default(),
                }))
                .expect("subscribe");
            let (kind, codec, rate) = if t == AUDIO_TRACK {
                (CoreKind::Audio, CoreCodec::Opus, 48_000)
            } else {
                (CoreKind::Video, CoreCodec::Vp8, 90_000)
            };
            peer.expect_stream(kind, codec, rate, pt, ssrc, rtx)
                .expect("expect stream");
        }
        // `Subscribe` is answered by the subscriber's worker; the publisher's worker learns of the
        // interest from a command queued right after. A request it answers, queued behind that,
        // proves it arrived: without it the first burst can go out before, to no one (seen on a
        // loaded CI machine: 20 of 200 packets never reached the subscriber's worker).
        if let Some(publisher) = self.publisher {
            self.ctl
                .request(Command::SessionStats { session: publisher })
                .expect("publisher's worker answers");
        }
        (audio, video)
    }

    /// The latest counters of every worker (`Stats`), after a fresh snapshot interval.
    pub fn worker_stats(&mut self) -> Vec<ShardStats> {
        // Snapshots arrive every 50 ms; let one pass so the numbers include recent traffic.
        let until = Instant::now() + Duration::from_millis(120);
        while Instant::now() < until {
            let _ = self.ctl.next_event(Duration::from_millis(20));
        }
        match self.ctl.request(Command::Stats {}).expect("stats") {
            ReplyOk::Stats { shards } => shards,
            other => panic!("unexpected {other:?}"),
        }
    }

    pub fn stop(mut self) {
        if let Some(dp) = self.dp.take() {
            dp.stop();
        }
    }
}

pub fn webrtc_session(id: SessionId, server: &IceCreds, peer_fingerprint: &str) -> Command {
    Command::CreateSession(CreateSession {
        session: id,
        ice: IceParams {
            ufrag: server.ufrag.clone(),
            pwd: server.pwd.clone(),
            remote_ufrag: None,
            remote_pwd: None,
        },
        remote_fingerprint: Some(peer_fingerprint.to_string()),
        dtls_role: DtlsRole::Server,
        shard_hint: None,
        mode: TransportMode::Webrtc {},
        data: None,
        quality: Quality {
            max_bitrate_bps: 10_000_000,
            priority: 1,
        },
    })
}

pub fn track(session: SessionId, id: TrackId, kind: MediaKind, ssrc: u32) -> Command {
    let (name, pt, rate) = match kind {
        MediaKind::Audio => ("opus", PT_AUDIO, 48_000),
        MediaKind::Video => ("VP8", PT_VIDEO, 90_000),
    };
    Command::AddTrack(AddTrack {
        session,
        track: id,
        kind,
        codec: Codec {
            name: name.into(),
            payload_type: pt,
            clock_rate: rate,
            rtx_payload_type: None,
        },
        layers: vec![Layer {
            rid: None,
            ssrc: Some(ssrc),
            rtx_ssrc: None,
        }],
        ext_ids: ExtIds::default(),
        e2ee: false,
        source: if kind == MediaKind::Audio {
            Source::Microphone
        } else {
            Source::Camera
        },
        mid: None,
    })
}

/// Payload of packet `seq`: audio 160 bytes, video a one-packet VP8 keyframe (so a subscriber
/// can start on any packet; RFC 7741 §4.2 descriptor, RFC 6386 §9.1 frame tag and start code).
pub fn payload(video: bool, seq: u16) -> Vec<u8> {
    let mut p = Vec::with_capacity(200);
    if video {
        p.extend_from_slice(&[
            0x10, 0x00, 0x00, 0x00, 0x9d, 0x01, 0x2a, 0x40, 0x01, 0xf0, 0x00,
        ]);
        p.resize(p.len() + 180, seq as u8);
    } else {
        p.resize(160, seq as u8 ^ 0x5a);
    }
    p
}

/// Publishes packet `seq` of both tracks.
pub fn publish_pair(peer: &mut TestPeer, seq: u16) {
    peer.publish_rtp(
        seq,
        u32::from(seq) * 960,
        AUDIO_SSRC,
        PT_AUDIO,
        false,
        &payload(false, seq),
    )
    .expect("publish audio");
    peer.publish_rtp(
        seq,
        u32::from(seq) * 3000,
        VIDEO_SSRC,
        PT_VIDEO,
        true,
        &payload(true, seq),
    )
    .expect("publish video");
}
