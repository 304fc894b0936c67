//! Step 2 of answering an offer (see the parent module): [`RoomCtx::apply_offer`] runs the
//! plan's dataplane commands in order; when all of them succeeded it commits (the room copy
//! becomes the room, the media records are written, the events go out, the final answer is
//! written with the session's candidates), and when one failed it removes what it created again,
//! newest first.

use sluice_proto::{Candidate, Command, SessionId, SubscriptionId, TrackId};

use super::{OfferPlan, SendPlan, SessionPlan};
use crate::sdp::{self, Answer, Msid, SsrcAttr};
use crate::server::actor::RoomCtx;
use crate::server::adopt;
use crate::server::error::ApiError;
use crate::server::media::Pc;

/// What an apply created so far, to undo.
#[derive(Debug, Default)]
struct Created {
    session: Option<SessionId>,
    tracks: Vec<TrackId>,
    subs: Vec<SubscriptionId>,
}

impl RoomCtx {
    /// Runs `plan`'s dataplane commands; commits on success, undoes them on failure.
    pub(crate) async fn apply_offer(
        &mut self,
        plan: OfferPlan,
    ) -> Result<(SessionId, String), ApiError> {
        let mut created = Created::default();
        match self.apply_commands(&plan, &mut created).await {
            Ok((session, candidates)) => self.commit_offer(plan, session, candidates).await,
            Err(e) => {
                self.undo(created).await;
                Err(e)
            }
        }
    }

    async fn apply_commands(
        &mut self,
        plan: &OfferPlan,
        created: &mut Created,
    ) -> Result<(SessionId, Vec<Candidate>), ApiError> {
        let (session, candidates) = match &plan.session {
            SessionPlan::Existing {
                session,
                candidates,
                restart,
            } => {
                if let Some(cmd) = restart {
                    self.app.dp(cmd.clone()).await?;
                }
                (*session, candidates.clone())
            }
            SessionPlan::New(spec) => {
                // Not recorded here: the commit records it.
                let (_, candidates) = self.app.dp_create_session(spec.clone()).await?;
                created.session = Some(spec.session);
                (spec.session, candidates)
            }
        };
        for t in &plan.tracks {
            self.app.dp(Command::AddTrack(t.spec.clone())).await?;
            created.tracks.push(t.spec.track);
        }
        for s in &plan.sends {
            self.app.dp(Command::Subscribe(s.spec.clone())).await?;
            created.subs.push(s.spec.subscription);
        }
        Ok((session, candidates))
    }

    /// Removes what a failed apply created, newest first.
    async fn undo(&mut self, created: Created) {
        for subscription in created.subs.into_iter().rev() {
            if let Err(e) = self.app.dp(Command::Unsubscribe { subscription }).await {
                tracing::warn!(%subscription, error = %e, "undo: unsubscribe failed");
            }
        }
        for track in created.tracks.into_iter().rev() {
            if let Err(e) = self.app.dp(Command::RemoveTrack { track }).await {
                tracing::warn!(%track, error = %e, "undo: remove_track failed");
            }
        }
        if let Some(session) = created.session {
            if let Err(e) = self.app.dp(Command::CloseSession { session }).await {
                tracing::warn!(%session, error = %e, "undo: close_session failed");
            }
        }
    }

    /// The dataplane holds everything: the room copy becomes the room, the media records are
    /// written, events go out, and the final answer is written with the session's candidates.
    async fn commit_offer(
        &mut self,
        plan: OfferPlan,
        session: SessionId,
        candidates: Vec<Candidate>,
    ) -> Result<(SessionId, String), ApiError> {
        let OfferPlan {
            identity,
            offer,
            offered_ufrag,
            ufrag,
            pwd,
            session: session_plan,
            rooms,
            events,
            join,
            tracks,
            sends,
            pending,
        } = plan;
        let data = matches!(&session_plan, SessionPlan::New(s) if s.data.is_some())
            || self.has_data(session);
        let mut answer = sdp::answer(&offer, &self.params_with(&ufrag, &pwd, &candidates, data)?)?;
        for s in &sends {
            answer.send_track_codec(s.index, &s.codec);
            add_send_ssrcs(&mut answer, s);
        }
        self.rooms = rooms;
        if let Some(sid) = &join {
            self.media_join(&identity, sid, false).await;
        }
        match session_plan {
            SessionPlan::New(spec) => {
                self.track_session(session, spec);
                if join.is_some() {
                    // A one-shot session is dead until its ICE comes up (actor/ghosts.rs).
                    let now = self.app.now_ms();
                    self.media.dead_since.insert(session, now);
                }
            }
            SessionPlan::Existing {
                restart: Some(_), ..
            } => {
                if let Some(spec) = self.media.sessions.get_mut(&session) {
                    spec.ice.ufrag = ufrag.clone();
                    spec.ice.pwd = pwd.clone();
                    spec.ice.remote_ufrag = Some(answer.remote.ice_ufrag.clone());
                    spec.ice.remote_pwd = Some(answer.remote.ice_pwd.clone());
                }
            }
            SessionPlan::Existing { restart: None, .. } => {}
        }
        let mut mids = Vec::new();
        for t in tracks {
            self.media.dp_tracks.insert(t.spec.track, t.spec);
            self.saved.insert(t.sid.clone(), adopt::saved(&t.track));
            self.media.tracks.insert(t.sid.clone(), t.track);
            mids.push((t.mid, t.sid));
        }
        let mut subs = Vec::new();
        for s in sends {
            subs.push(s.spec.subscription);
            self.media.subs.insert(s.spec.subscription, s.spec);
        }
        if let Some(peer) = self.media.peers.get_mut(&identity) {
            peer.pending = pending;
            peer.pub_mids.extend(mids);
            peer.oneshot_subs.extend(subs);
            peer.publisher = Some(Pc {
                session,
                candidates,
                ufrag,
                pwd,
                remote_ufrag: offered_ufrag,
            });
        }
        self.emit(events);
        Ok((session, answer.sdp.to_string()))
    }
}

/// Our SSRCs for a section the client receives on, into the answer.
fn add_send_ssrcs(answer: &mut Answer, s: &SendPlan) {
    let Some(section) = answer
        .sdp
        .media
        .iter_mut()
        .find(|m| m.mid.as_deref() == Some(s.mid.as_str()))
    else {
        return;
    };
    let msid = format!("{} {}", s.owner_sid, s.track_sid);
    for ssrc in std::iter::once(s.spec.ssrc).chain(s.spec.rtx_ssrc) {
        section.ssrcs.push(SsrcAttr {
            ssrc,
            attr: "cname".into(),
            value: Some(format!("sluice-{}", s.owner_sid)),
        });
        section.ssrcs.push(SsrcAttr {
            ssrc,
            attr: "msid".into(),
            value: Some(msid.clone()),
        });
    }
    section.msids.push(Msid {
        stream_id: s.owner_sid.clone(),
        track_id: Some(s.track_sid.clone()),
    });
}
