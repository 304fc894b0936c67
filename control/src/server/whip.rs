//! One-shot media sessions without our WebSocket protocol: **WHIP** ingest (RFC 9725) at
//! `/whip/{room}`, **WHEP** playback at `/whep/{room}`, and **sidecar** sessions at
//! `/api/rooms/{room}/sessions` for an existing signaling server. Each joins a participant
//! and answers its offer in one step, planned and applied by the room's actor so that a
//! refused offer leaves nothing behind (`media/oneshot.rs`); the resource id is the participant
//! sid.

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
    let (sid, answer) = join_and_answer(
        app,
        &room,
        Join::from_claims(&claims),
        Some(claims.iat),
        offer,
    )
    .await?;
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

/// Joins `join` to `room` and answers `offer`, in the room's actor; a refused offer leaves no
/// trace.
async fn join_and_answer(
    app: &Arc<App>,
    room: &str,
    join: Join,
    iat_s: Option<u64>,
    offer: &str,
) -> Result<(String, String), ApiError> {
    if app.is_draining() {
        return Err(ApiError::rejected("node is draining; join another node"));
    }
    let offer = offer.to_owned();
    app.in_room(room, move |ctx| {
        Box::pin(async move { ctx.join_and_answer(join, iat_s, &offer).await })
    })
    .await
}

/// Ends the session whose participant sid is `sid` in `room`.
async fn end(app: &Arc<App>, room: &str, sid: &str) -> Result<(), ApiError> {
    let sid = sid.to_owned();
    app.in_existing_room(room, move |ctx| {
        Box::pin(async move {
            let identity = ctx.identity_of(&sid)?;
            ctx.leave(&identity).await
        })
    })
    .await
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
    app.in_existing_room(&room, move |ctx| {
        Box::pin(async move { ctx.identity_of(&id).map(drop) })
    })
    .await?;
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
    if !app.rooms_config.auto_create
        && app
            .registry
            .summaries()
            .iter()
            .all(|s| s.room.as_ref().is_none_or(|r| r.name != room))
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
    let (sid, answer) = join_and_answer(&app, &room, join, None, &b.sdp).await?;
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
