//! A trunk that goes silent (issue 16 build 4, D100–D101): the dataplane raises `trunk_silent`
//! when it heard nothing authenticated from the peer for the trunk's `silence_ms` (2 s; the
//! trunks' own reports every 250–500 ms keep an idle trunk alive), so the path between the two
//! nodes, or the peer's dataplane, is gone while both may still be live in the registry (a
//! network cut the lease does not see, D98).
//!
//! This end then tears the trunk down at once with what rode it (relays sent, relays
//! ingested: the edge's viewers lose their media), counts it
//! (`sluice_cascade_trunks_closed_total{reason="silent"}`), and re-establishes it with a new
//! epoch (`ensure_trunk`) after a backoff (250 ms doubling to 8 s while the new trunks keep
//! going silent within 10 s of their set-up), as long as the peer is live in the registry. Once
//! it is up again, the edge's viewers that lost the relay are given it back (the ingest
//! acquired again from the home and each viewer subscribed with its old subscription id and
//! SSRC). No participant is placed on an edge yet (the next slice), so no room is told; the
//! log line names the rooms that lost a relay.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice_proto::{Command, SessionId, Subscribe};

use super::MAX_TRUNKS;
use crate::server::App;

/// The first retry's delay; doubled per consecutive quick failure.
const BACKOFF_FIRST: Duration = Duration::from_millis(250);
/// The longest delay between two set-up attempts.
const BACKOFF_MAX: Duration = Duration::from_secs(8);
/// A trunk that went silent later than this after its set-up resets the backoff.
const HEALTHY_AFTER: Duration = Duration::from_secs(10);

impl App {
    /// `trunk_silent` from the dataplane: tear the trunk down and set it up again.
    pub(crate) async fn trunk_silent(self: &Arc<Self>, session: SessionId, silent_ms: u64) {
        let (peer, streak, rooms) = {
            let st = self.cascade.state.lock().await;
            let Some((peer, t)) = st.trunks.iter().find(|(_, t)| t.session == session) else {
                return; // already replaced or closed
            };
            let quick = t.made.elapsed() < HEALTHY_AFTER;
            let streak = if quick {
                t.silent_streak.saturating_add(1)
            } else {
                0
            };
            let mut rooms: Vec<String> = st
                .relays
                .keys()
                .filter(|k| &k.edge == peer)
                .map(|k| k.track.room.clone())
                .chain(
                    st.ingests
                        .keys()
                        .filter(|k| &k.home == peer)
                        .map(|k| k.track.room.clone()),
                )
                .collect();
            rooms.sort();
            rooms.dedup();
            (peer.clone(), streak, rooms)
        };
        tracing::warn!(peer, %session, silent_ms, ?rooms, "cascade: trunk silent, torn down");
        self.drop_trunk(&peer, "silent").await;
        {
            let mut st = self.cascade.state.lock().await;
            if st.reconnecting.contains(&peer) || st.reconnecting.len() >= MAX_TRUNKS {
                return;
            }
            st.reconnecting.insert(peer.clone());
        }
        let app = Arc::clone(self);
        tokio::spawn(async move {
            app.reestablish(&peer, streak).await;
            app.cascade.state.lock().await.reconnecting.remove(&peer);
        });
    }

    /// `trunk_resumed`: only logged (a silent trunk is torn down at once, so this is a
    /// session about to be closed).
    pub(crate) async fn trunk_resumed(&self, session: SessionId, silent_ms: u64) {
        tracing::info!(%session, silent_ms, "cascade: trunk heard its peer again");
    }

    /// Sets the trunk toward `peer` up again after a backoff, while `peer` is live, then gives
    /// the edge's viewers of `peer`'s rooms their relays back.
    async fn reestablish(self: &Arc<Self>, peer: &str, streak: u32) {
        let Some(cluster) = self.cluster.clone() else {
            return;
        };
        let mut delay = BACKOFF_FIRST
            .saturating_mul(1 << streak.min(6))
            .min(BACKOFF_MAX);
        loop {
            tokio::time::sleep(delay).await;
            if cluster.is_stopped() || self.peer(peer).await.is_err() {
                tracing::info!(peer, "cascade: peer gone, trunk not set up again");
                return;
            }
            match self.ensure_trunk(peer).await {
                Ok(_) => break,
                Err(e) => tracing::warn!(peer, error = %e.message, "cascade: trunk set-up failed"),
            }
            delay = (delay * 2).min(BACKOFF_MAX);
        }
        let made_at = Instant::now();
        if let Some(t) = self.cascade.state.lock().await.trunks.get_mut(peer) {
            t.silent_streak = streak;
        }
        let restored = self.restore_viewers(peer.to_owned()).await;
        tracing::info!(
            peer,
            restored,
            ms = made_at.elapsed().as_millis() as u64,
            "cascade: trunk set up again"
        );
    }

    /// The edge's viewers of rooms homed on `peer` whose relay went with a trunk: the ingest
    /// is acquired again (one user per viewer) and each is subscribed again with its
    /// subscription id and SSRC. Returns how many got their relay back.
    /// (Boxed: it is reached from `mirror_trunk`, which it may reach again.)
    pub(super) fn restore_viewers(
        self: &Arc<Self>,
        peer: String,
    ) -> Pin<Box<dyn Future<Output = usize> + Send + 'static>> {
        let app = Arc::clone(self);
        Box::pin(async move { app.restore_viewers_now(&peer).await })
    }

    async fn restore_viewers_now(self: &Arc<Self>, peer: &str) -> usize {
        // Taken out of `lost` here, so two restores never acquire for the same viewer.
        let lost: Vec<(SessionId, super::state::Viewer)> = {
            let mut st = self.cascade.state.lock().await;
            st.viewers
                .iter_mut()
                .filter(|(_, v)| v.home == peer && v.lost)
                .map(|(s, v)| {
                    v.lost = false;
                    (*s, v.clone())
                })
                .collect()
        };
        if lost.is_empty() {
            return 0;
        }
        let Ok((node, _)) = self.peer(peer).await else {
            self.mark_lost(lost.iter().map(|(s, _)| *s)).await;
            return 0;
        };
        let mut restored = 0;
        for (session, v) in lost {
            let Ok((track, spec)) = self.acquire_ingest(&node, &v.track).await else {
                self.mark_lost([session]).await;
                continue;
            };
            let sub = self
                .dp(Command::Subscribe(Subscribe {
                    subscription: v.subscription,
                    session,
                    track,
                    ssrc: v.ssrc,
                    rtx_ssrc: None,
                    payload_type: spec.codec.payload_type,
                    rtx_payload_type: None,
                    ext_ids: Default::default(),
                }))
                .await;
            let known = self
                .cascade
                .state
                .lock()
                .await
                .viewers
                .contains_key(&session);
            match (sub, known) {
                (Ok(_), true) => restored += 1,
                (sub, _) => {
                    self.release_ingest(peer, &v.track).await;
                    if sub.is_err() {
                        self.mark_lost([session]).await;
                    }
                }
            }
        }
        restored
    }

    /// Viewers whose relay could not be given back stay marked for the next set-up.
    async fn mark_lost(&self, sessions: impl IntoIterator<Item = SessionId>) {
        let mut st = self.cascade.state.lock().await;
        for s in sessions {
            if let Some(v) = st.viewers.get_mut(&s) {
                v.lost = true;
            }
        }
    }
}
