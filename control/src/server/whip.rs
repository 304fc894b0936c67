//! One-shot media sessions without our WebSocket protocol: **WHIP** ingest (RFC 9725) at
//! `/whip/{room}`, **WHEP** playback at `/whep/{room}`, and **sidecar** sessions at
//! `/api/rooms/{room}/sessions` for an existing signaling server. Each joins a participant
//! and answers its offer in one step ([`super::media::OneShot::Both`]); the resource id is
//! the participant sid.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, post};
use axum::{Json, Router};
use serde_json::{json, Value};

use super::api::{admin, body, typed, unknown_room};
use super::error::ApiError;
use super::hybrid::JoinTicket;
use super::media::OneShot;
use super::signal::verify_token;
use super::App;
use crate::auth::{Grants, Role};
use crate::room::Join;

pub(super) fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/whip/{room}", post(whip_post))
        .route("/whep/{room}", post(whep_post))
        .route(
            "/whip/{room}/{id}",
            delete(resource_delete).patch(resource_patch),
        )
        .route(
            "/whep/{room}/{id}",
            delete(resource_delete).patch(resource_patch),
        )
        .route("/api/rooms/{room}/sessions", post(sidecar_post))
        .route("/api/rooms/{room}/sessions/{id}", delete(sidecar_delete))
}

async fn whip_post(
    State(app): State<Arc<App>>,
    Path(room): Path<String>,
    headers: HeaderMap,
    offer: Bytes,
) -> Result<Response, ApiError> {
    oneshot_post(&app, "whip", room, &headers, offer).await
}

async fn whep_post(
    State(app): State<Arc<App>>,
    Path(room): Path<String>,
    headers: HeaderMap,
    offer: Bytes,
) -> Result<Response, ApiError> {
    oneshot_post(&app, "whep", room, &headers, offer).await
}

async fn oneshot_post(
    app: &Arc<App>,
    kind: &str,
    room: String,
    headers: &HeaderMap,
    offer: Bytes,
) -> Result<Response, ApiError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !ct.starts_with("application/sdp") {
        return Err(ApiError::invalid(
            "Content-Type",
            "expected application/sdp",
        ));
    }
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            ApiError::unauthorized("missing Authorization: Bearer <access token>")
                .with_field("Authorization")
        })
        .and_then(|v| {
            crate::auth::bearer(v).map_err(|e| ApiError::from(e).with_field("Authorization"))
        })?;
    let claims = verify_token(app, token, Some(&room))?;
    let offer = std::str::from_utf8(&offer).map_err(|_| ApiError::invalid("sdp", "not UTF-8"))?;
    let (sid, answer) = join_and_answer(app, &room, Join::from_claims(&claims), offer).await?;
    Ok((
        StatusCode::CREATED,
        [
            (header::CONTENT_TYPE, "application/sdp".to_owned()),
            (header::LOCATION, format!("/{kind}/{room}/{sid}")),
            (header::ETAG, format!("\"{sid}\"")),
        ],
        answer,
    )
        .into_response())
}

/// Joins `join` to `room` and answers `offer`; on a refused offer the join is undone.
async fn join_and_answer(
    app: &Arc<App>,
    room: &str,
    join: Join,
    offer: &str,
) -> Result<(String, String), ApiError> {
    if app.draining.load(Ordering::SeqCst) {
        return Err(ApiError::rejected("node is draining; join another node"));
    }
    // WHIP/WHEP/sidecar clients cannot do P2P: they count as P2P-incapable participants, so an
    // auto room moves to SFU for them (and a P2P-pinned room refuses them). A migration in
    // progress cannot hold an HTTP request: retry.
    let identity = join.identity.clone();
    let key = (room.to_owned(), identity.clone());
    match app.hybrid_join(&key, false)? {
        JoinTicket::Admitted(actions) => app.run_actions(room, actions).await,
        JoinTicket::Queued { .. } => {
            app.hybrid_cancel_join(&key);
            return Err(ApiError::rejected(
                "the room is switching between p2p and sfu; retry in a few seconds",
            )
            .with_field("room"));
        }
    }
    let now = app.now_ms();
    let joined = app.rooms.lock().expect("rooms lock").join(room, join, now);
    let events = match joined {
        Ok(events) => events,
        Err(e) => {
            app.hybrid_leave(&key).await;
            if app.rooms.lock().expect("rooms lock").room(room).is_none() {
                app.forget_policy(room);
            }
            return Err(e.into());
        }
    };
    let sid = app
        .rooms
        .lock()
        .expect("rooms lock")
        .participant(room, &identity)
        .map(|p| p.sid.clone())
        .expect("just joined");
    app.media_join(&key, &sid, false).await;
    app.emit(events);
    let answered = match app.hybrid_require_sfu(room, Some(&identity)).await {
        Ok(()) => app.answer_offer(&key, offer, OneShot::Both).await,
        Err(e) => Err(e),
    };
    match answered {
        Ok((_, answer)) => Ok((sid, answer)),
        Err(e) => {
            let now = app.now_ms();
            if let Ok(events) = app
                .rooms
                .lock()
                .expect("rooms lock")
                .leave(room, &identity, now)
            {
                app.emit(events);
            }
            app.media_leave(&key).await;
            Err(e)
        }
    }
}

/// The identity whose participant sid is `sid` in `room`.
fn identity_of(app: &App, room: &str, sid: &str) -> Result<String, ApiError> {
    let rooms = app.rooms.lock().expect("rooms lock");
    let r = rooms.room(room).ok_or_else(|| unknown_room(room))?;
    r.participants
        .values()
        .find(|p| p.sid == sid)
        .map(|p| p.identity.clone())
        .ok_or_else(|| ApiError::not_found(format!("session {sid:?} not found")).with_field("id"))
}

async fn end(app: &Arc<App>, room: &str, sid: &str) -> Result<(), ApiError> {
    let identity = identity_of(app, room, sid)?;
    let now = app.now_ms();
    let events = app
        .rooms
        .lock()
        .expect("rooms lock")
        .leave(room, &identity, now)?;
    app.emit(events);
    app.media_leave(&(room.to_owned(), identity)).await;
    Ok(())
}

async fn resource_delete(
    State(app): State<Arc<App>>,
    Path((room, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    resource_auth(&app, &room, &headers)?;
    end(&app, &room, &id).await?;
    Ok(StatusCode::OK)
}

/// Trickle/ICE restart fragments (RFC 9725 §4.3): the ICE-lite server learns addresses from
/// connectivity checks, so candidates are accepted and not needed.
async fn resource_patch(
    State(app): State<Arc<App>>,
    Path((room, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    resource_auth(&app, &room, &headers)?;
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !ct.starts_with("application/trickle-ice-sdpfrag") {
        return Err(ApiError::invalid(
            "Content-Type",
            "expected application/trickle-ice-sdpfrag",
        ));
    }
    identity_of(&app, &room, &id)?;
    Ok(StatusCode::NO_CONTENT)
}

fn resource_auth(app: &App, room: &str, headers: &HeaderMap) -> Result<(), ApiError> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| ApiError::unauthorized("missing Authorization").with_field("Authorization"))
        .and_then(|v| {
            crate::auth::bearer(v).map_err(|e| ApiError::from(e).with_field("Authorization"))
        })?;
    // The access token of the session or an admin token.
    if crate::auth::verify_admin(token, &app.keyring, std::time::SystemTime::now()).is_ok() {
        return Ok(());
    }
    verify_token(app, token, Some(room)).map(|_| ())
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct SidecarBody {
    identity: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    role: Option<Role>,
    #[serde(default)]
    grants: Option<Grants>,
    sdp: String,
}

async fn sidecar_post(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(room): Path<String>,
    json: Result<Json<Value>, JsonRejection>,
) -> Result<impl IntoResponse, ApiError> {
    admin(&app, &headers)?;
    let v = body(json)?;
    for (f, want) in [
        ("identity", "string"),
        ("sdp", "string"),
        ("name", "string"),
    ] {
        if let Some(x) = v.get(f) {
            if !(x.is_string() || (f == "name" && x.is_null())) {
                return Err(ApiError::invalid(f, format!("{f} must be a {want}")));
            }
        }
    }
    if let Some(r) = v.get("role") {
        if !matches!(r.as_str(), Some("host" | "controller" | "viewer")) {
            return Err(ApiError::invalid(
                "role",
                "expected host, controller or viewer",
            ));
        }
    }
    let b: SidecarBody = typed(v.clone()).map_err(|e| {
        if e.field.as_deref() == Some("body") && v.get("grants").is_some() {
            ApiError::invalid("grants", e.message)
        } else {
            e
        }
    })?;
    if app.rooms.lock().expect("rooms lock").room(&room).is_none()
        && !app.rooms.lock().expect("rooms lock").config().auto_create
    {
        return Err(unknown_room(&room));
    }
    let role = b.role.unwrap_or(Role::Viewer);
    let join = Join {
        identity: b.identity,
        name: b.name,
        metadata: None,
        role,
        grants: b.grants.unwrap_or_else(|| Grants::for_role(role)),
    };
    let (sid, answer) = join_and_answer(&app, &room, join, &b.sdp).await?;
    Ok((
        StatusCode::CREATED,
        [(
            header::LOCATION,
            format!("/api/rooms/{room}/sessions/{sid}"),
        )],
        Json(json!({"session_id": sid, "sdp": answer})),
    ))
}

async fn sidecar_delete(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path((room, id)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    admin(&app, &headers)?;
    end(&app, &room, &id).await?;
    Ok(Json(json!({"ended": id})))
}
