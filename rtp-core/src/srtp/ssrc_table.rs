//! Fixed-capacity per-SSRC state: SRTP rollover tracking and replay window,
//! SRTCP send index and replay window (RFC 3711 §3.2.1 "per-SSRC" items).
//!
//! A small vector scanned linearly: contexts carry a handful of SSRCs, so a
//! scan beats hashing. All slots, replay bitmaps included, are allocated at
//! construction and reset in place on reuse.

use super::replay::ReplayWindow;
use super::SrtpError;

/// State kept for one SSRC.
#[derive(Debug)]
pub(crate) struct SsrcState {
    pub(crate) ssrc: u32,
    in_use: bool,
    last_used: u64,
    /// Highest SRTP packet index (ROC << 16 | SEQ) sent or authenticated.
    pub(crate) rtp_highest: Option<u64>,
    pub(crate) rtp_window: ReplayWindow,
    /// Next SRTCP index to send (31 bits).
    pub(crate) rtcp_next: u32,
    pub(crate) rtcp_window: ReplayWindow,
}

/// The per-SSRC slots of one context.
#[derive(Debug)]
pub(crate) struct SsrcTable {
    slots: Vec<SsrcState>,
    /// Monotonic use counter for least-recently-used eviction.
    clock: u64,
}

impl SsrcTable {
    pub(crate) fn new(capacity: usize, window: usize) -> Result<Self, SrtpError> {
        if capacity == 0 {
            return Err(SrtpError::BadConfig);
        }
        let mut slots = Vec::with_capacity(capacity);
        for _ in 0..capacity {
            slots.push(SsrcState {
                ssrc: 0,
                in_use: false,
                last_used: 0,
                rtp_highest: None,
                rtp_window: ReplayWindow::new(window)?,
                rtcp_next: 0,
                rtcp_window: ReplayWindow::new(window)?,
            });
        }
        Ok(Self { slots, clock: 0 })
    }

    /// The slot of `ssrc`, marking it used.
    pub(crate) fn find(&mut self, ssrc: u32) -> Option<usize> {
        let i = self.slots.iter().position(|s| s.in_use && s.ssrc == ssrc)?;
        self.clock = self.clock.wrapping_add(1);
        self.slots[i].last_used = self.clock;
        Some(i)
    }

    /// Read-only lookup without touching recency.
    pub(crate) fn peek(&self, ssrc: u32) -> Option<&SsrcState> {
        self.slots.iter().find(|s| s.in_use && s.ssrc == ssrc)
    }

    /// The slot of `ssrc`, creating it if needed. With `evict`, a full table
    /// gives up its least recently used slot; without, it returns
    /// [`SrtpError::TooManySsrcs`].
    pub(crate) fn find_or_insert(&mut self, ssrc: u32, evict: bool) -> Result<usize, SrtpError> {
        if let Some(i) = self.find(ssrc) {
            return Ok(i);
        }
        let i = match self.slots.iter().position(|s| !s.in_use) {
            Some(i) => i,
            None if evict => self
                .slots
                .iter()
                .enumerate()
                .min_by_key(|(_, s)| s.last_used)
                .map(|(i, _)| i)
                .ok_or(SrtpError::TooManySsrcs)?,
            None => return Err(SrtpError::TooManySsrcs),
        };
        self.clock = self.clock.wrapping_add(1);
        let s = &mut self.slots[i];
        s.ssrc = ssrc;
        s.in_use = true;
        s.last_used = self.clock;
        s.rtp_highest = None;
        s.rtp_window.reset();
        s.rtcp_next = 0;
        s.rtcp_window.reset();
        Ok(i)
    }

    pub(crate) fn slot_mut(&mut self, i: usize) -> &mut SsrcState {
        &mut self.slots[i]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicts_least_recently_used_or_refuses() {
        let mut t = SsrcTable::new(2, 64).unwrap();
        let a = t.find_or_insert(1, false).unwrap();
        t.slot_mut(a).rtcp_next = 7;
        t.find_or_insert(2, false).unwrap();
        assert_eq!(t.find_or_insert(3, false), Err(SrtpError::TooManySsrcs));
        // Touch 1 so 2 is the eviction victim.
        t.find(1).unwrap();
        let c = t.find_or_insert(3, true).unwrap();
        assert!(t.peek(2).is_none());
        assert_eq!(t.peek(1).unwrap().rtcp_next, 7);
        assert_eq!(t.slot_mut(c).rtcp_next, 0);
    }
}
