//! What every load command shares: its error type, the provenance block (machine, kernel,
//! commit) stamped on each report, the stderr progress line, and small JSON helpers.

use std::io::Write;
use std::time::{Duration, Instant};

use serde_json::Value;

/// Why a load command could not run or finish.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BenchError {
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("dataplane did not start: {0}")]
    Start(String),
    #[error("control socket: {0}")]
    Control(String),
    /// A request this build cannot serve (e.g. a cipher whose client stack is not merged).
    #[error("unsupported: {0}")]
    Unsupported(String),
    #[error("{0}")]
    Other(String),
}

/// The machine, kernel and commit a report came from.
pub fn provenance() -> Value {
    crate::micro::provenance()
}

/// A one-line progress display on stderr, redrawn at most every 250 ms.
#[derive(Debug)]
pub struct Progress {
    label: String,
    start: Instant,
    total: Duration,
    last: Option<Instant>,
    quiet: bool,
}

impl Progress {
    pub fn new(label: impl Into<String>, total: Duration) -> Self {
        Self {
            label: label.into(),
            start: Instant::now(),
            total,
            last: None,
            quiet: std::env::var_os("SLUICE_BENCH_QUIET").is_some(),
        }
    }

    /// Redraws the bar with `detail` after it, if 250 ms have passed since the last draw.
    pub fn tick(&mut self, now: Instant, detail: &str) {
        if self.quiet
            || self
                .last
                .is_some_and(|l| now - l < Duration::from_millis(250))
        {
            return;
        }
        self.last = Some(now);
        let frac = (now - self.start).as_secs_f64() / self.total.as_secs_f64().max(1e-9);
        let filled = (frac.clamp(0.0, 1.0) * 20.0) as usize;
        let mut err = std::io::stderr().lock();
        let _ = write!(
            err,
            "\r{} [{}{}] {:>3.0}% {detail}   ",
            self.label,
            "#".repeat(filled),
            " ".repeat(20 - filled),
            frac.clamp(0.0, 1.0) * 100.0
        );
        let _ = err.flush();
    }

    /// Ends the line.
    pub fn finish(&mut self, detail: &str) {
        if !self.quiet {
            eprintln!("\r{} done: {detail}                    ", self.label);
        }
    }
}

/// `x` rounded to `digits` decimals, for readable JSON.
pub fn round(x: f64, digits: i32) -> f64 {
    let m = 10f64.powi(digits);
    (x * m).round() / m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds() {
        assert_eq!(round(1.23456, 2), 1.23);
        assert_eq!(round(-0.005, 1), -0.0);
    }
}
