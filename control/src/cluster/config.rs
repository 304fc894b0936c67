//! `[cluster]`: where Redis is and who this node is. Absent: single node, no Redis.
//!
//! Keys (file `[cluster] key = …`, env `SLUICE_CLUSTER_<KEY>`, flag `--cluster-<key>`):
//! `redis` (`redis://host:port[/db]` or `unix:/path/to/redis.sock`), `node_id` (`[A-Za-z0-9_-]`,
//! at most 64), `region` (same alphabet, default `default`), `advertise` (the public
//! `http(s)://host:port` clients are redirected to), `internal` (the `http://host:port` other
//! nodes forward admin API requests to; default `advertise`), `capacity` (participants this node
//! takes before placement prefers others; default 500), `lease_ms` (default 3000, 1000..=60000),
//! `region_header` (a request header naming the client's region, set by a load balancer this
//! node trusts — e.g. `X-Sluice-Region`; absent: no header is trusted; docs/cluster.md
//! "Placement"), `relay_grace_ms` (how long a cascade relay and an idle trunk outlive their last
//! user; default 5000, 0..=600000; docs/cluster.md "Cascading"), `media` (the `ip:port` other
//! nodes' trunks reach this node's dataplane at; default the dataplane's first media address:
//! set it behind NAT, or to put a trunk path through a relay).

/// See the module docs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    /// A `redis::Client` URL (`unix:` already turned into `redis+unix://`).
    pub redis: String,
    pub node_id: String,
    pub region: String,
    pub advertise: String,
    pub internal: String,
    pub capacity: u64,
    pub lease_ms: u64,
    /// Lower-case name of the trusted load balancer's region header, if any.
    pub region_header: Option<String>,
    /// A cascade relay (and an idle trunk) outlives its last user this long.
    pub relay_grace_ms: u64,
    /// The media address published for trunks, instead of the dataplane's own.
    pub media: Option<std::net::SocketAddr>,
}

/// `[cluster]` as read, before the check that it is complete.
#[derive(Debug, Default, Clone)]
pub struct ClusterDraft {
    redis: Option<String>,
    node_id: Option<String>,
    region: Option<String>,
    advertise: Option<String>,
    internal: Option<String>,
    capacity: Option<u64>,
    lease_ms: Option<u64>,
    region_header: Option<String>,
    relay_grace_ms: Option<u64>,
    media: Option<std::net::SocketAddr>,
}

/// Keys of `[cluster]`.
pub const CLUSTER_KEYS: &[&str] = &[
    "redis",
    "node_id",
    "region",
    "advertise",
    "internal",
    "capacity",
    "lease_ms",
    "region_header",
    "relay_grace_ms",
    "media",
];

/// Longest node id or region.
const MAX_NAME: usize = 64;

/// A node id or region: 1..=64 of `[A-Za-z0-9_-]` (also what a region claim or header must be).
pub fn name_ok(v: &str) -> bool {
    !v.is_empty()
        && v.len() <= MAX_NAME
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn http_url(v: &str) -> Result<String, String> {
    let rest = v
        .strip_prefix("http://")
        .or_else(|| v.strip_prefix("https://"))
        .ok_or_else(|| format!("expected an http:// or https:// URL, got {v:?}"))?;
    if rest.is_empty() || rest.contains(['/', '?', '#', ' ']) {
        return Err(format!(
            "expected scheme://host:port with no path, got {v:?}"
        ));
    }
    Ok(v.to_owned())
}

impl ClusterDraft {
    /// Sets `key` from text; the error message is for the key as the user spelled it.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), String> {
        match key {
            "redis" => {
                let url = if let Some(path) = value.strip_prefix("unix:") {
                    let path = path.trim_start_matches("//");
                    if !path.starts_with('/') {
                        return Err(format!("expected unix:/absolute/path, got {value:?}"));
                    }
                    format!("redis+unix://{path}")
                } else if value.starts_with("redis://") || value.starts_with("rediss://") {
                    value.to_owned()
                } else {
                    return Err(format!(
                        "expected redis://host:port or unix:/path, got {value:?}"
                    ));
                };
                redis::Client::open(url.as_str()).map_err(|e| e.to_string())?;
                self.redis = Some(url);
            }
            "node_id" | "region" => {
                if !name_ok(value) {
                    return Err(format!(
                        "expected 1..={MAX_NAME} of [A-Za-z0-9_-], got {value:?}"
                    ));
                }
                if key == "node_id" {
                    self.node_id = Some(value.to_owned());
                } else {
                    self.region = Some(value.to_owned());
                }
            }
            "advertise" => self.advertise = Some(http_url(value)?),
            "internal" => self.internal = Some(http_url(value)?),
            "capacity" => {
                let n: u64 = value
                    .parse()
                    .map_err(|_| format!("expected a positive integer, got {value:?}"))?;
                if n == 0 {
                    return Err("must be > 0".into());
                }
                self.capacity = Some(n);
            }
            "lease_ms" => {
                let n: u64 = value
                    .parse()
                    .map_err(|_| format!("expected an integer, got {value:?}"))?;
                if !(1000..=60_000).contains(&n) {
                    return Err("expected 1000..=60000".into());
                }
                self.lease_ms = Some(n);
            }
            "region_header" => {
                let ok = !value.is_empty()
                    && value.len() <= MAX_NAME
                    && value
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
                if !ok || axum::http::HeaderName::from_bytes(value.as_bytes()).is_err() {
                    return Err(format!(
                        "expected an HTTP header name (1..={MAX_NAME} of [A-Za-z0-9_-]), got {value:?}"
                    ));
                }
                self.region_header = Some(value.to_ascii_lowercase());
            }
            "relay_grace_ms" => {
                let n: u64 = value
                    .parse()
                    .map_err(|_| format!("expected an integer, got {value:?}"))?;
                if n > 600_000 {
                    return Err("expected 0..=600000".into());
                }
                self.relay_grace_ms = Some(n);
            }
            "media" => {
                let a: std::net::SocketAddr = value
                    .parse()
                    .map_err(|_| format!("expected ip:port, got {value:?}"))?;
                if a.port() == 0 || a.ip().is_unspecified() || a.ip().is_multicast() {
                    return Err(format!("expected a unicast ip and a port, got {value:?}"));
                }
                self.media = Some(a);
            }
            _ => return Err("unknown key".into()),
        }
        Ok(())
    }

    /// `None` when nothing was set (single node); otherwise the complete config, or the key
    /// that is missing.
    pub fn finish(self) -> Result<Option<ClusterConfig>, (&'static str, String)> {
        let any = self.redis.is_some()
            || self.node_id.is_some()
            || self.region.is_some()
            || self.advertise.is_some()
            || self.internal.is_some()
            || self.capacity.is_some()
            || self.lease_ms.is_some()
            || self.region_header.is_some()
            || self.relay_grace_ms.is_some()
            || self.media.is_some();
        if !any {
            return Ok(None);
        }
        let need = |k: &'static str| (k, "required when [cluster] is configured".to_owned());
        let redis = self.redis.ok_or_else(|| need("cluster.redis"))?;
        let node_id = self.node_id.ok_or_else(|| need("cluster.node_id"))?;
        let advertise = self.advertise.ok_or_else(|| need("cluster.advertise"))?;
        Ok(Some(ClusterConfig {
            redis,
            node_id,
            region: self.region.unwrap_or_else(|| "default".into()),
            internal: self.internal.unwrap_or_else(|| advertise.clone()),
            advertise,
            capacity: self.capacity.unwrap_or(500),
            lease_ms: self.lease_ms.unwrap_or(3000),
            region_header: self.region_header,
            relay_grace_ms: self.relay_grace_ms.unwrap_or(5000),
            media: self.media,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn complete_or_naming_the_missing_key() {
        assert_eq!(ClusterDraft::default().finish().unwrap(), None);
        let mut d = ClusterDraft::default();
        d.set("redis", "unix:/tmp/r.sock").unwrap();
        assert_eq!(d.clone().finish().unwrap_err().0, "cluster.node_id");
        d.set("node_id", "a-1").unwrap();
        assert_eq!(d.clone().finish().unwrap_err().0, "cluster.advertise");
        d.set("advertise", "http://127.0.0.1:7880").unwrap();
        let c = d.finish().unwrap().unwrap();
        assert_eq!(c.redis, "redis+unix:///tmp/r.sock");
        assert_eq!(c.internal, "http://127.0.0.1:7880");
        assert_eq!((c.capacity, c.lease_ms), (500, 3000));
    }

    #[test]
    fn bad_values_are_refused() {
        let mut d = ClusterDraft::default();
        assert!(d.set("redis", "http://x").is_err());
        assert!(d.set("redis", "unix:relative").is_err());
        assert!(d.set("node_id", "a b").is_err());
        assert!(d.set("node_id", &"x".repeat(65)).is_err());
        assert!(d.set("advertise", "http://h:1/path").is_err());
        assert!(d.set("advertise", "ftp://h").is_err());
        assert!(d.set("capacity", "0").is_err());
        assert!(d.set("lease_ms", "10").is_err());
        assert!(d.set("bogus", "1").is_err());
        assert!(d.set("media", "0.0.0.0:7881").is_err());
        assert!(d.set("media", "10.0.0.1:0").is_err());
        assert!(d.set("media", "host:7881").is_err());
        d.set("media", "10.0.0.1:7881").unwrap();
        assert!(d.set("region_header", "X Region").is_err());
        assert!(d.set("region_header", "").is_err());
        d.set("region_header", "X-Sluice-Region").unwrap();
        assert_eq!(d.region_header.as_deref(), Some("x-sluice-region"));
    }
}
