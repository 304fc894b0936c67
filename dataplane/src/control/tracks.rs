//! The control thread's track and subscription handlers: `add_track` / `remove_track`,
//! `subscribe` / `relay_track` / `unsubscribe`, and the cross-shard interest a subscription
//! registers at its publisher's shard.

use super::*;

impl ControlThread {
    pub(super) fn add_track(
        &mut self,
        id: u64,
        spec: AddTrack,
    ) -> Result<Option<ReplyOk>, ErrorBody> {
        if !self.sessions.contains_key(&spec.session) {
            return Err(not_found(spec.session));
        }
        if self.tracks.contains_key(&spec.track) {
            return Err(rejected(format!("{} exists", spec.track)));
        }
        let (session, track) = (spec.session, spec.track);
        self.tracks.insert(
            track,
            TrackRec {
                spec: spec.clone(),
                muted: false,
                active_layers: Vec::new(),
            },
        );
        let token = self.token(id, OnReply::Track(track));
        let routed = self.route(
            session,
            ShardCmd::Apply {
                req: Some(token),
                cmd: Command::AddTrack(spec),
            },
        );
        let answer = self.settle(token, routed);
        if answer.is_err() {
            self.tracks.remove(&track);
        }
        answer
    }

    pub(super) fn remove_track(
        &mut self,
        id: u64,
        track: TrackId,
    ) -> Result<Option<ReplyOk>, ErrorBody> {
        let Some(rec) = self.tracks.get(&track) else {
            return Err(not_found(track));
        };
        let session = rec.spec.session;
        self.drop_track_subs(track);
        self.tracks.remove(&track);
        self.route_apply(id, session, Command::RemoveTrack { track })
    }

    /// `relay_track`: a subscription of a trunk session that passes one layer unchanged.
    pub(super) fn relay_track(
        &mut self,
        id: u64,
        spec: RelayTrack,
    ) -> Result<Option<ReplyOk>, ErrorBody> {
        let Some(session) = self.sessions.get(&spec.session) else {
            return Err(not_found(spec.session));
        };
        if !matches!(session.spec.mode, TransportMode::Trunk { .. }) {
            return Err(
                rejected(format!("{} is not a trunk session", spec.session)).with_field("session")
            );
        }
        let Some(track) = self.tracks.get(&spec.track) else {
            return Err(not_found(spec.track));
        };
        if usize::from(spec.layer) >= track.spec.layers.len() {
            return Err(rejected(format!(
                "{} has {} layer(s)",
                spec.track,
                track.spec.layers.len()
            ))
            .with_field("layer"));
        }
        self.subscribe(id, spec.as_subscribe(), Some(spec.layer))
    }

    pub(super) fn subscribe(
        &mut self,
        id: u64,
        spec: Subscribe,
        relay_layer: Option<u8>,
    ) -> Result<Option<ReplyOk>, ErrorBody> {
        if self.subs.contains_key(&spec.subscription) {
            return Err(rejected(format!("{} exists", spec.subscription)));
        }
        if !self.sessions.contains_key(&spec.session) {
            return Err(not_found(spec.session));
        }
        let Some(track) = self.tracks.get(&spec.track) else {
            return Err(not_found(spec.track));
        };
        let track_spec = track.spec.clone();
        let source = self.worker_of(track_spec.session);
        let (sub, session, track_id) = (spec.subscription, spec.session, spec.track);
        self.subs.insert(
            sub,
            SubRec {
                spec: spec.clone(),
                max_spatial: MAX_LAYER_INDEX,
                max_temporal: MAX_LAYER_INDEX,
                priority: self
                    .sessions
                    .get(&session)
                    .map_or(0, |s| s.spec.quality.priority),
            },
        );
        let token = self.token(id, OnReply::Sub(sub));
        let routed = self.route(
            session,
            ShardCmd::Subscribe {
                req: Some(token),
                spec,
                track: track_spec,
                source,
                relay_layer,
            },
        );
        let sent = matches!(routed, Ok(Routed::Sent));
        let answer = self.settle(token, routed);
        if sent {
            self.update_interest(track_id, session);
        } else if answer.is_err() {
            self.subs.remove(&sub);
        }
        answer
    }

    pub(super) fn unsubscribe(
        &mut self,
        id: u64,
        sub: SubscriptionId,
    ) -> Result<Option<ReplyOk>, ErrorBody> {
        let Some(rec) = self.subs.remove(&sub) else {
            return Err(not_found(sub));
        };
        let r = self.route_apply(
            id,
            rec.spec.session,
            Command::Unsubscribe { subscription: sub },
        );
        self.update_interest(rec.spec.track, rec.spec.session);
        r
    }

    /// Tells the publisher's shard whether the shard of `subscriber` (still) has subscribers
    /// of `track`.
    pub(super) fn update_interest(&mut self, track: TrackId, subscriber: SessionId) {
        let (Some(sub_shard), Some((pub_session, kind))) = (
            self.worker_of(subscriber),
            self.tracks
                .get(&track)
                .map(|t| (t.spec.session, t.spec.kind)),
        ) else {
            return;
        };
        let Some(pub_shard) = self.worker_of(pub_session) else {
            return;
        };
        if pub_shard == sub_shard {
            return;
        }
        let on = self
            .subs
            .values()
            .any(|s| s.spec.track == track && self.worker_of(s.spec.session) == Some(sub_shard));
        self.send_to(
            pub_shard,
            ShardCmd::Interest {
                track,
                kind,
                shard: sub_shard,
                on,
            },
        );
    }

    pub(super) fn worker_of(&self, session: SessionId) -> Option<u16> {
        self.sessions.get(&session).and_then(|s| s.worker)
    }
}
