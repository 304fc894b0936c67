//! Worker i runs pinned to `config.workers[i]` — the order `tuning/sluice-tune plan` prints
//! (`workers = "…"`: queue i's IRQ core first), so NIC queue i, its IRQ and worker i share a core.
//! Checked from the kernel's view: each shard thread's `Cpus_allowed_list` in /proc.

use std::net::{IpAddr, Ipv4Addr};

use sluice_dataplane::config::{Config, IoChoice};
use sluice_dataplane::runtime::Dataplane;
use sluice_dataplane::sys::affinity;

/// (thread name, allowed cpu list) of every thread of this process.
fn threads() -> Vec<(String, String)> {
    let mut out = Vec::new();
    for task in std::fs::read_dir("/proc/self/task").expect("procfs") {
        let dir = task.expect("task entry").path();
        let name = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        let status = std::fs::read_to_string(dir.join("status")).unwrap_or_default();
        let allowed = status
            .lines()
            .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
            .unwrap_or("")
            .trim()
            .to_string();
        out.push((name.trim().to_string(), allowed));
    }
    out
}

#[test]
fn worker_i_is_pinned_to_the_ith_configured_core() {
    let cores = affinity::online_cores().expect("online cores");
    // Reverse order on purpose: worker 0 must land on the LAST listed core, not on core 0.
    let order: Vec<usize> = cores.iter().rev().copied().collect();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = Config::defaults(cores.len());
    cfg.workers = order.clone();
    cfg.bind = IpAddr::V4(Ipv4Addr::LOCALHOST);
    cfg.port = 0;
    cfg.io = IoChoice::Socket;
    cfg.control_socket = dir.path().join("ctl.sock");
    let handle = Dataplane::start(cfg).expect("dataplane starts");
    let threads = threads();
    for (i, core) in order.iter().enumerate() {
        let name = format!("sluice-shard-{i}");
        let (_, allowed) = threads
            .iter()
            .find(|(n, _)| *n == name)
            .unwrap_or_else(|| panic!("no thread {name} in {threads:?}"));
        println!("{name}: Cpus_allowed_list {allowed} (configured core {core})");
        assert_eq!(allowed, &core.to_string(), "{name}");
    }
    handle.stop();
}
