//! [`ClusterStore`]: the [`Store`] of a cluster node — the node's own store (file or memory)
//! for everything it hosts, plus each room's settings in Redis (`sl:room:<name>` fields
//! `config`, `created_at_ms`), written only by the room's home (checked against the claim in the
//! same script). When a node dies, the node its rooms are placed on next reads those settings
//! back: a re-homed room keeps its configuration (limits, mode, hybrid overrides).
//! Participants, tracks and event counters stay node-local: participants reconnect to the new
//! home (new peer connections), and tracks belong to the dead node's dataplane.
//!
//! Redis failures never fail an operation (the node's own store is the durable one): they are
//! counted (`sluice_cluster_redis_errors_total`) and logged.

use crate::lock::Locked;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use redis::Script;

use super::{room_key, Cluster, MAX_FIELD};
use crate::room::{Room, RoomConfig};
use crate::store::{PersistedRoom, PersistedState, Store, StoreError, StoreFuture, StoreOp};

/// Largest room `config` read back from Redis.
const MAX_CONFIG: usize = 64 * 1024;
/// Settings fetched at placement, waiting for the room's actor to load them.
const MAX_ADOPTED: usize = 1024;

/// See the module docs.
#[derive(Debug)]
pub struct ClusterStore {
    local: Arc<dyn Store>,
    cluster: Arc<Cluster>,
    put: Script,
}

impl ClusterStore {
    pub fn new(local: Arc<dyn Store>, cluster: Arc<Cluster>) -> Self {
        Self {
            local,
            cluster,
            put: Script::new(PUT),
        }
    }
}

/// Writes (or with an empty config, clears) a room's settings if `node`/`boot` is its home.
/// KEYS: `sl:room:<name>`. ARGV: node, boot, config json, created_at_ms.
const PUT: &str = "if redis.call('HGET', KEYS[1], 'home') ~= ARGV[1]\n\
  or redis.call('HGET', KEYS[1], 'boot') ~= ARGV[2] then return 0 end\n\
if ARGV[3] == '' then redis.call('HDEL', KEYS[1], 'config', 'created_at_ms') return 1 end\n\
redis.call('HSET', KEYS[1], 'config', ARGV[3], 'created_at_ms', ARGV[4])\n\
return 1\n";

impl Store for ClusterStore {
    fn load(&self) -> Result<PersistedState, StoreError> {
        self.local.load()
    }

    fn load_room(&self, name: &str) -> Result<Option<PersistedRoom>, StoreError> {
        if let Some(r) = self.local.load_room(name)? {
            return Ok(Some(r));
        }
        // A room this node was just made home of, from a node that is gone.
        Ok(self
            .cluster
            .take_adopted(name)
            .map(|(config, created_at_ms)| PersistedRoom {
                room: Room {
                    name: name.to_owned(),
                    config,
                    created_at_ms,
                    empty_since_ms: None,
                    participants: BTreeMap::new(),
                },
                tracks: BTreeMap::new(),
            }))
    }

    fn apply(&self, ops: Vec<StoreOp>) -> StoreFuture<'_, Result<(), StoreError>> {
        let mirrored: Vec<(String, String, u64)> = ops
            .iter()
            .filter_map(|op| match op {
                StoreOp::PutRoom {
                    name,
                    config,
                    created_at_ms,
                    ..
                } => serde_json::to_string(config)
                    .ok()
                    .map(|c| (name.clone(), c, *created_at_ms)),
                StoreOp::DeleteRoom { name } => Some((name.clone(), String::new(), 0)),
                _ => None,
            })
            .collect();
        Box::pin(async move {
            self.local.apply(ops).await?;
            if mirrored.is_empty() {
                return Ok(());
            }
            let mut con = self.cluster.connection();
            let (node, boot) = (self.cluster.node_id().to_owned(), self.cluster.boot());
            for (name, config, created) in mirrored {
                let r: Result<i64, _> = self
                    .put
                    .key(room_key(&name))
                    .arg(&node)
                    .arg(&boot)
                    .arg(config)
                    .arg(created)
                    .invoke_async(&mut con)
                    .await;
                if let Err(e) = r {
                    tracing::warn!(room = %name, error = %self.cluster.err(e), "cluster: room settings not mirrored to Redis");
                }
            }
            Ok(())
        })
    }
}

impl Cluster {
    /// After this node claimed a room from a dead home: fetch the room's settings for its
    /// actor ([`ClusterStore::load_room`]). Bounded: an oversized or malformed config is
    /// ignored (the room starts with defaults), and at most [`MAX_ADOPTED`] wait.
    pub(super) async fn fetch_adopted(&self, room: &str) {
        let mut con = self.connection();
        let got: Result<(Option<Vec<u8>>, Option<String>), _> = redis::cmd("HMGET")
            .arg(room_key(room))
            .arg("config")
            .arg("created_at_ms")
            .query_async(&mut con)
            .await;
        let (config, created) = match got {
            Ok((Some(c), created)) if c.len() <= MAX_CONFIG => (c, created),
            Ok(_) => return,
            Err(e) => {
                let _ = self.err(e);
                return;
            }
        };
        let Ok(config) = serde_json::from_slice::<RoomConfig>(&config) else {
            tracing::warn!(
                room,
                "cluster: stored room config unreadable; defaults used"
            );
            return;
        };
        let created = created
            .filter(|c| c.len() <= MAX_FIELD)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let mut adopted = self.adopted.locked();
        if adopted.len() < MAX_ADOPTED {
            adopted.insert(room.to_owned(), (config, created));
        }
    }

    fn take_adopted(&self, room: &str) -> Option<(RoomConfig, u64)> {
        self.adopted.locked().remove(room)
    }
}

/// Settings fetched for rooms taken over, until their actors load them.
pub(super) type Adopted = Mutex<HashMap<String, (RoomConfig, u64)>>;
