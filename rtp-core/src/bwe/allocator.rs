//! Stream allocator: splits a subscriber's bandwidth budget over its video
//! tracks by choosing one simulcast/spatial layer per track.
//!
//! Never starve: every track gets its lowest layer, even over budget — a single-layer track
//! is never paused, and a simulcast track drops to its lowest layer before anything is paused.
//! Pausing exists only behind [`AllocatorConfig::allow_pause`] (off by default): then, when even
//! the lowest layers do not fit, simulcast tracks are paused from the lowest priority up.
//! Then tracks are upgraded one step at a time in priority order with what is left. Upgrades
//! (and resuming a paused track) need headroom and must hold for a while (hysteresis), then
//! go straight to the best layer affordable with headroom; downgrades are immediate.

use std::cmp::Reverse;
use std::time::{Duration, Instant};

/// Most spatial layers per track.
pub const MAX_LAYERS: usize = 3;

/// One spatial layer as the publisher currently offers it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Layer {
    /// Bitrate of this layer's stream.
    pub bitrate_bps: u64,
    /// Whether the publisher is sending it.
    pub available: bool,
}

/// What a subscriber's track asks for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TrackDemand {
    /// Weight: higher is served first (e.g. host/controller over viewer).
    pub priority: u8,
    /// Layers from lowest (0) to highest; `bitrate_bps` is what the publisher really sends
    /// on each (measured on ingress).
    pub layers: [Layer; MAX_LAYERS],
    /// Highest layer the subscriber wants.
    pub max_layer: u8,
    /// Subscriber paused the track.
    pub paused: bool,
}

impl TrackDemand {
    fn usable(&self, l: usize) -> bool {
        l <= usize::from(self.max_layer) && self.layers.get(l).is_some_and(|x| x.available)
    }

    fn lowest(&self) -> Option<usize> {
        (0..MAX_LAYERS).find(|&l| self.usable(l))
    }

    fn next_above(&self, l: usize) -> Option<usize> {
        (l + 1..MAX_LAYERS).find(|&k| self.usable(k))
    }

    fn highest(&self) -> Option<usize> {
        (0..MAX_LAYERS).rev().find(|&l| self.usable(l))
    }

    /// A track the allocator may pause (when allowed): more than one usable layer.
    fn pausable(&self) -> bool {
        (0..MAX_LAYERS).filter(|&l| self.usable(l)).count() > 1
    }

    fn cost(&self, l: Option<usize>) -> u64 {
        l.map_or(0, |l| self.layers[l].bitrate_bps)
    }
}

/// Tuning of the [`Allocator`].
#[derive(Debug, Clone, Copy)]
pub struct AllocatorConfig {
    /// Most tracks per subscriber (storage is sized by it).
    pub max_tracks: usize,
    /// An upgrade needs the budget to cover it × (1 + margin).
    pub upgrade_margin: f64,
    /// ...continuously for this long.
    pub upgrade_hold: Duration,
    /// May pause simulcast tracks when even every track's lowest layer exceeds the budget
    /// (off: everything keeps flowing at its lowest layer, over budget). Single-layer tracks
    /// are never paused.
    pub allow_pause: bool,
}

impl Default for AllocatorConfig {
    fn default() -> Self {
        Self {
            max_tracks: 16,
            upgrade_margin: 0.1,
            upgrade_hold: Duration::from_secs(1),
            allow_pause: false,
        }
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct TrackState {
    /// Allocated before (a new track takes what fits at once, without the upgrade hold).
    seen: bool,
    current: Option<usize>,
    /// Since when an upgrade has been affordable.
    upgrade_since: Option<Instant>,
    /// Scratch: greedy result at the full budget / at budget ÷ (1 + margin).
    full: Option<usize>,
    margin: Option<usize>,
    /// Not sent because the budget could not carry it (only with `allow_pause`).
    bwe_paused: bool,
}

/// Chooses a layer per track for one subscriber. Storage is allocated in
/// [`Allocator::new`]; [`Allocator::allocate`] does not allocate.
#[derive(Debug)]
pub struct Allocator {
    cfg: AllocatorConfig,
    state: Vec<TrackState>,
    order: Vec<usize>,
    started: bool,
    desired_bps: u64,
}

impl Allocator {
    /// An allocator for up to `cfg.max_tracks` tracks.
    pub fn new(cfg: AllocatorConfig) -> Self {
        Self {
            state: vec![TrackState::default(); cfg.max_tracks],
            order: Vec::with_capacity(cfg.max_tracks),
            started: false,
            desired_bps: 0,
            cfg,
        }
    }

    /// Forgets a track slot's history (its track went away or was replaced).
    pub fn reset_track(&mut self, index: usize) {
        if let Some(s) = self.state.get_mut(index) {
            *s = TrackState::default();
        }
    }

    /// Whether the allocator paused track `index` (its lowest layer did not fit and pausing
    /// is allowed).
    pub fn bwe_paused(&self, index: usize) -> bool {
        self.state.get(index).is_some_and(|s| s.bwe_paused)
    }

    /// What the tracks of the last [`Allocator::allocate`] would take with no budget limit
    /// (each at its best wanted layer): above the budget, the owner should probe for more.
    pub fn desired_bps(&self) -> u64 {
        self.desired_bps
    }

    fn set_pick(&mut self, i: usize, pick: Option<usize>, into_margin: bool) {
        let s = &mut self.state[i];
        if into_margin {
            s.margin = pick;
        } else {
            s.full = pick;
        }
    }

    /// Greedy allocation of `budget` into `TrackState::full` (or `margin`).
    fn greedy(&mut self, demands: &[TrackDemand], budget: u64, into_margin: bool) {
        // Every track's lowest layer, over budget if need be: nothing starves.
        let mut need = 0u64;
        for k in 0..self.order.len() {
            let i = self.order[k];
            let d = &demands[i];
            let pick = if d.paused { None } else { d.lowest() };
            need = need.saturating_add(d.cost(pick));
            self.set_pick(i, pick, into_margin);
        }
        // Over budget, and pausing allowed: simulcast tracks give way, lowest priority first.
        if self.cfg.allow_pause {
            for k in (0..self.order.len()).rev() {
                if need <= budget {
                    break;
                }
                let i = self.order[k];
                let d = &demands[i];
                let s = &self.state[i];
                let pick = if into_margin { s.margin } else { s.full };
                if pick.is_some() && d.pausable() {
                    need -= d.cost(pick);
                    self.set_pick(i, None, into_margin);
                }
            }
        }
        let mut left = budget.saturating_sub(need);
        // Upgrade passes: one step per track per pass, priority order.
        loop {
            let mut upgraded = false;
            for &i in &self.order {
                let d = &demands[i];
                let s = &mut self.state[i];
                let cur = if into_margin { s.margin } else { s.full };
                let Some(c) = cur else { continue };
                let Some(n) = d.next_above(c) else { continue };
                let extra = d.cost(Some(n)).saturating_sub(d.cost(Some(c)));
                if extra <= left {
                    left -= extra;
                    if into_margin {
                        s.margin = Some(n);
                    } else {
                        s.full = Some(n);
                    }
                    upgraded = true;
                }
            }
            if !upgraded {
                break;
            }
        }
    }

    /// Chooses a layer for each of `demands` into `out` (same index; `None`
    /// = not sent) and returns the bitrate allocated. Tracks beyond
    /// `max_tracks` or `out.len()` get nothing.
    pub fn allocate(
        &mut self,
        now: Instant,
        budget_bps: u64,
        demands: &[TrackDemand],
        out: &mut [Option<u8>],
    ) -> u64 {
        let n = demands.len().min(self.state.len()).min(out.len());
        for o in out.iter_mut() {
            *o = None;
        }
        self.order.clear();
        self.order.extend(0..n);
        // Unstable sort does not allocate; the index key makes it deterministic.
        self.order
            .sort_unstable_by_key(|&i| (Reverse(demands[i].priority), i));

        self.greedy(demands, budget_bps, false);
        let with_margin = (budget_bps as f64 / (1.0 + self.cfg.upgrade_margin.max(0.0))) as u64;
        self.greedy(demands, with_margin, true);
        self.desired_bps = (0..n)
            .filter(|&i| !demands[i].paused)
            .map(|i| demands[i].cost(demands[i].highest()))
            .sum();

        let first = !self.started;
        self.started = true;
        let hold = self.cfg.upgrade_hold;
        let mut total = 0u64;
        for i in 0..n {
            let d = &demands[i];
            let s = &mut self.state[i];
            // The current layer may have vanished or exceed a new preference.
            let cur = s.current.filter(|&l| d.usable(l) && !d.paused);
            let vanished = s.current.is_some() && cur.is_none() && !d.paused;
            let fresh = !s.seen && !d.paused && d.lowest().is_some();
            s.seen |= fresh;
            let next = if first || fresh || vanished {
                // No history to protect (or it is void): take what fits with headroom.
                s.upgrade_since = None;
                s.margin.min(s.full)
            } else if cur > s.full {
                // Downgrade now, to what fits with the upgrade's headroom: the path just said it
                // is full, and a layer that only just fits keeps it full — the next decrease
                // would force a second switch and a second keyframe (downlink_cap: 339 kbit/s
                // under a 400 kbit/s cap took a 312 kbit/s middle layer, then the low one).
                s.upgrade_since = None;
                s.margin.min(s.full)
            } else if cur < s.margin.min(s.full) {
                // Affordable with headroom: after holding, straight to the best such layer.
                let since = *s.upgrade_since.get_or_insert(now);
                if now.saturating_duration_since(since) >= hold {
                    s.upgrade_since = None;
                    s.margin.min(s.full)
                } else {
                    cur
                }
            } else {
                s.upgrade_since = None;
                cur
            };
            s.current = next;
            s.bwe_paused = next.is_none() && !d.paused && d.lowest().is_some();
            out[i] = next.map(|l| l as u8);
            total += d.cost(next);
        }
        total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[allow(clippy::disallowed_methods)] // tests need some base instant
    fn t0() -> Instant {
        Instant::now()
    }

    fn track(priority: u8, rates: [u64; 3]) -> TrackDemand {
        TrackDemand {
            priority,
            layers: rates.map(|bitrate_bps| Layer {
                bitrate_bps,
                available: true,
            }),
            max_layer: 2,
            paused: false,
        }
    }

    const R: [u64; 3] = [100_000, 300_000, 1_200_000];

    #[test]
    fn nothing_starves_by_default() {
        let t = t0();
        let mut a = Allocator::new(AllocatorConfig::default());
        let d = [track(1, R), track(9, R), track(5, R)];
        let mut out = [None; 3];
        // 300 kbit/s of lowest layers on a 250 kbit/s budget: all still flow.
        assert_eq!(a.allocate(t, 250_000, &d, &mut out), 300_000);
        assert_eq!(out, [Some(0), Some(0), Some(0)]);
        assert!(!a.bwe_paused(0));
        // Even on nothing.
        a.allocate(t, 0, &d, &mut out);
        assert_eq!(out, [Some(0), Some(0), Some(0)]);
        assert_eq!(a.desired_bps(), 3 * 1_200_000);
    }

    #[test]
    fn pausing_when_allowed_takes_simulcast_lowest_priority_first_never_single_layer() {
        let t = t0();
        let mut a = Allocator::new(AllocatorConfig {
            allow_pause: true,
            ..AllocatorConfig::default()
        });
        let mut single = track(0, [400_000, 0, 0]);
        single.max_layer = 0;
        let d = [track(1, R), track(9, R), track(5, R), single];
        let mut out = [None; 4];
        a.allocate(t, 250_000, &d, &mut out);
        // The single-layer track (lowest priority) keeps flowing; simulcast tracks pause from
        // the lowest priority up until the rest fits (here: none fits next to it).
        assert_eq!(out, [None, None, None, Some(0)]);
        assert!(a.bwe_paused(0) && a.bwe_paused(1) && a.bwe_paused(2) && !a.bwe_paused(3));
        let mut a = Allocator::new(AllocatorConfig {
            allow_pause: true,
            ..AllocatorConfig::default()
        });
        let d = [track(1, R), track(9, R), track(5, R)];
        let mut out = [None; 3];
        a.allocate(t, 250_000, &d, &mut out);
        assert_eq!(out, [None, Some(0), Some(0)]);
        // Resumed once the budget allows it with headroom, after the hold.
        a.allocate(t + Duration::from_millis(100), 400_000, &d, &mut out);
        assert_eq!(out, [None, Some(0), Some(0)]);
        a.allocate(t + Duration::from_millis(1200), 400_000, &d, &mut out);
        assert_eq!(out, [Some(0), Some(0), Some(0)]);
    }

    #[test]
    fn upgrades_round_robin_by_priority() {
        let t = t0();
        let mut a = Allocator::new(AllocatorConfig::default());
        let d = [track(1, R), track(9, R)];
        let mut out = [None; 2];
        // 2 lows (200k) + one step to mid for the higher priority (+200k).
        let total = a.allocate(t, 500_000, &d, &mut out);
        assert_eq!(out, [Some(0), Some(1)]);
        assert_eq!(total, 400_000);
    }

    #[test]
    fn downgrade_immediate_upgrade_held_with_margin() {
        let t = t0();
        let ms = Duration::from_millis;
        let mut a = Allocator::new(AllocatorConfig::default());
        let d = [track(1, R)];
        let mut out = [None; 1];
        a.allocate(t, 2_000_000, &d, &mut out);
        assert_eq!(out, [Some(2)]);
        a.allocate(t + ms(100), 350_000, &d, &mut out);
        assert_eq!(out, [Some(1)]);
        // Exactly enough but no margin: stays.
        a.allocate(t + ms(200), 1_200_000, &d, &mut out);
        assert_eq!(out, [Some(1)]);
        // With margin: must hold 1 s first.
        a.allocate(t + ms(300), 1_400_000, &d, &mut out);
        assert_eq!(out, [Some(1)]);
        a.allocate(t + ms(1200), 1_400_000, &d, &mut out);
        assert_eq!(out, [Some(1)]);
        a.allocate(t + ms(1300), 1_400_000, &d, &mut out);
        assert_eq!(out, [Some(2)]);
        // Down to the lowest, then a budget for the top: one jump after the hold.
        a.allocate(t + ms(1400), 50_000, &d, &mut out);
        assert_eq!(out, [Some(0)]);
        a.allocate(t + ms(1500), 5_000_000, &d, &mut out);
        assert_eq!(out, [Some(0)]);
        a.allocate(t + ms(2500), 5_000_000, &d, &mut out);
        assert_eq!(out, [Some(2)]);
    }

    #[test]
    fn a_downgrade_lands_where_it_fits_with_headroom() {
        // downlink_cap's layers: a decrease to 339 kbit/s fits the 312 kbit/s middle layer only
        // just; the switch goes to the low layer at once (it went to the middle one, then, on the
        // next decrease, to the low one: two switches, two keyframes).
        let t = t0();
        let ms = Duration::from_millis;
        let mut a = Allocator::new(AllocatorConfig::default());
        let d = [track(1, [250_000, 312_000, 700_000])];
        let mut out = [None; 1];
        a.allocate(t, 2_000_000, &d, &mut out);
        assert_eq!(out, [Some(2)]);
        a.allocate(t + ms(100), 339_000, &d, &mut out);
        assert_eq!(out, [Some(0)]);
        // With room for the middle layer and its headroom, a downgrade stops there.
        a.allocate(t + ms(200), 2_000_000, &d, &mut out);
        a.allocate(t + ms(1300), 2_000_000, &d, &mut out);
        assert_eq!(out, [Some(2)]);
        a.allocate(t + ms(1400), 400_000, &d, &mut out);
        assert_eq!(out, [Some(1)]);
    }

    #[test]
    fn paused_unavailable_and_preference() {
        let t = t0();
        let mut a = Allocator::new(AllocatorConfig::default());
        let mut d = [track(1, R), track(1, R), track(1, R)];
        d[0].paused = true;
        d[1].layers[0].available = false;
        d[2].max_layer = 0;
        let mut out = [None; 3];
        a.allocate(t, 10_000_000, &d, &mut out);
        assert_eq!(out, [None, Some(2), Some(0)]);
        // The layer in use disappears: switch at once.
        d[1].layers[2].available = false;
        a.allocate(t, 10_000_000, &d, &mut out);
        assert_eq!(out[1], Some(1));
    }
}
