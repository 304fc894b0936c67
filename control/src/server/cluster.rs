//! `[cluster]` on the HTTP/WebSocket side (docs/cluster.md "Routing"): any node takes any
//! request; one for a room homed elsewhere goes to the home.
//!
//! - `/rtc`: a join for a room homed elsewhere gets `redirect {url}` and the socket closes
//!   (`sluice.js` follows, at most 2 hops). Redirect, not proxy: the media goes to the home's
//!   dataplane anyway, and a relaying node would be one more thing whose death drops the call.
//! - WHIP/WHEP (`/whip/{room}`, `/whep/{room}` and their resources): `307` to the home's
//!   `advertise` URL (RFC 9725 §4.5: clients follow redirects).
//! - Admin API on one room (`/api/rooms/{room}/…`, `POST /api/rooms`): forwarded to the home's
//!   `internal` URL with the caller's token (admin tokens are valid cluster-wide), answered as
//!   the home answered. `GET /api/rooms` merges every live node's rooms (each with `node`).
//!   A forwarded request carries `Sluice-Forwarded-By` and is never forwarded again.
//! - `GET /api/cluster`: the registry.
//!
//! Redis unreachable: what needs placement answers `503` + `Retry-After: 1`; rooms this node
//! already hosts keep working.

use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};

use super::api::admin;
use super::error::ApiError;
use super::App;
use crate::cluster::events::EventBus;
use crate::cluster::{Cluster, ClusterError, Placement, MAX_NODES};
use crate::lock::Locked;
use crate::signal::LeaveReason;

/// Marks a request one node forwarded to another.
pub(crate) const FORWARDED: &str = "sluice-forwarded-by";
/// Largest request body forwarded, and largest answer taken back.
const MAX_FORWARD_BODY: usize = 1024 * 1024;
const MAX_FORWARD_ANSWER: usize = 4 * 1024 * 1024;
const FORWARD_TIMEOUT: Duration = Duration::from_secs(5);
const LIST_TIMEOUT: Duration = Duration::from_secs(2);

type HttpClient = Client<HttpConnector, Full<Bytes>>;

pub(super) fn http() -> &'static HttpClient {
    static CLIENT: OnceLock<HttpClient> = OnceLock::new();
    CLIENT.get_or_init(|| {
        let mut c = HttpConnector::new();
        c.set_connect_timeout(Some(Duration::from_secs(1)));
        c.set_nodelay(true);
        Client::builder(TokioExecutor::new()).build(c)
    })
}

pub(super) fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/api/cluster", get(cluster_info))
        .route(
            "/api/rooms/{room}/placement",
            axum::routing::post(super::placement::placement),
        )
}

/// Starts the registry loop, the event bus and the load reporter.
pub(super) fn start(app: &Arc<App>) {
    let Some(cluster) = app.cluster.clone() else {
        return;
    };
    // No rooms placed here while the dataplane link is down (before its first handshake, and
    // while the supervisor restarts a dataplane): the registration says `starting` until then.
    if let Some(link) = &app.link {
        let mut connected = link.connected();
        cluster.set_ready(connected.borrow_and_update().is_some());
        let cluster = Arc::clone(&cluster);
        tokio::spawn(async move {
            while connected.changed().await.is_ok() && !cluster.is_stopped() {
                cluster.set_ready(connected.borrow_and_update().is_some());
            }
        });
    }
    let events = Arc::clone(&app.events);
    let bus = EventBus::start(Arc::clone(&cluster), move |e| events.publish_remote(e));
    let _ = app.events.bus.set(bus);
    let lost_app = Arc::clone(app);
    // After a lost lease: only the rooms another node took meanwhile lose their clients.
    tokio::spawn(Arc::clone(&cluster).run(move |lost: &[String]| {
        for room in lost {
            lost_app.hub.close_room(room, LeaveReason::Reconnect);
        }
        // A new boot: the peers drop their trunks toward us, so ours go too.
        let app = Arc::clone(&lost_app);
        tokio::spawn(async move { app.cascade_fenced().await });
    }));
    let app = Arc::clone(app);
    tokio::spawn(async move {
        while !cluster.is_stopped() {
            let load = app.cascade.remote.media_load(app.registry.participants());
            cluster.load.store(load, Ordering::Relaxed);
            let load = app.load.locked().node_load(std::time::Instant::now());
            *cluster.dataplane.locked() = load;
            let media = app
                .link
                .as_ref()
                .and_then(|l| l.current())
                .and_then(|c| c.hello.media_addrs.first().copied());
            let media = cluster.config.media.or(media);
            *cluster.media.locked() = media.map(|m| m.to_string()).unwrap_or_default();
            cluster.draining.store(app.is_draining(), Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    });
}

pub(super) fn unavailable(e: &ClusterError) -> ApiError {
    ApiError::new("unavailable", e.to_string()).with_field("cluster")
}

/// `503` with `Retry-After` ([`ApiError`]'s response for `unavailable`).
fn unavailable_response(e: &ClusterError) -> Response {
    unavailable(e).into_response()
}

/// Drain in a cluster: leave placement, give the homes up, then tell each room's clients to
/// reconnect — one room at a time (a room moves whole), 100–300 ms apart — so they join again
/// through any node and land on another one. The server's drain loop waits until the rooms
/// are empty.
pub(super) fn drain(app: &Arc<App>) {
    let Some(cluster) = app.cluster.clone() else {
        return;
    };
    let app = Arc::clone(app);
    tokio::spawn(async move {
        let rooms = cluster.drain().await;
        tracing::info!(
            rooms = rooms.len(),
            "cluster drain: homes given up; clients told to reconnect"
        );
        for room in rooms {
            app.hub.close_room(&room, LeaveReason::Reconnect);
            let mut jitter = [0u8; 1];
            let _ = aws_lc_rs::rand::fill(&mut jitter);
            tokio::time::sleep(Duration::from_millis(
                100 + u64::from(jitter[0]) * 200 / 255,
            ))
            .await;
        }
    });
}

impl App {
    /// Refuses an operation on a room this node is not the home of (claiming it when it has
    /// no home). Every room actor job goes through here, so no participant can join a room on
    /// a node that is not its home, whatever the entry point.
    pub(crate) async fn ensure_home(&self, room: &str) -> Result<(), ApiError> {
        let Some(c) = &self.cluster else {
            return Ok(());
        };
        match c.place(room).await {
            Ok(Placement::Local) => Ok(()),
            Ok(Placement::Remote(h)) => Err(ApiError::rejected(format!(
                "room {room:?} is served by node {:?}; join through {}",
                h.node, h.advertise
            ))
            .with_field("room")),
            Err(e) => Err(unavailable(&e)),
        }
    }

    /// Where a WebSocket join for `room` must go instead (`wss?://home/rtc`), if elsewhere.
    /// `region`: the participant's (token claim, else the load balancer's header), preferred
    /// when the room has no home yet.
    pub(crate) async fn ws_redirect(
        &self,
        room: &str,
        region: Option<&str>,
    ) -> Result<Option<String>, ApiError> {
        let Some(c) = &self.cluster else {
            return Ok(None);
        };
        match c.place_in(room, region).await {
            Ok(Placement::Local) => Ok(None),
            Ok(Placement::Remote(h)) => {
                c.metrics.redirects_ws.fetch_add(1, Ordering::Relaxed);
                let base = h
                    .advertise
                    .replacen("https://", "wss://", 1)
                    .replacen("http://", "ws://", 1);
                Ok(Some(format!("{base}/rtc")))
            }
            Err(e) => Err(unavailable(&e)),
        }
    }

    /// A room's actor retired: its home is free for the next join anywhere.
    pub(crate) fn release_home(&self, room: &str) {
        if let Some(c) = &self.cluster {
            let (c, room) = (Arc::clone(c), room.to_owned());
            tokio::spawn(async move { c.release(&room).await });
        }
    }
}

/// What the router does with a request, by path.
enum Route {
    Redirect { room: String, claim: bool },
    Forward { room: String, claim: bool },
    CreateRoom,
    ListRooms,
    Pass,
}

fn route_of(method: &Method, path: &str) -> Route {
    let seg: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let room = |s: &str| percent_decode(s);
    match seg.as_slice() {
        ["whip" | "whep", r] if method == Method::POST => room(r)
            .map(|room| Route::Redirect { room, claim: true })
            .unwrap_or(Route::Pass),
        ["whip" | "whep", r, _] => room(r)
            .map(|room| Route::Redirect { room, claim: false })
            .unwrap_or(Route::Pass),
        // Any node answers the placement API itself.
        ["api", "rooms", _, "placement"] => Route::Pass,
        ["api", "rooms", r, "sessions"] if method == Method::POST => room(r)
            .map(|room| Route::Forward { room, claim: true })
            .unwrap_or(Route::Pass),
        ["api", "rooms", r, ..] => room(r)
            .map(|room| Route::Forward { room, claim: false })
            .unwrap_or(Route::Pass),
        ["api", "rooms"] if method == Method::POST => Route::CreateRoom,
        ["api", "rooms"] if method == Method::GET => Route::ListRooms,
        _ => Route::Pass,
    }
}

/// `%XX` decoding of one path segment; `None` when malformed or not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok().filter(|r| !r.is_empty())
}

/// The routing middleware (see the module docs).
pub(super) async fn route(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    let Some(cluster) = app.cluster.clone() else {
        return next.run(req).await;
    };
    if req.headers().contains_key(FORWARDED) {
        return next.run(req).await;
    }
    match route_of(req.method(), req.uri().path()) {
        Route::Pass => next.run(req).await,
        Route::Redirect { room, claim } => {
            let placed = if claim {
                let region = super::placement::token_region(&app, req.headers(), &room)
                    .or_else(|| app.header_region(req.headers()));
                cluster.place_in(&room, region.as_deref()).await.map(Some)
            } else {
                cluster.locate(&room).await
            };
            match placed {
                Ok(Some(Placement::Remote(h))) => {
                    cluster
                        .metrics
                        .redirects_http
                        .fetch_add(1, Ordering::Relaxed);
                    let pq = req
                        .uri()
                        .path_and_query()
                        .map_or("/", |p| p.as_str())
                        .to_owned();
                    redirect(&format!("{}{pq}", h.advertise))
                }
                Ok(_) => next.run(req).await,
                Err(e) => unavailable_response(&e),
            }
        }
        Route::Forward { room, claim } => {
            let placed = if claim {
                let region = app.header_region(req.headers());
                cluster.place_in(&room, region.as_deref()).await.map(Some)
            } else {
                cluster.locate(&room).await
            };
            match placed {
                Ok(Some(Placement::Remote(h))) => forward(&cluster, req, &h.internal).await,
                Ok(_) => next.run(req).await,
                Err(e) => unavailable_response(&e),
            }
        }
        Route::CreateRoom => {
            let (parts, body) = req.into_parts();
            let parts_headers = parts.headers.clone();
            let bytes = match axum::body::to_bytes(body, MAX_FORWARD_BODY).await {
                Ok(b) => b,
                Err(_) => {
                    return ApiError::invalid("body", "too large or unreadable").into_response()
                }
            };
            let name = serde_json::from_slice::<Value>(&bytes)
                .ok()
                .and_then(|v| v.get("name").and_then(Value::as_str).map(str::to_owned));
            let req = Request::from_parts(parts, Body::from(bytes));
            // A body without a usable name: the handler names the field.
            let Some(name) = name else {
                return next.run(req).await;
            };
            let region = app.header_region(&parts_headers);
            match cluster.place_in(&name, region.as_deref()).await {
                Ok(Placement::Local) => next.run(req).await,
                Ok(Placement::Remote(h)) => forward(&cluster, req, &h.internal).await,
                Err(e) => unavailable_response(&e),
            }
        }
        Route::ListRooms => {
            let headers = req.headers().clone();
            let local = next.run(req).await;
            list_rooms(&cluster, &headers, local).await
        }
    }
}

fn redirect(location: &str) -> Response {
    match HeaderValue::from_str(location) {
        Ok(v) => (StatusCode::TEMPORARY_REDIRECT, [(header::LOCATION, v)]).into_response(),
        Err(_) => ApiError::new("internal", "home URL is not a valid header").into_response(),
    }
}

/// Sends `req` to `base` (the home's internal URL) and answers what it answered.
async fn forward(cluster: &Cluster, req: Request, base: &str) -> Response {
    cluster.metrics.forwards.fetch_add(1, Ordering::Relaxed);
    match try_forward(cluster, req, base).await {
        Ok(r) => r,
        Err(e) => {
            cluster
                .metrics
                .forward_errors
                .fetch_add(1, Ordering::Relaxed);
            ApiError::new("unavailable", format!("room's home node: {e}"))
                .with_field("cluster")
                .into_response()
        }
    }
}

async fn try_forward(cluster: &Cluster, req: Request, base: &str) -> Result<Response, String> {
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, MAX_FORWARD_BODY)
        .await
        .map_err(|_| "request body too large".to_owned())?;
    let pq = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut out = hyper::Request::builder()
        .method(parts.method.clone())
        .uri(format!("{base}{pq}"));
    for (k, v) in &parts.headers {
        if passes(k) {
            out = out.header(k, v);
        }
    }
    let out = out
        .header(FORWARDED, cluster.node_id())
        .body(Full::new(body))
        .map_err(|e| e.to_string())?;
    let resp = tokio::time::timeout(FORWARD_TIMEOUT, http().request(out))
        .await
        .map_err(|_| "timed out".to_owned())?
        .map_err(|e| e.to_string())?;
    let (rparts, rbody) = resp.into_parts();
    // Bounded in size and in time (a home that drips its answer holds no task forever).
    let bytes = tokio::time::timeout(
        FORWARD_TIMEOUT,
        Limited::new(rbody, MAX_FORWARD_ANSWER).collect(),
    )
    .await
    .map_err(|_| "answer timed out".to_owned())?
    .map_err(|e| {
        if e.downcast_ref::<http_body_util::LengthLimitError>()
            .is_some()
        {
            format!("answer over the forwarding limit of {MAX_FORWARD_ANSWER} bytes")
        } else {
            format!("answer cut: {e}")
        }
    })?
    .to_bytes();
    let mut r = Response::new(Body::from(bytes));
    *r.status_mut() = rparts.status;
    for (k, v) in &rparts.headers {
        if passes(k) {
            r.headers_mut().insert(k.clone(), v.clone());
        }
    }
    Ok(r)
}

/// Headers copied across a forward (not hop-by-hop, not the framing).
fn passes(k: &HeaderName) -> bool {
    !matches!(
        k.as_str(),
        "host"
            | "connection"
            | "keep-alive"
            | "transfer-encoding"
            | "content-length"
            | "upgrade"
            | "te"
            | "trailer"
            | "proxy-authorization"
            | "proxy-connection"
    )
}

/// `GET /api/rooms` cluster-wide: this node's answer plus every other live node's rooms, each
/// room with its `node`; nodes that did not answer in time are listed in `unreachable`.
async fn list_rooms(cluster: &Arc<Cluster>, headers: &HeaderMap, local: Response) -> Response {
    if local.status() != StatusCode::OK {
        return local;
    }
    let Ok(bytes) = axum::body::to_bytes(local.into_body(), MAX_FORWARD_ANSWER).await else {
        return ApiError::new("internal", "room list too large").into_response();
    };
    let mut rooms: Vec<Value> = serde_json::from_slice::<Value>(&bytes)
        .ok()
        .and_then(|v| v.get("rooms").and_then(Value::as_array).cloned())
        .unwrap_or_default();
    for r in &mut rooms {
        r["node"] = json!(cluster.node_id());
    }
    let nodes = match cluster.live_nodes().await {
        Ok(n) => n,
        Err(e) => return unavailable_response(&e),
    };
    let auth = headers.get(header::AUTHORIZATION).cloned();
    let mut set = tokio::task::JoinSet::new();
    for n in nodes
        .into_iter()
        .filter(|n| n.id != cluster.node_id())
        .take(MAX_NODES)
    {
        let (auth, me) = (auth.clone(), cluster.node_id().to_owned());
        set.spawn(async move {
            let mut b =
                hyper::Request::get(format!("{}/api/rooms", n.internal)).header(FORWARDED, me);
            if let Some(a) = auth {
                b = b.header(header::AUTHORIZATION, a);
            }
            let r = async {
                let req = b.body(Full::new(Bytes::new())).ok()?;
                let resp = http().request(req).await.ok()?;
                if resp.status() != StatusCode::OK {
                    return None;
                }
                let body = Limited::new(resp.into_body(), MAX_FORWARD_ANSWER)
                    .collect()
                    .await
                    .ok()?
                    .to_bytes();
                serde_json::from_slice::<Value>(&body)
                    .ok()?
                    .get("rooms")?
                    .as_array()
                    .cloned()
            };
            (
                n.id,
                tokio::time::timeout(LIST_TIMEOUT, r).await.ok().flatten(),
            )
        });
    }
    let mut unreachable = Vec::new();
    while let Some(done) = set.join_next().await {
        let Ok((node, answer)) = done else { continue };
        match answer {
            Some(list) => rooms.extend(list.into_iter().map(|mut r| {
                r["node"] = json!(node);
                r
            })),
            None => unreachable.push(node),
        }
    }
    let mut out = json!({ "rooms": rooms });
    if !unreachable.is_empty() {
        unreachable.sort();
        out["unreachable"] = json!(unreachable);
    }
    Json(out).into_response()
}

/// `GET /api/cluster` (admin): this node and the live nodes.
async fn cluster_info(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    admin(&app, &headers)?;
    let Some(c) = &app.cluster else {
        return Err(ApiError::not_found("not a cluster node (no [cluster])"));
    };
    let nodes = c.live_nodes().await.map_err(|e| unavailable(&e))?;
    Ok(Json(json!({
        "node": c.node_id(),
        "serving": c.is_serving(),
        "home_rooms": c.home_count(),
        "nodes": nodes,
    })))
}

#[cfg(test)]
#[path = "cluster_tests.rs"]
mod tests;
