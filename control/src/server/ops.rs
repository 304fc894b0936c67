//! Operations endpoints: Prometheus `/metrics`, `/healthz`, `/readyz`, and the static demo
//! files at `/` (written by the browser client's author; served as they are).

use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use super::App;

pub(super) fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/", get(index))
        .route("/{*path}", get(static_file))
}

async fn readyz(State(app): State<Arc<App>>) -> Response {
    if app.is_draining() {
        return (StatusCode::SERVICE_UNAVAILABLE, "draining\n").into_response();
    }
    let media_ok = app.link.as_ref().is_none_or(|l| l.current().is_some());
    if !media_ok {
        return (StatusCode::SERVICE_UNAVAILABLE, "dataplane not connected\n").into_response();
    }
    "ready\n".into_response()
}

async fn metrics(State(app): State<Arc<App>>) -> Response {
    let mut out = String::new();
    {
        let (mut n_rooms, mut n_parts, mut n_tracks) = (0, 0, 0);
        for r in app.registry.summaries().into_iter().filter_map(|s| s.room) {
            n_rooms += 1;
            n_parts += r.participants;
            n_tracks += r.tracks;
        }
        let _ = writeln!(out, "# HELP sluice_rooms Rooms on this node.\n# TYPE sluice_rooms gauge\nsluice_rooms {n_rooms}");
        let _ = writeln!(out, "# HELP sluice_participants Participants on this node.\n# TYPE sluice_participants gauge\nsluice_participants {n_parts}");
        let _ = writeln!(out, "# HELP sluice_tracks Published tracks.\n# TYPE sluice_tracks gauge\nsluice_tracks {n_tracks}");
    }
    map_sizes(&app, &mut out);
    app.refusals.metrics(&mut out);
    let _ = writeln!(out, "# HELP sluice_signaling_clients Connected WebSocket clients.\n# TYPE sluice_signaling_clients gauge\nsluice_signaling_clients {}", app.hub.client_count());
    let up = app.link.as_ref().is_some_and(|l| l.current().is_some());
    let _ = writeln!(out, "# HELP sluice_dataplane_up Control socket connected.\n# TYPE sluice_dataplane_up gauge\nsluice_dataplane_up {}", u8::from(up));
    let _ = writeln!(out, "# HELP sluice_draining Node is draining.\n# TYPE sluice_draining gauge\nsluice_draining {}", u8::from(app.draining.load(Ordering::SeqCst)));
    app.hybrid_metrics(&mut out);
    app.events.metrics(&mut out);
    let stats = app.shard_stats.lock().expect("stats lock").clone();
    if !stats.is_empty() {
        for (name, help) in [
            ("rx_packets", "Packets received"),
            ("tx_packets", "Packets sent"),
            ("rx_bytes", "Bytes received"),
            ("tx_bytes", "Bytes sent"),
            ("loop_overruns", "Event-loop phase overruns"),
        ] {
            let _ = writeln!(out, "# HELP sluice_worker_{name}_total {help} per shard (label worker).\n# TYPE sluice_worker_{name}_total counter");
            for (w, c) in &stats {
                let v = match name {
                    "rx_packets" => c.rx_packets,
                    "tx_packets" => c.tx_packets,
                    "rx_bytes" => c.rx_bytes,
                    "tx_bytes" => c.tx_bytes,
                    _ => c.loop_overruns,
                };
                let _ = writeln!(out, "sluice_worker_{name}_total{{worker=\"{w}\"}} {v}");
            }
        }
        let _ = writeln!(out, "# HELP sluice_worker_dropped_total Dropped packets per shard (label worker) and reason.\n# TYPE sluice_worker_dropped_total counter");
        for (w, c) in &stats {
            // `pacer_*`, `dtls_failed` and `unsignaled_ssrc_*` entries ride in the same map but
            // are not drops (exported below).
            let not_drop = |r: &str| {
                r.starts_with("pacer_") || r.starts_with("unsignaled_ssrc_") || r == "dtls_failed"
            };
            for (reason, v) in c.dropped.iter().filter(|(r, _)| !not_drop(r)) {
                let _ = writeln!(
                    out,
                    "sluice_worker_dropped_total{{worker=\"{w}\",reason=\"{reason}\"}} {v}"
                );
            }
        }
        let pacer = |c: &sluice_proto::Counters, k: &str| c.dropped.get(k).copied().unwrap_or(0);
        let _ = writeln!(out, "# HELP sluice_dtls_handshakes_failed_total DTLS handshakes that failed (alert sent where DTLS allows, reason logged), per shard (label worker).\n# TYPE sluice_dtls_handshakes_failed_total counter");
        for (w, c) in &stats {
            let n = pacer(c, "dtls_failed");
            let _ = writeln!(
                out,
                "sluice_dtls_handshakes_failed_total{{worker=\"{w}\"}} {n}"
            );
        }
        let _ = writeln!(out, "# HELP sluice_unsignaled_ssrc_bound_total SSRCs the offer did not name, bound to a track by rid, mid or payload type (RFC 8843 9.2), per shard (label worker).\n# TYPE sluice_unsignaled_ssrc_bound_total counter");
        for (w, c) in &stats {
            for by in ["rid", "mid", "payload_type"] {
                let n = pacer(c, &format!("unsignaled_ssrc_{by}"));
                let _ = writeln!(
                    out,
                    "sluice_unsignaled_ssrc_bound_total{{worker=\"{w}\",by=\"{by}\"}} {n}"
                );
            }
        }
        let _ = writeln!(out, "# HELP sluice_pacer_queue_delay_seconds_total Time paced packets waited in the pacers, per shard (label worker).\n# TYPE sluice_pacer_queue_delay_seconds_total counter");
        for (w, c) in &stats {
            let s = pacer(c, "pacer_delay_us_sum") as f64 / 1e6;
            let _ = writeln!(
                out,
                "sluice_pacer_queue_delay_seconds_total{{worker=\"{w}\"}} {s}"
            );
        }
        let _ = writeln!(out, "# HELP sluice_pacer_queue_delay_packets_total Packets that left the pacers, per shard (label worker).\n# TYPE sluice_pacer_queue_delay_packets_total counter");
        for (w, c) in &stats {
            let n = pacer(c, "pacer_packets");
            let _ = writeln!(
                out,
                "sluice_pacer_queue_delay_packets_total{{worker=\"{w}\"}} {n}"
            );
        }
        let _ = writeln!(out, "# HELP sluice_pacer_queue_delay_max_seconds Largest pacer queueing delay since the shard started.\n# TYPE sluice_pacer_queue_delay_max_seconds gauge");
        for (w, c) in &stats {
            let s = pacer(c, "pacer_delay_us_max") as f64 / 1e6;
            let _ = writeln!(
                out,
                "sluice_pacer_queue_delay_max_seconds{{worker=\"{w}\"}} {s}"
            );
        }
        let _ = writeln!(out, "# HELP sluice_worker_sessions Sessions per shard (label worker).\n# TYPE sluice_worker_sessions gauge");
        for (w, c) in &stats {
            let _ = writeln!(
                out,
                "sluice_worker_sessions{{worker=\"{w}\"}} {}",
                c.sessions
            );
        }
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}

/// `sluice_control_map_entries{map}`: every map of the control daemon that clients can grow,
/// summed over rooms (the churn test checks they return to their idle sizes).
fn map_sizes(app: &App, out: &mut String) {
    let summaries = app.registry.summaries();
    let mut sizes = super::guard::MapSizes::default();
    for s in &summaries {
        sizes.add(&s.sizes);
    }
    let _ = writeln!(out, "# HELP sluice_control_map_entries Entries in the control daemon's maps, by map.\n# TYPE sluice_control_map_entries gauge");
    let session_rooms = app.session_rooms.lock().expect("session map lock").len();
    let rows = [
        ("room_actors", summaries.len()),
        ("session_rooms", session_rooms),
        ("signaling_clients", app.hub.client_count()),
        ("kick_bans", app.kicks.len()),
    ];
    for (map, n) in rows.into_iter().chain(sizes.rows()) {
        let _ = writeln!(out, "sluice_control_map_entries{{map=\"{map}\"}} {n}");
    }
    if let Some(link) = &app.link {
        let _ = writeln!(out, "# HELP sluice_dataplane_link_refused_total Control-socket connections not used: the listener ran as another user.\n# TYPE sluice_dataplane_link_refused_total counter\nsluice_dataplane_link_refused_total {}", link.refused_peers());
    }
}

async fn index(State(app): State<Arc<App>>) -> Response {
    serve(&app, "index.html").await
}

async fn static_file(State(app): State<Arc<App>>, Path(path): Path<String>) -> Response {
    serve(&app, &path).await
}

async fn serve(app: &App, path: &str) -> Response {
    let Some(dir) = &app.static_dir else {
        return (StatusCode::NOT_FOUND, "no static directory configured\n").into_response();
    };
    // Only plain relative names: no `..`, no absolute paths, no hidden files.
    let ok = path
        .split('/')
        .all(|seg| !seg.is_empty() && !seg.starts_with('.') && !seg.contains('\\'));
    if !ok {
        return (StatusCode::NOT_FOUND, "not found\n").into_response();
    }
    match tokio::fs::read(dir.join(path)).await {
        Ok(bytes) => {
            let ct = match path.rsplit('.').next().unwrap_or("") {
                "html" => "text/html; charset=utf-8",
                "js" | "mjs" => "text/javascript; charset=utf-8",
                "css" => "text/css; charset=utf-8",
                "json" => "application/json",
                "svg" => "image/svg+xml",
                "png" => "image/png",
                "ico" => "image/x-icon",
                _ => "application/octet-stream",
            };
            ([(header::CONTENT_TYPE, ct)], bytes).into_response()
        }
        Err(_) => (StatusCode::NOT_FOUND, "not found\n").into_response(),
    }
}
