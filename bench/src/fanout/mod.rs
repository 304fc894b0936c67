//! `sluice-bench fanout`: Sluice under real-shaped media load. Starts the dataplane in-process
//! (workers pinned to the SFU cores) or attaches to a running one (`--attach SOCKET`), creates
//! P publisher and S subscriber sessions over the control socket, subscribes every subscriber to
//! every track, runs the [`gen`](crate::gen) load generator pinned to its own core, and reports
//! delivered packets and bits per second, loss, latency percentiles, the SFU's CPU seconds per
//! worker thread (/proc), and the generator's own load — beside the `limit` of the same machine
//! measured in the same run, whose ratio is the headline figure.
//!
//! Cipher: `none` drives plain-RTP sessions; `gcm`/`cm` run WebRTC peers (ICE + DTLS + SRTP)
//! instead, in [`webrtc_fanout`](crate::webrtc_fanout).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sluice_dataplane::config::{Config, IoChoice};
use sluice_dataplane::runtime::{Dataplane, DataplaneHandle};
use sluice_proto::{
    AddTrack, Codec, Command, ControlClient, CreateSession, DtlsRole, ExtIds, Hello, IceParams,
    Layer, MediaKind, Notification, Quality, ReplyOk, SessionId, ShardStats, Source, Subscribe,
    SubscriptionId, TrackId, TransportMode,
};

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};

use crate::gen::{self, pub_ssrc, sub_ssrc, GenReport, Go, Plan};
pub use crate::sfu_stats::{PacerQueueing, SfuLatency};
use rtp_core::dtls::SrtpProfiles;
use rtp_core::srtp::ProtectionProfile;

use crate::hist::Histogram;
use crate::limit::LimitReport;
use crate::media::{Kind, Profile, AUDIO_PT, VIDEO_PT};
use crate::report::{round, BenchError};

mod report;
pub use report::{generator_verdict, percentiles, print_summary, FanoutReport, Window};

/// How often the bench's workers send their stats snapshot (the SFU-side figures' resolution,
/// [`Window`]).
pub const STATS_INTERVAL: Duration = Duration::from_millis(200);

/// SRTP profile of the subscribers' sessions, or none (plain RTP).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cipher {
    None,
    Gcm,
    Cm,
}

impl Cipher {
    pub fn parse(s: &str) -> Option<Cipher> {
        match s {
            "none" => Some(Cipher::None),
            "gcm" => Some(Cipher::Gcm),
            "cm" => Some(Cipher::Cm),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Cipher::None => "none",
            Cipher::Gcm => "gcm",
            Cipher::Cm => "cm",
        }
    }
}

/// How to run `fanout` (and each `ramp` step).
#[derive(Debug, Clone)]
pub struct FanoutConfig {
    pub publishers: u32,
    pub subscribers: u32,
    pub audio: bool,
    pub video: bool,
    pub cipher: Cipher,
    pub warmup: Duration,
    pub duration: Duration,
    pub drain: Duration,
    /// Cores for the in-process SFU's workers (one worker each).
    pub sfu_cores: Vec<usize>,
    pub generator_core: usize,
    /// Cores of the generator's receive-only threads (`--gen-threads N` gives N − 1 of them);
    /// empty: one generator thread.
    pub generator_rx_cores: Vec<usize>,
    pub io: IoChoice,
    /// Pool buffers per SFU worker.
    pub buffers_per_worker: usize,
    /// `Quality.max_bitrate_bps` of every session: the SFU's estimate (and so its pacing rate)
    /// never exceeds it. 10 Mbit/s by default; a low cap makes subscribers whose pacer backs
    /// up (the overload-recovery test).
    pub max_bitrate_bps: u64,
    /// Latency to the kernel's receive time of each copy ([`Plan::kernel_arrival`]; default);
    /// `false` (`--arrival read`) to when the generator read it, as builds before it did.
    pub kernel_arrival: bool,
}

impl FanoutConfig {
    /// 1 publisher (audio + video), `subscribers` subscribers, SFU on the last core and the
    /// generator on the first: on 2 cores they never share one.
    pub fn default_for(cores: &[usize], subscribers: u32, duration: Duration) -> Self {
        let last = *cores.last().unwrap_or(&0);
        Self {
            publishers: 1,
            subscribers,
            audio: true,
            video: true,
            cipher: Cipher::None,
            warmup: Duration::from_millis(1000),
            duration,
            drain: Duration::from_millis(300),
            sfu_cores: vec![last],
            generator_core: cores.first().copied().unwrap_or(0),
            generator_rx_cores: Vec::new(),
            io: IoChoice::Auto,
            buffers_per_worker: 32_768,
            max_bitrate_bps: 10_000_000,
            kernel_arrival: true,
        }
    }
}

/// The pid in a dataplane's `instance` name, `sluice-dataplane-<pid>-<start µs>` (the start
/// time since a restart must give a new name; before that, `sluice-dataplane-<pid>`).
pub fn pid_of_instance(instance: &str) -> Option<String> {
    let pid = instance
        .strip_prefix("sluice-dataplane-")?
        .split('-')
        .next()?;
    (!pid.is_empty() && pid.chars().all(|c| c.is_ascii_digit())).then(|| pid.to_string())
}

/// The SFU a run talks to: started here, or attached to.
#[derive(Debug)]
pub struct Sfu {
    handle: Option<DataplaneHandle>,
    control_socket: PathBuf,
    /// `/proc/<pid>` name of the SFU process.
    pid: Option<String>,
    pub media_addrs: Vec<SocketAddr>,
    pub workers: u16,
    pub io_mode: String,
    /// Distinguishes this run's ids from anything else on an attached dataplane.
    id_base: u64,
    runs: u64,
}

impl Sfu {
    /// Starts the dataplane in this process, one worker per `cfg.sfu_cores` entry.
    pub fn start(cfg: &FanoutConfig) -> Result<Sfu, BenchError> {
        let mut dc = Config::defaults(cfg.sfu_cores.len());
        dc.workers = cfg.sfu_cores.clone();
        dc.bind = IpAddr::V4(Ipv4Addr::LOCALHOST);
        dc.port = 0;
        // The dataplane refuses a control socket in a directory others can write (/tmp):
        // a private 0700 directory of this process's own.
        let dir = std::env::temp_dir().join(format!("sluice-bench-{}", std::process::id()));
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(|e| BenchError::Start(format!("{}: {e}", dir.display())))?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| BenchError::Start(format!("{}: {e}", dir.display())))?;
        dc.control_socket = dir.join(format!("{}.sock", cfg.subscribers));
        dc.buffers_per_worker = cfg.buffers_per_worker;
        dc.io = cfg.io;
        dc.stats_interval_ms = STATS_INTERVAL.as_millis() as u64;
        dc.recv_buffer_bytes = 8 << 20;
        dc.send_buffer_bytes = 8 << 20;
        if cfg.cipher == Cipher::Cm {
            // The DTLS 1.2 server picks by its own preference: AES-CM alone (webrtc_fanout).
            dc.srtp_profiles = SrtpProfiles::new(&[ProtectionProfile::Aes128CmHmacSha1_80])
                .map_err(|e| BenchError::Start(e.to_string()))?;
        }
        let _ = std::fs::remove_file(&dc.control_socket);
        let handle = Dataplane::start(dc).map_err(|e| BenchError::Start(e.to_string()))?;
        let mut sfu = Sfu {
            control_socket: handle.control_socket().to_path_buf(),
            io_mode: format!("{:?}", handle.io_mode()),
            handle: Some(handle),
            pid: Some("self".into()),
            media_addrs: Vec::new(),
            workers: 0,
            id_base: 1 << 40,
            runs: 0,
        };
        sfu.hello()?;
        Ok(sfu)
    }

    /// Attaches to a running dataplane's control socket. Its pid comes from the `instance`
    /// name (`sluice-dataplane-<pid>-<start µs>`, [`pid_of_instance`]).
    pub fn attach(socket: PathBuf) -> Result<Sfu, BenchError> {
        let mut sfu = Sfu {
            handle: None,
            control_socket: socket,
            pid: None,
            media_addrs: Vec::new(),
            workers: 0,
            io_mode: "attached".into(),
            id_base: (u64::from(std::process::id()) << 32) | (1 << 60),
            runs: 0,
        };
        sfu.hello()?;
        Ok(sfu)
    }

    fn hello(&mut self) -> Result<(), BenchError> {
        let mut ctl = self.connect()?;
        let hello = ctl
            .hello(Hello::control("sluice-bench"))
            .map_err(|e| BenchError::Control(e.to_string()))?;
        self.workers = hello.shards;
        self.media_addrs = hello.media_addrs;
        if self.pid.is_none() {
            self.pid = pid_of_instance(&hello.instance);
        }
        if self.media_addrs.is_empty() {
            return Err(BenchError::Control(
                "dataplane announced no media address".into(),
            ));
        }
        Ok(())
    }

    fn connect(&self) -> Result<ControlClient, BenchError> {
        ControlClient::connect(&self.control_socket).map_err(|e| BenchError::Control(e.to_string()))
    }

    /// What a WebRTC run (`--cipher gcm|cm`, [`crate::webrtc_fanout`]) needs, with fresh ids.
    pub fn webrtc_target(&mut self) -> crate::webrtc_fanout::Target {
        self.runs += 1;
        crate::webrtc_fanout::Target {
            control_socket: self.control_socket.clone(),
            media_addrs: self.media_addrs.clone(),
            pid: self.pid.clone(),
            id_base: self.id_base + (self.runs << 24),
        }
    }

    /// Stops an in-process dataplane.
    pub fn stop(self) {
        if let Some(h) = self.handle {
            h.stop();
        }
    }
}

/// Runs one fanout against `sfu`: sessions, tracks and subscriptions are created, the
/// generator runs, then every session this run created is closed.
pub fn run(sfu: &mut Sfu, cfg: &FanoutConfig) -> Result<FanoutReport, BenchError> {
    if crate::webrtc_fanout::serves(cfg.cipher) {
        return crate::webrtc_fanout::run(sfu, cfg);
    }
    let plan = Plan {
        publishers: cfg.publishers,
        subscribers: cfg.subscribers,
        audio: cfg.audio,
        video: cfg.video,
        warmup: cfg.warmup,
        duration: cfg.duration,
        drain: cfg.drain,
        core: cfg.generator_core,
        rx_cores: cfg.generator_rx_cores.clone(),
        near: None,
        kernel_arrival: cfg.kernel_arrival,
    };
    let setup_start = Instant::now();
    let h = gen::spawn(plan.clone())?;
    let endpoints = h
        .endpoints
        .recv()
        .map_err(|_| BenchError::Other("generator exited during start-up".into()))??;
    sfu.runs += 1;
    let base = sfu.id_base + (sfu.runs << 24);
    let mut ctl = sfu.connect()?;
    ctl.hello(Hello::control("sluice-bench"))
        .map_err(|e| BenchError::Control(e.to_string()))?;
    ctl.set_timeout(Duration::from_secs(10));
    let workers = u32::from(sfu.workers.max(1));
    let mut created = Vec::new();
    let memory = crate::memory::Before::read(sfu.pid.as_deref());
    let result = setup(
        &mut ctl,
        base,
        workers,
        &plan,
        &endpoints,
        cfg.max_bitrate_bps,
        &mut created,
    );
    let setup_s = setup_start.elapsed().as_secs_f64();
    if let Err(e) = result {
        drop(h.go);
        let _ = h.join.join();
        close_all(&mut ctl, &created);
        return Err(e);
    }
    let sfu_addrs: Vec<SocketAddr> = (0..cfg.publishers as usize)
        .map(|p| sfu.media_addrs[p % sfu.media_addrs.len()])
        .collect();
    // The workers' latest snapshots (totals since they started), for a worker that sends none
    // inside the window.
    let before = match ctl.request(Command::Stats {}) {
        Ok(ReplyOk::Stats { shards }) => shards.into_iter().map(|w| (w.shard, w)).collect(),
        _ => BTreeMap::new(),
    };
    let _ = h.go.send(Go {
        sfu: sfu_addrs,
        sfu_pid: sfu.pid.clone(),
    });
    // Collect stats snapshots while the generator runs (bounded by its run time plus slack):
    // the first of each worker after the window opens, its last before it closes, its last.
    // The generator's clock starts when it takes the go, just after this.
    let opens = Instant::now() + cfg.warmup;
    let closes = opens + cfg.duration;
    let (mut opened, mut closed) = (BTreeMap::new(), BTreeMap::new());
    let mut worker_stats = BTreeMap::new();
    let deadline = Instant::now() + cfg.warmup + cfg.duration + cfg.drain + Duration::from_secs(30);
    while !h.join.is_finished() && Instant::now() < deadline {
        if let Ok(Some(ev)) = ctl.next_event(Duration::from_millis(200)) {
            if let Notification::StatsSnapshot(s) = ev.event {
                let at = Instant::now();
                if at >= opens && at <= closes {
                    opened.entry(s.shard).or_insert_with(|| s.clone());
                    closed.insert(s.shard, s.clone());
                }
                worker_stats.insert(s.shard, s);
            }
        }
    }
    let window_stats = Window::pick(&before, &opened, &closed, &worker_stats);
    let gen = h
        .join
        .join()
        .map_err(|_| BenchError::Other("generator panicked".into()))?;
    let sfu_memory = memory.and_then(|m| m.finish(cfg.subscribers));
    close_all(&mut ctl, &created);
    Ok(FanoutReport {
        config: cfg.clone(),
        gen: gen?,
        workers: sfu.workers,
        io_mode: sfu.io_mode.clone(),
        worker_stats,
        window_stats,
        setup_s,
        srtp_profile: None,
        sfu_memory,
    })
}

fn setup(
    ctl: &mut ControlClient,
    base: u64,
    workers: u32,
    plan: &Plan,
    ep: &gen::Endpoints,
    max_bitrate_bps: u64,
    created: &mut Vec<SessionId>,
) -> Result<(), BenchError> {
    let req = |ctl: &mut ControlClient, c: Command| {
        ctl.request(c)
            .map_err(|e| BenchError::Control(e.to_string()))
    };
    for (p, &addr) in ep.publishers.iter().enumerate() {
        let id = SessionId(base + p as u64);
        let worker = (p as u32 % workers) as u16;
        req(ctl, plain_session(id, addr, worker, max_bitrate_bps))?;
        created.push(id);
    }
    for (p, id, kind) in plan.streams() {
        req(
            ctl,
            track(
                SessionId(base + u64::from(p)),
                TrackId(base + u64::from(id)),
                kind,
                id,
            ),
        )?;
    }
    for (j, &addr) in ep.subscribers.iter().enumerate() {
        let id = SessionId(base + 0x1000 + j as u64);
        let worker = (j as u32 % workers) as u16;
        let reply = req(ctl, plain_session(id, addr, worker, max_bitrate_bps))?;
        if !matches!(reply, ReplyOk::SessionCreated { .. }) {
            return Err(BenchError::Control(format!("unexpected reply {reply:?}")));
        }
        created.push(id);
        for (_, sid, kind) in plan.streams() {
            req(
                ctl,
                Command::Subscribe(Subscribe {
                    subscription: SubscriptionId(base + ((j as u64) << 8) + u64::from(sid)),
                    session: id,
                    track: TrackId(base + u64::from(sid)),
                    ssrc: sub_ssrc(j as u32, sid),
                    rtx_ssrc: None,
                    payload_type: if kind == Kind::Audio {
                        AUDIO_PT
                    } else {
                        VIDEO_PT
                    },
                    rtx_payload_type: None,
                    ext_ids: ExtIds::default(),
                }),
            )?;
        }
    }
    Ok(())
}

fn close_all(ctl: &mut ControlClient, sessions: &[SessionId]) {
    for &s in sessions {
        let _ = ctl.request(Command::CloseSession { session: s });
    }
}

fn plain_session(id: SessionId, remote: SocketAddr, worker: u16, max_bitrate_bps: u64) -> Command {
    Command::CreateSession(CreateSession {
        session: id,
        ice: IceParams {
            ufrag: format!("bench{}", id.0),
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
            max_bitrate_bps,
            priority: 1,
        },
    })
}

pub(crate) fn track(session: SessionId, track: TrackId, kind: Kind, stream: u32) -> Command {
    let (kind, name, pt, rate, source) = match kind {
        Kind::Audio => (
            MediaKind::Audio,
            "opus",
            AUDIO_PT,
            48_000,
            Source::Microphone,
        ),
        Kind::Video => (MediaKind::Video, "VP8", VIDEO_PT, 90_000, Source::Camera),
    };
    Command::AddTrack(AddTrack {
        session,
        track,
        kind,
        codec: Codec {
            name: name.into(),
            payload_type: pt,
            clock_rate: rate,
            rtx_payload_type: None,
        },
        layers: vec![Layer {
            rid: None,
            ssrc: Some(pub_ssrc(stream)),
            rtx_ssrc: None,
        }],
        ext_ids: ExtIds::default(),
        e2ee: false,
        source,
        mid: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_dataplane::sys::affinity;

    /// The in-process runs take turns: two dataplanes and their generators pinned to the same
    /// two cores at once would measure each other on a loaded 2-core machine.
    static ONE_RUN: std::sync::Mutex<()> = std::sync::Mutex::new(());

    #[test]
    fn the_pid_is_read_from_the_instance_name() {
        assert_eq!(
            pid_of_instance("sluice-dataplane-4242-1765123456789012").as_deref(),
            Some("4242")
        );
        assert_eq!(
            pid_of_instance("sluice-dataplane-4242").as_deref(),
            Some("4242")
        );
        assert_eq!(pid_of_instance("sluice-dataplane--17"), None);
        assert_eq!(pid_of_instance("janus-4242"), None);
    }

    /// Attached to a real dataplane (this process's own), the bench knows its pid: the SFU CPU
    /// and memory figures of `fanout --attach` come from `/proc/<pid>`. The instance name grew a
    /// start time (a restart must give a new name) and the old all-digits parse lost the pid.
    #[test]
    fn an_attached_dataplane_s_pid_is_known() {
        let _one = ONE_RUN.lock().unwrap_or_else(|e| e.into_inner());
        let cores = affinity::online_cores().expect("cores");
        let cfg = FanoutConfig::default_for(&cores, 1, Duration::from_secs(1));
        let sfu = Sfu::start(&cfg).expect("dataplane starts");
        let attached = Sfu::attach(sfu.control_socket.clone()).expect("attach");
        assert_eq!(attached.pid, Some(std::process::id().to_string()));
        sfu.stop();
    }

    #[test]
    fn cipher_names_round_trip() {
        for c in [Cipher::None, Cipher::Gcm, Cipher::Cm] {
            assert_eq!(Cipher::parse(c.name()), Some(c));
        }
        assert_eq!(Cipher::parse("rot13"), None);
    }

    /// A short in-process run: 1 publisher, 3 subscribers, plain RTP; every window packet
    /// arrives (loopback, light load) and the generator verifies them.
    #[test]
    fn short_plain_run_delivers_everything() {
        let _turn = ONE_RUN.lock().unwrap_or_else(|e| e.into_inner());
        let cores = affinity::online_cores().expect("affinity");
        let mut cfg = FanoutConfig::default_for(&cores, 3, Duration::from_millis(600));
        cfg.warmup = Duration::from_millis(300);
        cfg.buffers_per_worker = 4096;
        cfg.io = IoChoice::Socket;
        let mut sfu = Sfu::start(&cfg).expect("dataplane starts");
        let r = run(&mut sfu, &cfg).expect("fanout runs");
        sfu.stop();
        let g = &r.gen;
        println!("{}", r.to_json(None));
        assert!(g.sent_in_window > 0);
        assert_eq!(g.expected, g.sent_in_window * 3);
        assert_eq!((g.foreign, g.tag_errors, g.pattern_errors), (0, 0, 0));
        assert!(g.received > 0, "nothing delivered: {}", r.to_json(None));
        assert!(r.loss() < 0.05, "loss {}", r.loss());
        // Every forwarded copy leaves a subscriber's pacer; snapshots come every 200 ms.
        let q = r.pacer_queueing();
        assert!(q.exposed && q.packets > 0, "{}", r.to_json(None));
    }

    /// The same with the subscribers split over three generator threads: every copy is
    /// counted once, against the right subscriber's SSRC.
    #[test]
    fn split_generator_counts_every_subscriber() {
        let _turn = ONE_RUN.lock().unwrap_or_else(|e| e.into_inner());
        let cores = affinity::online_cores().expect("affinity");
        let mut cfg = FanoutConfig::default_for(&cores, 5, Duration::from_millis(600));
        cfg.warmup = Duration::from_millis(300);
        cfg.buffers_per_worker = 4096;
        cfg.io = IoChoice::Socket;
        cfg.generator_rx_cores = vec![cfg.generator_core; 2];
        let mut sfu = Sfu::start(&cfg).expect("dataplane starts");
        let r = run(&mut sfu, &cfg).expect("fanout runs");
        sfu.stop();
        let g = &r.gen;
        assert_eq!(g.busy_per_thread.len(), 3, "{}", r.to_json(None));
        assert_eq!(g.expected, g.sent_in_window * 5);
        assert_eq!((g.foreign, g.tag_errors, g.pattern_errors), (0, 0, 0));
        assert!(r.loss() < 0.05, "loss {}: {}", r.loss(), r.to_json(None));
    }
}
