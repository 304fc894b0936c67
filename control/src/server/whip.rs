//! One-shot media sessions without our WebSocket protocol: **WHIP** ingest (RFC 9725) at
//! `/whip/{room}`, **WHEP** playback at `/whep/{room}`, and **sidecar** sessions at
//! `/api/rooms/{room}/sessions` for an existing signaling server. Each joins a participant
//! and answers its offer in one step, planned and applied by the room's actor so that a
//! refused offer leaves nothing behind (`media/oneshot.rs`). A WHIP/WHEP resource id is 128
//! random bits, not the participant sid: only its own token or an admin token ends it, and no
//! other participant can be ended through it (docs/security.md, finding #3).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, post};
use axum::{Json, Router};
use serde_json::{json, Value};

use super::api::{body, typed, unknown_room};
use super::error::ApiError;
use super::media::Resource;
use super::signal::verify_token;
use super::App;
use crate::auth::{Grants, Role};
use crate::limits::Refusal;
use crate::room::Join;

pub(super) fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/whip/{room}", post(whip_post))
        .route("/whep/{room}", post(whep_post))
        .route("/whip/{room}/{id}", delete(whip_delete).patch(whip_patch))
        .route("/whep/{room}/{id}", delete(whep_delete).patch(whep_patch))
}

/// The sidecar routes (admin only: the server's router checks the admin token first).
pub(super) fn sidecar_routes() -> Router<Arc<App>> {
    Router::new()
        .route("/api/rooms/{room}/sessions", post(sidecar_post))
        .route("/api/rooms/{room}/sessions/{id}", delete(sidecar_delete))
}

async fn whip_post(
    State(app): State<Arc<App>>,
    Path(room): Path<String>,
    headers: HeaderMap,
    offer: Body,
) -> Result<Response, ApiError> {
    oneshot_post(&app, "whip", room, &headers, offer).await
}

async fn whep_post(
    State(app): State<Arc<App>>,
    Path(room): Path<String>,
    headers: HeaderMap,
    offer: Body,
) -> Result<Response, ApiError> {
    oneshot_post(&app, "whep", room, &headers, offer).await
}

async fn oneshot_post(
    app: &Arc<App>,
    kind: &'static str,
    room: String,
    headers: &HeaderMap,
    offer: Body,
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
    let token = bearer(headers)?;
    let claims = verify_token(app, token, Some(&room)).inspect_err(|_| {
        app.refusals.count(Refusal::Unauthenticated);
    })?;
    // The offer is read only now that the token checked out, and only up to the limit.
    let max = app.limits.sdp_body_max_bytes;
    if let Some(e) = super::guard::too_large(app, headers, max) {
        return Err(e);
    }
    let offer = axum::body::to_bytes(offer, max).await.map_err(|_| {
        app.refusals.count(Refusal::BodyTooLarge);
        ApiError::new("too_large", format!("offer over {max} bytes")).with_field("sdp")
    })?;
    let offer = std::str::from_utf8(&offer).map_err(|_| ApiError::invalid("sdp", "not UTF-8"))?;
    let resource = Resource {
        id: random_id()?,
        kind,
    };
    let id = resource.id.clone();
    let (_, answer) = join_and_answer(
        app,
        &room,
        Join::from_claims(&claims),
        Some(claims.iat),
        offer,
        Some(resource),
        app.is_dev_token(&claims),
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        [
            (
                header::LOCATION,
                format!("/{kind}/{}/{id}", percent_encode(&room)),
            ),
            (header::CONTENT_TYPE, "application/sdp".to_owned()),
            (header::ETAG, format!("\"{id}\"")),
        ],
        answer,
    )
        .into_response())
}

/// 128 random bits as 32 hex digits.
fn random_id() -> Result<String, ApiError> {
    let mut b = [0u8; 16];
    aws_lc_rs::rand::fill(&mut b).map_err(|_| ApiError::new("unavailable", "system RNG failed"))?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

/// A path segment percent-encoded (RFC 3986: all but the unreserved characters).
pub(crate) fn percent_encode(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for b in segment.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn bearer(headers: &HeaderMap) -> Result<&str, ApiError> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            ApiError::unauthorized("missing Authorization: Bearer <access token>")
                .with_field("Authorization")
        })
        .and_then(|v| {
            crate::auth::bearer(v).map_err(|e| ApiError::from(e).with_field("Authorization"))
        })
}

/// Joins `join` to `room` and answers `offer`, in the room's actor; a refused offer leaves no
/// trace.
async fn join_and_answer(
    app: &Arc<App>,
    room: &str,
    join: Join,
    iat_s: Option<u64>,
    offer: &str,
    resource: Option<Resource>,
    dev: bool,
) -> Result<(String, String), ApiError> {
    if app.is_draining() {
        return Err(ApiError::rejected("node is draining; join another node"));
    }
    let offer = offer.to_owned();
    app.in_room(room, move |ctx| {
        Box::pin(async move {
            if dev {
                ctx.refuse_dev_takeover(&join.identity)?;
            }
            ctx.join_and_answer(join, iat_s, &offer, resource).await
        })
    })
    .await
}

async fn whip_delete(
    State(app): State<Arc<App>>,
    Path((room, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    resource_delete(&app, "whip", room, id, &headers).await
}

async fn whep_delete(
    State(app): State<Arc<App>>,
    Path((room, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    resource_delete(&app, "whep", room, id, &headers).await
}

async fn whip_patch(
    State(app): State<Arc<App>>,
    Path((room, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    resource_patch(&app, "whip", room, id, &headers).await
}

async fn whep_patch(
    State(app): State<Arc<App>>,
    Path((room, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    resource_patch(&app, "whep", room, id, &headers).await
}

async fn resource_delete(
    app: &Arc<App>,
    kind: &'static str,
    room: String,
    id: String,
    headers: &HeaderMap,
) -> Result<StatusCode, ApiError> {
    let owner = resource_auth(app, &room, headers)?;
    app.in_existing_room(&room, move |ctx| {
        Box::pin(async move { ctx.end_resource(kind, &id, owner.as_deref()).await })
    })
    .await?;
    Ok(StatusCode::OK)
}

/// Trickle/ICE restart fragments (RFC 9725 §4.3): the ICE-lite server learns addresses from
/// connectivity checks, so candidates are accepted and not needed.
async fn resource_patch(
    app: &Arc<App>,
    kind: &'static str,
    room: String,
    id: String,
    headers: &HeaderMap,
) -> Result<StatusCode, ApiError> {
    let owner = resource_auth(app, &room, headers)?;
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
        Box::pin(async move { ctx.resource_owner(kind, &id, owner.as_deref()).map(drop) })
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The identity whose resources the token may act on; `None` for an admin token (any).
fn resource_auth(app: &App, room: &str, headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let token = bearer(headers)?;
    if crate::auth::verify_admin(token, &app.keyring, std::time::SystemTime::now()).is_ok() {
        return Ok(None);
    }
    verify_token(app, token, Some(room))
        .map(|c| Some(c.sub))
        .inspect_err(|_| app.refusals.count(Refusal::Unauthenticated))
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
    Path(room): Path<String>,
    json: Result<Json<Value>, JsonRejection>,
) -> Result<impl IntoResponse, ApiError> {
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
    let (sid, answer) = join_and_answer(&app, &room, join, None, &b.sdp, None, false).await?;
    Ok((
        StatusCode::CREATED,
        [(
            header::LOCATION,
            format!("/api/rooms/{}/sessions/{sid}", percent_encode(&room)),
        )],
        Json(json!({"session_id": sid, "sdp": answer})),
    ))
}

async fn sidecar_delete(
    State(app): State<Arc<App>>,
    Path((room, id)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let sid = id.clone();
    app.in_existing_room(&room, move |ctx| {
        Box::pin(async move { ctx.end_oneshot(&sid).await })
    })
    .await?;
    Ok(Json(json!({"ended": id})))
}
