//! The HTTP room API (docs/api.md): rooms, participants, tracks, roles, host transfer, the
//! SSE event stream and drain. Every route needs `Authorization: Bearer <admin JWT>`.

use std::sync::Arc;
use std::time::SystemTime;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use super::actor::ParticipantPatch;
use super::error::ApiError;
use super::App;
use crate::auth::{self, Grants, Role};
use crate::events::SseError;
use crate::lock::Locked;
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
    if app.is_draining() {
        return Err(ApiError::rejected("node is draining"));
    }
    let default_room = app.rooms_config.default_room.clone();
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
    let out = app
        .in_room(&name, move |ctx| {
            Box::pin(async move { ctx.create_room(config) })
        })
        .await?;
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
    let mut merged = serde_json::to_value(&app.hybrid_config).expect("config serializes");
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
    let out = app
        .in_existing_room(&room, move |ctx| {
            Box::pin(async move {
                ctx.set_mode(mode).await?;
                let mut out = json!({"name": ctx.name});
                let full = ctx.room_json();
                for k in ["mode", "setting", "migrating"] {
                    out[k] = full[k].clone();
                }
                Ok(out)
            })
        })
        .await?;
    Ok(Json(out))
}

/// `GET /api/rooms`: from the rooms' summaries (a busy room does not hold the list up).
async fn list_rooms(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    admin(&app, &headers)?;
    let rooms: Vec<Value> = app
        .registry
        .summaries()
        .into_iter()
        .filter_map(|s| s.room)
        .map(|r| {
            json!({
                "name": r.name,
                "config": r.config,
                "created_at_ms": r.created_at_ms,
                "num_participants": r.participants,
            })
        })
        .collect();
    Ok(Json(json!({ "rooms": rooms })))
}

async fn get_room(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(room): Path<String>,
) -> Result<Json<Value>, ApiError> {
    admin(&app, &headers)?;
    let out = app
        .in_existing_room(&room, |ctx| {
            Box::pin(async move {
                let mut out = ctx.room_json();
                out["dataplane_sessions"] = json!(ctx.dataplane_sessions());
                Ok(out)
            })
        })
        .await?;
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
    app.in_existing_room(&room, |ctx| {
        Box::pin(async move { ctx.delete_room().await })
    })
    .await?;
    Ok(Json(json!({"deleted": room})))
}

async fn list_participants(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(room): Path<String>,
) -> Result<Json<Value>, ApiError> {
    admin(&app, &headers)?;
    let app2 = Arc::clone(&app);
    let list = app
        .in_existing_room(&room, move |ctx| {
            Box::pin(async move {
                let r = ctx.room().ok_or_else(|| unknown_room(&ctx.name))?;
                let c = app2.connectivity.locked();
                // Each participant's selected pairs (issue 18): transport, addresses, types.
                Ok(r.participants
                    .values()
                    .map(|p| {
                        let mut info = serde_json::to_value(crate::signal::ParticipantInfo::of(p))
                            .unwrap_or(Value::Null);
                        info["connectivity"] =
                            super::connectivity::of_peer(&c, &ctx.media, &p.identity);
                        // The node holding its subscriber session (D104).
                        info["media_node"] = json!(ctx.media_node_of(&p.identity));
                        info
                    })
                    .collect::<Vec<_>>())
            })
        })
        .await?;
    Ok(Json(json!({ "participants": list })))
}

async fn kick(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path((room, identity)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    admin(&app, &headers)?;
    let who = identity.clone();
    app.in_existing_room(&room, move |ctx| {
        Box::pin(async move { ctx.kick(&who).await })
    })
    .await?;
    Ok(Json(json!({"kicked": identity})))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PatchBody {
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
    let body: PatchBody = typed(v.clone()).map_err(|e| {
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
    let patch = ParticipantPatch {
        role: body.role,
        grants: body.grants,
        metadata: v.get("metadata").map(|_| body.metadata),
    };
    let out = app
        .in_existing_room(&room, move |ctx| {
            Box::pin(async move { ctx.update_participant(&identity, patch).await })
        })
        .await?;
    Ok(Json(
        serde_json::to_value(out).expect("participant info serializes"),
    ))
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
    let track = sid.clone();
    app.in_existing_room(&room, move |ctx| {
        Box::pin(async move { ctx.admin_mute(&identity, &track, muted).await })
    })
    .await?;
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
    let target = to.clone();
    app.in_existing_room(&room, move |ctx| {
        Box::pin(async move { ctx.transfer_host(Actor::Admin, &target).await })
    })
    .await?;
    Ok(Json(json!({"host": to})))
}

#[derive(Debug, Deserialize)]
struct EventsQuery {
    room: Option<String>,
}

/// `GET /api/events[?room=R]`: the event stream (docs/api.md "Events"). A room stream's ids are
/// the room's `seq`, the all-rooms stream's the node-wide event number; a lagging reader is
/// closed and resumes with `Last-Event-ID`.
async fn events(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Query(q): Query<EventsQuery>,
) -> Result<impl IntoResponse, ApiError> {
    admin(&app, &headers)?;
    let last = match headers.get("last-event-id") {
        Some(v) => Some(
            v.to_str()
                .map_err(|_| ApiError::invalid("Last-Event-ID", "expected an integer"))?,
        ),
        None => None,
    };
    let stream = app.events.subscribe(q.room, last).map_err(|e| match e {
        SseError::InvalidLastEventId => ApiError::invalid("Last-Event-ID", e.to_string()),
        SseError::TooManySubscribers => {
            app.refusals.count(crate::limits::Refusal::SseSubscribers);
            ApiError::new("unavailable", e.to_string())
        }
        other => ApiError::new("unavailable", other.to_string()),
    })?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        axum::body::Body::from_stream(stream),
    ))
}

async fn drain(State(app): State<Arc<App>>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    admin(&app, &headers)?;
    app.start_drain();
    Ok(Json(json!({"draining": true})))
}
