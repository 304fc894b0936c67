//! `sluice-bench fanout --cascade`: the fan-out through a trunk (issue 16). Two dataplanes in
//! this process, A and B, each with its own pinned worker(s) and media address; the
//! publisher(s) on A with one reference subscriber, N subscribers on B, which get every track
//! through a trunk A→B (`mode: trunk` on both, `relay_track` on A, `add_track` of the relayed
//! SSRC on B's trunk session, ordinary `subscribe`s on B — the recipe of
//! dataplane/tests/trunk_relay.rs). SRTP-keyed from a cluster secret written for the run, or
//! `--trunk trusted` (plain RTP).
//!
//! One invocation runs, one after the other (never sharing the cores):
//! - `single`: the ordinary single-node fan-out of the same N, on B (the same dataplane and core
//!   the cascaded subscribers are served from);
//! - `cascade`: publisher + reference on A, N subscribers on B through the trunk;
//! - `a_alone`, `b_alone` and `cascade_1` (the CPU baselines): the publisher and one
//!   subscriber on A (no trunk), the same on B, and the cascade with a single subscriber on B
//!   (whose per-packet `recv(B) − recv(reference)` is the trunk's hop alone, without a fan-out
//!   on B queueing behind it).
//!
//! What a trunk packet costs comes from the workers' own CPU time (`cpu_us` of their stats
//! snapshots, a fresh one after each phase has gone quiet) per published packet, differenced
//! against those same-run baselines (see [`report`]). Latency: the generator's one clock, and
//! per packet `recv(subscriber on B) − recv(reference on A)` ([`crate::gen::SplitReport`]).

use std::collections::BTreeMap;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sluice_dataplane::config::Config;
use sluice_dataplane::runtime::{Dataplane, DataplaneHandle};
use sluice_proto::{Command, ControlClient, Counters, Hello, Notification, ReplyOk, SessionId};

use crate::fanout::{Cipher, FanoutConfig};
use crate::gen::{self, GenReport, Go, Plan};
use crate::report::BenchError;

mod report;
mod setup;
pub use report::{summary, CascadeReport, TrunkCost};
use setup::{close, setup, Ids};

/// Most subscribers a cascade run takes (its id plan leaves room for this many).
pub const MAX_SUBSCRIBERS: u32 = 10_000;
/// Stats snapshot interval of both dataplanes.
const STATS_MS: u64 = 100;
/// How long a phase waits, before it starts and after its generator ends, for every worker's
/// snapshot to be fresh (more than one snapshot interval).
const SETTLE: Duration = Duration::from_millis(3 * STATS_MS);

/// How the trunk is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrunkCipher {
    /// SRTP (AEAD_AES_128_GCM) keyed from the cluster secret.
    Srtp,
    /// Plain RTP.
    Trusted,
}

impl TrunkCipher {
    pub fn parse(s: &str) -> Option<TrunkCipher> {
        match s {
            "srtp" => Some(TrunkCipher::Srtp),
            "trusted" => Some(TrunkCipher::Trusted),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            TrunkCipher::Srtp => "srtp",
            TrunkCipher::Trusted => "trusted",
        }
    }
}

/// How to run a cascade.
#[derive(Debug, Clone)]
pub struct CascadeConfig {
    /// Publishers, N subscribers, media, timing, generator and B's workers (`sfu_cores`).
    pub fanout: FanoutConfig,
    /// Cores of A's workers.
    pub a_cores: Vec<usize>,
    pub trunk: TrunkCipher,
    /// Run the CPU baselines (`a_alone`, `b_alone`, `cascade_1`); without them no trunk cost
    /// is derived.
    pub baselines: bool,
}

impl CascadeConfig {
    /// B where the single-node fan-out puts its SFU (the last core), A on a core of its own
    /// when there are three or more, else beside the generator (on 2 cores: the publisher's
    /// side is light — one reference copy and one trunk copy per packet — while B does the
    /// fan-out, as the single-node SFU does).
    pub fn default_for(cores: &[usize], subscribers: u32, duration: Duration) -> Self {
        let fanout = FanoutConfig::default_for(cores, subscribers, duration);
        let a = if cores.len() >= 3 {
            cores[cores.len() - 2]
        } else {
            fanout.generator_core
        };
        Self {
            fanout,
            a_cores: vec![a],
            trunk: TrunkCipher::Srtp,
            baselines: true,
        }
    }
}

/// One dataplane of the run.
struct Node {
    handle: DataplaneHandle,
    ctl: ControlClient,
    media: Vec<SocketAddr>,
    workers: u16,
}

impl Node {
    fn start(
        cfg: &CascadeConfig,
        cores: &[usize],
        dir: &Path,
        name: &str,
    ) -> Result<Node, BenchError> {
        let f = &cfg.fanout;
        let mut dc = Config::defaults(cores.len());
        dc.workers = cores.to_vec();
        dc.bind = IpAddr::V4(Ipv4Addr::LOCALHOST);
        dc.port = 0;
        dc.control_socket = dir.join(format!("{name}.sock"));
        dc.buffers_per_worker = f.buffers_per_worker;
        dc.io = f.io;
        dc.stats_interval_ms = STATS_MS;
        dc.recv_buffer_bytes = 8 << 20;
        dc.send_buffer_bytes = 8 << 20;
        dc.trunk_secret_file = (cfg.trunk == TrunkCipher::Srtp).then(|| dir.join("cluster.secret"));
        let _ = std::fs::remove_file(&dc.control_socket);
        let handle = Dataplane::start(dc).map_err(|e| BenchError::Start(format!("{name}: {e}")))?;
        let ctl_err = |e: sluice_proto::ControlError| BenchError::Control(format!("{name}: {e}"));
        let mut ctl = ControlClient::connect(handle.control_socket()).map_err(ctl_err)?;
        let hello = ctl.hello(Hello::control("sluice-bench")).map_err(ctl_err)?;
        ctl.set_timeout(Duration::from_secs(10));
        if hello.media_addrs.is_empty() {
            return Err(BenchError::Control(format!("{name}: no media address")));
        }
        Ok(Node {
            handle,
            ctl,
            media: hello.media_addrs,
            workers: hello.shards.max(1),
        })
    }

    fn req(&mut self, c: Command) -> Result<ReplyOk, BenchError> {
        self.ctl
            .request(c)
            .map_err(|e| BenchError::Control(e.to_string()))
    }

    /// The workers' latest snapshots (totals since they started).
    fn stats(&mut self) -> BTreeMap<u16, Counters> {
        match self.ctl.request(Command::Stats {}) {
            Ok(ReplyOk::Stats { shards }) => {
                shards.into_iter().map(|w| (w.shard, w.counters)).collect()
            }
            _ => BTreeMap::new(),
        }
    }

    /// Takes in the snapshots that arrive within `wait` (bounded by it).
    fn snapshots(&mut self, into: &mut BTreeMap<u16, Counters>, wait: Duration) {
        let deadline = Instant::now() + wait;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.ctl.next_event(left.min(Duration::from_millis(20))) {
                Ok(Some(ev)) => {
                    if let Notification::StatsSnapshot(s) = ev.event {
                        into.insert(s.shard, s.counters);
                    }
                }
                Ok(None) => {}
                Err(_) => break,
            }
        }
    }
}

/// Where a phase puts the publisher(s) and subscribers.
#[derive(Debug, Clone, Copy)]
pub struct Spec {
    pub name: &'static str,
    /// The publishers' dataplane is A (else B); the other one is across the trunk.
    pub publisher_on_a: bool,
    /// Subscribers on the publishers' dataplane (the first is the reference).
    pub local: u32,
    /// Subscribers on the other dataplane, through the trunk; 0: no trunk.
    pub remote: u32,
}

/// A dataplane's work over a phase: deltas of its workers' totals.
#[derive(Debug, Clone, Copy, Default)]
pub struct NodeDelta {
    pub cpu_us: u64,
    pub rx_packets: u64,
    pub tx_packets: u64,
}

impl NodeDelta {
    fn between(before: &BTreeMap<u16, Counters>, after: &BTreeMap<u16, Counters>) -> Self {
        let mut d = NodeDelta::default();
        for (w, a) in after {
            let b = before.get(w);
            let cpu = |c: &Counters| c.dropped.get("cpu_us").copied().unwrap_or(0);
            d.cpu_us += cpu(a).saturating_sub(b.map_or(0, cpu));
            d.rx_packets += a.rx_packets.saturating_sub(b.map_or(0, |b| b.rx_packets));
            d.tx_packets += a.tx_packets.saturating_sub(b.map_or(0, |b| b.tx_packets));
        }
        d
    }
}

/// What one phase measured.
#[derive(Debug, Clone)]
pub struct Phase {
    pub spec: Spec,
    pub gen: GenReport,
    pub a: NodeDelta,
    pub b: NodeDelta,
    /// The publishing side's trunk session (`session_stats`): media packets relayed over it
    /// and retransmissions; `None` without a trunk.
    pub trunk_forwarded: Option<(u64, u64)>,
    pub setup_s: f64,
}

/// Runs every phase on two fresh in-process dataplanes.
pub fn run(cfg: &CascadeConfig) -> Result<CascadeReport, BenchError> {
    let f = &cfg.fanout;
    if f.cipher != Cipher::None {
        return Err(BenchError::Unsupported(
            "--cascade drives plain-RTP publishers and subscribers (--cipher none); the trunk \
             itself is SRTP unless --trunk trusted"
                .into(),
        ));
    }
    if !(1..=MAX_SUBSCRIBERS).contains(&f.subscribers) {
        return Err(BenchError::Other(format!(
            "--subscribers: 1 to {MAX_SUBSCRIBERS} with --cascade"
        )));
    }
    let dir = private_dir()?;
    if cfg.trunk == TrunkCipher::Srtp {
        let mut secret = [0u8; 32];
        aws_lc_rs::rand::fill(&mut secret)
            .map_err(|_| BenchError::Other("no randomness".into()))?;
        // Owner-only, in an owner-only directory: it keys the trunk.
        let _ = std::fs::remove_file(dir.join("cluster.secret"));
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(dir.join("cluster.secret"))
            .and_then(|mut f| f.write_all(&secret))?;
    }
    let mut a = Node::start(cfg, &cfg.a_cores, &dir, "a")?;
    let mut b = match Node::start(cfg, &f.sfu_cores, &dir, "b") {
        Ok(b) => b,
        Err(e) => {
            a.handle.stop();
            return Err(e);
        }
    };
    let io_mode = format!("{:?}", b.handle.io_mode());
    let n = f.subscribers;
    let mut specs = vec![
        Spec {
            name: "single",
            publisher_on_a: false,
            local: n,
            remote: 0,
        },
        Spec {
            name: "cascade",
            publisher_on_a: true,
            local: 1,
            remote: n,
        },
    ];
    if cfg.baselines {
        specs.push(Spec {
            name: "a_alone",
            publisher_on_a: true,
            local: 1,
            remote: 0,
        });
        specs.push(Spec {
            name: "b_alone",
            publisher_on_a: false,
            local: 1,
            remote: 0,
        });
        if n > 1 {
            specs.push(Spec {
                name: "cascade_1",
                publisher_on_a: true,
                local: 1,
                remote: 1,
            });
        }
    }
    let mut phases = Vec::new();
    let mut failed = None;
    for (i, spec) in specs.into_iter().enumerate() {
        match phase(&mut a, &mut b, cfg, spec, i as u64 + 1) {
            Ok(p) => phases.push(p),
            Err(e) => {
                failed = Some(BenchError::Other(format!("phase {}: {e}", spec.name)));
                break;
            }
        }
    }
    let (a_workers, b_workers) = (a.workers, b.workers);
    drop((a.ctl, b.ctl));
    a.handle.stop();
    b.handle.stop();
    let _ = std::fs::remove_dir_all(&dir);
    if let Some(e) = failed {
        return Err(e);
    }
    Ok(CascadeReport {
        config: cfg.clone(),
        a_workers,
        b_workers,
        io_mode,
        phases,
    })
}

/// A 0700 directory of this run's own for the control sockets and the cluster secret.
fn private_dir() -> Result<PathBuf, BenchError> {
    static RUNS: AtomicU64 = AtomicU64::new(0);
    let run = RUNS.fetch_add(1, Ordering::Relaxed);
    let dir =
        std::env::temp_dir().join(format!("sluice-bench-cascade-{}-{run}", std::process::id()));
    let io = |e: std::io::Error| BenchError::Start(format!("{}: {e}", dir.display()));
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .map_err(io)?;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).map_err(io)?;
    Ok(dir)
}

/// One phase: sessions on both sides, the generator, snapshots before and after, the trunk's
/// count; every session it created is closed again. `index` makes its ids and its trunk epoch
/// (a re-created trunk must not reuse the pair's SRTP keys with reset indexes) its own.
fn phase(
    a: &mut Node,
    b: &mut Node,
    cfg: &CascadeConfig,
    spec: Spec,
    index: u64,
) -> Result<Phase, BenchError> {
    let f = &cfg.fanout;
    let plan = Plan {
        publishers: f.publishers,
        subscribers: spec.local + spec.remote,
        audio: f.audio,
        video: f.video,
        warmup: f.warmup,
        duration: f.duration,
        drain: f.drain,
        core: f.generator_core,
        rx_cores: f.generator_rx_cores.clone(),
        near: (spec.remote > 0).then_some(spec.local),
        kernel_arrival: f.kernel_arrival,
    };
    let setup_start = Instant::now();
    let h = gen::spawn(plan.clone())?;
    let endpoints = h
        .endpoints
        .recv()
        .map_err(|_| BenchError::Other("generator exited during start-up".into()))??;
    let (x, y, x_name, y_name) = if spec.publisher_on_a {
        (a, b, "node-a", "node-b")
    } else {
        (b, a, "node-b", "node-a")
    };
    let base = (1u64 << 40) + (index << 24);
    let mut created: (Vec<SessionId>, Vec<SessionId>) = (Vec::new(), Vec::new());
    let ids = Ids { base };
    let epoch = index;
    let result = setup(
        x,
        y,
        cfg,
        &plan,
        spec,
        &endpoints,
        ids,
        (x_name, y_name, epoch),
        &mut created,
    );
    let setup_s = setup_start.elapsed().as_secs_f64();
    if let Err(e) = result {
        drop(h.go);
        let _ = h.join.join();
        close(x, &created.0);
        close(y, &created.1);
        return Err(e);
    }
    // Fresh snapshots once the set-up's work is in them: the phase's deltas start here.
    let (mut x0, mut y0) = (x.stats(), y.stats());
    settle(x, y, &mut x0, &mut y0);
    let sfu = (0..f.publishers as usize)
        .map(|p| x.media[p % x.media.len()])
        .collect();
    let _ = h.go.send(Go { sfu, sfu_pid: None });
    let (mut x1, mut y1) = (x0.clone(), y0.clone());
    let deadline = Instant::now() + f.warmup + f.duration + f.drain + Duration::from_secs(30);
    while !h.join.is_finished() && Instant::now() < deadline {
        x.snapshots(&mut x1, Duration::from_millis(50));
        y.snapshots(&mut y1, Duration::from_millis(50));
    }
    let gen = h
        .join
        .join()
        .map_err(|_| BenchError::Other("generator panicked".into()));
    settle(x, y, &mut x1, &mut y1);
    let trunk_forwarded = if spec.remote > 0 {
        match x.req(Command::SessionStats {
            session: ids.trunk(),
        }) {
            Ok(ReplyOk::SessionStats(s)) => Some((s.forwarded, s.retransmitted)),
            _ => None,
        }
    } else {
        None
    };
    close(x, &created.0);
    close(y, &created.1);
    let (dx, dy) = (NodeDelta::between(&x0, &x1), NodeDelta::between(&y0, &y1));
    let (da, db) = if spec.publisher_on_a {
        (dx, dy)
    } else {
        (dy, dx)
    };
    Ok(Phase {
        spec,
        gen: gen??,
        a: da,
        b: db,
        trunk_forwarded,
        setup_s,
    })
}

/// Waits out [`SETTLE`] on both nodes, taking in their snapshots.
fn settle(
    x: &mut Node,
    y: &mut Node,
    xs: &mut BTreeMap<u16, Counters>,
    ys: &mut BTreeMap<u16, Counters>,
) {
    let end = Instant::now() + SETTLE;
    while Instant::now() < end {
        x.snapshots(xs, Duration::from_millis(25));
        y.snapshots(ys, Duration::from_millis(25));
    }
}
