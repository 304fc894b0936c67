//! The HTTP room API (docs/api.md): rooms, participants, tracks, roles, host transfer, the
//! SSE event stream and drain. Every route needs `Authorization: Bearer <admin JWT>`.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::SystemTime;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::IntoResponse;
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use super::error::ApiError;
use super::{departed, participant_info, App};
use crate::auth::{self, Grants, Role};
use crate::room::{Actor, RoomConfig};

pub(super) fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/api/rooms", post(create_room).get(list_rooms))
        .route("/api/rooms/{room}", get(get_room).delete(delete_room))
        .route("/api/rooms/{room}/mode", axum::routing::put(set_mode))
        .route("/api/rooms/{room}/participants", get(list_participants))
        .route(
            "/api/rooms/{room}/participants/{identity}",
            delete(kick).patch(update_participant),
        )
        .route(
            "/api/rooms/{room}/participants/{identity}/tracks/{sid}/mute",
            post(mute),
        )
        .route("/api/rooms/{room}/transfer_host", post(transfer_host))
        .route("/api/events", get(events))
        .route("/api/drain", post(drain))
}

/// Checks the admin bearer token.
pub(crate) fn admin(app: &App, headers: &HeaderMap) -> Result<(), ApiError> {
    let value = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            ApiError::unauthorized("missing Authorization: Bearer <admin token>")
                .with_field("Authorization")
        })?;
    let token = auth::bearer(value).map_err(|e| ApiError::from(e).with_field("Authorization"))?;
    auth::verify_admin(token, &app.keyring, SystemTime::now())?;
    Ok(())
}

/// A JSON body, or `invalid` naming the field serde complained about.
pub(crate) fn body(json: Result<Json<Value>, JsonRejection>) -> Result<Value, ApiError> {
    match json {
        Ok(Json(v @ Value::Object(_))) => Ok(v),
        Ok(_) => Err(ApiError::invalid("body", "expected a JSON object")),
        Err(e) => Err(ApiError::invalid("body", e.body_text())),
    }
}

/// Deserializes `v` into `T`, naming the failing field.
pub(crate) fn typed<T: serde::de::DeserializeOwned>(v: Value) -> Result<T, ApiError> {
    serde_json::from_value::<T>(v).map_err(|e| {
        let msg = e.to_string();
        let field = msg
            .split('`')
            .nth(1)
            .filter(|_| msg.starts_with("missing field") || msg.starts_with("unknown field"))
            .map(str::to_owned);
        match field {
            Some(f) => ApiError::invalid(f, msg),
            None => ApiError::invalid("body", msg),
        }
    })
}

fn field<'a>(v: &'a Value, name: &'static str) -> Result<&'a Value, ApiError> {
    v.get(name)
        .ok_or_else(|| ApiError::invalid(name, format!("missing {name}")))
}

fn room_json(r: &crate::room::Room) -> Value {
    json!({
        "name": r.name,
        "config": r.config,
        "created_at_ms": r.created_at_ms,
        "num_participants": r.participants.len(),
    })
}

async fn create_room(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    json: Result<Json<Value>, JsonRejection>,
) -> Result<impl IntoResponse, ApiError> {
    admin(&app, &headers)?;
    let v = body(json)?;
    let name = field(&v, "name")?
        .as_str()
        .ok_or_else(|| ApiError::invalid("name", "name must be a string"))?
        .to_owned();
    if app.draining.load(std::sync::atomic::Ordering::SeqCst) {
        return Err(ApiError::rejected("node is draining"));
    }
    let default_room = app
        .rooms
        .lock()
        .expect("rooms lock")
        .config()
        .default_room
        .clone();
    let hybrid = room_hybrid(&app, &v)?;
    let mut config = RoomConfig {
        max_controllers: default_room.max_controllers,
        mode: hybrid
            .as_ref()
            .map_or(default_room.mode, |h| h.default_mode),
        hybrid,
        ..RoomConfig::default()
    };
    if let Some(c) = v.get("config").filter(|c| !c.is_null()) {
        if !c.is_object() {
            return Err(ApiError::invalid("config", "expected an object"));
        }
        let mut merged = serde_json::to_value(&config).expect("config serializes");
        for (k, val) in c.as_object().expect("checked") {
            if merged.get(k).is_none() || k == "hybrid" {
                return Err(ApiError::invalid(format!("config.{k}"), "unknown field"));
            }
            merged[k] = val.clone();
        }
        config = typed::<RoomConfig>(merged).map_err(|mut e| {
            e.field = Some("config".into());
            e
        })?;
    }
    let now = app.now_ms();
    let events = app
        .rooms
        .lock()
        .expect("rooms lock")
        .create_room(&name, config, now)?;
    app.emit(events);
    let mut out = {
        let rooms = app.rooms.lock().expect("rooms lock");
        room_json(rooms.room(&name).expect("just created"))
    };
    with_mode(&app, &name, &mut out);
    Ok((StatusCode::CREATED, Json(out)))
}

/// The room's `hybrid` overrides merged over the daemon's `[hybrid]`, validated.
fn room_hybrid(app: &App, v: &Value) -> Result<Option<crate::hybrid::HybridConfig>, ApiError> {
    let Some(h) = v.get("hybrid").filter(|h| !h.is_null()) else {
        return Ok(None);
    };
    let overrides = h
        .as_object()
        .ok_or_else(|| ApiError::invalid("hybrid", "expected an object"))?;
    let base = app.hybrid.lock().expect("hybrid lock").config.clone();
    let mut merged = serde_json::to_value(&base).expect("config serializes");
    for (k, val) in overrides {
        if merged.get(k).is_none() {
            return Err(ApiError::invalid(format!("hybrid.{k}"), "unknown field"));
        }
        merged[k] = val.clone();
    }
    let cfg: crate::hybrid::HybridConfig =
        serde_json::from_value(merged).map_err(|e| ApiError::invalid("hybrid", e.to_string()))?;
    cfg.validate()
        .map_err(|(key, m)| ApiError::invalid(format!("hybrid.{key}"), m))?;
    Ok(Some(cfg))
}

/// `PUT /api/rooms/{room}/mode {"mode": "auto"|"p2p"|"sfu"}`.
async fn set_mode(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(room): Path<String>,
    json: Result<Json<Value>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    admin(&app, &headers)?;
    let v = body(json)?;
    let mode = super::signal::parse_mode(&v)?;
    if app.rooms.lock().expect("rooms lock").room(&room).is_none() {
        return Err(unknown_room(&room));
    }
    app.hybrid_set_mode(&room, mode).await?;
    let mut out = json!({"name": room});
    with_mode(&app, &room, &mut out);
    Ok(Json(out))
}

/// `mode` ("p2p"|"sfu", the current topology), `setting` and `migrating` (docs/api.md).
fn with_mode(app: &App, room: &str, out: &mut Value) {
    let info = app.mode_info(room);
    for k in ["mode", "setting", "migrating"] {
        out[k] = info[k].clone();
    }
}

async fn list_rooms(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    admin(&app, &headers)?;
    let rooms = app.rooms.lock().expect("rooms lock");
    Ok(Json(
        json!({"rooms": rooms.list().map(room_json).collect::<Vec<_>>()}),
    ))
}

async fn get_room(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(room): Path<String>,
) -> Result<Json<Value>, ApiError> {
    admin(&app, &headers)?;
    let sessions = app.dataplane_sessions(&room).await;
    let mut out = {
        let rooms = app.rooms.lock().expect("rooms lock");
        room_json(rooms.room(&room).ok_or_else(|| unknown_room(&room))?)
    };
    with_mode(&app, &room, &mut out);
    out["dataplane_sessions"] = json!(sessions);
    Ok(Json(out))
}

pub(crate) fn unknown_room(room: &str) -> ApiError {
    ApiError::not_found(format!("room {room:?} not found")).with_field("room")
}

async fn delete_room(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(room): Path<String>,
) -> Result<Json<Value>, ApiError> {
    admin(&app, &headers)?;
    let events = app
        .rooms
        .lock()
        .expect("rooms lock")
        .delete_room(&room)
        .map_err(|e| with_room_field(e.into()))?;
    let gone = departed(&events);
    app.emit(events);
    for key in gone {
        app.hub.send_to(
            &key.0,
            &key.1,
            super::hub::ClientMsg::Close("room_deleted".into()),
        );
        app.media_leave(&key).await;
    }
    Ok(Json(json!({"deleted": room})))
}

fn with_room_field(e: ApiError) -> ApiError {
    if e.code == "not_found" && e.field.is_none() {
        let f = if e.message.starts_with("participant") {
            "identity"
        } else if e.message.starts_with("track") {
            "track_sid"
        } else {
            "room"
        };
        e.with_field(f)
    } else {
        e
    }
}

async fn list_participants(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(room): Path<String>,
) -> Result<Json<Value>, ApiError> {
    admin(&app, &headers)?;
    let connectivity = app.room_connectivity(&room).await;
    let rooms = app.rooms.lock().expect("rooms lock");
    let r = rooms.room(&room).ok_or_else(|| unknown_room(&room))?;
    // Each participant's selected pairs (issue 18): transport, addresses, candidate types.
    let list = r
        .participants
        .values()
        .map(|p| {
            let mut info = participant_info(p);
            info["connectivity"] = connectivity
                .get(&p.identity)
                .cloned()
                .unwrap_or(Value::Null);
            info
        })
        .collect::<Vec<_>>();
    Ok(Json(json!({ "participants": list })))
}

async fn kick(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path((room, identity)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    admin(&app, &headers)?;
    let now = app.now_ms();
    let events = app
        .rooms
        .lock()
        .expect("rooms lock")
        .kick(&room, &identity, now)
        .map_err(|e| with_room_field(e.into()))?;
    app.emit(events);
    app.media_leave(&(room, identity.clone())).await;
    Ok(Json(json!({"kicked": identity})))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ParticipantPatch {
    #[serde(default)]
    role: Option<Role>,
    #[serde(default)]
    grants: Option<Grants>,
    #[serde(default)]
    metadata: Option<String>,
}

async fn update_participant(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path((room, identity)): Path<(String, String)>,
    json: Result<Json<Value>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    admin(&app, &headers)?;
    let v = body(json)?;
    if let Some(r) = v.get("role") {
        if !matches!(r.as_str(), Some("host" | "controller" | "viewer")) {
            return Err(ApiError::invalid(
                "role",
                "expected host, controller or viewer",
            ));
        }
    }
    let patch: ParticipantPatch = typed(v.clone()).map_err(|e| {
        if e.field.as_deref() == Some("body") {
            let f = if v.get("grants").is_some() {
                "grants"
            } else {
                "body"
            };
            ApiError::invalid(f, e.message)
        } else {
            e
        }
    })?;
    let mut events = Vec::new();
    {
        let mut rooms = app.rooms.lock().expect("rooms lock");
        if rooms.room(&room).is_none() {
            return Err(unknown_room(&room));
        }
        if rooms.participant(&room, &identity).is_none() {
            return Err(ApiError::not_found(format!(
                "participant {identity:?} not in room {room:?}"
            ))
            .with_field("identity"));
        }
        if let Some(role) = patch.role {
            events.extend(rooms.set_role(&room, &identity, role)?);
        }
        if let Some(g) = patch.grants {
            events.extend(rooms.set_grants(&room, &identity, g)?);
        }
        if v.get("metadata").is_some() {
            events.extend(rooms.set_metadata(&room, Actor::Admin, &identity, patch.metadata)?);
        }
    }
    app.emit(events);
    app.sync_room_tracks(&room).await;
    let rooms = app.rooms.lock().expect("rooms lock");
    let p = rooms.participant(&room, &identity).expect("checked above");
    Ok(Json(participant_info(p)))
}

async fn mute(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path((room, identity, sid)): Path<(String, String, String)>,
    json: Result<Json<Value>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    admin(&app, &headers)?;
    let v = body(json)?;
    let muted = field(&v, "muted")?
        .as_bool()
        .ok_or_else(|| ApiError::invalid("muted", "muted must be true or false"))?;
    {
        let rooms = app.rooms.lock().expect("rooms lock");
        let r = rooms.room(&room).ok_or_else(|| unknown_room(&room))?;
        let p = r.participants.get(&identity).ok_or_else(|| {
            ApiError::not_found(format!("participant {identity:?} not in room {room:?}"))
                .with_field("identity")
        })?;
        if !p.tracks.contains_key(&sid) {
            return Err(
                ApiError::not_found(format!("track {sid:?} of {identity:?} not found"))
                    .with_field("track_sid"),
            );
        }
    }
    let events =
        app.rooms
            .lock()
            .expect("rooms lock")
            .mute_track(&room, Actor::Admin, &sid, muted)?;
    app.emit(events);
    app.set_muted(&sid, muted).await;
    Ok(Json(json!({"track_sid": sid, "muted": muted})))
}

async fn transfer_host(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(room): Path<String>,
    json: Result<Json<Value>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    admin(&app, &headers)?;
    let v = body(json)?;
    let to = field(&v, "identity")?
        .as_str()
        .ok_or_else(|| ApiError::invalid("identity", "identity must be a string"))?
        .to_owned();
    let events = app
        .rooms
        .lock()
        .expect("rooms lock")
        .transfer_host(&room, Actor::Admin, &to)
        .map_err(|e| with_room_field(e.into()))?;
    app.emit(events);
    Ok(Json(json!({"host": to})))
}

#[derive(Debug, Deserialize)]
struct EventsQuery {
    room: Option<String>,
}

async fn events(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Query(q): Query<EventsQuery>,
) -> Result<impl IntoResponse, ApiError> {
    admin(&app, &headers)?;
    let after = match headers.get("last-event-id") {
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
            .ok_or_else(|| ApiError::invalid("Last-Event-ID", "expected an integer"))?,
        None => u64::MAX,
    };
    // Subscribe before replaying so nothing falls in between; duplicates are skipped by `n`.
    let live = app.hub.sse.subscribe();
    let backlog = if after == u64::MAX {
        Vec::new()
    } else {
        app.hub.replay(after)
    };
    let last = after;
    let room = q.room;
    let state = (backlog.into_iter(), live, last, room);
    let stream = futures_util::stream::unfold(
        state,
        |(mut backlog, mut live, mut last, room)| async move {
            loop {
                let next = match backlog.next() {
                    Some(l) => l,
                    None => match live.recv().await {
                        Ok(l) => l,
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                        Err(_) => return None,
                    },
                };
                if last != u64::MAX && next.n <= last {
                    continue;
                }
                last = next.n;
                if room.as_ref().is_some_and(|r| *r != next.room) {
                    continue;
                }
                let event = Event::default()
                    .id(next.n.to_string())
                    .event(next.body["event"].as_str().unwrap_or("event"))
                    .data(next.body.to_string());
                return Some((Ok::<_, Infallible>(event), (backlog, live, last, room)));
            }
        },
    );
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

async fn drain(State(app): State<Arc<App>>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    admin(&app, &headers)?;
    app.start_drain();
    Ok(Json(json!({"draining": true})))
}
