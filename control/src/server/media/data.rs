//! Data channels of a client-offered session (issue 17, D72): the offer's `m=application`
//! section becomes `CreateSession.data`, relayed by the dataplane to the room's other data
//! sessions under the participant's identity, with the `can_publish_data` grant.

use sluice_proto::{Candidate, DataSpec, SessionId};

use super::Pc;
use crate::room::Rooms;
use crate::sdp::{AcceptedData, LocalParams};
use crate::server::actor::RoomCtx;
use crate::server::error::ApiError;

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
        let can_publish = rooms
            .participant(&self.name, identity)
            .is_some_and(|p| p.grants.may_publish_data(p.role));
        DataSpec {
            room: self.name.clone(),
            participant: identity.to_owned(),
            can_publish,
            open_channels: false,
            remote_max_message_size: acc.remote_max_message_size,
            max_rate: None,
        }
    }
}
