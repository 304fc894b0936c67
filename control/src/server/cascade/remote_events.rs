//! Notifications of remote sessions (D106): the edge queues its dataplane's notifications
//! about the sessions it holds for homes (bounded, dropped ones counted) and posts them in
//! batches to each home, which applies them as its own dataplane's after checking that the
//! session is one it placed on that edge; and the `sluice_cascade_remote_*` metrics.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use sluice_proto::{Notification, SessionId};
use tokio::sync::mpsc;

use super::http::{call, name, parse};
use super::remote::{Remote, EVENT_BATCH, EVENT_QUEUE};
use crate::lock::Locked;
use crate::server::api::{admin, body};
use crate::server::error::ApiError;
use crate::server::App;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EventsReq {
    node: String,
    events: Vec<Notification>,
}

/// `POST /internal/cascade/events {node, events}` (home): an edge's notifications about the
/// sessions this node placed there, applied as this node's own.
pub(crate) async fn events(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    json: Result<Json<Value>, JsonRejection>,
) -> Result<StatusCode, ApiError> {
    admin(&app, &headers)?;
    let r: EventsReq = parse(body(json)?)?;
    name("node", &r.node)?;
    if r.events.len() > EVENT_BATCH {
        return Err(ApiError::invalid(
            "events",
            format!("at most {EVENT_BATCH} per request"),
        ));
    }
    let m = &app.cascade.remote.metrics;
    for n in r.events {
        let ours = session_of(&n).is_some_and(|s| {
            app.cascade
                .remote
                .placed
                .locked()
                .get(&s)
                .is_some_and(|(edge, _)| *edge == r.node)
        });
        if !ours {
            m.events_refused.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        m.events_applied.fetch_add(1, Ordering::Relaxed);
        app.apply_notification(n).await;
    }
    Ok(StatusCode::NO_CONTENT)
}

/// The session a notification is about, for those a remote session forwards.
fn session_of(n: &Notification) -> Option<SessionId> {
    match n {
        Notification::IceConnected { session, .. }
        | Notification::IceDisconnected { session }
        | Notification::SelectedPairChanged { session, .. }
        | Notification::DtlsConnected { session, .. }
        | Notification::DtlsFailed { session, .. }
        | Notification::DataBehind { session, .. }
        | Notification::SessionClosed { session, .. }
        | Notification::StreamState { session, .. } => Some(*session),
        _ => None,
    }
}

impl App {
    /// Edge: `n` is about a session held for a home: queued for it (not applied here).
    pub(crate) fn forward_notification(self: &Arc<Self>, n: &Notification) -> bool {
        let Some(session) = session_of(n) else {
            return false;
        };
        let remote = &self.cascade.remote;
        let Some(home) = remote.owners.locked().get(&session).cloned() else {
            return false;
        };
        if let Notification::SessionClosed { .. } = n {
            let app = Arc::clone(self);
            tokio::spawn(async move { app.forget_held(session).await });
        }
        let tx = remote.queue.get_or_init(|| {
            let (tx, rx) = mpsc::channel(EVENT_QUEUE);
            tokio::spawn(forwarder(Arc::clone(self), rx));
            tx
        });
        match tx.try_send((home, n.clone())) {
            Ok(()) => {}
            Err(_) => {
                remote
                    .metrics
                    .events_dropped
                    .fetch_add(1, Ordering::Relaxed);
            }
        }
        true
    }
}

/// Edge: sends queued notifications to their homes, a batch per home per round.
async fn forwarder(app: Arc<App>, mut rx: mpsc::Receiver<(String, Notification)>) {
    let m = &app.cascade.remote.metrics;
    while let Some(first) = rx.recv().await {
        let mut by_home: HashMap<String, Vec<Notification>> = HashMap::new();
        by_home.entry(first.0).or_default().push(first.1);
        let mut n = 1;
        while n < EVENT_BATCH {
            let Ok((home, ev)) = rx.try_recv() else { break };
            by_home.entry(home).or_default().push(ev);
            n += 1;
        }
        let me = app.cluster.as_ref().map_or("", |c| c.node_id()).to_owned();
        for (home, events) in by_home {
            let count = events.len() as u64;
            let sent = match app.peer(&home).await {
                Ok((node, _)) => matches!(
                    call(
                        &app,
                        &node,
                        "/internal/cascade/events",
                        json!({"node": me, "events": events}),
                    )
                    .await,
                    Ok((204, _))
                ),
                Err(_) => false,
            };
            let counter = if sent {
                &m.events_forwarded
            } else {
                &m.events_dropped
            };
            counter.fetch_add(count, Ordering::Relaxed);
        }
    }
}

impl Remote {
    /// The `sluice_cascade_remote_*` families of `/metrics`.
    pub(crate) fn write_metrics(&self, out: &mut String) {
        use std::fmt::Write as _;
        let m = &self.metrics;
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let home = self.placed.locked().len();
        let edge = self.owners.locked().len();
        let _ = writeln!(out, "# HELP sluice_cascade_remote_sessions Subscriber sessions on another node's dataplane (home: this node's participants placed on edges; edge: sessions held here for homes).\n# TYPE sluice_cascade_remote_sessions gauge\nsluice_cascade_remote_sessions{{side=\"home\"}} {home}\nsluice_cascade_remote_sessions{{side=\"edge\"}} {edge}");
        let _ = writeln!(out, "# HELP sluice_cascade_edge_placements_total Subscriber sessions placed on an edge, by reason.\n# TYPE sluice_cascade_edge_placements_total counter\nsluice_cascade_edge_placements_total{{reason=\"capacity\"}} {}\nsluice_cascade_edge_placements_total{{reason=\"region\"}} {}", g(&m.placed_capacity), g(&m.placed_region));
        let _ = writeln!(out, "# HELP sluice_cascade_remote_events_total Notifications of remote sessions: forwarded/dropped (edge), applied/refused (home).\n# TYPE sluice_cascade_remote_events_total counter\nsluice_cascade_remote_events_total{{result=\"forwarded\"}} {}\nsluice_cascade_remote_events_total{{result=\"dropped\"}} {}\nsluice_cascade_remote_events_total{{result=\"applied\"}} {}\nsluice_cascade_remote_events_total{{result=\"refused\"}} {}", g(&m.events_forwarded), g(&m.events_dropped), g(&m.events_applied), g(&m.events_refused));
        let _ = writeln!(out, "# HELP sluice_cascade_remote_remade_total Subscriber sessions made again because their edge was lost.\n# TYPE sluice_cascade_remote_remade_total counter\nsluice_cascade_remote_remade_total {}", g(&m.remade));
        let _ = writeln!(out, "# HELP sluice_cascade_remote_limit_refusals_total Remote sessions or subscriptions refused at their bound.\n# TYPE sluice_cascade_remote_limit_refusals_total counter\nsluice_cascade_remote_limit_refusals_total {}", g(&m.limit_refusals));
        let _ = writeln!(out, "# HELP sluice_cascade_remote_moved_total Remote subscriptions moved to a lower layer because their relay was shed (down), and back when it resumed (up) (D110).\n# TYPE sluice_cascade_remote_moved_total counter\nsluice_cascade_remote_moved_total{{direction=\"down\"}} {}\nsluice_cascade_remote_moved_total{{direction=\"up\"}} {}", g(&m.shed_down), g(&m.shed_up));
    }
}
