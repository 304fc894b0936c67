//! `update_data` (D87): a data session's `can_publish` and input route, changed live. The
//! session's recorded spec follows (so `list_sessions` and a resync see it), then its worker —
//! or its pending queue, when no worker has claimed it yet — applies the change.

use super::*;
use crate::proto::UpdateData;

impl ControlThread {
    pub(super) fn update_data(
        &mut self,
        id: u64,
        u: UpdateData,
    ) -> Result<Option<ReplyOk>, ErrorBody> {
        let Some(rec) = self.sessions.get_mut(&u.session) else {
            return Err(not_found(u.session));
        };
        let Some(data) = rec.spec.data.as_mut() else {
            return Err(
                rejected(format!("{} has no data channels", u.session)).with_field("session")
            );
        };
        data.can_publish = u.can_publish;
        data.input_to.clone_from(&u.input_to);
        let session = u.session;
        self.route_apply(id, session, Command::UpdateData(u))
    }
}
