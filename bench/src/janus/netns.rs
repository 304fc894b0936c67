//! A network namespace with a veth pair whose both ends live inside it, created with `ip(8)`
//! and deleted on drop (also when the command fails half-way). Traffic between the two ends
//! never leaves the namespace; nothing is routed to the host's interfaces.

use std::process::Command;

use crate::report::BenchError;

/// A namespace this process created.
#[derive(Debug)]
pub struct Namespace {
    name: String,
}

impl Namespace {
    /// `ip netns add NAME`, then `veth-j` (10.88.0.1/24) and `veth-g` (10.88.0.2/24) and `lo`,
    /// all up, with `accept_local` on and `rp_filter` off inside the namespace. Fails (and removes what it made) if any step fails; requires CAP_NET_ADMIN.
    pub fn create(name: &str) -> Result<Namespace, BenchError> {
        ip(&["netns", "add", name])?;
        let ns = Namespace {
            name: name.to_string(),
        };
        let j = format!("{}/24", super::JANUS_IP);
        let g = format!("{}/24", super::GENERATOR_IP);
        for args in [
            vec![
                "link", "add", "veth-j", "type", "veth", "peer", "name", "veth-g",
            ],
            vec!["addr", "add", &j, "dev", "veth-j"],
            vec!["addr", "add", &g, "dev", "veth-g"],
            vec!["link", "set", "lo", "up"],
            vec!["link", "set", "veth-j", "up"],
            vec!["link", "set", "veth-g", "up"],
        ] {
            let mut full = vec!["-n", name];
            full.extend(args);
            ip(&full)?;
        }
        // Janus's ICE agent sends out of veth-j itself (not over `lo`, as a route to a local
        // address would), so the frames arrive at veth-g with a source address that is local
        // to the namespace: accept them (and their ARP) instead of dropping them as martians.
        let mut sysctl = vec!["netns", "exec", name, "sysctl", "-q", "-w"];
        let settings: Vec<String> = ["all", "default", "veth-j", "veth-g"]
            .iter()
            .flat_map(|d| {
                [
                    format!("net.ipv4.conf.{d}.accept_local=1"),
                    format!("net.ipv4.conf.{d}.rp_filter=0"),
                ]
            })
            .collect();
        sysctl.extend(settings.iter().map(String::as_str));
        ip(&sysctl)?;
        Ok(ns)
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        // Deleting the namespace removes the veth pair inside it.
        let _ = ip(&["netns", "del", &self.name]);
    }
}

/// Removes what killed runs left behind: every namespace named `<prefix><pid>` whose process
/// is gone — first ending the processes still inside it (the Janus that run started), then the
/// namespace. Returns the names removed.
pub fn remove_stale(prefix: &str) -> Vec<String> {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return Vec::new();
    };
    let mut removed = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        let Some(pid) = name.strip_prefix(prefix) else {
            continue;
        };
        if !pid.chars().all(|c| c.is_ascii_digit())
            || std::path::Path::new(&format!("/proc/{pid}")).exists()
        {
            continue;
        }
        if let Ok(p) = Command::new("ip").args(["netns", "pids", name]).output() {
            for inner in String::from_utf8_lossy(&p.stdout).split_whitespace() {
                if inner.chars().all(|c| c.is_ascii_digit()) {
                    let _ = Command::new("kill").args(["-KILL", inner]).output();
                }
            }
        }
        if ip(&["netns", "del", name]).is_ok() {
            removed.push(name.to_string());
        }
    }
    removed
}

fn ip(args: &[&str]) -> Result<(), BenchError> {
    let out = Command::new("ip").args(args).output()?;
    if out.status.success() {
        Ok(())
    } else {
        Err(BenchError::Other(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}
