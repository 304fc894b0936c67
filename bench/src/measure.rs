//! The timing loop behind `sluice-bench micro`.
//!
//! The machines we measure on are shared and noisy, so a figure that is compared with another is
//! measured in the same run, in interleaved rounds (A, B, A, B, ...), and each side reports the
//! median of its rounds. Ratios come from those medians.

use std::hint::black_box;
use std::time::Instant;

/// How long to measure: rounds per case and operations per round.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    pub rounds: usize,
    pub ops_per_round: u64,
    pub warmup_ops: u64,
}

impl Budget {
    /// Enough for stable medians (about a second per case on the 2-core VM).
    pub const FULL: Budget = Budget {
        rounds: 31,
        ops_per_round: 20_000,
        warmup_ops: 50_000,
    };
    /// A smoke run: proves every case works, figures are rough.
    pub const QUICK: Budget = Budget {
        rounds: 3,
        ops_per_round: 500,
        warmup_ops: 500,
    };
}

/// Nanoseconds per operation of one round of `ops` calls.
fn round<F: FnMut()>(ops: u64, f: &mut F) -> f64 {
    let start = Instant::now();
    for _ in 0..ops {
        f();
    }
    start.elapsed().as_nanos() as f64 / ops as f64
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Median ns/op of `f`.
pub fn single<F: FnMut()>(budget: Budget, mut f: F) -> f64 {
    for _ in 0..budget.warmup_ops {
        f();
    }
    let mut samples: Vec<f64> = (0..budget.rounds)
        .map(|_| round(budget.ops_per_round, &mut f))
        .collect();
    median(&mut samples)
}

/// Median ns/op of `a` and of `b`, measured in interleaved rounds so both see the same noise.
pub fn paired<A: FnMut(), B: FnMut()>(budget: Budget, mut a: A, mut b: B) -> (f64, f64) {
    for _ in 0..budget.warmup_ops {
        a();
        b();
    }
    let mut sa = Vec::with_capacity(budget.rounds);
    let mut sb = Vec::with_capacity(budget.rounds);
    for i in 0..budget.rounds {
        // Alternate which side goes first so neither always runs on a warmer cache.
        if i % 2 == 0 {
            sa.push(round(budget.ops_per_round, &mut a));
            sb.push(round(budget.ops_per_round, &mut b));
        } else {
            sb.push(round(budget.ops_per_round, &mut b));
            sa.push(round(budget.ops_per_round, &mut a));
        }
    }
    (median(&mut sa), median(&mut sb))
}

/// Keep a value alive past the optimiser.
pub fn keep<T>(v: T) -> T {
    black_box(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 3.0, 2.0]), 3.0);
    }

    #[test]
    fn paired_measures_both_sides() {
        let (mut na, mut nb) = (0u64, 0u64);
        let (a, b) = paired(Budget::QUICK, || na += 1, || nb += 1);
        assert!(a >= 0.0 && b >= 0.0);
        let expected = Budget::QUICK.warmup_ops + Budget::QUICK.rounds as u64 * 500;
        assert_eq!((na, nb), (expected, expected));
    }
}
