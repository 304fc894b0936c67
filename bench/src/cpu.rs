//! CPU time per thread from `/proc/<pid>/task/<tid>/stat` (proc(5): fields 14 `utime` and 15
//! `stime`, in clock ticks). Used to report the SFU's CPU seconds per worker and the
//! generator's own busy fraction. Sampled before and after a run; the difference is the run's.

use std::collections::BTreeMap;
use std::io;

/// Clock ticks per second. Linux has reported 100 to user space on every architecture we run
/// on (`getconf CLK_TCK`); [`ticks_per_second`] asks `getconf` and falls back to this.
const DEFAULT_TICKS: u64 = 100;

/// One thread's name and CPU ticks (user + system).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThreadCpu {
    pub tid: u32,
    pub name: String,
    pub ticks: u64,
}

/// Parses one `stat` line: `tid (comm) state ppid … utime stime …`. The name may contain
/// spaces and parentheses, so the fields are counted from the last `)`.
pub fn parse_stat(line: &str) -> Option<ThreadCpu> {
    let open = line.find('(')?;
    let close = line.rfind(')')?;
    let tid = line[..open].trim().parse().ok()?;
    let name = line.get(open + 1..close)?.to_string();
    let mut rest = line.get(close + 1..)?.split_ascii_whitespace();
    // After the name: field 3 (state) is index 0, so utime (14) is index 11, stime index 12.
    let utime: u64 = rest.nth(11)?.parse().ok()?;
    let stime: u64 = rest.next()?.parse().ok()?;
    Some(ThreadCpu {
        tid,
        name,
        ticks: utime + stime,
    })
}

/// Every thread of process `pid` (`"self"` works too), keyed by tid.
pub fn threads(pid: &str) -> io::Result<BTreeMap<u32, ThreadCpu>> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let path = entry?.path().join("stat");
        // A thread may exit between the listing and the read.
        let Ok(text) = std::fs::read_to_string(path) else {
            continue;
        };
        if let Some(t) = parse_stat(&text) {
            out.insert(t.tid, t);
        }
    }
    Ok(out)
}

/// CPU seconds each thread used between two samples, with its name; threads that started
/// after `before` count from zero.
pub fn delta_seconds(
    before: &BTreeMap<u32, ThreadCpu>,
    after: &BTreeMap<u32, ThreadCpu>,
    ticks_per_s: u64,
) -> Vec<(u32, String, f64)> {
    after
        .values()
        .map(|a| {
            let b = before.get(&a.tid).map_or(0, |b| b.ticks);
            (
                a.tid,
                a.name.clone(),
                a.ticks.saturating_sub(b) as f64 / ticks_per_s as f64,
            )
        })
        .collect()
}

/// The calling thread's id, from `/proc/thread-self`.
pub fn current_tid() -> Option<u32> {
    let link = std::fs::read_link("/proc/thread-self").ok()?;
    link.file_name()?.to_str()?.parse().ok()
}

/// CPU ticks of one thread of this process.
pub fn thread_ticks(tid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).ok()?;
    parse_stat(&text).map(|t| t.ticks)
}

/// `getconf CLK_TCK`, or 100.
pub fn ticks_per_second() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .filter(|&t| t > 0)
        .unwrap_or(DEFAULT_TICKS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_with_spaces_and_parens() {
        let line = "4242 (sluice (shard) 0) R 1 4242 4242 0 -1 4194368 100 0 0 0 \
                    731 29 0 0 20 0 3 0 12345 1000 200 18446744073709551615";
        let t = parse_stat(line).expect("parses");
        assert_eq!(t.tid, 4242);
        assert_eq!(t.name, "sluice (shard) 0");
        assert_eq!(t.ticks, 760);
    }

    #[test]
    fn refuses_garbage() {
        assert_eq!(parse_stat(""), None);
        assert_eq!(parse_stat("12 (x) R 1 2"), None);
        assert_eq!(parse_stat("x (y) R 1 2 3 4 5 6 7 8 9 10 11 12"), None);
    }

    #[test]
    fn reads_this_process() {
        let me = threads("self").expect("/proc is mounted");
        assert!(!me.is_empty());
        let tid = current_tid().expect("thread-self");
        assert!(me.contains_key(&tid));
        assert!(thread_ticks(tid).is_some());
        let d = delta_seconds(&me, &me, 100);
        assert!(d.iter().all(|&(_, _, s)| s == 0.0));
    }
}
