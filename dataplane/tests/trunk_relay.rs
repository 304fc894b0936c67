//! Cascade trunks (issue 16) between two real in-process dataplanes on loopback: a plain-RTP
//! publisher on A with subscriber s1 on A, and subscribers s2 and s3 on B, which get the track
//! through an SRTP trunk A→B (`mode: trunk`, `relay_track` on A, `add_track` on the trunk
//! session on B, ordinary `subscribe` on B).
//!
//! Three runs, one after the other (so they never share the cores):
//! - `direct`: the trunk is the two dataplanes' media sockets. Every packet reaches s2 and s3
//!   with contiguous sequence numbers and the published payload; the per-packet latency
//!   recv(s2) − recv(s1) is printed (p50/p99); a PLI from s2 reaches the publisher.
//! - `wire`: the trunk runs through a counting UDP wire in this test: each published packet
//!   crosses it exactly once although B has two subscribers.
//! - `wire_wrong_epoch`: B keys the trunk with another epoch: A relays every packet, B
//!   decrypts none (its subscribers get nothing), A's s1 is undisturbed.
//! - `wire_2pct_loss`: the wire drops 2 % of A→B media (seeded): B's trunk ingress NACKs, A
//!   answers with RTX from the publisher's packet history; s2's residual loss is printed and
//!   must stay under 0.5 %.
//! - `netem_40ms_2pct`: the trunk through `sluice-netem`, 40 ms and 2 % loss each way (the
//!   issue's impairment): s2's and s3's residual loss under 0.5 %, latency printed.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use sluice_dataplane::config::Config;
use sluice_dataplane::runtime::{Dataplane, DataplaneHandle};
use sluice_dataplane::sys::affinity;
use sluice_proto::{
    AddTrack, Codec, Command, ControlClient, ControlError, CreateSession, DtlsRole, ExtIds, Hello,
    IceParams, Layer, MediaKind, Quality, RelayTrack, SessionId, Source, Subscribe, SubscriptionId,
    TrackId, TransportMode, TrunkCrypto,
};
use sluice_tests::netem::{Impairment, Relay, RelayConfig};

const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const VIDEO_SSRC: u32 = 0x2222;
/// The layer's SSRC and RTX SSRC on the trunk.
const TRUNK_SSRC: u32 = 71_000;
const TRUNK_RTX_SSRC: u32 = 71_001;
const PACKETS: u32 = 1500;
/// One packet every 2 ms: 500 packets/s of ~230 bytes (~0.9 Mbit/s), 3 s.
const SPACING: Duration = Duration::from_millis(2);

struct Node {
    dp: DataplaneHandle,
    ctl: ControlClient,
    media: SocketAddr,
}

fn node(dir: &tempfile::TempDir, name: &str, secret: bool) -> Node {
    let cores = affinity::online_cores().expect("cores");
    let mut cfg = Config::defaults(cores.len());
    cfg.workers = vec![cores[0]];
    cfg.bind = LOCAL;
    cfg.port = 0;
    cfg.control_socket = dir.path().join(format!("{name}.sock"));
    cfg.buffers_per_worker = 4096;
    cfg.stats_interval_ms = 100;
    cfg.recv_buffer_bytes = 1 << 20;
    cfg.send_buffer_bytes = 1 << 20;
    cfg.trunk_secret_file = secret.then(|| dir.path().join("cluster.secret"));
    let dp = Dataplane::start(cfg).expect("dataplane starts");
    let media = dp.local_addrs()[0];
    let mut ctl = ControlClient::connect(dp.control_socket()).expect("connect");
    ctl.hello(Hello::control("trunk-test")).expect("hello");
    Node { dp, ctl, media }
}

fn session(id: u64, mode: TransportMode) -> Command {
    Command::CreateSession(CreateSession {
        session: SessionId(id),
        ice: IceParams {
            ufrag: format!("unused{id}"),
            pwd: "0123456789abcdefghijklmn".into(),
            remote_ufrag: None,
            remote_pwd: None,
        },
        remote_fingerprint: None,
        dtls_role: DtlsRole::Server,
        shard_hint: Some(0),
        mode,
        data: None,
        quality: Quality {
            max_bitrate_bps: 20_000_000,
            priority: 1,
        },
    })
}

fn plain(remote: SocketAddr) -> TransportMode {
    TransportMode::PlainRtp {
        remote,
        local_port: None,
    }
}

fn trunk(remote: SocketAddr, local: &str, peer: &str, epoch: u64) -> TransportMode {
    TransportMode::Trunk {
        remote,
        local_port: None,
        crypto: TrunkCrypto::Srtp {
            local_node: local.into(),
            remote_node: peer.into(),
            epoch,
        },
        silence_ms: None,
    }
}

fn video_track(session: u64, track: u64, ssrc: u32, rtx_ssrc: Option<u32>) -> Command {
    Command::AddTrack(AddTrack {
        session: SessionId(session),
        track: TrackId(track),
        kind: MediaKind::Video,
        codec: Codec {
            name: "VP8".into(),
            payload_type: 96,
            clock_rate: 90_000,
            rtx_payload_type: rtx_ssrc.map(|_| 97),
        },
        layers: vec![Layer {
            rid: None,
            ssrc: Some(ssrc),
            rtx_ssrc,
        }],
        ext_ids: ExtIds::default(),
        e2ee: false,
        source: Source::Camera,
        mid: None,
    })
}

fn subscribe(sub: u64, session: u64, track: u64, ssrc: u32) -> Command {
    Command::Subscribe(Subscribe {
        subscription: SubscriptionId(sub),
        session: SessionId(session),
        track: TrackId(track),
        ssrc,
        rtx_ssrc: None,
        payload_type: 96,
        rtx_payload_type: None,
        ext_ids: ExtIds::default(),
    })
}

/// A one-packet VP8 keyframe whose payload carries the packet's id (its index in the stream).
fn rtp(id: u32) -> Vec<u8> {
    let seq = id as u16;
    let mut p = vec![0x80, 0x80 | 96];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&(id * 3000).to_be_bytes());
    p.extend_from_slice(&VIDEO_SSRC.to_be_bytes());
    // VP8 descriptor S=1 PID=0, then a keyframe frame tag and start code (RFC 6386 §9.1).
    p.extend_from_slice(&[
        0x10, 0x00, 0x00, 0x00, 0x9d, 0x01, 0x2a, 0x40, 0x01, 0xf0, 0x00,
    ]);
    p.extend_from_slice(&id.to_be_bytes());
    p.resize(p.len() + 200, id as u8);
    p
}

/// The RTP header's length: fixed part, CSRCs, header extension.
fn header_len(p: &[u8]) -> usize {
    let mut h = 12 + 4 * usize::from(p[0] & 0x0f);
    if p[0] & 0x10 != 0 {
        h += 4 + 4 * usize::from(u16::from_be_bytes([p[h + 2], p[h + 3]]));
    }
    h
}

/// What one subscriber received: per packet id, the sequence number and when.
struct Received {
    seqs: Vec<u16>,
    at: HashMap<u32, Instant>,
    bad_payload: u32,
}

fn reader(s: UdpSocket, ssrc: u32, stop: Arc<AtomicBool>) -> JoinHandle<Received> {
    std::thread::spawn(move || {
        s.set_read_timeout(Some(Duration::from_millis(50)))
            .expect("timeout");
        let mut r = Received {
            seqs: Vec::new(),
            at: HashMap::new(),
            bad_payload: 0,
        };
        let mut buf = [0u8; 2048];
        while !stop.load(Ordering::Relaxed) && r.at.len() < PACKETS as usize {
            let Ok(n) = s.recv(&mut buf) else { continue };
            let now = Instant::now();
            if n < 12 || (192..=223).contains(&buf[1]) {
                continue; // RTCP from the dataplane
            }
            assert_eq!(
                u32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]),
                ssrc,
                "foreign SSRC"
            );
            // Past the header (relays carry the trunk's header extensions, D108; B's
            // subscribers negotiated none, so they arrive padded out).
            let h = header_len(&buf[..n]);
            let id = u32::from_be_bytes([buf[h + 11], buf[h + 12], buf[h + 13], buf[h + 14]]);
            if buf[h..n] != rtp(id)[12..] {
                r.bad_payload += 1;
            }
            r.seqs.push(u16::from_be_bytes([buf[2], buf[3]]));
            r.at.entry(id).or_insert(now);
        }
        r
    })
}

/// The trunk's path in the `wire` runs: A talks to `a_side`, B to `b_side`; the wire counts
/// what crosses A→B and drops `loss_pct` % of A→B RTP (seeded).
struct Wire {
    stop: Arc<AtomicBool>,
    media: Arc<AtomicU64>,
    rtx: Arc<AtomicU64>,
    dropped: Arc<AtomicU64>,
    /// The sequence numbers of the media packets that crossed A→B, in order.
    seqs: Arc<Mutex<Vec<u16>>>,
    threads: Vec<JoinHandle<()>>,
}

impl Wire {
    fn start(
        a_side: UdpSocket,
        b_side: UdpSocket,
        a: SocketAddr,
        b: SocketAddr,
        loss_pct: u64,
    ) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let (media, rtx, dropped) = Default::default();
        let mut w = Wire {
            stop,
            media,
            rtx,
            dropped,
            seqs: Arc::default(),
            threads: Vec::new(),
        };
        for (from, to, dest, a2b) in [
            (
                a_side.try_clone().expect("clone"),
                b_side.try_clone().expect("clone"),
                b,
                true,
            ),
            (b_side, a_side, a, false),
        ] {
            let (stop, media, rtx, dropped, seqs) = (
                Arc::clone(&w.stop),
                Arc::clone(&w.media),
                Arc::clone(&w.rtx),
                Arc::clone(&w.dropped),
                Arc::clone(&w.seqs),
            );
            w.threads.push(std::thread::spawn(move || {
                from.set_read_timeout(Some(Duration::from_millis(50)))
                    .expect("timeout");
                let mut rng: u64 = 0x5eed_1e55;
                let mut buf = [0u8; 2048];
                while !stop.load(Ordering::Relaxed) {
                    let Ok(n) = from.recv(&mut buf) else { continue };
                    let is_rtp = n >= 12 && !(192..=223).contains(&buf[1]);
                    if a2b && is_rtp {
                        rng ^= rng << 13;
                        rng ^= rng >> 7;
                        rng ^= rng << 17;
                        if rng % 100 < loss_pct {
                            dropped.fetch_add(1, Ordering::Relaxed);
                            continue;
                        }
                        // SRTP: the VP8 payload descriptor and frame tag are not readable.
                        let h = header_len(&buf[..n]);
                        assert_ne!(&buf[h..h + 7], &rtp(0)[12..19], "plaintext on the trunk");
                        match u32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]) {
                            TRUNK_SSRC => {
                                let seq = u16::from_be_bytes([buf[2], buf[3]]);
                                seqs.lock().expect("seqs").push(seq);
                                media.fetch_add(1, Ordering::Relaxed)
                            }
                            TRUNK_RTX_SSRC => rtx.fetch_add(1, Ordering::Relaxed),
                            other => panic!("foreign SSRC {other:#x} on the trunk"),
                        };
                    }
                    let _ = to.send_to(&buf[..n], dest);
                }
            }));
        }
        w
    }

    fn stop(self) -> (u64, u64, u64, Vec<u16>) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            t.join().expect("wire thread");
        }
        let seqs = std::mem::take(&mut *self.seqs.lock().expect("seqs"));
        (
            self.media.load(Ordering::Relaxed),
            self.rtx.load(Ordering::Relaxed),
            self.dropped.load(Ordering::Relaxed),
            seqs,
        )
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// The trunk's path in a run.
#[derive(Clone, Copy, PartialEq)]
enum Path {
    /// Dataplane to dataplane.
    Direct,
    /// Through the counting [`Wire`], dropping this share (%) of A→B RTP.
    Wire(u64),
    /// Through `sluice-netem`: 40 ms each way, 2 % loss each way (seeded).
    Netem,
}

/// One run. `b_epoch`: the trunk epoch B keys with (A uses 1): any other value means B's keys
/// are not A's, and nothing must get through.
fn run(name: &str, path: Path, b_epoch: u64) {
    let keyed = b_epoch == 1;
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("cluster.secret"), [0x42u8; 32]).expect("secret");
    let mut a = node(&dir, "a", true);
    let mut b = node(&dir, "b", true);

    // The trunk's remote on each side: the other dataplane, or the wire's socket facing it.
    let (a_side, b_side) = (
        UdpSocket::bind((LOCAL, 0)).expect("bind"),
        UdpSocket::bind((LOCAL, 0)).expect("bind"),
    );
    // Through netem, B's peer is the relay's upstream socket, bound where B is told.
    let netem = (path == Path::Netem).then(|| {
        let source = UdpSocket::bind((LOCAL, 0))
            .and_then(|s| s.local_addr())
            .expect("a free port");
        let lossy = Impairment {
            delay: Duration::from_millis(40),
            loss: 0.02,
            ..Impairment::default()
        };
        let cfg = RelayConfig {
            up: lossy,
            down: lossy,
            seed: 16,
            upstream_source: Some(source),
            ..RelayConfig::new(SocketAddr::new(LOCAL, 0), b.media)
        };
        (Relay::start(cfg).expect("netem"), source)
    });
    let (a_remote, b_remote) = match (path, &netem) {
        (Path::Wire(_), _) => (
            a_side.local_addr().expect("addr"),
            b_side.local_addr().expect("addr"),
        ),
        (Path::Netem, Some((relay, source))) => (relay.local_addr(), *source),
        _ => (b.media, a.media),
    };
    let wire = match path {
        Path::Wire(loss) => Some(Wire::start(a_side, b_side, a.media, b.media, loss)),
        _ => None,
    };

    let publisher = UdpSocket::bind((LOCAL, 0)).expect("bind");
    let sockets: Vec<UdpSocket> = (0..3)
        .map(|_| UdpSocket::bind((LOCAL, 0)).expect("bind"))
        .collect();
    let addr = |s: &UdpSocket| s.local_addr().expect("addr");

    // B first: the trunk session, the relayed track on it, two local subscribers.
    b.ctl
        .request(session(700, trunk(b_remote, "node-b", "node-a", b_epoch)))
        .expect("trunk on B");
    b.ctl
        .request(video_track(700, 5100, TRUNK_SSRC, Some(TRUNK_RTX_SSRC)))
        .expect("relayed track on B");
    for (i, s) in sockets[1..].iter().enumerate() {
        let id = 20 + i as u64;
        b.ctl
            .request(session(id, plain(addr(s))))
            .expect("sub on B");
        b.ctl
            .request(subscribe(id, id, 5100, 0x6000 + i as u32))
            .expect("subscribe on B");
    }
    // A: the publisher, s1, the trunk, and the relay of the track's only layer.
    a.ctl
        .request(session(1, plain(addr(&publisher))))
        .expect("publisher");
    a.ctl
        .request(video_track(1, 100, VIDEO_SSRC, None))
        .expect("track");
    a.ctl
        .request(session(10, plain(addr(&sockets[0]))))
        .expect("s1");
    a.ctl
        .request(subscribe(10, 10, 100, 0x5000))
        .expect("subscribe s1");
    a.ctl
        .request(session(700, trunk(a_remote, "node-a", "node-b", 1)))
        .expect("trunk on A");
    a.ctl
        .request(Command::RelayTrack(RelayTrack {
            subscription: SubscriptionId(900),
            session: SessionId(700),
            track: TrackId(100),
            layer: 0,
            ssrc: TRUNK_SSRC,
            rtx_ssrc: Some(TRUNK_RTX_SSRC),
            payload_type: 96,
            rtx_payload_type: Some(97),
            ext_ids: ExtIds::default(),
        }))
        .expect("relay_track");

    let stop = Arc::new(AtomicBool::new(false));
    let s2_tx = sockets[1].try_clone().expect("clone");
    let mut sockets = sockets.into_iter();
    let readers: Vec<_> = [0x5000, 0x6000, 0x6001]
        .into_iter()
        .map(|ssrc| reader(sockets.next().expect("socket"), ssrc, Arc::clone(&stop)))
        .collect();
    let t0 = Instant::now();
    for id in 0..PACKETS {
        publisher.send_to(&rtp(id), a.media).expect("send");
        let due = t0 + SPACING * (id + 1);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
    // Up to 3 s for late repairs; readers stop on their own once complete.
    let deadline = Instant::now() + Duration::from_secs(3);
    while readers.iter().any(|r| !r.is_finished()) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    stop.store(true, Ordering::Relaxed);
    let got: Vec<Received> = readers
        .into_iter()
        .map(|r| r.join().expect("reader"))
        .collect();

    for (name_s, r) in ["s1 (A)", "s2 (B)", "s3 (B)"].iter().zip(&got) {
        println!(
            "{name}: {name_s} received {} of {PACKETS} packets ({} distinct), {} with a wrong payload",
            r.seqs.len(),
            r.at.len(),
            r.bad_payload
        );
        assert_eq!(r.bad_payload, 0, "{name}: {name_s} payloads");
    }
    match path {
        _ if !keyed => {
            assert_eq!(got[0].at.len(), PACKETS as usize, "{name}: s1");
            assert!(
                got[1].at.is_empty() && got[2].at.is_empty(),
                "{name}: B decrypted"
            );
        }
        Path::Wire(1..) | Path::Netem => {
            for (name_s, r) in ["s2", "s3"].iter().zip(&got[1..]) {
                let missing = PACKETS as usize - r.at.len();
                let residual = missing as f64 * 100.0 / f64::from(PACKETS);
                let ids: Vec<u32> = (0..PACKETS).filter(|i| !r.at.contains_key(i)).collect();
                println!(
                    "{name}: {name_s} residual loss {missing} packets = {residual:.2} % \
                     (ids {ids:?} of 0..{PACKETS})"
                );
                assert!(
                    residual < 0.5,
                    "{name}: {name_s} residual loss {residual:.2} %"
                );
            }
        }
        _ => {
            for (name_s, r) in ["s1", "s2", "s3"].iter().zip(&got) {
                assert_eq!(r.seqs.len(), PACKETS as usize, "{name}: {name_s} count");
                for w in r.seqs.windows(2) {
                    assert_eq!(w[1], w[0].wrapping_add(1), "{name}: {name_s} seq gap");
                }
            }
        }
    }

    if matches!(path, Path::Direct | Path::Netem) && keyed {
        // recv(s2) − recv(s1) per packet.
        let mut d: Vec<f64> = got[0]
            .at
            .iter()
            .filter_map(|(id, t1)| {
                let t2 = got[1].at.get(id)?;
                Some(if t2 >= t1 {
                    t2.duration_since(*t1).as_secs_f64() * 1e3
                } else {
                    -(t1.duration_since(*t2).as_secs_f64() * 1e3)
                })
            })
            .collect();
        d.sort_by(f64::total_cmp);
        println!(
            "{name}: recv(s2) - recv(s1) over {} packets: p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms{}",
            d.len(),
            percentile(&d, 0.5),
            percentile(&d, 0.99),
            d[d.len() - 1],
            if path == Path::Direct {
                " (issue targets on loopback: p50 <= 0.3 ms, p99 <= 2 ms)"
            } else {
                " (the trunk adds 40 ms)"
            }
        );
    }
    if path == Path::Direct {
        pli_reaches_the_publisher(name, &publisher, &s2_tx, b.media);
    }
    if let Some((relay, _)) = netem {
        println!("{name}: sluice-netem stats {}", relay.stop().to_json());
    }

    if let Some(w) = wire {
        let (media, rtx, dropped, seqs) = w.stop();
        println!(
            "{name}: A→B on the trunk: {media} media packets for {PACKETS} published \
             (2 subscribers on B), {rtx} RTX, {dropped} dropped by the wire"
        );
        if !keyed {
            assert_eq!(media, u64::from(PACKETS), "A relayed, B refused");
        } else if path == Path::Wire(0) {
            assert_eq!(
                media,
                u64::from(PACKETS),
                "each packet crosses the trunk once"
            );
            assert_eq!(rtx, 0);
            // The publisher's own sequence numbers (0, 1, 2, ...), not a rewritten series.
            assert!(
                seqs.iter().enumerate().all(|(i, &q)| q == i as u16),
                "the trunk carries the source's sequence numbers"
            );
        } else {
            assert!(
                media <= u64::from(PACKETS),
                "never more than once: {media} media packets"
            );
            assert!(rtx > 0, "losses were repaired by RTX");
        }
    }
    drop((a.ctl, b.ctl));
    a.dp.stop();
    b.dp.stop();
}

/// s2 asks B for a keyframe (RTCP PLI for its SSRC); B's trunk ingress asks A over the trunk;
/// the publisher on A gets a PLI for its SSRC. Three PLIs 5 ms apart: throttled, at least one
/// arrives.
fn pli_reaches_the_publisher(name: &str, publisher: &UdpSocket, s2: &UdpSocket, b: SocketAddr) {
    publisher
        .set_read_timeout(Some(Duration::from_millis(20)))
        .expect("timeout");
    let mut buf = [0u8; 2048];
    while publisher.recv(&mut buf).is_ok() {} // receiver reports and anything earlier
    for _ in 0..3 {
        let mut pli = vec![0x81, 206, 0, 2];
        pli.extend_from_slice(&0x6000_u32.to_be_bytes()); // sender: s2
        pli.extend_from_slice(&0x6000_u32.to_be_bytes()); // media: what B sends s2
        s2.send_to(&pli, b).expect("send PLI");
        std::thread::sleep(Duration::from_millis(5));
    }
    let (mut plis, deadline) = (0, Instant::now() + Duration::from_secs(1));
    while Instant::now() < deadline {
        let Ok(n) = publisher.recv(&mut buf) else {
            continue;
        };
        // A compound packet: walk it for PSFB (206) FMT 1 about the publisher's SSRC.
        let mut at = 0;
        while at + 12 <= n {
            let len = (usize::from(u16::from_be_bytes([buf[at + 2], buf[at + 3]])) + 1) * 4;
            if buf[at + 1] == 206 && buf[at] & 0x1f == 1 {
                let media =
                    u32::from_be_bytes([buf[at + 8], buf[at + 9], buf[at + 10], buf[at + 11]]);
                if media == VIDEO_SSRC {
                    plis += 1;
                }
            }
            at += len;
        }
    }
    println!("{name}: 3 PLIs from s2 on B -> {plis} PLI(s) at the publisher on A");
    assert!(plis >= 1, "{name}: no PLI reached the publisher");
}

#[test]
fn trunk_relays_a_track_between_two_dataplanes() {
    run("direct", Path::Direct, 1);
    run("wire", Path::Wire(0), 1);
    run("wire_2pct_loss", Path::Wire(2), 1);
    run("wire_wrong_epoch", Path::Wire(0), 2);
    run("netem_40ms_2pct", Path::Netem, 1);
}

/// The field a refused request names.
fn refused(ctl: &mut ControlClient, cmd: Command) -> String {
    match ctl.request(cmd) {
        Err(ControlError::Failed(e)) => {
            println!("refused: {} ({:?})", e.message, e.field);
            e.field.unwrap_or_default()
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}

fn relay(session: u64, track: u64, layer: u8) -> Command {
    Command::RelayTrack(RelayTrack {
        subscription: SubscriptionId(900 + u64::from(layer)),
        session: SessionId(session),
        track: TrackId(track),
        layer,
        ssrc: TRUNK_SSRC,
        rtx_ssrc: None,
        payload_type: 96,
        rtx_payload_type: None,
        ext_ids: ExtIds::default(),
    })
}

#[test]
fn trunk_commands_refuse_what_they_cannot_do_and_are_bounded() {
    let dir = tempfile::tempdir().expect("tempdir");
    // No cluster secret configured: only trusted trunks.
    let mut n = node(&dir, "n", false);
    let peer: SocketAddr = "127.0.0.1:9".parse().expect("addr");
    let field = refused(&mut n.ctl, session(700, trunk(peer, "a", "b", 1)));
    assert_eq!(field, "mode.crypto");
    let field = refused(&mut n.ctl, session(700, trunk(peer, "a", "a", 1)));
    assert_eq!(field, "mode.crypto.remote_node");
    let field = refused(&mut n.ctl, session(700, trunk(peer, "a b", "a", 1)));
    assert_eq!(field, "mode.crypto.local_node");
    for ms in [0, 499, 60_001] {
        let quick = TransportMode::Trunk {
            remote: peer,
            local_port: None,
            crypto: TrunkCrypto::Trusted {},
            silence_ms: Some(ms),
        };
        assert_eq!(refused(&mut n.ctl, session(700, quick)), "mode.silence_ms");
    }
    let trusted = TransportMode::Trunk {
        remote: peer,
        local_port: None,
        crypto: TrunkCrypto::Trusted {},
        silence_ms: Some(500),
    };
    n.ctl.request(session(700, trusted)).expect("trusted trunk");
    // A second session to the same remote would steal its packets.
    assert_eq!(
        refused(&mut n.ctl, session(701, plain(peer))),
        "mode.remote"
    );

    let publisher: SocketAddr = "127.0.0.1:10".parse().expect("addr");
    n.ctl
        .request(session(1, plain(publisher)))
        .expect("publisher");
    n.ctl
        .request(video_track(1, 100, VIDEO_SSRC, None))
        .expect("track");
    // Relays go on trunk sessions only, and name a layer the track has.
    assert_eq!(refused(&mut n.ctl, relay(1, 100, 0)), "session");
    assert_eq!(refused(&mut n.ctl, relay(700, 100, 1)), "layer");
    assert_eq!(refused(&mut n.ctl, relay(700, 100, 9)), "layer");
    n.ctl.request(relay(700, 100, 0)).expect("relay");
    n.ctl
        .request(Command::Unsubscribe {
            subscription: SubscriptionId(900),
        })
        .expect("unrelay");

    // A trunk ingests at most 64 relayed tracks.
    for t in 0..64u32 {
        n.ctl
            .request(video_track(700, 5000 + u64::from(t), 80_000 + 2 * t, None))
            .expect("relayed track");
    }
    let e = n.ctl.request(video_track(700, 6000, 90_000, None));
    println!("65th relayed track on a trunk: {e:?}");
    assert!(matches!(e, Err(ControlError::Failed(_))), "{e:?}");
    drop(n.ctl);
    n.dp.stop();
}

#[test]
fn a_short_or_missing_cluster_secret_fails_start_naming_the_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (what, bytes) in [("short", Some(vec![1u8; 31])), ("missing", None)] {
        let path = dir.path().join(format!("{what}.secret"));
        if let Some(b) = bytes {
            std::fs::write(&path, b).expect("write");
        }
        let mut cfg = Config::defaults(1);
        cfg.workers = vec![affinity::online_cores().expect("cores")[0]];
        cfg.bind = LOCAL;
        cfg.port = 0;
        cfg.control_socket = dir.path().join(format!("{what}.sock"));
        cfg.trunk_secret_file = Some(path);
        let e = match Dataplane::start(cfg) {
            Ok(_) => panic!("{what} secret: the dataplane started"),
            Err(e) => e.to_string(),
        };
        println!("{what} secret: {e}");
        assert!(e.starts_with("dataplane.trunk_secret_file: "), "{e}");
    }
}
