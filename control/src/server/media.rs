//! Media orchestration: turns offers and answers into dataplane commands, and keeps the
//! control-side record of every session, track and subscription (the source of truth for a
//! resync, `docs/control-socket.md` "Disconnect and resync").
//!
//! Each participant has up to two PeerConnections (docs/protocol.md explains why): the
//! *publisher* (client offers, `sdp::answer`, `CreateSession` + `AddTrack` per received
//! section) and the *subscriber* (we offer with `sdp::offer_for_subscriber`, the client
//! answers, `CreateSession` once + `Subscribe` per track). WHIP, WHEP and sidecar sessions use
//! the one-shot path [`Media::answer_offer`], which does both directions in a single answer.
//!
//! All media state sits behind one async lock, so operations never interleave; each is a
//! handful of loopback requests to the dataplane.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde_json::json;
use sluice_proto::{
    AddTrack, Candidate as DpCandidate, Codec as DpCodec, Command, CreateSession, DtlsRole,
    IceParams, Layer, MediaKind, Quality, ReplyOk, SessionId, Subscribe, SubscriptionId, TrackId,
    TransportMode,
};

use super::adopt::SavedTrack;
use super::error::ApiError;
use super::hub::ClientMsg;
use super::translate::{sdp_candidates, track_kind};
use super::App;
use crate::auth::Source;
use crate::link::LinkError;
use crate::room::{PublishTrack, RoomEventKind, SimulcastLayer};
use crate::sdp::{
    self, accept_answer, offer_for_subscriber, Direction, ExtIds, Fingerprint, LocalParams, Msid,
    NegotiatedCodec, OutgoingTrack, SessionDescription, SsrcAttr,
};

/// (room, identity)
pub(crate) type PeerKey = (String, String);

/// All media state of the node.
#[derive(Debug, Default)]
pub(crate) struct Media {
    next_id: u64,
    pub(crate) peers: HashMap<PeerKey, Peer>,
    /// Published tracks by room track sid (`TR_n`).
    pub(crate) tracks: BTreeMap<String, MTrack>,
    /// What the dataplane should hold, by id (for resync).
    pub(crate) sessions: BTreeMap<SessionId, CreateSession>,
    pub(crate) dp_tracks: BTreeMap<TrackId, AddTrack>,
    pub(crate) subs: BTreeMap<SubscriptionId, Subscribe>,
}

/// One participant's media.
#[derive(Debug, Default)]
pub(crate) struct Peer {
    pub(crate) participant_sid: String,
    /// Gets `offer {pc: "subscriber"}` messages (a WebSocket client).
    pub(crate) signaling: bool,
    pub(crate) publisher: Option<Pc>,
    pub(crate) subscriber: Option<SubPc>,
    /// `publish` requests waiting for the offer that carries them: (cid, track sid, kind).
    pub(crate) pending: Vec<(String, String, MediaKind)>,
    /// Publisher mid → track sid.
    pub(crate) pub_mids: BTreeMap<String, String>,
    /// Tracks the client turned off with `subscribe {subscribe: false}`.
    pub(crate) unsubscribed: BTreeSet<String>,
    /// `layer` requests by track sid: (max spatial, max temporal). Kept here because a client
    /// asks as soon as its `ontrack` fires, before its answer creates the subscription.
    layer_caps: BTreeMap<String, (u8, u8)>,
    /// One-shot sessions (WHEP/sidecar) own their subscriptions directly.
    pub(crate) oneshot_subs: Vec<SubscriptionId>,
}

#[derive(Debug, Clone)]
pub(crate) struct Pc {
    pub(crate) session: SessionId,
    /// What the dataplane answered `CreateSession` with: the session's own host candidates.
    pub(crate) candidates: Vec<DpCandidate>,
    pub(crate) ufrag: String,
    pub(crate) pwd: String,
    pub(crate) remote_ufrag: String,
}

/// The server-offered PeerConnection.
#[derive(Debug, Default)]
pub(crate) struct SubPc {
    pub(crate) session: Option<SessionId>,
    /// The session's candidates and shard, from `SessionCreated`.
    candidates: Vec<DpCandidate>,
    worker: Option<u16>,
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
    subscribed: BTreeMap<String, SubscriptionId>,
    ice_restart: bool,
}

#[derive(Debug, Clone)]
struct Slot {
    out: OutgoingTrack,
    track: Option<String>,
}

/// A published track.
#[derive(Debug, Clone)]
pub(crate) struct MTrack {
    pub(crate) room: String,
    pub(crate) owner: String,
    pub(crate) owner_sid: String,
    pub(crate) dp: TrackId,
    pub(crate) kind: MediaKind,
    pub(crate) codec: NegotiatedCodec,
}

/// Which side of a one-shot answer a caller wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OneShot {
    /// WS publisher PC: only receive; sendonly-by-us sections are refused.
    Publisher,
    /// WHIP/sidecar/WHEP: receive what the client sends and send the room's tracks to sections
    /// the client only receives on.
    Both,
}

impl App {
    /// Our side of a session's SDP: the dataplane's DTLS fingerprint and the candidates it gave
    /// the session, or `rejected: dataplane unavailable`.
    fn local_params(
        &self,
        ufrag: &str,
        pwd: &str,
        candidates: &[DpCandidate],
    ) -> Result<LocalParams, ApiError> {
        let conn = self
            .link
            .as_ref()
            .and_then(|l| l.current())
            .ok_or_else(|| ApiError::from(LinkError::Unavailable))?;
        let fp = conn
            .hello
            .fingerprint
            .as_deref()
            // "<hash> <hex>"; the last token is the value, so a doubled hash prefix from the
            // dataplane ("sha-256 sha-256 AB:..") still yields a valid a=fingerprint.
            .and_then(|f| {
                let mut tokens = f.split_whitespace();
                let hash = tokens.next()?;
                let value = tokens.last()?;
                Some(Fingerprint {
                    hash: hash.to_ascii_lowercase(),
                    value: value.to_owned(),
                })
            })
            .ok_or_else(|| ApiError::rejected("dataplane announced no DTLS fingerprint"))?;
        let candidates = sdp_candidates(candidates, self.http_ip);
        Ok(LocalParams::new(
            ufrag,
            pwd,
            fp,
            candidates,
            u64::from(random_u32()),
        ))
    }

    /// `CreateSession`: the shard it landed on and its candidates.
    async fn create_session(
        &self,
        spec: CreateSession,
    ) -> Result<(u16, Vec<DpCandidate>), ApiError> {
        match self.dp(Command::CreateSession(spec)).await? {
            ReplyOk::SessionCreated {
                worker,
                local_candidates,
            } => Ok((worker, local_candidates)),
            other => Err(ApiError::new(
                "internal",
                format!("dataplane answered create_session with {other:?}"),
            )),
        }
    }

    pub(crate) async fn dp(&self, command: Command) -> Result<ReplyOk, ApiError> {
        let link = self
            .link
            .as_ref()
            .ok_or_else(|| ApiError::from(LinkError::Unavailable))?;
        Ok(link.request(command).await?)
    }

    /// Registers a participant's media record (on join).
    pub(crate) async fn media_join(&self, key: &PeerKey, participant_sid: &str, signaling: bool) {
        let old = {
            let mut media = self.media.lock().await;
            media.peers.insert(
                key.clone(),
                Peer {
                    participant_sid: participant_sid.to_owned(),
                    signaling,
                    ..Peer::default()
                },
            )
        };
        if let Some(old) = old {
            self.close_peer_sessions(old).await;
        }
    }

    /// A `publish` request was accepted: remember it for the next publisher offer.
    pub(crate) async fn media_pending(&self, key: &PeerKey, cid: &str, sid: &str, kind: MediaKind) {
        let mut media = self.media.lock().await;
        if let Some(p) = media.peers.get_mut(key) {
            p.pending.push((cid.to_owned(), sid.to_owned(), kind));
        }
    }

    /// Answers a client offer. `Publisher`: the WS publisher PC. `Both`: WHIP/WHEP/sidecar.
    pub(crate) async fn answer_offer(
        &self,
        key: &PeerKey,
        offer_text: &str,
        mode: OneShot,
    ) -> Result<(SessionId, String), ApiError> {
        let offer = sdp::parse(offer_text)?;
        let mut media = self.media.lock().await;
        let media = &mut *media;
        let peer = media
            .peers
            .get(key)
            .ok_or_else(|| ApiError::not_found(format!("participant {:?} not joined", key.1)))?;
        let offered_ufrag = offer
            .media
            .iter()
            .find_map(|m| m.ice_ufrag.clone())
            .or_else(|| offer.ice_ufrag.clone())
            .unwrap_or_default();
        let existing = peer.publisher.clone();
        let restart = existing
            .as_ref()
            .is_some_and(|pc| pc.remote_ufrag != offered_ufrag);
        let (ufrag, pwd) = match &existing {
            Some(pc) if !restart => (pc.ufrag.clone(), pc.pwd.clone()),
            _ => ice_creds(),
        };
        // A new session's candidates are known once the dataplane created it: decide on an
        // answer without them, and write the final one after `CreateSession`.
        let known: &[DpCandidate] = existing.as_ref().map_or(&[], |pc| &pc.candidates);
        let local = self.local_params(&ufrag, &pwd, known)?;
        let mut answer = sdp::answer(&offer, &local)?;

        // Decide every section before touching the dataplane, so a refusal changes nothing.
        let mut new_pub = Vec::new();
        let mut send_slots = Vec::new();
        let mut taken = BTreeSet::new();
        for (i, acc) in answer.accepted.iter().enumerate() {
            if acc.direction.receives() && !peer.pub_mids.contains_key(&acc.mid) {
                new_pub.push(i);
            }
            if acc.direction.sends() && !acc.direction.receives() {
                if mode == OneShot::Publisher {
                    return Err(ApiError::invalid(
                        "sdp",
                        format!("publisher offer section mid={} must be sendonly", acc.mid),
                    ));
                }
                // A track the receiver accepts the codec of, whatever its order (issue 20).
                let candidates: Vec<(&String, &MTrack)> = media
                    .tracks
                    .iter()
                    .filter(|(sid, t)| {
                        t.room == key.0
                            && t.owner != key.1
                            && track_kind(&acc.kind) == Some(t.kind)
                            && !taken.contains(*sid)
                    })
                    .collect();
                let pick = candidates
                    .iter()
                    .find(|(_, t)| acc.codecs.iter().any(|c| sdp::codec_carries(&t.codec, c)))
                    .map(|(sid, t)| ((*sid).clone(), t.codec.clone()));
                if pick.is_none() && !candidates.is_empty() {
                    return Err(sdp::NegotiationError::NoTrackInAcceptedCodec {
                        mid: acc.mid.clone(),
                        kind: acc.kind.to_string(),
                        accepted: sdp::codec_names(&acc.codecs),
                        available: sdp::codec_names(candidates.iter().map(|(_, t)| &t.codec)),
                    }
                    .into());
                }
                if let Some((sid, _)) = &pick {
                    taken.insert(sid.clone());
                }
                send_slots.push((i, pick));
            }
        }
        // Permission checks and track sids for newly received sections.
        let mut pending = peer.pending.clone();
        let mut assigned = Vec::new();
        for &i in &new_pub {
            let acc = &answer.accepted[i];
            let kind = publishable(&acc.kind)?;
            if let Some(pos) = pending.iter().position(|(_, _, k)| *k == kind) {
                let (_, sid, _) = pending.remove(pos);
                assigned.push((i, sid, None));
                continue;
            }
            let source = match kind {
                MediaKind::Audio => Source::Microphone,
                MediaKind::Video => Source::Camera,
            };
            let layers = acc
                .rids
                .iter()
                .map(|r| SimulcastLayer {
                    rid: r.clone(),
                    max_bitrate_bps: None,
                })
                .collect();
            let events = self.rooms.lock().expect("rooms lock").publish(
                &key.0,
                &key.1,
                PublishTrack {
                    kind,
                    source,
                    layers,
                    muted: false,
                },
            )?;
            let sid = events
                .iter()
                .find_map(|e| match &e.kind {
                    RoomEventKind::TrackPublished { track, .. } => Some(track.id.clone()),
                    _ => None,
                })
                .expect("publish emits TrackPublished");
            assigned.push((i, sid, Some(events)));
        }

        // Session.
        let (session, candidates) = match &existing {
            Some(pc) => (pc.session, pc.candidates.clone()),
            None => {
                let id = SessionId(next_id(&mut media.next_id));
                let role = self.participant_tier(key);
                let spec = CreateSession {
                    session: id,
                    ice: IceParams {
                        ufrag: ufrag.clone(),
                        pwd: pwd.clone(),
                        remote_ufrag: Some(answer.remote.ice_ufrag.clone()),
                        remote_pwd: Some(answer.remote.ice_pwd.clone()),
                    },
                    remote_fingerprint: answer.remote.fingerprints.first().map(|f| f.to_string()),
                    dtls_role: answer.remote.dtls_role.into(),
                    worker_hint: None,
                    mode: TransportMode::Webrtc {},
                    data: None,
                    quality: role,
                };
                let (_, candidates) = self.create_session(spec.clone()).await?;
                media.sessions.insert(id, spec);
                let local = self.local_params(&ufrag, &pwd, &candidates)?;
                answer = sdp::answer(&offer, &local)?;
                (id, candidates)
            }
        };
        if restart {
            self.dp(Command::IceRestart {
                session,
                ufrag: ufrag.clone(),
                pwd: pwd.clone(),
                remote_ufrag: Some(answer.remote.ice_ufrag.clone()),
                remote_pwd: Some(answer.remote.ice_pwd.clone()),
            })
            .await?;
            if let Some(spec) = media.sessions.get_mut(&session) {
                spec.ice.ufrag = ufrag.clone();
                spec.ice.pwd = pwd.clone();
                spec.ice.remote_ufrag = Some(answer.remote.ice_ufrag.clone());
                spec.ice.remote_pwd = Some(answer.remote.ice_pwd.clone());
            }
        }

        // Tracks.
        let owner_sid = peer.participant_sid.clone();
        let mut published_events = Vec::new();
        let mut added = Vec::new();
        for (i, sid, events) in assigned {
            let acc = &answer.accepted[i];
            let dp = TrackId(next_id(&mut media.next_id));
            let layers = if !acc.rids.is_empty() {
                acc.rids
                    .iter()
                    .map(|r| Layer {
                        rid: Some(r.clone()),
                        ..Layer::default()
                    })
                    .collect()
            } else if acc.kind == sdp::MediaKind::Audio || acc.ssrcs.len() <= 1 {
                vec![acc
                    .ssrcs
                    .first()
                    .map(|p| Layer {
                        rid: None,
                        ssrc: Some(p.ssrc),
                        rtx_ssrc: p.rtx_ssrc.filter(|_| acc.rtx_pt.is_some()),
                    })
                    .unwrap_or_default()]
            } else {
                acc.ssrcs
                    .iter()
                    .take(sluice_proto::MAX_LAYERS)
                    .map(|p| Layer {
                        rid: None,
                        ssrc: Some(p.ssrc),
                        rtx_ssrc: p.rtx_ssrc.filter(|_| acc.rtx_pt.is_some()),
                    })
                    .collect()
            };
            let kind = publishable(&acc.kind)?;
            let source = self.track_source(key, &sid).unwrap_or(match kind {
                MediaKind::Audio => Source::Microphone,
                MediaKind::Video => Source::Camera,
            });
            let spec = AddTrack {
                session,
                track: dp,
                kind,
                codec: DpCodec {
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
            };
            self.dp(Command::AddTrack(spec.clone())).await?;
            media.dp_tracks.insert(dp, spec);
            let track = MTrack {
                room: key.0.clone(),
                owner: key.1.clone(),
                owner_sid: owner_sid.clone(),
                dp,
                kind,
                codec: acc.codec.clone(),
            };
            self.track_index
                .lock()
                .expect("index lock")
                .insert(sid.clone(), SavedTrack::of(&track));
            media.tracks.insert(sid.clone(), track);
            added.push((acc.mid.clone(), sid));
            if let Some(events) = events {
                published_events.extend(events);
            }
        }

        // Sections the client receives on (WHEP/sidecar): our SSRCs into the answer.
        let mut new_subs = Vec::new();
        for (i, pick) in send_slots {
            let Some((track_sid, track_codec)) = pick else {
                continue;
            };
            answer.send_track_codec(i, &track_codec);
            let acc = &answer.accepted[i];
            let t = &media.tracks[&track_sid];
            let ssrc = random_u32();
            let rtx_ssrc = acc.rtx_pt.map(|_| random_u32());
            if let Some(section) = answer
                .sdp
                .media
                .iter_mut()
                .find(|m| m.mid.as_deref() == Some(acc.mid.as_str()))
            {
                let msid = format!("{} {}", t.owner_sid, track_sid);
                for s in std::iter::once(ssrc).chain(rtx_ssrc) {
                    section.ssrcs.push(SsrcAttr {
                        ssrc: s,
                        attr: "cname".into(),
                        value: Some(format!("sluice-{}", t.owner_sid)),
                    });
                    section.ssrcs.push(SsrcAttr {
                        ssrc: s,
                        attr: "msid".into(),
                        value: Some(msid.clone()),
                    });
                }
                section.msids.push(Msid {
                    stream_id: t.owner_sid.clone(),
                    track_id: Some(track_sid.clone()),
                });
            }
            let sub = SubscriptionId(next_id(&mut media.next_id));
            new_subs.push(Subscribe {
                subscription: sub,
                session,
                track: t.dp,
                ssrc,
                rtx_ssrc: rtx_ssrc.filter(|_| acc.codec.rtx_pt.is_some()),
                payload_type: acc.codec.pt,
                rtx_payload_type: acc.codec.rtx_pt.filter(|_| rtx_ssrc.is_some()),
                ext_ids: (&acc.ext_ids).into(),
            });
        }
        for spec in new_subs {
            self.dp(Command::Subscribe(spec.clone())).await?;
            let id = spec.subscription;
            media.subs.insert(id, spec);
            if let Some(p) = media.peers.get_mut(key) {
                p.oneshot_subs.push(id);
            }
        }

        let peer = media.peers.get_mut(key).expect("checked above");
        peer.pending = pending;
        for (mid, sid) in added {
            peer.pub_mids.insert(mid, sid);
        }
        peer.publisher = Some(Pc {
            session,
            candidates,
            ufrag,
            pwd,
            remote_ufrag: offered_ufrag,
        });
        self.emit(published_events);
        self.refresh_room(media, &key.0).await;
        self.mark_dirty();
        Ok((session, answer.sdp.to_string()))
    }

    fn participant_tier(&self, key: &PeerKey) -> Quality {
        let rooms = self.rooms.lock().expect("rooms lock");
        let role = rooms
            .participant(&key.0, &key.1)
            .map_or(crate::auth::Role::Viewer, |p| p.role);
        let tier = rooms.tier(role);
        Quality {
            max_bitrate_bps: tier.max_bitrate_bps,
            priority: tier.priority,
        }
    }

    fn track_source(&self, key: &PeerKey, sid: &str) -> Option<Source> {
        let rooms = self.rooms.lock().expect("rooms lock");
        rooms
            .participant(&key.0, &key.1)
            .and_then(|p| p.tracks.get(sid))
            .map(|t| t.source)
    }

    /// Re-offers to every signaling subscriber of `room` whose wanted tracks changed.
    pub(crate) async fn refresh_room(&self, media: &mut Media, room: &str) {
        let keys: Vec<PeerKey> = media
            .peers
            .iter()
            .filter(|(k, p)| k.0 == room && p.signaling)
            .map(|(k, _)| k.clone())
            .collect();
        for key in keys {
            if let Err(e) = self.offer_subscriber(media, &key, false).await {
                tracing::debug!(room, identity = %key.1, error = %e, "no subscriber offer");
            }
        }
    }

    /// Builds and sends a subscriber offer if the wanted set changed (or `force`, for an ICE
    /// restart).
    async fn offer_subscriber(
        &self,
        media: &mut Media,
        key: &PeerKey,
        force: bool,
    ) -> Result<(), ApiError> {
        let can_subscribe = self
            .rooms
            .lock()
            .expect("rooms lock")
            .participant(&key.0, &key.1)
            .is_some_and(|p| p.grants.can_subscribe);
        let peer = media
            .peers
            .get(key)
            .ok_or_else(|| ApiError::not_found("peer"))?;
        let wanted: BTreeSet<String> = if can_subscribe {
            media
                .tracks
                .iter()
                .filter(|(sid, t)| {
                    t.room == key.0 && t.owner != key.1 && !peer.unsubscribed.contains(*sid)
                })
                .map(|(sid, _)| sid.clone())
                .collect()
        } else {
            BTreeSet::new()
        };
        let sub = media
            .peers
            .get_mut(key)
            .expect("checked above")
            .subscriber
            .get_or_insert_with(|| {
                let (ufrag, pwd) = ice_creds();
                SubPc {
                    ufrag,
                    pwd,
                    ..SubPc::default()
                }
            });
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
            self.create_subscriber_session(media, key).await?;
        }
        let sub = media
            .peers
            .get_mut(key)
            .and_then(|p| p.subscriber.as_mut())
            .expect("created above");
        // Deactivate slots whose track is gone; fill new tracks into free slots of their kind.
        for slot in &mut sub.slots {
            if slot.track.as_ref().is_some_and(|t| !wanted.contains(t)) {
                slot.track = None;
            }
        }
        for sid in wanted.difference(&current) {
            let t = &media.tracks[sid];
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
        let mut local = self.local_params(&sub.ufrag, &sub.pwd, &sub.candidates)?;
        local.session_version = sub.version;
        let outs: Vec<OutgoingTrack> = sub.slots.iter().map(|s| s.out.clone()).collect();
        let mut offer = offer_for_subscriber(&local, &outs);
        for (slot, section) in sub.slots.iter().zip(offer.media.iter_mut()) {
            if slot.track.is_none() {
                section.direction = Direction::Inactive;
                section.ssrcs.clear();
                section.ssrc_groups.clear();
                section.msids.clear();
            }
        }
        let text = offer.to_string();
        sub.pending_offer = Some(offer);
        self.hub.send_to(
            &key.0,
            &key.1,
            ClientMsg::Json(json!({"type": "offer", "pc": "subscriber", "sdp": text})),
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
    async fn create_subscriber_session(
        &self,
        media: &mut Media,
        key: &PeerKey,
    ) -> Result<(), ApiError> {
        let Some(sub) = media.peers.get(key).and_then(|p| p.subscriber.as_ref()) else {
            return Err(ApiError::not_found("peer"));
        };
        let id = SessionId(next_id(&mut media.next_id));
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
            worker_hint: None,
            mode: TransportMode::Webrtc {},
            data: None,
            quality: self.participant_tier(key),
        };
        let (worker, candidates) = self.create_session(spec.clone()).await?;
        media.sessions.insert(id, spec);
        if let Some(sub) = media.peers.get_mut(key).and_then(|p| p.subscriber.as_mut()) {
            sub.session = Some(id);
            sub.remote_ufrag = None;
            sub.candidates = candidates;
            sub.worker = Some(worker);
        }
        Ok(())
    }

    /// The client's answer to our subscriber offer.
    pub(crate) async fn subscriber_answer(
        &self,
        key: &PeerKey,
        text: &str,
    ) -> Result<(), ApiError> {
        let answer_sdp = sdp::parse(text)?;
        let mut guard = self.media.lock().await;
        let media = &mut *guard;
        let sub = media
            .peers
            .get_mut(key)
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
        let role = DtlsRole::from(remote.dtls_role);
        if let Some(s) = sub.session {
            if media
                .sessions
                .get(&s)
                .is_some_and(|spec| spec.dtls_role != role)
            {
                // Created with the offer as DTLS server; the answer made us the client.
                let _ = self.dp(Command::CloseSession { session: s }).await;
                media.sessions.remove(&s);
                if let Some(sub) = media.peers.get_mut(key).and_then(|p| p.subscriber.as_mut()) {
                    sub.session = None;
                    sub.ice_restart = false;
                }
            }
        }
        let sub = media
            .peers
            .get_mut(key)
            .and_then(|p| p.subscriber.as_mut())
            .expect("checked above");
        let session = match sub.session {
            Some(s) => {
                if sub.ice_restart {
                    sub.ice_restart = false;
                    let (u, p) = (sub.ufrag.clone(), sub.pwd.clone());
                    self.dp(Command::IceRestart {
                        session: s,
                        ufrag: u.clone(),
                        pwd: p.clone(),
                        remote_ufrag: Some(remote.ice_ufrag.clone()),
                        remote_pwd: Some(remote.ice_pwd.clone()),
                    })
                    .await?;
                    if let Some(spec) = media.sessions.get_mut(&s) {
                        spec.ice.ufrag = u;
                        spec.ice.pwd = p;
                        spec.ice.remote_ufrag = Some(remote.ice_ufrag.clone());
                        spec.ice.remote_pwd = Some(remote.ice_pwd.clone());
                    }
                } else if sub.remote_ufrag.as_deref() != Some(remote.ice_ufrag.as_str()) {
                    self.dp(Command::SetRemote {
                        session: s,
                        remote_ufrag: remote.ice_ufrag.clone(),
                        remote_pwd: remote.ice_pwd.clone(),
                        remote_fingerprint: remote.fingerprints.first().map(|f| f.to_string()),
                    })
                    .await?;
                    if let Some(spec) = media.sessions.get_mut(&s) {
                        spec.ice.remote_ufrag = Some(remote.ice_ufrag.clone());
                        spec.ice.remote_pwd = Some(remote.ice_pwd.clone());
                        if let Some(fp) = remote.fingerprints.first() {
                            spec.remote_fingerprint = Some(fp.to_string());
                        }
                    }
                }
                s
            }
            None => {
                let id = SessionId(next_id(&mut media.next_id));
                let sub = media
                    .peers
                    .get(key)
                    .and_then(|p| p.subscriber.as_ref())
                    .expect("checked above");
                let spec = CreateSession {
                    session: id,
                    ice: IceParams {
                        ufrag: sub.ufrag.clone(),
                        pwd: sub.pwd.clone(),
                        remote_ufrag: Some(remote.ice_ufrag.clone()),
                        remote_pwd: Some(remote.ice_pwd.clone()),
                    },
                    remote_fingerprint: remote.fingerprints.first().map(|f| f.to_string()),
                    dtls_role: role,
                    // The shard the offered candidates name.
                    worker_hint: sub.worker,
                    mode: TransportMode::Webrtc {},
                    data: None,
                    quality: self.participant_tier(key),
                };
                let offered = sub.candidates.clone();
                let (worker, candidates) = self.create_session(spec.clone()).await?;
                if !offered.is_empty() && candidates != offered {
                    tracing::warn!(identity = %key.1, "subscriber session moved shards: the offered candidates no longer match");
                }
                media.sessions.insert(id, spec);
                if let Some(sub) = media.peers.get_mut(key).and_then(|p| p.subscriber.as_mut()) {
                    sub.candidates = candidates;
                    sub.worker = Some(worker);
                }
                id
            }
        };
        let sub = media
            .peers
            .get_mut(key)
            .and_then(|p| p.subscriber.as_mut())
            .expect("checked above");
        sub.session = Some(session);
        sub.remote_ufrag = Some(remote.ice_ufrag.clone());
        // Diff: subscribe what the answer accepted, unsubscribe what is gone.
        let mut want: BTreeMap<String, Subscribe> = BTreeMap::new();
        for slot in &sub.slots {
            let Some(track_sid) = &slot.track else {
                continue;
            };
            let Some(acc) = accepted.accepted.iter().find(|a| a.mid == slot.out.mid) else {
                continue;
            };
            let Some(t) = media.tracks.get(track_sid) else {
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
            .collect();
        let stale = std::mem::take(&mut sub.stale);
        for (t, id) in gone {
            match self.dp(Command::Unsubscribe { subscription: id }).await {
                Ok(_)
                | Err(ApiError {
                    code: "internal", ..
                }) => {}
                Err(e) => return Err(e),
            }
            media.subs.remove(&id);
            if let Some(sub) = media.peers.get_mut(key).and_then(|p| p.subscriber.as_mut()) {
                sub.subscribed.remove(&t);
            }
        }
        for (t, mut spec) in fresh {
            spec.subscription = SubscriptionId(next_id(&mut media.next_id));
            self.dp(Command::Subscribe(spec.clone())).await?;
            let id = spec.subscription;
            media.subs.insert(id, spec);
            let Some(peer) = media.peers.get_mut(key) else {
                continue;
            };
            let cap = peer.layer_caps.get(&t).copied();
            if let Some(sub) = peer.subscriber.as_mut() {
                sub.subscribed.insert(t, id);
            }
            if let Some((max_spatial, max_temporal)) = cap {
                self.dp(Command::SetLayerCap {
                    subscription: id,
                    max_spatial,
                    max_temporal,
                })
                .await?;
            }
        }
        if stale {
            let _ = self.offer_subscriber(media, key, false).await;
        }
        self.mark_dirty();
        Ok(())
    }

    /// `resume`: a fresh subscriber offer with new ICE credentials.
    pub(crate) async fn resume(&self, key: &PeerKey) -> Result<(), ApiError> {
        let mut media = self.media.lock().await;
        self.offer_subscriber(&mut media, key, true).await
    }

    /// `subscribe {track_sid, subscribe}`.
    pub(crate) async fn set_subscribed(
        &self,
        key: &PeerKey,
        track_sid: &str,
        on: bool,
    ) -> Result<(), ApiError> {
        let mut media = self.media.lock().await;
        if !media.tracks.contains_key(track_sid) {
            return Err(ApiError::not_found(format!("track {track_sid:?}")).with_field("track_sid"));
        }
        let peer = media
            .peers
            .get_mut(key)
            .ok_or_else(|| ApiError::not_found("peer"))?;
        if on {
            peer.unsubscribed.remove(track_sid);
        } else {
            peer.unsubscribed.insert(track_sid.to_owned());
        }
        self.offer_subscriber(&mut media, key, false).await
    }

    /// Mute or unmute a published track in the dataplane.
    pub(crate) async fn set_muted(&self, track_sid: &str, muted: bool) {
        let dp = self.media.lock().await.tracks.get(track_sid).map(|t| t.dp);
        if let Some(track) = dp {
            if let Err(e) = self.dp(Command::SetMuted { track, muted }).await {
                tracing::warn!(track_sid, error = %e, "set_muted failed");
            }
        }
    }

    /// Layer preference for every subscription of `key` to `track_sid`.
    pub(crate) async fn set_layer(
        &self,
        key: &PeerKey,
        track_sid: &str,
        max_spatial: u8,
        max_temporal: u8,
    ) -> Result<(), ApiError> {
        let sub = {
            let mut media = self.media.lock().await;
            let known = media
                .tracks
                .get(track_sid)
                .is_some_and(|t| t.room == key.0 && t.owner != key.1);
            let Some(peer) = media.peers.get_mut(key).filter(|_| known) else {
                return Err(
                    ApiError::not_found(format!("no track {track_sid:?}")).with_field("track_sid")
                );
            };
            peer.layer_caps
                .insert(track_sid.to_owned(), (max_spatial, max_temporal));
            peer.subscriber
                .as_ref()
                .and_then(|s| s.subscribed.get(track_sid).copied())
        };
        // Not subscribed yet (the answer is still on its way): applied when it is.
        let Some(subscription) = sub else {
            return Ok(());
        };
        self.dp(Command::SetLayerCap {
            subscription,
            max_spatial,
            max_temporal,
        })
        .await?;
        Ok(())
    }

    /// Tracks that went away in the room state (unpublish, leave, grants): remove them from
    /// the dataplane and re-offer.
    pub(crate) async fn sync_room_tracks(&self, room: &str) {
        let live: BTreeSet<String> = {
            let rooms = self.rooms.lock().expect("rooms lock");
            rooms
                .room(room)
                .map(|r| {
                    r.participants
                        .values()
                        .flat_map(|p| p.tracks.keys().cloned())
                        .collect()
                })
                .unwrap_or_default()
        };
        let mut media = self.media.lock().await;
        let dead: Vec<String> = media
            .tracks
            .iter()
            .filter(|(sid, t)| t.room == room && !live.contains(*sid))
            .map(|(sid, _)| sid.clone())
            .collect();
        for sid in dead {
            let t = media.tracks.remove(&sid).expect("listed above");
            self.track_index.lock().expect("index lock").remove(&sid);
            media.dp_tracks.remove(&t.dp);
            media.subs.retain(|_, s| s.track != t.dp);
            for p in media.peers.values_mut() {
                p.pub_mids.retain(|_, s| *s != sid);
                p.layer_caps.remove(&sid);
                if let Some(sub) = p.subscriber.as_mut() {
                    sub.subscribed.remove(&sid);
                }
            }
            if let Err(e) = self.dp(Command::RemoveTrack { track: t.dp }).await {
                tracing::debug!(track = %t.dp, error = %e, "remove_track");
            }
        }
        self.refresh_room(&mut media, room).await;
        self.mark_dirty();
    }

    /// The participant is gone: close its sessions.
    pub(crate) async fn media_leave(&self, key: &PeerKey) {
        let peer = self.media.lock().await.peers.remove(key);
        if let Some(peer) = peer {
            self.close_peer_sessions(peer).await;
        }
        self.hybrid_leave(key).await;
        self.sync_room_tracks(&key.0).await;
    }

    pub(crate) async fn close_peer_sessions(&self, peer: Peer) {
        let sessions: Vec<SessionId> = peer
            .publisher
            .map(|p| p.session)
            .into_iter()
            .chain(peer.subscriber.and_then(|s| s.session))
            .collect();
        let mut media = self.media.lock().await;
        for s in sessions {
            media.sessions.remove(&s);
            media.subs.retain(|_, sub| sub.session != s);
            let dead: Vec<TrackId> = media
                .dp_tracks
                .iter()
                .filter(|(_, t)| t.session == s)
                .map(|(id, _)| *id)
                .collect();
            for id in dead {
                media.dp_tracks.remove(&id);
            }
            if let Err(e) = self.dp(Command::CloseSession { session: s }).await {
                tracing::debug!(session = %s, error = %e, "close_session");
            }
        }
    }

    /// Dataplane (re)connected: make it hold exactly what we hold (docs/control-socket.md).
    /// `adopt`: this control process just started and holds no media state (it is not
    /// persisted), so sessions it does not know belong to calls that outlived a control
    /// restart: leave them forwarding instead of closing them as orphans.
    pub(crate) async fn resync(&self, adopt: bool) -> Result<(), ApiError> {
        let mut media = self.media.lock().await;
        let mut have_sessions = BTreeMap::new();
        let mut after = None;
        loop {
            match self.dp(Command::ListSessions { after }).await? {
                ReplyOk::Sessions { sessions, next } => {
                    have_sessions.extend(sessions.into_iter().map(|s| (s.spec.session, s.spec)));
                    if next.is_none() {
                        break;
                    }
                    after = next;
                }
                _ => return Err(ApiError::new("internal", "unexpected list reply")),
            }
        }
        let mut have_tracks = BTreeMap::new();
        let mut after = None;
        loop {
            match self.dp(Command::ListTracks { after }).await? {
                ReplyOk::Tracks { tracks, next } => {
                    have_tracks.extend(tracks.into_iter().map(|t| (t.spec.track, t.spec)));
                    if next.is_none() {
                        break;
                    }
                    after = next;
                }
                _ => return Err(ApiError::new("internal", "unexpected list reply")),
            }
        }
        let mut have_subs = BTreeSet::new();
        let mut after = None;
        loop {
            match self.dp(Command::ListSubscriptions { after }).await? {
                ReplyOk::Subscriptions {
                    subscriptions,
                    next,
                } => {
                    have_subs.extend(subscriptions.into_iter().map(|s| s.spec.subscription));
                    if next.is_none() {
                        break;
                    }
                    after = next;
                }
                _ => return Err(ApiError::new("internal", "unexpected list reply")),
            }
        }
        // Ids are ours and must never be reused: continue above anything the dataplane holds.
        let highest = [
            have_sessions.keys().map(|i| i.0).max(),
            have_tracks.keys().map(|i| i.0).max(),
            have_subs.iter().map(|i| i.0).max(),
        ]
        .into_iter()
        .flatten()
        .max()
        .unwrap_or(0);
        media.next_id = media.next_id.max(highest);
        if adopt {
            // Someone may have joined before the link came back; they were offered nothing.
            for room in self.adopt_tracks(&mut media, &have_sessions, &have_tracks) {
                self.refresh_room(&mut media, &room).await;
            }
        }
        let mut recreated = 0usize;
        for (id, spec) in &media.sessions {
            if !have_sessions.contains_key(id) {
                self.dp(Command::CreateSession(spec.clone())).await?;
                recreated += 1;
            }
        }
        for (id, spec) in &media.dp_tracks {
            if !have_tracks.contains_key(id) {
                self.dp(Command::AddTrack(spec.clone())).await?;
                recreated += 1;
            }
        }
        for (id, spec) in &media.subs {
            if !have_subs.contains(id) {
                self.dp(Command::Subscribe(spec.clone())).await?;
                recreated += 1;
            }
        }
        let mut orphans = 0usize;
        let known: BTreeSet<SessionId> = media.sessions.keys().copied().collect();
        for id in have_sessions.keys().filter(|id| !known.contains(*id)) {
            if !adopt {
                let _ = self.dp(Command::CloseSession { session: *id }).await;
            }
            orphans += 1;
        }
        tracing::info!(recreated, orphans, adopted = adopt, "dataplane resynced");
        Ok(())
    }

    /// Takes back the published tracks of calls that outlived a control restart: each entry of
    /// the saved index whose track the dataplane still holds, and whose room track still
    /// exists, becomes a media track again, with its dataplane spec and its publisher session,
    /// so participants who join now are offered it (and a later dataplane restart recreates
    /// it). Entries that match nothing are dropped from the index. Returns the rooms that got
    /// tracks back.
    fn adopt_tracks(
        &self,
        media: &mut Media,
        have_sessions: &BTreeMap<SessionId, CreateSession>,
        have_tracks: &BTreeMap<TrackId, AddTrack>,
    ) -> BTreeSet<String> {
        let live: BTreeSet<(String, String)> = {
            let rooms = self.rooms.lock().expect("rooms lock");
            rooms
                .state()
                .rooms
                .iter()
                .flat_map(|(name, r)| {
                    r.participants
                        .values()
                        .flat_map(move |p| p.tracks.keys().map(move |t| (name.clone(), t.clone())))
                })
                .collect()
        };
        let mut index = self.track_index.lock().expect("index lock");
        let mut adopted = 0usize;
        let mut rooms = BTreeSet::new();
        index.retain(|sid, saved| {
            let Some(track) = saved.to_track() else {
                return false;
            };
            let Some(spec) = have_tracks.get(&track.dp) else {
                return false;
            };
            let Some(session) = have_sessions.get(&spec.session) else {
                return false;
            };
            if !live.contains(&(track.room.clone(), sid.clone())) {
                return false;
            }
            if !media.tracks.contains_key(sid) {
                media.sessions.insert(spec.session, session.clone());
                media.dp_tracks.insert(track.dp, spec.clone());
                rooms.insert(track.room.clone());
                media.tracks.insert(sid.clone(), track);
                adopted += 1;
            }
            true
        });
        drop(index);
        tracing::info!(adopted, "published tracks adopted from the dataplane");
        self.mark_dirty();
        rooms
    }

    /// A dataplane session ended on its own (ICE timeout, DTLS failure): forget it.
    pub(crate) async fn session_closed(&self, session: SessionId) {
        let mut media = self.media.lock().await;
        if media.sessions.remove(&session).is_none() {
            return;
        }
        media.subs.retain(|_, s| s.session != session);
        media.dp_tracks.retain(|_, t| t.session != session);
        for p in media.peers.values_mut() {
            if p.publisher.as_ref().is_some_and(|pc| pc.session == session) {
                p.publisher = None;
            }
            if let Some(sub) = p.subscriber.as_mut() {
                if sub.session == Some(session) {
                    *sub = SubPc::default();
                }
            }
        }
    }
}

fn next_id(counter: &mut u64) -> u64 {
    *counter += 1;
    *counter
}

/// The kind of a section a client publishes on: audio or video.
fn publishable(kind: &sdp::MediaKind) -> Result<MediaKind, ApiError> {
    track_kind(kind).ok_or_else(|| ApiError::invalid("sdp", format!("cannot publish {kind} media")))
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

/// Fresh ICE credentials: 8 and 24 characters from the ice-char alphabet (RFC 8839 §5.4).
pub(crate) fn ice_creds() -> (String, String) {
    (random_string(8), random_string(24))
}

pub(crate) fn random_string(n: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut bytes = vec![0u8; n];
    aws_lc_rs::rand::fill(&mut bytes).expect("system RNG");
    bytes
        .iter()
        .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char)
        .collect()
}

pub(crate) fn random_u32() -> u32 {
    let mut b = [0u8; 4];
    aws_lc_rs::rand::fill(&mut b).expect("system RNG");
    u32::from_be_bytes(b).max(1)
}
