//! `compare --peer janus`: Janus VideoRoom as the peer SFU, started by the command itself.
//!
//! - [`netns`]: the network namespace (a veth pair with both ends inside) Janus and the
//!   generator run in — Janus 1.1.2 never gathers loopback candidates, so it cannot run on `lo`,
//!   and the namespace keeps every packet on this machine.
//! - [`config`]: Janus's configuration from the templates in `bench/janus/`.
//! - [`http`]: a minimal HTTP/1.1 client for Janus's REST API.
//! - [`api`]: the Janus API calls (session, attach videoroom, create room, keepalive).
//!
//! Janus's side of the ramp needs a WebRTC client (ICE, DTLS client/server per SDP setup, SRTP,
//! answering Janus's offers): the dataplane's test peer. Until it is merged, [`run_ramp`] brings
//! Janus up in its namespace, proves its API and a VideoRoom room work, tears everything down,
//! and returns [`BenchError::Unsupported`] naming what is missing.

pub mod api;
pub mod config;
pub mod http;
pub mod netns;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::ramp::{RampConfig, RampReport};
use crate::report::BenchError;

/// What to tell a user without Janus.
pub const INSTALL_HINT: &str =
    "install it with:  apt-get install -y janus   (Debian 12: Janus 1.1.2; the package \
     does not start a service)";

/// Addresses inside the namespace.
pub const JANUS_IP: &str = "10.88.0.1";
pub const GENERATOR_IP: &str = "10.88.0.2";
pub const HTTP_PORT: u16 = 8088;

/// The `janus` binary on `PATH`, if installed.
pub fn find_binary() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("janus"))
        .find(|p| p.is_file())
}

/// A Janus process in its namespace; killed, and the namespace removed, on drop.
#[derive(Debug)]
pub struct Janus {
    child: Option<Child>,
    pub ns: netns::Namespace,
    pub dir: config::ConfigDir,
}

impl Janus {
    /// Creates the namespace, writes the configuration and starts Janus; waits (≤ 10 s) until
    /// its HTTP API answers `info`.
    pub fn start(bin: &Path) -> Result<Janus, BenchError> {
        let ns = netns::Namespace::create(&format!("sluice-bench-{}", std::process::id()))?;
        let dir = config::ConfigDir::write(JANUS_IP, HTTP_PORT, (20_000, 40_000))?;
        let log = std::fs::File::create(dir.path().join("janus.log"))?;
        let child = Command::new("ip")
            .args(["netns", "exec", ns.name()])
            .arg(bin)
            .arg("-C")
            .arg(dir.path().join("janus.jcfg"))
            .arg("-F")
            .arg(dir.path())
            .args(["-o", "-d", "3"])
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .spawn()?;
        let mut j = Janus {
            child: Some(child),
            ns,
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match j.probe_info() {
                Ok(_) => return Ok(j),
                Err(e) if Instant::now() >= deadline => {
                    return Err(BenchError::Other(format!(
                        "Janus did not answer within 10 s ({e}); log: {}",
                        j.log_tail()
                    )))
                }
                Err(_) => std::thread::sleep(Duration::from_millis(200)),
            }
            if let Some(c) = j.child.as_mut() {
                if let Ok(Some(status)) = c.try_wait() {
                    return Err(BenchError::Other(format!(
                        "Janus exited ({status}); log: {}",
                        j.log_tail()
                    )));
                }
            }
        }
    }

    /// Runs `janus-client` (a hidden subcommand of this binary) inside the namespace, so its
    /// HTTP requests reach Janus's address; returns its JSON answer.
    pub fn in_namespace(&self, args: &[&str]) -> Result<Value, BenchError> {
        let exe = std::env::current_exe()?;
        let out = Command::new("ip")
            .args(["netns", "exec", self.ns.name()])
            .arg(exe)
            .args(args)
            .stdin(Stdio::null())
            .stderr(Stdio::inherit())
            .output()?;
        serde_json::from_slice(&out.stdout).map_err(|e| {
            BenchError::Other(format!(
                "janus-client answered no JSON ({e}): {}",
                String::from_utf8_lossy(&out.stdout)
            ))
        })
    }

    fn probe_info(&self) -> Result<Value, BenchError> {
        let v = self.in_namespace(&["janus-client", "info"])?;
        match v.get("error") {
            Some(e) => Err(BenchError::Other(e.to_string())),
            None => Ok(v),
        }
    }

    /// The last lines of Janus's log, for error messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.dir.path().join("janus.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(8)..].join(" | ")
    }
}

impl Drop for Janus {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The Janus side of `compare`: see the module docs for what runs today.
pub fn run_ramp(bin: &Path, _cfg: &RampConfig) -> Result<RampReport, BenchError> {
    let janus = Janus::start(bin)?;
    let probe = janus.in_namespace(&["janus-client", "room"])?;
    if let Some(e) = probe.get("error") {
        return Err(BenchError::Other(format!("Janus API: {e}")));
    }
    Err(BenchError::Unsupported(format!(
        "Janus {} started in namespace {} and a VideoRoom room was created ({}), but publishing \
         and subscribing need the WebRTC client stack (dataplane testpeer: ICE, DTLS as \
         client or server per SDP setup, SRTP, answering Janus's offers), which is not merged \
         on this branch",
        probe["version"].as_str().unwrap_or("?"),
        janus.ns.name(),
        probe["room"]
    )))
}

/// The hidden `janus-client` subcommand, run inside the namespace: `info` answers Janus's
/// `info`; `room` creates a session, attaches VideoRoom, creates a room and destroys it all.
pub fn client_main(args: &[String]) -> Value {
    let api = api::Api::new(std::net::SocketAddr::from((
        JANUS_IP
            .parse::<std::net::Ipv4Addr>()
            .expect("constant address"),
        HTTP_PORT,
    )));
    let res = match args.first().map(String::as_str) {
        Some("info") => api.info(),
        Some("room") => api.room_smoke(),
        _ => Err(BenchError::Other("janus-client: info|room".into())),
    };
    res.unwrap_or_else(|e| serde_json::json!({"error": e.to_string()}))
}
