//! Where a participant's subscriber session lives (issue 16, D103–D104): on this node's
//! dataplane, or on an *edge*'s — another node of the cluster — while its signaling stays in
//! this room's actor. The subscribe path is node-aware here and only here: it creates the
//! session with [`RoomCtx::create_session_at`], sends every command about it through
//! [`RoomCtx::media_dp`] and builds its SDP with [`RoomCtx::local_params_at`].
//!
//! A remote session is recorded like a local one (`Media::sessions`, `session_rooms`, so its
//! notifications, forwarded by the edge, apply as local ones) and listed in `Media::remote`
//! (the resync leaves it alone: this dataplane never held it). Subscribing it to a room track
//! opens the track's relay to the edge here (the actor cannot wait for itself through the
//! relay API) and has the edge ingest it; a layer request moves the subscription to another
//! layer's relay (layers on demand); unsubscribing and closing release on the edge, which
//! gives the relay back.

use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use serde_json::json;
use sluice_proto::{Candidate, Command, CreateSession, ReplyOk, SessionId, SubscriptionId};

use super::{sdp_params, LayerCap};
use crate::cluster::NodeInfo;
use crate::lock::Locked;
use crate::sdp::LocalParams;
use crate::server::actor::RoomCtx;
use crate::server::cascade::TrackRef;
use crate::server::error::ApiError;
use crate::server::App;

/// An edge holding one of this room's sessions: the node, and what its dataplane answered.
pub(crate) type Remote = Arc<RemoteNode>;

#[derive(Debug)]
pub(crate) struct RemoteNode {
    pub(crate) node: NodeInfo,
    /// The edge dataplane's DTLS fingerprint (`"<hash> <hex>"`).
    pub(crate) fingerprint: String,
    /// The edge's HTTP IP (its candidates' translation for a wildcard bind).
    pub(crate) http_ip: IpAddr,
}

/// Where a subscriber session is (or goes).
#[derive(Debug, Clone, Default)]
pub(crate) enum MediaNode {
    #[default]
    Local,
    /// Chosen, not created yet.
    Edge(Box<NodeInfo>),
    Remote(Remote),
}

impl MediaNode {
    /// The node's id (`None`: this node).
    pub(crate) fn id(&self) -> Option<&str> {
        match self {
            MediaNode::Local => None,
            MediaNode::Edge(n) => Some(&n.id),
            MediaNode::Remote(r) => Some(&r.node.id),
        }
    }
}

/// Why a subscriber session goes to an edge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Why {
    /// This node holds `cluster.capacity` participants or more.
    Capacity,
    /// The participant's region has a node and this node is elsewhere.
    Region,
}

/// The edge for a subscriber session, if any (D103): `full` (this node is at its capacity)
/// picks the least loaded live node below its capacity, of `region` first; else a participant
/// of another `region` than this node's goes to the least loaded node of that region below its
/// capacity. Nodes without a dataplane media address are skipped.
pub(crate) fn choose_edge(
    nodes: &[NodeInfo],
    me: &NodeInfo,
    full: bool,
    region: Option<&str>,
) -> Option<(NodeInfo, Why)> {
    let fits = |n: &&NodeInfo| {
        n.id != me.id && n.state == "serving" && !n.media.is_empty() && n.load < n.capacity
    };
    let share = |n: &NodeInfo| {
        (n.load as f64 / n.capacity.max(1) as f64).max(n.dataplane.pressure as f64 / 1000.0)
    };
    let least = |pool: Vec<&NodeInfo>| {
        pool.into_iter()
            .min_by(|a, b| share(a).total_cmp(&share(b)).then(a.id.cmp(&b.id)))
            .cloned()
    };
    let candidates: Vec<&NodeInfo> = nodes.iter().filter(fits).collect();
    let in_region = |r: &str| -> Vec<&NodeInfo> {
        candidates
            .iter()
            .copied()
            .filter(|n| n.region == r)
            .collect()
    };
    if full {
        let preferred = region.map(in_region).unwrap_or_default();
        let pick = if preferred.is_empty() {
            least(candidates.clone())
        } else {
            least(preferred)
        };
        return pick.map(|n| (n, Why::Capacity));
    }
    let r = region.filter(|r| *r != me.region)?;
    least(in_region(r)).map(|n| (n, Why::Region))
}

impl RoomCtx {
    /// Where `identity`'s new subscriber session goes (D103), and why when not here.
    async fn place_subscriber(&self, identity: &str) -> Option<(NodeInfo, Why)> {
        let c = self.app.cluster.as_ref()?;
        // Without an API key this node cannot call others.
        self.app.node_key.as_ref()?;
        // Counted now, not from the figure published every 500 ms: a burst of joins would all
        // find the old one (D111). The joining participant is one of `participants`.
        let here = self
            .app
            .cascade
            .remote
            .media_load(self.app.registry.participants());
        let full = here > c.config.capacity;
        let region = self
            .media
            .peers
            .get(identity)
            .and_then(|p| p.region.clone());
        if !full && region.as_deref().is_none_or(|r| r == c.config.region) {
            return None;
        }
        let mut nodes = c.live_nodes().await.ok()?;
        let me = nodes.iter().find(|n| n.id == c.node_id())?.clone();
        // Not an edge whose trunk just went under our sessions' relays (D106).
        let now = std::time::Instant::now();
        nodes.retain(|n| !self.app.cascade.remote.avoided(&n.id, now));
        // What we placed lately is not in the edges' published load yet (D111).
        let window = std::time::Duration::from_millis(c.config.lease_ms);
        for n in &mut nodes {
            n.load += self.app.cascade.remote.recent(&n.id, now, window);
        }
        let chosen = choose_edge(&nodes, &me, full, region.as_deref())?;
        self.app
            .cascade
            .remote
            .note_recent(&chosen.0.id, now, window);
        Some(chosen)
    }

    /// Creates `identity`'s new subscriber session `spec` where [`Self::place_subscriber`]
    /// says; an edge that fails to make it leaves it here. Its shard, candidates and node.
    pub(crate) async fn create_subscriber_at_placement(
        &mut self,
        identity: &str,
        spec: CreateSession,
    ) -> Result<(u16, Vec<Candidate>, MediaNode), ApiError> {
        if let Some((node, why)) = self.place_subscriber(identity).await {
            let edge = node.id.clone();
            match self
                .create_session_at(&MediaNode::Edge(Box::new(node)), spec.clone())
                .await
            {
                Ok(made) => {
                    let m = &self.app.cascade.remote.metrics;
                    match why {
                        Why::Capacity => &m.placed_capacity,
                        Why::Region => &m.placed_region,
                    }
                    .fetch_add(1, Ordering::Relaxed);
                    tracing::info!(room = %self.name, identity, %edge, ?why, "subscriber placed on an edge");
                    return Ok(made);
                }
                Err(e) => {
                    tracing::warn!(room = %self.name, identity, %edge, error = %e, "the edge did not make the subscriber session: made here");
                }
            }
        }
        self.create_session_at(&MediaNode::Local, spec).await
    }

    /// `CreateSession` on `node` (recorded) → shard, candidates, and where it is now.
    pub(crate) async fn create_session_at(
        &mut self,
        node: &MediaNode,
        spec: CreateSession,
    ) -> Result<(u16, Vec<Candidate>, MediaNode), ApiError> {
        let edge = match node {
            MediaNode::Local => {
                let (shard, c) = self.create_session(spec).await?;
                return Ok((shard, c, MediaNode::Local));
            }
            MediaNode::Edge(n) => (**n).clone(),
            MediaNode::Remote(r) => r.node.clone(),
        };
        let id = spec.session;
        let made = self.app.remote_create(&edge, spec.clone()).await?;
        let remote = Arc::new(RemoteNode {
            node: edge,
            fingerprint: made.fingerprint,
            http_ip: made.http_ip,
        });
        if !self.app.note_placed(id, &remote.node) {
            let _ = self.remote_op(&remote, close(id)).await;
            return Err(ApiError::new("too_large", "remote session limit reached"));
        }
        self.track_session(id, spec);
        self.media.remote.insert(id, Arc::clone(&remote));
        Ok((made.shard, made.candidates, MediaNode::Remote(remote)))
    }

    /// Our SDP side for a session on `node`.
    pub(crate) fn local_params_at(
        &self,
        node: &MediaNode,
        ufrag: &str,
        pwd: &str,
        candidates: &[Candidate],
    ) -> Result<LocalParams, ApiError> {
        match node {
            MediaNode::Remote(r) => sdp_params(ufrag, pwd, &r.fingerprint, candidates, r.http_ip),
            _ => self.local_params(ufrag, pwd, candidates),
        }
    }

    /// A command about `session` (or a subscription of it), to the dataplane that holds it.
    pub(crate) async fn media_dp(
        &mut self,
        session: SessionId,
        command: Command,
    ) -> Result<ReplyOk, ApiError> {
        let Some(remote) = self.media.remote.get(&session).cloned() else {
            return self.app.dp(command).await;
        };
        let spec = match command {
            Command::Subscribe(spec) => spec,
            Command::Unsubscribe { subscription } => {
                let out = self.remote_op(&remote, command).await;
                self.drop_remote_layer(subscription);
                return out;
            }
            other => return self.remote_op(&remote, other).await,
        };
        let (track, add, layers) = self
            .media
            .tracks
            .iter()
            .find(|(_, t)| t.dp == spec.track)
            .and_then(|(sid, t)| {
                let add = self.media.dp_tracks.get(&t.dp)?.clone();
                Some((sid.clone(), add.clone(), add.layers.len().max(1)))
            })
            .ok_or_else(|| ApiError::not_found("no such track").with_field("track_sid"))?;
        let cap = self
            .media
            .peers
            .values()
            .find(|p| p.subscriber.as_ref().and_then(|s| s.session) == Some(session))
            .and_then(|p| p.layer_caps.get(&track).copied());
        let edge = remote.node.id.clone();
        // The layer received: the one asked for, or lower while its relay is shed (`shed.rs`).
        let layers = self
            .new_remote_layer(&add, &track, layer_of(cap, layers), &edge)
            .await?;
        let r = TrackRef {
            room: self.name.clone(),
            track,
            layer: layers.at,
        };
        let relay = match self.app.open_relay(add, &r, &edge).await {
            Ok(relay) => relay,
            Err(e) => {
                self.release_hold(&layers).await;
                return Err(e);
            }
        };
        let op = json!({"op": "subscribe", "subscribe": spec, "track": r, "relay": relay});
        match self.app.remote_op(&remote.node, op).await {
            Ok(out) => {
                self.note_remote_layer(spec.subscription, layers);
                Ok(out)
            }
            Err(e) => {
                let _ = self.app.release_relay(&r, &edge).await;
                self.release_hold(&layers).await;
                Err(e)
            }
        }
    }

    async fn remote_op(&self, remote: &RemoteNode, command: Command) -> Result<ReplyOk, ApiError> {
        let op = json!({"op": "command", "command": command});
        self.app.remote_op(&remote.node, op).await
    }

    /// A layer cap on a subscription of a remote session: its relay moves to the layer the cap
    /// allows (only the layers the edge's subscribers want cross the trunk); the temporal cap
    /// applies on the edge. `false`: not a remote subscription.
    pub(crate) async fn remote_layer_cap(
        &mut self,
        subscription: SubscriptionId,
        cap: LayerCap,
    ) -> Result<bool, ApiError> {
        let Some(spec) = self.media.subs.get(&subscription).cloned() else {
            return Ok(false);
        };
        let Some(remote) = self.media.remote.get(&spec.session).cloned() else {
            return Ok(false);
        };
        let Some(add) = self
            .media
            .tracks
            .values()
            .find(|t| t.dp == spec.track)
            .and_then(|t| self.media.dp_tracks.get(&t.dp))
        else {
            return Ok(true);
        };
        let layer = layer_of(Some(cap), add.layers.len().max(1));
        self.select_remote_layer(subscription, Some(layer)).await?;
        let temporal = Command::SetLayerCap {
            subscription,
            max_spatial: 0,
            max_temporal: cap.max_temporal,
        };
        self.remote_op(&remote, temporal).await.map(|_| true)
    }

    /// Closes `session` on its edge if it is a remote one, in the background (a frozen edge
    /// would hold the room for the call's timeout).
    pub(crate) fn close_remote_in_background(&self, session: SessionId) {
        if let Some(r) = self.media.remote.get(&session).cloned() {
            let app = Arc::clone(&self.app);
            tokio::spawn(async move {
                let op = json!({"op": "command", "command": close(session)});
                let _ = app.remote_op(&r.node, op).await;
            });
        }
    }

    /// The node holding `identity`'s subscriber session (`media_node` in the participants
    /// API): its id, this node's when local (`None` outside a cluster).
    pub(crate) fn media_node_of(&self, identity: &str) -> Option<String> {
        let here = self.app.cluster.as_ref().map(|c| c.node_id().to_owned());
        self.media
            .peers
            .get(identity)
            .and_then(|p| p.subscriber.as_ref())
            .and_then(|s| s.node.id().map(str::to_owned))
            .or(here)
    }

    /// The edge holding `session` was lost, or the trunk that carried its relays: the
    /// subscriber connection is made again (placed anew: here, or on an edge) and offered
    /// through the renegotiation path.
    pub(crate) async fn remake_subscriber(&mut self, session: SessionId) {
        let identity = self
            .media
            .peers
            .iter()
            .find(|(_, p)| p.subscriber.as_ref().and_then(|s| s.session) == Some(session))
            .map(|(i, _)| i.clone());
        // The edge may be alive (the trunk went, not the node): its session goes.
        self.close_remote_in_background(session);
        self.forget_session(session);
        self.media.subs.retain(|_, s| s.session != session);
        let Some(identity) = identity else {
            return;
        };
        if let Some(sub) = self
            .media
            .peers
            .get_mut(&identity)
            .and_then(|p| p.subscriber.as_mut())
        {
            *sub = super::subscribe::SubPc::fresh();
        }
        let m = &self.app.cascade.remote.metrics;
        m.remade.fetch_add(1, Ordering::Relaxed);
        tracing::info!(room = %self.name, %identity, %session, "subscriber's edge lost: offered anew");
        self.refresh_room().await;
    }
}

impl App {
    /// Home: the edge holding `session` is gone (`cascade/remote.rs`'s janitor).
    pub(crate) async fn remake_subscriber(self: &Arc<Self>, session: SessionId) {
        self.cascade.remote.placed.locked().remove(&session);
        let room = self.session_rooms.locked().get(&session).cloned();
        if let Some(room) = room {
            let _ = self
                .in_existing_room(&room, move |ctx| {
                    Box::pin(async move {
                        ctx.remake_subscriber(session).await;
                        Ok(())
                    })
                })
                .await;
        }
    }
}

/// The relay layer for a cap over a track of `layers` layers: the cap's spatial layer, the
/// top one without a cap.
fn layer_of(cap: Option<LayerCap>, layers: usize) -> u8 {
    let top = u8::try_from(layers.saturating_sub(1)).unwrap_or(u8::MAX);
    cap.map_or(top, |c| c.max_spatial.min(top))
}

fn close(session: SessionId) -> Command {
    Command::CloseSession { session }
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
            dataplane: Default::default(),
            media: "127.0.0.1:1".into(),
        }
    }

    #[test]
    fn edges_are_chosen_by_capacity_then_region() {
        let me = node("a", "eu", 5, 5);
        let nodes = vec![
            me.clone(),
            node("b", "eu", 3, 10),
            node("c", "us", 1, 10),
            node("d", "us", 10, 10),
        ];
        let id = |x: Option<(NodeInfo, Why)>| x.map(|(n, w)| (n.id, w));
        // Full: the least loaded below capacity; of the participant's region first.
        assert_eq!(
            id(choose_edge(&nodes, &me, true, None)),
            Some(("c".into(), Why::Capacity))
        );
        assert_eq!(
            id(choose_edge(&nodes, &me, true, Some("eu"))),
            Some(("b".into(), Why::Capacity))
        );
        // Not full: only another region's node, never a full one.
        assert_eq!(id(choose_edge(&nodes, &me, false, Some("eu"))), None);
        assert_eq!(id(choose_edge(&nodes, &me, false, None)), None);
        assert_eq!(
            id(choose_edge(&nodes, &me, false, Some("us"))),
            Some(("c".into(), Why::Region))
        );
        // Nobody has room: local.
        let full = vec![me.clone(), node("b", "eu", 10, 10)];
        assert_eq!(id(choose_edge(&full, &me, true, None)), None);
        // A node without a media address is no edge.
        let mut bare = node("b", "eu", 0, 10);
        bare.media.clear();
        assert_eq!(id(choose_edge(&[me.clone(), bare], &me, true, None)), None);
    }

    #[test]
    fn dataplane_id_spans_start_at_random_below_2_pow_52() {
        let starts: Vec<u64> = (0..64).map(|_| super::super::dp_id_start()).collect();
        for s in &starts {
            assert!((1 << 40..(1 << 52) - (1 << 40)).contains(s), "{s}");
        }
        let mut unique = starts.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), starts.len());
    }

    #[test]
    fn the_relay_layer_follows_the_cap() {
        assert_eq!(layer_of(None, 3), 2);
        assert_eq!(layer_of(None, 1), 0);
        let cap = |s| LayerCap {
            max_spatial: s,
            max_temporal: 2,
        };
        assert_eq!(layer_of(Some(cap(0)), 3), 0);
        assert_eq!(layer_of(Some(cap(9)), 3), 2);
    }
}
