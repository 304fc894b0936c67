//! The layer a remote subscription receives (issue 16 Build 1, D110): the one place that
//! chooses it. A subscriber on an edge receives one layer of a simulcast track through the relay
//! (track, layer, edge); when the home's trunk toward the edge sheds that relay for its
//! estimate (D109), the subscriber is moved to the highest lower layer whose relay is not shed,
//! and back when the relay resumes:
//!
//! effective layer = min(requested, the highest layer ≤ requested whose relay is not shed).
//!
//! While a subscription receives less than it asked for it *holds* one user of the requested
//! layer's relay: a shed relay costs nothing on the trunk, and the dataplane can only resume a
//! relay that exists. The hold goes with the move back, a new request, the unsubscription or
//! the session — so a shed relay nobody wants any more is released like any other (its grace,
//! then closed). Bounded: one [`RemoteLayer`] per remote subscription of the room.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use serde_json::json;
use sluice_proto::{AddTrack, SubscriptionId};

use crate::server::actor::RoomCtx;
use crate::server::cascade::trunk_cc::RelayShed;
use crate::server::cascade::TrackRef;
use crate::server::error::ApiError;
use crate::server::App;

/// A subscription of a remote session: its track, its edge and its layers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RemoteLayer {
    /// The room's track sid.
    pub(crate) track: String,
    /// The edge holding the session.
    pub(crate) edge: String,
    /// The layer asked for (the subscriber's cap; the top one without a cap).
    pub(crate) requested: u8,
    /// The layer whose relay it receives: `requested`, or lower while that relay is shed.
    pub(crate) at: u8,
}

impl RemoteLayer {
    /// The relay layer this subscription holds one user of without receiving it.
    pub(crate) fn held(&self) -> Option<u8> {
        (self.at < self.requested).then_some(self.requested)
    }
}

/// The layer received for `requested` when `shed(layer)` says which relays are shed: the
/// highest at or below `requested` that is not; 0 when all are (the dataplane never sheds a
/// track's last flowing layer, so that does not last).
pub(crate) fn effective_layer(requested: u8, shed: impl Fn(u8) -> bool) -> u8 {
    (0..=requested).rev().find(|&l| !shed(l)).unwrap_or(0)
}

impl App {
    /// The layer a remote subscription of `room`'s `track` on `edge` asking for `requested`
    /// receives now (see [`effective_layer`]).
    pub(crate) async fn remote_target(
        &self,
        room: &str,
        track: &str,
        requested: u8,
        edge: &str,
    ) -> u8 {
        let shed = self
            .relays_shed(room, track, requested, edge)
            .await
            .unwrap_or_default();
        effective_layer(requested, |l| shed & (1u32 << l.min(31)) != 0)
    }

    /// From the trunk's `relay_shed` events: the room's remote subscriptions of the relay's
    /// track on its edge choose their layer again.
    pub(crate) async fn move_for_shed(self: &Arc<Self>, ev: RelayShed) {
        let room = ev.track.room.clone();
        let out = self
            .in_existing_room(&room, move |ctx| {
                Box::pin(async move {
                    ctx.on_relay_shed(&ev).await;
                    Ok(())
                })
            })
            .await;
        if let Err(e) = out {
            tracing::debug!(room, error = %e, "cascade: relay_shed for no local room");
        }
    }

    /// Listens to [`Self::relay_shed_events`] for as long as the node runs.
    pub(crate) fn start_shed_moves(self: &Arc<Self>) {
        let app = Arc::clone(self);
        let mut rx = self.relay_shed_events();
        tokio::spawn(async move {
            loop {
                match rx.recv().await {
                    Ok(ev) => app.move_for_shed(ev).await,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        // The shed set stays right: the next event of a track re-chooses all
                        // of its subscriptions' layers.
                        tracing::warn!(missed = n, "cascade: relay_shed events missed");
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                }
            }
        });
    }
}

impl RoomCtx {
    fn relay_ref(&self, track: &str, layer: u8) -> TrackRef {
        TrackRef {
            room: self.name.clone(),
            track: track.to_owned(),
            layer,
        }
    }

    /// The dataplane spec of `track` (a room track sid).
    fn remote_track_spec(&self, track: &str) -> Option<AddTrack> {
        let t = self.media.tracks.get(track)?;
        self.media.dp_tracks.get(&t.dp).cloned()
    }

    /// A new remote subscription to `track` asking for `requested` on `edge`: the hold on the
    /// requested relay taken if it is shed, → what it receives (its relay not opened yet).
    pub(super) async fn new_remote_layer(
        &mut self,
        add: &AddTrack,
        track: &str,
        requested: u8,
        edge: &str,
    ) -> Result<RemoteLayer, ApiError> {
        let at = self
            .app
            .remote_target(&self.name, track, requested, edge)
            .await;
        let out = RemoteLayer {
            track: track.to_owned(),
            edge: edge.to_owned(),
            requested,
            at,
        };
        if let Some(h) = out.held() {
            let r = self.relay_ref(track, h);
            self.app.open_relay(add.clone(), &r, edge).await?;
        }
        Ok(out)
    }

    /// Undoes [`Self::new_remote_layer`]'s hold (its subscription failed).
    pub(super) async fn release_hold(&self, l: &RemoteLayer) {
        if let Some(h) = l.held() {
            let _ = self
                .app
                .release_relay(&self.relay_ref(&l.track, h), &l.edge)
                .await;
        }
    }

    /// Records a new remote subscription's layers; entries of subscriptions gone meanwhile
    /// go first (bounded by the room's subscriptions).
    pub(super) fn note_remote_layer(&mut self, subscription: SubscriptionId, l: RemoteLayer) {
        if self.media.remote_layers.len() > self.media.subs.len() + 64 {
            let subs = &self.media.subs;
            let stale: Vec<SubscriptionId> = self
                .media
                .remote_layers
                .keys()
                .filter(|s| !subs.contains_key(s))
                .copied()
                .collect();
            for s in stale {
                self.drop_remote_layer(s);
            }
        }
        self.media.remote_layers.insert(subscription, l);
    }

    /// A remote subscription is gone: its entry, and its hold (in the background: this is
    /// also called where nothing may wait).
    pub(crate) fn drop_remote_layer(&mut self, subscription: SubscriptionId) {
        let Some(l) = self.media.remote_layers.remove(&subscription) else {
            return;
        };
        if let Some(h) = l.held() {
            let app = Arc::clone(&self.app);
            let r = self.relay_ref(&l.track, h);
            tokio::spawn(async move {
                let _ = app.release_relay(&r, &l.edge).await;
            });
        }
    }

    /// Chooses the layer of a remote subscription again — `requested` new, or as it was — and
    /// moves it there (the new layer's relay acquired, the old one released by the edge), the
    /// hold on a shed requested relay taken or given back.
    pub(crate) async fn select_remote_layer(
        &mut self,
        subscription: SubscriptionId,
        requested: Option<u8>,
    ) -> Result<(), ApiError> {
        let Some(cur) = self.media.remote_layers.get(&subscription).cloned() else {
            return Ok(());
        };
        let Some(spec) = self.media.subs.get(&subscription) else {
            return Ok(());
        };
        let Some(remote) = self.media.remote.get(&spec.session).cloned() else {
            return Ok(());
        };
        let Some(add) = self.remote_track_spec(&cur.track) else {
            return Ok(());
        };
        let requested = requested.unwrap_or(cur.requested);
        let at = self
            .app
            .remote_target(&self.name, &cur.track, requested, &cur.edge)
            .await;
        let want = RemoteLayer {
            requested,
            at,
            ..cur.clone()
        };
        if want == cur {
            return Ok(());
        }
        // The hold first: the relay must not start its grace while we move off it.
        let new_hold = want.held().filter(|h| cur.held() != Some(*h));
        if let Some(h) = new_hold {
            let r = self.relay_ref(&cur.track, h);
            self.app.open_relay(add.clone(), &r, &cur.edge).await?;
        }
        if at != cur.at {
            let r = self.relay_ref(&cur.track, at);
            let moved = match self.app.open_relay(add, &r, &cur.edge).await {
                Ok(relay) => {
                    let op = json!({"op": "layer", "subscription": subscription, "track": r,
                        "relay": relay});
                    let out = self.app.remote_op(&remote.node, op).await;
                    if out.is_err() {
                        let _ = self.app.release_relay(&r, &cur.edge).await;
                    }
                    out
                }
                Err(e) => Err(e),
            };
            if let Err(e) = moved {
                if let Some(h) = new_hold {
                    let r = self.relay_ref(&cur.track, h);
                    let _ = self.app.release_relay(&r, &cur.edge).await;
                }
                return Err(e);
            }
            if requested == cur.requested {
                let m = &self.app.cascade.remote.metrics;
                if at < cur.at {
                    &m.shed_down
                } else {
                    &m.shed_up
                }
                .fetch_add(1, Ordering::Relaxed);
                tracing::info!(room = %self.name, %subscription, track = %cur.track,
                    edge = %cur.edge, from = cur.at, to = at, requested,
                    "cascade: remote subscription moved for a {} relay",
                    if at < cur.at { "shed" } else { "resumed" });
            }
        }
        if let Some(h) = cur.held().filter(|h| want.held() != Some(*h)) {
            let r = self.relay_ref(&cur.track, h);
            let _ = self.app.release_relay(&r, &cur.edge).await;
        }
        self.media.remote_layers.insert(subscription, want);
        Ok(())
    }

    /// A relay of this room's track was shed or resumed toward `ev.edge`: each remote
    /// subscription of the track there chooses its layer again.
    pub(crate) async fn on_relay_shed(&mut self, ev: &RelayShed) {
        let subs: Vec<SubscriptionId> = self
            .media
            .remote_layers
            .iter()
            .filter(|(_, l)| l.edge == ev.edge && l.track == ev.track.track)
            .map(|(s, _)| *s)
            .collect();
        for subscription in subs {
            if let Err(e) = self.select_remote_layer(subscription, None).await {
                tracing::warn!(room = %self.name, %subscription, error = %e,
                    "cascade: moving a remote subscription for a shed relay failed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_effective_layer_is_the_highest_unshed_one_at_or_below_the_request() {
        let shed = |set: &'static [u8]| move |l: u8| set.contains(&l);
        assert_eq!(effective_layer(2, shed(&[])), 2);
        assert_eq!(effective_layer(2, shed(&[2])), 1);
        assert_eq!(effective_layer(2, shed(&[2, 1])), 0);
        // A shed layer above the request changes nothing; one below it neither.
        assert_eq!(effective_layer(1, shed(&[2])), 1);
        assert_eq!(effective_layer(2, shed(&[1])), 2);
        assert_eq!(effective_layer(2, shed(&[0, 1, 2])), 0);
        let l = |requested, at| RemoteLayer {
            track: "TR_1".into(),
            edge: "b".into(),
            requested,
            at,
        };
        assert_eq!(l(2, 1).held(), Some(2));
        assert_eq!(l(2, 2).held(), None);
        assert_eq!(l(0, 0).held(), None);
    }
}
