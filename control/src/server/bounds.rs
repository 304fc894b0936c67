//! What the room actors hold for clients, kept bounded and visible (issue 14, part B): the
//! sizes of the control daemon's maps on `/metrics` (`sluice_control_map_entries{map}`, so an
//! operator and the churn test see every map return to its idle size), and the node-wide list
//! of kicks still in force (D38). The room actors' refusals are counted with the limits' in
//! `sluice_refused_total{reason}` (`crate::limits::Refusal`).

use crate::lock::Locked;

/// Entries in one room's media maps (summed over rooms for `/metrics`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct MapSizes {
    pub(crate) peers: usize,
    pub(crate) pending: usize,
    pub(crate) tracks: usize,
    pub(crate) sessions: usize,
    pub(crate) dp_tracks: usize,
    pub(crate) subs: usize,
    pub(crate) oneshot_subs: usize,
}

impl MapSizes {
    pub(crate) fn add(&mut self, o: &MapSizes) {
        self.peers += o.peers;
        self.pending += o.pending;
        self.tracks += o.tracks;
        self.sessions += o.sessions;
        self.dp_tracks += o.dp_tracks;
        self.subs += o.subs;
        self.oneshot_subs += o.oneshot_subs;
    }

    /// `sluice_control_map_entries{map}` rows (the caller adds the node-wide maps).
    pub(crate) fn rows(&self) -> [(&'static str, usize); 7] {
        [
            ("media_peers", self.peers),
            ("media_pending_publishes", self.pending),
            ("media_tracks", self.tracks),
            ("media_sessions", self.sessions),
            ("media_dataplane_tracks", self.dp_tracks),
            ("media_subscriptions", self.subs),
            ("media_oneshot_subscriptions", self.oneshot_subs),
        ]
    }
}

/// Kicks still in force (D38): (room, identity) → when (unix ms). A kicked identity comes back
/// only with a token issued after the kick, for `kick_ban_s`; the list is node-wide (it
/// outlives the room's actor), bounded, and forgets a kick once its ban has run out.
#[derive(Debug, Default)]
pub(crate) struct Kicks {
    at: std::sync::Mutex<std::collections::HashMap<(String, String), u64>>,
}

/// Kicks remembered at most; the oldest goes first.
pub(crate) const MAX_KICKS: usize = 10_000;

impl Kicks {
    pub(crate) fn record(&self, room: &str, identity: &str, now_ms: u64, ban_s: u64) {
        if ban_s == 0 {
            return;
        }
        let mut at = self.at.locked();
        let horizon = now_ms.saturating_sub(ban_s * 1000);
        at.retain(|_, t| *t > horizon);
        if at.len() >= MAX_KICKS {
            if let Some(oldest) = at.iter().min_by_key(|(_, t)| **t).map(|(k, _)| k.clone()) {
                at.remove(&oldest);
            }
        }
        at.insert((room.to_owned(), identity.to_owned()), now_ms);
    }

    /// Whether a token issued at `iat_s` (unix seconds) is refused for (room, identity).
    pub(crate) fn refuses(
        &self,
        room: &str,
        identity: &str,
        iat_s: u64,
        now_ms: u64,
        ban_s: u64,
    ) -> bool {
        let at = self.at.locked();
        at.get(&(room.to_owned(), identity.to_owned()))
            .is_some_and(|&t| t + ban_s * 1000 > now_ms && iat_s * 1000 <= t)
    }

    pub(crate) fn len(&self) -> usize {
        self.at.locked().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kicks_are_bounded_expire_and_spare_later_tokens() {
        let k = Kicks::default();
        let ban_s = 60;
        for i in 0..=MAX_KICKS {
            k.record("r", &format!("id{i}"), 1_000_000 + i as u64, ban_s);
        }
        assert_eq!(k.len(), MAX_KICKS, "the oldest kick made room");
        assert!(!k.refuses("r", "id0", 0, 1_000_100, ban_s), "evicted");
        let last = format!("id{MAX_KICKS}");
        let at = 1_000_000 + MAX_KICKS as u64;
        // A token issued before the kick is refused; one issued after it is not.
        assert!(k.refuses("r", &last, at / 1000 - 1, at + 1, ban_s));
        assert!(!k.refuses("r", &last, at / 1000 + 1, at + 1, ban_s));
        // Another room, or after the ban: no refusal.
        assert!(!k.refuses("q", &last, 0, at + 1, ban_s));
        assert!(!k.refuses("r", &last, 0, at + ban_s * 1000 + 1, ban_s));
        // A new kick after the ban forgets the expired ones.
        k.record("r", "late", at + ban_s * 1000 * 2, ban_s);
        assert_eq!(k.len(), 1);
        // `kick_ban_s = 0` turns kicks off.
        let off = Kicks::default();
        off.record("r", "x", 5, 0);
        assert_eq!(off.len(), 0);
    }
}
