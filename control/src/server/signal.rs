//! WebSocket signaling at `/rtc` (docs/protocol.md): authenticate, join, then one task per
//! connection reads client messages and writes server messages queued by the hub. This is an
//! adapter: every message becomes an operation of the room's actor.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::actor::{ControlOp, JoinTicket, ModeReply};
use super::error::ApiError;
use super::hub::ClientMsg;
use super::media::{LayerCap, OneShot, PendingTrack};
use super::App;
use crate::auth::{self, AuthError, Claims, Source};
use crate::hybrid::Action;
use crate::room::{Actor, Join, MediaKind, PublishTrack, RoomEventKind, SimulcastLayer};

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
struct Peer {
    room: String,
    identity: String,
    /// This session's participant sid (a resume gets a new one).
    sid: String,
}

async fn connection(app: Arc<App>, mut socket: WebSocket, q: RtcQuery) {
    // Wait for `join` (bounded: 10 s), authenticate, join the room.
    let first = tokio::time::timeout(Duration::from_secs(10), socket.recv()).await;
    let Ok(Some(Ok(Message::Text(text)))) = first else {
        return;
    };
    let msg: Value = match serde_json::from_str(&text) {
        Ok(v) => v,
        Err(e) => {
            let _ = send_err(
                &mut socket,
                &ApiError::invalid("type", format!("not JSON: {e}")),
                None,
            )
            .await;
            return;
        }
    };
    let req = msg.get("req").cloned();
    if msg.get("type").and_then(Value::as_str) != Some("join") {
        let _ = send_err(
            &mut socket,
            &ApiError::invalid("type", "the first message must be join"),
            req.as_ref(),
        )
        .await;
        return;
    }
    let joined = match admit(&app, &mut socket, &msg, &q, req.as_ref()).await {
        Ok(Some((claims, actions))) => join(&app, &msg, claims, actions).await,
        Ok(None) => return,
        Err(e) => Err(e),
    };
    let (peer, mut reply, actions) = match joined {
        Ok(v) => v,
        Err(e) => {
            let _ = send_err(&mut socket, &e, req.as_ref()).await;
            let _ = socket.send(Message::Close(None)).await;
            return;
        }
    };
    let (tx, mut rx) = mpsc::unbounded_channel();
    if let Some(old) = app.hub.register(&peer.room, &peer.identity, tx.clone()) {
        let _ = old.send(ClientMsg::Close("replaced".into()));
    }
    if let Some(r) = &req {
        reply["req"] = r.clone();
    }
    if socket.send(Message::text(reply.to_string())).await.is_err() {
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
                Some(ClientMsg::Json(v)) => {
                    if socket.send(Message::text(v.to_string())).await.is_err() { break; }
                }
                Some(ClientMsg::Close(reason)) => {
                    let _ = socket.send(Message::text(json!({"type": "leave", "reason": reason}).to_string())).await;
                    let _ = socket.send(Message::Close(None)).await;
                    break;
                }
                None => break,
            },
            inc = socket.recv() => match inc {
                Some(Ok(Message::Text(text))) => {
                    let (reply, done) = handle(&app, &peer, &text).await;
                    if let Some(r) = reply {
                        if socket.send(Message::text(r.to_string())).await.is_err() { break; }
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

/// Authenticates the first message and gets the room's policy to admit it, waiting in the
/// queue while a migration runs (`join_queued`). `Ok(None)`: the client went away.
async fn admit(
    app: &Arc<App>,
    socket: &mut WebSocket,
    msg: &Value,
    q: &RtcQuery,
    req: Option<&Value>,
) -> Result<Option<(Claims, Vec<Action>)>, ApiError> {
    if app.is_draining() {
        return Err(ApiError::rejected("node is draining; join another node"));
    }
    let token = msg
        .get("token")
        .and_then(Value::as_str)
        .or(q.access_token.as_deref())
        .ok_or_else(|| {
            ApiError::unauthorized("no access token (query access_token or join.token)")
                .with_field("token")
        })?;
    let room = msg
        .get("room")
        .and_then(Value::as_str)
        .or(q.room.as_deref());
    let claims = verify_token(app, token, room)?;
    let capable = match msg.get("capabilities") {
        None | Some(Value::Null) => false,
        Some(Value::Array(a)) => a.iter().any(|c| c.as_str() == Some("p2p")),
        Some(_) => {
            return Err(ApiError::invalid(
                "capabilities",
                "expected an array of strings",
            ))
        }
    };
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
    let mut queued = json!({
        "type": "join_queued",
        "position": position,
        "estimated_wait_ms": estimated_wait_ms,
    });
    if let Some(r) = req {
        queued["req"] = r.clone();
    }
    if socket
        .send(Message::text(queued.to_string()))
        .await
        .is_err()
    {
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
                    if send_err(socket, &e, None).await.is_err() {
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
    msg: &Value,
    claims: Claims,
    actions: Vec<Action>,
) -> Result<(Peer, Value, Vec<Action>), ApiError> {
    let mut j = Join::from_claims(&claims);
    if let Some(name) = msg.get("name") {
        j.name = Some(
            name.as_str()
                .ok_or_else(|| ApiError::invalid("name", "expected a string"))?
                .to_owned(),
        );
    }
    let (room, identity) = (claims.room.clone(), claims.sub.clone());
    let on_refusal = actions.clone();
    let who = identity.clone();
    let (sid, reply) = app
        .in_room(&room, move |ctx| {
            Box::pin(async move {
                let sid = ctx.join(j, true, on_refusal).await?;
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

/// Handles one client message: the reply (if any) and whether the client left.
async fn handle(app: &Arc<App>, peer: &Peer, text: &str) -> (Option<Value>, bool) {
    let msg: Value = match serde_json::from_str(text) {
        Ok(v @ Value::Object(_)) => v,
        _ => {
            return (
                Some(err_msg(
                    &ApiError::invalid("type", "expected a JSON object"),
                    None,
                )),
                false,
            )
        }
    };
    let req = msg.get("req").cloned();
    let ty = msg
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    let result = dispatch(app, peer, &ty, msg).await;
    match result {
        Ok(Some(mut v)) => {
            if let Some(r) = req {
                v["req"] = r;
            }
            (Some(v), ty == "leave")
        }
        Ok(None) => (None, ty == "leave"),
        Err(e) => (Some(err_msg(&e, req.as_ref())), false),
    }
}

fn str_field(msg: &Value, field: &'static str) -> Result<String, ApiError> {
    match msg.get(field) {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(ApiError::invalid(
            field,
            format!("{field} must be a string"),
        )),
        None => Err(ApiError::invalid(field, format!("missing {field}"))),
    }
}

fn bool_field(msg: &Value, field: &'static str) -> Result<bool, ApiError> {
    match msg.get(field) {
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(ApiError::invalid(
            field,
            format!("{field} must be true or false"),
        )),
        None => Err(ApiError::invalid(field, format!("missing {field}"))),
    }
}

fn pc_field(msg: &Value, expected: &str) -> Result<(), ApiError> {
    let pc = str_field(msg, "pc")?;
    if pc != expected {
        return Err(ApiError::invalid(
            "pc",
            format!("expected pc {expected:?}, got {pc:?}"),
        ));
    }
    Ok(())
}

/// Runs `f` on the peer's room with its identity.
async fn on_room<T, F>(app: &Arc<App>, peer: &Peer, f: F) -> Result<T, ApiError>
where
    T: Send + 'static,
    F: for<'a> FnOnce(
            &'a mut super::actor::RoomCtx,
            String,
        ) -> super::actor::BoxFuture<'a, Result<T, ApiError>>
        + Send
        + 'static,
{
    let identity = peer.identity.clone();
    app.in_existing_room(&peer.room, move |ctx| f(ctx, identity))
        .await
}

async fn dispatch(
    app: &Arc<App>,
    peer: &Peer,
    ty: &str,
    msg: Value,
) -> Result<Option<Value>, ApiError> {
    match ty {
        "ping" => Ok(Some(
            json!({"type": "pong", "t": msg.get("t").cloned().unwrap_or(Value::Null)}),
        )),
        "offer" => {
            pc_field(&msg, "publisher")?;
            let sdp = str_field(&msg, "sdp")?;
            let answer = on_room(app, peer, move |ctx, me| {
                Box::pin(async move {
                    // A publisher offer to the SFU while the room is P2P: this client needs it.
                    ctx.require_sfu(Some(&me)).await?;
                    Ok(ctx.answer_offer(&me, &sdp, OneShot::Publisher).await?.1)
                })
            })
            .await?;
            Ok(Some(
                json!({"type": "answer", "pc": "publisher", "sdp": answer}),
            ))
        }
        "answer" => {
            pc_field(&msg, "subscriber")?;
            let sdp = str_field(&msg, "sdp")?;
            on_room(app, peer, move |ctx, me| {
                Box::pin(async move { ctx.subscriber_answer(&me, &sdp).await })
            })
            .await?;
            Ok(None)
        }
        "trickle" => {
            let pc = str_field(&msg, "pc")?;
            if pc != "publisher" && pc != "subscriber" {
                return Err(ApiError::invalid("pc", "expected publisher or subscriber"));
            }
            Ok(None)
        }
        "publish" => {
            let cid = str_field(&msg, "cid")?;
            let kind = match str_field(&msg, "kind")?.as_str() {
                "audio" => MediaKind::Audio,
                "video" => MediaKind::Video,
                other => return Err(ApiError::invalid("kind", format!("unknown kind {other:?}"))),
            };
            let source = match str_field(&msg, "source")?.as_str() {
                "camera" => Source::Camera,
                "microphone" => Source::Microphone,
                "screen" => Source::Screen,
                other => {
                    return Err(ApiError::invalid(
                        "source",
                        format!("unsupported source {other:?}"),
                    ))
                }
            };
            let muted = match msg.get("muted") {
                None | Some(Value::Null) => false,
                Some(_) => bool_field(&msg, "muted")?,
            };
            let mut layers = Vec::new();
            if let Some(sim) = msg.get("simulcast").filter(|v| !v.is_null()) {
                let arr = sim
                    .as_array()
                    .ok_or_else(|| ApiError::invalid("simulcast", "expected an array"))?;
                for (i, l) in arr.iter().enumerate() {
                    let rid = l.get("rid").and_then(Value::as_str).ok_or_else(|| {
                        ApiError::invalid(format!("simulcast[{i}].rid"), "missing or not a string")
                    })?;
                    layers.push(SimulcastLayer {
                        rid: rid.to_owned(),
                        max_bitrate_bps: l.get("max_bitrate").and_then(Value::as_u64),
                    });
                }
            }
            let track = PublishTrack {
                kind,
                source,
                layers,
                muted,
            };
            let reply = on_room(app, peer, move |ctx, me| {
                Box::pin(async move {
                    let name = ctx.name.clone();
                    let events = ctx.rooms.publish(&name, &me, track)?;
                    let (sid, track) = events
                        .iter()
                        .find_map(|e| match &e.kind {
                            RoomEventKind::TrackPublished { track, .. } => {
                                Some((track.id.clone(), track.clone()))
                            }
                            _ => None,
                        })
                        .expect("publish emits TrackPublished");
                    ctx.media_pending(
                        &me,
                        PendingTrack {
                            cid: cid.clone(),
                            sid,
                            kind,
                        },
                    );
                    let psid = ctx
                        .rooms
                        .participant(&name, &me)
                        .map(|p| p.sid.clone())
                        .unwrap_or_default();
                    ctx.emit(events);
                    Ok(json!({"type": "track_published", "cid": cid, "track": super::actor::track_info(&track, &psid)}))
                })
            })
            .await?;
            Ok(Some(reply))
        }
        "unpublish" => {
            let sid = str_field(&msg, "track_sid")?;
            on_room(app, peer, move |ctx, me| {
                Box::pin(async move {
                    let name = ctx.name.clone();
                    let events = ctx.rooms.unpublish(&name, &me, &sid)?;
                    ctx.emit(events);
                    ctx.sync_room_tracks().await;
                    Ok(())
                })
            })
            .await?;
            Ok(None)
        }
        "subscribe" => {
            let sid = str_field(&msg, "track_sid")?;
            let on = bool_field(&msg, "subscribe")?;
            on_room(app, peer, move |ctx, me| {
                Box::pin(async move { ctx.set_subscribed(&me, &sid, on).await })
            })
            .await?;
            Ok(None)
        }
        "mute" => {
            let sid = str_field(&msg, "track_sid")?;
            let muted = bool_field(&msg, "muted")?;
            on_room(app, peer, move |ctx, me| {
                Box::pin(async move { ctx.mute(Actor::Participant(&me), &sid, muted).await })
            })
            .await?;
            Ok(None)
        }
        "layer" => {
            let sid = str_field(&msg, "track_sid")?;
            let spatial = msg
                .get("max_spatial")
                .and_then(Value::as_u64)
                .filter(|v| *v <= 2)
                .ok_or_else(|| ApiError::invalid("max_spatial", "expected 0..2"))?;
            let temporal = match msg.get("max_temporal") {
                None | Some(Value::Null) => 2,
                Some(v) => v
                    .as_u64()
                    .filter(|v| *v <= 2)
                    .ok_or_else(|| ApiError::invalid("max_temporal", "expected 0..2"))?,
            };
            let cap = LayerCap {
                max_spatial: spatial as u8,
                max_temporal: temporal as u8,
            };
            on_room(app, peer, move |ctx, me| {
                Box::pin(async move { ctx.set_layer(&me, &sid, cap).await })
            })
            .await?;
            Ok(None)
        }
        "request_control" | "grant_control" | "revoke_control" => {
            let op = match ty {
                "request_control" => ControlOp::Request,
                "grant_control" => ControlOp::Grant,
                _ => ControlOp::Revoke,
            };
            let target = match op {
                ControlOp::Request => String::new(),
                _ => str_field(&msg, "identity")?,
            };
            on_room(app, peer, move |ctx, me| {
                Box::pin(async move { ctx.control(&me, op, &target) })
            })
            .await?;
            Ok(None)
        }
        "transfer_host" => {
            let target = str_field(&msg, "identity")?;
            on_room(app, peer, move |ctx, me| {
                Box::pin(async move { ctx.transfer_host(Actor::Participant(&me), &target) })
            })
            .await?;
            Ok(None)
        }
        "input" => {
            let event = msg
                .get("event")
                .cloned()
                .ok_or_else(|| ApiError::invalid("event", "missing event"))?;
            on_room(app, peer, move |ctx, me| {
                Box::pin(async move { ctx.relay_input(&me, event) })
            })
            .await?;
            Ok(None)
        }
        "update_metadata" => {
            let metadata = match msg.get("metadata") {
                Some(Value::String(s)) => Some(s.clone()),
                Some(Value::Null) | None => None,
                Some(_) => return Err(ApiError::invalid("metadata", "expected a string or null")),
            };
            on_room(app, peer, move |ctx, me| {
                Box::pin(async move { ctx.update_metadata(&me, metadata) })
            })
            .await?;
            Ok(None)
        }
        "resume" => {
            on_room(app, peer, move |ctx, me| {
                Box::pin(async move { ctx.resume(&me).await })
            })
            .await?;
            Ok(None)
        }
        "leave" => {
            on_room(app, peer, move |ctx, me| {
                Box::pin(async move { ctx.leave(&me).await })
            })
            .await?;
            Ok(None)
        }
        "p2p_signal" => {
            on_room(app, peer, move |ctx, me| {
                Box::pin(async move { ctx.relay_p2p(&me, &msg) })
            })
            .await?;
            Ok(None)
        }
        "mode_ack" | "mode_ready" | "mode_failed" => {
            let id = msg
                .get("id")
                .and_then(Value::as_u64)
                .ok_or_else(|| ApiError::invalid("id", "expected a migration id"))?;
            let gap = match msg.get("audio_gap_ms") {
                None | Some(Value::Null) => None,
                Some(v) if ty == "mode_ready" => Some(
                    v.as_f64()
                        .ok_or_else(|| ApiError::invalid("audio_gap_ms", "expected a number"))?,
                ),
                Some(_) => None,
            };
            let reply = match ty {
                "mode_ack" => ModeReply::Ack,
                "mode_ready" => ModeReply::Ready,
                _ => {
                    let reason = msg.get("reason").and_then(Value::as_str).unwrap_or("");
                    tracing::info!(room = %peer.room, identity = %peer.identity, id, reason, "client could not switch");
                    ModeReply::Failed
                }
            };
            on_room(app, peer, move |ctx, me| {
                Box::pin(async move {
                    ctx.mode_reply(&me, reply, id, gap).await;
                    Ok(())
                })
            })
            .await?;
            Ok(None)
        }
        "set_mode" => {
            let mode = parse_mode(&msg)?;
            on_room(app, peer, move |ctx, me| {
                Box::pin(async move {
                    if !ctx.is_host(&me) {
                        return Err(ApiError::new("forbidden", "only the host may set the mode")
                            .with_field("mode"));
                    }
                    ctx.set_mode(mode).await
                })
            })
            .await?;
            Ok(None)
        }
        "join" => Err(ApiError::rejected("already joined")),
        "" => Err(ApiError::invalid("type", "missing type")),
        other => Err(ApiError::invalid(
            "type",
            format!("unknown message type {other:?}"),
        )),
    }
}

/// `{mode: "auto"|"p2p"|"sfu"}` of `set_mode` and `PUT /api/rooms/{room}/mode`.
pub(crate) fn parse_mode(msg: &Value) -> Result<crate::room::RoomMode, ApiError> {
    use crate::room::RoomMode;
    match msg.get("mode").and_then(Value::as_str) {
        Some("auto") => Ok(RoomMode::Auto),
        Some("p2p") => Ok(RoomMode::P2p),
        Some("sfu") => Ok(RoomMode::Sfu),
        _ => Err(ApiError::invalid("mode", "expected auto, p2p or sfu")),
    }
}

fn err_msg(e: &ApiError, req: Option<&Value>) -> Value {
    let mut v = e.body();
    v["type"] = json!("error");
    if let Some(r) = req {
        v["req"] = r.clone();
    }
    v
}

async fn send_err(
    socket: &mut WebSocket,
    e: &ApiError,
    req: Option<&Value>,
) -> Result<(), axum::Error> {
    socket
        .send(Message::text(err_msg(e, req).to_string()))
        .await
}
