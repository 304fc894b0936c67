//! Request guards (docs/security.md): the admin token checked before an `/api` body is read
//! (finding #21), body sizes from `Content-Length` refused before reading, and on a dev node
//! the `Host` and `Origin` checks against DNS rebinding (finding #28). Each refusal is counted.

use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use super::App;
use crate::limits::Refusal;

/// `/api` routes: the admin token first, then a body of at most `max` bytes.
pub(super) async fn admin_first(
    State((app, max)): State<(Arc<App>, usize)>,
    req: Request,
    next: Next,
) -> Response {
    if let Err(e) = super::api::admin(&app, req.headers()) {
        app.refusals.count(Refusal::Unauthenticated);
        return e.into_response();
    }
    if let Some(e) = too_large(&app, req.headers(), max) {
        return e.into_response();
    }
    next.run(req).await
}

/// `Content-Length` over `max` (a chunked body is cut by `DefaultBodyLimit` instead).
pub(super) fn too_large(app: &App, headers: &HeaderMap, max: usize) -> Option<ApiError> {
    let len = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())?;
    (len > max as u64).then(|| {
        app.refusals.count(Refusal::BodyTooLarge);
        ApiError::new("too_large", format!("body over {max} bytes")).with_field("body")
    })
}

/// Dev mode: every request names a loopback host or the bind address in `Host`, and `/rtc` and
/// `/dev/token` come from a page of that same host (a browser always sends `Origin` there).
pub(super) async fn dev_origin(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    let headers = req.headers();
    let Some(host) = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .filter(|h| host_allowed(&app, h))
    else {
        app.refusals.count(Refusal::Host);
        return (
            StatusCode::FORBIDDEN,
            "dev mode answers only requests to a loopback host or the bind address\n",
        )
            .into_response();
    };
    let path = req.uri().path();
    if path == "/rtc" || path == "/dev/token" {
        if let Some(origin) = headers.get(header::ORIGIN) {
            let same = origin
                .to_str()
                .ok()
                .and_then(|o| o.split_once("://"))
                .is_some_and(|(_, o)| o.eq_ignore_ascii_case(host));
            if !same {
                app.refusals.count(Refusal::Origin);
                return (
                    StatusCode::FORBIDDEN,
                    "dev mode: cross-origin requests are refused\n",
                )
                    .into_response();
            }
        }
    }
    next.run(req).await
}

/// `host[:port]` is a loopback name or address, or the IP the server is bound to.
fn host_allowed(app: &App, host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(v6) => v6.split_once(']').map_or(v6, |(h, _)| h),
        None => host.rsplit_once(':').map_or(host, |(h, _)| h),
    };
    if name.eq_ignore_ascii_case("localhost") {
        return true;
    }
    name.parse::<IpAddr>()
        .is_ok_and(|ip| ip.is_loopback() || ip == app.http_ip)
}
