//! The home side of remote subscriber sessions (`remote.rs`): choosing edges (those whose
//! trunk went under our sessions avoided for a while, placements not yet in an edge's published
//! load counted), the bound on sessions placed, and the calls that create and drive a session
//! on its edge (`POST /internal/cascade/sessions`, `.../sessions/op`).

use serde_json::{json, Value};
use sluice_proto::{CreateSession, ReplyOk, SessionId};

use super::http::call;
use super::remote::{Created, Remote, AVOID_EDGE, MAX_RECENT, MAX_REMOTE_SESSIONS};
use super::unavailable;
use crate::cluster::NodeInfo;
use crate::lock::Locked;
use crate::server::error::ApiError;
use crate::server::App;

impl Remote {
    /// Home: the trunk toward `edge` went (silent, re-keyed, the peer lost): the relays our
    /// sessions there received went with it. Their boot is cleared, which no live node
    /// matches: the janitor's next round (≤ 250 ms) makes them again (`remote_janitor`).
    pub(crate) fn relays_lost(&self, edge: &str) {
        let mut hit = false;
        for (e, boot) in self.placed.locked().values_mut() {
            if e == edge {
                boot.clear();
                hit = true;
            }
        }
        if hit {
            let now = std::time::Instant::now();
            let mut avoid = self.avoid.locked();
            avoid.retain(|_, at| now.duration_since(*at) < AVOID_EDGE);
            if avoid.len() < crate::cluster::MAX_NODES {
                avoid.insert(edge.to_owned(), now);
            }
        }
    }

    /// Home: a session was just placed on `edge` (counted against it by [`Self::recent`] for
    /// `window`, until the edge's own published load shows it).
    pub(crate) fn note_recent(
        &self,
        edge: &str,
        now: std::time::Instant,
        window: std::time::Duration,
    ) {
        let mut recent = self.recent.locked();
        recent.retain(|_, at| {
            at.retain(|t| now.duration_since(*t) < window);
            !at.is_empty()
        });
        if recent.len() >= crate::cluster::MAX_NODES && !recent.contains_key(edge) {
            return;
        }
        let at = recent.entry(edge.to_owned()).or_default();
        if at.len() >= MAX_RECENT {
            at.remove(0);
        }
        at.push(now);
    }

    /// Home: sessions placed on `edge` less than `window` ago.
    pub(crate) fn recent(
        &self,
        edge: &str,
        now: std::time::Instant,
        window: std::time::Duration,
    ) -> u64 {
        self.recent.locked().get(edge).map_or(0, |at| {
            at.iter()
                .filter(|t| now.duration_since(**t) < window)
                .count() as u64
        })
    }

    /// Home: whether `edge` lost a trunk under our sessions less than [`AVOID_EDGE`] ago.
    pub(crate) fn avoided(&self, edge: &str, now: std::time::Instant) -> bool {
        self.avoid
            .locked()
            .get(edge)
            .is_some_and(|at| now.duration_since(*at) < AVOID_EDGE)
    }
}

impl App {
    /// Home: one more session placed on `edge` (false: at the bound, counted).
    pub(crate) fn note_placed(&self, session: SessionId, edge: &NodeInfo) -> bool {
        let remote = &self.cascade.remote;
        let mut placed = remote.placed.locked();
        let room = remote.admit(placed.len(), MAX_REMOTE_SESSIONS, "remote session", "node");
        if room.is_err() {
            return false;
        }
        placed.insert(session, (edge.id.clone(), edge.boot.clone()));
        true
    }

    /// Home: asks `edge` to create `spec`.
    pub(crate) async fn remote_create(
        &self,
        edge: &NodeInfo,
        spec: CreateSession,
    ) -> Result<Created, ApiError> {
        let me = self.cluster_or_err()?.node_id().to_owned();
        let answer = call(
            self,
            edge,
            "/internal/cascade/sessions",
            json!({"home": me, "spec": spec}),
        )
        .await;
        match answer {
            Ok((201, v)) => serde_json::from_value(v)
                .map_err(|e| unavailable(format!("edge's session answer: {e}"))),
            Ok((s, v)) => Err(peer_error(s, &v)),
            Err(e) => Err(unavailable(format!("edge node: {e}"))),
        }
    }

    /// Home: one operation on a session of ours on `edge` (see the module docs).
    pub(crate) async fn remote_op(
        &self,
        edge: &NodeInfo,
        mut op: Value,
    ) -> Result<ReplyOk, ApiError> {
        op["home"] = json!(self.cluster_or_err()?.node_id());
        match call(self, edge, "/internal/cascade/sessions/op", op).await {
            Ok((200, v)) => {
                serde_json::from_value(v).map_err(|e| unavailable(format!("edge's answer: {e}")))
            }
            Ok((s, v)) => Err(peer_error(s, &v)),
            Err(e) => Err(unavailable(format!("edge node: {e}"))),
        }
    }
}

/// A peer's refusal as ours (its field and message; its code where it is one of ours).
fn peer_error(status: u16, v: &Value) -> ApiError {
    let e = &v["error"];
    let field = e["field"].as_str().unwrap_or("node").to_owned();
    let msg = e["message"].as_str().unwrap_or("refused").to_owned();
    let code = match status {
        404 => "not_found",
        // The dataplane refused (a state conflict): callers treat `internal` as "already gone".
        500 => "internal",
        _ => "unavailable",
    };
    ApiError::new(code, format!("edge node: {msg}")).with_field(field)
}
