//! What the SFU's process holds in memory over a fanout run, from `/proc/<pid>/status`
//! (proc(5): `VmRSS`, resident now; `VmHWM`, the resident peak since the process started): read
//! before the run's sessions are made and after the generator stops, its sessions still open.
//! The difference divided by the subscribers is what a subscriber costs. Meaningful for a fresh
//! dataplane of its own (`fanout --attach`): memory a larger earlier run freed stays resident
//! and is reused (a step re-measured after a disturbed window is compared with the reading
//! before its first attempt); in process (`"self"`) the generator's peers are in the same
//! figures, and the report says so.

use serde_json::{json, Value};

/// One reading of a process's resident memory, in KiB (proc(5) reports kB = KiB).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resident {
    pub rss_kib: u64,
    pub peak_kib: u64,
}

/// Parses a `/proc/<pid>/status` text: its `VmRSS` and `VmHWM` lines.
pub fn parse_status(text: &str) -> Option<Resident> {
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.trim().strip_suffix("kB"))
            .and_then(|n| n.trim().parse::<u64>().ok())
    };
    Some(Resident {
        rss_kib: field("VmRSS:")?,
        peak_kib: field("VmHWM:")?,
    })
}

/// Process `pid`'s resident memory now (`"self"` works too); `None` when it cannot be read.
pub fn resident(pid: &str) -> Option<Resident> {
    parse_status(&std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?)
}

/// The SFU process's memory over one run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SfuMemory {
    /// Before the run's sessions were made.
    pub before: Resident,
    /// After the generator stopped, the run's sessions still open.
    pub after: Resident,
    pub subscribers: u32,
    /// Whether the process is the dataplane alone (attached) or this bench process (SFU and
    /// generator together).
    pub dataplane_only: bool,
    /// Runs between the two readings: more than one when a disturbed step was measured again
    /// (the earlier runs' sessions were closed, but what they freed is not all reused).
    pub runs: u32,
}

impl SfuMemory {
    /// Resident KiB the run's sessions added, per subscriber (the publishers' share included).
    pub fn per_subscriber_kib(&self) -> f64 {
        self.after.rss_kib.saturating_sub(self.before.rss_kib) as f64
            / f64::from(self.subscribers.max(1))
    }

    pub fn to_json(&self) -> Value {
        json!({
            "process": if self.dataplane_only { "dataplane" } else { "bench (SFU and generator)" },
            "rss_before_kib": self.before.rss_kib,
            "rss_after_kib": self.after.rss_kib,
            "peak_kib": self.after.peak_kib,
            "per_subscriber_kib": (self.per_subscriber_kib() * 10.0).round() / 10.0,
            "runs": self.runs,
            "method": "/proc/<pid>/status VmRSS before the sessions were made and after the \
                       generator stopped (sessions still open), the difference per subscriber \
                       (meaningful on a fresh dataplane); VmHWM is the process's peak since it \
                       started",
        })
    }
}

/// Reads the SFU's memory before a run; [`Before::finish`] reads it after.
#[derive(Debug, Clone)]
pub struct Before {
    pid: String,
    at: Resident,
}

impl Before {
    /// `None` when the SFU's pid is not known or its status cannot be read.
    pub fn read(pid: Option<&str>) -> Option<Before> {
        let pid = pid?;
        Some(Before {
            at: resident(pid)?,
            pid: pid.to_string(),
        })
    }

    pub fn finish(self, subscribers: u32) -> Option<SfuMemory> {
        let after = resident(&self.pid)?;
        Some(self.with(after, subscribers, 1))
    }

    /// The figures with `after` read elsewhere (by the thread that holds the sessions open).
    pub fn with(self, after: Resident, subscribers: u32, runs: u32) -> SfuMemory {
        SfuMemory {
            before: self.at,
            after,
            subscribers,
            dataplane_only: self.pid != "self",
            runs,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_rss_and_peak_from_a_status_text() {
        let text = "Name:\tsluice-dataplane\nVmPeak:\t 2000000 kB\nVmHWM:\t  127892 kB\n\
                    VmRSS:\t  121364 kB\nThreads:\t4\n";
        assert_eq!(
            parse_status(text),
            Some(Resident {
                rss_kib: 121_364,
                peak_kib: 127_892
            })
        );
        assert_eq!(parse_status("Name:\tx\nVmRSS:\t12 kB\n"), None);
        assert_eq!(parse_status("VmRSS:\tlots kB\nVmHWM:\t1 kB\n"), None);
    }

    #[test]
    fn this_process_can_be_read_and_a_subscriber_share_computed() {
        // A live reading of this process (other tests run beside this one, so its RSS moves
        // for their reasons too: only the reading itself is checked live).
        let before = Before::read(Some("self")).expect("/proc/self/status");
        let now = resident("self").expect("/proc/self/status");
        assert!(now.peak_kib >= now.rss_kib);
        // The share from two readings: 8 MiB more over 4 subscribers.
        let after = Resident {
            rss_kib: before.at.rss_kib + 8 * 1024,
            peak_kib: before.at.peak_kib.max(before.at.rss_kib + 8 * 1024),
        };
        let m = before.with(after, 4, 1);
        assert!(!m.dataplane_only);
        assert!(m.after.peak_kib >= m.after.rss_kib);
        assert!(m.per_subscriber_kib() >= 1_500.0, "{m:?}");
        assert_eq!(Before::read(None).map(|_| ()), None);
    }
}
