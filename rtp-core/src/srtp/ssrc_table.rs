//! Fixed-capacity per-SSRC state: SRTP rollover tracking and replay window,
//! SRTCP send index and replay window (RFC 3711 §3.2.1 "per-SSRC" items).
//!
//! A small vector scanned linearly: contexts carry a handful of SSRCs, so a
//! scan beats hashing. Everything is allocated at construction — room for
//! `capacity` slots and one block with every slot's two replay bitmaps — but a
//! slot is written only when an SSRC first needs it, and reset in place when a
//! full table reuses it. A subscriber's context is sized for every track it may
//! ever receive (132 SSRCs) and uses two or three: written up front, with a
//! bitmap allocation each, the unused slots were ~25 KB of every context
//! (docs/decisions.md D115).

use super::replay::WindowCore;
use super::SrtpError;

/// State kept for one SSRC; its replay bitmaps are in the table's block.
#[derive(Debug)]
pub(crate) struct SsrcState {
    pub(crate) ssrc: u32,
    last_used: u64,
    /// Highest SRTP packet index (ROC << 16 | SEQ) sent or authenticated.
    pub(crate) rtp_highest: Option<u64>,
    /// Next SRTCP index to send (31 bits).
    pub(crate) rtcp_next: u32,
    /// The SRTP and SRTCP replay windows, indexed by [`Window`].
    windows: [WindowCore; 2],
}

/// The per-SSRC slots of one context.
#[derive(Debug)]
pub(crate) struct SsrcTable {
    /// The SSRCs seen so far, at most `capacity` (reserved up front).
    slots: Vec<SsrcState>,
    capacity: usize,
    /// Slot `i`'s SRTP bitmap at `2·i·words`, its SRTCP bitmap right after.
    bits: Vec<u64>,
    /// A fresh window of the configured size (validated at construction).
    window: WindowCore,
    /// Monotonic use counter for least-recently-used eviction.
    clock: u64,
}

/// Which of a slot's two replay windows.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Window {
    Rtp = 0,
    Rtcp = 1,
}

impl SsrcTable {
    pub(crate) fn new(capacity: usize, window: usize) -> Result<Self, SrtpError> {
        if capacity == 0 {
            return Err(SrtpError::BadConfig);
        }
        let window = WindowCore::new(window)?;
        Ok(Self {
            slots: Vec::with_capacity(capacity),
            capacity,
            bits: vec![0; capacity * 2 * window.words()],
            window,
            clock: 0,
        })
    }

    /// The slot of `ssrc`, marking it used.
    pub(crate) fn find(&mut self, ssrc: u32) -> Option<usize> {
        let i = self.position(ssrc)?;
        self.clock = self.clock.wrapping_add(1);
        self.slots[i].last_used = self.clock;
        Some(i)
    }

    /// The slot of `ssrc` without touching recency.
    pub(crate) fn position(&self, ssrc: u32) -> Option<usize> {
        self.slots.iter().position(|s| s.ssrc == ssrc)
    }

    /// Read-only lookup without touching recency.
    pub(crate) fn peek(&self, ssrc: u32) -> Option<&SsrcState> {
        self.position(ssrc).map(|i| &self.slots[i])
    }

    /// The slot of `ssrc`, creating it if needed. With `evict`, a full table
    /// gives up its least recently used slot; without, it returns
    /// [`SrtpError::TooManySsrcs`].
    pub(crate) fn find_or_insert(&mut self, ssrc: u32, evict: bool) -> Result<usize, SrtpError> {
        if let Some(i) = self.find(ssrc) {
            return Ok(i);
        }
        self.clock = self.clock.wrapping_add(1);
        if self.slots.len() < self.capacity {
            // Within the reservation, and its bitmaps never written: nothing allocates.
            self.slots.push(SsrcState {
                ssrc,
                last_used: self.clock,
                rtp_highest: None,
                rtcp_next: 0,
                windows: [self.window; 2],
            });
            return Ok(self.slots.len() - 1);
        }
        if !evict {
            return Err(SrtpError::TooManySsrcs);
        }
        let i = self
            .slots
            .iter()
            .enumerate()
            .min_by_key(|(_, s)| s.last_used)
            .map(|(i, _)| i)
            .ok_or(SrtpError::TooManySsrcs)?;
        let s = &mut self.slots[i];
        s.ssrc = ssrc;
        s.last_used = self.clock;
        s.rtp_highest = None;
        s.rtcp_next = 0;
        for w in [Window::Rtp, Window::Rtcp] {
            let (core, bits) = self.window_mut(i, w);
            core.reset(bits);
        }
        Ok(i)
    }

    pub(crate) fn state(&self, i: usize) -> &SsrcState {
        &self.slots[i]
    }

    pub(crate) fn slot_mut(&mut self, i: usize) -> &mut SsrcState {
        &mut self.slots[i]
    }

    /// Whether slot `i`'s `which` window would accept `index` (see `WindowCore::check`).
    pub(crate) fn check(&self, i: usize, which: Window, index: u64) -> Result<(), SrtpError> {
        self.slots[i].windows[which as usize].check(&self.bits[self.bits_of(i, which)], index)
    }

    /// Records `index` in slot `i`'s `which` window (after it authenticated).
    pub(crate) fn update(&mut self, i: usize, which: Window, index: u64) {
        let (core, bits) = self.window_mut(i, which);
        core.update(bits, index);
    }

    fn window_mut(&mut self, i: usize, which: Window) -> (&mut WindowCore, &mut [u64]) {
        let bits = self.bits_of(i, which);
        (
            &mut self.slots[i].windows[which as usize],
            &mut self.bits[bits],
        )
    }

    /// Where slot `i`'s `which` bitmap lies in the block.
    fn bits_of(&self, i: usize, which: Window) -> std::ops::Range<usize> {
        let words = self.window.words();
        let at = (2 * i + which as usize) * words;
        at..at + words
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

    #[test]
    fn makes_slots_as_ssrcs_come_and_stops_at_capacity() {
        let mut t = SsrcTable::new(132, 128).unwrap();
        let reserved = t.slots.capacity();
        assert_eq!(t.slots.len(), 0, "nothing made before an SSRC needs it");
        let made = allocation_counter::measure(|| {
            t.find_or_insert(7, false).unwrap();
            t.find_or_insert(8, false).unwrap();
            t.find_or_insert(7, false).unwrap();
            t.update(1, Window::Rtcp, 40);
        });
        assert_eq!(made.count_total, 0, "a new SSRC's slot allocates nothing");
        assert_eq!(t.slots.len(), 2);
        assert_eq!(t.check(1, Window::Rtcp, 40), Err(SrtpError::Replayed));
        assert_eq!(
            t.check(1, Window::Rtp, 40),
            Ok(()),
            "the two windows are apart"
        );
        assert_eq!(t.check(0, Window::Rtcp, 40), Ok(()), "and so are the slots");
        for ssrc in 100..230 {
            t.find_or_insert(ssrc, false).unwrap();
        }
        assert_eq!(t.slots.len(), 132);
        assert_eq!(t.find_or_insert(999, false), Err(SrtpError::TooManySsrcs));
        assert!(t.find_or_insert(999, true).is_ok());
        assert_eq!(t.slots.len(), 132);
        assert_eq!(
            t.slots.capacity(),
            reserved,
            "never grown past the reservation"
        );
        assert!(
            SsrcTable::new(4, 63).is_err(),
            "a window below the RFC's 64 is refused"
        );
    }
}
