//! `compare --peer janus`: Janus VideoRoom as the peer SFU, started by the command itself.
//!
//! - [`netns`]: the network namespace (a veth pair with both ends inside) Janus and the
//!   generator run in — Janus 1.1.2 never gathers loopback candidates, so it cannot run on `lo`,
//!   and the namespace keeps every packet on this machine.
//! - [`config`]: Janus's configuration from the templates in `bench/janus/`.
//! - [`http`]: a minimal HTTP/1.1 client for Janus's REST API.
//! - [`api`]: the Janus API calls (session, attach videoroom, rooms, async messages, events).
//! - [`sdp`]: the publisher's offer, Janus's descriptions, the subscriber's answer.
//! - [`step`]: one ramp step (publishers, subscribers, media) run inside the namespace.
//!
//! [`run_ramp`] starts Janus pinned to the SFU core (`taskset`) in its namespace, then runs the
//! same ramp as Sluice's (same steps, same service level), each step a `janus-client step`
//! re-exec of this binary inside the namespace with the generator pinned to its own core.

pub mod api;
pub mod config;
pub mod http;
pub mod netns;
pub mod sdp;
pub mod step;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::gen::Plan;
use crate::ramp::{Bracket, Point, RampConfig, RampReport};
use crate::report::BenchError;

/// Longest Janus ramp: no new step starts after this (keeps `compare` within ~5 minutes).
pub const RAMP_BUDGET: Duration = Duration::from_secs(180);

/// What to tell a user without Janus.
pub const INSTALL_HINT: &str =
    "install it with:  bench/install.sh   (apt-get install -y janus; Debian 12: Janus 1.1.2; \
     the package does not start a service)";

/// Addresses inside the namespace.
pub const JANUS_IP: &str = "10.88.0.1";
pub const GENERATOR_IP: &str = "10.88.0.2";
pub const HTTP_PORT: u16 = 8088;

/// The `janus` binary on `PATH`, if installed.
pub fn find_binary() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("janus"))
        .find(|p| p.is_file())
}

/// A Janus process in its namespace; killed, and the namespace removed, on drop.
#[derive(Debug)]
pub struct Janus {
    child: Option<Child>,
    pub ns: netns::Namespace,
    pub dir: config::ConfigDir,
}

impl Janus {
    /// Creates the namespace, writes the configuration and starts Janus (every thread pinned to
    /// `core` with `taskset` when given); waits (≤ 10 s) until its HTTP API answers `info`.
    pub fn start(bin: &Path, core: Option<usize>) -> Result<Janus, BenchError> {
        for name in netns::remove_stale("sluice-bench-") {
            eprintln!("sluice-bench: removed namespace {name} left by a killed run");
        }
        config::ConfigDir::remove_stale();
        let ns = netns::Namespace::create(&format!("sluice-bench-{}", std::process::id()))?;
        let dir = config::ConfigDir::write(JANUS_IP, HTTP_PORT, (20_000, 40_000))?;
        let log = std::fs::File::create(dir.path().join("janus.log"))?;
        // `taskset` and `ip netns exec` both exec, so the child's pid is Janus's.
        let mut cmd = match core {
            Some(c) => {
                let mut t = Command::new("taskset");
                t.args(["-c", &c.to_string(), "ip"]);
                t
            }
            None => Command::new("ip"),
        };
        let child = cmd
            .args(["netns", "exec", ns.name()])
            .arg(bin)
            .arg("-C")
            .arg(dir.path().join("janus.jcfg"))
            .arg("-F")
            .arg(dir.path())
            .args(["-o", "-d"])
            .arg(std::env::var("SLUICE_BENCH_JANUS_DEBUG").unwrap_or_else(|_| "3".into()))
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .spawn()?;
        let mut j = Janus {
            child: Some(child),
            ns,
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match j.probe_info() {
                Ok(_) => return Ok(j),
                Err(e) if Instant::now() >= deadline => {
                    return Err(BenchError::Other(format!(
                        "Janus did not answer within 10 s ({e}); log: {}",
                        j.log_tail()
                    )))
                }
                Err(_) => std::thread::sleep(Duration::from_millis(200)),
            }
            if let Some(c) = j.child.as_mut() {
                if let Ok(Some(status)) = c.try_wait() {
                    return Err(BenchError::Other(format!(
                        "Janus exited ({status}); log: {}",
                        j.log_tail()
                    )));
                }
            }
        }
    }

    /// Runs `janus-client` (a hidden subcommand of this binary) inside the namespace, so its
    /// HTTP requests reach Janus's address; returns its JSON answer.
    pub fn in_namespace(&self, args: &[&str]) -> Result<Value, BenchError> {
        let exe = std::env::current_exe()?;
        let out = Command::new("ip")
            .args(["netns", "exec", self.ns.name()])
            .arg(exe)
            .args(args)
            .stdin(Stdio::null())
            .stderr(Stdio::inherit())
            .output()?;
        serde_json::from_slice(&out.stdout).map_err(|e| {
            BenchError::Other(format!(
                "janus-client answered no JSON ({e}): {}",
                String::from_utf8_lossy(&out.stdout)
            ))
        })
    }

    /// Janus's pid, for `/proc` CPU accounting.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    fn probe_info(&self) -> Result<Value, BenchError> {
        let v = self.in_namespace(&["janus-client", "info"])?;
        match v.get("error") {
            Some(e) => Err(BenchError::Other(e.to_string())),
            None => Ok(v),
        }
    }

    /// The last lines of Janus's log, for error messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.dir.path().join("janus.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(8)..].join(" | ")
    }
}

impl Drop for Janus {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        // Keep Janus's log for diagnosis when asked to (the folder is removed next).
        if let Some(to) = std::env::var_os("SLUICE_BENCH_JANUS_LOG") {
            let _ = std::fs::copy(self.dir.path().join("janus.log"), to);
        }
    }
}

/// The Janus side of `compare`: Janus on the SFU core (`cfg.step.sfu_cores[0]`), the generator
/// on `cfg.step.generator_core`, the same doubling-then-bisecting ramp and service level as
/// [`ramp::run`](crate::ramp::run) (the loop is repeated here because each step is a re-exec in
/// the namespace, not a [`fanout`](crate::fanout) run). `on_point` sees each step.
pub fn run_ramp(
    bin: &Path,
    cfg: &RampConfig,
    mut on_point: impl FnMut(&Point),
) -> Result<JanusRamp, BenchError> {
    // SIGINT/SIGTERM end the ramp between steps, so Janus and the namespace are removed by the
    // drops below instead of left behind (a terminal's ^C also ends the step's child at once).
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let hooks: Vec<_> = [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM]
        .into_iter()
        .filter_map(|sig| signal_hook::flag::register(sig, stop.clone()).ok())
        .collect();
    let res = ramp_in(bin, cfg, &mut on_point, &stop);
    for h in hooks {
        signal_hook::low_level::unregister(h);
    }
    res
}

fn ramp_in(
    bin: &Path,
    cfg: &RampConfig,
    on_point: &mut impl FnMut(&Point),
    stop: &std::sync::atomic::AtomicBool,
) -> Result<JanusRamp, BenchError> {
    let deadline = Instant::now() + RAMP_BUDGET;
    let janus = Janus::start(bin, cfg.step.sfu_cores.first().copied())?;
    let info = janus.probe_info().unwrap_or_default();
    let mut details = Vec::new();
    let pid = janus.pid().map(|p| p.to_string());
    let mut points = Vec::new();
    let mut bracket = Bracket::default();
    let mut stopped = String::from("reached --max");
    // Bounded: doubling reaches `max` in ≤ 32 steps, then at most `refine` bisections.
    for _ in 0..64 {
        if stop.load(std::sync::atomic::Ordering::Relaxed) {
            stopped = "interrupted by a signal".into();
            break;
        }
        if Instant::now() >= deadline {
            stopped = format!("time budget of {RAMP_BUDGET:?} spent");
            break;
        }
        let n = match bracket.next(cfg) {
            Ok(n) => n,
            Err(why) => {
                stopped = why;
                break;
            }
        };
        let s = &cfg.step;
        let args = step::StepArgs {
            plan: Plan {
                publishers: s.publishers,
                subscribers: n,
                audio: s.audio,
                video: s.video,
                warmup: s.warmup,
                duration: s.duration,
                drain: s.drain,
                core: s.generator_core,
                // The WebRTC generator runs on one thread.
                rx_cores: Vec::new(),
                near: None,
                kernel_arrival: s.kernel_arrival,
            },
            janus_pid: pid.clone(),
        };
        let mut argv = vec!["janus-client".to_string(), "step".to_string()];
        argv.extend(args.to_args());
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        // Re-measure a step whose generator was starved by other processes (the same rule as
        // Sluice's WebRTC steps, `webrtc_fanout::disturbed`).
        let mut answer = janus.in_namespace(&argv)?;
        for _ in 0..crate::webrtc_fanout::DISTURBED_RETRIES {
            let wait = answer["detail"]["generator_runqueue_wait_s"].as_f64();
            if !crate::webrtc_fanout::disturbed(wait, s.duration.as_secs_f64())
                || stop.load(std::sync::atomic::Ordering::Relaxed)
            {
                break;
            }
            eprintln!(
                "sluice-bench: Janus, {n} subscribers: the generator waited {:.2} s of the window \
                 for its core (other processes); measuring the step again",
                wait.unwrap_or(0.0)
            );
            answer = janus.in_namespace(&argv)?;
        }
        details.push(
            json!({"subscribers": n, "detail": answer.get("detail").cloned()
            .or_else(|| answer.get("error").map(|e| json!({"error": e})))}),
        );
        let p = match step::point_of(&answer) {
            Ok(p) => p,
            Err(e) => {
                // A step that could not even connect (e.g. Janus overloaded during set-up)
                // ends the ramp; what was measured so far stands.
                stopped = format!(
                    "step at {n} subscribers failed: {e}; log: {}",
                    janus.log_tail()
                );
                break;
            }
        };
        on_point(&p);
        let end = bracket.record(&p);
        points.push(p);
        if let Some(why) = end {
            stopped = why;
            break;
        }
    }
    let (max_ok, stopped) = bracket.finish(stopped);
    Ok(JanusRamp {
        ramp: RampReport {
            points,
            workers: 1,
            max_ok,
            stopped,
        },
        details,
        version: info["version"].clone(),
        janus_core: cfg.step.sfu_cores.first().copied(),
    })
}

/// Janus's ramp with what each step saw beyond the ramp point (SRTP profile, checks answered,
/// verification counters, Janus's thread count, the generator's verdict).
#[derive(Debug, Clone)]
pub struct JanusRamp {
    pub ramp: RampReport,
    pub details: Vec<Value>,
    pub version: Value,
    pub janus_core: Option<usize>,
}

impl JanusRamp {
    pub fn to_json(&self) -> Value {
        let mut v = self.ramp.to_json();
        v["steps_detail"] = json!(self.details);
        v["janus_version"] = self.version.clone();
        v["janus_core"] = json!(self.janus_core);
        v["pinning"] = json!(
            "every Janus thread pinned to janus_core with taskset; the generator \
                              pinned to its own core inside the namespace"
        );
        v
    }
}

/// The hidden `janus-client` subcommand, run inside the namespace: `info` answers Janus's
/// `info`; `room` creates a session, attaches VideoRoom, creates a room and destroys it all;
/// `step` runs one ramp step ([`step::run`]).
pub fn client_main(args: &[String]) -> Value {
    let api = api::Api::new(std::net::SocketAddr::from((
        JANUS_IP
            .parse::<std::net::Ipv4Addr>()
            .expect("constant address"),
        HTTP_PORT,
    )));
    let res = match args.first().map(String::as_str) {
        Some("info") => api.info(),
        Some("room") => api.room_smoke(),
        Some("step") => step::StepArgs::parse(&args[1..]).and_then(|a| step::run(&api, &a)),
        _ => Err(BenchError::Other("janus-client: info|room|step".into())),
    };
    res.unwrap_or_else(|e| serde_json::json!({"error": e.to_string()}))
}
