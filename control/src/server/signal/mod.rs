//! WebSocket signaling at `/rtc` (docs/protocol.md): the adapter between our JSON protocol and
//! the room actors. It reads [`ClientMessage`]s (typed, bounded: `crate::signal`), turns each
//! into an operation of the room, and writes the [`ServerMessage`]s the room produces. A second
//! protocol (a LiveKit-compatible profile) is another adapter like this one over the same rooms.
//! This file runs a connection (join, admission, the read/write loop); `dispatch.rs` maps each
//! message to its room operation.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::response::Response;
use axum::routing::get;
use axum::Extension;
use axum::Router;
use serde::Deserialize;

mod dispatch;

use super::actor::JoinTicket;
use super::error::ApiError;
use super::hub::{ClientMsg, ClientTx};
use super::listen::ConnSlot;
use super::App;
use crate::auth::{self, AuthError, Claims};
use crate::hybrid::Action;
use crate::limits::Refusal;
use crate::room::Join;
use crate::signal::{ClientMessage, ErrorInfo, JoinRequest, Req, ServerMessage};
use dispatch::{handle, Budget};

pub(super) fn routes() -> Router<Arc<App>> {
    Router::new().route("/rtc", get(upgrade))
}

#[derive(Debug, Deserialize)]
struct RtcQuery {
    access_token: Option<String>,
    room: Option<String>,
}

async fn upgrade(
    State(app): State<Arc<App>>,
    Query(q): Query<RtcQuery>,
    slot: Option<Extension<Arc<ConnSlot>>>,
    headers: axum::http::HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    // `[cluster]`: the trusted load balancer's region header, for placing a new room.
    let lb_region = app.header_region(&headers);
    drop(headers);
    // No message or frame larger than the largest legitimate one (an SDP of 256 KiB) is read
    // into memory at all (finding #1); the first one is held to less below.
    let max = app.limits.ws_max_message_bytes;
    ws.max_message_size(max)
        .max_frame_size(max)
        .on_upgrade(move |socket| async move {
            // The connection keeps its place under the connection caps while it is open.
            let _slot = slot;
            connection(app, socket, q, lb_region).await;
        })
}

/// Whether a receive error is a message or frame over the size limit.
fn too_large(e: &axum::Error) -> bool {
    let s = e.to_string();
    s.contains("Space limit exceeded") || s.contains("too long") || s.contains("too big")
}

/// Verifies `token` for `room` (the token's own room when the client named none).
pub(crate) fn verify_token(app: &App, token: &str, room: Option<&str>) -> Result<Claims, ApiError> {
    let now = SystemTime::now();
    match room {
        Some(r) => Ok(auth::verify(token, &app.keyring, r, now)?),
        None => match auth::verify(token, &app.keyring, "", now) {
            Ok(c) => Ok(c),
            Err(AuthError::WrongRoom { token_room, .. }) => {
                Ok(auth::verify(token, &app.keyring, &token_room, now)?)
            }
            Err(e) => Err(e.into()),
        },
    }
}

/// Who a connection speaks for, once joined.
#[derive(Debug, Clone)]
pub(super) struct Peer {
    pub(super) room: String,
    pub(super) identity: String,
    /// This session's participant sid (a resume gets a new one).
    pub(super) sid: String,
}

async fn connection(app: Arc<App>, mut socket: WebSocket, q: RtcQuery, lb_region: Option<String>) {
    // Wait for `join` (bounded: 10 s and `limits.ws_join_max_bytes`), authenticate, join.
    let first = tokio::time::timeout(Duration::from_secs(10), socket.recv()).await;
    let text = match first {
        Ok(Some(Ok(Message::Text(text)))) => text,
        Ok(Some(Err(e))) if too_large(&e) => {
            app.refusals.count(Refusal::WsMessageTooLarge);
            return;
        }
        _ => return,
    };
    if text.len() > app.limits.ws_join_max_bytes {
        app.refusals.count(Refusal::WsJoinTooLarge);
        let e = ApiError::invalid(
            "join",
            format!(
                "the first message is over {} bytes",
                app.limits.ws_join_max_bytes
            ),
        );
        let _ = send(&mut socket, &error(&e), None).await;
        let _ = socket.send(Message::Close(None)).await;
        return;
    }
    let (req, join_msg) = match ClientMessage::parse(&text) {
        Ok(r) => match r.message {
            ClientMessage::Join(j) => (r.req, j),
            _ => {
                let e = ApiError::invalid("type", "the first message must be join");
                let _ = send(&mut socket, &error(&e), r.req.as_ref()).await;
                return;
            }
        },
        Err(e) => {
            let err = ApiError::invalid(e.field, e.message);
            let _ = send(&mut socket, &error(&err), e.req.as_ref()).await;
            return;
        }
    };
    drop(text);
    let region = lb_region.as_deref();
    let joined = match admit(&app, &mut socket, &join_msg, &q, region, req.as_ref()).await {
        Ok(Some((claims, actions))) => join(&app, join_msg, claims, actions).await,
        Ok(None) => return,
        Err(e) => Err(e),
    };
    let (peer, reply, actions) = match joined {
        Ok(v) => v,
        Err(e) => {
            let _ = send(&mut socket, &error(&e), req.as_ref()).await;
            let _ = socket.send(Message::Close(None)).await;
            return;
        }
    };
    let (tx, mut rx) = ClientTx::new(app.limits.ws_queue);
    app.hub.register(&peer.room, &peer.identity, tx.clone());
    let send_timeout = Duration::from_millis(app.limits.ws_send_timeout_ms);
    if bounded_send(&app, &mut socket, &reply, req.as_ref(), send_timeout)
        .await
        .is_err()
    {
        app.hub.unregister(&peer.room, &peer.identity, &tx);
        closed(&app, &peer).await;
        return;
    }
    // Policy actions of this join (e.g. the migration it started) now that it can hear them,
    // then offers of the tracks already in the room.
    let _ = app
        .in_room(&peer.room, move |ctx| {
            Box::pin(async move {
                ctx.client_ready(actions).await;
                Ok(())
            })
        })
        .await;

    let mut budget = Budget::new(&app);
    let idle = Duration::from_secs(app.limits.ws_idle_timeout_s);
    let mut ping = tokio::time::interval(Duration::from_secs(app.limits.ws_ping_interval_s));
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ping.tick().await;
    let mut heard = tokio::time::Instant::now();
    // [turn]: credentials last `ttl_s` (security review #30: an hour by default); fresh ones at
    // half that, so a client never holds only expired ones.
    let refresh_every = app
        .turn
        .as_ref()
        .map(|t| Duration::from_secs((t.ttl_s / 2).max(1)));
    let period = refresh_every.unwrap_or(Duration::from_secs(86_400));
    let mut refresh = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = refresh.tick(), if refresh_every.is_some() => {
                let fresh = ServerMessage::IceServers { ice_servers: app.ice_servers(&peer.identity) };
                if bounded_send(&app, &mut socket, &fresh, None, send_timeout).await.is_err() { break; }
            }
            _ = tx.overflow.notified() => {
                // Counted by the hub: this client stopped reading.
                tracing::info!(room = %peer.room, identity = %peer.identity, "client queue full: disconnected");
                break;
            }
            _ = ping.tick() => {
                if heard.elapsed() >= idle {
                    app.refusals.count(Refusal::WsIdle);
                    tracing::info!(room = %peer.room, identity = %peer.identity, "client silent: disconnected");
                    break;
                }
                let ping = socket.send(Message::Ping(Default::default()));
                if !matches!(tokio::time::timeout(send_timeout, ping).await, Ok(Ok(()))) {
                    app.refusals.count(Refusal::WsSlowReader);
                    break;
                }
            }
            out = rx.recv() => match out {
                Some(ClientMsg::Msg(m)) => {
                    if bounded_send(&app, &mut socket, &m, None, send_timeout).await.is_err() { break; }
                }
                Some(ClientMsg::Close(reason)) => {
                    let leave = ServerMessage::Leave { reason };
                    let _ = bounded_send(&app, &mut socket, &leave, None, send_timeout).await;
                    let _ = tokio::time::timeout(send_timeout, socket.send(Message::Close(None))).await;
                    break;
                }
                None => break,
            },
            inc = socket.recv() => {
                heard = tokio::time::Instant::now();
                match inc {
                    Some(Ok(Message::Text(text))) => {
                        let (reply, done) = handle(&app, &peer, &text, &mut budget).await;
                        if let Some((m, req)) = reply {
                            if bounded_send(&app, &mut socket, &m, req.as_ref(), send_timeout).await.is_err() { break; }
                        }
                        if done {
                            break;
                        }
                    }
                    Some(Err(e)) => {
                        if too_large(&e) {
                            app.refusals.count(Refusal::WsMessageTooLarge);
                        }
                        break;
                    }
                    Some(Ok(Message::Close(_))) | None => break,
                    Some(Ok(_)) => {}
                }
            }
        }
    }
    app.hub.unregister(&peer.room, &peer.identity, &tx);
    closed(&app, &peer).await;
}

/// [`send`], given up after `timeout` (a client that does not read: counted, then closed).
async fn bounded_send(
    app: &App,
    socket: &mut WebSocket,
    msg: &ServerMessage,
    req: Option<&Req>,
    timeout: Duration,
) -> Result<(), ()> {
    match tokio::time::timeout(timeout, send(socket, msg, req)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err(()),
        Err(_) => {
            app.refusals.count(Refusal::WsSlowReader);
            Err(())
        }
    }
}

/// A dropped socket without `leave` also leaves (unless a newer session of the identity
/// replaced it): the client resumes by joining again.
async fn closed(app: &Arc<App>, peer: &Peer) {
    let (identity, sid) = (peer.identity.clone(), peer.sid.clone());
    let _ = app
        .in_existing_room(&peer.room, move |ctx| {
            Box::pin(async move {
                ctx.connection_closed(&identity, &sid).await;
                Ok(())
            })
        })
        .await;
}

/// Authenticates `join` and gets the room's policy to admit it, waiting in the queue while a
/// migration runs (`join_queued`). `Ok(None)`: the client went away.
async fn admit(
    app: &Arc<App>,
    socket: &mut WebSocket,
    msg: &JoinRequest,
    q: &RtcQuery,
    lb_region: Option<&str>,
    req: Option<&Req>,
) -> Result<Option<(Claims, Vec<Action>)>, ApiError> {
    // A cluster node that drains still redirects (below) to the room's new node.
    if app.is_draining() && app.cluster.is_none() {
        return Err(ApiError::rejected("node is draining; join another node"));
    }
    let token = msg
        .token
        .as_deref()
        .or(q.access_token.as_deref())
        .ok_or_else(|| {
            ApiError::unauthorized("no access token (query access_token or join.token)")
                .with_field("token")
        })?;
    let room = msg.room.as_deref().or(q.room.as_deref());
    let mut claims = verify_token(app, token, room)?;
    // `[cluster]`: a room homed on another node is joined there; a new room goes to the
    // participant's region (token claim, then the load balancer's header) when a node has one.
    let region = claims.region.as_deref().or(lb_region);
    if let Some(url) = app.ws_redirect(&claims.room, region).await? {
        let _ = send(socket, &ServerMessage::Redirect { url }, req).await;
        let _ = socket.send(Message::Close(None)).await;
        return Ok(None);
    }
    if app.is_draining() {
        return Err(ApiError::rejected("node is draining; join another node"));
    }
    // Where the participant is, for its subscriber session's placement (D103).
    if claims.region.is_none() {
        claims.region = lb_region.map(str::to_owned);
    }
    let capable = msg
        .capabilities
        .as_ref()
        .is_some_and(|c| c.iter().any(|c| c.as_str() == "p2p"));
    let (room, identity) = (claims.room.clone(), claims.sub.clone());
    let who = identity.clone();
    let ticket = app
        .in_room(&room, move |ctx| {
            Box::pin(async move { ctx.request_join(&who, capable) })
        })
        .await?;
    let (position, estimated_wait_ms, mut admitted) = match ticket {
        JoinTicket::Admitted(actions) => return Ok(Some((claims, actions))),
        JoinTicket::Queued {
            position,
            estimated_wait_ms,
            admitted,
        } => (position, estimated_wait_ms, admitted),
    };
    let cancel = || {
        let (app, room, identity) = (Arc::clone(app), room.clone(), identity.clone());
        async move {
            let _ = app
                .in_room(&room, move |ctx| {
                    Box::pin(async move {
                        ctx.cancel_join(&identity);
                        Ok(())
                    })
                })
                .await;
        }
    };
    let queued = ServerMessage::JoinQueued {
        position,
        estimated_wait_ms,
    };
    if send(socket, &queued, req).await.is_err() {
        cancel().await;
        return Ok(None);
    }
    // Bounded: the migration resets itself after its timeout, which admits the queue.
    let limit = Duration::from_millis(estimated_wait_ms.saturating_add(5_000));
    let deadline = tokio::time::sleep(limit);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            r = &mut admitted => {
                if r.is_err() {
                    cancel().await;
                    return Err(ApiError::rejected("join queue dropped"));
                }
                return Ok(Some((claims, Vec::new())));
            }
            _ = &mut deadline => {
                cancel().await;
                return Err(ApiError::rejected("still migrating; join again later").with_field("room"));
            }
            inc = socket.recv() => match inc {
                Some(Ok(Message::Text(_))) => {
                    let e = ApiError::rejected("join queued: wait for joined");
                    if send(socket, &error(&e), None).await.is_err() {
                        cancel().await;
                        return Ok(None);
                    }
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => {
                    cancel().await;
                    return Ok(None);
                }
                Some(Ok(_)) => {}
            }
        }
    }
}

/// Joins an admitted client to the room; the peer, the `joined` reply and the policy actions
/// to run once the client is registered.
async fn join(
    app: &Arc<App>,
    msg: JoinRequest,
    claims: Claims,
    actions: Vec<Action>,
) -> Result<(Peer, ServerMessage, Vec<Action>), ApiError> {
    let mut j = Join::from_claims(&claims);
    // The client's `name` only where the token names nobody (finding #36).
    if let (None, Some(name)) = (&j.name, msg.name) {
        j.name = Some(name.into_string());
    }
    let (room, identity) = (claims.room.clone(), claims.sub.clone());
    let on_refusal = actions.clone();
    let who = identity.clone();
    let iat = claims.iat;
    let region = claims.region.clone();
    let dev = app.is_dev_token(&claims);
    let (sid, reply) = app
        .in_room(&room, move |ctx| {
            Box::pin(async move {
                if dev {
                    ctx.refuse_dev_takeover(&who)?;
                }
                let sid = ctx.join(j, iat, true, on_refusal).await?;
                if let Some(p) = ctx.media.peers.get_mut(&who) {
                    p.region = region;
                }
                Ok((sid, ctx.joined_reply(&who)?))
            })
        })
        .await
        .inspect_err(|e| {
            if e.field.as_deref() == Some("identity") && e.code == "invalid" {
                app.refusals.count(Refusal::Identity);
            }
        })?;
    Ok((
        Peer {
            room,
            identity,
            sid,
        },
        reply,
        actions,
    ))
}

/// `{mode: "auto"|"p2p"|"sfu"}` of `PUT /api/rooms/{room}/mode`.
pub(crate) fn parse_mode(msg: &serde_json::Value) -> Result<crate::room::RoomMode, ApiError> {
    use crate::room::RoomMode;
    match msg.get("mode").and_then(serde_json::Value::as_str) {
        Some("auto") => Ok(RoomMode::Auto),
        Some("p2p") => Ok(RoomMode::P2p),
        Some("sfu") => Ok(RoomMode::Sfu),
        _ => Err(ApiError::invalid("mode", "expected auto, p2p or sfu")),
    }
}

pub(super) fn error(e: &ApiError) -> ServerMessage {
    ServerMessage::Error(ErrorInfo {
        code: e.code.to_owned(),
        message: e.message.clone(),
        field: e.field.clone(),
    })
}

/// Writes `msg` as one text frame, with the request's `req` when it answers one.
async fn send(
    socket: &mut WebSocket,
    msg: &ServerMessage,
    req: Option<&Req>,
) -> Result<(), axum::Error> {
    let mut v = serde_json::to_value(msg).expect("server messages serialize");
    if let Some(r) = req {
        v["req"] = r.value().clone();
    }
    socket.send(Message::text(v.to_string())).await
}
