//! The output state of a session's latest removed DownTracks, by SSRC (D110): a DownTrack added
//! again with one of these SSRCs continues its numbering — a cascade edge moves a subscription
//! to another layer's relay by unsubscribing and subscribing it, and the subscriber must see
//! one stream. A ring of [`HANDOFFS`]: no growth.

use crate::forward::Handoff;

/// Removed DownTracks whose output state a session keeps.
pub(super) const HANDOFFS: usize = 8;

#[derive(Debug, Default)]
pub(super) struct Handoffs {
    ring: [Option<(u32, Handoff)>; HANDOFFS],
    next: usize,
}

impl Handoffs {
    /// Keeps `h`, the output state of the removed DownTrack of `ssrc` (the oldest goes).
    pub(super) fn keep(&mut self, ssrc: u32, h: Handoff) {
        if let Some(slot) = self
            .ring
            .iter_mut()
            .find(|x| x.is_some_and(|(s, _)| s == ssrc))
        {
            *slot = Some((ssrc, h));
            return;
        }
        self.ring[self.next] = Some((ssrc, h));
        self.next = (self.next + 1) % HANDOFFS;
    }

    /// The kept state of `ssrc`, taken.
    pub(super) fn take(&mut self, ssrc: u32) -> Option<Handoff> {
        let slot = self
            .ring
            .iter_mut()
            .find(|x| x.is_some_and(|(s, _)| s == ssrc))?;
        slot.take().map(|(_, h)| h)
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.ring.iter().flatten().count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ring_is_bounded_and_keyed_by_ssrc() {
        // The forwarder tests check what a handoff carries.
        let h = Handoff::after_seq(41);
        let mut r = Handoffs::default();
        for ssrc in 0..HANDOFFS as u32 + 5 {
            r.keep(ssrc, h);
        }
        assert_eq!(r.len(), HANDOFFS, "bounded");
        assert_eq!(r.take(0), None, "the oldest went");
        assert_eq!(r.take(HANDOFFS as u32 + 4), Some(h));
        assert_eq!(r.take(HANDOFFS as u32 + 4), None, "taken once");
        r.keep(3, h);
        r.keep(3, h);
        assert_eq!(r.len(), HANDOFFS - 1, "one entry per SSRC");
    }
}
