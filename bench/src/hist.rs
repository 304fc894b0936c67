//! A fixed-size log-linear latency histogram: 32 linear sub-buckets per power of two of
//! nanoseconds (≤ 3.2 % relative error), preallocated, so recording on the receive path never
//! allocates. Percentiles report a bucket's upper bound (a conservative figure).

/// Sub-buckets per power of two.
const SUB_BITS: u32 = 5;
const SUB: usize = 1 << SUB_BITS;
/// Powers of two covered: up to 2^40 ns (≈ 18 minutes); larger values land in the last bucket.
const POWERS: usize = 40;
const BUCKETS: usize = SUB * (POWERS - SUB_BITS as usize + 1);

/// Latency histogram over nanoseconds.
#[derive(Debug, Clone)]
pub struct Histogram {
    counts: Box<[u64]>,
    total: u64,
    max: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self::new()
    }
}

impl Histogram {
    pub fn new() -> Self {
        Self {
            counts: vec![0; BUCKETS].into_boxed_slice(),
            total: 0,
            max: 0,
        }
    }

    /// Records one value (nanoseconds).
    pub fn record(&mut self, ns: u64) {
        let i = bucket(ns).min(BUCKETS - 1);
        self.counts[i] += 1;
        self.total += 1;
        self.max = self.max.max(ns);
    }

    pub fn count(&self) -> u64 {
        self.total
    }

    pub fn max(&self) -> u64 {
        self.max
    }

    /// Adds every value of `other`.
    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(other.counts.iter()) {
            *a += b;
        }
        self.total += other.total;
        self.max = self.max.max(other.max);
    }

    /// The value at quantile `q` (0..=1), as its bucket's upper bound capped at the maximum seen;
    /// `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<u64> {
        if self.total == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Some(upper(i).min(self.max));
            }
        }
        Some(self.max)
    }
}

/// Bucket index of `ns`: values below `SUB` map 1:1, then `SUB` linear steps per power of two.
fn bucket(ns: u64) -> usize {
    if ns < SUB as u64 {
        return ns as usize;
    }
    let power = 63 - ns.leading_zeros(); // ≥ SUB_BITS
    let shift = power - SUB_BITS;
    let sub = ((ns >> shift) as usize) - SUB; // 0..SUB
    SUB * (power - SUB_BITS + 1) as usize + sub
}

/// Largest value that maps to bucket `i`.
fn upper(i: usize) -> u64 {
    if i < SUB {
        return i as u64;
    }
    let group = (i / SUB) as u32; // ≥ 1
    let sub = (i % SUB) as u64;
    let shift = group - 1;
    ((SUB as u64 + sub + 1) << shift) - 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_monotonic_and_bound_their_values() {
        let mut last = 0;
        for ns in (0..100_000u64).chain([1 << 20, 123_456_789, 1 << 39]) {
            let b = bucket(ns);
            assert!(b >= last || ns < 100_000 || b > 0);
            assert!(upper(b) >= ns, "ns {ns} bucket {b} upper {}", upper(b));
            if b > 0 {
                assert!(upper(b - 1) < ns, "ns {ns} also fits bucket {}", b - 1);
            }
            if ns < 100_000 {
                last = b;
            }
        }
    }

    #[test]
    fn quantiles_within_relative_error() {
        let mut h = Histogram::new();
        for v in 1..=10_000u64 {
            h.record(v * 1_000);
        }
        let p50 = h.quantile(0.5).expect("non-empty") as f64;
        let p99 = h.quantile(0.99).expect("non-empty") as f64;
        assert!((p50 / 5_000_000.0 - 1.0).abs() < 0.04, "p50 {p50}");
        assert!((p99 / 9_900_000.0 - 1.0).abs() < 0.04, "p99 {p99}");
        assert_eq!(h.quantile(1.0), Some(10_000_000));
        assert_eq!(h.count(), 10_000);
    }

    #[test]
    fn empty_and_merge() {
        let mut a = Histogram::new();
        assert_eq!(a.quantile(0.5), None);
        let mut b = Histogram::new();
        b.record(7);
        a.merge(&b);
        assert_eq!(a.quantile(0.5), Some(7));
        assert_eq!(a.max(), 7);
    }
}
