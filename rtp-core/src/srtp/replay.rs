//! Sliding replay window over packet indices (RFC 3711 §3.3.2).
//!
//! Bit `d` of the bitmap records whether index `top - d` was accepted. The
//! bitmap is allocated once, by the window ([`ReplayWindow`]) or by the SSRC table
//! that keeps it ([`WindowCore`]); checking and updating are separate so callers
//! can check before authentication and update only after.

use super::SrtpError;

/// Smallest window the RFC allows (RFC 3711 §3.3.2: at least 64).
pub(crate) const MIN_WINDOW: usize = 64;
/// Largest window this implementation accepts.
pub(crate) const MAX_WINDOW: usize = 4096;

/// A replay window of a fixed size over 64-bit packet indices, owning its bitmap.
#[derive(Debug, Clone)]
pub struct ReplayWindow {
    core: WindowCore,
    bits: Vec<u64>,
}

impl ReplayWindow {
    /// A window remembering the last `size` indices (64..=4096).
    pub fn new(size: usize) -> Result<Self, SrtpError> {
        let core = WindowCore::new(size)?;
        Ok(Self {
            bits: vec![0; core.words()],
            core,
        })
    }

    /// Forget every index (reuses the storage).
    pub fn reset(&mut self) {
        self.core.reset(&mut self.bits);
    }

    /// Highest index accepted so far.
    pub fn top(&self) -> Option<u64> {
        self.core.top()
    }

    /// Whether `index` would be accepted: new, or in the window and unseen.
    pub fn check(&self, index: u64) -> Result<(), SrtpError> {
        self.core.check(&self.bits, index)
    }

    /// Record `index` as received. Call only after [`check`](Self::check)
    /// passed and the packet authenticated.
    pub fn update(&mut self, index: u64) {
        self.core.update(&mut self.bits, index);
    }
}

/// A replay window's position, its bitmap kept by the caller ([`WindowCore::words`] words,
/// zero for a fresh window): an SSRC table keeps every slot's bitmap in one block made at
/// construction, so making a slot for a new SSRC allocates nothing.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WindowCore {
    size: u64,
    /// Highest accepted index; meaningless while `started` is false.
    top: u64,
    started: bool,
}

impl WindowCore {
    /// A window remembering the last `size` indices (64..=4096).
    pub(crate) fn new(size: usize) -> Result<Self, SrtpError> {
        if !(MIN_WINDOW..=MAX_WINDOW).contains(&size) {
            return Err(SrtpError::BadConfig);
        }
        Ok(Self {
            size: size as u64,
            top: 0,
            started: false,
        })
    }

    /// The bitmap's length in 64-bit words.
    pub(crate) fn words(&self) -> usize {
        (self.size as usize).div_ceil(64)
    }

    pub(crate) fn reset(&mut self, bits: &mut [u64]) {
        self.top = 0;
        self.started = false;
        bits.fill(0);
    }

    pub(crate) fn top(&self) -> Option<u64> {
        self.started.then_some(self.top)
    }

    pub(crate) fn check(&self, bits: &[u64], index: u64) -> Result<(), SrtpError> {
        if !self.started || index > self.top {
            return Ok(());
        }
        let delta = self.top - index;
        if delta >= self.size {
            return Err(SrtpError::TooOld);
        }
        if bit(bits, delta) {
            return Err(SrtpError::Replayed);
        }
        Ok(())
    }

    pub(crate) fn update(&mut self, bits: &mut [u64], index: u64) {
        if !self.started {
            self.started = true;
            self.top = index;
            bits.fill(0);
            bits[0] = 1;
            return;
        }
        if index > self.top {
            shift(bits, self.size, index - self.top);
            self.top = index;
            bits[0] |= 1;
        } else {
            let delta = self.top - index;
            if delta < self.size {
                bits[(delta / 64) as usize] |= 1 << (delta % 64);
            }
        }
    }
}

fn bit(bits: &[u64], delta: u64) -> bool {
    bits.get((delta / 64) as usize)
        .is_some_and(|w| w & (1 << (delta % 64)) != 0)
}

/// Age every entry of a `size`-index window by `by` positions, dropping those that leave it.
fn shift(bits: &mut [u64], size: u64, by: u64) {
    let n = bits.len();
    if by >= size || by >= (n as u64) * 64 {
        bits.fill(0);
        return;
    }
    let words = (by / 64) as usize;
    let shift = (by % 64) as u32;
    for i in (0..n).rev() {
        let v = if i < words {
            0
        } else {
            let src = i - words;
            let mut v = bits[src] << shift;
            if shift > 0 && src > 0 {
                v |= bits[src - 1] >> (64 - shift);
            }
            v
        };
        bits[i] = v;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exercise(size: usize) {
        let mut w = ReplayWindow::new(size).unwrap();
        let size = size as u64;
        let base = 1_000_000u64;
        assert_eq!(w.check(base), Ok(()));
        w.update(base);
        assert_eq!(w.check(base), Err(SrtpError::Replayed));
        // Jump ahead by exactly the window: base falls out.
        let top = base + size;
        w.update(top);
        assert_eq!(w.check(base), Err(SrtpError::TooOld));
        // The oldest in-window index is accepted once.
        let oldest = top - (size - 1);
        assert_eq!(w.check(oldest), Ok(()));
        w.update(oldest);
        assert_eq!(w.check(oldest), Err(SrtpError::Replayed));
        // Every index in the window is accepted exactly once, in any order.
        for d in (1..size - 1).rev().step_by(3) {
            assert_eq!(w.check(top - d), Ok(()), "delta {d}");
            w.update(top - d);
            assert_eq!(w.check(top - d), Err(SrtpError::Replayed));
        }
        // Shifts by arbitrary amounts keep the surviving bits.
        w.update(top - 3);
        w.update(top + 65);
        let expect = if size > 65 {
            Err(SrtpError::Replayed)
        } else {
            Err(SrtpError::TooOld)
        };
        assert_eq!(w.check(top), expect);
        assert_eq!(w.check(top + 64), Ok(()));
        let expect = if size > 68 {
            Err(SrtpError::Replayed)
        } else {
            Err(SrtpError::TooOld)
        };
        assert_eq!(w.check(top - 3), expect);
        if size > 64 {
            assert_eq!(w.check(top + 1), Ok(()));
        }
        assert_eq!(w.check(top + 65 - size), Err(SrtpError::TooOld));
        assert_eq!(w.check(top + 66), Ok(()));
    }

    #[test]
    fn window_64() {
        exercise(64);
    }

    #[test]
    fn window_128() {
        exercise(128);
    }

    #[test]
    fn window_1024() {
        exercise(1024);
    }

    #[test]
    fn window_odd_size() {
        exercise(100);
    }

    #[test]
    fn bounds() {
        assert_eq!(ReplayWindow::new(63).unwrap_err(), SrtpError::BadConfig);
        assert_eq!(ReplayWindow::new(4097).unwrap_err(), SrtpError::BadConfig);
    }

    #[test]
    fn reset_forgets() {
        let mut w = ReplayWindow::new(64).unwrap();
        w.update(5);
        w.reset();
        assert_eq!(w.top(), None);
        assert_eq!(w.check(5), Ok(()));
    }
}
