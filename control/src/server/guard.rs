//! Refusals of hostile or stale client state that the room actors make (issue 14, part B), and
//! the sizes of the control daemon's maps: both on `/metrics`, so an operator (and the abuse
//! and churn tests) can see an attack being refused and every map return to its idle size.
//!
//! `sluice_control_refused_total{reason}` counts, by reason:
//! - `pending_publish_dropped`: a `publish` request waiting for its offer was dropped because
//!   its track went away (unpublish, a role or grant change, leave) — finding #7;
//! - `pending_publish_rechecked`: a publisher offer used a saved `publish` request the room's
//!   rules no longer allow — refused, finding #11;
//! - `subscribe_not_granted`: a WHEP/WHIP/sidecar `recvonly` section left without media for a
//!   participant without `can_subscribe` — finding #10;
//! - `subscription_revoked`: a dataplane subscription removed at once because `can_subscribe`
//!   was revoked (not when the client answers) — finding #10;
//! - `p2p_forbidden`: a `p2p_signal` whose SDP sends media the sender's role or grants do not
//!   allow — finding #12;
//! - `kicked_rejoin`: a join refused because the identity was kicked from the room within
//!   `rooms.kick_ban_s` — finding #26;
//! - `ghost_left`: a one-shot (WHIP/WHEP/sidecar) participant removed after its media was dead
//!   for `rooms.oneshot_grace_s` — finding #14;
//! - `restored_expired`: a participant restored from the state file removed because it did not
//!   resume within `rooms.resume_grace_s` — finding #14.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

/// Why something was refused or removed. See the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    PendingPublishDropped,
    PendingPublishRechecked,
    SubscribeNotGranted,
    SubscriptionRevoked,
    P2pForbidden,
    KickedRejoin,
    GhostLeft,
    RestoredExpired,
}

const ALL: [Refusal; 8] = [
    Refusal::PendingPublishDropped,
    Refusal::PendingPublishRechecked,
    Refusal::SubscribeNotGranted,
    Refusal::SubscriptionRevoked,
    Refusal::P2pForbidden,
    Refusal::KickedRejoin,
    Refusal::GhostLeft,
    Refusal::RestoredExpired,
];

impl Refusal {
    fn label(self) -> &'static str {
        match self {
            Refusal::PendingPublishDropped => "pending_publish_dropped",
            Refusal::PendingPublishRechecked => "pending_publish_rechecked",
            Refusal::SubscribeNotGranted => "subscribe_not_granted",
            Refusal::SubscriptionRevoked => "subscription_revoked",
            Refusal::P2pForbidden => "p2p_forbidden",
            Refusal::KickedRejoin => "kicked_rejoin",
            Refusal::GhostLeft => "ghost_left",
            Refusal::RestoredExpired => "restored_expired",
        }
    }
}

/// The counters.
#[derive(Debug, Default)]
pub(crate) struct Refusals {
    counts: [AtomicU64; ALL.len()],
}

impl Refusals {
    pub(crate) fn count(&self, why: Refusal, n: u64) {
        if n > 0 {
            self.counts[why as usize].fetch_add(n, Ordering::Relaxed);
        }
    }

    pub(crate) fn metrics(&self, out: &mut String) {
        let _ = writeln!(out, "# HELP sluice_control_refused_total Client requests refused and stale client state removed by the room actors, by reason.\n# TYPE sluice_control_refused_total counter");
        for why in ALL {
            let n = self.counts[why as usize].load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "sluice_control_refused_total{{reason=\"{}\"}} {n}",
                why.label()
            );
        }
    }
}

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
        let mut at = self
            .at
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
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
        let at = self
            .at
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        at.get(&(room.to_owned(), identity.to_owned()))
            .is_some_and(|&t| t + ban_s * 1000 > now_ms && iat_s * 1000 <= t)
    }

    pub(crate) fn len(&self) -> usize {
        self.at
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .len()
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
