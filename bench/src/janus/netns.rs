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
    /// all up. Fails (and removes what it made) if any step fails; requires CAP_NET_ADMIN.
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
