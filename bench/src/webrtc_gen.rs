//! The WebRTC load generator behind `--cipher gcm|cm` and Janus's side of `compare`: P
//! publishers and S subscribers that are real WebRTC peers — ICE (RFC 8445 §7.2, controlling,
//! with RFC 8445 §7.3.1.1 role conflicts won by the largest tie-breaker), DTLS-SRTP (RFC 5763/
//! 5764, client role) and SRTP/SRTCP (RFC 3711, RFC 7714) — all on one thread pinned to the
//! generator's core.
//!
//! Each peer is one socket (the dataplane's `recvmmsg`/`sendmmsg` backend, sharing one buffer
//! pool; readiness from one epoll set) and one rtp-core [`Session`] in `WebRtcClient` mode: the
//! same protocol code the SFU's shards and the dataplane's test peer run. What rtp-core's ICE
//! client leaves out because a lite server never needs it — answering the peer's own
//! connectivity checks (a full agent such as Janus's libnice sends them, RFC 8445 §7.3) — is done
//! here with rtp-core's STUN writer.
//!
//! Receive side: every datagram goes through the subscriber's session, so every media packet is
//! SRTP-authenticated and decrypted (the tag check of RFC 3711 §3.3 / RFC 7714 §9.2 on all of
//! them, not a sample); the report's generator `busy` says what that costs. Skipping packets
//! would make the session's NACK generator see gaps and ask the SFU for retransmissions, and
//! without decryption the payload tag (window, latency) cannot be read. Then the same accounting
//! as the plain generator: tag, window, latency, 1 in
//! [`PATTERN_SAMPLE`](crate::gen::PATTERN_SAMPLE) bodies in full ([`webrtc_rx`](crate::webrtc_rx)).
//! Send side (`tx`): each due frame SRTP-protected by its publisher's session, sent in batches.
#![allow(clippy::disallowed_methods)] // a load generator reads the clock by design

mod tx;

use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsFd, AsRawFd};
use std::time::{Duration, Instant, SystemTime};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use rtp_core::dtls::{ClientVersion, DtlsCert, DtlsRole, Fingerprint};
use rtp_core::forward::{Codec, MediaKind};
use rtp_core::ice::IceClientConfig;
use rtp_core::session::{ExtIds, LayerSsrc, Session, SessionConfig, SessionMode, UpTrackConfig};
use rtp_core::srtp::ProtectionProfile;
use sluice_dataplane::pool::BufPool;
use sluice_dataplane::sys::{Backend, IoMode, RecvMeta, SocketConfig};

use crate::cpu::{self, ThreadCpu};
use crate::gen::{pub_ssrc, GenReport, Plan};
use crate::media::{Kind, Profile, Stream};
use crate::report::BenchError;
use crate::webrtc_rx::{after_input, drain, Accounting, ControlCounts, Peer, BATCH};

const POOL: usize = 4096;
const SOCKET_BUF: usize = 4 << 20;
const MAX_WAIT: Duration = Duration::from_millis(2);
/// How often every session's timers are checked.
const TIMER_SWEEP: Duration = Duration::from_millis(2);
/// A tie-breaker no agent's random one exceeds: our peer stays controlling (RFC 8445 §7.3.1.1).
pub const WINNING_TIE_BREAKER: u64 = u64::MAX;

/// One peer's local side, known before any signaling: its address and certificate fingerprint
/// (the SDP `a=fingerprint` value, `"sha-256 AB:…"`).
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub addr: SocketAddr,
    pub fingerprint: String,
}

/// A stream a subscriber receives: the SSRC the SFU sends it with, and which published stream
/// (generator stream id) it carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecvStream {
    pub ssrc: u32,
    pub stream: u32,
    pub kind: Kind,
    pub pt: u8,
    /// RTX (RFC 4588) SSRC and payload type, when negotiated: what the SFU probes on.
    pub rtx: Option<(u32, u8)>,
}

/// What signaling told one peer about the other side.
#[derive(Debug, Clone)]
pub struct Remote {
    /// The SFU's ICE candidate.
    pub server: SocketAddr,
    /// Our ICE ufrag and password (as put in our SDP / `CreateSession.ice.remote_*`).
    pub local_ufrag: String,
    pub local_pwd: String,
    pub remote_ufrag: String,
    pub remote_pwd: String,
    /// `"sha-256 AB:…"`.
    pub server_fingerprint: String,
    pub tie_breaker: Option<u64>,
    /// Subscribers: what arrives.
    pub receive: Vec<RecvStream>,
    /// The negotiated transport-wide-cc header-extension id (RFC 8285 one-byte form), as a
    /// browser uses it once transport-cc is negotiated: a publisher stamps every packet with
    /// its transport-wide sequence number, a subscriber sends transport-cc feedback
    /// (draft-holmer-rmcat-transport-wide-cc-extensions-01 §3) for the packets that carry it.
    /// `None`: neither (the peer then looks like a stack without send-side estimation).
    pub transport_cc: Option<u8>,
    /// The DTLS version the peer offers. Against Sluice, `Dtls12` reaches its own DTLS 1.2
    /// server, whose SRTP preference the dataplane's `srtp_profiles` sets (how `--cipher cm`
    /// gets AES-CM); `Auto` offers DTLS 1.3 too, which dimpl answers with AES-256-GCM.
    pub dtls_version: ClientVersion,
}

/// The `--cipher` family of a negotiated SRTP profile (`gcm` covers both AEAD key sizes).
pub fn cipher_name(p: ProtectionProfile) -> &'static str {
    match p {
        ProtectionProfile::AeadAes128Gcm | ProtectionProfile::AeadAes256Gcm => "gcm",
        ProtectionProfile::Aes128CmHmacSha1_80 => "cm",
        _ => "other",
    }
}

/// The profile's registered name (RFC 5764 §4.1.2, RFC 7714 §14.2).
pub fn profile_name(p: ProtectionProfile) -> &'static str {
    match p {
        ProtectionProfile::AeadAes128Gcm => "SRTP_AEAD_AES_128_GCM",
        ProtectionProfile::AeadAes256Gcm => "SRTP_AEAD_AES_256_GCM",
        ProtectionProfile::Aes128CmHmacSha1_80 => "SRTP_AES128_CM_HMAC_SHA1_80",
        ProtectionProfile::Aes128CmHmacSha1_32 => "SRTP_AES128_CM_HMAC_SHA1_32",
    }
}

/// See the module docs. Driven by one thread: [`open`](WebRtcGen::open), signaling with
/// [`endpoints`](WebRtcGen::endpoints), [`start_peer`](WebRtcGen::start_peer) per peer,
/// [`handshake`](WebRtcGen::handshake), then [`run`](WebRtcGen::run).
pub struct WebRtcGen {
    pubs: Vec<Peer>,
    subs: Vec<Peer>,
    pool: BufPool,
    poll: Poll,
    base: Instant,
    pub counts: ControlCounts,
    /// Seconds the generator thread waited for its core while runnable during the last run's
    /// window (`/proc/thread-self/schedstat`): scheduling delay caused by other processes.
    pub runqueue_wait_s: Option<f64>,
}

impl std::fmt::Debug for WebRtcGen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebRtcGen")
            .field("publishers", &self.pubs.len())
            .field("subscribers", &self.subs.len())
            .finish()
    }
}

/// Which side of the plan a peer is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Publisher,
    Subscriber,
}

fn open_socket(ip: IpAddr, stamped: bool) -> Result<Backend, BenchError> {
    let mut sc = SocketConfig::new(SocketAddr::new(ip, 0));
    sc.reuse_port = false;
    sc.gso = false;
    sc.recv_buf_bytes = Some(SOCKET_BUF);
    sc.send_buf_bytes = Some(SOCKET_BUF);
    sc.rx_timestamps = stamped;
    Ok(Backend::open_mode(IoMode::Socket, &sc, BATCH)?)
}

impl WebRtcGen {
    /// Opens every peer's socket on `ip` and makes its certificate.
    pub fn open(plan: &Plan, ip: IpAddr) -> Result<Self, BenchError> {
        let poll = Poll::new()?;
        let mut mk = |token: usize| -> Result<Peer, BenchError> {
            let backend = open_socket(ip, plan.kernel_arrival)?;
            let fd = backend.as_fd().as_raw_fd();
            poll.registry()
                .register(&mut SourceFd(&fd), Token(token), Interest::READABLE)?;
            let cert = DtlsCert::generate(SystemTime::now())
                .map_err(|e| BenchError::Other(format!("DTLS certificate: {e}")))?;
            Ok(Peer {
                backend,
                cert,
                session: None,
                local_pwd: String::new(),
                receive: Vec::new(),
                transport_cc: None,
                transport_seq: 0,
                profile: None,
                failed: None,
                deadline: None,
            })
        };
        let np = plan.publishers as usize;
        let pubs = (0..np).map(&mut mk).collect::<Result<Vec<_>, _>>()?;
        let subs = (0..plan.subscribers as usize)
            .map(|j| mk(np + j))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            pubs,
            subs,
            pool: BufPool::new(POOL),
            poll,
            base: Instant::now(),
            counts: ControlCounts::default(),
            runqueue_wait_s: None,
        })
    }

    /// Every peer's address and fingerprint: publishers, subscribers.
    pub fn endpoints(&self, side: Side) -> Result<Vec<Endpoint>, BenchError> {
        self.side(side)
            .iter()
            .map(|p| {
                Ok(Endpoint {
                    addr: p.backend.local_addr()?,
                    fingerprint: p.cert.fingerprint().to_sdp(),
                })
            })
            .collect()
    }

    fn side(&self, side: Side) -> &[Peer] {
        match side {
            Side::Publisher => &self.pubs,
            Side::Subscriber => &self.subs,
        }
    }

    /// Builds peer `i`'s session from what signaling said; its first ICE check goes out on the
    /// next [`handshake`](Self::handshake).
    pub fn start_peer(&mut self, side: Side, i: usize, remote: &Remote) -> Result<(), BenchError> {
        let peer = match side {
            Side::Publisher => &mut self.pubs[i],
            Side::Subscriber => &mut self.subs[i],
        };
        let fp = Fingerprint::parse_sdp(&remote.server_fingerprint)
            .map_err(|e| BenchError::Other(format!("server fingerprint: {e}")))?;
        let mut ice = IceClientConfig::new(
            (&remote.local_ufrag, &remote.local_pwd),
            (&remote.remote_ufrag, &remote.remote_pwd),
            remote.server,
        );
        // Distinct transaction ids per peer without a random source.
        ice.seed = seed_of(&remote.local_ufrag);
        ice.tie_breaker = remote.tie_breaker.unwrap_or(ice.tie_breaker ^ ice.seed);
        // A full agent may take a few of its own check rounds before it answers.
        ice.max_tries = 12;
        let mode = SessionMode::WebRtcClient {
            ice,
            dtls_role: DtlsRole::Client,
            remote_fingerprint: Some(fp),
        };
        let mut config = SessionConfig::new(mode);
        config.dtls.client_version = remote.dtls_version;
        let mut session = Session::new(Instant::now(), config, &peer.cert)
            .map_err(|e| BenchError::Other(format!("session: {e}")))?;
        for r in &remote.receive {
            let (kind, codec, rate) = match r.kind {
                Kind::Audio => (MediaKind::Audio, Codec::Opus, 48_000),
                Kind::Video => (MediaKind::Video, Codec::Vp8, 90_000),
            };
            session
                .add_up_track(UpTrackConfig {
                    kind,
                    codec,
                    clock_rate: rate,
                    payload_type: r.pt,
                    rtx_payload_type: r.rtx.map(|(_, pt)| pt),
                    layers: vec![LayerSsrc {
                        ssrc: Some(r.ssrc),
                        rtx_ssrc: r.rtx.map(|(ssrc, _)| ssrc),
                        rid: None,
                    }],
                    // The session records the transport-wide sequence numbers of packets
                    // carrying this id and sends feedback for them from `poll_transmit`.
                    ext: ExtIds {
                        transport_cc: remote.transport_cc,
                        ..ExtIds::default()
                    },
                    e2ee: false,
                    mid: None,
                })
                .map_err(|e| BenchError::Other(format!("receive track: {e}")))?;
        }
        peer.session = Some(session);
        peer.local_pwd = remote.local_pwd.clone();
        peer.receive = remote.receive.clone();
        peer.transport_cc = remote.transport_cc;
        Ok(())
    }

    /// Services every started peer until all of them are connected (ICE nominated, DTLS done,
    /// SRTP keyed) or `timeout` passes; returns the negotiated profile (the first peer's).
    pub fn handshake(
        &mut self,
        timeout: Duration,
    ) -> Result<Option<ProtectionProfile>, BenchError> {
        let deadline = Instant::now() + timeout;
        let mut events = Events::with_capacity(1024);
        let mut metas = [RecvMeta::default(); BATCH];
        let mut r = GenReport::default();
        // Bounded by the deadline.
        loop {
            self.sweep_timers(Instant::now(), false)?;
            let started = || {
                self.pubs
                    .iter()
                    .chain(&self.subs)
                    .filter(|p| p.session.is_some())
            };
            if let Some(f) = started().find_map(|p| p.failed.clone()) {
                return Err(BenchError::Other(format!("peer failed: {f}")));
            }
            if started().all(Peer::connected) {
                return Ok(started().find_map(|p| p.profile));
            }
            if Instant::now() >= deadline {
                let n = started().count();
                let done = started().filter(|p| p.connected()).count();
                let ice = started()
                    .filter(|p| !p.connected())
                    .find_map(|p| p.session.as_ref().map(|s| format!("{:?}", s.stats())));
                return Err(BenchError::Other(format!(
                    "{done} of {n} WebRTC peers connected within {timeout:?} ({} checks from \
                     the SFU answered, {} datagrams refused; first unconnected session: {})",
                    self.counts.checks_answered,
                    self.counts.refused,
                    ice.unwrap_or_default()
                )));
            }
            self.wait_and_drain(&mut events, MAX_WAIT, &mut metas, None, &mut r)?;
        }
    }

    /// Services every started peer once without waiting: timers, then whatever has arrived
    /// (for callers that do slow signaling between peers).
    pub fn pump(&mut self) -> Result<(), BenchError> {
        let mut events = Events::with_capacity(1024);
        let mut metas = [RecvMeta::default(); BATCH];
        let mut r = GenReport::default();
        self.sweep_timers(Instant::now(), false)?;
        self.wait_and_drain(&mut events, Duration::ZERO, &mut metas, None, &mut r)
    }

    /// The negotiated SRTP profile of every connected peer, if they all agree.
    pub fn profile(&self) -> Option<ProtectionProfile> {
        let mut it = self.pubs.iter().chain(&self.subs).filter_map(|p| p.profile);
        let first = it.next()?;
        it.all(|p| p == first).then_some(first)
    }

    /// Runs every due timer and sends what the sessions have. Setup (`cached` false) visits
    /// every peer. The run (`cached`) skips a subscriber whose timer, as of its last
    /// [`after_input`], is not due: in the run a subscriber's session changes only through
    /// its input and its timers, both followed by `after_input`. Visiting each of 400 sessions
    /// every 2 ms was a fifth of the generator's time at 400 WebRTC subscribers — time it was
    /// not receiving, which the latency it reports then included.
    fn sweep_timers(&mut self, now: Instant, cached: bool) -> Result<(), BenchError> {
        let np = self.pubs.len();
        for (i, peer) in self.pubs.iter_mut().chain(self.subs.iter_mut()).enumerate() {
            if cached && i >= np && peer.deadline.is_some_and(|t| t > now) {
                continue;
            }
            let Some(s) = peer.session.as_mut() else {
                continue;
            };
            if s.poll_timeout().is_some_and(|t| t <= now) {
                s.handle_timeout(now);
            }
            after_input(peer, &mut self.pool, now)?;
        }
        Ok(())
    }

    /// One `epoll_wait` (at most `wait`) and every readable socket drained; media accounted
    /// into `r` when `acct` is given.
    fn wait_and_drain(
        &mut self,
        events: &mut Events,
        wait: Duration,
        metas: &mut [RecvMeta; BATCH],
        acct: Option<&Accounting>,
        r: &mut GenReport,
    ) -> Result<(), BenchError> {
        match self.poll.poll(events, Some(wait)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => return Ok(()),
            Err(e) => return Err(e.into()),
        }
        let np = self.pubs.len();
        for ev in events.iter() {
            let t = ev.token().0;
            let (peer, sub) = if t < np {
                (&mut self.pubs[t], None)
            } else {
                (&mut self.subs[t - np], Some(t - np))
            };
            drain(
                peer,
                sub,
                &mut self.pool,
                self.base,
                metas,
                acct,
                &mut self.counts,
                r,
            )?;
        }
        Ok(())
    }

    /// Sends the plan's media from the publishers and receives it at the subscribers; the same
    /// window, accounting and report as the plain generator. `sfu_pid` names the `/proc` entry
    /// whose threads' CPU is sampled at the window's edges.
    pub fn run(&mut self, plan: &Plan, sfu_pid: Option<&str>) -> Result<GenReport, BenchError> {
        self.run_marking(plan, sfu_pid, &mut |_| {})
    }

    /// [`Self::run`], calling `mark(Edge)` once `lag` after the measurement window opened and
    /// once when it closed (the SFU's stats snapshots for the same window, [`Edge`]).
    pub fn run_marking(
        &mut self,
        plan: &Plan,
        sfu_pid: Option<&str>,
        mark: &mut dyn FnMut(Edge),
    ) -> Result<GenReport, BenchError> {
        // Setup may have changed sessions without `after_input`: their first sweep polls them.
        for p in &mut self.subs {
            p.deadline = None;
        }
        let n_streams = plan.publishers * 2;
        let mut streams: Vec<(u32, Stream)> = plan
            .streams()
            .map(|(p, id, kind)| {
                let prof = if kind == Kind::Audio {
                    Profile::AUDIO
                } else {
                    Profile::VIDEO
                };
                (
                    p,
                    Stream::new(prof, id, pub_ssrc(id), u64::from(p) * 7_919_000),
                )
            })
            .collect();
        self.base = Instant::now();
        let acct = Accounting {
            win_start: plan.warmup.as_nanos() as u64,
            win_end: (plan.warmup + plan.duration).as_nanos() as u64,
            n_streams,
        };
        let end = acct.win_end + plan.drain.as_nanos() as u64;
        let mut r = GenReport {
            window_s: plan.duration.as_secs_f64(),
            ..GenReport::default()
        };
        let mut events = Events::with_capacity(1024);
        let mut metas = [RecvMeta::default(); BATCH];
        let tid = cpu::current_tid();
        type Snap = (
            u64,
            Option<std::collections::BTreeMap<u32, ThreadCpu>>,
            Option<u64>,
        );
        let snap = || -> Snap {
            (
                tid.and_then(cpu::thread_ticks).unwrap_or(0),
                sfu_pid.and_then(|p| cpu::threads(p).ok()),
                runqueue_wait_ns(),
            )
        };
        let (mut cpu_start, mut cpu_end): (Option<Snap>, Option<Snap>) = (None, None);
        let mut progress = crate::report::Progress::new(
            format!("webrtc generator {}×{}", plan.publishers, plan.subscribers),
            Duration::from_nanos(end),
        );
        let mut next_sweep = Instant::now();
        let mut opened = false;
        // Bounded by time: each iteration waits at most MAX_WAIT.
        loop {
            let now = Instant::now();
            let now_ns = now.duration_since(self.base).as_nanos() as u64;
            if now_ns >= end {
                break;
            }
            if cpu_start.is_none() && now_ns >= acct.win_start {
                cpu_start = Some(snap());
            }
            if cpu_end.is_none() && now_ns >= acct.win_end {
                cpu_end = Some(snap());
                mark(Edge::Closed);
            }
            if !opened && now_ns >= acct.win_start + MARK_LAG.as_nanos() as u64 {
                opened = true;
                mark(Edge::Opened);
            }
            if now_ns < acct.win_end {
                self.send_due(&mut streams, now_ns, &acct, &mut r)?;
            }
            if now >= next_sweep {
                self.sweep_timers(now, true)?;
                next_sweep = now + TIMER_SWEEP;
            }
            let next = streams
                .iter()
                .map(|(_, s)| s.next_due_ns())
                .min()
                .unwrap_or(end)
                .min(end);
            let now_ns = self.base.elapsed().as_nanos() as u64;
            let wait = Duration::from_nanos(next.saturating_sub(now_ns)).min(MAX_WAIT);
            self.wait_and_drain(&mut events, wait, &mut metas, Some(&acct), &mut r)?;
            progress.tick(
                Instant::now(),
                &format!(
                    "rx {:.0} pps",
                    r.received as f64 / (now_ns.saturating_sub(acct.win_start).max(1) as f64 / 1e9)
                ),
            );
        }
        let ticks = cpu::ticks_per_second() as f64;
        if let (Some((g0, s0, w0)), Some((g1, s1, w1))) = (cpu_start, cpu_end) {
            self.runqueue_wait_s = w0.zip(w1).map(|(a, b)| b.saturating_sub(a) as f64 / 1e9);
            r.busy = (g1 - g0) as f64 / ticks / r.window_s.max(1e-9);
            if let (Some(s0), Some(s1)) = (s0, s1) {
                r.sfu_cpu = cpu::delta_seconds(&s0, &s1, ticks as u64);
            }
        }
        r.expected = r.sent_in_window * u64::from(plan.subscribers);
        for s in &self.subs {
            r.rx_queue_drops += u64::from(s.backend.stats().rx_queue_drops);
        }
        for p in &self.pubs {
            r.tx_would_block += p.backend.stats().tx_would_block;
        }
        progress.finish(&format!(
            "{} of {} copies, loss {:.3}%",
            r.received,
            r.expected,
            r.loss() * 100.0
        ));
        Ok(r)
    }
}

/// The two marks of [`WebRtcGen::run_marking`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Edge {
    Opened,
    Closed,
}

/// How long after the window opened [`Edge::Opened`] comes: a stats request answers with the
/// workers' last snapshots, so this is one stats interval and a margin, and the answer was
/// sent inside the window.
pub const MARK_LAG: Duration =
    Duration::from_millis(crate::fanout::STATS_INTERVAL.as_millis() as u64 + 50);

/// The calling thread's time spent runnable but waiting for a CPU, in nanoseconds (second field
/// of `/proc/thread-self/schedstat`).
pub fn runqueue_wait_ns() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    s.split_whitespace().nth(1)?.parse().ok()
}

/// FNV-1a of the ufrag: a per-peer seed for ICE transaction ids.
fn seed_of(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    h | 1
}
