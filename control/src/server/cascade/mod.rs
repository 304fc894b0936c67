//! Cascade orchestration (issue 16, docs/cluster.md "Cascading", D95–D98): the control daemons
//! open trunks between their dataplanes and relay tracks over them.
//!
//! The room's state stays in its actor on the home; only media crosses. An **edge** node that
//! wants a track of a room homed elsewhere asks the track's node (the home, where its
//! publisher is) for a relay over the node-to-node HTTP API (`http.rs`):
//!
//! - **Trunks** ([`App::ensure_trunk`]): one trunk session per peer node, toward the peer
//!   dataplane's media address from the registry, SRTP keyed from the shared secret file and
//!   `(this node, peer, epoch)`; the epoch comes from Redis (`INCR sl:trunk:<a>:<b>`), so a
//!   re-created trunk never reuses a key. The peer is asked to create the mirror session with
//!   the same epoch; of two epochs the higher wins. At most [`MAX_TRUNKS`] trunks.
//! - **Relays** ([`App::acquire_relay`]): one `relay_track` per (track, layer, edge), counted
//!   per user; the last release leaves it running `cluster.relay_grace_ms` (default 5 s), then
//!   it is unsubscribed. The edge ingests it as a track of its trunk session with the relay's
//!   SSRC ([`App::acquire_ingest`], `edge.rs`), counted the same way, and local sessions
//!   subscribe to that track as to any other.
//! - **Janitor** (every 250 ms): relays and ingests past their grace go; a trunk that carries
//!   nothing for the grace is closed; a trunk whose peer left the registry (lease expired:
//!   `kill -9`) or came back with another boot is torn down with everything on it.
//! - **Silence** (`silence.rs`): a trunk the dataplane reports silent (a cut path, the peer
//!   alive to Redis) is torn down and set up again with backoff; edge viewers get their relay
//!   back.

mod edge;
mod http;
pub(crate) mod remote;
mod remote_events;
mod remote_home;
mod silence;
mod state;
pub(crate) mod trunk_cc;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sluice_proto::{
    AddTrack, Codec, Command, CreateSession, DtlsRole, ExtIds, IceParams, MediaKind, Quality,
    RelayTrack, ReplyOk, SessionId, Source, SubscriptionId, TransportMode, TrunkCrypto,
};

pub(crate) use http::routes;
pub(crate) use state::Cascade;
use state::{RelayKey, Table, Trunk};

use super::error::ApiError;
use super::App;
use crate::cluster::NodeInfo;

/// Trunks one node holds at most (one per peer; the registry lists at most 64 nodes).
pub(crate) const MAX_TRUNKS: usize = crate::cluster::MAX_NODES;
/// Relays one node sends and ingests it takes at most (the dataplane bounds each trunk at 64
/// of each; this bounds the control daemon's tables whatever peers ask).
pub(crate) const MAX_RELAYS: usize = 4096;
/// Edge viewers one node holds at most.
pub(crate) const MAX_VIEWERS: usize = 4096;
/// A trunk's cap: its estimate (transport-cc, D108) never goes above it.
const TRUNK_BITRATE_BPS: u64 = 200_000_000;
const JANITOR_PERIOD: Duration = Duration::from_millis(250);

/// What the edge needs to ingest a relay: the track as the home's dataplane has it, with the
/// relay's SSRC as its one layer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct RelaySpec {
    pub(crate) ssrc: u32,
    /// The relay's RTX SSRC (video; its payload type is `codec.rtx_payload_type`): the edge's
    /// NACKs over the trunk are answered with RTX. Absent from an older home: plain resends.
    #[serde(default)]
    pub(crate) rtx_ssrc: Option<u32>,
    pub(crate) kind: MediaKind,
    pub(crate) codec: Codec,
    pub(crate) e2ee: bool,
    pub(crate) source: Source,
    /// The trunk's epoch the relay was set up on.
    pub(crate) epoch: u64,
}

/// The room and track a relay is for, as the edge names it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub(crate) struct TrackRef {
    pub(crate) room: String,
    /// The room's track sid (`TR_n`).
    pub(crate) track: String,
    #[serde(default)]
    pub(crate) layer: u8,
}

/// A relay's RTX SSRC and payload type: video only; the publisher's RTX payload type, or one
/// the media does not use (both ends of a trunk are ours); the SSRC apart from every relay's
/// media SSRC (`0x51…` vs `0x52…` for ids of one control process less than 2^24 apart, D105).
fn relay_rtx(kind: MediaKind, codec: &Codec, sub: SubscriptionId) -> (Option<u32>, Option<u8>) {
    if kind != MediaKind::Video {
        return (None, None);
    }
    let pt = codec.payload_type;
    let rtx_pt = codec
        .rtx_payload_type
        .filter(|&r| r != pt)
        .unwrap_or(if pt == 127 { 126 } else { 127 });
    (Some(0x5200_0000 ^ (sub.0 as u32)), Some(rtx_pt))
}

fn unavailable(msg: impl Into<String>) -> ApiError {
    ApiError::new("unavailable", msg).with_field("cluster")
}

impl App {
    fn cluster_or_err(&self) -> Result<&Arc<crate::cluster::Cluster>, ApiError> {
        self.cluster
            .as_ref()
            .ok_or_else(|| ApiError::rejected("not a cluster node").with_field("cluster"))
    }

    /// The live node `id` (registry), with a media address.
    async fn peer(&self, id: &str) -> Result<(NodeInfo, SocketAddr), ApiError> {
        let cluster = self.cluster_or_err()?;
        if id == cluster.node_id() || !crate::cluster::name_ok(id) {
            return Err(ApiError::invalid("node", "not another node's id"));
        }
        let nodes = cluster
            .live_nodes()
            .await
            .map_err(|e| unavailable(e.to_string()))?;
        let node = nodes.into_iter().find(|n| n.id == id).ok_or_else(|| {
            ApiError::not_found(format!("node {id:?} is not live")).with_field("node")
        })?;
        let media = node.media.parse().map_err(|_| {
            ApiError::rejected(format!("node {id:?} publishes no dataplane media address"))
                .with_field("node")
        })?;
        Ok((node, media))
    }

    /// Creates this side's trunk session toward `peer` with `epoch`.
    async fn create_trunk_session(
        &self,
        peer: &str,
        media: SocketAddr,
        epoch: u64,
    ) -> Result<SessionId, ApiError> {
        let cluster = self.cluster_or_err()?;
        let session = SessionId(self.next_dp_id());
        self.dp_create_session(CreateSession {
            session,
            ice: IceParams {
                ufrag: format!("trk{}", session.0),
                pwd: "sluiceTrunkUnusedPassword0".into(),
                remote_ufrag: None,
                remote_pwd: None,
            },
            remote_fingerprint: None,
            dtls_role: DtlsRole::Server,
            shard_hint: None,
            mode: TransportMode::Trunk {
                remote: media,
                local_port: None,
                crypto: TrunkCrypto::Srtp {
                    local_node: cluster.node_id().to_owned(),
                    remote_node: peer.to_owned(),
                    epoch,
                },
                silence_ms: None,
            },
            data: None,
            quality: Quality {
                max_bitrate_bps: TRUNK_BITRATE_BPS,
                priority: 255,
            },
        })
        .await?;
        Ok(session)
    }

    /// This node's trunk toward `peer`, created (with the peer's mirror) if there is none.
    pub(crate) async fn ensure_trunk(self: &Arc<Self>, peer: &str) -> Result<Trunk, ApiError> {
        if let Some(t) = self.cascade.state.lock().await.trunks.get(peer) {
            return Ok(t.clone());
        }
        let (node, media) = self.peer(peer).await?;
        let epoch = self.next_epoch(peer).await?;
        let trunk = {
            let mut st = self.cascade.state.lock().await;
            if let Some(t) = st.trunks.get(peer) {
                return Ok(t.clone()); // made meanwhile (a mirror request or another caller)
            }
            self.cascade.admit(&st, Table::Trunks, MAX_TRUNKS)?;
            let session = self.create_trunk_session(peer, media, epoch).await?;
            let t = Trunk::new(session, epoch, node.boot.clone());
            st.trunks.insert(peer.to_owned(), t.clone());
            self.cascade.publish_gauges(&st);
            t
        };
        match http::ask_mirror(self, &node, epoch).await {
            Ok(theirs) if theirs == epoch => Ok(trunk),
            // Both ends set the pair up at once and the peer's epoch is higher: take it.
            Ok(theirs) if theirs > epoch => self.mirror_trunk(peer, theirs).await,
            Ok(_) | Err(_) => {
                self.drop_trunk_of_epoch(peer, epoch).await;
                Err(unavailable(format!(
                    "node {peer:?} did not set up its side of the trunk"
                )))
            }
        }
    }

    /// The peer asks for the mirror of its trunk: this node's side with the same `epoch`. A
    /// lower epoch than ours is refused (the answer names ours, which the peer then takes).
    pub(crate) async fn mirror_trunk(
        self: &Arc<Self>,
        peer: &str,
        epoch: u64,
    ) -> Result<Trunk, ApiError> {
        let (node, media) = self.peer(peer).await?;
        let mut st = self.cascade.state.lock().await;
        if let Some(t) = st.trunks.get(peer) {
            if t.epoch >= epoch {
                return Ok(t.clone());
            }
        }
        if !st.trunks.contains_key(peer) {
            self.cascade.admit(&st, Table::Trunks, MAX_TRUNKS)?;
        }
        // The old session goes first (one session per remote address); what rode it goes
        // with it (a re-keyed trunk starts empty).
        if let Some(old) = st.trunks.remove(peer) {
            let _ = self
                .dp(Command::CloseSession {
                    session: old.session,
                })
                .await;
            st.forget_peer(peer);
            self.cascade.remote.relays_lost(peer);
            self.cascade.count_teardown("rekey");
        }
        let session = match self.create_trunk_session(peer, media, epoch).await {
            Ok(s) => s,
            Err(e) => {
                self.cascade.publish_gauges(&st);
                return Err(e);
            }
        };
        let t = Trunk::new(session, epoch, node.boot.clone());
        st.trunks.insert(peer.to_owned(), t.clone());
        self.cascade.publish_gauges(&st);
        // The peer re-made the pair (its side went silent, or was dropped): our viewers that
        // lost their relay with the old side get it back (`silence.rs`).
        if st.viewers.values().any(|v| v.home == peer && v.lost) {
            tokio::spawn(self.restore_viewers(peer.to_owned()));
        }
        Ok(t)
    }

    /// A fresh epoch for the pair (`INCR` in Redis: never reused, whichever end restarts).
    async fn next_epoch(&self, peer: &str) -> Result<u64, ApiError> {
        let cluster = self.cluster_or_err()?;
        let me = cluster.node_id();
        let (a, b) = if me < peer { (me, peer) } else { (peer, me) };
        let mut con = cluster.connection();
        redis::cmd("INCR")
            .arg(format!("sl:trunk:{a}:{b}"))
            .query_async::<u64>(&mut con)
            .await
            .map_err(|e| unavailable(format!("cluster store: {e}")))
    }

    /// [`App::drop_trunk`] only if the trunk is still the one of `epoch` (a mirror request may
    /// have replaced it meanwhile with a good one).
    async fn drop_trunk_of_epoch(&self, peer: &str, epoch: u64) {
        let current = self
            .cascade
            .state
            .lock()
            .await
            .trunks
            .get(peer)
            .map(|t| t.epoch);
        if current == Some(epoch) {
            self.drop_trunk(peer, "setup_failed").await;
        }
    }

    /// The node was fenced (lost its lease): its peers already dropped their sides (another
    /// boot), so every trunk here is closed with what rode it.
    pub(crate) async fn cascade_fenced(&self) {
        let peers: Vec<String> = self
            .cascade
            .state
            .lock()
            .await
            .trunks
            .keys()
            .cloned()
            .collect();
        for peer in peers {
            self.drop_trunk(&peer, "fenced").await;
        }
    }

    /// Closes the trunk toward `peer` and forgets what rode it.
    pub(crate) async fn drop_trunk(&self, peer: &str, why: &'static str) {
        let mut st = self.cascade.state.lock().await;
        let Some(t) = st.trunks.remove(peer) else {
            return;
        };
        let _ = self.dp(Command::CloseSession { session: t.session }).await;
        st.forget_peer(peer);
        if why != "idle" {
            // Idle: it carried no relay, so no remote session lost one.
            self.cascade.remote.relays_lost(peer);
        }
        self.cascade.count_teardown(why);
        self.cascade.publish_gauges(&st);
        tracing::info!(peer, why, epoch = t.epoch, "cascade: trunk closed");
    }

    /// On the track's node: relays `r`'s layer to `edge` (creating the trunk and the relay if
    /// needed) and counts one more user.
    pub(crate) async fn acquire_relay(
        self: &Arc<Self>,
        r: &TrackRef,
        edge: &str,
    ) -> Result<RelaySpec, ApiError> {
        let result = self.try_acquire_relay(r, edge).await;
        let m = &self.cascade.metrics;
        match &result {
            Ok(_) => m.relay_acquires.fetch_add(1, Ordering::Relaxed),
            Err(_) => m.relay_failures.fetch_add(1, Ordering::Relaxed),
        };
        result
    }

    async fn try_acquire_relay(
        self: &Arc<Self>,
        r: &TrackRef,
        edge: &str,
    ) -> Result<RelaySpec, ApiError> {
        let sid = r.track.clone();
        let layer = r.layer;
        let spec: AddTrack = self
            .in_local_room(&r.room, move |ctx| {
                Box::pin(async move {
                    let t = ctx.media.tracks.get(&sid).ok_or_else(|| {
                        ApiError::not_found("no such track in the room").with_field("track")
                    })?;
                    let spec = ctx.media.dp_tracks.get(&t.dp).cloned().ok_or_else(|| {
                        ApiError::not_found("track not on this node's dataplane")
                            .with_field("track")
                    })?;
                    if usize::from(layer) >= spec.layers.len().max(1) {
                        return Err(ApiError::invalid("layer", "the track has no such layer"));
                    }
                    Ok(spec)
                })
            })
            .await?;
        self.open_relay(spec, r, edge).await
    }

    /// The relay of `r` (whose track the dataplane holds as `spec`) to `edge`, opened if there
    /// is none, one more user counted. The room's actor calls this directly for its remote
    /// subscriber sessions (`media/node.rs`): it cannot wait for itself through `in_local_room`.
    pub(crate) async fn open_relay(
        self: &Arc<Self>,
        spec: AddTrack,
        r: &TrackRef,
        edge: &str,
    ) -> Result<RelaySpec, ApiError> {
        if usize::from(r.layer) >= spec.layers.len().max(1) {
            return Err(ApiError::invalid("layer", "the track has no such layer"));
        }
        let layer = r.layer;
        let trunk = self.ensure_trunk(edge).await?;
        let key = RelayKey {
            track: r.clone(),
            edge: edge.to_owned(),
        };
        let mut st = self.cascade.state.lock().await;
        // The trunk may have been re-keyed or dropped since: relay on the current one.
        let Some(current) = st.trunks.get(edge).cloned() else {
            return Err(unavailable("trunk closed during setup"));
        };
        debug_assert!(current.epoch >= trunk.epoch);
        if let Some(relay) = st.relays.get_mut(&key) {
            relay.users = relay.users.saturating_add(1);
            relay.idle_since = None;
            return Ok(relay.spec.clone());
        }
        self.cascade.admit(&st, Table::Relays, MAX_RELAYS)?;
        let sub = SubscriptionId(self.next_dp_id());
        // The relay's id is unique on this node, so its SSRCs are unique on the trunk. Video
        // relays repair with RTX (the publisher's RTX payload type, or a free one: both ends
        // of a trunk are ours); header extensions are the trunk's own (ExtIds::TRUNK, D108).
        let ssrc = 0x5100_0000 ^ (sub.0 as u32);
        let pt = spec.codec.payload_type;
        let (rtx_ssrc, rtx_pt) = relay_rtx(spec.kind, &spec.codec, sub);
        self.dp(Command::RelayTrack(RelayTrack {
            subscription: sub,
            session: current.session,
            track: spec.track,
            layer,
            ssrc,
            rtx_ssrc,
            payload_type: pt,
            rtx_payload_type: rtx_pt,
            ext_ids: ExtIds::default(),
        }))
        .await?;
        let out = RelaySpec {
            ssrc,
            rtx_ssrc,
            kind: spec.kind,
            codec: Codec {
                rtx_payload_type: rtx_pt,
                ..spec.codec.clone()
            },
            e2ee: spec.e2ee,
            source: spec.source,
            epoch: current.epoch,
        };
        st.relays
            .insert(key, state::Relay::new(sub, spec.track, out.clone()));
        self.cascade
            .metrics
            .relay_setups
            .fetch_add(1, Ordering::Relaxed);
        self.cascade.publish_gauges(&st);
        tracing::info!(edge, track = %r.track, layer, ssrc, "cascade: relay opened");
        Ok(out)
    }

    /// One user fewer of the relay; the last one starts its grace period.
    pub(crate) async fn release_relay(&self, r: &TrackRef, edge: &str) -> Result<(), ApiError> {
        let mut st = self.cascade.state.lock().await;
        let key = RelayKey {
            track: r.clone(),
            edge: edge.to_owned(),
        };
        let relay = st
            .relays
            .get_mut(&key)
            .ok_or_else(|| ApiError::not_found("no such relay").with_field("track"))?;
        relay.users = relay.users.saturating_sub(1);
        if relay.users == 0 {
            relay.idle_since = Some(Instant::now());
        }
        Ok(())
    }

    /// Dataplane sessions the cascade holds (the resync keeps them).
    pub(crate) async fn cascade_sessions(&self) -> BTreeSet<SessionId> {
        let st = self.cascade.state.lock().await;
        st.trunks
            .values()
            .map(|t| t.session)
            .chain(st.viewers.keys().copied())
            .chain(self.held_sessions().await)
            .collect()
    }

    /// The dataplane restarted: nothing of ours is left in it. Each peer we had a trunk with
    /// is told to drop its side (and the relays it sent us), so the next setup starts afresh
    /// with a new epoch.
    pub(crate) async fn cascade_reset(self: &Arc<Self>) {
        let peers: Vec<String> = {
            let mut st = self.cascade.state.lock().await;
            let peers = st.trunks.keys().cloned().collect();
            *st = state::State::default();
            self.cascade.publish_gauges(&st);
            peers
        };
        for peer in peers {
            let app = Arc::clone(self);
            tokio::spawn(async move {
                if let Ok((node, _)) = app.peer(&peer).await {
                    if let Err(e) = http::ask_close(&app, &node).await {
                        tracing::warn!(peer, error = %e, "cascade: peer did not drop its trunk");
                    }
                }
            });
        }
    }

    /// Starts the janitor (cluster nodes only).
    pub(crate) fn start_cascade(self: &Arc<Self>) {
        let Some(cluster) = self.cluster.clone() else {
            return;
        };
        self.start_shed_moves();
        let app = Arc::clone(self);
        tokio::spawn(async move {
            let grace = Duration::from_millis(cluster.config.relay_grace_ms);
            while !cluster.is_stopped() {
                tokio::time::sleep(JANITOR_PERIOD).await;
                app.janitor(&cluster, grace).await;
            }
        });
    }

    async fn janitor(self: &Arc<Self>, cluster: &crate::cluster::Cluster, grace: Duration) {
        self.poll_trunk_links().await;
        if self.cascade.state.lock().await.trunks.is_empty() && !self.has_remote_sessions().await {
            return;
        }
        // Peers that left the registry (lease expired) or restarted: tear their trunks down,
        // and what this node's remote sessions had there (`remote.rs`).
        if let Ok(nodes) = cluster.live_nodes().await {
            self.remote_janitor(&nodes).await;
            let gone: Vec<String> = {
                let st = self.cascade.state.lock().await;
                st.trunks
                    .iter()
                    .filter(|(peer, t)| !nodes.iter().any(|n| &n.id == *peer && n.boot == t.boot))
                    .map(|(peer, _)| peer.clone())
                    .collect()
            };
            for peer in gone {
                self.drop_trunk(&peer, "peer_lost").await;
            }
        }
        let now = Instant::now();
        let (relays, ingests, idle) = self.cascade.state.lock().await.expired(now, grace);
        for sub in relays {
            let _ = self.dp(Command::Unsubscribe { subscription: sub }).await;
            tracing::info!(relay = %sub, "cascade: relay closed after its grace period");
        }
        for track in ingests {
            let _ = self.dp(Command::RemoveTrack { track }).await;
        }
        for peer in idle {
            self.drop_trunk(&peer, "idle").await;
        }
        let st = self.cascade.state.lock().await;
        self.cascade.publish_gauges(&st);
    }

    /// Counters of the trunks (`GET /internal/cascade`): what each carried, from the dataplane.
    pub(crate) async fn cascade_report(&self) -> serde_json::Value {
        let (trunks, relays, ingests) = {
            let st = self.cascade.state.lock().await;
            (
                st.trunks.clone(),
                st.relays
                    .iter()
                    .map(|(k, r)| {
                        serde_json::json!({"room": k.track.room, "track": k.track.track,
                            "layer": k.track.layer, "edge": k.edge, "dp_track": r.track,
                            "ssrc": r.spec.ssrc, "rtx_ssrc": r.spec.rtx_ssrc, "users": r.users,
                            "shed": self.cascade.cc.is_shed(r.sub)})
                    })
                    .collect::<Vec<_>>(),
                st.ingests
                    .iter()
                    .map(|(k, i)| {
                        serde_json::json!({"home": k.home, "room": k.track.room,
                            "track": k.track.track, "layer": k.track.layer, "ssrc": i.spec.ssrc,
                            "users": i.users})
                    })
                    .collect::<Vec<_>>(),
            )
        };
        let mut out = Vec::new();
        for (peer, t) in trunks {
            let stats = match self.dp(Command::SessionStats { session: t.session }).await {
                Ok(ReplyOk::SessionStats(s)) => serde_json::json!({
                    "forwarded": s.forwarded, "retransmitted": s.retransmitted,
                    "sent_bps": s.sent_bps, "estimate_bps": s.estimate_bps,
                    "estimate_source": s.estimate_source, "rtt_ms": s.rtt_ms,
                    "fraction_lost": s.fraction_lost, "reported_received": s.reported_received,
                    "reported_lost": s.reported_lost}),
                _ => serde_json::Value::Null,
            };
            out.push(serde_json::json!({"peer": peer, "epoch": t.epoch,
                "session": t.session, "stats": stats}));
        }
        serde_json::json!({"trunks": out, "relays": relays, "ingests": ingests})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn codec(pt: u8, rtx: Option<u8>) -> Codec {
        Codec {
            name: "VP8".into(),
            payload_type: pt,
            clock_rate: 90_000,
            rtx_payload_type: rtx,
        }
    }

    #[test]
    fn video_relays_get_an_rtx_ssrc_and_payload_type_audio_none() {
        let sub = SubscriptionId(7);
        assert_eq!(
            relay_rtx(MediaKind::Video, &codec(96, Some(97)), sub),
            (Some(0x5200_0007), Some(97))
        );
        // No RTX from the publisher, or a clash with the media type: a free one.
        assert_eq!(
            relay_rtx(MediaKind::Video, &codec(96, None), sub).1,
            Some(127)
        );
        assert_eq!(
            relay_rtx(MediaKind::Video, &codec(127, None), sub).1,
            Some(126)
        );
        assert_eq!(
            relay_rtx(MediaKind::Video, &codec(100, Some(100)), sub).1,
            Some(127)
        );
        let opus = Codec {
            name: "opus".into(),
            ..codec(111, None)
        };
        assert_eq!(relay_rtx(MediaKind::Audio, &opus, sub), (None, None));
        // Never a relay's media SSRC (0x51… for ids below 2^24).
        for id in [1u64, 2, 0xff_ffff] {
            let (rtx, _) = relay_rtx(MediaKind::Video, &codec(96, None), SubscriptionId(id));
            assert_eq!(rtx.map(|s| s >> 24), Some(0x52));
        }
    }
}
