//! Operations endpoints: Prometheus `/metrics`, `/healthz`, `/readyz`, and the static demo
//! files at `/` (written by the browser client's author; served as they are).

use crate::lock::Locked;
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
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/", get(index))
        .route("/{*path}", get(static_file))
}

/// Fails when this daemon cannot take its own state locks within a second (finding #8): a
/// wedged control plane is restarted by its supervisor instead of answering `ok`.
async fn healthz(State(app): State<Arc<App>>) -> Response {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(1);
    loop {
        if app.state_locks_free() {
            return "ok\n".into_response();
        }
        if tokio::time::Instant::now() >= deadline {
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                "state lock not available\n",
            )
                .into_response();
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
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
    let _ = writeln!(out, "# HELP sluice_signaling_clients Connected WebSocket clients.\n# TYPE sluice_signaling_clients gauge\nsluice_signaling_clients {}", app.hub.client_count());
    let up = app.link.as_ref().is_some_and(|l| l.current().is_some());
    let _ = writeln!(out, "# HELP sluice_dataplane_up Control socket connected.\n# TYPE sluice_dataplane_up gauge\nsluice_dataplane_up {}", u8::from(up));
    let _ = writeln!(out, "# HELP sluice_draining Node is draining.\n# TYPE sluice_draining gauge\nsluice_draining {}", u8::from(app.draining.load(Ordering::SeqCst)));
    let (conns, sources) = app.connections.sizes();
    let _ = writeln!(out, "# HELP sluice_http_connections Open HTTP/WebSocket connections.\n# TYPE sluice_http_connections gauge\nsluice_http_connections {conns}");
    let _ = writeln!(out, "# HELP sluice_http_connection_sources Source IPs with an open connection.\n# TYPE sluice_http_connection_sources gauge\nsluice_http_connection_sources {sources}");
    app.refusals.write_metrics(&mut out);
    app.hybrid_metrics(&mut out);
    app.connectivity.locked().metrics(&mut out);
    app.events.metrics(&mut out);
    if let Some(c) = &app.cluster {
        c.render_metrics(&mut out);
        app.cascade.write_metrics(&mut out);
    }
    let stats = app.shard_stats.locked().clone();
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
            // `pacer_*`, `lat_*`, `map_*`, `registry_*`, `dtls_failed`, `unsignaled_ssrc_*`, the
            // send events and the congestion entries ride in the same map but are not drops
            // (exported below and by `congestion::write_metrics`).
            for (reason, v) in c.dropped.iter().filter(|(r, _)| !not_a_drop(r)) {
                let _ = writeln!(
                    out,
                    "sluice_worker_dropped_total{{worker=\"{w}\",reason=\"{reason}\"}} {v}"
                );
            }
        }
        let _ = writeln!(out, "# HELP sluice_worker_send_events_total Sends delayed (send_retry, send_stalls, tx_slots_busy) or batched (gso_messages: one send carried several datagrams) and registry lookups (slow_path), per worker; not drops.\n# TYPE sluice_worker_send_events_total counter");
        for (w, c) in &stats {
            for kind in SEND_EVENTS {
                let v = c.dropped.get(kind).copied().unwrap_or(0);
                let _ = writeln!(
                    out,
                    "sluice_worker_send_events_total{{worker=\"{w}\",kind=\"{kind}\"}} {v}"
                );
            }
        }
        let _ = writeln!(out, "# HELP sluice_worker_cpu_seconds_total CPU time of each shard's thread (user + system).\n# TYPE sluice_worker_cpu_seconds_total counter");
        for (w, c) in &stats {
            let us = c.dropped.get("cpu_us").copied().unwrap_or(0);
            let _ = writeln!(
                out,
                "sluice_worker_cpu_seconds_total{{worker=\"{w}\"}} {:.6}",
                us as f64 / 1e6
            );
        }
        let _ = writeln!(out, "# HELP sluice_worker_busy_ratio Share of its core each shard used between its last two snapshots.\n# TYPE sluice_worker_busy_ratio gauge");
        for (w, busy) in app.load.locked().busy_by_shard(std::time::Instant::now()) {
            let _ = writeln!(out, "sluice_worker_busy_ratio{{worker=\"{w}\"}} {busy:.3}");
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
        forward_latency(&mut out, &stats);
        let _ = writeln!(out, "# HELP sluice_worker_map_entries Entries in a worker's demux and routing tables (map_pool_free: free packet buffers).\n# TYPE sluice_worker_map_entries gauge");
        for (w, c) in &stats {
            for (k, v) in c.dropped.iter().filter(|(k, _)| k.starts_with("map_")) {
                let map = &k["map_".len()..];
                let _ = writeln!(
                    out,
                    "sluice_worker_map_entries{{worker=\"{w}\",map=\"{map}\"}} {v}"
                );
            }
        }
        tcp_metrics(&mut out, &stats);
        if let Some((_, c)) = stats.iter().next() {
            let _ = writeln!(out, "# HELP sluice_dataplane_registry_entries Entries in the dataplane's shared registry (pending sessions, placed sessions, ufrag routes, remote addresses).\n# TYPE sluice_dataplane_registry_entries gauge");
            for (k, v) in c.dropped.iter().filter(|(k, _)| k.starts_with("registry_")) {
                let map = &k["registry_".len()..];
                let _ = writeln!(
                    out,
                    "sluice_dataplane_registry_entries{{map=\"{map}\"}} {v}"
                );
            }
        }
        super::congestion::write_metrics(&mut out, &stats);
        super::data_metrics::write_metrics(&mut out, &stats);
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
    let mut sizes = super::bounds::MapSizes::default();
    for s in &summaries {
        sizes.add(&s.sizes);
    }
    let _ = writeln!(out, "# HELP sluice_control_map_entries Entries in the control daemon's maps, by map.\n# TYPE sluice_control_map_entries gauge");
    let session_rooms = app.session_rooms.locked().len();
    let rows = [
        ("room_actors", summaries.len()),
        ("session_rooms", session_rooms),
        ("signaling_clients", app.hub.client_count()),
        ("kick_bans", app.kicks.len()),
    ];
    for (map, n) in rows.into_iter().chain(sizes.rows()) {
        let _ = writeln!(out, "sluice_control_map_entries{{map=\"{map}\"}} {n}");
    }
    if let Some(heap) = app.heap_bytes {
        let _ = writeln!(out, "# HELP sluice_control_heap_bytes Bytes the control daemon holds in live heap allocations (not the allocator's free pages).\n# TYPE sluice_control_heap_bytes gauge\nsluice_control_heap_bytes {}", heap());
    }
    if let Some(link) = &app.link {
        let _ = writeln!(out, "# HELP sluice_dataplane_link_refused_total Control-socket connections not used: the listener ran as another user.\n# TYPE sluice_dataplane_link_refused_total counter\nsluice_dataplane_link_refused_total {}", link.refused_peers());
    }
}

/// The workers' ICE-TCP entries (`tcp_*`, docs/control-socket.md): two gauges (open and bound
/// connections) and the rest as counters by event (accepted, refused, closed by reason,
/// handed over, frames, send-queue drops).
fn tcp_metrics(out: &mut String, stats: &std::collections::BTreeMap<u16, sluice_proto::Counters>) {
    let gauges = ["tcp_connections", "tcp_bound"];
    let _ = writeln!(out, "# HELP sluice_worker_tcp_connections ICE-TCP connections per worker (state: open, bound to a session).
# TYPE sluice_worker_tcp_connections gauge");
    for (w, c) in stats {
        for (g, state) in gauges.iter().zip(["open", "bound"]) {
            if let Some(v) = c.dropped.get(*g) {
                let _ = writeln!(
                    out,
                    "sluice_worker_tcp_connections{{worker=\"{w}\",state=\"{state}\"}} {v}"
                );
            }
        }
    }
    let _ = writeln!(out, "# HELP sluice_worker_tcp_events_total ICE-TCP connection events per worker (accepted, refused_full, closed_garbage, closed_no_stun, closed_idle, …, tx_media_dropped).
# TYPE sluice_worker_tcp_events_total counter");
    for (w, c) in stats {
        for (k, v) in c
            .dropped
            .iter()
            .filter(|(k, _)| k.starts_with("tcp_") && !gauges.contains(&k.as_str()))
        {
            let event = &k["tcp_".len()..];
            let _ = writeln!(
                out,
                "sluice_worker_tcp_events_total{{worker=\"{w}\",event=\"{event}\"}} {v}"
            );
        }
    }
}
/// Delayed or batched sends and slow-path lookups (shard/counters.rs `delays`): in the stats
/// map beside the drops, exported as `sluice_worker_send_events_total`.
const SEND_EVENTS: [&str; 5] = [
    "send_retry",
    "send_stalls",
    "tx_slots_busy",
    "gso_messages",
    "slow_path",
];

/// Entries of a worker's stats map that are not drop reasons.
fn not_a_drop(key: &str) -> bool {
    key == "dtls_failed"
        || key == "cpu_us"
        || [
            "pacer_",
            "lat_",
            "map_",
            "registry_",
            "unsignaled_ssrc_",
            "tcp_",
        ]
        .iter()
        .any(|p| key.starts_with(p))
        || SEND_EVENTS.contains(&key)
        || super::congestion::is_congestion_counter(key)
        || super::data_metrics::is_data_counter(key)
}

/// The workers' SFU-added latency (`lat_{class}_lt_{bound}us` …, docs/control-socket.md) as
/// Prometheus histograms: receive → send handed to the kernel, and the same without pacer
/// queueing, per worker and class. Bucket bounds come from the entry names.
fn forward_latency<'a, W: std::fmt::Display + 'a>(
    out: &mut String,
    stats: impl IntoIterator<Item = (&'a W, &'a sluice_proto::Counters)> + Clone,
) {
    for (prefix, name, help) in [
        (
            "lat_",
            "sluice_worker_forward_latency_seconds",
            "Receive to send handed to the kernel, per forwarded copy, per worker and class.",
        ),
        (
            "lat_sfu_",
            "sluice_worker_forward_latency_excl_pacer_seconds",
            "The same without the time the copy waited in its pacer.",
        ),
    ] {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        for (w, c) in stats.clone() {
            for class in ["audio", "video", "rtx"] {
                let head = format!("{prefix}{class}_");
                let mut buckets: Vec<(u64, u64)> = c
                    .dropped
                    .iter()
                    .filter_map(|(k, v)| {
                        let bound = k.strip_prefix(&head)?.strip_prefix("lt_")?;
                        Some((bound.strip_suffix("us")?.parse().ok()?, *v))
                    })
                    .collect();
                if buckets.is_empty() {
                    continue;
                }
                buckets.sort_unstable();
                let mut cum = 0;
                for (bound, n) in &buckets {
                    cum += n;
                    let le = *bound as f64 / 1e6;
                    let _ = writeln!(
                        out,
                        "{name}_bucket{{worker=\"{w}\",class=\"{class}\",le=\"{le}\"}} {cum}"
                    );
                }
                let get = |k: &str| c.dropped.get(&format!("{head}{k}")).copied().unwrap_or(0);
                let count = get("packets");
                let _ = writeln!(
                    out,
                    "{name}_bucket{{worker=\"{w}\",class=\"{class}\",le=\"+Inf\"}} {count}"
                );
                let sum = get("us_sum") as f64 / 1e6;
                let _ = writeln!(out, "{name}_sum{{worker=\"{w}\",class=\"{class}\"}} {sum}");
                let _ = writeln!(
                    out,
                    "{name}_count{{worker=\"{w}\",class=\"{class}\"}} {count}"
                );
            }
        }
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
