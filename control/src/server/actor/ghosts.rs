//! Participants without a live connection leave (finding #14, `docs/security.md`):
//!
//! - a one-shot participant (WHIP, WHEP, sidecar: no signaling connection to watch) stays while
//!   its session's media is alive, and leaves once ICE has been down — never connected after
//!   the answer, consent lost (`ice_disconnected`), or the session closed by the dataplane —
//!   for `control.oneshot_grace_s`;
//! - a participant restored from the state file after a control restart leaves if, within
//!   `control.resume_grace_s`, it neither resumed (joined again over WebSocket or WHIP) nor has
//!   a call the dataplane still carries (an adopted track on a live session); with such a call
//!   it is judged again after each further `resume_grace_s`.
//!
//! Both leave as any participant does: `participant_left` goes to the room, SSE and webhooks,
//! and the refusal is counted (`ghost_left`, `restored_expired`).

use sluice_proto::SessionId;

use super::RoomCtx;
use crate::limits::Refusal;

impl RoomCtx {
    /// Restored participants get until `now + resume_grace_s` to resume (at actor start).
    pub(crate) fn await_resumes(&mut self) {
        let Some(room) = self.room() else { return };
        let at = self.app.now_ms() + self.grace_ms(false);
        self.unresumed = room
            .participants
            .values()
            .map(|p| (p.identity.clone(), (p.sid.clone(), at)))
            .collect();
    }

    fn grace_ms(&self, oneshot: bool) -> u64 {
        let l = self.rooms.config().lifetimes;
        1000 * if oneshot {
            l.oneshot_grace_s
        } else {
            l.resume_grace_s
        }
    }

    /// A session's ICE came up (`alive`) or went down.
    pub(crate) fn session_liveness(&mut self, session: SessionId, alive: bool) {
        if !self.media.sessions.contains_key(&session) {
            return;
        }
        if alive {
            self.media.dead_since.remove(&session);
        } else {
            let now = self.app.now_ms();
            self.media.dead_since.entry(session).or_insert(now);
        }
    }

    /// The earliest ghost deadline (unix ms).
    pub(crate) fn ghost_deadline(&self) -> Option<u64> {
        let grace = self.grace_ms(true);
        let oneshot = self
            .media
            .peers
            .values()
            .filter(|p| !p.signaling)
            .filter_map(|p| match &p.publisher {
                Some(pc) => self.media.dead_since.get(&pc.session).map(|t| t + grace),
                None => Some(0),
            });
        let restored = self.unresumed.values().map(|(_, at)| *at);
        oneshot.chain(restored).min()
    }

    /// Makes the ghosts whose time is up leave.
    pub(crate) async fn expire_ghosts(&mut self, now: u64) {
        let grace = self.grace_ms(true);
        let dead: Vec<String> = self
            .media
            .peers
            .iter()
            .filter(|(_, p)| !p.signaling)
            .filter(|(_, p)| match &p.publisher {
                Some(pc) => self
                    .media
                    .dead_since
                    .get(&pc.session)
                    .is_some_and(|t| t + grace <= now),
                None => true,
            })
            .map(|(i, _)| i.clone())
            .collect();
        for identity in dead {
            tracing::info!(room = %self.name, identity, "one-shot participant's media dead: it leaves");
            self.app.refusals.count(Refusal::GhostLeft);
            if self.leave(&identity).await.is_err() {
                // Not in the room any more: only its media record was left.
                self.media_leave(&identity).await;
            }
        }
        let due: Vec<(String, String)> = self
            .unresumed
            .iter()
            .filter(|(_, (_, at))| *at <= now)
            .map(|(i, (sid, _))| (i.clone(), sid.clone()))
            .collect();
        for (identity, sid) in due {
            self.unresumed.remove(&identity);
            let still = self
                .rooms
                .participant(&self.name, &identity)
                .is_some_and(|p| p.sid == sid);
            if !still || self.media.peers.contains_key(&identity) {
                continue; // resumed, or gone already
            }
            let carried = self.media.tracks.values().any(|t| {
                t.owner == identity
                    && self
                        .media
                        .dp_tracks
                        .get(&t.dp)
                        .is_some_and(|s| !self.media.dead_since.contains_key(&s.session))
            });
            if carried {
                let at = now + self.grace_ms(false);
                self.unresumed.insert(identity, (sid, at));
                continue;
            }
            tracing::info!(room = %self.name, identity, "restored participant did not resume: it leaves");
            self.app.refusals.count(Refusal::RestoredExpired);
            let _ = self.leave(&identity).await;
        }
    }
}
