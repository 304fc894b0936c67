//! How each key's value is read: from the file (`apply_toml`, `apply_section`) and from env
//! or flags (`apply_str`); the `[turn]` draft and the small parsers they share. Every error
//! names the key as the user spelled it.

use super::*;

impl ControlConfig {
    /// Sets `[hybrid]` / `[turn]` key `key` from text; `name` is how the user spelled it.
    pub(super) fn apply_section(
        &mut self,
        section: &str,
        key: &str,
        value: &str,
        name: &str,
        turn: &mut TurnDraft,
    ) -> Result<(), ConfigError> {
        let err = |m: String| ConfigError::new(name, m);
        let int = |v: &str| -> Result<u64, ConfigError> {
            v.parse::<u64>()
                .map_err(|_| err(format!("expected a non-negative integer, got {v:?}")))
        };
        let small = |v: &str| -> Result<u32, ConfigError> {
            v.parse::<u32>()
                .map_err(|_| err(format!("expected a non-negative integer, got {v:?}")))
        };
        if section == "limits" {
            return self.limits.set(key, int(value)?).map_err(err);
        }
        let h = &mut self.hybrid;
        match (section, key) {
            ("hybrid", "default_mode") => {
                h.default_mode = match value {
                    "sfu" => RoomMode::Sfu,
                    "p2p" => RoomMode::P2p,
                    "auto" => RoomMode::Auto,
                    _ => return Err(err(format!("expected sfu, p2p or auto, got {value:?}"))),
                }
            }
            ("hybrid", "strategy") => {
                h.strategy = match value {
                    "gradual" => Strategy::Gradual,
                    "hard_cut" => Strategy::HardCut,
                    _ => return Err(err(format!("expected gradual or hard_cut, got {value:?}"))),
                }
            }
            ("hybrid", "sfu_at") => h.sfu_at = small(value)?,
            ("hybrid", "p2p_at") => h.p2p_at = small(value)?,
            ("hybrid", "prewarm_at") => h.prewarm_at = small(value)?,
            ("hybrid", "p2p_limit") => h.p2p_limit = small(value)?,
            ("hybrid", "cooldown_ms") => h.cooldown_ms = int(value)?,
            ("hybrid", "ack_retry_ms") => h.ack_retry_ms = int(value)?,
            ("hybrid", "migration_timeout_ms") => h.migration_timeout_ms = int(value)?,
            ("hybrid", "grace_ms") => h.grace_ms = int(value)?,
            ("turn", "urls") => {
                let urls: Vec<String> = value
                    .split(',')
                    .filter(|u| !u.is_empty())
                    .map(str::to_owned)
                    .collect();
                if let Some(bad) = urls
                    .iter()
                    .find(|u| !(u.starts_with("turn:") || u.starts_with("turns:")))
                {
                    return Err(err(format!("expected turn: or turns: URLs, got {bad:?}")));
                }
                turn.urls = Some(urls);
            }
            ("turn", "secret") => turn.secret = Some(value.to_owned()),
            ("turn", "relay_ips") => {
                turn.relay_ips = value
                    .split(',')
                    .filter(|v| !v.is_empty())
                    .map(|v| {
                        v.trim()
                            .parse()
                            .map_err(|_| err(format!("expected IP addresses, got {v:?}")))
                    })
                    .collect::<Result<_, _>>()?;
            }
            ("turn", "ttl_s") => {
                let ttl = int(value)?;
                if ttl == 0 {
                    return Err(err("must be > 0".into()));
                }
                turn.ttl_s = Some(ttl);
            }
            _ => return Err(err("unknown key".into())),
        }
        Ok(())
    }

    pub(super) fn apply_toml(&mut self, key: &str, v: &toml::Value) -> Result<(), ConfigError> {
        let full = format!("control.{key}");
        let err = |m: &str| ConfigError::new(&full, m);
        match key {
            "api_keys" => {
                let t = v
                    .as_table()
                    .ok_or_else(|| err("expected a table of key = \"secret\""))?;
                self.api_keys.clear();
                for (k, s) in t {
                    let s = s.as_str().ok_or_else(|| {
                        ConfigError::new(format!("{full}.{k}"), "expected a string secret")
                    })?;
                    if s.len() < 16 {
                        return Err(ConfigError::new(
                            format!("{full}.{k}"),
                            "secret must be at least 16 characters",
                        ));
                    }
                    self.api_keys.insert(k.clone(), s.to_owned());
                }
            }
            "webhooks" => {
                let a = v
                    .as_array()
                    .ok_or_else(|| err("expected an array of URLs"))?;
                self.webhooks.clear();
                for (i, u) in a.iter().enumerate() {
                    let u = u.as_str().ok_or_else(|| {
                        ConfigError::new(format!("{full}[{i}]"), "expected a URL")
                    })?;
                    check_url(u).map_err(|m| ConfigError::new(format!("{full}[{i}]"), m))?;
                    self.webhooks.push(u.to_owned());
                }
            }
            "tiers" => {
                let t = v.as_table().ok_or_else(|| err("expected a table"))?;
                for (role, tier) in t {
                    let slot = match role.as_str() {
                        "host" => &mut self.tiers.host,
                        "controller" => &mut self.tiers.controller,
                        "viewer" => &mut self.tiers.viewer,
                        _ => {
                            return Err(ConfigError::new(
                                format!("{full}.{role}"),
                                "unknown role (host, controller, viewer)",
                            ))
                        }
                    };
                    *slot = parse_tier(&format!("{full}.{role}"), tier, *slot)?;
                }
            }
            "max_controllers"
            | "drain_deadline_s"
            | "kick_ban_s"
            | "oneshot_grace_s"
            | "resume_grace_s"
            | "sse_backlog_per_room" => {
                let n = v
                    .as_integer()
                    .filter(|n| *n >= 0)
                    .ok_or_else(|| err("expected a non-negative integer"))?;
                self.apply_str(key, &n.to_string(), &full)?;
            }
            "auto_create" | "external_dataplane" | "dev_tokens" => {
                let b = v.as_bool().ok_or_else(|| err("expected true or false"))?;
                self.apply_str(key, &b.to_string(), &full)?;
            }
            "http" | "state_file" | "dataplane_bin" | "webhook_secret" | "webhook_ca_file" => {
                let s = v.as_str().ok_or_else(|| err("expected a string"))?;
                self.apply_str(key, s, &full)?;
            }
            _ => return Err(err("unknown key")),
        }
        Ok(())
    }

    /// Sets `key` from text (env or flag); `name` is how the user spelled it.
    pub(super) fn apply_str(
        &mut self,
        key: &str,
        value: &str,
        name: &str,
    ) -> Result<(), ConfigError> {
        let err = |m: String| ConfigError::new(name, m);
        match key {
            "http" => {
                self.http = value
                    .parse()
                    .map_err(|_| err(format!("expected ip:port, got {value:?}")))?
            }
            "state_file" => self.state_file = PathBuf::from(value),
            "webhook_secret" => self.webhook_secret = Some(value.to_owned()),
            "webhook_ca_file" => self.webhook_ca_file = Some(PathBuf::from(value)),
            "dataplane_bin" => self.dataplane_bin = Some(PathBuf::from(value)),
            "max_controllers" => {
                self.max_controllers = value
                    .parse()
                    .map_err(|_| err(format!("expected an integer, got {value:?}")))?
            }
            "drain_deadline_s" => {
                self.drain_deadline_s = value
                    .parse()
                    .map_err(|_| err(format!("expected seconds, got {value:?}")))?
            }
            "sse_backlog_per_room" => {
                self.sse_backlog_per_room = value
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=65_536).contains(n))
                    .ok_or_else(|| err(format!("expected 1 to 65536 events, got {value:?}")))?
            }
            "kick_ban_s" | "oneshot_grace_s" | "resume_grace_s" => {
                let n: u64 = value
                    .parse()
                    .map_err(|_| err(format!("expected seconds, got {value:?}")))?;
                let l = &mut self.lifetimes;
                match key {
                    "kick_ban_s" => l.kick_ban_s = n,
                    "oneshot_grace_s" => l.oneshot_grace_s = n.max(1),
                    _ => l.resume_grace_s = n.max(1),
                }
            }
            "auto_create" | "external_dataplane" | "dev_tokens" => {
                let b = match value {
                    "true" | "1" => true,
                    "false" | "0" => false,
                    _ => return Err(err(format!("expected true or false, got {value:?}"))),
                };
                match key {
                    "auto_create" => self.auto_create = b,
                    "dev_tokens" => self.dev_tokens = Some(b),
                    _ => self.external_dataplane = b,
                }
            }
            "webhooks" => {
                self.webhooks = Vec::new();
                for u in value.split(',').filter(|u| !u.is_empty()) {
                    check_url(u).map_err(|m| err(m.to_owned()))?;
                    self.webhooks.push(u.to_owned());
                }
            }
            "api_keys" => {
                self.api_keys.clear();
                for pair in value.split(',').filter(|p| !p.is_empty()) {
                    let (k, s) = pair
                        .split_once(':')
                        .ok_or_else(|| err("expected key:secret[,key:secret]".into()))?;
                    // The same rule as the file's (finding #25): no short or empty HMAC keys.
                    if k.is_empty() || s.len() < 16 {
                        return Err(err(format!(
                            "key {k:?}: secret must be at least 16 characters"
                        )));
                    }
                    self.api_keys.insert(k.to_owned(), s.to_owned());
                }
            }
            _ => return Err(err("cannot be set here; use the config file".into())),
        }
        Ok(())
    }
}

impl TurnDraft {
    /// `None` when nothing was set; both `urls` and `secret` once anything was.
    pub(super) fn finish(self) -> Result<Option<TurnConfig>, ConfigError> {
        if self.urls.is_none() && self.secret.is_none() && self.ttl_s.is_none() {
            return Ok(None);
        }
        let urls = self
            .urls
            .filter(|u| !u.is_empty())
            .ok_or_else(|| ConfigError::new("turn.urls", "required when [turn] is configured"))?;
        let secret = self
            .secret
            .filter(|s| !s.is_empty())
            .ok_or_else(|| ConfigError::new("turn.secret", "required when [turn] is configured"))?;
        Ok(Some(TurnConfig {
            urls,
            secret,
            ttl_s: self.ttl_s.unwrap_or(DEFAULT_TURN_TTL_S),
            relay_ips: self.relay_ips,
        }))
    }
}

fn parse_tier(key: &str, v: &toml::Value, base: QualityTier) -> Result<QualityTier, ConfigError> {
    let t = v
        .as_table()
        .ok_or_else(|| ConfigError::new(key, "expected { max_bitrate_bps, priority }"))?;
    let mut tier = base;
    for (k, v) in t {
        let field = format!("{key}.{k}");
        let n = v
            .as_integer()
            .ok_or_else(|| ConfigError::new(&field, "expected an integer"))?;
        match k.as_str() {
            "max_bitrate_bps" if n > 0 => tier.max_bitrate_bps = n as u64,
            "priority" if (0..=255).contains(&n) => tier.priority = n as u8,
            "max_bitrate_bps" | "priority" => return Err(ConfigError::new(field, "out of range")),
            _ => return Err(ConfigError::new(field, "unknown key")),
        }
    }
    Ok(tier)
}

fn check_url(u: &str) -> Result<(), &'static str> {
    let rest = u
        .strip_prefix("http://")
        .or_else(|| u.strip_prefix("https://"));
    if rest.is_some_and(|rest| !rest.is_empty() && !rest.starts_with('/')) {
        Ok(())
    } else {
        Err("expected an http:// or https:// URL")
    }
}
