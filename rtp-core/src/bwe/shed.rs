//! Trunk shedding (cascade, issue 16, D109): a trunk carries one relay per (track, layer) that
//! the far node's subscribers want; when what they cost is more than the trunk's estimate,
//! relays are suspended top-down and resumed with hysteresis.
//!
//! Order: the highest relayed layer of the video track with the most layers still flowing goes
//! first (ties: the dearer layer, then the later slot), so every track keeps its lowest relayed
//! layer for as long as another track has two; a track's last flowing layer and audio are never
//! shed (the far side's subscribers keep a picture and their sound; the pacer serves audio
//! first anyway). Shedding is immediate, as many relays as it takes to fit the estimate.
//! Resuming is one relay at a time, the reverse of the order above (the lowest shed layer of the
//! track with the fewest flowing), once the estimate has covered what flows plus
//! [`ShedConfig::resume_headroom`] × that layer's rate for [`ShedConfig::resume_hold`]
//! without a break: at most one resume per hold, and a relay is shed again only after one,
//! which bounds the notifications changes raise. Fixed storage, time passed in.

use std::time::{Duration, Instant};

/// Tuning of the [`Shedder`].
#[derive(Debug, Clone, Copy)]
pub struct ShedConfig {
    /// A shed relay resumes when the estimate covers what flows plus this multiple of its rate...
    pub resume_headroom: f64,
    /// ...for this long without a break.
    pub resume_hold: Duration,
}

impl Default for ShedConfig {
    fn default() -> Self {
        Self {
            resume_headroom: 1.2,
            resume_hold: Duration::from_secs(2),
        }
    }
}

/// One relay as the shedder sees it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RelayLoad {
    /// The relays of one track share it (the layers of one source).
    pub group: u64,
    /// The relayed layer (0 = lowest).
    pub layer: u8,
    /// Audio is never shed.
    pub audio: bool,
    /// What the relay costs (the source layer's measured rate), bits per second.
    pub rate_bps: u64,
}

/// Which relays of a trunk are shed; one slot per relay slot of the session.
#[derive(Debug)]
pub struct Shedder {
    cfg: ShedConfig,
    shed: Vec<bool>,
    /// Since when the estimate has allowed the next resume (cleared by any break).
    headroom_since: Option<Instant>,
    /// Relays shed now.
    shed_count: u32,
}

impl Shedder {
    /// A shedder for `slots` relay slots, none shed.
    pub fn new(cfg: ShedConfig, slots: usize) -> Self {
        Self {
            cfg,
            shed: vec![false; slots],
            headroom_since: None,
            shed_count: 0,
        }
    }

    /// Whether slot `i` is shed.
    pub fn is_shed(&self, i: usize) -> bool {
        self.shed.get(i).copied().unwrap_or(false)
    }

    /// Relays shed now.
    pub fn shed_count(&self) -> u32 {
        self.shed_count
    }

    /// Slot `i` was emptied or refilled: it starts unshed.
    pub fn reset(&mut self, i: usize) {
        if let Some(s) = self.shed.get_mut(i) {
            if *s {
                self.shed_count -= 1;
            }
            *s = false;
        }
    }

    /// What the estimator should probe towards: what all relays would cost, shed or not, and
    /// at least what the next resume needs (what flows + the headroom × that relay's rate).
    /// Without the headroom an estimate between the two would stop the probes short of the
    /// resume for good (a trunk's estimate rises only by probing while little flows).
    pub fn wanted_bps(&self, loads: &[Option<RelayLoad>]) -> u64 {
        let all: u64 = loads.iter().flatten().map(|l| l.rate_bps).sum();
        let resume = self.next_to_resume(loads).map_or(0, |i| {
            let rate = loads[i].map_or(0, |l| l.rate_bps) as f64;
            (self.flowing_bps(loads) as f64 + self.cfg.resume_headroom * rate).ceil() as u64
        });
        all.max(resume)
    }

    /// What the relays that flow cost.
    pub fn flowing_bps(&self, loads: &[Option<RelayLoad>]) -> u64 {
        loads
            .iter()
            .enumerate()
            .filter(|(i, _)| !self.is_shed(*i))
            .filter_map(|(_, l)| l.map(|l| l.rate_bps))
            .sum()
    }

    /// One decision at `now` with the trunk's estimate: sheds what does not fit, or resumes
    /// one relay once the hold has passed; `changed(slot, shed)` hears each change.
    pub fn update(
        &mut self,
        now: Instant,
        estimate_bps: u64,
        loads: &[Option<RelayLoad>],
        mut changed: impl FnMut(usize, bool),
    ) {
        // Empty slots are never shed (a removed relay was reset; be safe anyway).
        for i in 0..self.shed.len() {
            if self.shed[i] && loads.get(i).is_none_or(Option::is_none) {
                self.reset(i);
            }
        }
        let mut flowing = self.flowing_bps(loads);
        let mut shed_any = false;
        while flowing > estimate_bps {
            let Some(i) = self.next_to_shed(loads) else {
                break;
            };
            self.shed[i] = true;
            self.shed_count += 1;
            flowing = flowing.saturating_sub(loads[i].map_or(0, |l| l.rate_bps));
            shed_any = true;
            changed(i, true);
        }
        if shed_any {
            self.headroom_since = None;
            return;
        }
        let Some(i) = self.next_to_resume(loads) else {
            self.headroom_since = None;
            return;
        };
        let rate = loads[i].map_or(0, |l| l.rate_bps) as f64;
        if (estimate_bps as f64) < flowing as f64 + self.cfg.resume_headroom * rate {
            self.headroom_since = None;
            return;
        }
        let since = *self.headroom_since.get_or_insert(now);
        if now.saturating_duration_since(since) >= self.cfg.resume_hold {
            self.shed[i] = false;
            self.shed_count -= 1;
            // The next resume needs its own hold.
            self.headroom_since = None;
            changed(i, false);
        }
    }

    /// Flowing layers of `group`.
    fn flowing_in(&self, loads: &[Option<RelayLoad>], group: u64) -> usize {
        loads
            .iter()
            .enumerate()
            .filter(|(i, l)| !self.is_shed(*i) && l.is_some_and(|l| !l.audio && l.group == group))
            .count()
    }

    /// The flowing video relay to shed next: the highest layer of the track with the most
    /// flowing layers, never a track's last one.
    fn next_to_shed(&self, loads: &[Option<RelayLoad>]) -> Option<usize> {
        let mut best: Option<(usize, (usize, u8, u64, usize))> = None;
        for (i, l) in loads.iter().enumerate() {
            let Some(l) = l.filter(|l| !l.audio && !self.is_shed(i)) else {
                continue;
            };
            let n = self.flowing_in(loads, l.group);
            if n < 2 {
                continue;
            }
            let key = (n, l.layer, l.rate_bps, i);
            if best.is_none_or(|(_, k)| key > k) {
                best = Some((i, key));
            }
        }
        best.map(|(i, _)| i)
    }

    /// The shed relay to resume next: the lowest shed layer of the track with the fewest
    /// flowing layers (the reverse of [`Self::next_to_shed`]).
    fn next_to_resume(&self, loads: &[Option<RelayLoad>]) -> Option<usize> {
        let mut best: Option<(usize, (usize, u8, u64, usize))> = None;
        for (i, l) in loads.iter().enumerate() {
            let Some(l) = l.filter(|_| self.is_shed(i)) else {
                continue;
            };
            let key = (self.flowing_in(loads, l.group), l.layer, l.rate_bps, i);
            if best.is_none_or(|(_, k)| key < k) {
                best = Some((i, key));
            }
        }
        best.map(|(i, _)| i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[allow(clippy::disallowed_methods)] // tests need some base instant
    fn t0() -> Instant {
        Instant::now()
    }

    fn video(group: u64, layer: u8, rate_bps: u64) -> Option<RelayLoad> {
        Some(RelayLoad {
            group,
            layer,
            audio: false,
            rate_bps,
        })
    }

    fn audio(group: u64) -> Option<RelayLoad> {
        Some(RelayLoad {
            group,
            layer: 0,
            audio: true,
            rate_bps: 40_000,
        })
    }

    /// Track 1: three layers; track 2: two layers; track 3: audio.
    fn loads() -> Vec<Option<RelayLoad>> {
        vec![
            audio(3),
            video(1, 0, 150_000),
            video(1, 1, 500_000),
            video(1, 2, 1_500_000),
            None,
            video(2, 0, 200_000),
            video(2, 2, 1_000_000),
        ]
    }

    fn shed_set(s: &Shedder, n: usize) -> Vec<usize> {
        (0..n).filter(|&i| s.is_shed(i)).collect()
    }

    #[test]
    fn sheds_top_layers_of_the_fullest_track_first_and_never_audio_or_a_last_layer() {
        let t = t0();
        let l = loads();
        let mut s = Shedder::new(ShedConfig::default(), l.len());
        let total = s.wanted_bps(&l);
        assert_eq!(total, 3_390_000);
        let mut order = Vec::new();
        // Everything fits: nothing shed.
        s.update(t, total, &l, |i, shed| order.push((i, shed)));
        assert!(order.is_empty());
        // Estimates falling step by step: the order relays go in.
        for est in [3_000_000, 1_500_000, 1_000_000, 500_000, 0] {
            s.update(t, est, &l, |i, shed| order.push((i, shed)));
            println!(
                "estimate {est}: shed {:?}, flowing {} bps",
                shed_set(&s, l.len()),
                s.flowing_bps(&l)
            );
        }
        // Track 1 (three layers) loses layer 2; then tracks 1 and 2 have two each: track 2's
        // layer 2 (the higher layer) before track 1's layer 1.
        assert_eq!(order, vec![(3, true), (6, true), (2, true)]);
        // Audio and each track's lowest layer always flow.
        assert_eq!(shed_set(&s, l.len()), vec![2, 3, 6]);
        assert_eq!(s.flowing_bps(&l), 40_000 + 150_000 + 200_000);
        assert_eq!(s.shed_count(), 3);
    }

    #[test]
    fn resumes_in_reverse_order_after_holding_headroom() {
        let mut t = t0();
        let l = loads();
        let mut s = Shedder::new(ShedConfig::default(), l.len());
        s.update(t, 0, &l, |_, _| {});
        assert_eq!(shed_set(&s, l.len()), vec![2, 3, 6]);
        let mut events = Vec::new();
        // Enough for everything, but only one relay per 2 s hold comes back.
        let mut resumed_at = Vec::new();
        for step in 0..=70 {
            s.update(t, 10_000_000, &l, |i, shed| {
                events.push((i, shed));
                resumed_at.push(step * 100);
            });
            t += Duration::from_millis(100);
        }
        println!("resumed {events:?} at {resumed_at:?} ms");
        // The reverse: track 1's layer 1 (both tracks have one flowing; the lower layer), then
        // track 2's layer 2 (one flowing against track 1's two), then track 1's layer 2.
        assert_eq!(events, vec![(2, false), (6, false), (3, false)]);
        assert_eq!(resumed_at, vec![2000, 4100, 6200]);
    }

    #[test]
    fn the_estimator_is_asked_for_what_the_next_resume_needs() {
        let t = t0();
        let l = vec![video(1, 0, 150_000), video(1, 1, 500_000)];
        let mut s = Shedder::new(ShedConfig::default(), l.len());
        assert_eq!(s.wanted_bps(&l), 650_000, "nothing shed: what all cost");
        s.update(t, 400_000, &l, |_, _| {});
        assert!(s.is_shed(1));
        // All cost 650k, but resuming layer 1 needs 150k + 1.2 × 500k = 750k: an estimate of
        // 700k must still probe, or it never gets there (cascade_shed found it stuck).
        assert_eq!(s.wanted_bps(&l), 750_000);
    }

    #[test]
    fn a_break_in_headroom_restarts_the_hold_and_too_little_never_resumes() {
        let mut t = t0();
        let l = vec![video(1, 0, 150_000), video(1, 1, 500_000)];
        let mut s = Shedder::new(ShedConfig::default(), l.len());
        s.update(t, 400_000, &l, |_, _| {});
        assert!(s.is_shed(1));
        // 150k flowing + 1.2 × 500k = 750k needed; 700k is not enough, however long.
        let mut changed = 0;
        for _ in 0..50 {
            t += Duration::from_millis(100);
            s.update(t, 700_000, &l, |_, _| changed += 1);
        }
        assert_eq!(changed, 0, "under the headroom");
        // 1.9 s of enough, one dip, then 1.9 s again: still shed.
        for est in std::iter::repeat_n(800_000, 19)
            .chain([600_000])
            .chain(std::iter::repeat_n(800_000, 19))
        {
            t += Duration::from_millis(100);
            s.update(t, est, &l, |_, _| changed += 1);
        }
        assert_eq!(changed, 0, "the dip restarted the hold");
        for _ in 0..2 {
            t += Duration::from_millis(100);
            s.update(t, 800_000, &l, |_, _| changed += 1);
        }
        assert_eq!(changed, 1);
        assert!(!s.is_shed(1));
    }

    #[test]
    fn an_emptied_slot_is_not_shed_and_counts_stay_right() {
        let t = t0();
        let mut l = vec![video(1, 0, 150_000), video(1, 1, 500_000)];
        let mut s = Shedder::new(ShedConfig::default(), 4);
        l.resize(4, None);
        s.update(t, 200_000, &l, |_, _| {});
        assert_eq!(s.shed_count(), 1);
        l[1] = None;
        s.update(t, 200_000, &l, |_, _| {});
        assert_eq!((s.shed_count(), s.is_shed(1)), (0, false));
        s.reset(1);
        s.reset(9);
        assert_eq!(s.shed_count(), 0);
    }
}
