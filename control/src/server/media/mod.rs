//! Media orchestration of one room, run by the room's actor: turns offers and answers into
//! dataplane commands, and keeps the control-side record of every session, track and
//! subscription (the source of truth for a resync, `docs/control-socket.md` "Disconnect and
//! resync").
//!
//! Each participant has up to two PeerConnections (docs/protocol.md explains why): the
//! *publisher* (client offers; [`publish`]) and the *subscriber* (we offer, the client answers;
//! [`subscribe`]). WHIP, WHEP and sidecar sessions answer both directions in one offer
//! ([`oneshot`]). [`resync`] makes the dataplane hold what we hold after it reconnects, adopts
//! calls that outlived a control restart and cleans up after leaves; [`translate`] is where SDP
//! and auth types meet the control-socket vocabulary.

mod data;
mod layers;
pub(crate) mod node;
mod oneshot;
mod publish;
pub(crate) mod resync;
mod settle;
pub(crate) mod shed;
mod subscribe;
mod translate;

use crate::lock::Locked;
use std::collections::{BTreeMap, BTreeSet, HashMap};

use sluice_proto::{
    AddTrack, Candidate, Command, CreateSession, MediaKind, Quality, ReplyOk, SessionId, Subscribe,
    SubscriptionId, TrackId,
};

use super::actor::RoomCtx;
use super::bounds::MapSizes;
use super::error::ApiError;
use super::App;
use crate::link::LinkError;
use crate::sdp::{Fingerprint, LocalParams, NegotiatedCodec};

pub(crate) use layers::LayerCap;
pub(crate) use publish::OneShot;

/// All media state of one room.
#[derive(Debug, Default)]
pub(crate) struct Media {
    /// Participants' media by identity.
    pub(crate) peers: HashMap<String, Peer>,
    /// Published tracks by room track sid (`TR_n`).
    pub(crate) tracks: BTreeMap<String, MTrack>,
    /// What the dataplane should hold, by id (for resync).
    pub(crate) sessions: BTreeMap<SessionId, CreateSession>,
    pub(crate) dp_tracks: BTreeMap<TrackId, AddTrack>,
    pub(crate) subs: BTreeMap<SubscriptionId, Subscribe>,
    /// Sessions whose ICE is down (not connected yet, or consent lost): since when (unix ms).
    /// An entry goes with its session.
    pub(crate) dead_since: BTreeMap<SessionId, u64>,
    /// The sessions of `sessions` that live on another node's dataplane (`node.rs`); an entry
    /// goes with its session.
    pub(crate) remote: BTreeMap<SessionId, node::Remote>,
    /// Each subscription of a remote session: its track, edge, and the layer it asked for
    /// and receives (`shed.rs`); an entry goes with its subscription.
    pub(crate) remote_layers: BTreeMap<SubscriptionId, shed::RemoteLayer>,
}

impl Media {
    /// No participant media and nothing in the dataplane.
    pub(crate) fn is_empty(&self) -> bool {
        self.peers.is_empty() && self.sessions.is_empty() && self.tracks.is_empty()
    }

    /// Entries in each map (for `/metrics`).
    pub(crate) fn sizes(&self) -> MapSizes {
        MapSizes {
            peers: self.peers.len(),
            pending: self.peers.values().map(|p| p.pending.len()).sum(),
            tracks: self.tracks.len(),
            sessions: self.sessions.len(),
            dp_tracks: self.dp_tracks.len(),
            subs: self.subs.len(),
            oneshot_subs: self.peers.values().map(|p| p.oneshot_subs.len()).sum(),
        }
    }
}

/// One participant's media.
#[derive(Debug, Default)]
pub(crate) struct Peer {
    pub(crate) participant_sid: String,
    /// Gets `offer {pc: "subscriber"}` messages (a WebSocket client).
    pub(crate) signaling: bool,
    /// The participant's region (token claim, else the trusted load balancer's header): where
    /// its subscriber session may be placed (`node.rs`).
    pub(crate) region: Option<String>,
    pub(crate) publisher: Option<Pc>,
    pub(crate) subscriber: Option<subscribe::SubPc>,
    /// `publish` requests waiting for the offer that carries them.
    pub(crate) pending: Vec<PendingTrack>,
    /// Publisher mid → track sid.
    pub(crate) pub_mids: BTreeMap<String, String>,
    /// Tracks the client turned off with `subscribe {subscribe: false}`.
    pub(crate) unsubscribed: BTreeSet<String>,
    /// `layer` requests by track sid. Kept here because a client asks as soon as its `ontrack`
    /// fires, before its answer creates the subscription.
    pub(crate) layer_caps: BTreeMap<String, LayerCap>,
    /// One-shot sessions (WHEP/sidecar) own their subscriptions directly.
    pub(crate) oneshot_subs: Vec<SubscriptionId>,
    /// A WHIP/WHEP session's resource: its random id (the URL's last segment) and which
    /// endpoint made it. Only such a participant can be ended through `/whip|whep/{room}/{id}`.
    pub(crate) resource: Option<Resource>,
}

/// A WHIP or WHEP resource (docs/security.md, finding #3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Resource {
    /// 128 random bits, hex.
    pub(crate) id: String,
    /// `whip` or `whep`.
    pub(crate) kind: &'static str,
}

/// A `publish` request waiting for the publisher offer that carries its track.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PendingTrack {
    /// The client's id for the track (echoed in `track_published`).
    pub(crate) cid: String,
    /// The room track sid it was given.
    pub(crate) sid: String,
    pub(crate) kind: MediaKind,
}

/// A client-offered PeerConnection (the WS publisher, or a one-shot session).
#[derive(Debug, Clone)]
pub(crate) struct Pc {
    pub(crate) session: SessionId,
    /// What the dataplane answered `CreateSession` with: the session's own host candidates.
    pub(crate) candidates: Vec<Candidate>,
    pub(crate) ufrag: String,
    pub(crate) pwd: String,
    pub(crate) remote_ufrag: String,
}

/// A published track.
#[derive(Debug, Clone)]
pub(crate) struct MTrack {
    pub(crate) owner: String,
    pub(crate) owner_sid: String,
    pub(crate) dp: TrackId,
    pub(crate) kind: MediaKind,
    pub(crate) codec: NegotiatedCodec,
}

impl App {
    /// One dataplane request.
    pub(crate) async fn dp(&self, command: Command) -> Result<ReplyOk, ApiError> {
        Ok(self.dp_link(command).await?)
    }

    /// One dataplane request, the link's own error kept (did it go out? was it answered?).
    pub(crate) async fn dp_link(&self, command: Command) -> Result<ReplyOk, LinkError> {
        let link = self.link.as_ref().ok_or(LinkError::Unavailable)?;
        link.request(command).await
    }

    /// `CreateSession`: the shard it landed on and its candidates. Every new session goes
    /// through here: publisher, sidecar/WHIP, cascade remote, trunk and edge-viewer sessions (a
    /// resync re-creates sessions rooms still hold, known either way). One the dataplane did not
    /// answer in time was still sent, and it may make the session after all, unknown here (the
    /// client's next offer makes another): a close follows it — requests are served in order —
    /// queued before this returns, so it goes out ahead of any retry (a trunk's retry names the
    /// same remote address, which the dataplane gives one session), and not awaited: the caller
    /// has waited long enough. (A lost connection is the resync's: it closes sessions nobody
    /// knows.)
    pub(crate) async fn dp_create_session(
        &self,
        spec: CreateSession,
    ) -> Result<(u16, Vec<Candidate>), ApiError> {
        let id = spec.session;
        match self.dp_link(Command::CreateSession(spec)).await {
            Ok(ReplyOk::SessionCreated {
                shard,
                local_candidates,
            }) => Ok((shard, local_candidates)),
            Ok(other) => Err(ApiError::new(
                "internal",
                format!("dataplane answered create_session with {other:?}"),
            )),
            Err(e) => {
                if let (LinkError::Timeout(_), Some(link)) = (&e, self.link.as_ref()) {
                    let _ = link.send(Command::CloseSession { session: id });
                }
                Err(e.into())
            }
        }
    }

    /// A fresh id for a dataplane object (sessions, tracks, subscriptions share one counter).
    pub(crate) fn next_dp_id(&self) -> u64 {
        self.dp_ids
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            + 1
    }
}

/// Room for ids one control process hands out (sessions, tracks, subscriptions).
pub(crate) const DP_ID_SPAN: u64 = 1 << 40;

/// A random first dataplane id in `[2^40, 2^52)` (below 2^53: ids stay exact as JSON numbers
/// in any client). Each control process starts its own span there, so the ids a home gives its
/// remote sessions on an edge (D105) do not meet the edge's own: two spans of a million ids
/// overlap with a chance of about 2^-31.
pub(crate) fn dp_id_start() -> u64 {
    let mut b = [0u8; 8];
    aws_lc_rs::rand::fill(&mut b).expect("system RNG");
    let r = u64::from_be_bytes(b) % ((1u64 << 52) - 2 * DP_ID_SPAN);
    DP_ID_SPAN + r
}

impl RoomCtx {
    /// Our side of a session's SDP: the dataplane's DTLS fingerprint and the candidates it gave
    /// the session, or `rejected: dataplane unavailable`.
    pub(crate) fn local_params(
        &self,
        ufrag: &str,
        pwd: &str,
        candidates: &[Candidate],
    ) -> Result<LocalParams, ApiError> {
        let conn = self
            .app
            .link
            .as_ref()
            .and_then(|l| l.current())
            .ok_or_else(|| ApiError::from(LinkError::Unavailable))?;
        let fp = conn.hello.fingerprint.as_deref().unwrap_or_default();
        sdp_params(ufrag, pwd, fp, candidates, self.app.http_ip)
    }

    /// `CreateSession`, recorded: the shard it landed on and its candidates.
    pub(crate) async fn create_session(
        &mut self,
        spec: CreateSession,
    ) -> Result<(u16, Vec<Candidate>), ApiError> {
        let id = spec.session;
        let made = self.app.dp_create_session(spec.clone()).await?;
        self.track_session(id, spec);
        Ok(made)
    }

    /// Records a session as this room's (for resync and for its `session_closed`).
    pub(crate) fn track_session(&mut self, id: SessionId, spec: CreateSession) {
        self.media.sessions.insert(id, spec);
        self.app
            .session_rooms
            .locked()
            .insert(id, self.name.clone());
    }

    /// Forgets a session of this room (closed, or gone from the dataplane).
    pub(crate) fn forget_session(&mut self, id: SessionId) -> Option<CreateSession> {
        self.app.session_rooms.locked().remove(&id);
        self.media.dead_since.remove(&id);
        if self.media.remote.remove(&id).is_some() {
            self.app.cascade.remote.placed.locked().remove(&id);
            let subs = &self.media.subs;
            let gone: Vec<SubscriptionId> = self
                .media
                .remote_layers
                .keys()
                .filter(|s| subs.get(s).is_none_or(|x| x.session == id))
                .copied()
                .collect();
            for s in gone {
                self.drop_remote_layer(s);
            }
        }
        self.media.sessions.remove(&id)
    }

    /// The quality tier of `identity`'s role.
    pub(crate) fn participant_tier(&self, identity: &str) -> Quality {
        let role = self
            .rooms
            .participant(&self.name, identity)
            .map_or(crate::auth::Role::Viewer, |p| p.role);
        let tier = self.rooms.tier(role);
        Quality {
            max_bitrate_bps: tier.max_bitrate_bps,
            priority: tier.priority,
        }
    }

    /// Registers a participant's media record (on join); a replaced one's sessions close.
    pub(crate) async fn media_join(
        &mut self,
        identity: &str,
        participant_sid: &str,
        signaling: bool,
    ) {
        let old = self.media.peers.insert(
            identity.to_owned(),
            Peer {
                participant_sid: participant_sid.to_owned(),
                signaling,
                ..Peer::default()
            },
        );
        if let Some(old) = old {
            self.close_peer_sessions(old).await;
        }
    }

    /// A `publish` request was accepted: remember it for the next publisher offer.
    pub(crate) fn media_pending(&mut self, identity: &str, pending: PendingTrack) {
        if let Some(p) = self.media.peers.get_mut(identity) {
            // The room caps a participant's tracks, and a pending entry never outlives its
            // track (`drop_stale_pending`); this cap holds whatever the room allows.
            if p.pending.len() >= crate::room::MAX_TRACKS_PER_PARTICIPANT {
                p.pending.remove(0);
                self.app
                    .refusals
                    .count(crate::limits::Refusal::PendingPublishDropped);
            }
            p.pending.push(pending);
        }
    }

    /// Keeps the saved `publish` requests `identity` may still use on `rooms` (the room as the
    /// offer will leave it): its track is still the participant's and the role and grants allow
    /// its source (#11). The others are dropped and counted; their sections are published anew,
    /// under the rules as they are now.
    pub(crate) fn recheck_pending(
        &self,
        rooms: &crate::room::Rooms,
        identity: &str,
        pending: &mut Vec<PendingTrack>,
    ) {
        let before = pending.len();
        let me = rooms.participant(&self.name, identity);
        pending.retain(|p| {
            me.and_then(|o| o.tracks.get(&p.sid).map(|t| (o, t)))
                .is_some_and(|(o, t)| {
                    o.role.may_publish(t.source) && o.grants.allows_source(t.source)
                })
        });
        self.app.refusals.add(
            crate::limits::Refusal::PendingPublishRechecked,
            (before - pending.len()) as u64,
        );
    }

    /// Mute or unmute a published track in the dataplane.
    pub(crate) async fn set_track_muted(&mut self, track_sid: &str, muted: bool) {
        if let Some(track) = self.media.tracks.get(track_sid).map(|t| t.dp) {
            if let Err(e) = self.app.dp(Command::SetMuted { track, muted }).await {
                tracing::warn!(track_sid, error = %e, "set_muted failed");
            }
        }
    }

    /// Dataplane sessions the room's participants hold now.
    pub(crate) fn dataplane_sessions(&self) -> usize {
        self.media
            .peers
            .values()
            .map(|p| {
                usize::from(p.publisher.is_some())
                    + usize::from(p.subscriber.as_ref().is_some_and(|s| s.session.is_some()))
            })
            .sum()
    }
}

/// Our side of a session's SDP from a dataplane's fingerprint (`"<hash> <hex>"`), the
/// candidates it gave the session and the IP its node announces for a wildcard bind.
pub(crate) fn sdp_params(
    ufrag: &str,
    pwd: &str,
    fingerprint: &str,
    candidates: &[Candidate],
    http_ip: std::net::IpAddr,
) -> Result<LocalParams, ApiError> {
    // The last token is the value, so a doubled hash prefix from the dataplane
    // ("sha-256 sha-256 AB:..") still yields a valid a=fingerprint.
    let mut tokens = fingerprint.split_whitespace();
    let fp = tokens
        .next()
        .zip(tokens.last())
        .map(|(hash, value)| Fingerprint {
            hash: hash.to_ascii_lowercase(),
            value: value.to_owned(),
        })
        .ok_or_else(|| ApiError::rejected("dataplane announced no DTLS fingerprint"))?;
    let candidates = translate::sdp_candidates(candidates, http_ip);
    Ok(LocalParams::new(
        ufrag,
        pwd,
        fp,
        candidates,
        u64::from(random_u32()),
    ))
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
