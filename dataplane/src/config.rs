//! Dataplane configuration: TOML file, then environment, then command-line flags (each layer
//! overrides the one before). Every error names the key it is about, e.g.
//! `dataplane.port: expected an integer in 1..=65535, got "x"`.
//!
//! The file is the same `sluice.toml` the control daemon reads; this module reads only its
//! `[dataplane]` table and rejects unknown keys there (a typo must not be ignored silently).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use rtp_core::dtls::SrtpProfiles;
use rtp_core::srtp::ProtectionProfile;
use thiserror::Error;

/// How the workers do their socket I/O.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoChoice {
    /// io_uring when the start-up probe finds multishot receive and buffer rings, else sockets.
    Auto,
    /// io_uring; start-up fails if it is unavailable.
    Uring,
    /// Plain sockets with recvmmsg/sendmmsg.
    Socket,
}

/// The validated dataplane configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Cores to run one pinned worker each on, in worker order (worker i ↔ cores[i]).
    pub workers: Vec<usize>,
    /// Address the media sockets bind to.
    pub bind: IpAddr,
    /// The media port (all workers share it with SO_REUSEPORT unless `port_per_worker`).
    pub port: u16,
    /// Give worker i its own port `port + i` instead of sharing one.
    pub port_per_worker: bool,
    /// Addresses announced to clients as host candidates (1:1 NAT, port forwarding): IP and
    /// port, IPv4 or IPv6. Empty: the bind address (or, when it is unspecified, the caller
    /// decides).
    pub announce: Vec<SocketAddr>,
    /// The Unix socket the control daemon connects to.
    pub control_socket: PathBuf,
    /// Packet buffers per worker.
    pub buffers_per_worker: usize,
    pub io: IoChoice,
    pub recv_buffer_bytes: usize,
    pub send_buffer_bytes: usize,
    /// Use UDP GSO for batches to one destination when the kernel supports it.
    pub gso: bool,
    /// DTLS certificate and key (PEM); generated at start when absent.
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// How often each worker reports a stats snapshot to the control daemon.
    pub stats_interval_ms: u64,
    /// ICE-TCP (RFC 6544 passive candidates): listen on TCP too and advertise it, priced below
    /// the UDP candidate.
    pub ice_tcp: bool,
    /// The TCP media port; `None`: the UDP media port's number (each worker's, with
    /// `port_per_worker`).
    pub tcp_port: Option<u16>,
    /// ICE-TCP bounds: connections per worker, send queue per connection, how long a connection
    /// may go without a validated check, and how long a bound one may stay silent.
    pub tcp_max_connections: usize,
    pub tcp_send_queue_bytes: usize,
    pub tcp_stun_timeout_ms: u64,
    pub tcp_idle_timeout_ms: u64,
    /// The allocator may pause a simulcast subscription when even the lowest layers exceed the
    /// estimate (announced as `stream_state`, resumed after a probe finds room). Off by
    /// default: every subscription keeps flowing at its lowest layer; single-layer tracks are
    /// never paused either way (docs/congestion.md).
    pub congestion_pause: bool,
    /// Packets a second (and at once) each layer of a published audio / video track may have
    /// forwarded; the rest is received and counted (`media_over_budget`), not copied (D123).
    /// Raise the video budget for ingests above ~58 Mbit/s.
    pub audio_packets_per_s: u32,
    pub video_packets_per_s: u32,
    /// The SRTP profiles the DTLS 1.2 server accepts, most preferred first (DTLS 1.3 clients
    /// get dimpl's fixed order).
    pub srtp_profiles: SrtpProfiles,
    /// The cluster secret trunks (cascade) derive their SRTP keys from: a file of at least 32
    /// bytes, the same on every node and readable only by the dataplane. Absent: only
    /// `trusted` (plain RTP) trunks can be created.
    pub trunk_secret_file: Option<PathBuf>,
}

/// A configuration error, naming the key.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{key}: {message}")]
pub struct ConfigError {
    /// The key, as written in the file (`dataplane.port`), env (`SLUICE_DATAPLANE_PORT`) or
    /// flag (`--port`).
    pub key: String,
    pub message: String,
}

impl ConfigError {
    fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            message: message.into(),
        }
    }
}

/// The keys of `[dataplane]`, their env var and flag names.
const KEYS: &[(&str, &str, &str)] = &[
    ("workers", "SLUICE_DATAPLANE_WORKERS", "--workers"),
    ("bind", "SLUICE_DATAPLANE_BIND", "--bind"),
    ("port", "SLUICE_DATAPLANE_PORT", "--port"),
    (
        "port_per_worker",
        "SLUICE_DATAPLANE_PORT_PER_WORKER",
        "--port-per-worker",
    ),
    ("announce", "SLUICE_DATAPLANE_ANNOUNCE", "--announce"),
    (
        "control_socket",
        "SLUICE_DATAPLANE_CONTROL_SOCKET",
        "--control-socket",
    ),
    (
        "buffers_per_worker",
        "SLUICE_DATAPLANE_BUFFERS_PER_WORKER",
        "--buffers-per-worker",
    ),
    ("io", "SLUICE_IO", "--io"),
    (
        "recv_buffer_bytes",
        "SLUICE_DATAPLANE_RECV_BUFFER_BYTES",
        "--recv-buffer-bytes",
    ),
    (
        "send_buffer_bytes",
        "SLUICE_DATAPLANE_SEND_BUFFER_BYTES",
        "--send-buffer-bytes",
    ),
    ("gso", "SLUICE_DATAPLANE_GSO", "--gso"),
    ("cert", "SLUICE_DATAPLANE_CERT", "--cert"),
    ("key", "SLUICE_DATAPLANE_KEY", "--key"),
    (
        "stats_interval_ms",
        "SLUICE_DATAPLANE_STATS_INTERVAL_MS",
        "--stats-interval-ms",
    ),
    ("ice_tcp", "SLUICE_DATAPLANE_ICE_TCP", "--ice-tcp"),
    ("tcp_port", "SLUICE_DATAPLANE_TCP_PORT", "--tcp-port"),
    (
        "tcp_max_connections",
        "SLUICE_DATAPLANE_TCP_MAX_CONNECTIONS",
        "--tcp-max-connections",
    ),
    (
        "tcp_send_queue_bytes",
        "SLUICE_DATAPLANE_TCP_SEND_QUEUE_BYTES",
        "--tcp-send-queue-bytes",
    ),
    (
        "tcp_stun_timeout_ms",
        "SLUICE_DATAPLANE_TCP_STUN_TIMEOUT_MS",
        "--tcp-stun-timeout-ms",
    ),
    (
        "tcp_idle_timeout_ms",
        "SLUICE_DATAPLANE_TCP_IDLE_TIMEOUT_MS",
        "--tcp-idle-timeout-ms",
    ),
    (
        "congestion_pause",
        "SLUICE_DATAPLANE_CONGESTION_PAUSE",
        "--congestion-pause",
    ),
    (
        "audio_packets_per_s",
        "SLUICE_DATAPLANE_AUDIO_PACKETS_PER_S",
        "--audio-packets-per-s",
    ),
    (
        "video_packets_per_s",
        "SLUICE_DATAPLANE_VIDEO_PACKETS_PER_S",
        "--video-packets-per-s",
    ),
    (
        "srtp_profiles",
        "SLUICE_DATAPLANE_SRTP_PROFILES",
        "--srtp-profiles",
    ),
    (
        "trunk_secret_file",
        "SLUICE_DATAPLANE_TRUNK_SECRET_FILE",
        "--trunk-secret-file",
    ),
];

impl Config {
    /// Defaults: a worker on every online core, all addresses, UDP 7882.
    pub fn defaults(online_cores: usize) -> Self {
        Self {
            workers: (0..online_cores.max(1)).collect(),
            bind: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            port: 7882,
            port_per_worker: false,
            announce: Vec::new(),
            control_socket: default_control_socket(),
            // 32 MiB of 2 KiB buffers: a 25-packet keyframe to ~650 subscribers of one worker
            // while the pacers drain (the receive loop drains them early below a quarter free).
            buffers_per_worker: 16_384,
            io: IoChoice::Auto,
            recv_buffer_bytes: 4 << 20,
            send_buffer_bytes: 4 << 20,
            gso: true,
            cert: None,
            key: None,
            stats_interval_ms: 1000,
            ice_tcp: true,
            tcp_port: None,
            tcp_max_connections: 1024,
            tcp_send_queue_bytes: 256 << 10,
            tcp_stun_timeout_ms: 5_000,
            tcp_idle_timeout_ms: 30_000,
            congestion_pause: false,
            audio_packets_per_s: rtp_core::session::AUDIO_PACKETS_PER_S,
            video_packets_per_s: rtp_core::session::VIDEO_PACKETS_PER_S,
            srtp_profiles: SrtpProfiles::default(),
            trunk_secret_file: None,
        }
    }

    /// Build from (in increasing precedence) defaults, a TOML document, environment variables
    /// and flags. `env` yields (name, value) pairs; `flags` are `--name value` or `--name=value`.
    pub fn load(
        online_cores: usize,
        toml_text: Option<&str>,
        env: impl IntoIterator<Item = (String, String)>,
        flags: &[String],
    ) -> Result<Self, ConfigError> {
        let mut cfg = Self::defaults(online_cores);
        if let Some(text) = toml_text {
            cfg.apply_toml(text)?;
        }
        for (name, value) in env {
            if let Some(&(key, env_name, _)) = KEYS.iter().find(|k| k.1 == name) {
                cfg.set(key, &Raw::Str(value), env_name)?;
            }
        }
        cfg.apply_flags(flags)?;
        cfg.validate(online_cores)?;
        Ok(cfg)
    }

    fn apply_toml(&mut self, text: &str) -> Result<(), ConfigError> {
        let doc: toml::Table = text.parse().map_err(|e: toml::de::Error| {
            ConfigError::new("config file", e.message().to_string())
        })?;
        let Some(section) = doc.get("dataplane") else {
            return Ok(());
        };
        let table = section
            .as_table()
            .ok_or_else(|| ConfigError::new("dataplane", "expected a table"))?;
        for (k, v) in table {
            let full = format!("dataplane.{k}");
            if !KEYS.iter().any(|key| key.0 == k) {
                return Err(ConfigError::new(full, "unknown key"));
            }
            self.set(k, &Raw::Toml(v.clone()), &full)?;
        }
        Ok(())
    }

    fn apply_flags(&mut self, flags: &[String]) -> Result<(), ConfigError> {
        let mut announce_from_flags = false;
        let mut i = 0;
        while i < flags.len() {
            let arg = &flags[i];
            let (name, inline) = match arg.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (arg.as_str(), None),
            };
            let Some(&(key, _, flag)) = KEYS.iter().find(|k| k.2 == name) else {
                return Err(ConfigError::new(name, "unknown flag"));
            };
            let value = match inline {
                Some(v) => v,
                None => {
                    i += 1;
                    flags
                        .get(i)
                        .cloned()
                        .ok_or_else(|| ConfigError::new(flag, "expects a value"))?
                }
            };
            if key == "announce" {
                // Repeated --announce flags add up; the first one replaces file/env values.
                let before = if announce_from_flags {
                    std::mem::take(&mut self.announce)
                } else {
                    Vec::new()
                };
                announce_from_flags = true;
                self.set(key, &Raw::Str(value), flag)?;
                let mut all = before;
                all.append(&mut self.announce);
                self.announce = all;
            } else {
                self.set(key, &Raw::Str(value), flag)?;
            }
            i += 1;
        }
        Ok(())
    }

    /// Set one key from a TOML value or a string (env/flag); `name` is what errors quote.
    fn set(&mut self, key: &str, raw: &Raw, name: &str) -> Result<(), ConfigError> {
        match key {
            "workers" => {
                self.workers =
                    parse_cores(&raw.string(name)?).map_err(|m| ConfigError::new(name, m))?
            }
            "bind" => {
                let s = raw.string(name)?;
                self.bind = s.parse().map_err(|_| {
                    ConfigError::new(name, format!("expected an IP address, got {s:?}"))
                })?;
            }
            "port" => self.port = raw.uint(name, 1, u64::from(u16::MAX))? as u16,
            "port_per_worker" => self.port_per_worker = raw.boolean(name)?,
            "gso" => self.gso = raw.boolean(name)?,
            "congestion_pause" => self.congestion_pause = raw.boolean(name)?,
            "audio_packets_per_s" => {
                self.audio_packets_per_s = raw.uint(name, 100, 100_000)? as u32
            }
            "video_packets_per_s" => {
                self.video_packets_per_s = raw.uint(name, 1_000, 1_000_000)? as u32
            }
            "announce" => {
                let items = raw.list(name)?;
                self.announce = items
                    .iter()
                    .map(|s| {
                        s.parse::<SocketAddr>().map_err(|_| {
                            ConfigError::new(
                                name,
                                format!("expected ip:port (IPv6 as [addr]:port), got {s:?}"),
                            )
                        })
                    })
                    .collect::<Result<_, _>>()?;
            }
            "control_socket" => self.control_socket = PathBuf::from(raw.string(name)?),
            "buffers_per_worker" => {
                self.buffers_per_worker = raw.uint(name, 256, u64::from(u16::MAX))? as usize
            }
            "io" => {
                self.io = match raw.string(name)?.as_str() {
                    "auto" => IoChoice::Auto,
                    "uring" | "io_uring" => IoChoice::Uring,
                    "socket" => IoChoice::Socket,
                    other => {
                        return Err(ConfigError::new(
                            name,
                            format!("expected one of auto, uring, socket; got {other:?}"),
                        ))
                    }
                }
            }
            "recv_buffer_bytes" => {
                self.recv_buffer_bytes = raw.uint(name, 65_536, 1 << 31)? as usize
            }
            "send_buffer_bytes" => {
                self.send_buffer_bytes = raw.uint(name, 65_536, 1 << 31)? as usize
            }
            "cert" => self.cert = Some(PathBuf::from(raw.string(name)?)),
            "key" => self.key = Some(PathBuf::from(raw.string(name)?)),
            "trunk_secret_file" => self.trunk_secret_file = Some(PathBuf::from(raw.string(name)?)),
            "stats_interval_ms" => self.stats_interval_ms = raw.uint(name, 100, 3_600_000)?,
            "ice_tcp" => self.ice_tcp = raw.boolean(name)?,
            "tcp_port" => self.tcp_port = Some(raw.uint(name, 1, u64::from(u16::MAX))? as u16),
            "tcp_max_connections" => self.tcp_max_connections = raw.uint(name, 1, 65_536)? as usize,
            "tcp_send_queue_bytes" => {
                self.tcp_send_queue_bytes = raw.uint(name, 16_384, 64 << 20)? as usize
            }
            "tcp_stun_timeout_ms" => self.tcp_stun_timeout_ms = raw.uint(name, 100, 60_000)?,
            "tcp_idle_timeout_ms" => self.tcp_idle_timeout_ms = raw.uint(name, 1_000, 3_600_000)?,
            "srtp_profiles" => {
                let names = raw.list(name)?;
                let profiles = names
                    .iter()
                    .map(|n| {
                        ProtectionProfile::from_name(n).ok_or_else(|| {
                            ConfigError::new(
                                name,
                                format!(
                                    "unknown SRTP profile {n:?}; expected SRTP_AEAD_AES_128_GCM, \
                                     SRTP_AEAD_AES_256_GCM, SRTP_AES128_CM_HMAC_SHA1_80 or \
                                     SRTP_AES128_CM_HMAC_SHA1_32"
                                ),
                            )
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                self.srtp_profiles = SrtpProfiles::new(&profiles).map_err(|_| {
                    ConfigError::new(name, "expected 1 to 4 distinct SRTP profiles")
                })?;
            }
            _ => return Err(ConfigError::new(name, "unknown key")),
        }
        Ok(())
    }

    /// Checks across keys.
    fn validate(&self, online_cores: usize) -> Result<(), ConfigError> {
        if let Some(&c) = self.workers.iter().find(|&&c| c >= online_cores.max(1)) {
            return Err(ConfigError::new(
                "dataplane.workers",
                format!(
                    "core {c} is not online (this host has cores 0-{})",
                    online_cores.max(1) - 1
                ),
            ));
        }
        if self.port_per_worker && usize::from(self.port) + self.workers.len() > 65_536 {
            return Err(ConfigError::new(
                "dataplane.port",
                "port + number of workers runs past 65535 with port_per_worker",
            ));
        }
        if self.cert.is_some() != self.key.is_some() {
            return Err(ConfigError::new(
                if self.cert.is_some() {
                    "dataplane.key"
                } else {
                    "dataplane.cert"
                },
                "cert and key must be given together",
            ));
        }
        Ok(())
    }

    /// The port worker `i` listens on.
    pub fn worker_port(&self, i: usize) -> u16 {
        if self.port_per_worker {
            self.port + i as u16
        } else {
            self.port
        }
    }
}

/// A value from the TOML file or a string from env/flags.
enum Raw {
    Toml(toml::Value),
    Str(String),
}

impl Raw {
    fn string(&self, name: &str) -> Result<String, ConfigError> {
        match self {
            Raw::Str(s) => Ok(s.clone()),
            Raw::Toml(toml::Value::String(s)) => Ok(s.clone()),
            // `workers = 3` or `workers = [0, 1]` read naturally too.
            Raw::Toml(toml::Value::Integer(i)) => Ok(i.to_string()),
            Raw::Toml(toml::Value::Array(a)) if a.iter().all(|v| v.is_integer()) => Ok(a
                .iter()
                .map(|v| v.to_string())
                .collect::<Vec<_>>()
                .join(",")),
            Raw::Toml(v) => Err(ConfigError::new(
                name,
                format!("expected a string, got {}", v.type_str()),
            )),
        }
    }

    fn uint(&self, name: &str, min: u64, max: u64) -> Result<u64, ConfigError> {
        let n = match self {
            Raw::Toml(toml::Value::Integer(i)) => u64::try_from(*i).ok(),
            Raw::Str(s) => s.trim().parse::<u64>().ok(),
            Raw::Toml(_) => None,
        };
        match n {
            Some(n) if (min..=max).contains(&n) => Ok(n),
            _ => Err(ConfigError::new(
                name,
                format!(
                    "expected an integer in {min}..={max}, got {}",
                    self.describe()
                ),
            )),
        }
    }

    fn boolean(&self, name: &str) -> Result<bool, ConfigError> {
        match self {
            Raw::Toml(toml::Value::Boolean(b)) => Ok(*b),
            Raw::Str(s) if matches!(s.as_str(), "true" | "1" | "yes" | "on") => Ok(true),
            Raw::Str(s) if matches!(s.as_str(), "false" | "0" | "no" | "off") => Ok(false),
            _ => Err(ConfigError::new(
                name,
                format!("expected true or false, got {}", self.describe()),
            )),
        }
    }

    /// A list: a TOML array of strings, or a comma-separated string.
    fn list(&self, name: &str) -> Result<Vec<String>, ConfigError> {
        match self {
            Raw::Toml(toml::Value::Array(a)) => a
                .iter()
                .map(|v| {
                    v.as_str().map(str::to_string).ok_or_else(|| {
                        ConfigError::new(name, format!("expected strings, got {}", v.type_str()))
                    })
                })
                .collect(),
            Raw::Toml(toml::Value::String(s)) | Raw::Str(s) => Ok(s
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()),
            Raw::Toml(v) => Err(ConfigError::new(
                name,
                format!("expected a list, got {}", v.type_str()),
            )),
        }
    }

    fn describe(&self) -> String {
        match self {
            Raw::Str(s) => format!("{s:?}"),
            Raw::Toml(v) => v.to_string(),
        }
    }
}

/// Parse a core list: `"2-5"`, `"0,2,4"`, `"0-1,4"`. Order is kept (it is the worker order);
/// duplicates are an error.
pub fn parse_cores(s: &str) -> Result<Vec<usize>, String> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (lo, hi) = match part.split_once('-') {
            Some((a, b)) => (a.trim(), b.trim()),
            None => (part, part),
        };
        let lo: usize = lo
            .parse()
            .map_err(|_| format!("bad core number {lo:?} in {s:?}"))?;
        let hi: usize = hi
            .parse()
            .map_err(|_| format!("bad core number {hi:?} in {s:?}"))?;
        if hi < lo || hi - lo > 4096 {
            return Err(format!("bad core range {part:?}"));
        }
        for c in lo..=hi {
            if out.contains(&c) {
                return Err(format!("core {c} listed twice"));
            }
            out.push(c);
        }
    }
    if out.is_empty() {
        return Err(format!(
            "expected a core list like \"0-3\" or \"2,3\", got {s:?}"
        ));
    }
    Ok(out)
}

fn default_control_socket() -> PathBuf {
    crate::proto::default_control_socket()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(
        toml: Option<&str>,
        env: &[(&str, &str)],
        flags: &[&str],
    ) -> Result<Config, ConfigError> {
        Config::load(
            4,
            toml,
            env.iter().map(|(a, b)| (a.to_string(), b.to_string())),
            &flags.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        )
    }

    #[test]
    fn defaults_use_every_core_and_port_7882() {
        let c = load(None, &[], &[]).unwrap();
        assert_eq!(c.workers, vec![0, 1, 2, 3]);
        assert_eq!(c.port, 7882);
        assert_eq!(c.io, IoChoice::Auto);
    }

    #[test]
    fn file_env_flags_layer_in_order() {
        let toml = "[dataplane]\nworkers = \"1-2\"\nport = 9000\nannounce = [\"203.0.113.7:9000\", \"[2001:db8::1]:9000\"]\n";
        let c = load(Some(toml), &[], &[]).unwrap();
        assert_eq!(c.workers, vec![1, 2]);
        assert_eq!(c.port, 9000);
        assert_eq!(c.announce.len(), 2);
        let c = load(Some(toml), &[("SLUICE_DATAPLANE_PORT", "9100")], &[]).unwrap();
        assert_eq!(c.port, 9100);
        let c = load(
            Some(toml),
            &[("SLUICE_DATAPLANE_PORT", "9100")],
            &["--port", "9200", "--workers=3"],
        )
        .unwrap();
        assert_eq!((c.port, c.workers.clone()), (9200, vec![3]));
        let c = load(
            Some(toml),
            &[],
            &[
                "--announce",
                "198.51.100.1:1",
                "--announce",
                "198.51.100.2:2",
            ],
        )
        .unwrap();
        assert_eq!(c.announce.len(), 2);
        assert_eq!(c.announce[1].port(), 2);
    }

    #[test]
    fn srtp_profiles_from_file_env_and_flags() {
        use rtp_core::srtp::ProtectionProfile::*;
        let c = load(None, &[], &[]).unwrap();
        assert_eq!(c.srtp_profiles.as_slice()[0], AeadAes128Gcm);
        let toml = "[dataplane]\nsrtp_profiles = [\"SRTP_AES128_CM_HMAC_SHA1_80\", \"aead_aes_128_gcm\"]\n";
        let c = load(Some(toml), &[], &[]).unwrap();
        assert_eq!(
            c.srtp_profiles.as_slice(),
            &[Aes128CmHmacSha1_80, AeadAes128Gcm]
        );
        let c = load(
            None,
            &[("SLUICE_DATAPLANE_SRTP_PROFILES", "aead_aes_256_gcm")],
            &[],
        )
        .unwrap();
        assert_eq!(c.srtp_profiles.as_slice(), &[AeadAes256Gcm]);
        let c = load(None, &[], &["--srtp-profiles", "aes128_cm_hmac_sha1_80"]).unwrap();
        assert_eq!(c.srtp_profiles.as_slice(), &[Aes128CmHmacSha1_80]);
        let e = load(Some("[dataplane]\nsrtp_profiles = [\"rot13\"]\n"), &[], &[]).unwrap_err();
        assert_eq!(e.key, "dataplane.srtp_profiles");
        assert!(e.message.contains("rot13"), "{}", e.message);
        let e = load(Some("[dataplane]\nsrtp_profiles = []\n"), &[], &[]).unwrap_err();
        assert_eq!(e.key, "dataplane.srtp_profiles");
    }

    /// D123's packet budgets: defaults, file, env, flag, and bounds that name the key.
    #[test]
    fn media_budgets_from_file_env_and_flags() {
        let c = load(None, &[], &[]).unwrap();
        assert_eq!((c.audio_packets_per_s, c.video_packets_per_s), (200, 6_000));
        let toml = "[dataplane]\naudio_packets_per_s = 300\nvideo_packets_per_s = 12000\n";
        let c = load(Some(toml), &[], &[]).unwrap();
        assert_eq!(
            (c.audio_packets_per_s, c.video_packets_per_s),
            (300, 12_000)
        );
        let env = [("SLUICE_DATAPLANE_VIDEO_PACKETS_PER_S", "20000")];
        let c = load(Some(toml), &env, &["--audio-packets-per-s", "500"]).unwrap();
        assert_eq!(
            (c.audio_packets_per_s, c.video_packets_per_s),
            (500, 20_000)
        );
        let e = load(Some("[dataplane]\naudio_packets_per_s = 10\n"), &[], &[]).unwrap_err();
        assert_eq!(e.key, "dataplane.audio_packets_per_s");
        let e = load(None, &[], &["--video-packets-per-s", "0"]).unwrap_err();
        assert_eq!(e.key, "--video-packets-per-s");
    }

    #[test]
    fn errors_name_the_key() {
        let e = load(Some("[dataplane]\nport = \"x\"\n"), &[], &[]).unwrap_err();
        assert_eq!(e.key, "dataplane.port");
        let e = load(Some("[dataplane]\nprot = 1\n"), &[], &[]).unwrap_err();
        assert_eq!(
            (e.key.as_str(), e.message.as_str()),
            ("dataplane.prot", "unknown key")
        );
        let e = load(None, &[("SLUICE_IO", "fast")], &[]).unwrap_err();
        assert_eq!(e.key, "SLUICE_IO");
        let e = load(None, &[], &["--workers", "7"]).unwrap_err();
        assert_eq!(e.key, "dataplane.workers");
        let e = load(None, &[], &["--announce", "1.2.3.4"]).unwrap_err();
        assert_eq!(e.key, "--announce");
        let e = load(None, &[], &["--nope", "1"]).unwrap_err();
        assert_eq!(e.key, "--nope");
        let e = load(Some("[dataplane]\ncert = \"c.pem\"\n"), &[], &[]).unwrap_err();
        assert_eq!(e.key, "dataplane.key");
        let e = load(Some("port = ["), &[], &[]).unwrap_err();
        assert_eq!(e.key, "config file");
        assert!(e.to_string().starts_with("config file: "));
    }

    #[test]
    fn core_lists() {
        assert_eq!(parse_cores("2-5").unwrap(), vec![2, 3, 4, 5]);
        assert!(parse_cores("3,1, 0-1x").is_err());
        assert_eq!(parse_cores("3,1").unwrap(), vec![3, 1]);
        assert!(parse_cores("1,1").is_err());
        assert!(parse_cores("").is_err());
        assert!(parse_cores("5-2").is_err());
    }
}
