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
