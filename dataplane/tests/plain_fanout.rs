//! A whole in-process dataplane (2 workers, real loopback sockets, both backends) in plain-RTP
//! mode: a publisher sends audio and video RTP, three subscribers on different workers receive
//! every packet with their own SSRC and contiguous sequence numbers, and the per-worker stats
//! snapshots show both workers sending. Each case prints which backend it ran on. And an audio
//! packet sent in the middle of a keyframe's fan-out to 400 subscribers overtakes the copies
//! still queued (issue 19). And the audio packet budget (D123) is the configured one.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use sluice_dataplane::config::{Config, IoChoice};
use sluice_dataplane::runtime::{Dataplane, DataplaneHandle};
use sluice_dataplane::sys::{affinity, capabilities};
use sluice_proto::{
    AddTrack, Codec, Command, ControlClient, CreateSession, DtlsRole, ExtIds, Hello, IceParams,
    Layer, MediaKind, Notification, Quality, ReplyOk, SessionId, Source, Subscribe, SubscriptionId,
    TrackId, TransportMode,
};

const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const AUDIO_SSRC: u32 = 0x1111;
const VIDEO_SSRC: u32 = 0x2222;
const PACKETS: u16 = 300;

fn choices() -> Vec<IoChoice> {
    let mut v = Vec::new();
    if capabilities().uring_usable() {
        v.push(IoChoice::Uring);
    } else {
        println!("skipping io_uring: {}", capabilities().log_line());
    }
    v.push(IoChoice::Socket);
    v
}

fn start(io: IoChoice, dir: &tempfile::TempDir) -> DataplaneHandle {
    start_with(io, dir, 2048)
}

fn start_with(io: IoChoice, dir: &tempfile::TempDir, buffers: usize) -> DataplaneHandle {
    let cores = affinity::online_cores().expect("cores");
    let mut cfg = Config::defaults(cores.len());
    cfg.workers = vec![cores[0], *cores.get(1).unwrap_or(&cores[0])];
    cfg.bind = LOCAL;
    cfg.port = 0;
    cfg.control_socket = dir.path().join("ctl.sock");
    cfg.buffers_per_worker = buffers;
    cfg.io = io;
    cfg.stats_interval_ms = 100;
    cfg.recv_buffer_bytes = 1 << 20;
    cfg.send_buffer_bytes = 1 << 20;
    Dataplane::start(cfg).expect("dataplane starts")
}

fn plain_session(id: u64, remote: SocketAddr, worker: u16) -> Command {
    Command::CreateSession(CreateSession {
        session: SessionId(id),
        ice: IceParams {
            ufrag: format!("plain{id}"),
            pwd: "0123456789abcdefghijklmn".into(),
            remote_ufrag: None,
            remote_pwd: None,
        },
        remote_fingerprint: None,
        dtls_role: DtlsRole::Server,
        shard_hint: Some(worker),
        mode: TransportMode::PlainRtp {
            remote,
            local_port: None,
        },
        data: None,
        quality: Quality {
            max_bitrate_bps: 10_000_000,
            priority: 1,
        },
    })
}

fn track(id: u64, kind: MediaKind, ssrc: u32) -> Command {
    let (name, pt, rate) = match kind {
        MediaKind::Audio => ("opus", 111, 48_000),
        MediaKind::Video => ("VP8", 96, 90_000),
    };
    Command::AddTrack(AddTrack {
        session: SessionId(1),
        track: TrackId(id),
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

/// An RTP packet: audio is a 160-byte payload, video a one-packet VP8 keyframe.
fn rtp(video: bool, seq: u16) -> Vec<u8> {
    let mut p = vec![0x80, if video { 0x80 | 96 } else { 111 }];
    p.extend_from_slice(&seq.to_be_bytes());
    let ts = u32::from(seq) * if video { 3000 } else { 960 };
    p.extend_from_slice(&ts.to_be_bytes());
    p.extend_from_slice(&(if video { VIDEO_SSRC } else { AUDIO_SSRC }).to_be_bytes());
    if video {
        // VP8 descriptor S=1 PID=0, then a keyframe frame tag and start code (RFC 6386 §9.1).
        p.extend_from_slice(&[
            0x10, 0x00, 0x00, 0x00, 0x9d, 0x01, 0x2a, 0x40, 0x01, 0xf0, 0x00,
        ]);
        p.resize(p.len() + 180, seq as u8);
    } else {
        p.resize(p.len() + 160, seq as u8);
    }
    p
}

#[test]
fn plain_rtp_fan_out_across_two_workers() {
    for io in choices() {
        let dir = tempfile::tempdir().expect("tempdir");
        let dp = start(io, &dir);
        println!("case plain_rtp_fan_out on backend {:?}", dp.io_mode());
        let media = dp.local_addrs()[0];

        let mut ctl = ControlClient::connect(dp.control_socket()).expect("connect");
        let hello = ctl.hello(Hello::control("test")).expect("hello");
        assert_eq!(hello.shards, 2);

        let publisher = UdpSocket::bind((LOCAL, 0)).expect("bind");
        let subs: Vec<UdpSocket> = (0..3)
            .map(|_| UdpSocket::bind((LOCAL, 0)).expect("bind"))
            .collect();
        let pub_addr = publisher.local_addr().expect("addr");
        match ctl
            .request(plain_session(1, pub_addr, 0))
            .expect("create publisher")
        {
            ReplyOk::SessionCreated { shard, .. } => assert_eq!(shard, 0),
            other => panic!("unexpected {other:?}"),
        }
        for (i, s) in subs.iter().enumerate() {
            let worker = [1, 0, 1][i];
            let addr = s.local_addr().expect("addr");
            ctl.request(plain_session(10 + i as u64, addr, worker))
                .expect("create subscriber");
        }
        ctl.request(track(100, MediaKind::Audio, AUDIO_SSRC))
            .expect("audio track");
        ctl.request(track(101, MediaKind::Video, VIDEO_SSRC))
            .expect("video track");
        let mut expect_ssrc = HashMap::new();
        for i in 0..3u64 {
            for (t, pt) in [(100u64, 111u8), (101, 96)] {
                let ssrc = 0x5000_0000 + (i as u32) * 16 + t as u32;
                expect_ssrc.insert((i as usize, ssrc), t);
                ctl.request(Command::Subscribe(Subscribe {
                    subscription: SubscriptionId(i * 10 + t),
                    session: SessionId(10 + i),
                    track: TrackId(t),
                    ssrc,
                    rtx_ssrc: None,
                    payload_type: pt,
                    rtx_payload_type: None,
                    ext_ids: ExtIds::default(),
                }))
                .expect("subscribe");
            }
        }

        // Subscribers read on their own threads while the publisher sends: a loopback socket's
        // default receive buffer holds only a few hundred small datagrams.
        let readers: Vec<_> = subs
            .into_iter()
            .enumerate()
            .map(|(i, s)| {
                let expected: Vec<u32> = expect_ssrc
                    .keys()
                    .filter(|(sub, _)| *sub == i)
                    .map(|&(_, ssrc)| ssrc)
                    .collect();
                std::thread::spawn(move || receive_all(i, &s, &expected))
            })
            .collect();

        // Publish at 100 packets/s per track, Opus's highest packet rate: within the audio
        // layer's budget (D123), and the pacers (1 Mbit/s initial rate) keep up.
        for seq in 0..PACKETS {
            publisher.send_to(&rtp(false, seq), media).expect("send");
            publisher.send_to(&rtp(true, seq), media).expect("send");
            if seq % 2 == 1 {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        for r in readers {
            let (i, count) = r.join().expect("reader");
            println!("subscriber {i} on {:?}: {count:x?}", dp.io_mode());
            assert_eq!(count.len(), 2, "subscriber {i}: {count:x?}");
            assert!(
                count.values().all(|&c| c == u32::from(PACKETS)),
                "subscriber {i}: {count:x?}"
            );
        }

        // Both workers send: subscribers 0 and 2 live on worker 1, subscriber 1 on worker 0.
        let mut tx = [0u64; 2];
        let mut cpu_us = [0u64; 2];
        let deadline = Instant::now() + Duration::from_secs(5);
        while (tx[0] < 2 * u64::from(PACKETS) || tx[1] < 4 * u64::from(PACKETS))
            && Instant::now() < deadline
        {
            if let Some(ev) = ctl.next_event(Duration::from_millis(200)).expect("event") {
                if let Notification::StatsSnapshot(s) = ev.event {
                    tx[usize::from(s.shard)] = s.counters.tx_packets;
                    // The shard thread's CPU time (cluster load, D93): it did work, so > 0.
                    cpu_us[usize::from(s.shard)] =
                        s.counters.dropped.get("cpu_us").copied().unwrap_or(0);
                }
            }
        }
        println!(
            "tx_packets per worker on {:?}: {tx:?}; CPU µs per worker: {cpu_us:?}",
            dp.io_mode()
        );
        assert!(cpu_us.iter().all(|&c| c > 0), "cpu_us: {cpu_us:?}");
        assert!(
            tx[0] >= 2 * u64::from(PACKETS),
            "worker 0 forwarded {}",
            tx[0]
        );
        assert!(
            tx[1] >= 4 * u64::from(PACKETS),
            "worker 1 forwarded {}",
            tx[1]
        );
        drop(ctl);
        dp.stop();
    }
}

/// Reads until every expected SSRC delivered `PACKETS` packets (or 10 s pass), checking that
/// only `expected` SSRCs arrive and that each one's sequence numbers are contiguous.
fn receive_all(i: usize, s: &UdpSocket, expected: &[u32]) -> (usize, HashMap<u32, u32>) {
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let mut last: HashMap<u32, u16> = HashMap::new();
    let mut count: HashMap<u32, u32> = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut buf = [0u8; 2048];
    let total = expected.len() as u32 * u32::from(PACKETS);
    while count.values().sum::<u32>() < total && Instant::now() < deadline {
        let Ok(n) = s.recv(&mut buf) else { continue };
        if n < 12 || (200..=206).contains(&buf[1]) {
            continue; // RTCP (SR/SDES) from the dataplane
        }
        let ssrc = u32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]);
        let seq = u16::from_be_bytes([buf[2], buf[3]]);
        assert!(
            expected.contains(&ssrc),
            "subscriber {i}: foreign ssrc {ssrc:#x}"
        );
        if let Some(prev) = last.insert(ssrc, seq) {
            assert_eq!(seq, prev.wrapping_add(1), "subscriber {i} ssrc {ssrc:#x}");
        }
        *count.entry(ssrc).or_default() += 1;
    }
    (i, count)
}

/// A burst of `BURST` audio packets from one publisher to one subscriber is forwarded up to the
/// audio layer's packet budget (D123): the default, and `dataplane.audio_packets_per_s` when the
/// operator sets it. The rest is received and counted (`media_over_budget`), not copied.
#[test]
fn the_audio_budget_is_the_configured_one() {
    const BURST: u32 = 1_000;
    for (io, configured) in [(IoChoice::Socket, None), (choices()[0], Some(400u32))] {
        let dir = tempfile::tempdir().expect("tempdir");
        let cores = affinity::online_cores().expect("cores");
        let mut cfg = Config::defaults(cores.len());
        cfg.workers = vec![cores[0]];
        cfg.bind = LOCAL;
        cfg.port = 0;
        cfg.control_socket = dir.path().join("ctl.sock");
        cfg.io = io;
        cfg.stats_interval_ms = 100;
        if let Some(pps) = configured {
            cfg.audio_packets_per_s = pps;
        }
        let budget = cfg.audio_packets_per_s;
        let dp = Dataplane::start(cfg).expect("dataplane starts");
        let media = dp.local_addrs()[0];
        let mut ctl = ControlClient::connect(dp.control_socket()).expect("connect");
        ctl.hello(Hello::control("test")).expect("hello");
        let publisher = UdpSocket::bind((LOCAL, 0)).expect("bind");
        let sub = UdpSocket::bind((LOCAL, 0)).expect("bind");
        // Room for the whole budget's copies even while the reader is not scheduled.
        socket2::SockRef::from(&sub)
            .set_recv_buffer_size(1 << 20)
            .expect("receive buffer");
        let pub_addr = publisher.local_addr().expect("addr");
        ctl.request(plain_session(1, pub_addr, 0))
            .expect("publisher");
        let sub_addr = sub.local_addr().expect("addr");
        ctl.request(plain_session(10, sub_addr, 0))
            .expect("subscriber");
        ctl.request(track(100, MediaKind::Audio, AUDIO_SSRC))
            .expect("audio track");
        ctl.request(Command::Subscribe(Subscribe {
            subscription: SubscriptionId(1),
            session: SessionId(10),
            track: TrackId(100),
            ssrc: 0x5000_0001,
            rtx_ssrc: None,
            payload_type: 111,
            rtx_payload_type: None,
            ext_ids: ExtIds::default(),
        }))
        .expect("subscribe");
        let reader = std::thread::spawn(move || count_until_quiet(&sub));

        let start = Instant::now();
        // 50 at a time: a loopback socket's default buffer holds only a few hundred small
        // datagrams, and a packet lost there would count as neither (what the budget refills
        // meanwhile is allowed for below).
        for seq in 0..BURST as u16 {
            publisher.send_to(&rtp(false, seq), media).expect("send");
            if seq % 50 == 49 {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        let sending = start.elapsed();
        let received = reader.join().expect("reader");
        let mut over = 0;
        let deadline = Instant::now() + Duration::from_secs(5);
        while received + over < BURST && Instant::now() < deadline {
            if let Some(ev) = ctl.next_event(Duration::from_millis(200)).expect("event") {
                if let Notification::StatsSnapshot(s) = ev.event {
                    let n = s.counters.dropped.get("media_over_budget").copied();
                    over = n.unwrap_or(0) as u32;
                }
            }
        }
        // What refilled while the burst was being sent may pass too, and while the worker was
        // still reading its last packets (20 ms allowed).
        let window = sending + Duration::from_millis(20);
        let refill = (f64::from(budget) * window.as_secs_f64()).ceil() as u32 + 1;
        println!(
            "{io:?}, audio_packets_per_s {configured:?} (budget {budget}): {BURST} sent in \
             {sending:?}, {received} forwarded, media_over_budget {over}"
        );
        assert!(
            (budget..=budget + refill).contains(&received),
            "{received} forwarded of a burst of {BURST} with a budget of {budget}"
        );
        assert_eq!(received + over, BURST, "every packet forwarded or counted");
        drop(ctl);
        dp.stop();
    }
}

/// Audio packets (RTCP skipped) arriving until none came for 500 ms (10 s at most).
fn count_until_quiet(s: &UdpSocket) -> u32 {
    s.set_read_timeout(Some(Duration::from_millis(500)))
        .expect("timeout");
    let mut buf = [0u8; 2048];
    let mut n = 0;
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut started = false;
    while Instant::now() < deadline {
        match s.recv(&mut buf) {
            Ok(len) if len >= 12 && !(200..=206).contains(&buf[1]) => {
                started = true;
                n += 1;
            }
            Ok(_) => {}
            Err(_) if started => break,
            Err(_) => {}
        }
    }
    n
}

/// Subscribers of the priority test: enough that a keyframe's fan-out is many slices of work.
const PRIORITY_SUBS: usize = 400;
/// Packets of the priority test's keyframe.
const KEYFRAME_PACKETS: u16 = 25;

/// Packet `i` of a `KEYFRAME_PACKETS`-packet VP8 keyframe (1,100-byte payloads, one timestamp,
/// the marker on the last), sequence numbers from `first_seq`.
fn keyframe_packet(first_seq: u16, i: u16) -> Vec<u8> {
    let last = i + 1 == KEYFRAME_PACKETS;
    let mut p = vec![0x80, if last { 0x80 | 96 } else { 96 }];
    p.extend_from_slice(&first_seq.wrapping_add(i).to_be_bytes());
    p.extend_from_slice(&(u32::from(first_seq) * 3000).to_be_bytes());
    p.extend_from_slice(&VIDEO_SSRC.to_be_bytes());
    if i == 0 {
        p.extend_from_slice(&[
            0x10, 0x00, 0x00, 0x00, 0x9d, 0x01, 0x2a, 0x40, 0x01, 0xf0, 0x00,
        ]);
    } else {
        p.push(0x00); // VP8 descriptor, S=0: a continuation of the frame
    }
    p.resize(12 + 1_100, i as u8);
    p
}

/// Issue 19, "audio never waits behind video": a 25-packet keyframe to 400 subscribers of one
/// worker is 10,000 copies, made in slices. An audio packet sent once the fan-out is under way
/// (subscriber 0 has a keyframe packet) goes out in the next iteration's urgent pass, ahead of
/// the copies still queued, so at most subscribers it arrives before some or all of their
/// keyframe packets. The old loop (`957285e`) fanned each packet out whole in arrival order:
/// the audio came after the keyframe at every subscriber. Counts, per subscriber, how many of
/// the keyframe's packets arrived after the audio; asserts the audio passed at least half of
/// all the keyframe's copies.
#[test]
fn audio_overtakes_a_keyframe_fan_out() {
    for io in choices() {
        let dir = tempfile::tempdir().expect("tempdir");
        // Buffers for every copy at once, so that a loop which makes them all before sending
        // any is not refused for want of buffers: this test is about order.
        let dp = start_with(io, &dir, 12_288);
        let media = dp.local_addrs()[0];
        let mut ctl = ControlClient::connect(dp.control_socket()).expect("connect");
        ctl.hello(Hello::control("test")).expect("hello");
        let publisher = UdpSocket::bind((LOCAL, 0)).expect("bind");
        let pub_addr = publisher.local_addr().expect("addr");
        ctl.request(plain_session(1, pub_addr, 0))
            .expect("create publisher");
        ctl.request(track(100, MediaKind::Audio, AUDIO_SSRC))
            .expect("audio track");
        ctl.request(track(101, MediaKind::Video, VIDEO_SSRC))
            .expect("video track");
        let subs: Vec<UdpSocket> = (0..PRIORITY_SUBS)
            .map(|_| UdpSocket::bind((LOCAL, 0)).expect("bind"))
            .collect();
        for (i, s) in subs.iter().enumerate() {
            let id = 10 + i as u64;
            let addr = s.local_addr().expect("addr");
            ctl.request(plain_session(id, addr, 0))
                .expect("create subscriber");
            for (t, pt, ssrc) in [(100u64, 111u8, 0xa000_0000), (101, 96, 0xb000_0000)] {
                ctl.request(Command::Subscribe(Subscribe {
                    subscription: SubscriptionId(id * 1000 + t),
                    session: SessionId(id),
                    track: TrackId(t),
                    ssrc: ssrc + i as u32,
                    rtx_ssrc: None,
                    payload_type: pt,
                    rtx_payload_type: None,
                    ext_ids: ExtIds::default(),
                }))
                .expect("subscribe");
            }
            s.set_read_timeout(Some(Duration::from_millis(100)))
                .expect("timeout");
        }
        let mut buf = [0u8; 2048];
        // The next media datagram at `s`: `Some(true)` for audio, `Some(false)` for video;
        // `None` once nothing came for 100 ms and the phase's 10 s are over.
        let mut deadline = Instant::now() + Duration::from_secs(10);
        let mut next = |s: &UdpSocket, deadline: Instant| loop {
            let Ok(n) = s.recv(&mut buf) else {
                if Instant::now() < deadline {
                    continue;
                }
                return None;
            };
            if n >= 12 && !(200..=206).contains(&buf[1]) {
                return Some(buf[8] == 0xa0);
            }
        };
        // Priming: one audio packet and a one-packet keyframe reach everyone.
        publisher.send_to(&rtp(false, 0), media).expect("send");
        publisher.send_to(&rtp(true, 0), media).expect("send");
        for (i, s) in subs.iter().enumerate() {
            for _ in 0..2 {
                next(s, deadline)
                    .unwrap_or_else(|| panic!("subscriber {i}: priming packets missing"));
            }
        }
        // The keyframe, then one audio packet.
        for i in 0..KEYFRAME_PACKETS {
            publisher
                .send_to(&keyframe_packet(1, i), media)
                .expect("send");
        }
        // The audio goes once the fan-out is under way: subscriber 0 has a keyframe packet.
        deadline = Instant::now() + Duration::from_secs(10);
        let first = next(&subs[0], deadline);
        assert_eq!(first, Some(false), "subscriber 0: no keyframe packet");
        publisher.send_to(&rtp(false, 1), media).expect("send");
        let mut after: Vec<u16> = Vec::with_capacity(PRIORITY_SUBS);
        for (i, s) in subs.iter().enumerate() {
            let (mut video, mut audio_at) = (u16::from(i == 0), None);
            while video < KEYFRAME_PACKETS || audio_at.is_none() {
                match next(s, deadline) {
                    Some(true) => audio_at = Some(video),
                    Some(false) => video += 1,
                    None => panic!("subscriber {i}: {video} keyframe packets, audio {audio_at:?}"),
                }
            }
            after.push(KEYFRAME_PACKETS - audio_at.unwrap_or(KEYFRAME_PACKETS));
        }
        let passed: usize = after.iter().map(|&a| usize::from(a)).sum();
        let copies = PRIORITY_SUBS * usize::from(KEYFRAME_PACKETS);
        let before_all = after.iter().filter(|&&a| a == KEYFRAME_PACKETS).count();
        let behind_all = after.iter().filter(|&&a| a == 0).count();
        println!(
            "audio_overtakes_a_keyframe_fan_out on {:?}: the audio passed {passed} of the \
             keyframe's {copies} copies ({:.1} %; {} made before it); ahead of all 25 at \
             {before_all} of {PRIORITY_SUBS} subscribers, behind all 25 at {behind_all}",
            dp.io_mode(),
            100.0 * passed as f64 / copies as f64,
            copies - passed,
        );
        assert!(
            passed * 2 >= copies,
            "audio waited behind the keyframe: it passed {passed} of {copies} copies"
        );
        drop(ctl);
        dp.stop();
    }
}
