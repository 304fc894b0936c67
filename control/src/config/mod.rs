//! The control daemon's configuration: the `[control]` table of `sluice.toml`, then
//! `SLUICE_CONTROL_*` environment variables, then `sluice up` flags (each overrides the one
//! before). Every error names the key (`control.http: expected ip:port, got "x"`). Of the
//! `[dataplane]` table only `control_socket` (and `SLUICE_DATAPLANE_CONTROL_SOCKET`) is read
//! here, to find the dataplane; the file is passed through to `sluice-dataplane`, which
//! checks the rest.
//! `[hybrid]` (P2P/SFU policy, docs/api.md "Hybrid") and `[turn]` (TURN REST credentials)
//! (and `[cluster]`, `crate::cluster`) are read the same way: `SLUICE_HYBRID_<KEY>` / `SLUICE_TURN_<KEY>` and
//! `--hybrid-<key>` / `--turn-<key>` override the file.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use crate::cluster::{ClusterConfig, ClusterDraft, CLUSTER_KEYS};
use crate::hybrid::turn::TurnConfig;
use crate::hybrid::{HybridConfig, Strategy};
use crate::limits::{self, Limits};
use crate::room::{Lifetimes, QualityTier, RoomMode, TierTable};

mod values;

/// The validated `[control]` configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlConfig {
    /// HTTP/WebSocket listen address.
    pub http: SocketAddr,
    /// API key → secret. Empty: a dev pair is generated at first start and kept in the state
    /// directory.
    pub api_keys: BTreeMap<String, String>,
    /// Where rooms, participants and media state are persisted.
    pub state_file: PathBuf,
    /// Webhook receivers (`http://` or `https://host:port/path`).
    pub webhooks: Vec<String>,
    /// Signs webhooks; required when `webhooks` is set, at least 16 characters, and not an API
    /// secret (a receiver must not be able to mint tokens).
    pub webhook_secret: Option<String>,
    /// Extra PEM trust roots for https receivers, beside the system's.
    pub webhook_ca_file: Option<PathBuf>,
    /// Controllers admitted per room.
    pub max_controllers: u32,
    /// Rooms are created on first join.
    pub auto_create: bool,
    pub tiers: TierTable,
    /// The `sluice-dataplane` executable; `None`: next to the running `sluice`.
    pub dataplane_bin: Option<PathBuf>,
    /// Don't spawn a dataplane (one is run separately); still connect to its socket.
    pub external_dataplane: bool,
    /// The dataplane's control socket: `dataplane.control_socket`, else
    /// `SLUICE_DATAPLANE_CONTROL_SOCKET`, else [`sluice_proto::default_control_socket`].
    pub dataplane_socket: PathBuf,
    /// Seconds a drain waits for rooms to empty before the daemon stops anyway.
    pub drain_deadline_s: u64,
    /// Serve `GET /dev/token` (tokens for anyone who asks). `None`: only while running on the
    /// generated dev key, i.e. when `api_keys` is empty.
    pub dev_tokens: Option<bool>,
    /// `[hybrid]`: the P2P/SFU policy (validated: `hybrid.sfu_at must be > hybrid.p2p_at`...).
    pub hybrid: HybridConfig,
    /// `[turn]`: `None` unless a secret and URLs are configured.
    pub turn: Option<TurnConfig>,
    /// `kick_ban_s`, `oneshot_grace_s`, `resume_grace_s` (seconds).
    pub lifetimes: Lifetimes,
    /// Events each room keeps for SSE replay (`Last-Event-ID`); memory is at most this many
    /// events times 4,096 room backlogs.
    pub sse_backlog_per_room: usize,
    /// `[limits]`: bounds on what clients can make the daemon hold (docs/security.md).
    pub limits: Limits,
    /// `[cluster]`: `None` (the default) is a single node without Redis.
    pub cluster: Option<ClusterConfig>,
}

/// A configuration error naming its key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {message}")]
pub struct ConfigError {
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

const KEYS: &[&str] = &[
    "http",
    "api_keys",
    "state_file",
    "webhooks",
    "webhook_secret",
    "webhook_ca_file",
    "max_controllers",
    "auto_create",
    "tiers",
    "dataplane_bin",
    "external_dataplane",
    "drain_deadline_s",
    "dev_tokens",
    "kick_ban_s",
    "oneshot_grace_s",
    "resume_grace_s",
    "sse_backlog_per_room",
];

impl Default for ControlConfig {
    fn default() -> Self {
        Self {
            http: SocketAddr::from(([127, 0, 0, 1], 7880)),
            api_keys: BTreeMap::new(),
            state_file: PathBuf::from("./.sluice/state.json"),
            webhooks: Vec::new(),
            webhook_secret: None,
            webhook_ca_file: None,
            max_controllers: 3,
            auto_create: true,
            tiers: TierTable::default(),
            dataplane_bin: None,
            external_dataplane: false,
            dataplane_socket: sluice_proto::default_control_socket(),
            drain_deadline_s: 3600,
            dev_tokens: None,
            hybrid: HybridConfig::default(),
            turn: None,
            lifetimes: Lifetimes::default(),
            sse_backlog_per_room: 256,
            limits: Limits::default(),
            cluster: None,
        }
    }
}

const HYBRID_KEYS: &[&str] = &[
    "default_mode",
    "sfu_at",
    "p2p_at",
    "prewarm_at",
    "p2p_limit",
    "cooldown_ms",
    "strategy",
    "ack_retry_ms",
    "migration_timeout_ms",
    "grace_ms",
];

const TURN_KEYS: &[&str] = &["urls", "secret", "ttl_s", "relay_ips"];
/// `turn.ttl_s` unless set: an hour (security review #30: a leaked credential is a relay for
/// that long). Connected clients get fresh ones at half of it (`ice_servers`).
pub const DEFAULT_TURN_TTL_S: u64 = 3_600;

/// `[turn]` as read, before the check that it is complete.
#[derive(Debug, Default)]
struct TurnDraft {
    urls: Option<Vec<String>>,
    secret: Option<String>,
    ttl_s: Option<u64>,
    relay_ips: Vec<std::net::IpAddr>,
}

impl ControlConfig {
    /// Defaults, then the `[control]` table of `toml_text`, then env, then `--key value` flags
    /// (`--http`, `--state-file`, `--dataplane-bin`, `--max-controllers`, `--external-dataplane`).
    pub fn load(
        toml_text: Option<&str>,
        env: impl IntoIterator<Item = (String, String)>,
        flags: &[String],
    ) -> Result<Self, ConfigError> {
        let mut cfg = Self::default();
        let mut turn = TurnDraft::default();
        // The socket's default lives in the state directory, known only once everything is read.
        let mut socket_set = false;
        let mut cluster = ClusterDraft::default();
        if let Some(text) = toml_text {
            let doc: toml::Table = text
                .parse()
                .map_err(|e: toml::de::Error| ConfigError::new("config file", e.message()))?;
            for key in doc.keys() {
                if ![
                    "control",
                    "dataplane",
                    "hybrid",
                    "turn",
                    "limits",
                    "cluster",
                ]
                .contains(&key.as_str())
                {
                    return Err(ConfigError::new(key.clone(), "unknown table"));
                }
            }
            for (name, keys) in [
                ("hybrid", HYBRID_KEYS),
                ("turn", TURN_KEYS),
                ("limits", limits::KEYS),
                ("cluster", CLUSTER_KEYS),
            ] {
                let Some(section) = doc.get(name) else {
                    continue;
                };
                let table = section
                    .as_table()
                    .ok_or_else(|| ConfigError::new(name, "expected a table"))?;
                for (k, v) in table {
                    let full = format!("{name}.{k}");
                    if !keys.contains(&k.as_str()) {
                        return Err(ConfigError::new(full, "unknown key"));
                    }
                    let text = match v {
                        toml::Value::String(s) => s.clone(),
                        toml::Value::Integer(n) => n.to_string(),
                        toml::Value::Array(a)
                            if full == "turn.urls" || full == "turn.relay_ips" =>
                        {
                            let mut urls = Vec::new();
                            for (i, u) in a.iter().enumerate() {
                                let u = u.as_str().ok_or_else(|| {
                                    ConfigError::new(format!("{full}[{i}]"), "expected a string")
                                })?;
                                urls.push(u.to_owned());
                            }
                            urls.join(",")
                        }
                        _ => return Err(ConfigError::new(full, "expected a string or an integer")),
                    };
                    if name == "cluster" {
                        cluster
                            .set(k, &text)
                            .map_err(|m| ConfigError::new(&full, m))?;
                        continue;
                    }
                    cfg.apply_section(name, k, &text, &full, &mut turn)?;
                }
            }
            if let Some(socket) = doc
                .get("dataplane")
                .and_then(|d| d.as_table())
                .and_then(|t| t.get("control_socket"))
            {
                let path = socket.as_str().ok_or_else(|| {
                    ConfigError::new("dataplane.control_socket", "expected a string")
                })?;
                cfg.dataplane_socket = PathBuf::from(path);
                socket_set = true;
            }
            if let Some(section) = doc.get("control") {
                let table = section
                    .as_table()
                    .ok_or_else(|| ConfigError::new("control", "expected a table"))?;
                for (k, v) in table {
                    cfg.apply_toml(k, v)?;
                }
            }
        }
        for (name, value) in env {
            if name == "SLUICE_DATAPLANE_CONTROL_SOCKET" {
                cfg.dataplane_socket = PathBuf::from(value);
                socket_set = true;
                continue;
            }
            if let Some(key) = name.strip_prefix("SLUICE_CLUSTER_") {
                let key = key.to_ascii_lowercase();
                cluster
                    .set(&key, &value)
                    .map_err(|m| ConfigError::new(&name, m))?;
                continue;
            }
            if let Some((section, key)) = name
                .strip_prefix("SLUICE_HYBRID_")
                .map(|k| ("hybrid", k))
                .or_else(|| name.strip_prefix("SLUICE_TURN_").map(|k| ("turn", k)))
                .or_else(|| name.strip_prefix("SLUICE_LIMITS_").map(|k| ("limits", k)))
            {
                let key = key.to_ascii_lowercase();
                cfg.apply_section(section, &key, &value, &name, &mut turn)?;
                continue;
            }
            let Some(key) = name.strip_prefix("SLUICE_CONTROL_") else {
                continue;
            };
            let key = key.to_ascii_lowercase();
            if KEYS.contains(&key.as_str()) {
                cfg.apply_str(&key, &value, &name)?;
            }
        }
        let mut i = 0;
        while i < flags.len() {
            let (name, inline) = match flags[i].split_once('=') {
                Some((n, v)) => (n.to_owned(), Some(v.to_owned())),
                None => (flags[i].clone(), None),
            };
            if let Some(key) = name.strip_prefix("--cluster-") {
                let value = match inline {
                    Some(v) => v,
                    None => {
                        i += 1;
                        flags
                            .get(i)
                            .cloned()
                            .ok_or_else(|| ConfigError::new(&name, "expects a value"))?
                    }
                };
                cluster
                    .set(&key.replace('-', "_"), &value)
                    .map_err(|m| ConfigError::new(&name, m))?;
                i += 1;
                continue;
            }
            let section = name
                .strip_prefix("--hybrid-")
                .map(|k| ("hybrid", k))
                .or_else(|| name.strip_prefix("--turn-").map(|k| ("turn", k)))
                .or_else(|| name.strip_prefix("--limits-").map(|k| ("limits", k)));
            if let Some((section, key)) = section {
                let value = match inline {
                    Some(v) => v,
                    None => {
                        i += 1;
                        flags
                            .get(i)
                            .cloned()
                            .ok_or_else(|| ConfigError::new(&name, "expects a value"))?
                    }
                };
                cfg.apply_section(section, &key.replace('-', "_"), &value, &name, &mut turn)?;
                i += 1;
                continue;
            }
            let key = name
                .strip_prefix("--")
                .map(|k| k.replace('-', "_"))
                .filter(|k| KEYS.contains(&k.as_str()))
                .ok_or_else(|| ConfigError::new(&name, "unknown flag"))?;
            if key == "api_keys" {
                // A flag's value is in /proc/*/cmdline for every local user to read.
                return Err(ConfigError::new(
                    &name,
                    "secrets on the command line are readable by every local user; use the config file or SLUICE_CONTROL_API_KEYS",
                ));
            }
            if key == "external_dataplane" && inline.is_none() {
                cfg.external_dataplane = true;
                i += 1;
                continue;
            }
            let value = match inline {
                Some(v) => v,
                None => {
                    i += 1;
                    flags
                        .get(i)
                        .cloned()
                        .ok_or_else(|| ConfigError::new(&name, "expects a value"))?
                }
            };
            cfg.apply_str(&key, &value, &name)?;
            i += 1;
        }
        cfg.hybrid
            .validate()
            .map_err(|(key, m)| ConfigError::new(format!("hybrid.{key}"), m))?;
        cfg.turn = turn.finish()?;
        cfg.cluster = cluster
            .finish()
            .map_err(|(key, m)| ConfigError::new(key, m))?;
        cfg.check_webhooks()?;
        if !socket_set {
            cfg.dataplane_socket = sluice_proto::default_control_socket_in(cfg.state_file.parent());
        }
        cfg.check_exposure()?;
        Ok(cfg)
    }

    /// `webhook_secret`: set when webhooks are, long enough, and no API key's secret.
    fn check_webhooks(&self) -> Result<(), ConfigError> {
        let key = "control.webhook_secret";
        match &self.webhook_secret {
            None if !self.webhooks.is_empty() => Err(ConfigError::new(
                key,
                "required when control.webhooks is set (it signs them; API secrets do not)",
            )),
            Some(s) if s.len() < 16 => Err(ConfigError::new(key, "must be at least 16 characters")),
            Some(s) if self.api_keys.values().any(|k| k == s) => Err(ConfigError::new(
                key,
                "must differ from every API secret (a webhook receiver could mint tokens)",
            )),
            _ => Ok(()),
        }
    }

    /// Whether `GET /dev/token` is served: as set, else only on the generated dev key.
    /// Automatic only on a loopback bind (finding #5): a node others can reach never hands out
    /// tokens unless `dev_tokens = true` says so.
    pub fn dev_tokens_enabled(&self) -> bool {
        self.dev_tokens
            .unwrap_or(self.api_keys.is_empty() && self.http.ip().is_loopback())
    }

    /// A node reachable from other hosts needs API keys: without them it would run on the
    /// generated dev key, which nobody else can mint tokens with, unless dev mode is asked for.
    fn check_exposure(&self) -> Result<(), ConfigError> {
        if self.api_keys.is_empty()
            && !self.http.ip().is_loopback()
            && self.dev_tokens != Some(true)
        {
            return Err(ConfigError::new(
                "control.api_keys",
                format!(
                    "required when control.http ({}) is not a loopback address; set control.dev_tokens = true to run a development node there anyway (anyone who reaches it gets tokens)",
                    self.http
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(toml: &str, flags: &[&str]) -> Result<ControlConfig, ConfigError> {
        let flags: Vec<String> = flags.iter().map(|s| s.to_string()).collect();
        ControlConfig::load(Some(toml), Vec::new(), &flags)
    }

    #[test]
    fn defaults_and_overrides() {
        let c = load("", &[]).unwrap();
        assert_eq!(c.http.to_string(), "127.0.0.1:7880");
        assert_eq!(c.max_controllers, 3);
        let c = load(
            "[control]\nhttp = \"127.0.0.1:9000\"\nmax_controllers = 5\n[control.tiers.viewer]\npriority = 9\n[dataplane]\nport = 1",
            &["--http", "127.0.0.1:9001"],
        )
        .unwrap();
        assert_eq!(c.http.port(), 9001);
        assert_eq!(c.max_controllers, 5);
        assert_eq!(c.tiers.viewer.priority, 9);
    }

    #[test]
    fn dev_mode_is_automatic_only_on_loopback() {
        let e = load("[control]\nhttp = \"0.0.0.0:7880\"", &[]).unwrap_err();
        assert_eq!(e.key, "control.api_keys", "{e}");
        let c = load("[control]\nhttp = \"0.0.0.0:7880\"\ndev_tokens = true", &[]).unwrap();
        assert!(c.dev_tokens_enabled());
        let keyed =
            "[control]\nhttp = \"0.0.0.0:7880\"\n[control.api_keys]\nk = \"0123456789abcdef\"\n";
        assert!(!load(keyed, &[]).unwrap().dev_tokens_enabled());
        assert!(load("", &["--http", "[::1]:7880"])
            .unwrap()
            .dev_tokens_enabled());
    }

    #[test]
    fn api_keys_from_env_or_flags_follow_the_file_rules() {
        let env = |v: &str| vec![("SLUICE_CONTROL_API_KEYS".to_owned(), v.to_owned())];
        for bad in ["k:", "k:short", ":0123456789abcdef"] {
            let e = ControlConfig::load(None, env(bad), &[]).unwrap_err();
            assert_eq!(e.key, "SLUICE_CONTROL_API_KEYS", "{bad}: {e}");
        }
        assert!(ControlConfig::load(None, env("k:0123456789abcdef"), &[]).is_ok());
        let e = load("", &["--api-keys", "k:0123456789abcdef"]).unwrap_err();
        assert_eq!(e.key, "--api-keys", "{e}");
    }

    #[test]
    fn limits_are_read_from_file_env_and_flags() {
        let c = load("[limits]\nws_queue = 9", &["--limits-max-connections", "7"]).unwrap();
        assert_eq!((c.limits.ws_queue, c.limits.max_connections), (9, 7));
        let e = load("[limits]\nws_queue = 0", &[]).unwrap_err();
        assert_eq!(e.key, "limits.ws_queue");
        let e = load("[limits]\nnope = 1", &[]).unwrap_err();
        assert_eq!(e.key, "limits.nope");
    }

    #[test]
    fn dev_tokens_follow_the_dev_key_unless_set() {
        assert!(load("", &[]).unwrap().dev_tokens_enabled());
        let keyed = "[control.api_keys]\nk = \"0123456789abcdef\"\n";
        assert!(!load(keyed, &[]).unwrap().dev_tokens_enabled());
        let forced = format!("[control]\ndev_tokens = true\n{keyed}");
        assert!(load(&forced, &[]).unwrap().dev_tokens_enabled());
        assert!(!load("[control]\ndev_tokens = false", &[])
            .unwrap()
            .dev_tokens_enabled());
        assert_eq!(
            load("[control]\ndev_tokens = 1", &[]).unwrap_err().key,
            "control.dev_tokens"
        );
    }

    #[test]
    fn errors_name_the_key() {
        assert_eq!(
            load("[control]\nhttp = \"nope\"", &[]).unwrap_err().key,
            "control.http"
        );
        assert_eq!(
            load("[control]\nhttp = 5", &[]).unwrap_err().key,
            "control.http"
        );
        assert_eq!(
            load("[control]\ntypo = 5", &[]).unwrap_err().key,
            "control.typo"
        );
        assert_eq!(
            load("[control.api_keys]\nk = \"short\"", &[])
                .unwrap_err()
                .key,
            "control.api_keys.k"
        );
        assert_eq!(
            load("[control]\nwebhooks = [\"ftp://x\"]", &[])
                .unwrap_err()
                .key,
            "control.webhooks[0]"
        );
        assert_eq!(load("", &["--http", "x"]).unwrap_err().key, "--http");
        assert_eq!(load("", &["--bogus"]).unwrap_err().key, "--bogus");
        let env = vec![(
            "SLUICE_CONTROL_MAX_CONTROLLERS".to_string(),
            "x".to_string(),
        )];
        assert_eq!(
            ControlConfig::load(None, env, &[]).unwrap_err().key,
            "SLUICE_CONTROL_MAX_CONTROLLERS"
        );
    }

    #[test]
    fn webhooks_need_their_own_secret() {
        let hooks = "[control]\nwebhooks = [\"https://hooks.example/in\"]\n";
        assert_eq!(load(hooks, &[]).unwrap_err().key, "control.webhook_secret");
        let short = format!("{hooks}webhook_secret = \"short\"\n");
        assert_eq!(load(&short, &[]).unwrap_err().key, "control.webhook_secret");
        let reused = format!(
            "{hooks}webhook_secret = \"0123456789abcdef\"\n[control.api_keys]\nk = \"0123456789abcdef\"\n"
        );
        assert_eq!(
            load(&reused, &[]).unwrap_err().key,
            "control.webhook_secret"
        );
        let ok = format!("{hooks}webhook_secret = \"fedcba9876543210\"\n");
        let c = load(&ok, &[]).unwrap();
        assert_eq!(c.webhooks, vec!["https://hooks.example/in".to_owned()]);
        assert_eq!(c.webhook_secret.as_deref(), Some("fedcba9876543210"));
        let env = vec![(
            "SLUICE_CONTROL_WEBHOOK_SECRET".to_string(),
            "env-secret-0123456789".to_string(),
        )];
        let c = ControlConfig::load(Some(&ok), env, &[]).unwrap();
        assert_eq!(c.webhook_secret.as_deref(), Some("env-secret-0123456789"));
    }

    #[test]
    fn the_dataplane_socket_is_read_from_its_table() {
        let c = load(
            "[dataplane]\ncontrol_socket = \"/run/x.sock\"\nport = 1\n",
            &[],
        )
        .unwrap();
        assert_eq!(c.dataplane_socket, PathBuf::from("/run/x.sock"));
        let env = vec![(
            "SLUICE_DATAPLANE_CONTROL_SOCKET".to_string(),
            "/run/y.sock".to_string(),
        )];
        let c = ControlConfig::load(
            Some("[dataplane]\ncontrol_socket = \"/run/x.sock\""),
            env,
            &[],
        )
        .unwrap();
        assert_eq!(c.dataplane_socket, PathBuf::from("/run/y.sock"));
        assert_eq!(
            load("[dataplane]\ncontrol_socket = 5", &[])
                .unwrap_err()
                .key,
            "dataplane.control_socket"
        );
    }

    #[test]
    fn hybrid_and_turn_tables() {
        let c = load("", &[]).unwrap();
        assert_eq!(c.hybrid, HybridConfig::default());
        assert_eq!(
            c.hybrid.default_mode,
            RoomMode::Sfu,
            "today's behaviour by default"
        );
        assert_eq!(c.turn, None);
        let c = load(
            "[hybrid]\ndefault_mode = \"auto\"\nsfu_at = 4\np2p_at = 2\nprewarm_at = 3\nstrategy = \"hard_cut\"\n[turn]\nurls = [\"turn:127.0.0.1:3478\"]\nsecret = \"s3cret\"\n",
            &["--hybrid-cooldown-ms", "500"],
        )
        .unwrap();
        assert_eq!(c.hybrid.default_mode, RoomMode::Auto);
        assert_eq!((c.hybrid.sfu_at, c.hybrid.p2p_at), (4, 2));
        assert_eq!(c.hybrid.strategy, Strategy::HardCut);
        assert_eq!(c.hybrid.cooldown_ms, 500);
        let turn = c.turn.unwrap();
        assert_eq!(turn.ttl_s, DEFAULT_TURN_TTL_S);
        assert_eq!(turn.urls, vec!["turn:127.0.0.1:3478".to_owned()]);
        let env = vec![
            ("SLUICE_HYBRID_DEFAULT_MODE".to_string(), "p2p".to_string()),
            ("SLUICE_TURN_SECRET".to_string(), "x".to_string()),
            (
                "SLUICE_TURN_URLS".to_string(),
                "turn:a:1,turns:b:2".to_string(),
            ),
        ];
        let c = ControlConfig::load(None, env, &[]).unwrap();
        assert_eq!(c.hybrid.default_mode, RoomMode::P2p);
        assert_eq!(c.turn.unwrap().urls.len(), 2);
    }

    #[test]
    fn hybrid_errors_name_the_key() {
        let e = load("[hybrid]\nsfu_at = 5\n", &[]).unwrap_err();
        assert_eq!(e.key, "hybrid.sfu_at");
        assert!(e.to_string().contains("must be > hybrid.p2p_at"), "{e}");
        assert_eq!(
            load("[hybrid]\nprewarm_at = 9\n", &[]).unwrap_err().key,
            "hybrid.prewarm_at"
        );
        assert_eq!(
            load("[hybrid]\ndefault_mode = \"mesh\"\n", &[])
                .unwrap_err()
                .key,
            "hybrid.default_mode"
        );
        assert_eq!(
            load("[hybrid]\nsfu_at = -1\n", &[]).unwrap_err().key,
            "hybrid.sfu_at"
        );
        assert_eq!(
            load("[hybrid]\ntypo = 1\n", &[]).unwrap_err().key,
            "hybrid.typo"
        );
        assert_eq!(
            load("", &["--hybrid-strategy", "fast"]).unwrap_err().key,
            "--hybrid-strategy"
        );
        assert_eq!(
            load("[turn]\nsecret = \"x\"\n", &[]).unwrap_err().key,
            "turn.urls"
        );
        assert_eq!(
            load("[turn]\nurls = [\"http://x\"]\nsecret = \"x\"\n", &[])
                .unwrap_err()
                .key,
            "turn.urls"
        );
        assert_eq!(
            load("[turn]\nurls = [\"turn:x\"]\n", &[]).unwrap_err().key,
            "turn.secret"
        );
    }
}
