//! `sluice-bench`'s command line: the usage text, the options every subcommand reads
//! ([`Opts`]) and their parsing ([`parse`]). The subcommands themselves are in the binary.

use std::path::PathBuf;

/// The `--help` text (also printed on a usage error).
pub const USAGE: &str = "usage: sluice-bench <command> [options]

commands:
  micro     per-operation cost of rtp-core's hot paths (parse, SRTP, NACK cache, pacer)
  limit     the machine's ceiling: sendmmsg -> recvmmsg of pre-encrypted 1,200 B packets,
            sender and receiver pinned to different cores, over loopback
  fanout    Sluice under real-shaped media load (P publishers, S subscribers), with `limit`
            measured in the same run; headline = fanout egress pps / limit pps (target >= 0.70)
  ramp      raise subscribers until loss > 0.5% or p99 latency > 50 ms
  compare   --peer janus: the same ramp against Janus VideoRoom, --rounds times interleaved
            (Sluice, Janus, Sluice, …), median and spread of each (Janus's peers are always
            WebRTC/SRTP; --cipher picks Sluice's side; needs root; bench/install.sh installs Janus)

options:
  --json                one JSON object on stdout instead of a summary
  --quick               micro: a smoke run
  --duration SECS       measured window per run/step (default: limit 3, fanout 5, ramp 3)
  --warmup SECS         warm-up before each window (default 1: the SFU probes each new
                        WebRTC subscriber's path, its estimate is past the media's rate
                        within a few hundred ms)
  --publishers N        publishers, each audio + video (default 1)
  --subscribers N       fanout: subscribers (default 100)
  --audio-only | --video-only
  --cipher gcm|cm|none  publisher/subscriber transport (default none = plain RTP; gcm/cm:
                        WebRTC peers, ICE + DTLS + SRTP; the run fails if DTLS negotiates
                        another profile than the one asked)
  --workers N           in-process SFU workers, on the last N cores (default 1)
  --gen-threads N       generator threads, on the first N cores (default 1): publishers and a
                        share of subscribers on the first, the other shares on the others
  --attach SOCKET       use a running sluice-dataplane's control socket instead
  --cascade             fanout: through a trunk (issue 16): two in-process dataplanes, the
                        publisher(s) and a reference subscriber on A, the N subscribers on B;
                        runs the single-node fan-out of the same N on B, the cascade, and three
                        CPU baselines; reports single vs cascaded, the added latency and the
                        trunk's CPU per relayed packet on each side (plain-RTP peers only)
  --trunk srtp|trusted  --cascade: the trunk's protection (default srtp, keyed from a cluster
                        secret written for the run; trusted = plain RTP)
  --io auto|uring|socket  in-process dataplane I/O backend (default auto)
  --max-bitrate BPS     every session's quality cap, which bounds the SFU's estimate and pacing
                        rate and sizes its send history (default 10000000)
  --start N --max N --refine N   ramp: first step, ceiling, bisection steps (50, 5000, 3)
  --arrival kernel|read  when a copy arrived, for its latency: the kernel's receive time on the
                        generator's socket (default) or when the generator read it (builds
                        before 2026-12-07 did: for an A/B against one, as the old measure)
  --no-limit            fanout/ramp: skip the `limit` run
  --plot FILE.svg       ramp/compare: write the chart
  --peer janus          compare: the peer SFU
  --rounds N            compare: interleaved rounds per SFU (default 3)";

/// The options after the subcommand, as given (`None`: not given; each command picks its
/// default).
#[derive(Debug, Default)]
pub struct Opts {
    pub json: bool,
    pub quick: bool,
    pub duration: Option<f64>,
    pub warmup: Option<f64>,
    pub publishers: Option<u32>,
    pub subscribers: Option<u32>,
    pub audio_only: bool,
    pub video_only: bool,
    pub cipher: Option<String>,
    pub max_bitrate: Option<u64>,
    pub arrival: Option<String>,
    pub workers: Option<usize>,
    pub gen_threads: Option<usize>,
    pub attach: Option<PathBuf>,
    pub io: Option<String>,
    pub start: Option<u32>,
    pub max: Option<u32>,
    pub refine: Option<u32>,
    pub no_limit: bool,
    pub plot: Option<PathBuf>,
    pub peer: Option<String>,
    pub rounds: Option<u32>,
    pub cascade: bool,
    pub trunk: Option<String>,
}

/// Parses the options after the subcommand (`--name value` or `--name=value`).
pub fn parse(args: &[String]) -> Result<Opts, String> {
    let mut o = Opts::default();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let (name, inline) = match a.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n, Some(v.to_string())),
            _ => (a.as_str(), None),
        };
        let mut value = || -> Result<String, String> {
            inline
                .clone()
                .or_else(|| it.next().cloned())
                .ok_or_else(|| format!("{name} expects a value"))
        };
        let num = |v: String| -> Result<f64, String> {
            v.parse::<f64>()
                .ok()
                .filter(|x| x.is_finite() && *x >= 0.0)
                .ok_or_else(|| format!("{name}: `{v}` is not a number"))
        };
        match name {
            "--json" => o.json = true,
            "--quick" => o.quick = true,
            "--audio-only" => o.audio_only = true,
            "--video-only" => o.video_only = true,
            "--no-limit" => o.no_limit = true,
            "--cascade" => o.cascade = true,
            "--trunk" => o.trunk = Some(value()?),
            "--duration" => o.duration = Some(num(value()?)?),
            "--warmup" => o.warmup = Some(num(value()?)?),
            "--publishers" => o.publishers = Some(num(value()?)? as u32),
            "--subscribers" => o.subscribers = Some(num(value()?)? as u32),
            "--workers" => o.workers = Some(num(value()?)? as usize),
            "--gen-threads" => o.gen_threads = Some(num(value()?)? as usize),
            "--start" => o.start = Some(num(value()?)? as u32),
            "--max" => o.max = Some(num(value()?)? as u32),
            "--refine" => o.refine = Some(num(value()?)? as u32),
            "--cipher" => o.cipher = Some(value()?),
            "--max-bitrate" => o.max_bitrate = Some(num(value()?)?.max(1.0) as u64),
            "--io" => o.io = Some(value()?),
            "--arrival" => o.arrival = Some(value()?),
            "--attach" => o.attach = Some(PathBuf::from(value()?)),
            "--plot" => o.plot = Some(PathBuf::from(value()?)),
            "--peer" => o.peer = Some(value()?),
            "--rounds" => o.rounds = Some(num(value()?)?.max(1.0) as u32),
            other => return Err(format!("unknown option `{other}`")),
        }
    }
    if o.audio_only && o.video_only {
        return Err("--audio-only and --video-only exclude each other".into());
    }
    Ok(o)
}
