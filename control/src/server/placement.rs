//! Where a participant should go (issue 15 "placement by region", docs/cluster.md
//! "Placement"): the session-focus API and the region a request asks for — the token's
//! `region` claim, then the header of a load balancer the node trusts
//! (`cluster.region_header`), else the receiving node's own region.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::Json;
use serde_json::{json, Value};

use super::api::admin;
use super::error::ApiError;
use super::App;
use crate::cluster::Placement;

/// `POST /api/rooms/{room}/placement {identity, region?}` (admin): the node the participant
/// should use — the room's home, placed now (preferring `region`, else the load balancer's
/// header, else this node's region) if it has none. For products
/// with their own signaling (seed 000's `assignSFU`): then use that node's sidecar session API
/// or WHIP/WHEP as on a single node.
pub(super) async fn placement(
    State(app): State<Arc<App>>,
    axum::extract::Path(room): axum::extract::Path<String>,
    headers: HeaderMap,
    json: Result<Json<Value>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    admin(&app, &headers)?;
    let v = super::api::body(json)?;
    let identity = v
        .get("identity")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty() && s.len() <= 256)
        .ok_or_else(|| {
            ApiError::invalid("identity", "expected a non-empty string (<= 256 bytes)")
        })?;
    let region = match v.get("region") {
        None | Some(Value::Null) => None,
        Some(Value::String(r)) if crate::cluster::name_ok(r) => Some(r.to_owned()),
        Some(_) => {
            return Err(ApiError::invalid(
                "region",
                "expected 1..=64 of [A-Za-z0-9_-]",
            ))
        }
    };
    // Not in the body: the load balancer's header, if the node trusts one.
    let region = region.or_else(|| app.header_region(&headers));
    let Some(c) = &app.cluster else {
        return Err(ApiError::not_found("not a cluster node (no [cluster])"));
    };
    let (node, base) = match c
        .place_in(&room, region.as_deref())
        .await
        .map_err(|e| super::cluster::unavailable(&e))?
    {
        Placement::Local => (c.node_id().to_owned(), c.config.advertise.clone()),
        Placement::Remote(h) => (h.node, h.advertise),
    };
    let node_region = c
        .live_nodes()
        .await
        .ok()
        .and_then(|n| n.into_iter().find(|n| n.id == node).map(|n| n.region));
    let ws = base
        .replacen("https://", "wss://", 1)
        .replacen("http://", "ws://", 1);
    Ok(Json(json!({
        "room": room,
        "identity": identity,
        "node": node,
        "region": node_region,
        "url": base,
        "rtc": format!("{ws}/rtc"),
        "whip": format!("{base}/whip/{room}"),
        "whep": format!("{base}/whep/{room}"),
        "sessions": format!("{base}/api/rooms/{room}/sessions"),
    })))
}

impl App {
    /// The region the trusted load balancer's header (`cluster.region_header`) names, if the
    /// node trusts one and the request carries a valid one (an invalid value is ignored and
    /// counted: placement falls back to this node's region).
    pub(crate) fn header_region(&self, headers: &HeaderMap) -> Option<String> {
        let c = self.cluster.as_ref()?;
        let name = c.config.region_header.as_deref()?;
        let v = headers.get(name)?;
        match v.to_str().ok().filter(|r| crate::cluster::name_ok(r)) {
            Some(r) => Some(r.to_owned()),
            None => {
                c.metrics
                    .region_header_invalid
                    .fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }
}

/// The `region` claim of the request's bearer token, when it is a valid access token for
/// `room` (WHIP/WHEP publishers and viewers carry one); anything else gives none here and the
/// handler judges the token.
pub(super) fn token_region(app: &App, headers: &HeaderMap, room: &str) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let token = crate::auth::bearer(value).ok()?;
    crate::auth::verify(token, &app.keyring, room, std::time::SystemTime::now())
        .ok()?
        .region
}
