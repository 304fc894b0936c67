//! Congestion control as the control daemon shows it (docs/congestion.md, docs/api.md):
//! per-session stats on demand (`GET /api/rooms/{room}/stats`: the estimate and what set it,
//! the layer allocated per subscription, forwarder drops by reason), the low-cardinality
//! aggregates in `/metrics` (forwarder drops by reason, paused subscriptions, probes sent),
//! and the `stream_state` message to a client whose subscription the dataplane's allocator
//! paused or resumed (only with `dataplane.congestion_pause`).

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};
use sluice_proto::{
    Command, Counters, ReplyOk, SessionId, SessionStatsReport, StreamState, SubscriptionId, TrackId,
};

use super::api::admin;
use super::error::ApiError;
use super::hub::ClientMsg;
use super::App;
use crate::link::LinkError;
use crate::lock::Locked;
use crate::signal::ServerMessage;

pub(super) fn routes() -> Router<Arc<App>> {
    Router::new().route("/api/rooms/{room}/stats", get(room_stats))
}

/// One participant's sessions: (identity, participant sid, [(pc, session)]).
type PeerSessions = (String, String, Vec<(&'static str, SessionId)>);

async fn room_stats(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(room): Path<String>,
    Query(q): Query<BTreeMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    admin(&app, &headers)?;
    if let Some(k) = q.keys().find(|k| k.as_str() != "identity") {
        return Err(ApiError::invalid(
            k.clone(),
            "unknown query parameter (only identity)",
        ));
    }
    let identity = q.get("identity").cloned();
    // The room's actor lists its sessions; the dataplane round trips happen outside it, so a
    // stats request never holds the room.
    let want = identity.clone();
    let (peers, sids, remote) = app
        .in_existing_room(&room, move |ctx| {
            Box::pin(async move {
                let media = &ctx.media;
                let mut peers: Vec<PeerSessions> = Vec::new();
                for (who, peer) in &media.peers {
                    if want.as_ref().is_some_and(|i| i != who) {
                        continue;
                    }
                    let mut sessions = Vec::new();
                    if let Some(p) = &peer.publisher {
                        sessions.push(("publisher", p.session));
                    }
                    if let Some(s) = peer.subscriber.as_ref().and_then(|s| s.session) {
                        sessions.push(("subscriber", s));
                    }
                    peers.push((who.clone(), peer.participant_sid.clone(), sessions));
                }
                let sids: HashMap<TrackId, String> = media
                    .tracks
                    .iter()
                    .map(|(sid, t)| (t.dp, sid.clone()))
                    .collect();
                // Sessions on an edge (`media/node.rs`): asked there; their subscriptions
                // name the edge's tracks, mapped back to ours.
                let remote: HashMap<SessionId, Remote> = media
                    .remote
                    .iter()
                    .map(|(s, r)| {
                        let subs = media
                            .subs
                            .iter()
                            .filter(|(_, spec)| spec.session == *s)
                            .map(|(id, spec)| (*id, spec.track))
                            .collect();
                        (*s, (r.node.clone(), subs))
                    })
                    .collect();
                Ok((peers, sids, remote))
            })
        })
        .await?;
    if let Some(i) = &identity {
        if peers.is_empty() {
            return Err(
                ApiError::not_found(format!("participant {i:?} has no media in {room:?}"))
                    .with_field("identity"),
            );
        }
    }
    let link = app.link.as_ref();
    let mut participants = Vec::new();
    for (identity, sid, sessions) in peers {
        let mut out = Vec::new();
        for (pc, session) in sessions {
            if let Some((node, subs)) = remote.get(&session) {
                let op = json!({"op": "command", "command": Command::SessionStats { session }});
                if let Ok(ReplyOk::SessionStats(mut r)) = app.remote_op(node, op).await {
                    for s in &mut r.subscriptions {
                        s.track = subs.get(&s.subscription).copied().unwrap_or(s.track);
                    }
                    out.push(session_json(pc, &r, &sids));
                }
                continue;
            }
            let link = link.ok_or_else(|| ApiError::from(LinkError::Unavailable))?;
            match link.request(Command::SessionStats { session }).await {
                Ok(ReplyOk::SessionStats(r)) => out.push(session_json(pc, &r, &sids)),
                Ok(other) => {
                    return Err(ApiError::new(
                        "internal",
                        format!("dataplane answered session_stats with {other:?}"),
                    ))
                }
                // Closed meanwhile: leave it out.
                Err(LinkError::Failed(b)) if b.code == sluice_proto::ErrorCode::NotFound => {}
                Err(e) => return Err(e.into()),
            }
        }
        participants.push(json!({ "identity": identity, "sid": sid, "sessions": out }));
    }
    participants.sort_by(|a, b| a["identity"].as_str().cmp(&b["identity"].as_str()));
    Ok(Json(json!({ "room": room, "participants": participants })))
}

/// A session on an edge: the node, and its subscriptions' tracks as this node names them.
type Remote = (crate::cluster::NodeInfo, HashMap<SubscriptionId, TrackId>);

fn session_json(pc: &str, r: &SessionStatsReport, sids: &HashMap<TrackId, String>) -> Value {
    let sid = |t: &TrackId| sids.get(t).cloned();
    json!({
        "pc": pc,
        "session": r.session.0,
        "worker": r.worker,
        "connected": r.connected,
        "estimate_bps": r.estimate_bps,
        "estimate_source": r.estimate_source,
        "remb_cap_bps": r.remb_cap_bps,
        "acked_bps": r.acked_bps,
        "sent_bps": r.sent_bps,
        "pacing_bps": r.pacing_bps,
        "rtt_ms": r.rtt_ms,
        "probe_packets": r.probe_packets,
        "probe_bytes": r.probe_bytes,
        "forwarded": r.forwarded,
        "retransmitted": r.retransmitted,
        "forward_drops": r.forward_drops,
        "subscriptions": r.subscriptions.iter().map(|s| json!({
            "track": sid(&s.track),
            "kind": s.kind,
            "allocated_layer": s.allocated_layer,
            "current_layer": s.current_layer,
            "target_layer": s.target_layer,
            "paused": s.paused,
            "muted": s.muted,
            "layer_bps": s.layer_bps,
        })).collect::<Vec<_>>(),
        "published": r.tracks.iter().map(|t| json!({
            "track": sid(&t.track),
            "layer_bps": t.layer_bps,
        })).collect::<Vec<_>>(),
    })
}

impl App {
    /// The dataplane paused or resumed `subscription` of `session`: its room's actor tells the
    /// participant (`stream_state`, docs/protocol.md) over its WebSocket, when it has one.
    pub(super) async fn stream_state(
        self: &Arc<Self>,
        session: SessionId,
        subscription: SubscriptionId,
        state: StreamState,
    ) {
        let room = self.session_rooms.locked().get(&session).cloned();
        let Some(room) = room else {
            return;
        };
        let state = match state {
            StreamState::Paused => "paused",
            StreamState::Active => "active",
        };
        let _ = self
            .in_existing_room(&room, move |ctx| {
                Box::pin(async move {
                    let media = &ctx.media;
                    let track = media.subs.get(&subscription).map(|s| s.track);
                    let sid = track.and_then(|t| {
                        media
                            .tracks
                            .iter()
                            .find(|(_, m)| m.dp == t)
                            .map(|(sid, _)| sid.clone())
                    });
                    let peer = media.peers.iter().find(|(_, p)| {
                        p.signaling
                            && p.subscriber.as_ref().and_then(|s| s.session) == Some(session)
                    });
                    if let (Some((identity, _)), Some(track_sid)) = (peer, sid) {
                        tracing::info!(room = %ctx.name, %identity, track = %track_sid, state, "stream state");
                        let msg = ServerMessage::StreamState {
                            track_sid,
                            state,
                            reason: "bandwidth",
                        };
                        ctx.app.hub.send_to(&ctx.name, identity, ClientMsg::Msg(msg));
                    }
                    Ok(())
                })
            })
            .await;
    }
}

/// Whether a worker counter is one of congestion control's (exported by [`write_metrics`],
/// not as a worker drop).
pub(super) fn is_congestion_counter(name: &str) -> bool {
    name.starts_with("forward_drop_") || name.starts_with("probe_") || name == "bwe_paused_tracks"
}

/// The congestion aggregates of every worker, summed (low cardinality: one series per drop
/// reason, no per-session labels).
pub(super) fn write_metrics(out: &mut String, stats: &BTreeMap<u16, Counters>) {
    let sum = |k: &str| -> u64 { stats.values().filter_map(|c| c.dropped.get(k)).sum() };
    let mut reasons: Vec<&str> = stats
        .values()
        .flat_map(|c| c.dropped.keys())
        .filter_map(|k| k.strip_prefix("forward_drop_"))
        .collect();
    reasons.sort_unstable();
    reasons.dedup();
    let _ = writeln!(out, "# HELP sluice_forwarder_dropped_total Packets the forwarders did not send to a subscriber, by reason (paused, waiting_for_keyframe, not_current_layer, temporal_layer, padding, duplicate, too_late, malformed).\n# TYPE sluice_forwarder_dropped_total counter");
    for r in reasons {
        let _ = writeln!(
            out,
            "sluice_forwarder_dropped_total{{reason=\"{r}\"}} {}",
            sum(&format!("forward_drop_{r}"))
        );
    }
    let _ = writeln!(out, "# HELP sluice_bwe_paused_subscriptions Subscriptions the allocators have paused for bandwidth now (only with dataplane.congestion_pause).\n# TYPE sluice_bwe_paused_subscriptions gauge\nsluice_bwe_paused_subscriptions {}", sum("bwe_paused_tracks"));
    let _ = writeln!(out, "# HELP sluice_probe_packets_total Bandwidth probe packets sent.\n# TYPE sluice_probe_packets_total counter\nsluice_probe_packets_total {}", sum("probe_packets"));
    let _ = writeln!(out, "# HELP sluice_probe_bytes_total Bandwidth probe bytes sent.\n# TYPE sluice_probe_bytes_total counter\nsluice_probe_bytes_total {}", sum("probe_bytes"));
}
