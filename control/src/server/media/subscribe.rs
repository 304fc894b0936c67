//! The subscriber PeerConnection of a WebSocket client: we offer the room's tracks
//! (`offer {pc: "subscriber"}`), the client answers, and the answer becomes `Subscribe`s.
//!
//! The answer is handled as plan, then apply: [`RoomCtx::subscriber_answer`] first works out
//! the session change (`settle.rs`: set the remote credentials, restart ICE, or create the
//! session anew as DTLS client) and which subscriptions go and come, then runs the commands; if
//! a `Subscribe` is refused, the subscriptions this answer created are removed again and the
//! records stay as they were. The session may be on an edge's dataplane (`node.rs`).

use std::collections::{BTreeMap, BTreeSet};

use sluice_proto::{
    Candidate, Command, CreateSession, DtlsRole, IceParams, MediaKind, SessionId, Subscribe,
    SubscriptionId, TransportMode,
};

use super::node::MediaNode;
use super::{ice_creds, random_u32};
use crate::limits::Refusal;
use crate::sdp::{
    self, accept_answer, offer_for_subscriber, Direction, ExtIds, Msid, OutgoingTrack,
    SessionDescription,
};
use crate::server::actor::RoomCtx;
use crate::server::error::ApiError;
use crate::server::hub::ClientMsg;
use crate::signal::{PcName, ServerMessage};

/// The server-offered PeerConnection.
#[derive(Debug, Default)]
pub(crate) struct SubPc {
    pub(crate) session: Option<SessionId>,
    /// The session's candidates and shard, from `SessionCreated`.
    pub(super) candidates: Vec<Candidate>,
    pub(super) shard: Option<u16>,
    pub(crate) ufrag: String,
    pub(crate) pwd: String,
    pub(crate) remote_ufrag: Option<String>,
    version: u64,
    /// m= slots in order; `None` track = inactive (its track went away).
    slots: Vec<Slot>,
    /// The offer awaiting an answer.
    pending_offer: Option<SessionDescription>,
    /// The set changed while an offer was pending: offer again after the answer.
    stale: bool,
    /// Track sid → subscription, as established after an answer.
    pub(crate) subscribed: BTreeMap<String, SubscriptionId>,
    pub(super) ice_restart: bool,
    /// Where the session is (`node.rs`): this node, or an edge.
    pub(crate) node: MediaNode,
}

impl SubPc {
    /// A new subscriber PC (fresh ICE credentials, no session yet, placed anew).
    pub(crate) fn fresh() -> Self {
        let (ufrag, pwd) = ice_creds();
        SubPc {
            ufrag,
            pwd,
            ..SubPc::default()
        }
    }
}

#[derive(Debug, Clone)]
struct Slot {
    out: OutgoingTrack,
    track: Option<String>,
}

impl RoomCtx {
    /// Whether `identity` is in the room with `can_subscribe`.
    pub(crate) fn may_subscribe(&self, identity: &str) -> bool {
        self.rooms
            .participant(&self.name, identity)
            .is_some_and(|p| p.grants.can_subscribe)
    }

    /// Applies a revoked `can_subscribe` to the dataplane at once: every subscription of a
    /// participant that may not subscribe (its WebSocket subscriber PC's and a one-shot
    /// session's) is removed now, not when the client answers the re-offer (finding #10).
    pub(crate) async fn revoke_subscriptions(&mut self) {
        let revoked: Vec<String> = self
            .media
            .peers
            .iter()
            .filter(|(_, p)| {
                !p.oneshot_subs.is_empty()
                    || p.subscriber
                        .as_ref()
                        .is_some_and(|s| !s.subscribed.is_empty())
            })
            .map(|(i, _)| i.clone())
            .filter(|i| !self.may_subscribe(i))
            .collect();
        for identity in revoked {
            let Some(peer) = self.media.peers.get_mut(&identity) else {
                continue;
            };
            let mut ids = std::mem::take(&mut peer.oneshot_subs);
            if let Some(sub) = peer.subscriber.as_mut() {
                ids.extend(std::mem::take(&mut sub.subscribed).into_values());
            }
            self.app
                .refusals
                .add(Refusal::SubscriptionRevoked, ids.len() as u64);
            for subscription in ids {
                let Some(spec) = self.media.subs.get(&subscription) else {
                    continue;
                };
                let session = spec.session;
                let gone = self
                    .media_dp(session, Command::Unsubscribe { subscription })
                    .await;
                self.media.subs.remove(&subscription);
                if let Err(e) = gone {
                    tracing::debug!(%subscription, error = %e, "revoke: unsubscribe");
                }
            }
        }
    }

    /// Re-offers to every signaling subscriber of the room whose wanted tracks changed.
    pub(crate) async fn refresh_room(&mut self) {
        let identities: Vec<String> = self
            .media
            .peers
            .iter()
            .filter(|(_, p)| p.signaling)
            .map(|(i, _)| i.clone())
            .collect();
        for identity in identities {
            if let Err(e) = self.offer_subscriber(&identity, false).await {
                tracing::debug!(room = %self.name, identity, error = %e, "no subscriber offer");
            }
        }
    }

    /// Builds and sends a subscriber offer if the wanted set changed (or `force`, for an ICE
    /// restart).
    async fn offer_subscriber(&mut self, identity: &str, force: bool) -> Result<(), ApiError> {
        let can_subscribe = self.may_subscribe(identity);
        let peer = self
            .media
            .peers
            .get(identity)
            .ok_or_else(|| ApiError::not_found("peer"))?;
        let wanted: BTreeSet<String> = if can_subscribe {
            self.media
                .tracks
                .iter()
                .filter(|(sid, t)| t.owner != identity && !peer.unsubscribed.contains(*sid))
                .map(|(sid, _)| sid.clone())
                .collect()
        } else {
            BTreeSet::new()
        };
        let sub = self
            .media
            .peers
            .get_mut(identity)
            .expect("checked above")
            .subscriber
            .get_or_insert_with(SubPc::fresh);
        let current: BTreeSet<String> = sub.slots.iter().filter_map(|s| s.track.clone()).collect();
        if current == wanted && !force {
            return Ok(());
        }
        if sub.pending_offer.is_some() {
            sub.stale = true;
            return Ok(());
        }
        if current.is_empty() && wanted.is_empty() && sub.slots.is_empty() {
            return Ok(());
        }
        if sub.session.is_none() {
            // The offer carries the session's candidates: create it first, before anything
            // here changes, so a refusal leaves the next refresh to try again.
            self.create_subscriber_session(identity).await?;
        }
        let tracks = &self.media.tracks;
        let sub = self
            .media
            .peers
            .get_mut(identity)
            .and_then(|p| p.subscriber.as_mut())
            .expect("created above");
        // Deactivate slots whose track is gone; fill new tracks into free slots of their kind.
        for slot in &mut sub.slots {
            if slot.track.as_ref().is_some_and(|t| !wanted.contains(t)) {
                slot.track = None;
            }
        }
        for sid in wanted.difference(&current) {
            let t = &tracks[sid];
            let out = OutgoingTrack {
                mid: String::new(),
                kind: t.kind.into(),
                codec: t.codec.clone(),
                ssrc: random_u32(),
                rtx_ssrc: t.codec.rtx_pt.map(|_| random_u32()),
                msid: Msid {
                    stream_id: t.owner_sid.clone(),
                    track_id: Some(sid.clone()),
                },
                ext_ids: subscriber_ext_ids(t.kind),
            };
            if let Some(slot) = sub
                .slots
                .iter_mut()
                .find(|s| s.track.is_none() && s.out.kind == sdp::MediaKind::from(t.kind))
            {
                let mid = slot.out.mid.clone();
                slot.out = OutgoingTrack { mid, ..out };
                slot.track = Some(sid.clone());
            } else {
                let mid = sub.slots.len().to_string();
                sub.slots.push(Slot {
                    out: OutgoingTrack { mid, ..out },
                    track: Some(sid.clone()),
                });
            }
        }
        if force {
            let (ufrag, pwd) = ice_creds();
            sub.ufrag = ufrag;
            sub.pwd = pwd;
            sub.ice_restart = sub.session.is_some();
        }
        sub.version += 1;
        let (ufrag, pwd, candidates, version, node) = (
            sub.ufrag.clone(),
            sub.pwd.clone(),
            sub.candidates.clone(),
            sub.version,
            sub.node.clone(),
        );
        let outs: Vec<OutgoingTrack> = sub.slots.iter().map(|s| s.out.clone()).collect();
        let inactive: Vec<bool> = sub.slots.iter().map(|s| s.track.is_none()).collect();
        let mut local = self.local_params_at(&node, &ufrag, &pwd, &candidates)?;
        local.session_version = version;
        let mut offer = offer_for_subscriber(&local, &outs);
        for (off, section) in inactive.iter().zip(offer.media.iter_mut()) {
            if *off {
                section.direction = Direction::Inactive;
                section.ssrcs.clear();
                section.ssrc_groups.clear();
                section.msids.clear();
            }
        }
        let text = offer.to_string();
        if let Some(sub) = self
            .media
            .peers
            .get_mut(identity)
            .and_then(|p| p.subscriber.as_mut())
        {
            sub.pending_offer = Some(offer);
        }
        self.app.hub.send_to(
            &self.name,
            identity,
            ClientMsg::Msg(ServerMessage::Offer {
                pc: PcName::Subscriber,
                sdp: text,
            }),
        );
        Ok(())
    }

    /// Creates the subscriber PC's dataplane session before its first offer goes out. A
    /// browser starts ICE checks as soon as it has applied our offer, while its answer is still
    /// on the way back: checks for a ufrag the dataplane does not know yet are dropped, and
    /// Chromium, once it has sent three pings of a pair, paces that pair at ~900 ms, so its
    /// nomination came ~1 s late. The remote credentials and fingerprint follow with the
    /// answer (`SetRemote`); until then the ICE-lite agent accepts any remote ufrag and DTLS
    /// waits for the fingerprint. We offer `actpass` and assume the answerer takes `active`
    /// (RFC 8842 §5.3); an answer choosing `passive` recreates the session as DTLS client, on
    /// the same shard so that the offered candidates stay right. The offer carries the
    /// candidates the dataplane answers with, so there is no offer without a session.
    async fn create_subscriber_session(&mut self, identity: &str) -> Result<(), ApiError> {
        let Some(sub) = self
            .media
            .peers
            .get(identity)
            .and_then(|p| p.subscriber.as_ref())
        else {
            return Err(ApiError::not_found("peer"));
        };
        let id = SessionId(self.app.next_dp_id());
        let spec = CreateSession {
            session: id,
            ice: IceParams {
                ufrag: sub.ufrag.clone(),
                pwd: sub.pwd.clone(),
                remote_ufrag: None,
                remote_pwd: None,
            },
            remote_fingerprint: None,
            dtls_role: DtlsRole::Server,
            shard_hint: None,
            mode: TransportMode::Webrtc {},
            data: None,
            quality: self.participant_tier(identity),
        };
        let (shard, candidates, node) = self.create_subscriber_at_placement(identity, spec).await?;
        if let Some(sub) = self
            .media
            .peers
            .get_mut(identity)
            .and_then(|p| p.subscriber.as_mut())
        {
            sub.node = node;
            sub.session = Some(id);
            sub.remote_ufrag = None;
            sub.candidates = candidates;
            sub.shard = Some(shard);
        }
        Ok(())
    }

    /// The client's answer to our subscriber offer. See the module docs.
    pub(crate) async fn subscriber_answer(
        &mut self,
        identity: &str,
        text: &str,
    ) -> Result<(), ApiError> {
        let answer_sdp = sdp::parse(text)?;
        let sub = self
            .media
            .peers
            .get_mut(identity)
            .and_then(|p| p.subscriber.as_mut())
            .ok_or_else(|| ApiError::rejected("no subscriber offer is pending"))?;
        let offer = sub
            .pending_offer
            .take()
            .ok_or_else(|| ApiError::rejected("no subscriber offer is pending"))?;
        let accepted = match accept_answer(&offer, &answer_sdp) {
            Ok(a) => a,
            Err(e) => {
                sub.pending_offer = Some(offer);
                return Err(e.into());
            }
        };
        let remote = accepted.remote.clone();
        let session = self.settle_subscriber_session(identity, &remote).await?;

        // Plan: subscribe what the answer accepted, unsubscribe what is gone. Without
        // `can_subscribe` (revoked while this offer was out) nothing is subscribed.
        let can_subscribe = self.may_subscribe(identity);
        let tracks = &self.media.tracks;
        let sub = self
            .media
            .peers
            .get_mut(identity)
            .and_then(|p| p.subscriber.as_mut())
            .expect("checked above");
        let mut want: BTreeMap<String, Subscribe> = BTreeMap::new();
        for slot in sub.slots.iter().filter(|_| can_subscribe) {
            let Some(track_sid) = &slot.track else {
                continue;
            };
            let Some(acc) = accepted.accepted.iter().find(|a| a.mid == slot.out.mid) else {
                continue;
            };
            let Some(t) = tracks.get(track_sid) else {
                continue;
            };
            let rtx = slot.out.rtx_ssrc.zip(acc.codec.rtx_pt);
            want.insert(
                track_sid.clone(),
                Subscribe {
                    subscription: SubscriptionId(0),
                    session,
                    track: t.dp,
                    ssrc: slot.out.ssrc,
                    rtx_ssrc: rtx.map(|r| r.0),
                    payload_type: acc.codec.pt,
                    rtx_payload_type: rtx.map(|r| r.1),
                    ext_ids: (&acc.ext_ids).into(),
                },
            );
        }
        let gone: Vec<(String, SubscriptionId)> = sub
            .subscribed
            .iter()
            .filter(|(t, _)| !want.contains_key(*t))
            .map(|(t, s)| (t.clone(), *s))
            .collect();
        let fresh: Vec<(String, Subscribe)> = want
            .into_iter()
            .filter(|(t, _)| !sub.subscribed.contains_key(t))
            .map(|(t, mut spec)| {
                spec.subscription = SubscriptionId(self.app.next_dp_id());
                (t, spec)
            })
            .collect();
        let stale = std::mem::take(&mut sub.stale);

        // Apply.
        for (t, id) in gone {
            match self
                .media_dp(session, Command::Unsubscribe { subscription: id })
                .await
            {
                // Already gone in the dataplane (its track or session closed): fine.
                Ok(_)
                | Err(ApiError {
                    code: "internal", ..
                }) => {}
                Err(e) => return Err(e),
            }
            self.media.subs.remove(&id);
            if let Some(sub) = self
                .media
                .peers
                .get_mut(identity)
                .and_then(|p| p.subscriber.as_mut())
            {
                sub.subscribed.remove(&t);
            }
        }
        let mut created = Vec::new();
        for (_, spec) in &fresh {
            if let Err(e) = self
                .media_dp(session, Command::Subscribe(spec.clone()))
                .await
            {
                for subscription in created {
                    let _ = self
                        .media_dp(session, Command::Unsubscribe { subscription })
                        .await;
                }
                return Err(e);
            }
            created.push(spec.subscription);
        }
        let caps = self
            .media
            .peers
            .get(identity)
            .map(|p| p.layer_caps.clone())
            .unwrap_or_default();
        for (t, spec) in fresh {
            let id = spec.subscription;
            self.media.subs.insert(id, spec);
            if let Some(sub) = self
                .media
                .peers
                .get_mut(identity)
                .and_then(|p| p.subscriber.as_mut())
            {
                sub.subscribed.insert(t.clone(), id);
            }
            if let Some(cap) = caps.get(&t) {
                self.apply_layer_cap(id, *cap).await?;
            }
        }
        if stale {
            let _ = self.offer_subscriber(identity, false).await;
        }
        Ok(())
    }

    pub(super) fn sub_mut(&mut self, identity: &str) -> Option<&mut SubPc> {
        self.media
            .peers
            .get_mut(identity)
            .and_then(|p| p.subscriber.as_mut())
    }

    /// `resume`: a fresh subscriber offer with new ICE credentials.
    pub(crate) async fn resume(&mut self, identity: &str) -> Result<(), ApiError> {
        self.offer_subscriber(identity, true).await
    }

    /// `subscribe {track_sid, subscribe}`.
    pub(crate) async fn set_subscribed(
        &mut self,
        identity: &str,
        track_sid: &str,
        on: bool,
    ) -> Result<(), ApiError> {
        if !self.media.tracks.contains_key(track_sid) {
            return Err(ApiError::not_found(format!("track {track_sid:?}")).with_field("track_sid"));
        }
        let peer = self
            .media
            .peers
            .get_mut(identity)
            .ok_or_else(|| ApiError::not_found("peer"))?;
        if on {
            peer.unsubscribed.remove(track_sid);
        } else {
            peer.unsubscribed.insert(track_sid.to_owned());
        }
        self.offer_subscriber(identity, false).await
    }
}

/// Header extensions we offer subscribers (ids fixed per offer; the answer confirms them).
/// They must be the ids the dataplane renumbers every forwarded packet to
/// (`rtp_core::session::ExtIds::FORWARDED`); `mid` is offered for BUNDLE but never sent, so
/// subscribers demultiplex forwarded media by the SSRCs in this offer.
fn subscriber_ext_ids(kind: MediaKind) -> ExtIds {
    let fwd = rtp_core::session::ExtIds::FORWARDED;
    let mut e = ExtIds {
        mid: Some(1),
        abs_send_time: fwd.abs_send_time,
        transport_cc: fwd.transport_cc,
        ..ExtIds::default()
    };
    if kind == MediaKind::Audio {
        e.audio_level = fwd.audio_level;
    }
    e
}
