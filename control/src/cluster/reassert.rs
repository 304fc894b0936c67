//! After a lost lease (a Redis outage longer than the lease, a Redis restarted empty, a node
//! frozen past its lease): the node registered again with a new boot and now re-claims each
//! room it still hosts, in batches of [`BATCH`] rooms, one atomic script per batch
//! (`scripts::reassert`). A room another live node holds meanwhile (it was swept and placed
//! there by a join) is given up — only that room: its clients are told to reconnect and rejoin
//! through placement. Every other room stays where its calls are. docs/decisions.md D83.

use crate::lock::Locked;
use std::sync::atomic::Ordering;

use super::{Cluster, ClusterError};

/// Rooms re-claimed per script call (a node may host up to `MAX_ROOMS_PER_NODE`).
pub(super) const BATCH: usize = 256;
/// Lost rooms named in the log line (the metric counts all).
const LOGGED: usize = 8;

impl Cluster {
    /// Re-claims every room in `homes` for this node's current boot. Returns the rooms given
    /// up (another live node holds them); they are no longer in `homes`. An error leaves the
    /// rooms not yet handled in `homes` for the next try (the node stays fenced meanwhile).
    pub(super) async fn reassert(&self) -> Result<Vec<String>, ClusterError> {
        let rooms: Vec<(String, u64)> = self
            .homes
            .locked()
            .iter()
            .map(|(r, e)| (r.clone(), *e))
            .collect();
        let (node, boot) = (self.config.node_id.clone(), self.boot());
        let (mut kept, mut lost, mut unused) = (0usize, Vec::new(), Vec::new());
        for batch in rooms.chunks(BATCH) {
            let mut inv = self.scripts.reassert.prepare_invoke();
            inv.arg(&node).arg(&boot);
            for (room, epoch) in batch {
                inv.arg(room).arg(*epoch);
            }
            let mut con = self.connection();
            let v: Vec<String> = inv.invoke_async(&mut con).await.map_err(|e| self.err(e))?;
            if v.first().map(String::as_str) != Some("ok") || v.len() != batch.len() + 1 {
                return Err(ClusterError::Fenced);
            }
            let mut homes = self.homes.locked();
            for ((room, _), answer) in batch.iter().zip(&v[1..]) {
                match answer.parse::<u64>() {
                    Ok(epoch) => {
                        kept += 1;
                        // Retired meanwhile (its release found the old claim): give it up below.
                        if homes.insert(room.clone(), epoch).is_none() {
                            unused.push(room.clone());
                        }
                    }
                    Err(_) => {
                        homes.remove(room);
                        lost.push(room.clone());
                    }
                }
            }
        }
        for room in &unused {
            self.release(room).await;
        }
        let m = &self.metrics;
        m.rooms_reasserted.fetch_add(kept as u64, Ordering::Relaxed);
        m.reassert_lost
            .fetch_add(lost.len() as u64, Ordering::Relaxed);
        if lost.is_empty() {
            tracing::info!(node = %node, boot = %boot, rooms = kept, "cluster: registered again; re-claimed every room this node hosts");
        } else {
            tracing::warn!(node = %node, boot = %boot, rooms = kept, lost = lost.len(), given_up = ?&lost[..lost.len().min(LOGGED)], "cluster: registered again; rooms another node took meanwhile are given up (their clients reconnect)");
        }
        Ok(lost)
    }
}
