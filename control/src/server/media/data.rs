//! Data channels of a client-offered session (issue 17, D72): the offer's `m=application`
//! section becomes `CreateSession.data`, relayed by the dataplane to the room's other data
//! sessions under the participant's identity, with the `can_publish_data` grant.

use sluice_proto::{Candidate, Command, DataSpec, SessionId, UpdateData};

use super::Pc;
use crate::auth::Role;
use crate::room::{ControlState, Rooms};
use crate::sdp::{AcceptedData, LocalParams};
use crate::server::actor::RoomCtx;
use crate::server::error::ApiError;
use crate::server::hub::ClientMsg;
use crate::signal::ServerMessage;

/// Longest identity that gets data channels: the relay's envelope names a participant in one
/// length byte, and keeping it ASCII (< 0x80) lets clients frame text messages as text.
pub(crate) const MAX_DATA_IDENTITY: usize = 127;

impl RoomCtx {
    /// Whether an offer's data section may be accepted: not for an identity longer than
    /// [`MAX_DATA_IDENTITY`], and not on an existing session created without data channels
    /// (SCTP cannot be added to a running session; the section is answered with port 0).
    pub(super) fn data_allowed(&self, existing: Option<&Pc>, identity: &str) -> bool {
        if identity.len() > MAX_DATA_IDENTITY {
            return false;
        }
        existing.is_none_or(|pc| self.has_data(pc.session))
    }

    /// Whether `identity` has a session with data channels.
    fn has_data_session(&self, identity: &str) -> bool {
        self.media
            .sessions
            .values()
            .any(|c| c.data.as_ref().is_some_and(|d| d.participant == identity))
    }

    /// Whether `session` was created with data channels (a session not made yet: false).
    pub(super) fn has_data(&self, session: SessionId) -> bool {
        self.media
            .sessions
            .get(&session)
            .is_some_and(|s| s.data.is_some())
    }

    /// [`local_params`](Self::local_params) that accept a data section or not.
    pub(super) fn params_with(
        &self,
        ufrag: &str,
        pwd: &str,
        candidates: &[Candidate],
        data: bool,
    ) -> Result<LocalParams, ApiError> {
        let mut local = self.local_params(ufrag, pwd, candidates)?;
        local.data_channels = data;
        Ok(local)
    }

    /// The relay spec of `identity`'s data section, with its grant as the room copy has it.
    pub(super) fn data_spec(&self, rooms: &Rooms, identity: &str, acc: &AcceptedData) -> DataSpec {
        let (can_publish, input_to) =
            data_rights(rooms, &self.name, identity, |h| self.has_data_session(h));
        DataSpec {
            room: self.name.clone(),
            participant: identity.to_owned(),
            can_publish,
            open_channels: false,
            remote_max_message_size: acc.remote_max_message_size,
            max_rate: None,
            input_to,
        }
    }

    /// Brings every data session of the room in line with what its participant may send now
    /// (D87): `can_publish_data` as its grants and role say, and its input route — to the host,
    /// while it is a controller holding control. Runs after every room change that can move
    /// them (control granted or revoked, the host transferred or gone, a role or grants PATCH, a
    /// join, a data session made); sends `update_data` only for the sessions whose rights
    /// changed, and `input_route {data_channel}` to a participant whose route came or went. The record changes
    /// first, so a resync re-creates the session with what it may do now even when the command
    /// does not reach the dataplane.
    pub(crate) async fn sync_data_rights(&mut self) {
        let changed: Vec<UpdateData> = self
            .media
            .sessions
            .iter()
            .filter_map(|(&session, c)| {
                let d = c.data.as_ref()?;
                let (can_publish, input_to) =
                    data_rights(&self.rooms, &self.name, &d.participant, |h| {
                        self.has_data_session(h)
                    });
                (d.can_publish != can_publish || d.input_to != input_to).then_some(UpdateData {
                    session,
                    can_publish,
                    input_to,
                })
            })
            .collect();
        for u in changed {
            if let Some(d) = self
                .media
                .sessions
                .get_mut(&u.session)
                .and_then(|c| c.data.as_mut())
            {
                d.can_publish = u.can_publish;
                if d.input_to.is_some() != u.input_to.is_some() {
                    // The controller's client picks its input path by this.
                    let msg = ServerMessage::InputRoute {
                        data_channel: u.input_to.is_some(),
                    };
                    let to = d.participant.clone();
                    self.app.hub.send_to(&self.name, &to, ClientMsg::Msg(msg));
                }
                d.input_to.clone_from(&u.input_to);
            }
            let session = u.session;
            if let Err(e) = self.app.dp(Command::UpdateData(u)).await {
                tracing::warn!(room = %self.name, %session, error = %e, "update_data failed");
            }
        }
    }
}

/// What `identity`'s data session may send: `can_publish` (the `can_publish_data` grant or its
/// role's default) and its input route: the host's identity while `identity` is a controller
/// holding control and the room has a host (`relay_input`'s rule for the WebSocket path) that
/// has data channels (`has_data`; without them input keeps to the WebSocket).
pub(crate) fn data_rights(
    rooms: &Rooms,
    room: &str,
    identity: &str,
    has_data: impl Fn(&str) -> bool,
) -> (bool, Option<String>) {
    let Some(p) = rooms.participant(room, identity) else {
        return (false, None);
    };
    let can_publish = p.grants.may_publish_data(p.role);
    let input_to = (p.role == Role::Controller && p.control == ControlState::Granted)
        .then(|| rooms.room(room).and_then(|r| r.host()))
        .flatten()
        .map(|h| h.identity.clone())
        .filter(|h| has_data(h));
    (can_publish, input_to)
}
