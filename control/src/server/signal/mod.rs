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
use axum::Router;
use serde::Deserialize;
use tokio::sync::mpsc;

mod dispatch;

use super::actor::JoinTicket;
use super::error::ApiError;
use super::hub::ClientMsg;
use super::App;
use crate::auth::{self, AuthError, Claims};
use crate::hybrid::Action;
use crate::room::Join;
use crate::signal::{ClientMessage, ErrorInfo, JoinRequest, LeaveReason, Req, ServerMessage};
use dispatch::handle;

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
    ws: WebSocketUpgrade,
) -> Response {
    ws.on_upgrade(move |socket| connection(app, socket, q))
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

async fn connection(app: Arc<App>, mut socket: WebSocket, q: RtcQuery) {
    // Wait for `join` (bounded: 10 s), authenticate, join the room.
    let first = tokio::time::timeout(Duration::from_secs(10), socket.recv()).await;
    let Ok(Some(Ok(Message::Text(text)))) = first else {
        return;
    };
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
    let joined = match admit(&app, &mut socket, &join_msg, &q, req.as_ref()).await {
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
    let (tx, mut rx) = mpsc::unbounded_channel();
    if let Some(old) = app.hub.register(&peer.room, &peer.identity, tx.clone()) {
        let _ = old.send(ClientMsg::Close(LeaveReason::Replaced));
    }
    if send(&mut socket, &reply, req.as_ref()).await.is_err() {
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

    loop {
        tokio::select! {
            out = rx.recv() => match out {
                Some(ClientMsg::Msg(m)) => {
                    if send(&mut socket, &m, None).await.is_err() { break; }
                }
                Some(ClientMsg::Close(reason)) => {
                    let _ = send(&mut socket, &ServerMessage::Leave { reason }, None).await;
                    let _ = socket.send(Message::Close(None)).await;
                    break;
                }
                None => break,
            },
            inc = socket.recv() => match inc {
                Some(Ok(Message::Text(text))) => {
                    let (reply, done) = handle(&app, &peer, &text).await;
                    if let Some((m, req)) = reply {
                        if send(&mut socket, &m, req.as_ref()).await.is_err() { break; }
                    }
                    if done {
                        break;
                    }
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => {}
            }
        }
    }
    app.hub.unregister(&peer.room, &peer.identity, &tx);
    closed(&app, &peer).await;
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
    req: Option<&Req>,
) -> Result<Option<(Claims, Vec<Action>)>, ApiError> {
    if app.is_draining() {
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
    let claims = verify_token(app, token, room)?;
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
    if let Some(name) = msg.name {
        j.name = Some(name.into_string());
    }
    let (room, identity) = (claims.room.clone(), claims.sub.clone());
    let on_refusal = actions.clone();
    let who = identity.clone();
    let iat = claims.iat;
    let (sid, reply) = app
        .in_room(&room, move |ctx| {
            Box::pin(async move {
                let sid = ctx.join(j, iat, true, on_refusal).await?;
                Ok((sid, ctx.joined_reply(&who)?))
            })
        })
        .await?;
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
