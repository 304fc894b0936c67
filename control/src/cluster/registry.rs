//! The node registry: this node's lease (register, renew every `lease_ms / 3`, fence and
//! re-claim its rooms when it is lost) and the sweep of other nodes' expired leases. See
//! `scripts.rs` for the keys.

use crate::lock::Locked;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::{new_boot_id, Cluster, MAX_FIELD, ROOM_TTL_S};

/// Expired nodes handled per sweep, and rooms un-homed per node per sweep.
const SWEEP_NODES: usize = 16;
const SWEEP_ROOMS: usize = 1000;

/// A live node as the registry has it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NodeInfo {
    pub id: String,
    /// Redis-clock ms.
    pub lease_expires_ms: u64,
    pub boot: String,
    pub region: String,
    pub advertise: String,
    pub internal: String,
    pub capacity: u64,
    /// Participants on the node at its last renewal.
    pub load: u64,
    /// `serving` or `draining`.
    pub state: String,
    /// Placements of the last few seconds not yet in `load`.
    pub reservations: u64,
    /// Rooms homed on the node.
    pub rooms: u64,
    /// The dataplane's load at its last renewal.
    pub dataplane: NodeLoad,
    /// The dataplane's media address (`ip:port`; empty without a dataplane): where other
    /// nodes' trunks to this node go (cascade).
    pub media: String,
}

/// A node's dataplane load as published in the registry (computed by the server from its
/// shards' stats, docs/cluster.md "Load"). All zero without a dataplane.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct NodeLoad {
    /// Sessions on every shard.
    pub sessions: u64,
    /// Packets per second in + out, every shard.
    pub pps: u64,
    /// The busiest shard's share of its core, ‰.
    pub busy: u64,
    /// `busy`, or 1,000 while a shard is saturated (overruns, late pacing), ‰.
    pub pressure: u64,
    /// Packets per second the node would move with every shard fully busy, measured from
    /// pps over busy (0: too idle to tell).
    pub capacity_pps: u64,
}

/// The live-nodes script's answer; malformed or oversized entries are skipped.
pub(super) fn parse_nodes(v: redis::Value) -> Vec<NodeInfo> {
    let redis::Value::Array(items) = v else {
        return Vec::new();
    };
    items
        .into_iter()
        .skip(1)
        .take(super::MAX_NODES)
        .filter_map(|item| {
            let f: Vec<String> = redis::from_redis_value(item).ok()?;
            if f.len() != 17 || f.iter().any(|s| s.len() > MAX_FIELD) {
                return None;
            }
            let num = |s: &str| s.parse::<f64>().ok().map(|x| x.max(0.0) as u64);
            Some(NodeInfo {
                id: f[0].clone(),
                lease_expires_ms: num(&f[1])?,
                boot: f[2].clone(),
                region: f[3].clone(),
                advertise: f[4].clone(),
                internal: f[5].clone(),
                capacity: num(&f[6])?,
                load: num(&f[7])?,
                state: f[8].clone(),
                reservations: num(&f[9])?,
                rooms: num(&f[10])?,
                dataplane: NodeLoad {
                    pressure: num(&f[11])?,
                    busy: num(&f[12])?,
                    pps: num(&f[13])?,
                    sessions: num(&f[14])?,
                    capacity_pps: num(&f[15])?,
                },
                media: f[16].clone(),
            })
        })
        .collect()
}

impl Cluster {
    /// Registers, then renews and sweeps forever. After a lost lease the node registers again
    /// and re-claims the rooms it hosts; `on_lost` gets the rooms it had to give up (another
    /// live node holds them): the server tells their clients to reconnect.
    pub async fn run(self: Arc<Self>, on_lost: impl Fn(&[String]) + Send + Sync + 'static) {
        let period = Duration::from_millis(self.config.lease_ms / 3);
        let mut registered = false;
        while !self.is_stopped() {
            let started = Instant::now();
            let was = registered;
            registered = self.beat(registered, &on_lost).await;
            if was && !registered {
                continue; // lease lost: register again now
            }
            tokio::select! {
                () = tokio::time::sleep(period.saturating_sub(started.elapsed())) => {}
                () = self.republish.notified() => {}
            }
        }
    }

    /// One step of [`Cluster::run`]: register (`registered == false`) or renew, then sweep.
    /// Returns whether the node is registered afterwards (`false` after losing its lease).
    /// Registered again after a lost lease, the node re-claims its rooms before it serves
    /// placements again (`reassert.rs`); `on_lost` gets the rooms given up.
    pub async fn beat(
        &self,
        registered: bool,
        on_lost: &(dyn Fn(&[String]) + Send + Sync),
    ) -> bool {
        let started = Instant::now();
        match self.heartbeat(registered).await {
            Ok(1) => {
                if !registered {
                    tracing::info!(node = %self.config.node_id, boot = %self.boot(), "cluster: registered");
                }
                if self.fenced.load(Ordering::SeqCst) {
                    match self.reassert().await {
                        Ok(lost) if !lost.is_empty() => on_lost(&lost),
                        Ok(_) => {}
                        Err(e) => {
                            // Registered, still fenced: the next beat tries again.
                            tracing::warn!(error = %e, "cluster: re-claiming hosted rooms failed; retrying at the next renewal");
                            return true;
                        }
                    }
                }
                self.serving.store(true, Ordering::SeqCst);
                self.fenced.store(false, Ordering::SeqCst);
                self.renew_warned.store(false, Ordering::Relaxed);
                self.metrics
                    .lease_renew_us
                    .store(started.elapsed().as_micros() as u64, Ordering::Relaxed);
            }
            Ok(-1) => {
                tracing::error!(node = %self.config.node_id, rooms = self.home_count(), "cluster: lease lost; registering again with a new boot and re-claiming the rooms this node hosts");
                self.fence();
                return false;
            }
            Ok(_) => {
                tracing::error!(node = %self.config.node_id, "cluster: node id held by a live node of another boot; waiting for its lease to end");
                return false;
            }
            Err(e) => {
                self.metrics
                    .lease_renew_failures
                    .fetch_add(1, Ordering::Relaxed);
                if !self.renew_warned.swap(true, Ordering::Relaxed) {
                    tracing::warn!(error = %e, "cluster: lease renewal failed (calls continue; placement answers 503)");
                }
                return registered;
            }
        }
        self.sweep().await;
        true
    }

    /// The lease is lost: no placements until registered again (new boot: claims made under
    /// the old one are dead unless re-claimed) and the hosted rooms are re-claimed. The homes
    /// stay: their calls continue.
    fn fence(&self) {
        self.fenced.store(true, Ordering::SeqCst);
        self.serving.store(false, Ordering::SeqCst);
        *self.boot.locked() = new_boot_id();
        self.metrics.fenced.fetch_add(1, Ordering::Relaxed);
    }

    /// `1` ok, `-1` lease lost, `-2` id held by another live boot.
    async fn heartbeat(&self, registered: bool) -> Result<i64, super::ClusterError> {
        let mut con = self.connection();
        let c = &self.config;
        let state = if self.draining.load(Ordering::SeqCst) {
            "draining"
        } else if !self.ready.load(Ordering::SeqCst) {
            "starting"
        } else {
            "serving"
        };
        let d = *self.dataplane.locked();
        let media = self.media.locked().clone();
        let (r, _now): (i64, i64) = self
            .scripts
            .heartbeat
            .key("sl:nodes")
            .key(format!("sl:node:{}", c.node_id))
            .arg(&c.node_id)
            .arg(self.boot())
            .arg(c.lease_ms)
            .arg(if registered { "renew" } else { "register" })
            .arg(&c.region)
            .arg(&c.advertise)
            .arg(&c.internal)
            .arg(c.capacity)
            .arg(self.load.load(Ordering::Relaxed))
            .arg(state)
            .arg(d.pressure)
            .arg(d.busy)
            .arg(d.pps)
            .arg(d.sessions)
            .arg(d.capacity_pps)
            .arg(media)
            .invoke_async(&mut con)
            .await
            .map_err(|e| self.err(e))?;
        Ok(r)
    }

    /// Un-homes the rooms of expired nodes; refreshes the node gauge.
    async fn sweep(&self) {
        let mut con = self.connection();
        let swept: Result<(i64, Vec<String>, Vec<String>), _> = self
            .scripts
            .sweep
            .key("sl:nodes")
            .arg(SWEEP_NODES)
            .arg(SWEEP_ROOMS)
            .arg(ROOM_TTL_S)
            .invoke_async(&mut con)
            .await;
        match swept {
            Ok((_, dead, rooms)) => {
                if !dead.is_empty() {
                    tracing::warn!(nodes = ?dead, rooms = rooms.len(), "cluster: expired nodes swept; their rooms are placed again at their next join");
                }
                self.metrics
                    .rooms_unhomed
                    .fetch_add(rooms.len() as u64, Ordering::Relaxed);
            }
            Err(e) => {
                let _ = self.err(e);
            }
        }
        if let Ok(nodes) = self.live_nodes().await {
            self.metrics
                .nodes
                .store(nodes.len() as u64, Ordering::Relaxed);
        }
    }
}
