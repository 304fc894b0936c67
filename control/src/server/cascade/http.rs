//! The node-to-node cascade API (docs/api.md "Cascade (internal)"), admin token required
//! (admin tokens are valid cluster-wide; a node mints its own from its first API key), and the
//! calls one node makes to another.
//!
//! - `POST /internal/cascade/trunks {node, epoch}`: set up this node's side of `node`'s trunk.
//! - `POST /internal/cascade/trunks/close {node}`: `node` lost its side (its dataplane
//!   restarted): drop ours and what rode it.
//! - `POST /internal/cascade/relays {room, track, layer, edge}`: on the track's node, relay the
//!   layer to `edge` (one more user) → the spec the edge ingests.
//! - `POST /internal/cascade/relays/release {room, track, layer, edge}`: one user fewer.
//! - `POST /internal/cascade/viewers {room, track, layer, remote}`: on an edge, a plain-RTP
//!   session toward `remote` subscribed to a track of a room homed elsewhere.
//! - `DELETE /internal/cascade/viewers/{session}`; `GET /internal/cascade`: trunks and counters.
//! - `POST /internal/cascade/sessions`, `/sessions/op`, `/events`: remote subscriber sessions
//!   (`remote.rs`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::body::Bytes;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use http_body_util::{BodyExt, Full, Limited};
use serde::Deserialize;
use serde_json::{json, Value};
use sluice_proto::{Command, SessionId, Subscribe, SubscriptionId, TransportMode};

use super::{unavailable, RelaySpec, TrackRef};
use crate::auth::{mint_admin, unix_seconds, AdminClaims};
use crate::cluster::{NodeInfo, Placement};
use crate::server::api::{admin, body};
use crate::server::error::ApiError;
use crate::server::App;

const PEER_TIMEOUT: Duration = Duration::from_secs(3);
const MAX_PEER_ANSWER: usize = 64 * 1024;

pub(crate) fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/internal/cascade", get(report))
        .route("/internal/cascade/trunks", post(trunk))
        .route("/internal/cascade/trunks/close", post(trunk_close))
        .route("/internal/cascade/relays", post(relay))
        .route("/internal/cascade/relays/release", post(release))
        .route("/internal/cascade/viewers", post(viewer))
        .route("/internal/cascade/viewers/{session}", delete(viewer_delete))
        .route("/internal/cascade/sessions", post(super::remote::create))
        .route("/internal/cascade/sessions/op", post(super::remote::op))
        .route(
            "/internal/cascade/events",
            post(super::remote_events::events),
        )
}

pub(super) fn parse<T: for<'de> Deserialize<'de>>(v: Value) -> Result<T, ApiError> {
    serde_json::from_value(v).map_err(|e| {
        let msg = e.to_string();
        let field = msg.split('`').nth(1).unwrap_or("body").to_owned();
        ApiError::invalid(field, msg)
    })
}

pub(super) fn name(field: &str, v: &str) -> Result<(), ApiError> {
    if crate::cluster::name_ok(v) {
        Ok(())
    } else {
        Err(ApiError::invalid(field, "expected 1..=64 of [A-Za-z0-9_-]"))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TrunkReq {
    node: String,
    epoch: u64,
}

async fn trunk(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    json: Result<Json<Value>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    admin(&app, &headers)?;
    let r: TrunkReq = parse(body(json)?)?;
    name("node", &r.node)?;
    if r.epoch == 0 {
        return Err(ApiError::invalid("epoch", "must be > 0"));
    }
    let t = app.mirror_trunk(&r.node, r.epoch).await?;
    Ok(Json(json!({"epoch": t.epoch})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CloseReq {
    node: String,
}

async fn trunk_close(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    json: Result<Json<Value>, JsonRejection>,
) -> Result<StatusCode, ApiError> {
    admin(&app, &headers)?;
    let r: CloseReq = parse(body(json)?)?;
    name("node", &r.node)?;
    app.drop_trunk(&r.node, "peer_reset").await;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RelayReq {
    #[serde(flatten)]
    track: TrackRef,
    edge: String,
}

fn relay_req(v: Value) -> Result<RelayReq, ApiError> {
    let r: RelayReq = parse(v)?;
    name("edge", &r.edge)?;
    check_track(&r.track)?;
    Ok(r)
}

pub(super) fn check_track(t: &TrackRef) -> Result<(), ApiError> {
    if t.room.is_empty() || t.room.len() > 256 {
        return Err(ApiError::invalid("room", "expected 1..=256 bytes"));
    }
    if t.track.is_empty() || t.track.len() > 64 {
        return Err(ApiError::invalid("track", "expected 1..=64 bytes"));
    }
    Ok(())
}

async fn relay(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    json: Result<Json<Value>, JsonRejection>,
) -> Result<Json<RelaySpec>, ApiError> {
    admin(&app, &headers)?;
    let r = relay_req(body(json)?)?;
    Ok(Json(app.acquire_relay(&r.track, &r.edge).await?))
}

async fn release(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    json: Result<Json<Value>, JsonRejection>,
) -> Result<StatusCode, ApiError> {
    admin(&app, &headers)?;
    let r = relay_req(body(json)?)?;
    app.release_relay(&r.track, &r.edge).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ViewerReq {
    #[serde(flatten)]
    track: TrackRef,
    /// Where the session sends (plain RTP).
    remote: SocketAddr,
}

/// On an edge: a plain-RTP session that receives a track of a room homed on another node,
/// through a relay (the primitive a participant placed on this edge will use).
async fn viewer(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    json: Result<Json<Value>, JsonRejection>,
) -> Result<Response, ApiError> {
    admin(&app, &headers)?;
    let r: ViewerReq = parse(body(json)?)?;
    check_track(&r.track)?;
    {
        let st = app.cascade.state.lock().await;
        app.cascade
            .admit(&st, super::state::Table::Viewers, super::MAX_VIEWERS)?;
    }
    let cluster = app.cluster_or_err()?;
    let home = match cluster.locate(&r.track.room).await {
        Ok(Some(Placement::Remote(h))) => h.node,
        Ok(Some(Placement::Local)) => {
            return Err(ApiError::rejected("the room is homed on this node").with_field("room"))
        }
        Ok(None) => return Err(ApiError::not_found("the room has no home").with_field("room")),
        Err(e) => return Err(unavailable(e.to_string())),
    };
    let (home, _) = app.peer(&home).await?;
    let (track, spec) = app.acquire_ingest(&home, &r.track).await?;
    let session = SessionId(app.next_dp_id());
    let made = app
        .dp_create_session(sluice_proto::CreateSession {
            session,
            ice: sluice_proto::IceParams {
                ufrag: format!("view{}", session.0),
                pwd: "sluiceViewerUnusedPassword".into(),
                remote_ufrag: None,
                remote_pwd: None,
            },
            remote_fingerprint: None,
            dtls_role: sluice_proto::DtlsRole::Server,
            shard_hint: None,
            mode: TransportMode::PlainRtp {
                remote: r.remote,
                local_port: None,
            },
            data: None,
            quality: sluice_proto::Quality {
                max_bitrate_bps: 20_000_000,
                priority: 1,
            },
        })
        .await;
    let media = match made {
        Ok((_, candidates)) => candidates.first().map(|c| c.addr),
        Err(e) => {
            app.release_ingest(&home.id, &r.track).await;
            return Err(e);
        }
    };
    let subscription = SubscriptionId(app.next_dp_id());
    let ssrc = 0x7100_0000 ^ (subscription.0 as u32);
    let sub = app
        .dp(Command::Subscribe(Subscribe {
            subscription,
            session,
            track,
            ssrc,
            rtx_ssrc: None,
            payload_type: spec.codec.payload_type,
            rtx_payload_type: None,
            ext_ids: Default::default(),
        }))
        .await;
    if let Err(e) = sub {
        let _ = app.dp(Command::CloseSession { session }).await;
        app.release_ingest(&home.id, &r.track).await;
        return Err(e);
    }
    app.cascade.state.lock().await.viewers.insert(
        session,
        super::state::Viewer {
            home: home.id.clone(),
            track: r.track.clone(),
            subscription,
            ssrc,
            lost: false,
        },
    );
    Ok((
        StatusCode::CREATED,
        Json(
            json!({"session": session, "subscription": subscription, "ssrc": ssrc,
            "payload_type": spec.codec.payload_type, "media": media, "home": home.id}),
        ),
    )
        .into_response())
}

async fn viewer_delete(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(session): Path<u64>,
) -> Result<StatusCode, ApiError> {
    admin(&app, &headers)?;
    let v = app
        .cascade
        .state
        .lock()
        .await
        .viewers
        .remove(&SessionId(session))
        .ok_or_else(|| ApiError::not_found("no such viewer").with_field("session"))?;
    let _ = app
        .dp(Command::Unsubscribe {
            subscription: v.subscription,
        })
        .await;
    let _ = app
        .dp(Command::CloseSession {
            session: SessionId(session),
        })
        .await;
    app.release_ingest(&v.home, &v.track).await;
    Ok(StatusCode::NO_CONTENT)
}

async fn report(State(app): State<Arc<App>>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    admin(&app, &headers)?;
    Ok(Json(app.cascade_report().await))
}

/// An admin token of this node's own (60 s), for calls to other nodes.
fn node_token(app: &App) -> Result<String, ApiError> {
    let (key, secret) = app
        .node_key
        .as_ref()
        .ok_or_else(|| ApiError::rejected("no API key configured to call other nodes with"))?;
    let now = unix_seconds(SystemTime::now());
    let node = app.cluster.as_ref().map_or("", |c| c.node_id());
    Ok(mint_admin(
        key,
        secret,
        &AdminClaims {
            iss: String::new(),
            sub: format!("node:{node}"),
            admin: true,
            exp: now + 60,
            nbf: now.saturating_sub(5),
            iat: now,
        },
    ))
}

/// `POST {node.internal}{path}` with `body`; the answer's status and JSON.
pub(super) async fn call(
    app: &App,
    node: &NodeInfo,
    path: &str,
    body: Value,
) -> Result<(u16, Value), String> {
    let token = node_token(app).map_err(|e| e.message)?;
    let req = hyper::Request::builder()
        .method("POST")
        .uri(format!("{}{path}", node.internal))
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .header(
            crate::server::cluster::FORWARDED,
            app.cluster.as_ref().map_or("", |c| c.node_id()),
        )
        .body(Full::new(Bytes::from(body.to_string())))
        .map_err(|e| e.to_string())?;
    let resp = tokio::time::timeout(PEER_TIMEOUT, crate::server::cluster::http().request(req))
        .await
        .map_err(|_| "timed out".to_owned())?
        .map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let bytes = Limited::new(resp.into_body(), MAX_PEER_ANSWER)
        .collect()
        .await
        .map_err(|_| "answer too large or cut".to_owned())?
        .to_bytes();
    let v = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).map_err(|e| format!("answer: {e}"))?
    };
    Ok((status, v))
}

/// Asks `node` to set up its side of our trunk with `epoch` → the epoch it holds.
pub(super) async fn ask_mirror(app: &App, node: &NodeInfo, epoch: u64) -> Result<u64, String> {
    let me = app.cluster.as_ref().map_or("", |c| c.node_id()).to_owned();
    match call(
        app,
        node,
        "/internal/cascade/trunks",
        json!({"node": me, "epoch": epoch}),
    )
    .await?
    {
        (200, v) => v["epoch"].as_u64().ok_or_else(|| format!("bad answer {v}")),
        (s, v) => Err(format!("{s}: {v}")),
    }
}

/// Tells `node` our side of its trunk is gone.
pub(super) async fn ask_close(app: &App, node: &NodeInfo) -> Result<(), String> {
    let me = app.cluster.as_ref().map_or("", |c| c.node_id()).to_owned();
    match call(
        app,
        node,
        "/internal/cascade/trunks/close",
        json!({"node": me}),
    )
    .await?
    {
        (204, _) => Ok(()),
        (s, v) => Err(format!("{s}: {v}")),
    }
}

/// Asks the home for a relay of `r` to this node.
pub(super) async fn ask_relay(
    app: &App,
    home: &NodeInfo,
    r: &TrackRef,
) -> Result<RelaySpec, ApiError> {
    let me = app.cluster_or_err()?.node_id().to_owned();
    let mut b = serde_json::to_value(r).unwrap_or_default();
    b["edge"] = json!(me);
    match call(app, home, "/internal/cascade/relays", b).await {
        Ok((200, v)) => {
            serde_json::from_value(v).map_err(|e| unavailable(format!("home's relay answer: {e}")))
        }
        Ok((s, v)) => {
            let e = &v["error"];
            let field = e["field"].as_str().unwrap_or("track").to_owned();
            let msg = e["message"].as_str().unwrap_or("refused").to_owned();
            let code = if s == 404 { "not_found" } else { "unavailable" };
            Err(ApiError::new(code, format!("home node: {msg}")).with_field(field))
        }
        Err(e) => Err(unavailable(format!("home node: {e}"))),
    }
}

/// Tells the home one user of `r`'s relay to this node is gone.
pub(super) async fn release_relay(app: &App, home: &NodeInfo, r: &TrackRef) -> Result<(), String> {
    let me = app.cluster.as_ref().map_or("", |c| c.node_id()).to_owned();
    let mut b = serde_json::to_value(r).map_err(|e| e.to_string())?;
    b["edge"] = json!(me);
    match call(app, home, "/internal/cascade/relays/release", b).await? {
        (204, _) => Ok(()),
        (s, v) => Err(format!("{s}: {v}")),
    }
}
