//! `sluice-bench`: Sluice's benchmark command.
//!
//! Subcommands (each bounded in time; `--json` prints exactly one JSON object on stdout,
//! otherwise a human-readable summary; progress goes to stderr):
//! - `micro`: per-operation costs of rtp-core's hot paths.
//! - `limit`: the machine's ceiling, sendmmsg → recvmmsg of pre-encrypted 1,200-byte packets.
//! - `fanout`: Sluice under real-shaped media load, beside `limit` from the same run.
//! - `ramp`: raise subscribers until loss > 0.5 % or p99 > 50 ms.
//! - `compare --peer janus`: the same ramp against Janus VideoRoom in a network namespace.
//!
//! The usage text and option parsing are in [`bench::cli`].
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use bench::cascade::{self, CascadeConfig, TrunkCipher};
use bench::cli::{parse, Opts, USAGE};
use bench::compare::{self, CompareReport};
use bench::fanout::{self, Cipher, FanoutConfig, Sfu};
use bench::limit::{self, LimitConfig, LimitReport};
use bench::measure::Budget;
use bench::plot::{self, Series};
use bench::ramp::{self, RampConfig, RampReport};
use bench::report::{provenance, round, BenchError};
use bench::{janus, micro};
use serde_json::{json, Value};
use sluice_dataplane::config::IoChoice;
use sluice_dataplane::sys::affinity;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(cmd) = args.first() else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    if matches!(cmd.as_str(), "-h" | "--help" | "help") || args.iter().any(|a| a == "--help") {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    if cmd == "janus-client" {
        // Hidden: run by `compare` inside Janus's network namespace.
        println!("{}", janus::client_main(&args[1..]));
        return ExitCode::SUCCESS;
    }
    let opts = match parse(&args[1..]) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("sluice-bench: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let result = match cmd.as_str() {
        "micro" => Ok(cmd_micro(&opts)),
        "limit" => cmd_limit(&opts),
        "fanout" => cmd_fanout(&opts),
        "ramp" => cmd_ramp(&opts),
        "compare" => cmd_compare(&opts),
        other => {
            eprintln!("sluice-bench: unknown command `{other}`\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("sluice-bench {cmd}: {e}");
            if opts.json {
                println!("{}", json!({"command": cmd, "error": e.to_string()}));
            }
            match e {
                BenchError::Unsupported(_) => ExitCode::from(2),
                _ => ExitCode::FAILURE,
            }
        }
    }
}

fn cmd_micro(o: &Opts) -> ExitCode {
    let budget = if o.quick { Budget::QUICK } else { Budget::FULL };
    eprintln!("sluice-bench micro: measuring (interleaved rounds, medians)...");
    let entries = micro::run(budget);
    if o.json {
        let report = json!({
            "command": "micro",
            "quick": o.quick,
            "provenance": micro::provenance(),
            "target_ratio_to_raw_crypto": 1.15,
            "entries": entries.iter().map(micro::Entry::to_json).collect::<Vec<_>>(),
        });
        println!("{report}");
    } else {
        println!(
            "{:<40} {:>10} {:>10} {:>7}",
            "case", "ns/op", "raw ns/op", "ratio"
        );
        for e in &entries {
            match e.raw_crypto_ns_per_op {
                Some(raw) => println!(
                    "{:<40} {:>10.1} {:>10.1} {:>7.3}",
                    e.name,
                    e.ns_per_op,
                    raw,
                    e.ns_per_op / raw
                ),
                None => println!("{:<40} {:>10.1}", e.name, e.ns_per_op),
            }
        }
    }
    ExitCode::SUCCESS
}

fn cores() -> Result<Vec<usize>, BenchError> {
    Ok(affinity::online_cores()?)
}

fn secs(v: Option<f64>, default: f64) -> Duration {
    Duration::from_secs_f64(v.unwrap_or(default).min(3600.0))
}

fn run_limit(o: &Opts, cores: &[usize]) -> Result<LimitReport, BenchError> {
    let cfg = LimitConfig::default_for(cores, secs(o.duration, 3.0).min(Duration::from_secs(5)));
    eprintln!(
        "sluice-bench limit: sendmmsg on core {} -> recvmmsg on core {}, {:.1} s...",
        cfg.sender_core,
        cfg.receiver_core,
        cfg.duration.as_secs_f64()
    );
    let r = limit::run(&cfg)?;
    eprintln!(
        "sluice-bench limit: {:.0} pps delivered (sender {:.0} pps)",
        r.rx_pps, r.tx_pps
    );
    Ok(r)
}

fn cmd_limit(o: &Opts) -> Result<ExitCode, BenchError> {
    let cores = cores()?;
    let r = run_limit(o, &cores)?;
    if o.json {
        println!(
            "{}",
            json!({"command": "limit", "provenance": provenance(), "limit": r.to_json()})
        );
    } else {
        println!(
            "limit: {:.0} pps of {} B delivered ({:.2} Gbit/s); sender capacity {:.0} pps; \
             sender core {} busy {:.0}%, receiver core {} busy {:.0}%; kernel drops {}",
            r.rx_pps,
            r.config.packet_len,
            r.rx_pps * r.config.packet_len as f64 * 8e-9,
            r.tx_pps,
            r.config.sender_core,
            r.sender_busy * 100.0,
            r.config.receiver_core,
            r.receiver_busy * 100.0,
            r.rx_queue_drops
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn fanout_config(
    o: &Opts,
    cores: &[usize],
    default_duration: f64,
) -> Result<FanoutConfig, BenchError> {
    let mut c = FanoutConfig::default_for(
        cores,
        o.subscribers.unwrap_or(100),
        secs(o.duration, default_duration),
    );
    c.warmup = secs(o.warmup, 1.0);
    c.publishers = o.publishers.unwrap_or(1).max(1);
    c.audio = !o.video_only;
    c.video = !o.audio_only;
    if let Some(bps) = o.max_bitrate {
        c.max_bitrate_bps = bps;
    }
    c.kernel_arrival = match o.arrival.as_deref() {
        None | Some("kernel") => true,
        Some("read") => false,
        Some(other) => {
            return Err(BenchError::Other(format!(
                "--arrival: `{other}` is not kernel or read"
            )))
        }
    };
    if let Some(name) = &o.cipher {
        c.cipher = Cipher::parse(name).ok_or_else(|| {
            BenchError::Other(format!("--cipher: `{name}` is not gcm, cm or none"))
        })?;
    }
    let workers = o.workers.unwrap_or(1).max(1);
    if workers >= cores.len() && cores.len() > 1 {
        return Err(BenchError::Other(format!(
            "--workers {workers}: leave one of the {} cores to the generator",
            cores.len()
        )));
    }
    c.sfu_cores = cores[cores.len().saturating_sub(workers)..].to_vec();
    let gen_threads = o.gen_threads.unwrap_or(1).max(1);
    if gen_threads > 1 {
        if gen_threads + workers > cores.len() {
            return Err(BenchError::Other(format!(
                "--gen-threads {gen_threads} + --workers {workers} exceed the {} cores",
                cores.len()
            )));
        }
        c.generator_rx_cores = cores[1..gen_threads].to_vec();
    }
    c.io = match o.io.as_deref() {
        None | Some("auto") => IoChoice::Auto,
        Some("uring") => IoChoice::Uring,
        Some("socket") => IoChoice::Socket,
        Some(other) => return Err(BenchError::Other(format!("--io: `{other}`"))),
    };
    Ok(c)
}

fn open_sfu(o: &Opts, cfg: &FanoutConfig) -> Result<Sfu, BenchError> {
    match &o.attach {
        Some(sock) => Sfu::attach(sock.clone()),
        None => Sfu::start(cfg),
    }
}

fn cmd_fanout(o: &Opts) -> Result<ExitCode, BenchError> {
    let cores = cores()?;
    let cfg = fanout_config(o, &cores, 5.0)?;
    if o.cascade {
        return cmd_cascade(o, &cores, cfg);
    }
    if o.trunk.is_some() {
        return Err(BenchError::Other("--trunk goes with --cascade".into()));
    }
    let lim = if o.no_limit {
        None
    } else {
        Some(run_limit(o, &cores)?)
    };
    let mut sfu = open_sfu(o, &cfg)?;
    let r = fanout::run(&mut sfu, &cfg);
    sfu.stop();
    let r = r?;
    let body = r.to_json(lim.as_ref());
    if o.json {
        println!(
            "{}",
            json!({
                "command": "fanout",
                "provenance": provenance(),
                "limit": lim.as_ref().map(LimitReport::to_json),
                "fanout": body,
            })
        );
    } else {
        fanout::print_summary(&body, lim.as_ref());
    }
    Ok(ExitCode::SUCCESS)
}

fn cmd_cascade(o: &Opts, cores: &[usize], fanout: FanoutConfig) -> Result<ExitCode, BenchError> {
    if o.attach.is_some() {
        return Err(BenchError::Other(
            "--cascade starts its own two dataplanes: no --attach".into(),
        ));
    }
    let mut cfg = CascadeConfig::default_for(cores, fanout.subscribers, fanout.duration);
    // A gets as many workers as B, on cores of their own where there are enough.
    let w = fanout.sfu_cores.len();
    cfg.a_cores = if cores.len() > 2 * w {
        cores[cores.len() - 2 * w..cores.len() - w].to_vec()
    } else if w == 1 {
        cfg.a_cores
    } else {
        cores[..w].to_vec()
    };
    cfg.fanout = fanout;
    if let Some(t) = &o.trunk {
        cfg.trunk = TrunkCipher::parse(t)
            .ok_or_else(|| BenchError::Other(format!("--trunk: `{t}` is not srtp or trusted")))?;
    }
    eprintln!(
        "sluice-bench fanout --cascade: 5 phases of {:.1} s (single, cascade, a_alone, b_alone, \
         cascade_1)",
        (cfg.fanout.warmup + cfg.fanout.duration).as_secs_f64()
    );
    let r = cascade::run(&cfg)?;
    let body = r.to_json();
    if o.json {
        println!(
            "{}",
            json!({"command": "fanout --cascade", "provenance": provenance(), "cascade": body})
        );
        // The summary too, on stderr: the figures docs/performance.md quotes.
        eprint!("{}", cascade::summary(&body));
    } else {
        print!("{}", cascade::summary(&body));
    }
    Ok(ExitCode::SUCCESS)
}

/// Why a step warms up as long as it does, for the JSON report.
fn warmup_note(step: &FanoutConfig) -> &'static str {
    if step.cipher == Cipher::None {
        "plain RTP: Sluice starts the estimate at the quality cap; no feedback needed"
    } else {
        "both SFUs' steps; WebRTC subscribers send transport-cc feedback to Sluice and \
         negotiate RTX, which Sluice probes each new subscriber's path with (its estimate \
         reaches the media's rate within a few hundred ms; before issue 12 it climbed 8 % a \
         second and steps warmed up 6 s)"
    }
}

fn ramp_config(o: &Opts, cores: &[usize]) -> Result<RampConfig, BenchError> {
    let step = fanout_config(o, cores, 3.0)?;
    Ok(RampConfig {
        step,
        start: o.start.unwrap_or(50).max(1),
        max: o.max.unwrap_or(5000).max(1),
        refine: o.refine.unwrap_or(3),
    })
}

fn run_sluice_ramp(o: &Opts, cfg: &RampConfig) -> Result<RampReport, BenchError> {
    let mut sfu = open_sfu(o, &cfg.step)?;
    let r = ramp::run(&mut sfu, cfg, |p| print_step("sluice", p));
    sfu.stop();
    r
}

fn print_step(name: &str, p: &ramp::Point) {
    eprintln!(
        "ramp {name}: {} subscribers -> {:.0} pps, loss {:.3}%, p99 {:.2} ms, SFU busy {:.2}, generator busy {:.2} {}",
        p.subscribers,
        p.delivered_pps,
        p.loss * 100.0,
        p.p99_ms,
        p.sfu_busy,
        p.generator_busy,
        if p.ok() { "ok" } else { "BROKE" }
    )
}

fn ramp_json(r: &RampReport, lim: Option<&LimitReport>) -> Value {
    let mut v = r.to_json();
    if let (Some(l), Some(b)) = (lim, r.best()) {
        v["ratio_to_limit_at_best"] = json!(round(b.delivered_pps / l.rx_pps.max(1e-9), 3));
        v["target_ratio_to_limit"] = json!(0.70);
    }
    v
}

fn write_plot(path: &PathBuf, title: &str, series: &[Series]) -> Result<(), BenchError> {
    std::fs::write(path, plot::render(title, series))?;
    eprintln!("sluice-bench: wrote {}", path.display());
    Ok(())
}

fn cmd_ramp(o: &Opts) -> Result<ExitCode, BenchError> {
    let cores = cores()?;
    let cfg = ramp_config(o, &cores)?;
    let lim = if o.no_limit {
        None
    } else {
        Some(run_limit(o, &cores)?)
    };
    let r = run_sluice_ramp(o, &cfg)?;
    if let Some(path) = &o.plot {
        let series = [Series {
            name: "Sluice".into(),
            points: r.sorted(),
        }];
        write_plot(path, "sluice-bench ramp", &series)?;
    }
    let body = ramp_json(&r, lim.as_ref());
    if o.json {
        println!(
            "{}",
            json!({
                "command": "ramp",
                "step_warmup_s": cfg.step.warmup.as_secs_f64(),
                "provenance": provenance(),
                "limit": lim.as_ref().map(LimitReport::to_json),
                "ramp": body,
            })
        );
    } else {
        print_ramp("Sluice", &r);
        if let Some(x) = body.get("ratio_to_limit_at_best") {
            println!("  fanout/limit at the best step = {x} (target >= 0.70)");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_ramp(name: &str, r: &RampReport) {
    println!(
        "ramp {name}: {:>6} {:>10} {:>9} {:>9} {:>8}",
        "subs", "pps", "loss %", "p99 ms", "ok"
    );
    for p in r.sorted() {
        println!(
            "            {:>6} {:>10.0} {:>9.3} {:>9.2} {:>8}",
            p.subscribers,
            p.delivered_pps,
            p.loss * 100.0,
            p.p99_ms,
            p.ok()
        );
    }
    println!(
        "  max {} subscribers ({:.0} per worker core); stopped: {}",
        r.max_ok,
        r.per_worker_core(),
        r.stopped
    );
}

fn cmd_compare(o: &Opts) -> Result<ExitCode, BenchError> {
    match o.peer.as_deref() {
        Some("janus") => {}
        other => {
            return Err(BenchError::Other(format!(
                "--peer {}: only `janus` is supported",
                other.unwrap_or("(missing)")
            )))
        }
    }
    let Some(janus_bin) = janus::find_binary() else {
        eprintln!(
            "sluice-bench compare: the `janus` binary is not installed.\n{}",
            janus::INSTALL_HINT
        );
        if o.json {
            println!(
                "{}",
                json!({"command": "compare", "peer": "janus", "error": "janus not installed",
                       "install": janus::INSTALL_HINT})
            );
        }
        return Ok(ExitCode::from(2));
    };
    let cores = cores()?;
    let cfg = ramp_config(o, &cores)?;
    let rounds = o.rounds.unwrap_or(3) as usize;
    let report = CompareReport::run(
        rounds,
        |_| run_sluice_ramp(o, &cfg),
        |_| {
            eprintln!("sluice-bench compare: Janus side ({})", janus_bin.display());
            janus::run_ramp(&janus_bin, &cfg, |p| print_step("janus", p))
        },
    )?;
    if let (Some(path), Some(r)) = (&o.plot, report.median_round()) {
        let mut series = vec![Series {
            name: "Sluice".into(),
            points: r.sluice.sorted(),
        }];
        if let Ok(j) = &r.janus {
            series.push(Series {
                name: "Janus VideoRoom".into(),
                points: j.ramp.sorted(),
            });
        }
        write_plot(
            path,
            "sluice-bench compare --peer janus (median round)",
            &series,
        )?;
    }
    let any_janus = report.janus_max().is_some();
    if o.json {
        let mut body = report.to_json();
        body["command"] = json!("compare");
        body["peer"] = json!("janus");
        body["step_warmup_s"] = json!(cfg.step.warmup.as_secs_f64());
        body["step_warmup_note"] = json!(warmup_note(&cfg.step));
        body["provenance"] = provenance();
        body["sluice_cipher"] = json!(cfg.step.cipher.name());
        body["target_ratio"] = json!(4.0);
        println!("{body}");
    } else {
        for (i, r) in report.rounds.iter().enumerate() {
            println!("round {}:", i + 1);
            print_ramp("Sluice", &r.sluice);
            match &r.janus {
                Ok(j) => print_ramp("Janus", &j.ramp),
                Err(e) => println!("ramp Janus: not measured: {e}"),
            }
        }
        let show = |name: &str, s: Option<compare::Spread>| match s {
            Some(s) => println!(
                "{name}: median {:.0} subscribers per core, {:.0}..{:.0} over {} rounds",
                s.median,
                s.min,
                s.max,
                s.values.len()
            ),
            None => println!("{name}: not measured"),
        };
        show("Sluice", report.sluice_max());
        show("Janus", report.janus_max());
        match report.ratio() {
            Some(r) => println!("Sluice / Janus (medians) = {r:.2} (target >= 4)"),
            None => println!("Sluice / Janus ratio: not available"),
        }
    }
    Ok(if any_janus {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
