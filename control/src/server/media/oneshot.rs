//! One-shot sessions — WHIP ingest, WHEP playback, sidecar sessions for another signaling
//! server: a participant joins and its offer is answered (both directions) in one step, planned
//! on a copy of the room and applied only if the dataplane takes all of it, so a refused offer
//! leaves no participant, no track, no event and no session.

use crate::room::Join;
use crate::sdp;
use crate::server::actor::{JoinTicket, RoomCtx};
use crate::server::error::ApiError;

use super::{OneShot, Resource};

impl RoomCtx {
    /// Admits `join` and answers `offer_text`: the participant sid and the answer SDP. `iat_s`:
    /// when the participant's token was issued (`None`: an admin's sidecar session).
    /// `resource`: the WHIP/WHEP resource this session is (none for a sidecar session).
    pub(crate) async fn join_and_answer(
        &mut self,
        join: Join,
        iat_s: Option<u64>,
        offer_text: &str,
        resource: Option<Resource>,
    ) -> Result<(String, String), ApiError> {
        if let Some(iat) = iat_s {
            self.refuse_if_kicked(&join.identity, iat)?;
        }
        if self.app.is_draining() {
            return Err(ApiError::rejected("node is draining; join another node"));
        }
        // WHIP/WHEP/sidecar clients cannot do P2P: they count as P2P-incapable participants, so
        // an auto room moves to SFU for them (and a P2P-pinned room refuses them). A migration
        // in progress cannot hold an HTTP request: retry.
        let identity = join.identity.clone();
        match self.request_join(&identity, false)? {
            JoinTicket::Admitted(actions) => self.run_actions(actions).await,
            JoinTicket::Queued { .. } => {
                self.cancel_join(&identity);
                return Err(ApiError::rejected(
                    "the room is switching between p2p and sfu; retry in a few seconds",
                )
                .with_field("room"));
            }
        }
        let result = self.plan_and_apply_join(join, offer_text).await;
        if result.is_ok() {
            if let Some(peer) = self.media.peers.get_mut(&identity) {
                peer.resource = resource;
            }
        }
        if result.is_err() {
            // Admitted by the policy, not into the room: it stops counting the participant.
            self.hybrid_leave(&identity).await;
            self.forget_policy_if_roomless();
        }
        result
    }

    /// Ends the WHIP/WHEP resource `id` of endpoint `kind`: for its own participant (`owner`,
    /// the token's identity) or an admin (`None`). Never a WebSocket participant: only a
    /// session created as such a resource has an id.
    pub(crate) async fn end_resource(
        &mut self,
        kind: &str,
        id: &str,
        owner: Option<&str>,
    ) -> Result<(), ApiError> {
        let identity = self.resource_owner(kind, id, owner)?;
        self.leave(&identity).await
    }

    /// The identity holding resource `id`, if `owner` (or an admin, `None`) may act on it.
    pub(crate) fn resource_owner(
        &self,
        kind: &str,
        id: &str,
        owner: Option<&str>,
    ) -> Result<String, ApiError> {
        let identity = self
            .media
            .peers
            .iter()
            .find(|(_, p)| {
                p.resource
                    .as_ref()
                    .is_some_and(|r| r.kind == kind && r.id == id)
            })
            .map(|(identity, _)| identity.clone())
            .ok_or_else(|| {
                ApiError::not_found(format!("no {kind} resource {id:?} in this room"))
                    .with_field("id")
            })?;
        if owner.is_some_and(|o| o != identity) {
            self.app
                .refusals
                .count(crate::limits::Refusal::ForeignResource);
            return Err(ApiError::forbidden(
                "this resource belongs to another participant: its own token or an admin token",
            )
            .with_field("Authorization"));
        }
        Ok(identity)
    }

    /// Ends sidecar session `sid`: a one-shot participant, never a WebSocket client.
    pub(crate) async fn end_oneshot(&mut self, sid: &str) -> Result<(), ApiError> {
        let identity = self
            .media
            .peers
            .iter()
            .find(|(_, p)| p.participant_sid == sid && !p.signaling && p.resource.is_none())
            .map(|(identity, _)| identity.clone())
            .ok_or_else(|| {
                ApiError::not_found(format!("session {sid:?} not found")).with_field("id")
            })?;
        self.leave(&identity).await
    }

    async fn plan_and_apply_join(
        &mut self,
        join: Join,
        offer_text: &str,
    ) -> Result<(String, String), ApiError> {
        let identity = join.identity.clone();
        let offer = sdp::parse(offer_text)?;
        self.require_sfu(Some(&identity)).await?;
        let mut rooms = self.rooms.clone();
        let now = self.app.now_ms();
        let events = rooms.join(&self.name, join, now)?;
        let sid = rooms
            .participant(&self.name, &identity)
            .map(|p| p.sid.clone())
            .ok_or_else(|| ApiError::rejected("the participant left while joining"))?;
        let plan = self.plan_offer(
            rooms,
            events,
            &identity,
            offer,
            OneShot::Both,
            Some(sid.clone()),
        )?;
        let (_, answer) = self.apply_offer(plan).await?;
        self.sync_data_rights().await;
        self.refresh_room().await;
        Ok((sid, answer))
    }
}
