//! Answering a client's offer — the WebSocket publisher PeerConnection, or a one-shot
//! WHIP/WHEP/sidecar session — as **plan, then apply**:
//!
//! 1. [`RoomCtx::plan_offer`] decides everything from the offer and the room, with no I/O: the
//!    room after the change (track sids published on a copy of the room's [`Rooms`], so the
//!    rules run and nothing real changes), the session to create or reuse, one `AddTrack` per
//!    newly received section, one `Subscribe` per section the client receives on.
//! 2. [`RoomCtx::apply_offer`] (`publish/apply.rs`) runs the dataplane commands in order and,
//!    only when all of them succeeded, commits: the room copy replaces the room, the media
//!    records are written, the events go out. If one fails, what this apply created is removed
//!    again (`Unsubscribe`, `RemoveTrack`, `CloseSession`, newest first) and the room is as it
//!    was: no track, no event, no session.

mod apply;

use std::collections::BTreeSet;

use sluice_proto::{
    AddTrack, Candidate, Codec, Command, CreateSession, IceParams, Layer, MediaKind, SessionId,
    Subscribe, SubscriptionId, TrackId, TransportMode,
};

use super::translate::{default_source, publishable, track_kind};
use super::{ice_creds, random_u32, MTrack, PendingTrack};
use crate::auth::Source;
use crate::limits::Refusal;
use crate::room::{PublishTrack, RoomEvent, RoomEventKind, Rooms, SimulcastLayer};
use crate::sdp::{self, SessionDescription};
use crate::server::actor::RoomCtx;
use crate::server::error::ApiError;

/// Which side of an answer a caller wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OneShot {
    /// WS publisher PC: only receive; sections we would send on are refused.
    Publisher,
    /// WHIP/sidecar/WHEP: receive what the client sends and send the room's tracks to sections
    /// the client only receives on.
    Both,
}

/// Everything answering an offer will do. See the module docs.
#[derive(Debug)]
pub(crate) struct OfferPlan {
    identity: String,
    offer: SessionDescription,
    offered_ufrag: String,
    ufrag: String,
    pwd: String,
    session: SessionPlan,
    /// The room as it will be (with the published tracks), and the events that make it so.
    rooms: Rooms,
    events: Vec<RoomEvent>,
    /// A one-shot session's participant joins with the offer: its sid (the room copy has it).
    join: Option<String>,
    tracks: Vec<TrackPlan>,
    sends: Vec<SendPlan>,
    /// `publish` requests still waiting after this offer.
    pending: Vec<PendingTrack>,
}

#[derive(Debug)]
enum SessionPlan {
    /// The participant's publisher session already exists; `restart`: its `IceRestart` (the
    /// client sent new credentials).
    Existing {
        session: SessionId,
        candidates: Vec<Candidate>,
        restart: Option<Command>,
    },
    New(CreateSession),
}

/// One newly received section: its track.
#[derive(Debug)]
struct TrackPlan {
    mid: String,
    sid: String,
    spec: AddTrack,
    track: MTrack,
}

/// One section the client receives on (WHEP/sidecar): the room track sent there.
#[derive(Debug)]
struct SendPlan {
    /// The section's index in the answer, and the track's codec it is answered with.
    index: usize,
    codec: sdp::NegotiatedCodec,
    mid: String,
    track_sid: String,
    owner_sid: String,
    spec: Subscribe,
}

impl RoomCtx {
    /// Answers `offer_text` from `identity` (already a participant with a media record): the
    /// publisher session and the answer SDP. See the module docs.
    pub(crate) async fn answer_offer(
        &mut self,
        identity: &str,
        offer_text: &str,
        mode: OneShot,
    ) -> Result<(SessionId, String), ApiError> {
        let offer = sdp::parse(offer_text)?;
        let plan = self.plan_offer(self.rooms.clone(), Vec::new(), identity, offer, mode, None)?;
        let answered = self.apply_offer(plan).await?;
        self.sync_data_rights().await;
        // Subscribers get the new tracks.
        self.refresh_room().await;
        Ok(answered)
    }

    /// Decides what answering `offer` takes; `rooms` is the room as it is to be changed (a copy;
    /// a one-shot session's participant joined on it first, with `events`, as `join` = its sid).
    /// No I/O.
    pub(crate) fn plan_offer(
        &self,
        mut rooms: Rooms,
        mut events: Vec<RoomEvent>,
        identity: &str,
        offer: SessionDescription,
        mode: OneShot,
        join: Option<String>,
    ) -> Result<OfferPlan, ApiError> {
        // A joining participant starts afresh, even if its identity had a session before.
        let peer = self.media.peers.get(identity).filter(|_| join.is_none());
        let offered_ufrag = offer
            .media
            .iter()
            .find_map(|m| m.ice_ufrag.clone())
            .or_else(|| offer.ice_ufrag.clone())
            .unwrap_or_default();
        let existing = peer.and_then(|p| p.publisher.clone());
        let restart = existing
            .as_ref()
            .is_some_and(|pc| pc.remote_ufrag != offered_ufrag);
        let (ufrag, pwd) = match &existing {
            Some(pc) if !restart => (pc.ufrag.clone(), pc.pwd.clone()),
            _ => ice_creds(),
        };
        // A new session's candidates are known once the dataplane created it: the plan works
        // on an answer without them; the apply writes the final one.
        let known: &[Candidate] = existing.as_ref().map_or(&[], |pc| &pc.candidates);
        let data = self.data_allowed(existing.as_ref(), identity);
        let mut answer = sdp::answer(&offer, &self.params_with(&ufrag, &pwd, known, data)?)?;
        let data = answer
            .data
            .as_ref()
            .map(|d| self.data_spec(&rooms, identity, d));

        let session = match &existing {
            Some(pc) => SessionPlan::Existing {
                session: pc.session,
                candidates: pc.candidates.clone(),
                restart: restart.then(|| Command::IceRestart {
                    session: pc.session,
                    ufrag: ufrag.clone(),
                    pwd: pwd.clone(),
                    remote_ufrag: Some(answer.remote.ice_ufrag.clone()),
                    remote_pwd: Some(answer.remote.ice_pwd.clone()),
                }),
            },
            None => SessionPlan::New(CreateSession {
                session: SessionId(self.app.next_dp_id()),
                ice: IceParams {
                    ufrag: ufrag.clone(),
                    pwd: pwd.clone(),
                    remote_ufrag: Some(answer.remote.ice_ufrag.clone()),
                    remote_pwd: Some(answer.remote.ice_pwd.clone()),
                },
                remote_fingerprint: answer.remote.fingerprints.first().map(|f| f.to_string()),
                dtls_role: answer.remote.dtls_role.into(),
                shard_hint: None,
                mode: TransportMode::Webrtc {},
                data,
                quality: self.participant_tier(identity),
            }),
        };
        let session_id = match &session {
            SessionPlan::Existing { session, .. } => *session,
            SessionPlan::New(spec) => spec.session,
        };

        let known_mids = peer.map(|p| &p.pub_mids);
        let mut pending = peer.map(|p| p.pending.clone()).unwrap_or_default();
        let owner_sid = rooms
            .participant(&self.name, identity)
            .map(|p| p.sid.clone())
            .ok_or_else(|| ApiError::not_found(format!("participant {identity:?} not joined")))?;
        // A one-shot participant receives the room's tracks only with `can_subscribe` (#10).
        let may_subscribe = rooms
            .participant(&self.name, identity)
            .is_some_and(|p| p.grants.can_subscribe);
        let mut refused_sends = 0u64;
        self.recheck_pending(&rooms, identity, &mut pending);
        let mut tracks = Vec::new();
        let mut sends = Vec::new();
        let mut taken = BTreeSet::new();
        for index in 0..answer.accepted.len() {
            let acc = &answer.accepted[index];
            let receives =
                acc.direction.receives() && !known_mids.is_some_and(|m| m.contains_key(&acc.mid));
            if receives {
                let kind = publishable(&acc.kind)?;
                let sid = match pending.iter().position(|p| p.kind == kind) {
                    Some(i) => pending.remove(i).sid,
                    None => {
                        let published = self.publish_on(&mut rooms, identity, kind, &acc.rids)?;
                        let sid = published_sid(&published);
                        events.extend(published);
                        sid
                    }
                };
                let source = rooms
                    .participant(&self.name, identity)
                    .and_then(|p| p.tracks.get(&sid))
                    .map_or(default_source(kind), |t| t.source);
                tracks.push(
                    self.plan_track(session_id, acc, kind, source, sid, &owner_sid, identity),
                );
            }
            if acc.direction.sends() && !acc.direction.receives() {
                if mode == OneShot::Publisher {
                    return Err(ApiError::invalid(
                        "sdp",
                        format!("publisher offer section mid={} must be sendonly", acc.mid),
                    ));
                }
                if !may_subscribe {
                    refused_sends += 1;
                    continue;
                }
                // A track whose codec the receiver accepts, whatever its order (issue 20).
                let candidates: Vec<(&String, &MTrack)> = self
                    .media
                    .tracks
                    .iter()
                    .filter(|(sid, t)| {
                        t.owner != identity
                            && track_kind(&acc.kind) == Some(t.kind)
                            && !taken.contains(*sid)
                    })
                    .collect();
                let pick = candidates
                    .iter()
                    .find(|(_, t)| acc.codecs.iter().any(|c| sdp::codec_carries(&t.codec, c)));
                let Some((track_sid, t)) = pick else {
                    if candidates.is_empty() {
                        continue;
                    }
                    return Err(sdp::NegotiationError::NoTrackInAcceptedCodec {
                        mid: acc.mid.clone(),
                        kind: acc.kind.to_string(),
                        accepted: sdp::codec_names(&acc.codecs),
                        available: sdp::codec_names(candidates.iter().map(|(_, t)| &t.codec)),
                    }
                    .into());
                };
                let (track_sid, t) = ((*track_sid).clone(), (*t).clone());
                taken.insert(track_sid.clone());
                answer.send_track_codec(index, &t.codec);
                let acc = &answer.accepted[index];
                let ssrc = random_u32();
                let rtx_ssrc = acc.rtx_pt.map(|_| random_u32());
                sends.push(SendPlan {
                    index,
                    codec: t.codec.clone(),
                    mid: acc.mid.clone(),
                    track_sid,
                    owner_sid: t.owner_sid.clone(),
                    spec: Subscribe {
                        subscription: SubscriptionId(self.app.next_dp_id()),
                        session: session_id,
                        track: t.dp,
                        ssrc,
                        rtx_ssrc: rtx_ssrc.filter(|_| acc.codec.rtx_pt.is_some()),
                        payload_type: acc.codec.pt,
                        rtx_payload_type: acc.codec.rtx_pt.filter(|_| rtx_ssrc.is_some()),
                        ext_ids: (&acc.ext_ids).into(),
                    },
                });
            }
        }
        self.app
            .refusals
            .add(Refusal::SubscribeNotGranted, refused_sends);
        Ok(OfferPlan {
            identity: identity.to_owned(),
            offer,
            offered_ufrag,
            ufrag,
            pwd,
            session,
            rooms,
            events,
            join,
            tracks,
            sends,
            pending,
        })
    }

    /// Publishes a section's track on the room copy: its events (with the new sid).
    fn publish_on(
        &self,
        rooms: &mut Rooms,
        identity: &str,
        kind: MediaKind,
        rids: &[String],
    ) -> Result<Vec<RoomEvent>, ApiError> {
        let layers = rids
            .iter()
            .map(|r| SimulcastLayer {
                rid: r.clone(),
                max_bitrate_bps: None,
            })
            .collect();
        Ok(rooms.publish(
            &self.name,
            identity,
            PublishTrack {
                kind,
                source: default_source(kind),
                layers,
                muted: false,
            },
        )?)
    }

    #[allow(clippy::too_many_arguments)]
    fn plan_track(
        &self,
        session: SessionId,
        acc: &sdp::AcceptedMedia,
        kind: MediaKind,
        source: Source,
        sid: String,
        owner_sid: &str,
        identity: &str,
    ) -> TrackPlan {
        let dp = TrackId(self.app.next_dp_id());
        let layer = |p: &sdp::SsrcPair| Layer {
            rid: None,
            ssrc: Some(p.ssrc),
            rtx_ssrc: p.rtx_ssrc.filter(|_| acc.rtx_pt.is_some()),
        };
        let layers = if !acc.rids.is_empty() {
            acc.rids
                .iter()
                .map(|r| Layer {
                    rid: Some(r.clone()),
                    ..Layer::default()
                })
                .collect()
        } else if kind == MediaKind::Audio || acc.ssrcs.len() <= 1 {
            vec![acc.ssrcs.first().map(layer).unwrap_or_default()]
        } else {
            acc.ssrcs
                .iter()
                .take(sluice_proto::MAX_LAYERS)
                .map(layer)
                .collect()
        };
        TrackPlan {
            mid: acc.mid.clone(),
            spec: AddTrack {
                session,
                track: dp,
                kind,
                codec: Codec {
                    name: acc.codec.name.clone(),
                    payload_type: acc.codec.pt,
                    clock_rate: acc.codec.clock_rate,
                    rtx_payload_type: acc.codec.rtx_pt,
                },
                layers,
                ext_ids: (&acc.ext_ids).into(),
                e2ee: false,
                source: source.into(),
                mid: Some(acc.mid.clone()),
            },
            track: MTrack {
                owner: identity.to_owned(),
                owner_sid: owner_sid.to_owned(),
                dp,
                kind,
                codec: acc.codec.clone(),
            },
            sid,
        }
    }
}

/// The sid a `publish` gave its track.
fn published_sid(events: &[RoomEvent]) -> String {
    events
        .iter()
        .find_map(|e| match &e.kind {
            RoomEventKind::TrackPublished { track, .. } => Some(track.id.clone()),
            _ => None,
        })
        .expect("publish emits TrackPublished")
}
