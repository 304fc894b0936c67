//! WebSocket signaling at `/rtc` (docs/protocol.md): authenticate, join, then one task per
//! connection reads client messages and writes server messages queued by the hub.

use std::sync::atomic::Ordering;
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

use super::error::ApiError;
use super::hub::ClientMsg;
use super::hybrid::JoinTicket;
use super::media::{OneShot, PeerKey};
use super::{departed, participant_info, App};
use crate::auth::{self, AuthError, Claims, Source};
use crate::hybrid::Action;
use crate::room::{Join, MediaKind, PublishTrack, RoomEventKind, SimulcastLayer};

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

async fn connection(app: Arc<App>, mut socket: WebSocket, q: RtcQuery) {
    // Wait for `join` (bounded: 10 s), authenticate, join the room.
    let first = tokio::time::timeout(std::time::Duration::from_secs(10), socket.recv()).await;
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
    let (key, reply, actions) = match joined {
        Ok(v) => v,
        Err(e) => {
            let _ = send_err(&mut socket, &e, req.as_ref()).await;
            let _ = socket.send(Message::Close(None)).await;
            return;
        }
    };
    let (tx, mut rx) = mpsc::unbounded_channel();
    if let Some(old) = app.hub.register(&key.0, &key.1, tx.clone()) {
        let _ = old.send(ClientMsg::Close("replaced".into()));
    }
    let mut reply = reply;
    if let Some(r) = &req {
        reply["req"] = r.clone();
    }
    if socket.send(Message::text(reply.to_string())).await.is_err() {
        app.hub.unregister(&key.0, &key.1, &tx);
        return;
    }
    // Policy actions of this join (e.g. the migration it started) now that it can hear them.
    app.run_actions(&key.0, actions).await;
    // Tracks already in the room: offer them.
    {
        let mut media = app.media.lock().await;
        app.refresh_room(&mut media, &key.0).await;
    }

    let mut replaced = false;
    loop {
        tokio::select! {
            out = rx.recv() => match out {
                Some(ClientMsg::Json(v)) => {
                    if socket.send(Message::text(v.to_string())).await.is_err() { break; }
                }
                Some(ClientMsg::Close(reason)) => {
                    let _ = socket.send(Message::text(json!({"type": "leave", "reason": reason}).to_string())).await;
                    let _ = socket.send(Message::Close(None)).await;
                    replaced = reason == "replaced";
                    break;
                }
                None => break,
            },
            inc = socket.recv() => match inc {
                Some(Ok(Message::Text(text))) => {
                    let (reply, done) = handle(&app, &key, &text).await;
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
    app.hub.unregister(&key.0, &key.1, &tx);
    // A dropped socket without `leave` also leaves: the client resumes by joining again.
    let still_ours = app
        .rooms
        .lock()
        .expect("rooms lock")
        .participant(&key.0, &key.1)
        .is_some();
    if !replaced && still_ours {
        leave(&app, &key).await;
    }
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
    if app.draining.load(Ordering::SeqCst) {
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
    let key = (claims.room.clone(), claims.sub.clone());
    let (position, estimated_wait_ms, mut admitted) = match app.hybrid_join(&key, capable)? {
        JoinTicket::Admitted(actions) => return Ok(Some((claims, actions))),
        JoinTicket::Queued {
            position,
            estimated_wait_ms,
            admitted,
        } => (position, estimated_wait_ms, admitted),
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
        app.hybrid_cancel_join(&key);
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
                    app.hybrid_cancel_join(&key);
                    return Err(ApiError::rejected("join queue dropped"));
                }
                return Ok(Some((claims, Vec::new())));
            }
            _ = &mut deadline => {
                app.hybrid_cancel_join(&key);
                return Err(ApiError::rejected("still migrating; join again later").with_field("room"));
            }
            inc = socket.recv() => match inc {
                Some(Ok(Message::Text(_))) => {
                    let e = ApiError::rejected("join queued: wait for joined");
                    if send_err(socket, &e, None).await.is_err() {
                        app.hybrid_cancel_join(&key);
                        return Ok(None);
                    }
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => {
                    app.hybrid_cancel_join(&key);
                    return Ok(None);
                }
                Some(Ok(_)) => {}
            }
        }
    }
}

/// Joins an admitted client to the room; the `joined` reply and the policy actions to run
/// once the client is registered.
async fn join(
    app: &Arc<App>,
    msg: &Value,
    claims: Claims,
    actions: Vec<Action>,
) -> Result<(PeerKey, Value, Vec<Action>), ApiError> {
    let key = (claims.room.clone(), claims.sub.clone());
    match join_room(app, msg, &claims).await {
        Ok(reply) => Ok((key, reply, actions)),
        Err(e) => {
            app.run_actions(&key.0, actions).await;
            // Admitted by the policy but not into the room: stop counting it.
            app.hybrid_leave(&key).await;
            if app.rooms.lock().expect("rooms lock").room(&key.0).is_none() {
                app.forget_policy(&key.0);
            }
            Err(e)
        }
    }
}

async fn join_room(app: &Arc<App>, msg: &Value, claims: &Claims) -> Result<Value, ApiError> {
    let mut j = Join::from_claims(claims);
    if let Some(name) = msg.get("name") {
        j.name = Some(
            name.as_str()
                .ok_or_else(|| ApiError::invalid("name", "expected a string"))?
                .to_owned(),
        );
    }
    let now = app.now_ms();
    let events = app
        .rooms
        .lock()
        .expect("rooms lock")
        .join(&claims.room, j, now)?;
    let key = (claims.room.clone(), claims.sub.clone());
    let (room_info, me, others) = {
        let rooms = app.rooms.lock().expect("rooms lock");
        let r = rooms.room(&claims.room).expect("just joined");
        let me = r.participants.get(&claims.sub).expect("just joined");
        let others: Vec<Value> = r
            .participants
            .values()
            .filter(|p| p.identity != claims.sub)
            .map(participant_info)
            .collect();
        (
            json!({"name": r.name, "sid": format!("RM_{}", r.name)}),
            participant_info(me),
            others,
        )
    };
    let sid = me["sid"].as_str().unwrap_or_default().to_owned();
    app.media_join(&key, &sid, true).await;
    app.emit(events);
    Ok(json!({
        "type": "joined",
        "room": room_info,
        "participant": me,
        "participants": others,
        "mode": app.mode_info(&key.0),
        "ice_servers": app.ice_servers(&key.1),
    }))
}

async fn leave(app: &Arc<App>, key: &PeerKey) {
    let now = app.now_ms();
    let events = app
        .rooms
        .lock()
        .expect("rooms lock")
        .leave(&key.0, &key.1, now);
    app.media_leave(key).await;
    if let Ok(events) = events {
        app.emit(events);
    }
}

/// Handles one client message: the reply (if any) and whether the client left.
async fn handle(app: &Arc<App>, key: &PeerKey, text: &str) -> (Option<Value>, bool) {
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
    let ty = msg.get("type").and_then(Value::as_str).unwrap_or("");
    let result = dispatch(app, key, ty, &msg).await;
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

fn str_field<'a>(msg: &'a Value, field: &'static str) -> Result<&'a str, ApiError> {
    match msg.get(field) {
        Some(Value::String(s)) => Ok(s),
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

async fn dispatch(
    app: &Arc<App>,
    key: &PeerKey,
    ty: &str,
    msg: &Value,
) -> Result<Option<Value>, ApiError> {
    let (room, identity) = (key.0.as_str(), key.1.as_str());
    match ty {
        "ping" => Ok(Some(
            json!({"type": "pong", "t": msg.get("t").cloned().unwrap_or(Value::Null)}),
        )),
        "offer" => {
            pc_field(msg, "publisher")?;
            let sdp = str_field(msg, "sdp")?;
            // A publisher offer to the SFU while the room is P2P: this client needs the SFU.
            app.hybrid_require_sfu(room, Some(identity)).await?;
            let (_, answer) = app.answer_offer(key, sdp, OneShot::Publisher).await?;
            Ok(Some(
                json!({"type": "answer", "pc": "publisher", "sdp": answer}),
            ))
        }
        "answer" => {
            pc_field(msg, "subscriber")?;
            let sdp = str_field(msg, "sdp")?;
            app.subscriber_answer(key, sdp).await?;
            Ok(None)
        }
        "trickle" => {
            let pc = str_field(msg, "pc")?;
            if pc != "publisher" && pc != "subscriber" {
                return Err(ApiError::invalid("pc", "expected publisher or subscriber"));
            }
            Ok(None)
        }
        "publish" => {
            let cid = str_field(msg, "cid")?;
            let kind = match str_field(msg, "kind")? {
                "audio" => MediaKind::Audio,
                "video" => MediaKind::Video,
                other => return Err(ApiError::invalid("kind", format!("unknown kind {other:?}"))),
            };
            let source = match str_field(msg, "source")? {
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
                Some(_) => bool_field(msg, "muted")?,
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
            let events = app.rooms.lock().expect("rooms lock").publish(
                room,
                identity,
                PublishTrack {
                    kind,
                    source,
                    layers,
                    muted,
                },
            )?;
            let (sid, track) = events
                .iter()
                .find_map(|e| match &e.kind {
                    RoomEventKind::TrackPublished { track, .. } => {
                        Some((track.id.clone(), track.clone()))
                    }
                    _ => None,
                })
                .expect("publish emits TrackPublished");
            app.media_pending(key, cid, &sid, kind).await;
            let psid = app
                .rooms
                .lock()
                .expect("rooms lock")
                .participant(room, identity)
                .map(|p| p.sid.clone())
                .unwrap_or_default();
            app.emit(events);
            Ok(Some(
                json!({"type": "track_published", "cid": cid, "track": super::track_info(&track, &psid)}),
            ))
        }
        "unpublish" => {
            let sid = str_field(msg, "track_sid")?;
            let events = app
                .rooms
                .lock()
                .expect("rooms lock")
                .unpublish(room, identity, sid)?;
            app.emit(events);
            app.sync_room_tracks(room).await;
            Ok(None)
        }
        "subscribe" => {
            let sid = str_field(msg, "track_sid")?;
            let on = bool_field(msg, "subscribe")?;
            app.set_subscribed(key, sid, on).await?;
            Ok(None)
        }
        "mute" => {
            let sid = str_field(msg, "track_sid")?;
            let muted = bool_field(msg, "muted")?;
            let events = app.rooms.lock().expect("rooms lock").mute_track(
                room,
                crate::room::Actor::Participant(identity),
                sid,
                muted,
            )?;
            app.emit(events);
            app.set_muted(sid, muted).await;
            Ok(None)
        }
        "layer" => {
            let sid = str_field(msg, "track_sid")?;
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
            app.set_layer(key, sid, spatial as u8, temporal as u8)
                .await?;
            Ok(None)
        }
        "request_control" => {
            let events = app
                .rooms
                .lock()
                .expect("rooms lock")
                .request_control(room, identity)?;
            app.emit(events);
            Ok(None)
        }
        "grant_control" | "revoke_control" | "transfer_host" => {
            let target = str_field(msg, "identity")?;
            let events = {
                let mut rooms = app.rooms.lock().expect("rooms lock");
                match ty {
                    "grant_control" => rooms.grant_control(room, identity, target),
                    "revoke_control" => rooms.revoke_control(room, identity, target),
                    _ => {
                        rooms.transfer_host(room, crate::room::Actor::Participant(identity), target)
                    }
                }
            }?;
            app.emit(events);
            Ok(None)
        }
        "input" => {
            let event = msg
                .get("event")
                .cloned()
                .ok_or_else(|| ApiError::invalid("event", "missing event"))?;
            let relay = app
                .rooms
                .lock()
                .expect("rooms lock")
                .relay_input(room, identity, event)?;
            app.hub.send_to(
                room,
                &relay.to,
                ClientMsg::Json(json!({"type": "input", "from": relay.from, "event": relay.event})),
            );
            Ok(None)
        }
        "update_metadata" => {
            let metadata = match msg.get("metadata") {
                Some(Value::String(s)) => Some(s.clone()),
                Some(Value::Null) | None => None,
                Some(_) => return Err(ApiError::invalid("metadata", "expected a string or null")),
            };
            let events = app.rooms.lock().expect("rooms lock").set_metadata(
                room,
                crate::room::Actor::Participant(identity),
                identity,
                metadata,
            )?;
            app.emit(events);
            Ok(None)
        }
        "resume" => {
            app.resume(key).await?;
            Ok(None)
        }
        "leave" => {
            let now = app.now_ms();
            let events = app
                .rooms
                .lock()
                .expect("rooms lock")
                .leave(room, identity, now)?;
            let gone = departed(&events);
            app.emit(events);
            for (r, i) in gone {
                app.media_leave(&(r, i)).await;
            }
            Ok(None)
        }
        "p2p_signal" => {
            app.relay_p2p(key, msg)?;
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
            if ty == "mode_failed" {
                let reason = msg.get("reason").and_then(Value::as_str).unwrap_or("");
                tracing::info!(room, identity, id, reason, "client could not switch");
            }
            app.hybrid_client(key, ty, id, gap).await;
            Ok(None)
        }
        "set_mode" => {
            let mode = parse_mode(msg)?;
            let is_host = app
                .rooms
                .lock()
                .expect("rooms lock")
                .participant(room, identity)
                .is_some_and(|p| p.role == crate::auth::Role::Host);
            if !is_host {
                return Err(
                    ApiError::new("forbidden", "only the host may set the mode").with_field("mode")
                );
            }
            app.hybrid_set_mode(room, mode).await?;
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
