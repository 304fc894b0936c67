//! `GET /dev/token?room=R&identity=I&role=host|controller|viewer`: hands a participant token to
//! anyone who asks, so the demo page at `/` works with no token tooling. That is only safe on a
//! development node, so it is served only in dev mode (`sluice up` on its generated dev key, or
//! `[control] dev_tokens = true`); otherwise the route answers 404 like any unknown API path.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use super::error::ApiError;
use super::App;
use crate::auth::{self, Claims, Grants, Role};
use crate::limits::Refusal;
use crate::room::{validate_identity, validate_name, MAX_ROOM_NAME};

/// Dev tokens are for trying things out: long enough for a session, short enough that a leaked
/// one stops working the same day.
pub(crate) const DEV_TOKEN_TTL_S: u64 = 6 * 3600;

pub(super) fn routes() -> Router<Arc<App>> {
    Router::new().route("/dev/token", get(dev_token))
}

async fn dev_token(
    State(app): State<Arc<App>>,
    query: Result<Query<BTreeMap<String, String>>, QueryRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let Some((key, secret)) = &app.dev_key else {
        return Err(ApiError::not_found(
            "dev tokens are off (dev mode only: no api_keys configured, or [control] dev_tokens = true)",
        ));
    };
    let Query(q) = query.map_err(|e| ApiError::invalid("query", e.body_text()))?;
    let room = param(&q, "room")?;
    validate_name("room", room, MAX_ROOM_NAME)?;
    let identity = param(&q, "identity")?;
    validate_identity(identity).inspect_err(|_| app.refusals.count(Refusal::Identity))?;
    let role = match q.get("role").map(String::as_str).unwrap_or("viewer") {
        "host" => Role::Host,
        "controller" => Role::Controller,
        "viewer" => Role::Viewer,
        other => {
            return Err(ApiError::invalid(
                "role",
                format!("expected host, controller or viewer, got {other:?}"),
            ))
        }
    };
    let now = auth::unix_seconds(SystemTime::now());
    let claims = Claims {
        iss: key.clone(),
        sub: identity.to_owned(),
        room: room.to_owned(),
        role,
        grants: Grants::for_role(role),
        name: None,
        metadata: None,
        region: None,
        exp: now + DEV_TOKEN_TTL_S,
        nbf: now.saturating_sub(1),
        iat: now,
    };
    let token = auth::mint(key, secret, &claims);
    Ok((
        [(header::CACHE_CONTROL, "no-store")],
        Json(json!({
            "token": token,
            "room": room,
            "identity": identity,
            "role": role,
            "expires_at": claims.exp,
        })),
    ))
}

fn param<'a>(q: &'a BTreeMap<String, String>, name: &'static str) -> Result<&'a str, ApiError> {
    q.get(name)
        .map(String::as_str)
        .ok_or_else(|| ApiError::invalid(name, format!("missing {name}")))
}
