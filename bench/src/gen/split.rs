//! Two groups of subscribers in one run (`fanout --cascade`): subscribers `0..near` on the
//! publisher's SFU, the rest on another one behind a trunk. Their copies are counted and timed
//! apart, and every far copy is paired with subscriber 0's copy of the same packet (the
//! reference): `recv(far) − recv(reference)` is what the trunk adds to that packet, measured on
//! the generator's one clock.
//!
//! Pairing is done after the run: a far copy may be read before the reference's (the two
//! sockets are drained in whatever order epoll reports them), so both sides are kept — the
//! reference's latency per packet in a map, the far copies' in a list — each bounded by
//! [`SplitReport::cap`]; what does not fit is counted, never stored.

use std::collections::HashMap;

use crate::hist::Histogram;

/// Default bound of each of the reference map and the far-copy list (entries).
pub const PAIR_CAP: usize = 1 << 21;

/// What the two groups received (one generator thread's share until merged).
#[derive(Debug, Clone, Default)]
pub struct SplitReport {
    /// Subscribers `0..near` are on the publisher's SFU; subscriber 0 is the reference.
    pub near: u32,
    /// Window copies received per subscriber (index = global subscriber).
    pub per_sub: Vec<u64>,
    pub latency_near: Histogram,
    pub latency_far: Histogram,
    /// Bound of `reference` and of `far` (entries).
    pub cap: usize,
    /// The reference's latency (ns) per packet (`stream << 32 | seq`).
    reference: HashMap<u64, u64>,
    /// Each far copy's packet and latency (ns).
    far: Vec<(u64, u64)>,
    /// Copies not kept for pairing because a bound was reached.
    pub pairs_dropped: u64,
    /// The pairing, once [`SplitReport::pair`] has run.
    pub pairing: Option<Pairing>,
}

/// `recv(far copy) − recv(reference copy)` over every far copy whose packet the reference got
/// (`all`), and over each packet's first far copy only (`first`: the trunk's hop and one send
/// on the far side, without the far side's fan-out of the other copies).
#[derive(Debug, Clone, Default)]
pub struct Pairing {
    pub all: Spread,
    pub first: Spread,
    /// Far copies whose packet the reference never received.
    pub unpaired: u64,
}

/// A signed distribution (ns) by its count, median, 99th percentile and extremes.
#[derive(Debug, Clone, Copy, Default)]
pub struct Spread {
    pub count: u64,
    pub p50_ns: i64,
    pub p99_ns: i64,
    pub min_ns: i64,
    pub max_ns: i64,
}

impl Spread {
    /// Of `d`, which it sorts.
    fn of(d: &mut [i64]) -> Spread {
        d.sort_unstable();
        let at = |q: f64| {
            d.get((d.len().saturating_sub(1) as f64 * q).round() as usize)
                .copied()
                .unwrap_or(0)
        };
        Spread {
            count: d.len() as u64,
            p50_ns: at(0.5),
            p99_ns: at(0.99),
            min_ns: d.first().copied().unwrap_or(0),
            max_ns: d.last().copied().unwrap_or(0),
        }
    }
}

impl SplitReport {
    /// For `subscribers` in all, `near` of them local; room for `expected_far` far copies
    /// reserved up front (within `cap`) so the receive path does not reallocate as it goes.
    pub fn new(near: u32, subscribers: u32, expected_far: usize, cap: usize) -> Self {
        Self {
            near,
            per_sub: vec![0; subscribers as usize],
            cap,
            far: Vec::with_capacity(expected_far.min(cap)),
            ..Self::default()
        }
    }

    /// One counted window copy for subscriber `sub`: packet `seq` of `stream`, `lat_ns` late.
    pub fn note(&mut self, sub: u32, stream: u32, seq: u32, lat_ns: u64) {
        if let Some(n) = self.per_sub.get_mut(sub as usize) {
            *n += 1;
        }
        let key = (u64::from(stream) << 32) | u64::from(seq);
        if sub < self.near {
            self.latency_near.record(lat_ns);
            if sub == 0 {
                if self.reference.len() < self.cap {
                    self.reference.insert(key, lat_ns);
                } else {
                    self.pairs_dropped += 1;
                }
            }
        } else {
            self.latency_far.record(lat_ns);
            if self.far.len() < self.cap {
                self.far.push((key, lat_ns));
            } else {
                self.pairs_dropped += 1;
            }
        }
    }

    /// Adds another generator thread's share.
    pub fn absorb(&mut self, o: &SplitReport) {
        for (a, b) in self.per_sub.iter_mut().zip(&o.per_sub) {
            *a += b;
        }
        self.latency_near.merge(&o.latency_near);
        self.latency_far.merge(&o.latency_far);
        for (&k, &v) in &o.reference {
            if self.reference.len() < self.cap {
                self.reference.insert(k, v);
            } else {
                self.pairs_dropped += 1;
            }
        }
        let room = self.cap.saturating_sub(self.far.len());
        let take = o.far.len().min(room);
        self.far.extend_from_slice(&o.far[..take]);
        self.pairs_dropped += o.pairs_dropped + (o.far.len() - take) as u64;
    }

    /// Pairs every far copy with the reference's copy of its packet (then frees both lists).
    pub fn pair(&mut self) {
        // By packet, earliest copy first.
        self.far.sort_unstable();
        let mut all: Vec<i64> = Vec::with_capacity(self.far.len());
        let mut first: Vec<i64> = Vec::new();
        let mut unpaired = 0;
        let mut last_key = None;
        for &(key, lat) in &self.far {
            let Some(&r) = self.reference.get(&key) else {
                unpaired += 1;
                continue;
            };
            let d = lat as i64 - r as i64;
            all.push(d);
            if last_key != Some(key) {
                first.push(d);
                last_key = Some(key);
            }
        }
        self.pairing = Some(Pairing {
            all: Spread::of(&mut all),
            first: Spread::of(&mut first),
            unpaired,
        });
        self.far = Vec::new();
        self.reference = HashMap::new();
    }

    /// Window copies of the near and the far group.
    pub fn received(&self) -> (u64, u64) {
        let near = self.near as usize;
        let n = self.per_sub.iter().take(near).sum();
        let f = self.per_sub.iter().skip(near).sum();
        (n, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_far_copies_with_the_reference_in_any_order() {
        let mut s = SplitReport::new(1, 3, 16, PAIR_CAP);
        // Far copies read before the reference's.
        s.note(1, 1, 7, 1_500_000);
        s.note(2, 1, 7, 1_200_000);
        s.note(0, 1, 7, 1_000_000);
        // A packet the reference lost.
        s.note(1, 0, 9, 900_000);
        s.pair();
        let p = s.pairing.clone().expect("paired");
        assert_eq!((p.all.count, p.unpaired), (2, 1));
        assert_eq!((p.all.min_ns, p.all.max_ns), (200_000, 500_000));
        // One packet: its first far copy is the 1.2 ms one.
        assert_eq!((p.first.count, p.first.p50_ns), (1, 200_000));
        assert_eq!(s.per_sub, vec![1, 2, 1]);
        assert_eq!(s.received(), (1, 3));
        assert_eq!(s.latency_far.count(), 3);
    }

    #[test]
    fn the_bound_is_kept_and_what_misses_it_counted() {
        let mut s = SplitReport::new(1, 2, 1_000, 4);
        for seq in 0..10 {
            s.note(0, 0, seq, 10);
            s.note(1, 0, seq, 20);
        }
        assert_eq!(
            s.pairs_dropped, 12,
            "6 reference + 6 far copies over the bound"
        );
        let mut other = SplitReport::new(1, 2, 0, 4);
        other.note(1, 0, 1, 30);
        s.absorb(&other);
        assert_eq!(s.pairs_dropped, 13, "the merged list is full too");
        s.pair();
        assert_eq!(s.pairing.expect("paired").all.count, 4);
        // Counting is never bounded: every copy is in the per-subscriber totals.
        assert_eq!(s.per_sub, vec![10, 11]);
    }
}
