//! Several Sluice nodes as one service, coordinated through Redis (docs/cluster.md,
//! docs/decisions.md D40–D44). `[cluster]` absent: none of this runs and the node is the
//! single-node daemon it always was.
//!
//! - **Registry** (`registry.rs`): each node holds a lease in `sl:nodes`, renewed every
//!   `lease_ms / 3` by a script that reads Redis's clock. A renewal that finds the lease lost
//!   (expired, swept, Redis restarted empty, or the id re-registered by another boot) **fences**
//!   the node (no new placements) until it registered again with a new boot id and re-claimed
//!   the rooms it hosts (`reassert.rs`): a room another live node took meanwhile is given up
//!   (its clients reconnect), every other room keeps its calls. Every node sweeps expired
//!   leases and un-homes their rooms.
//! - **Placement** ([`Cluster::place`]): the candidate is picked from live nodes by region (the
//!   participant's: token claim, then the trusted load balancer's header, else this node's) and
//!   load (the larger of participants against `capacity` and the dataplane's measured pressure,
//!   plus recent placements), then claimed with one script: a room has at most one live home,
//!   with an epoch that grows on every claim.
//! - **Routing** (`server/cluster.rs`): a request for a room homed elsewhere is redirected
//!   (WebSocket `redirect`, WHIP/WHEP `307`) or, for the admin API, forwarded to the home.
//! - **Events** (`events.rs`): each home publishes its rooms' events on `sl:events`; every
//!   node's SSE stream carries them; only the home posts webhooks.
//!
//! Everything read back from Redis is bounded (node count, field lengths, message size) and
//! every Redis failure is an error value (`unavailable`, counted), never a panic.

mod config;
pub mod events;
mod metrics;
mod reassert;
mod registry;
mod scripts;
mod store;

use crate::lock::Locked;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::Script;

pub use config::{name_ok, ClusterConfig, ClusterDraft, CLUSTER_KEYS};
pub use metrics::Metrics;
pub use registry::{NodeInfo, NodeLoad};
pub use store::ClusterStore;

/// Nodes read from Redis at most (placement, `GET /api/cluster`, list fan-out).
pub const MAX_NODES: usize = 64;
/// Longest field of a node read back from Redis; a longer one drops the node.
const MAX_FIELD: usize = 512;
/// Rooms one node may be home of (the claim script refuses more).
pub const MAX_ROOMS_PER_NODE: u64 = 100_000;
/// A placement counts against its node this long (until its participants show in `load`).
const RESERVATION_MS: u64 = 10_000;
/// A released or un-homed room's epoch is kept this long, then the key expires.
const ROOM_TTL_S: u64 = 86_400;
/// Load share above which a node is only used when every node is above it.
const HIGH_LOAD: f64 = 0.8;

/// Why a cluster operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClusterError {
    /// Redis could not be reached or answered an error.
    #[error("cluster store unavailable: {0}")]
    Unavailable(String),
    /// This node lost its lease and is registering again.
    #[error("node is fenced (lost its lease); retry")]
    Fenced,
    /// No live node can take the room.
    #[error("no node can take room {0:?}")]
    NoNode(String),
}

/// Where a room lives, as seen from this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    /// This node is the room's home.
    Local,
    /// Another live node is.
    Remote(Home),
}

/// A room's home node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Home {
    pub node: String,
    pub epoch: u64,
    /// Public base URL (`http://host:port`), for redirects.
    pub advertise: String,
    /// Base URL for node-to-node forwarding.
    pub internal: String,
}

/// This node's membership of the cluster. See the module docs.
#[derive(Debug)]
pub struct Cluster {
    pub config: ClusterConfig,
    redis: ConnectionManager,
    client: redis::Client,
    /// Changes when the node registers again after being fenced.
    boot: Mutex<String>,
    /// Rooms this node is home of (→ epoch); re-claimed after a lost lease (`reassert.rs`).
    homes: Mutex<HashMap<String, u64>>,
    /// Set from a lost lease until registered again: joins are refused.
    fenced: AtomicBool,
    /// Registered (at least once) and not fenced.
    serving: AtomicBool,
    /// Participants on this node (the server updates it), published as `load`.
    pub load: AtomicU64,
    /// The dataplane's load (the server updates it from the shards' stats), published with
    /// every renewal.
    pub dataplane: Mutex<NodeLoad>,
    /// The dataplane's media address (the server sets it from the dataplane's hello).
    pub media: Mutex<String>,
    pub draining: AtomicBool,
    /// The dataplane link is up (or the node runs without one): published as `state =
    /// serving`; else `starting`, which placement and trunks skip ([`Cluster::set_ready`]).
    ready: AtomicBool,
    /// Wakes the registry loop to publish a change of `ready` now, not at the next renewal.
    republish: tokio::sync::Notify,
    /// Settings of rooms taken over from a dead node, for their actors (`store.rs`).
    adopted: store::Adopted,
    /// [`Cluster::stop`] was called: the loops end, the lease runs out.
    stopped: AtomicBool,
    /// A failed renewal was logged (once per outage).
    renew_warned: AtomicBool,
    pub metrics: Metrics,
    scripts: Scripts,
}

#[derive(Debug)]
struct Scripts {
    heartbeat: Script,
    live: Script,
    lookup: Script,
    claim: Script,
    release: Script,
    sweep: Script,
    reassert: Script,
}

impl Cluster {
    /// A handle that connects lazily (Redis may be down at start: calls fail with
    /// `unavailable` until it is up). Start [`Cluster::run`] to register.
    pub fn new(config: ClusterConfig) -> Result<Arc<Self>, ClusterError> {
        let client = redis::Client::open(config.redis.as_str())
            .map_err(|e| ClusterError::Unavailable(format!("cluster.redis: {e}")))?;
        let mgr_config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_millis(1000)))
            .set_response_timeout(Some(Duration::from_millis(1000)))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let redis = ConnectionManager::new_lazy_with_config(client.clone(), mgr_config)
            .map_err(|e| ClusterError::Unavailable(format!("cluster.redis: {e}")))?;
        Ok(Arc::new(Self {
            config,
            redis,
            client,
            boot: Mutex::new(new_boot_id()),
            homes: Mutex::new(HashMap::new()),
            fenced: AtomicBool::new(false),
            serving: AtomicBool::new(false),
            load: AtomicU64::new(0),
            dataplane: Mutex::new(NodeLoad::default()),
            media: Mutex::new(String::new()),
            draining: AtomicBool::new(false),
            ready: AtomicBool::new(true),
            republish: tokio::sync::Notify::new(),
            renew_warned: AtomicBool::new(false),
            stopped: AtomicBool::new(false),
            adopted: Default::default(),
            metrics: Metrics::default(),
            scripts: Scripts {
                heartbeat: Script::new(&scripts::heartbeat()),
                live: Script::new(&scripts::live_nodes()),
                lookup: Script::new(&scripts::lookup()),
                claim: Script::new(&scripts::claim()),
                release: Script::new(&scripts::release()),
                sweep: Script::new(&scripts::sweep()),
                reassert: Script::new(&scripts::reassert()),
            },
        }))
    }

    /// Stops renewing (the server stopped): the lease runs out and the other nodes take the
    /// rooms over, as after a crash.
    pub fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        self.serving.store(false, Ordering::SeqCst);
    }

    /// Drain: publishes `state = draining` now (placement skips this node from here on) and
    /// gives up every home this node holds, returning their names: the next join of each,
    /// through any node, places it on another node.
    pub async fn drain(&self) -> Vec<String> {
        self.draining.store(true, Ordering::SeqCst);
        let mut con = self.redis.clone();
        let r: Result<i64, _> = redis::cmd("HSET")
            .arg(format!("sl:node:{}", self.config.node_id))
            .arg("state")
            .arg("draining")
            .query_async(&mut con)
            .await;
        if let Err(e) = r {
            tracing::warn!(error = %self.err(e), "cluster: draining state not published; the next renewal publishes it");
        }
        let rooms: Vec<String> = self
            .homes
            .lock()
            .expect("homes lock")
            .keys()
            .cloned()
            .collect();
        for room in &rooms {
            self.release(room).await;
        }
        rooms
    }

    /// Stops and gives the lease up now (a clean shutdown): the rooms it hosted are placed
    /// again at their next join, without waiting for the lease to run out.
    pub async fn leave(&self) {
        self.stop();
        let mut con = self.redis.clone();
        let r: Result<i64, _> = Script::new(LEAVE)
            .key("sl:nodes")
            .key(format!("sl:node:{}", self.config.node_id))
            .arg(&self.config.node_id)
            .arg(self.boot())
            .invoke_async(&mut con)
            .await;
        if let Err(e) = r {
            tracing::warn!(error = %self.err(e), "cluster: could not give the lease up; it runs out");
        }
        self.homes.locked().clear();
    }

    pub fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::SeqCst)
    }

    pub fn node_id(&self) -> &str {
        &self.config.node_id
    }

    pub(crate) fn boot(&self) -> String {
        self.boot.locked().clone()
    }

    /// Whether this node can take sessions (its dataplane link is up): a change is published
    /// at once. A node that cannot is listed as `starting` and placed no rooms, so a join does
    /// not land where it would only get `dataplane unavailable` (after a failover, say).
    pub fn set_ready(&self, ready: bool) {
        if self.ready.swap(ready, Ordering::SeqCst) != ready {
            self.republish.notify_one();
        }
    }

    /// Registered and holding its lease.
    pub fn is_serving(&self) -> bool {
        self.serving.load(Ordering::SeqCst) && !self.fenced.load(Ordering::SeqCst)
    }

    /// Whether this node is the room's home as far as it knows (no Redis call).
    pub fn is_home(&self, room: &str) -> bool {
        self.homes.locked().contains_key(room)
    }

    /// Rooms this node is home of.
    pub fn home_count(&self) -> usize {
        self.homes.locked().len()
    }

    fn err(&self, e: redis::RedisError) -> ClusterError {
        self.metrics.redis_errors.fetch_add(1, Ordering::Relaxed);
        ClusterError::Unavailable(e.to_string())
    }

    /// Where `room` lives, claiming it (for the best node, see the module docs) when it has
    /// no live home. The one place a room gets a home.
    pub async fn place(&self, room: &str) -> Result<Placement, ClusterError> {
        self.place_in(room, None).await
    }

    /// [`Cluster::place`] preferring `region` (the participant's) over this node's for a room
    /// that has no home yet.
    pub async fn place_in(
        &self,
        room: &str,
        region: Option<&str>,
    ) -> Result<Placement, ClusterError> {
        if self.is_home(room) {
            self.metrics
                .placements_local
                .fetch_add(1, Ordering::Relaxed);
            return Ok(Placement::Local);
        }
        let r = self.place_uncached(room, region).await;
        if r.is_err() {
            self.metrics
                .placements_unavailable
                .fetch_add(1, Ordering::Relaxed);
        }
        r
    }

    async fn place_uncached(
        &self,
        room: &str,
        region: Option<&str>,
    ) -> Result<Placement, ClusterError> {
        if !self.is_serving() {
            return Err(ClusterError::Fenced);
        }
        // Cheap first: a live home answers without reading every node.
        if let Some(home) = self.lookup(room).await? {
            return Ok(self.placement_of(room, home));
        }
        let nodes = self.live_nodes().await?;
        let region = region.unwrap_or(&self.config.region);
        let candidate = choose(&nodes, &self.config.node_id, region)
            .ok_or_else(|| ClusterError::NoNode(room.to_owned()))?;
        let (result, home) = self.claim(room, &candidate).await?;
        let taken_over = home
            .as_ref()
            .is_some_and(|(h, _)| h.node == self.config.node_id && h.epoch > 1);
        if taken_over && result != "existing" {
            self.fetch_adopted(room).await;
        }
        match result.as_str() {
            "new" => self.metrics.placements_new.fetch_add(1, Ordering::Relaxed),
            "failover" => self
                .metrics
                .placements_failover
                .fetch_add(1, Ordering::Relaxed),
            _ => 0,
        };
        match home {
            Some(h) => Ok(self.placement_of(room, h)),
            None => Err(ClusterError::NoNode(room.to_owned())),
        }
    }

    fn placement_of(&self, room: &str, home: (Home, String)) -> Placement {
        let (home, boot) = home;
        if home.node == self.config.node_id && boot == self.boot() {
            self.homes
                .lock()
                .expect("homes lock")
                .insert(room.to_owned(), home.epoch);
            self.metrics
                .placements_local
                .fetch_add(1, Ordering::Relaxed);
            Placement::Local
        } else {
            self.metrics
                .placements_remote
                .fetch_add(1, Ordering::Relaxed);
            Placement::Remote(home)
        }
    }

    /// The room's live home, if it has one (no claim).
    pub async fn locate(&self, room: &str) -> Result<Option<Placement>, ClusterError> {
        if self.is_home(room) {
            return Ok(Some(Placement::Local));
        }
        Ok(self.lookup(room).await?.map(|h| self.placement_of(room, h)))
    }

    async fn lookup(&self, room: &str) -> Result<Option<(Home, String)>, ClusterError> {
        let mut con = self.redis.clone();
        let v: Vec<String> = self
            .scripts
            .lookup
            .key(room_key(room))
            .invoke_async(&mut con)
            .await
            .map_err(|e| self.err(e))?;
        Ok(parse_home(&v))
    }

    async fn claim(
        &self,
        room: &str,
        candidate: &str,
    ) -> Result<(String, Option<(Home, String)>), ClusterError> {
        let mut con = self.redis.clone();
        let v: Vec<String> = self
            .scripts
            .claim
            .key(room_key(room))
            .arg(room)
            .arg(candidate)
            .arg(RESERVATION_MS)
            .arg(MAX_ROOMS_PER_NODE)
            .invoke_async(&mut con)
            .await
            .map_err(|e| self.err(e))?;
        let result = v.first().cloned().unwrap_or_default();
        Ok((result, parse_home(&v)))
    }

    /// Gives `room` up (its actor retired); the next join places it again.
    pub async fn release(&self, room: &str) {
        let Some(epoch) = self.homes.locked().remove(room) else {
            return;
        };
        let mut con = self.redis.clone();
        let r: Result<i64, _> = self
            .scripts
            .release
            .key(room_key(room))
            .arg(room)
            .arg(&self.config.node_id)
            .arg(self.boot())
            .arg(epoch)
            .arg(ROOM_TTL_S)
            .invoke_async(&mut con)
            .await;
        if let Err(e) = r {
            // The claim stays until this node's lease ends or the room is joined again here.
            tracing::warn!(room, error = %self.err(e), "cluster: releasing a room failed");
        }
    }

    /// Live nodes (at most [`MAX_NODES`]).
    pub async fn live_nodes(&self) -> Result<Vec<NodeInfo>, ClusterError> {
        let mut con = self.redis.clone();
        let v: redis::Value = self
            .scripts
            .live
            .key("sl:nodes")
            .arg(MAX_NODES)
            .invoke_async(&mut con)
            .await
            .map_err(|e| self.err(e))?;
        Ok(registry::parse_nodes(v))
    }

    /// A pub/sub connection (events).
    pub(crate) async fn pubsub(&self) -> Result<redis::aio::PubSub, ClusterError> {
        tokio::time::timeout(Duration::from_secs(2), self.client.get_async_pubsub())
            .await
            .map_err(|_| ClusterError::Unavailable("pub/sub connect timed out".into()))?
            .map_err(|e| self.err(e))
    }

    pub(crate) fn connection(&self) -> ConnectionManager {
        self.redis.clone()
    }
}

/// Gives a lease up if it is still this boot's. KEYS: `sl:nodes`, `sl:node:<id>`. ARGV: id, boot.
const LEAVE: &str = "if redis.call('HGET', KEYS[2], 'boot') ~= ARGV[2] then return 0 end\n\
redis.call('ZREM', KEYS[1], ARGV[1])\n\
redis.call('DEL', KEYS[2], KEYS[2] .. ':rooms', 'sl:resv:' .. ARGV[1])\n\
return 1\n";

fn room_key(room: &str) -> String {
    format!("sl:room:{room}")
}

fn new_boot_id() -> String {
    let mut b = [0u8; 8];
    let _ = aws_lc_rs::rand::fill(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// `{result, home, boot, epoch, advertise, internal}` → the home (none for `none`/`full`).
fn parse_home(v: &[String]) -> Option<(Home, String)> {
    let result = v.first()?;
    if !matches!(result.as_str(), "existing" | "new" | "failover") || v.len() < 6 {
        return None;
    }
    if v.iter().any(|f| f.len() > MAX_FIELD) {
        return None;
    }
    Some((
        Home {
            node: v[1].clone(),
            epoch: v[3].parse().ok()?,
            advertise: v[4].clone(),
            internal: v[5].clone(),
        },
        v[2].clone(),
    ))
}

/// The node a new room should go to: serving nodes below their room cap
/// ([`MAX_ROOMS_PER_NODE`]: the claim script would refuse them) of `region` first (all nodes
/// if none is), below [`HIGH_LOAD`] first, then least loaded; `me` wins ties, so a lone node
/// or an idle cluster keeps rooms where the request landed. A node's load share is the larger
/// of its participants over `capacity` and its dataplane's pressure (the busiest shard's
/// measured share of its core, 1.0 when saturated: D93), plus its reservations over
/// `capacity` (placements not yet visible in either figure).
pub fn choose(nodes: &[NodeInfo], me: &str, region: &str) -> Option<String> {
    let serving: Vec<&NodeInfo> = nodes
        .iter()
        .filter(|n| n.state == "serving" && n.rooms < MAX_ROOMS_PER_NODE)
        .collect();
    let in_region: Vec<&NodeInfo> = serving
        .iter()
        .copied()
        .filter(|n| n.region == region)
        .collect();
    let pool = if in_region.is_empty() {
        serving
    } else {
        in_region
    };
    let share = |n: &NodeInfo| {
        let cap = n.capacity.max(1) as f64;
        let pressure = n.dataplane.pressure as f64 / 1000.0;
        (n.load as f64 / cap).max(pressure) + n.reservations as f64 / cap
    };
    pool.into_iter()
        .min_by(|a, b| {
            let (sa, sb) = (share(a), share(b));
            (sa >= HIGH_LOAD)
                .cmp(&(sb >= HIGH_LOAD))
                .then(sa.total_cmp(&sb))
                .then((a.id != me).cmp(&(b.id != me)))
                .then(a.id.cmp(&b.id))
        })
        .map(|n| n.id.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: &str, region: &str, load: u64, capacity: u64) -> NodeInfo {
        NodeInfo {
            id: id.into(),
            lease_expires_ms: 0,
            boot: "b".into(),
            region: region.into(),
            advertise: String::new(),
            internal: String::new(),
            capacity,
            load,
            state: "serving".into(),
            reservations: 0,
            rooms: 0,
            dataplane: NodeLoad::default(),
            media: String::new(),
        }
    }

    #[test]
    fn choose_prefers_region_then_headroom_then_self() {
        let nodes = vec![
            node("a", "eu", 10, 100),
            node("b", "eu", 10, 100),
            node("c", "us", 0, 100),
        ];
        assert_eq!(choose(&nodes, "b", "eu").as_deref(), Some("b"));
        assert_eq!(choose(&nodes, "a", "eu").as_deref(), Some("a"));
        assert_eq!(choose(&nodes, "a", "us").as_deref(), Some("c"));
        // Unknown region: any serving node, least loaded.
        assert_eq!(choose(&nodes, "a", "ap").as_deref(), Some("c"));
        let mut busy = nodes.clone();
        busy[0].load = 90;
        assert_eq!(choose(&busy, "a", "eu").as_deref(), Some("b"));
        // Reservations count: a burst does not pile onto one node.
        busy[1].reservations = 85;
        assert_eq!(choose(&busy, "a", "eu").as_deref(), Some("a"));
        busy[1].state = "draining".into();
        busy[0].state = "draining".into();
        assert_eq!(choose(&busy, "a", "eu").as_deref(), Some("c"));
        assert_eq!(choose(&[], "a", "eu"), None);
    }

    #[test]
    fn choose_weighs_the_dataplane_pressure_against_participants() {
        // `a` has few participants but its dataplane is busy (e.g. a few heavy publishers);
        // `b` has more participants on an idle dataplane.
        let mut nodes = vec![node("a", "eu", 5, 100), node("b", "eu", 30, 100)];
        nodes[0].dataplane.pressure = 700;
        assert_eq!(choose(&nodes, "a", "eu").as_deref(), Some("b"));
        // Saturated (overruns, late pacing): above HIGH_LOAD, used only if every node is.
        nodes[0].dataplane.pressure = 1000;
        nodes[1].load = 79;
        assert_eq!(choose(&nodes, "a", "eu").as_deref(), Some("b"));
        nodes[1].load = 95;
        assert_eq!(choose(&nodes, "b", "eu").as_deref(), Some("b"));
        // An idle dataplane changes nothing: participants decide.
        nodes[0].dataplane.pressure = 0;
        assert_eq!(choose(&nodes, "b", "eu").as_deref(), Some("a"));
    }

    #[test]
    fn choose_skips_nodes_at_their_room_cap() {
        let mut nodes = vec![node("a", "eu", 0, 100), node("b", "eu", 50, 100)];
        nodes[0].rooms = MAX_ROOMS_PER_NODE;
        assert_eq!(choose(&nodes, "a", "eu").as_deref(), Some("b"));
        nodes[1].rooms = MAX_ROOMS_PER_NODE;
        assert_eq!(choose(&nodes, "a", "eu"), None);
    }

    #[test]
    fn malformed_homes_are_ignored() {
        assert_eq!(parse_home(&["none".into()]), None);
        let long = "x".repeat(MAX_FIELD + 1);
        let v: Vec<String> = ["existing", "a", "b", "1", &long, "i"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(parse_home(&v), None);
        let v: Vec<String> = ["new", "a", "b", "x", "u", "i"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(parse_home(&v), None);
    }
}
