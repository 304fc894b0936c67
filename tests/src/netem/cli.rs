//! Command-line parsing for the `sluice-netem` binary, and the `KEY VALUE` impairment settings
//! that both the flags and the `set` control line use. Kept in the library so it is unit
//! tested; the binary only wires it to the process.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use super::impairment::{Burst, Direction, Impairment};
use super::relay::RelayConfig;

/// Parsed command line.
#[derive(Clone, Debug)]
pub struct CliOptions {
    /// The relay to start.
    pub relay: RelayConfig,
    /// Where control lines come from.
    pub control: ControlSource,
    /// Exit (printing stats) after this long.
    pub duration: Option<Duration>,
}

/// Where the binary reads control lines.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ControlSource {
    /// Standard input; end of input stops the relay.
    Stdin,
    /// A Unix stream socket at this path, one line per command, one reply line each.
    Unix(PathBuf),
    /// No control; runs until `--duration` or until killed.
    None,
}

/// One impairment field, parsed.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Setting {
    /// `loss P`
    Loss(f64),
    /// `burst P_ENTER,P_EXIT` or `burst off`
    Burst(Option<Burst>),
    /// `delay DUR`
    Delay(Duration),
    /// `jitter DUR`
    Jitter(Duration),
    /// `reorder P`
    Reorder(f64),
    /// `reorder-delay DUR`
    ReorderDelay(Duration),
    /// `duplicate P`
    Duplicate(f64),
    /// `rate RATE` or `rate off`
    Rate(Option<u64>),
    /// `queue BYTES`
    Queue(u32),
}

impl Setting {
    /// Parses `key` (a name from [`SETTING_KEYS`]) with its `value`.
    pub fn parse(key: &str, value: &str) -> Result<Setting, CliError> {
        let bad = |reason: &'static str| CliError::BadValue {
            key: key.to_owned(),
            value: value.to_owned(),
            reason,
        };
        let probability = || {
            value
                .parse::<f64>()
                .ok()
                .filter(|p| (0.0..=1.0).contains(p))
                .ok_or_else(|| bad("expected a probability in [0, 1]"))
        };
        let duration = || parse_duration(value).ok_or_else(|| bad("expected a duration like 20ms"));
        Ok(match key {
            "loss" => Setting::Loss(probability()?),
            "reorder" => Setting::Reorder(probability()?),
            "duplicate" => Setting::Duplicate(probability()?),
            "delay" => Setting::Delay(duration()?),
            "jitter" => Setting::Jitter(duration()?),
            "reorder-delay" => Setting::ReorderDelay(duration()?),
            "burst" if value == "off" => Setting::Burst(None),
            "burst" => Setting::Burst(Some(
                parse_burst(value).ok_or_else(|| bad("expected P_ENTER,P_EXIT in [0, 1]"))?,
            )),
            "rate" if value == "off" => Setting::Rate(None),
            "rate" => Setting::Rate(Some(
                parse_rate(value).ok_or_else(|| bad("expected bits/s like 2M or 500k"))?,
            )),
            "queue" => Setting::Queue(value.parse().map_err(|_| bad("expected bytes"))?),
            _ => return Err(CliError::UnknownSetting(key.to_owned())),
        })
    }

    /// Writes this setting into `impairment`.
    pub fn apply(self, impairment: &mut Impairment) {
        match self {
            Setting::Loss(p) => impairment.loss = p,
            Setting::Burst(b) => impairment.burst = b,
            Setting::Delay(d) => impairment.delay = d,
            Setting::Jitter(d) => impairment.jitter = d,
            Setting::Reorder(p) => impairment.reorder = p,
            Setting::ReorderDelay(d) => impairment.reorder_delay = d,
            Setting::Duplicate(p) => impairment.duplicate = p,
            Setting::Rate(r) => impairment.rate_bps = r,
            Setting::Queue(q) => impairment.queue_bytes = q,
        }
    }
}

/// The impairment keys, as flags (`--KEY`, `--up-KEY`, `--down-KEY`) and in `set` lines.
pub const SETTING_KEYS: [&str; 9] = [
    "loss",
    "burst",
    "delay",
    "jitter",
    "reorder",
    "reorder-delay",
    "duplicate",
    "rate",
    "queue",
];

/// A command line or control line that could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CliError {
    /// `--help` was given: print [`USAGE`].
    #[error("help requested")]
    Help,
    /// A flag nobody knows.
    #[error("unknown flag {0}")]
    UnknownFlag(String),
    /// An impairment key nobody knows.
    #[error("unknown setting {0} (one of: loss burst delay jitter reorder reorder-delay duplicate rate queue)")]
    UnknownSetting(String),
    /// A flag or command without its value.
    #[error("{0} needs a value")]
    MissingValue(String),
    /// `--listen` or `--upstream` absent.
    #[error("{0} is required")]
    Missing(&'static str),
    /// A value that does not parse.
    #[error("bad value {value:?} for {key}: {reason}")]
    BadValue {
        /// The flag or key.
        key: String,
        /// What was given.
        value: String,
        /// What was expected.
        reason: &'static str,
    },
    /// A control line that is not a command.
    #[error("unknown command {0:?} (pause|resume DIR, set DIR KEY VALUE, stats, quit; DIR is up, down or both)")]
    UnknownCommand(String),
}

/// Which directions a flag or control line addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Both directions.
    Both,
    /// One direction.
    One(Direction),
}

impl Scope {
    /// The directions in this scope.
    pub fn directions(self) -> &'static [Direction] {
        match self {
            Scope::Both => &Direction::ALL,
            Scope::One(Direction::Up) => &[Direction::Up],
            Scope::One(Direction::Down) => &[Direction::Down],
        }
    }
}

impl FromStr for Scope {
    type Err = CliError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "both" => Ok(Scope::Both),
            "up" => Ok(Scope::One(Direction::Up)),
            "down" => Ok(Scope::One(Direction::Down)),
            _ => Err(CliError::BadValue {
                key: "direction".into(),
                value: s.into(),
                reason: "expected up, down or both",
            }),
        }
    }
}

/// Parses the arguments after the program name. Settings without a direction prefix apply
/// first and `--up-…`/`--down-…` ones after, whatever their order on the line.
pub fn parse_args<I>(args: I) -> Result<CliOptions, CliError>
where
    I: IntoIterator<Item = String>,
{
    let mut listen = None;
    let mut upstream = None;
    let mut upstream_source = None;
    let mut seed = 0;
    let mut allow_non_loopback = false;
    let mut control = ControlSource::Stdin;
    let mut duration = None;
    let mut max_clients = None;
    let mut queue_packets = None;
    let mut settings: Vec<(Scope, Setting)> = Vec::new();

    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) if arg.starts_with("--") => (flag.to_owned(), Some(value.into())),
            _ => (arg, None),
        };
        match flag.as_str() {
            "-h" | "--help" => return Err(CliError::Help),
            "--allow-non-loopback" => {
                allow_non_loopback = true;
                continue;
            }
            _ => {}
        }
        let mut value = || {
            inline
                .clone()
                .or_else(|| args.next())
                .ok_or_else(|| CliError::MissingValue(flag.clone()))
        };
        let parse_err = |value: &str, reason| CliError::BadValue {
            key: flag.clone(),
            value: value.into(),
            reason,
        };
        match flag.as_str() {
            "--listen" | "--upstream" | "--upstream-source" => {
                let v = value()?;
                let addr = v
                    .parse::<SocketAddr>()
                    .map_err(|_| parse_err(&v, "expected IP:PORT"))?;
                *match flag.as_str() {
                    "--listen" => &mut listen,
                    "--upstream" => &mut upstream,
                    _ => &mut upstream_source,
                } = Some(addr);
            }
            "--seed" => {
                let v = value()?;
                seed = v
                    .parse()
                    .map_err(|_| parse_err(&v, "expected an integer"))?;
            }
            "--max-clients" | "--queue-packets" => {
                let v = value()?;
                let n = v
                    .parse::<usize>()
                    .ok()
                    .filter(|&n| n > 0)
                    .ok_or_else(|| parse_err(&v, "expected a positive integer"))?;
                *if flag == "--max-clients" {
                    &mut max_clients
                } else {
                    &mut queue_packets
                } = Some(n);
            }
            "--duration" => {
                let v = value()?;
                duration =
                    Some(parse_duration(&v).ok_or_else(|| parse_err(&v, "expected a duration"))?);
            }
            "--control" => {
                control = match value()?.as_str() {
                    "stdin" | "-" => ControlSource::Stdin,
                    "none" => ControlSource::None,
                    path => ControlSource::Unix(PathBuf::from(path)),
                };
            }
            _ => {
                let Some(name) = flag.strip_prefix("--") else {
                    return Err(CliError::UnknownFlag(flag.clone()));
                };
                let (scope, key) = match name.split_once('-') {
                    Some(("up", key)) => (Scope::One(Direction::Up), key),
                    Some(("down", key)) => (Scope::One(Direction::Down), key),
                    _ => (Scope::Both, name),
                };
                if !SETTING_KEYS.contains(&key) {
                    return Err(CliError::UnknownFlag(flag.clone()));
                }
                let v = value()?;
                settings.push((scope, Setting::parse(key, &v)?));
            }
        }
    }

    let mut relay = RelayConfig::new(
        listen.ok_or(CliError::Missing("--listen"))?,
        upstream.ok_or(CliError::Missing("--upstream"))?,
    );
    relay.seed = seed;
    relay.upstream_source = upstream_source;
    relay.allow_non_loopback = allow_non_loopback;
    relay.max_clients = max_clients.unwrap_or(relay.max_clients);
    relay.queue_packets = queue_packets.unwrap_or(relay.queue_packets);
    settings.sort_by_key(|(scope, _)| *scope != Scope::Both);
    for (scope, setting) in settings {
        for &direction in scope.directions() {
            match direction {
                Direction::Up => setting.apply(&mut relay.up),
                Direction::Down => setting.apply(&mut relay.down),
            }
        }
    }
    Ok(CliOptions {
        relay,
        control,
        duration,
    })
}

/// `0`, or a decimal number with a unit: `ns`, `us`, `ms`, `s`.
pub fn parse_duration(s: &str) -> Option<Duration> {
    if s == "0" {
        return Some(Duration::ZERO);
    }
    let split = s.find(|c: char| c.is_ascii_alphabetic())?;
    let (number, unit) = s.split_at(split);
    let number: f64 = number.parse().ok().filter(|n: &f64| *n >= 0.0)?;
    let scale = match unit {
        "ns" => 1e-9,
        "us" => 1e-6,
        "ms" => 1e-3,
        "s" => 1.0,
        _ => return None,
    };
    Duration::try_from_secs_f64(number * scale).ok()
}

/// Bits per second: a number with an optional `k`, `M` or `G` multiplier and an optional
/// `bit`/`bps` suffix (`2M`, `500kbit`, `64000`).
pub fn parse_rate(s: &str) -> Option<u64> {
    let s = s
        .strip_suffix("bps")
        .or_else(|| s.strip_suffix("bit"))
        .unwrap_or(s);
    let (number, scale) = match s.chars().last()? {
        'k' | 'K' => (&s[..s.len() - 1], 1e3),
        'm' | 'M' => (&s[..s.len() - 1], 1e6),
        'g' | 'G' => (&s[..s.len() - 1], 1e9),
        _ => (s, 1.0),
    };
    let bps = number.parse::<f64>().ok()? * scale;
    (bps >= 1.0 && bps <= u64::MAX as f64).then_some(bps as u64)
}

fn parse_burst(s: &str) -> Option<Burst> {
    let (enter, exit) = s.split_once(',')?;
    let p = |v: &str| {
        v.trim()
            .parse::<f64>()
            .ok()
            .filter(|p| (0.0..=1.0).contains(p))
    };
    Some(Burst {
        p_enter: p(enter)?,
        p_exit: p(exit)?,
    })
}

/// Printed for `--help` and after a command-line error.
pub const USAGE: &str = "\
usage: sluice-netem --listen IP:PORT --upstream IP:PORT [options]

Relays UDP from clients at --listen to --upstream (one upstream socket per client) and the
replies back, impairing each direction. Prints `ready IP:PORT` when listening and the stats as
JSON on exit.

impairment (--KEY sets both directions, --up-KEY / --down-KEY one; per-direction flags win):
  --loss P                random loss probability
  --burst P_ENTER,P_EXIT  Gilbert-Elliott bursts (bad state loses everything), or `off`
  --delay DUR             one-way delay, e.g. 20ms
  --jitter DUR            uniform +/- jitter on the delay
  --reorder P             fraction held back by --reorder-delay (default 10ms)
  --reorder-delay DUR
  --duplicate P           fraction sent twice
  --rate RATE             token-bucket bottleneck in bits/s (2M, 500k), or `off`
  --queue BYTES           bottleneck queue before tail drop (default 65536)

other:
  --seed N                seed of the random decisions (default 0)
  --control stdin|none|PATH  control lines from stdin (default; EOF quits), nowhere, or a
                          Unix socket at PATH
  --duration DUR          quit after DUR
  --max-clients N         (default 64)    --queue-packets N  per direction (default 1024)
  --upstream-source IP:PORT  bind the first client's upstream socket here (an upstream that
                          accepts one source it is told in advance: a dataplane trunk)
  --allow-non-loopback    permit listen/upstream addresses off 127.0.0.0/8 and ::1

control lines: pause DIR | resume DIR | set DIR KEY VALUE | stats | quit   (DIR: up|down|both)
";

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> Vec<String> {
        line.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn parses_the_documented_example() {
        let o = parse_args(args(
            "--listen 127.0.0.1:9000 --upstream 127.0.0.1:7882 --loss 0.1 --delay 20ms \
             --jitter 5ms --reorder 0.01 --duplicate 0.01 --burst 0.05,0.5 --seed 1 \
             --down-loss 0.2",
        ))
        .expect("valid");
        assert_eq!(o.relay.listen, "127.0.0.1:9000".parse().unwrap());
        assert_eq!(o.relay.upstream, "127.0.0.1:7882".parse().unwrap());
        assert_eq!(o.relay.seed, 1);
        assert_eq!(o.relay.up.loss, 0.1);
        assert_eq!(o.relay.down.loss, 0.2);
        for imp in [o.relay.up, o.relay.down] {
            assert_eq!(imp.delay, Duration::from_millis(20));
            assert_eq!(imp.jitter, Duration::from_millis(5));
            assert_eq!(imp.reorder, 0.01);
            assert_eq!(imp.duplicate, 0.01);
            assert_eq!(
                imp.burst,
                Some(Burst {
                    p_enter: 0.05,
                    p_exit: 0.5
                })
            );
        }
        assert_eq!(o.control, ControlSource::Stdin);
        assert!(!o.relay.allow_non_loopback);
    }

    #[test]
    fn direction_flags_win_whatever_the_order() {
        let o = parse_args(args(
            "--down-delay=40ms --delay 10ms --listen 127.0.0.1:0 --upstream [::1]:5 \
             --up-rate 2M --control /tmp/x.sock --duration 1.5s --allow-non-loopback",
        ))
        .expect("valid");
        assert_eq!(o.relay.up.delay, Duration::from_millis(10));
        assert_eq!(o.relay.down.delay, Duration::from_millis(40));
        assert_eq!(o.relay.up.rate_bps, Some(2_000_000));
        assert_eq!(o.relay.down.rate_bps, None);
        assert_eq!(o.control, ControlSource::Unix("/tmp/x.sock".into()));
        assert_eq!(o.duration, Some(Duration::from_millis(1500)));
        assert!(o.relay.allow_non_loopback);
        assert_eq!(o.relay.upstream_source, None);
    }

    #[test]
    fn upstream_source_binds_the_first_clients_socket() {
        let o = parse_args(args(
            "--listen 127.0.0.1:0 --upstream 127.0.0.1:2 --upstream-source 127.0.0.1:3",
        ))
        .expect("valid");
        assert_eq!(
            o.relay.upstream_source,
            Some("127.0.0.1:3".parse().unwrap())
        );
        let e = parse_args(args(
            "--listen 127.0.0.1:0 --upstream 127.0.0.1:2 --upstream-source x",
        ))
        .unwrap_err();
        assert!(
            matches!(e, CliError::BadValue { ref key, .. } if key == "--upstream-source"),
            "{e:?}"
        );
    }

    #[test]
    fn rejects_bad_input() {
        let base = "--listen 127.0.0.1:1 --upstream 127.0.0.1:2";
        let err = |extra: &str| parse_args(args(&format!("{base} {extra}"))).unwrap_err();
        assert!(matches!(err("--loss 1.5"), CliError::BadValue { .. }));
        assert!(matches!(err("--loss"), CliError::MissingValue(_)));
        assert!(matches!(err("--lose 0.1"), CliError::UnknownFlag(_)));
        assert!(matches!(
            err("--sideways-loss 0.1"),
            CliError::UnknownFlag(_)
        ));
        assert!(matches!(err("--burst 0.1"), CliError::BadValue { .. }));
        assert!(matches!(err("--delay 20"), CliError::BadValue { .. }));
        assert!(matches!(err("--rate 0"), CliError::BadValue { .. }));
        assert!(matches!(err("--help"), CliError::Help));
        assert_eq!(
            parse_args(args("--listen 127.0.0.1:1")).unwrap_err(),
            CliError::Missing("--upstream")
        );
    }

    #[test]
    fn durations_and_rates() {
        assert_eq!(parse_duration("0"), Some(Duration::ZERO));
        assert_eq!(parse_duration("250us"), Some(Duration::from_micros(250)));
        assert_eq!(parse_duration("2s"), Some(Duration::from_secs(2)));
        assert_eq!(parse_duration("-1ms"), None);
        assert_eq!(parse_duration("5 ms"), None);
        assert_eq!(parse_duration("5h"), None);
        assert_eq!(parse_rate("500k"), Some(500_000));
        assert_eq!(parse_rate("2.5Mbit"), Some(2_500_000));
        assert_eq!(parse_rate("64000bps"), Some(64_000));
        assert_eq!(parse_rate("1G"), Some(1_000_000_000));
        assert_eq!(parse_rate("fast"), None);
        assert_eq!(parse_rate(""), None);
    }

    #[test]
    fn settings_parse_and_apply() {
        let mut imp = Impairment::default();
        Setting::parse("rate", "1M").unwrap().apply(&mut imp);
        Setting::parse("queue", "3000").unwrap().apply(&mut imp);
        Setting::parse("burst", "0.1,0.9").unwrap().apply(&mut imp);
        assert_eq!(imp.rate_bps, Some(1_000_000));
        assert_eq!(imp.queue_bytes, 3_000);
        Setting::parse("rate", "off").unwrap().apply(&mut imp);
        Setting::parse("burst", "off").unwrap().apply(&mut imp);
        assert_eq!(imp.rate_bps, None);
        assert_eq!(imp.burst, None);
        assert!(matches!(
            Setting::parse("colour", "red"),
            Err(CliError::UnknownSetting(_))
        ));
    }
}
