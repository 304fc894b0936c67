//! Keeping the dataplane and our records in line: the resync after every (re)connection of the
//! link (`docs/control-socket.md` "Disconnect and resync"), the adoption of calls that outlived
//! a control restart, sessions the dataplane closed on its own, and the clean-up after a
//! participant leaves or a room goes P2P.
//!
//! The resync lists what the dataplane holds once, then asks each room actor in turn to
//! recreate what it holds and the dataplane lacks (sessions that existed when the listing
//! started: ids only grow, so later ones are the room's own new work). Sessions no room knows
//! are orphans and are closed — except on the first resync after a start, when they are calls
//! a previous control process left running, adopted where the store remembers their tracks.

use crate::lock::Locked;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use sluice_proto::{AddTrack, Command, CreateSession, ReplyOk, SessionId, SubscriptionId, TrackId};

use super::{Peer, PendingTrack};
use crate::limits::Refusal;
use crate::server::actor::RoomCtx;
use crate::server::adopt;
use crate::server::error::ApiError;
use crate::server::hub::ClientMsg;
use crate::server::App;
use crate::signal::{ReconnectReason, ServerMessage};

/// What the dataplane holds, by id.
#[derive(Debug, Default)]
pub(crate) struct Held {
    sessions: BTreeMap<SessionId, CreateSession>,
    tracks: BTreeMap<TrackId, AddTrack>,
    subs: BTreeSet<SubscriptionId>,
    /// Ids up to here existed when the listing started.
    listed_upto: u64,
}

impl App {
    /// Dataplane (re)connected: make it hold exactly what the rooms hold. `adopt`: this process
    /// just started, so sessions no room knows belong to calls that outlived a control restart:
    /// leave them forwarding instead of closing them as orphans.
    pub(crate) async fn resync(self: &Arc<Self>, adopt: bool) -> Result<(), ApiError> {
        let held = Arc::new(self.list_dataplane().await?);
        let mut known = BTreeSet::new();
        let mut recreated = 0usize;
        for name in self.registry.names() {
            let h = Arc::clone(&held);
            let result = self
                .in_local_room(&name, move |ctx| {
                    Box::pin(async move { Ok(ctx.resync_room(&h, adopt).await) })
                })
                .await;
            match result {
                Ok((sessions, n)) => {
                    known.extend(sessions);
                    recreated += n;
                }
                Err(e) => tracing::warn!(room = %name, error = %e, "room resync failed"),
            }
        }
        // Trunks and edge viewers are the cascade's, not a room's.
        known.extend(self.cascade_sessions().await);
        let mut orphans = 0usize;
        for (id, spec) in held.sessions.iter().filter(|(id, _)| !known.contains(*id)) {
            // A trunk cannot be adopted: what rides it lives in the cascade's memory only, and
            // it would hold the peer's address against the trunk the cascade makes next.
            let trunk = matches!(spec.mode, sluice_proto::TransportMode::Trunk { .. });
            if !adopt || trunk {
                let _ = self.dp(Command::CloseSession { session: *id }).await;
            }
            orphans += 1;
        }
        tracing::info!(recreated, orphans, adopted = adopt, "dataplane resynced");
        Ok(())
    }

    /// Every session, track and subscription the dataplane holds (paged lists); our id counter
    /// moves above all of them.
    async fn list_dataplane(&self) -> Result<Held, ApiError> {
        let mut held = Held {
            listed_upto: self.dp_ids.load(Ordering::Relaxed),
            ..Held::default()
        };
        let mut after = None;
        loop {
            match self.dp(Command::ListSessions { after }).await? {
                ReplyOk::Sessions { sessions, next } => {
                    held.sessions
                        .extend(sessions.into_iter().map(|s| (s.spec.session, s.spec)));
                    after = next;
                }
                _ => return Err(ApiError::new("internal", "unexpected list reply")),
            }
            if after.is_none() {
                break;
            }
        }
        let mut after = None;
        loop {
            match self.dp(Command::ListTracks { after }).await? {
                ReplyOk::Tracks { tracks, next } => {
                    held.tracks
                        .extend(tracks.into_iter().map(|t| (t.spec.track, t.spec)));
                    after = next;
                }
                _ => return Err(ApiError::new("internal", "unexpected list reply")),
            }
            if after.is_none() {
                break;
            }
        }
        let mut after = None;
        loop {
            match self.dp(Command::ListSubscriptions { after }).await? {
                ReplyOk::Subscriptions {
                    subscriptions,
                    next,
                } => {
                    held.subs
                        .extend(subscriptions.into_iter().map(|s| s.spec.subscription));
                    after = next;
                }
                _ => return Err(ApiError::new("internal", "unexpected list reply")),
            }
            if after.is_none() {
                break;
            }
        }
        // Ids of our span must never be reused: continue above any the dataplane holds. Ids
        // outside it are another process's (a previous control process, or a home's remote
        // sessions on this edge, D105): their spans are elsewhere.
        let (lo, hi) = (self.dp_ids_start, self.dp_ids_start + super::DP_ID_SPAN);
        let ours = |i: u64| (lo..hi).contains(&i);
        let highest = held
            .sessions
            .keys()
            .map(|i| i.0)
            .chain(held.tracks.keys().map(|i| i.0))
            .chain(held.subs.iter().map(|i| i.0))
            .filter(|i| ours(*i))
            .max()
            .unwrap_or(0);
        self.dp_ids.fetch_max(highest, Ordering::Relaxed);
        held.listed_upto = held.listed_upto.max(highest);
        Ok(held)
    }

    /// The dataplane restarted (a new `instance` in its hello): it holds nothing, and the
    /// clients' DTLS associations died with the old process. Every room drops its media
    /// records and asks its WebSocket clients to `reconnect` (docs/protocol.md); one-shot
    /// participants, who cannot be asked, leave as ghosts. How many clients were asked.
    pub(crate) async fn dataplane_restarted(self: &Arc<Self>) -> usize {
        self.cascade_reset().await;
        let mut asked = 0;
        for name in self.registry.names() {
            let n = self
                .in_room(&name, |ctx| {
                    Box::pin(async move { Ok(ctx.media_reset().await) })
                })
                .await
                .unwrap_or(0);
            asked += n;
        }
        tracing::warn!(
            clients = asked,
            "dataplane restarted: clients asked to reconnect"
        );
        asked
    }

    /// ICE of a session came up or went down: its room notes it (one-shot participants whose
    /// media stays dead leave, `actor/ghosts.rs`).
    pub(crate) async fn session_liveness(self: &Arc<Self>, session: SessionId, alive: bool) {
        let room = self.session_rooms.locked().get(&session).cloned();
        if let Some(room) = room {
            let _ = self
                .in_existing_room(&room, move |ctx| {
                    Box::pin(async move {
                        ctx.session_liveness(session, alive);
                        Ok(())
                    })
                })
                .await;
        }
    }

    /// The dataplane closed a session on its own (ICE timeout, DTLS failure): its room forgets
    /// it.
    pub(crate) async fn session_closed(self: &Arc<Self>, session: SessionId) {
        let room = self.session_rooms.locked().get(&session).cloned();
        if let Some(room) = room {
            let _ = self
                .in_existing_room(&room, move |ctx| {
                    Box::pin(async move {
                        ctx.session_closed(session);
                        Ok(())
                    })
                })
                .await;
        }
    }
}

impl RoomCtx {
    /// This room's part of a resync: adopt (first resync after a start), then recreate what
    /// the dataplane lacks. The sessions the room holds, and how many objects were recreated.
    async fn resync_room(&mut self, held: &Held, adopt: bool) -> (Vec<SessionId>, usize) {
        if adopt && self.adopt_tracks(held) > 0 {
            // Someone may have joined before the link came back; they were offered nothing.
            self.refresh_room().await;
        }
        let old = |id: u64| id <= held.listed_upto;
        // What the dataplane lacks, in creation order: sessions, then tracks, then subscriptions.
        let media = &self.media;
        let missing: Vec<Command> = media
            .sessions
            .iter()
            // Remote sessions (`node.rs`) live on an edge's dataplane, not this one.
            .filter(|(id, _)| !media.remote.contains_key(*id))
            .filter(|(id, _)| old(id.0) && !held.sessions.contains_key(*id))
            .map(|(_, s)| Command::CreateSession(s.clone()))
            .chain(
                media
                    .dp_tracks
                    .iter()
                    .filter(|(id, _)| old(id.0) && !held.tracks.contains_key(*id))
                    .map(|(_, t)| Command::AddTrack(t.clone())),
            )
            .chain(
                media
                    .subs
                    .iter()
                    .filter(|(_, s)| !media.remote.contains_key(&s.session))
                    .filter(|(id, _)| old(id.0) && !held.subs.contains(*id))
                    .map(|(_, s)| Command::Subscribe(s.clone())),
            )
            .collect();
        let mut recreated = 0usize;
        for cmd in missing {
            if self.app.dp(cmd).await.is_ok() {
                recreated += 1;
            }
        }
        (self.media.sessions.keys().copied().collect(), recreated)
    }

    /// Takes back the published tracks of calls that outlived a control restart: each stored
    /// track whose `TrackId` the dataplane still holds, and whose room track still exists,
    /// becomes a media track again with its dataplane spec and its publisher session, so
    /// participants who join now are offered it (and a later dataplane restart recreates it).
    /// Stored tracks that match nothing are dropped. How many were adopted.
    fn adopt_tracks(&mut self, held: &Held) -> usize {
        let live: BTreeSet<String> = self
            .room()
            .map(|r| {
                r.participants
                    .values()
                    .flat_map(|p| p.tracks.keys().cloned())
                    .collect()
            })
            .unwrap_or_default();
        let mut adopted = Vec::new();
        self.saved.retain(|sid, saved| {
            let track = adopt::media_track(saved);
            let Some(spec) = held.tracks.get(&track.dp) else {
                return false;
            };
            let Some(session) = held.sessions.get(&spec.session) else {
                return false;
            };
            if !live.contains(sid) {
                return false;
            }
            adopted.push((sid.clone(), track, spec.clone(), session.clone()));
            true
        });
        let n = adopted.len();
        for (sid, track, spec, session) in adopted {
            if self.media.tracks.contains_key(&sid) {
                continue;
            }
            self.track_session(spec.session, session);
            self.media.dp_tracks.insert(track.dp, spec);
            self.media.tracks.insert(sid, track);
        }
        tracing::info!(room = %self.name, adopted = n, "published tracks adopted from the dataplane");
        n
    }

    /// A dataplane session ended on its own: forget it.
    fn session_closed(&mut self, session: SessionId) {
        if self.forget_session(session).is_none() {
            return;
        }
        self.media.subs.retain(|_, s| s.session != session);
        self.media.dp_tracks.retain(|_, t| t.session != session);
        for p in self.media.peers.values_mut() {
            if p.publisher.as_ref().is_some_and(|pc| pc.session == session) {
                p.publisher = None;
            }
            if let Some(sub) = p.subscriber.as_mut() {
                if sub.session == Some(session) {
                    // Fresh credentials: the next offer needs a ufrag (an empty one is refused).
                    *sub = super::subscribe::SubPc::fresh();
                }
            }
        }
    }

    /// Tracks that went away in the room state (unpublish, leave, grants): remove them from
    /// the dataplane and re-offer.
    pub(crate) async fn sync_room_tracks(&mut self) {
        let live: BTreeSet<String> = self
            .room()
            .map(|r| {
                r.participants
                    .values()
                    .flat_map(|p| p.tracks.keys().cloned())
                    .collect()
            })
            .unwrap_or_default();
        self.drop_stale_pending();
        self.revoke_subscriptions().await;
        let dead: Vec<String> = self
            .media
            .tracks
            .keys()
            .filter(|sid| !live.contains(*sid))
            .cloned()
            .collect();
        for sid in dead {
            let t = self.media.tracks.remove(&sid).expect("listed above");
            self.saved.remove(&sid);
            self.media.dp_tracks.remove(&t.dp);
            self.media.subs.retain(|_, s| s.track != t.dp);
            for p in self.media.peers.values_mut() {
                p.pub_mids.retain(|_, s| *s != sid);
                p.layer_caps.remove(&sid);
                if let Some(sub) = p.subscriber.as_mut() {
                    sub.subscribed.remove(&sid);
                }
            }
            if let Err(e) = self.app.dp(Command::RemoveTrack { track: t.dp }).await {
                tracing::debug!(track = %t.dp, error = %e, "remove_track");
            }
        }
        self.refresh_room().await;
    }

    /// `publish` requests whose track is no longer the participant's in the room state
    /// (unpublished, or taken away by a role or grant change) are dropped: a saved request never
    /// outlives its track (findings #7, #11).
    fn drop_stale_pending(&mut self) {
        let room = self.rooms.room(&self.name);
        let mut dropped = 0;
        for (identity, peer) in &mut self.media.peers {
            let own = room.and_then(|r| r.participants.get(identity));
            let before = peer.pending.len();
            peer.pending
                .retain(|p| own.is_some_and(|o| o.tracks.contains_key(&p.sid)));
            dropped += before - peer.pending.len();
        }
        self.app
            .refusals
            .add(Refusal::PendingPublishDropped, dropped as u64);
    }

    /// See [`App::dataplane_restarted`]: forget every dataplane object of the room (they died
    /// with the process); signaling clients that had a session get `reconnect`, with their
    /// published tracks pending again (the next publisher offer reuses their sids) and a fresh
    /// subscriber offer; one-shot peers lose their session and leave as ghosts. How many
    /// clients were asked.
    pub(crate) async fn media_reset(&mut self) -> usize {
        let sessions: Vec<SessionId> = self.media.sessions.keys().copied().collect();
        for id in sessions {
            // A subscriber session on an edge outlived this dataplane: it goes too (the
            // client makes new PeerConnections).
            self.close_remote_in_background(id);
            self.forget_session(id);
        }
        self.media.dp_tracks.clear();
        self.media.subs.clear();
        self.media.tracks.clear();
        self.saved.clear();
        let mut asked = Vec::new();
        let identities: Vec<String> = self.media.peers.keys().cloned().collect();
        for identity in identities {
            let own: Vec<PendingTrack> = self
                .rooms
                .participant(&self.name, &identity)
                .map(|p| {
                    p.tracks
                        .values()
                        .map(|t| PendingTrack {
                            cid: String::new(),
                            sid: t.id.clone(),
                            kind: t.kind,
                        })
                        .collect()
                })
                .unwrap_or_default();
            let Some(peer) = self.media.peers.get_mut(&identity) else {
                continue;
            };
            let had_media = peer.publisher.is_some()
                || peer
                    .subscriber
                    .as_ref()
                    .is_some_and(|s| s.session.is_some());
            if !peer.signaling {
                peer.publisher = None;
                peer.oneshot_subs.clear();
                continue;
            }
            if !had_media {
                continue;
            }
            *peer = Peer {
                participant_sid: peer.participant_sid.clone(),
                signaling: true,
                pending: own,
                unsubscribed: std::mem::take(&mut peer.unsubscribed),
                layer_caps: std::mem::take(&mut peer.layer_caps),
                region: peer.region.take(),
                ..Peer::default()
            };
            asked.push(identity);
        }
        for identity in &asked {
            self.app.hub.send_to(
                &self.name,
                identity,
                ClientMsg::Msg(ServerMessage::Reconnect {
                    reason: ReconnectReason::DataplaneRestarted,
                }),
            );
        }
        self.refresh_room().await;
        asked.len()
    }

    /// The participant is gone: close its sessions, stop counting it, drop its tracks.
    pub(crate) async fn media_leave(&mut self, identity: &str) {
        if let Some(peer) = self.media.peers.remove(identity) {
            self.close_peer_sessions(peer).await;
        }
        self.hybrid_leave(identity).await;
        self.sync_room_tracks().await;
    }

    /// Closes a participant's sessions (what was on them goes with them).
    pub(crate) async fn close_peer_sessions(&mut self, peer: Peer) {
        let sessions: Vec<SessionId> = peer
            .publisher
            .map(|p| p.session)
            .into_iter()
            .chain(peer.subscriber.and_then(|s| s.session))
            .collect();
        for s in sessions {
            let closed = self.media_dp(s, Command::CloseSession { session: s }).await;
            if let Err(e) = closed {
                tracing::debug!(session = %s, error = %e, "close_session");
            }
            self.forget_session(s);
            self.media.subs.retain(|_, sub| sub.session != s);
            self.media.dp_tracks.retain(|_, t| t.session != s);
        }
    }

    /// The room is P2P now: close every dataplane session of its participants and drop its
    /// dataplane tracks. Published tracks stay in the room state; each participant's own
    /// tracks become pending again, so its next publisher offer (after a move back to SFU)
    /// reuses the same track sids.
    pub(crate) async fn close_room_sessions(&mut self) {
        let identities: Vec<String> = self.media.peers.keys().cloned().collect();
        let mut old = Vec::new();
        for identity in identities {
            let own: Vec<PendingTrack> = self
                .rooms
                .participant(&self.name, &identity)
                .map(|p| {
                    p.tracks
                        .values()
                        .map(|t| PendingTrack {
                            cid: String::new(),
                            sid: t.id.clone(),
                            kind: t.kind,
                        })
                        .collect()
                })
                .unwrap_or_default();
            let peer = self.media.peers.get_mut(&identity).expect("listed above");
            if !peer.signaling {
                continue;
            }
            let fresh = Peer {
                participant_sid: peer.participant_sid.clone(),
                signaling: peer.signaling,
                pending: own,
                region: peer.region.clone(),
                ..Peer::default()
            };
            old.push(std::mem::replace(peer, fresh));
        }
        let dead: Vec<(String, TrackId)> = self
            .media
            .tracks
            .iter()
            .map(|(sid, t)| (sid.clone(), t.dp))
            .collect();
        for (sid, dp) in dead {
            self.media.tracks.remove(&sid);
            self.media.dp_tracks.remove(&dp);
            self.media.subs.retain(|_, s| s.track != dp);
            self.saved.remove(&sid);
            if let Err(e) = self.app.dp(Command::RemoveTrack { track: dp }).await {
                tracing::debug!(track = %dp, error = %e, "remove_track");
            }
        }
        let n = old.len();
        for peer in old {
            self.close_peer_sessions(peer).await;
        }
        tracing::info!(room = %self.name, peers = n, "p2p: dataplane sessions closed");
    }
}
