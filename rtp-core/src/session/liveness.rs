//! Trunk liveness (cascade, issue 16 build 4, D100): a trunk notes when it last received an
//! authenticated packet from its peer; after `silence` with nothing it raises
//! [`SessionEvent::TrunkSilent`] once, and [`SessionEvent::TrunkResumed`] when packets come
//! back. Its receiver reports go out every 250–500 ms (`TRUNK_REPORT_INTERVAL`), so an idle
//! trunk is never silent while its path and its peer are up. Time is passed in; no state grows.

use std::time::{Duration, Instant};

use super::{Session, SessionEvent};

/// A trunk's mean RTCP interval: its reports are the keepalive, randomised ×[0.5, 1.0).
pub(super) const TRUNK_REPORT_INTERVAL: Duration = Duration::from_millis(500);

/// When a trunk last heard its peer, and whether it is in a silent episode.
#[derive(Debug, Clone, Copy)]
pub(super) struct Liveness {
    silence: Duration,
    last_heard: Instant,
    silent: bool,
}

impl Liveness {
    pub(super) fn new(now: Instant, silence: Duration) -> Self {
        Self {
            silence,
            last_heard: now,
            silent: false,
        }
    }

    /// When silence is declared if nothing arrives (none while already silent).
    pub(super) fn deadline(&self) -> Option<Instant> {
        (!self.silent).then(|| self.last_heard + self.silence)
    }
}

impl<H: Copy> Session<H> {
    /// An authenticated packet arrived from the trunk's peer.
    pub(super) fn heard(&mut self, now: Instant) {
        let Some(l) = self.liveness.as_mut() else {
            return;
        };
        let was = l.silent;
        let since = l.last_heard;
        l.last_heard = l.last_heard.max(now);
        l.silent = false;
        if was {
            let silent_for = now.saturating_duration_since(since);
            self.push_event(SessionEvent::TrunkResumed { silent_for });
        }
    }

    /// Declares silence once the deadline passed.
    pub(super) fn check_liveness(&mut self, now: Instant) {
        let Some(l) = self.liveness.as_mut() else {
            return;
        };
        if l.deadline().is_some_and(|t| now >= t) {
            l.silent = true;
            let silent_for = now.saturating_duration_since(l.last_heard);
            self.push_event(SessionEvent::TrunkSilent { silent_for });
        }
    }

    /// Whether this trunk is in a silent episode (`false` for other sessions).
    pub fn is_silent(&self) -> bool {
        self.liveness.is_some_and(|l| l.silent)
    }
}
