//! `sluice-bench compare`: Sluice's ramp and a peer SFU's ramp, `rounds` times, interleaved
//! (Sluice, Janus, Sluice, Janus, …) so both see the same stretch of a shared machine, then the
//! median and the spread of each one's maximum subscribers per core. The ratio is of the
//! medians: one noisy run cannot decide it. Each round is a fresh dataplane and a fresh Janus.

use serde_json::{json, Value};

use crate::janus::JanusRamp;
use crate::ramp::{self, RampReport};
use crate::report::{round, BenchError};

/// One round's CPU-bound estimate: `(µs per delivered packet, subscribers per busy core)`.
pub type CpuEstimate = (f64, f64);

/// Median, range and every value of one measure across rounds.
#[derive(Debug, Clone, PartialEq)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub values: Vec<f64>,
}

impl Spread {
    /// `None` for no values.
    pub fn of(values: &[f64]) -> Option<Spread> {
        if values.is_empty() {
            return None;
        }
        let mut v = values.to_vec();
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        Some(Spread {
            median,
            min: v[0],
            max: v[n - 1],
            values: values.to_vec(),
        })
    }

    pub fn to_json(&self) -> Value {
        json!({
            "median": round(self.median, 1),
            "min": round(self.min, 1),
            "max": round(self.max, 1),
            "spread": round(self.max - self.min, 1),
            "rounds": self.values.iter().map(|v| round(*v, 1)).collect::<Vec<_>>(),
        })
    }
}

/// One round: Sluice's ramp, then the peer's.
#[derive(Debug)]
pub struct Round {
    pub sluice: RampReport,
    pub janus: Result<JanusRamp, String>,
}

/// Every round and what they add up to.
#[derive(Debug)]
pub struct CompareReport {
    pub rounds: Vec<Round>,
}

impl CompareReport {
    /// Runs `rounds` interleaved rounds. A failed Sluice ramp ends the comparison; a failed
    /// Janus ramp is recorded and the rounds go on.
    pub fn run(
        rounds: usize,
        mut sluice: impl FnMut(usize) -> Result<RampReport, BenchError>,
        mut janus: impl FnMut(usize) -> Result<JanusRamp, BenchError>,
    ) -> Result<CompareReport, BenchError> {
        let mut out = Vec::with_capacity(rounds);
        for r in 0..rounds.max(1) {
            eprintln!("sluice-bench compare: round {} of {rounds}: Sluice", r + 1);
            let s = sluice(r)?;
            eprintln!("sluice-bench compare: round {} of {rounds}: Janus", r + 1);
            let j = janus(r).map_err(|e| e.to_string());
            out.push(Round {
                sluice: s,
                janus: j,
            });
        }
        Ok(CompareReport { rounds: out })
    }

    /// Sluice's maximum subscribers per worker core, one value per round.
    pub fn sluice_max(&self) -> Option<Spread> {
        let v: Vec<f64> = self
            .rounds
            .iter()
            .map(|r| r.sluice.per_worker_core())
            .collect();
        Spread::of(&v)
    }

    /// The peer's, over the rounds whose ramp ran.
    pub fn janus_max(&self) -> Option<Spread> {
        let v: Vec<f64> = self
            .rounds
            .iter()
            .filter_map(|r| r.janus.as_ref().ok())
            .map(|j| j.ramp.per_worker_core())
            .collect();
        Spread::of(&v)
    }

    /// Median Sluice ÷ median peer.
    pub fn ratio(&self) -> Option<f64> {
        let (s, j) = (self.sluice_max()?, self.janus_max()?);
        (j.median > 0.0).then(|| s.median / j.median)
    }

    /// The round whose Sluice maximum is the median (for the plot).
    pub fn median_round(&self) -> Option<&Round> {
        let m = self.sluice_max()?.median;
        self.rounds.iter().min_by(|a, b| {
            let da = (a.sluice.per_worker_core() - m).abs();
            let db = (b.sluice.per_worker_core() - m).abs();
            da.total_cmp(&db)
        })
    }

    /// CPU-bound estimates per round, Sluice's then Janus's.
    pub fn cpu_estimates(&self) -> (Vec<CpuEstimate>, Vec<CpuEstimate>) {
        let s = self
            .rounds
            .iter()
            .filter_map(|r| cpu_bound_estimate(&r.sluice))
            .collect();
        let j = self
            .rounds
            .iter()
            .filter_map(|r| r.janus.as_ref().ok())
            .filter_map(|j| cpu_bound_estimate(&j.ramp))
            .collect();
        (s, j)
    }

    pub fn to_json(&self) -> Value {
        let (cs, cj) = self.cpu_estimates();
        let subs = |v: &[(f64, f64)]| Spread::of(&v.iter().map(|x| x.1).collect::<Vec<_>>());
        let cpu_ratio = match (subs(&cs), subs(&cj)) {
            (Some(s), Some(j)) if j.median > 0.0 => Some(round(s.median / j.median, 2)),
            _ => None,
        };
        json!({
            "rounds": self.rounds.len(),
            "order": "interleaved: Sluice then Janus, each round",
            "sluice_max_per_core": self.sluice_max().map(|s| s.to_json()),
            "janus_max_per_core": self.janus_max().map(|s| s.to_json()),
            "ratio_of_medians": self.ratio().map(|r| round(r, 2)),
            "cpu_bound_estimate": {
                "method": "per round, at the largest step without loss (> 0.5 %), whatever its \
                           latency: SFU CPU microseconds per delivered packet, and subscribers \
                           one fully busy core would carry at that cost; median over rounds",
                "sluice_subscribers_per_core": subs(&cs).map(|s| s.to_json()),
                "janus_subscribers_per_core": subs(&cj).map(|s| s.to_json()),
                "sluice_us_per_packet": Spread::of(&cs.iter().map(|x| x.0).collect::<Vec<_>>()).map(|s| s.to_json()),
                "janus_us_per_packet": Spread::of(&cj.iter().map(|x| x.0).collect::<Vec<_>>()).map(|s| s.to_json()),
                "ratio_of_medians": cpu_ratio,
            },
            "per_round": self.rounds.iter().map(|r| json!({
                "sluice": r.sluice.to_json(),
                "janus": match &r.janus {
                    Ok(j) => j.to_json(),
                    Err(e) => json!({"error": e}),
                },
            })).collect::<Vec<_>>(),
        })
    }
}

/// `(SFU µs per delivered packet, subscribers per fully busy core)` at the largest step that
/// lost ≤ 0.5 % and kept the SFU at least 5 % busy (less is too coarse to divide by).
pub fn cpu_bound_estimate(r: &RampReport) -> Option<(f64, f64)> {
    let p = r
        .points
        .iter()
        .filter(|p| p.loss <= ramp::MAX_LOSS && p.sfu_busy >= 0.05 && p.delivered_pps > 0.0)
        .max_by_key(|p| p.subscribers)?;
    Some((
        p.sfu_busy / p.delivered_pps * 1e6,
        f64::from(p.subscribers) / p.sfu_busy,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_spread() {
        let s = Spread::of(&[300.0, 200.0, 250.0]).expect("values");
        assert_eq!((s.median, s.min, s.max), (250.0, 200.0, 300.0));
        let s = Spread::of(&[100.0, 50.0]).expect("values");
        assert_eq!(s.median, 75.0);
        assert!(Spread::of(&[]).is_none());
    }

    fn ramp(max_ok: u32) -> RampReport {
        RampReport {
            points: Vec::new(),
            workers: 1,
            max_ok,
            stopped: String::new(),
        }
    }

    #[test]
    fn rounds_interleave_and_the_ratio_is_of_medians() {
        let order = std::cell::RefCell::new(Vec::new());
        let r = CompareReport::run(
            3,
            |i| {
                order.borrow_mut().push(format!("S{i}"));
                Ok(ramp([400, 200, 300][i]))
            },
            |i| {
                order.borrow_mut().push(format!("J{i}"));
                Err(BenchError::Other("no janus in unit tests".into()))
            },
        )
        .expect("runs");
        assert_eq!(*order.borrow(), ["S0", "J0", "S1", "J1", "S2", "J2"]);
        assert_eq!(r.sluice_max().expect("rounds").median, 300.0);
        assert_eq!(r.median_round().expect("a round").sluice.max_ok, 300);
        assert!(r.janus_max().is_none() && r.ratio().is_none());
    }
}
