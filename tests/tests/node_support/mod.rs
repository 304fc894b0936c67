//! What the scenario tests that run a real `sluice up` share: the binaries of this build, the
//! daemon as a child process (its address read from its log, stopped with SIGTERM so it stops
//! its dataplane), and the SDP munging a test peer needs to publish or answer through it with
//! its own ICE credentials and certificate.
#![allow(dead_code)] // each test file uses its own part

pub mod call;

use std::io::Read;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use sluice_control::server::{Server, ServerOptions};
use sluice_dataplane::config::{Config, IoChoice};
use sluice_dataplane::runtime::{Dataplane, DataplaneHandle};
use sluice_dataplane::testpeer::IceCreds;

/// Chromium's camera + microphone offer: what alice publishes.
pub const OFFER: &str = include_str!("../../../control/tests/fixtures/sdp/chromium_cam_mic.sdp");
/// The fixture's audio SSRC and Opus payload type: what alice sends.
pub const ALICE_AUDIO_SSRC: u32 = 2_838_154_093;
pub const OPUS_PT: u8 = 111;

/// A binary of this build, `target/<profile>/<name>`, next to this test's `deps/`. `sluice` and
/// `sluice-dataplane` belong to other packages: `cargo test --workspace` (what `tests/run.sh`
/// runs) builds them, this package alone does not.
pub fn target_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps/<test>")
        .join(name);
    assert!(
        bin.exists(),
        "{} is missing: `cargo test --workspace` builds it",
        bin.display()
    );
    bin
}

/// How a `sluice up` that was expected to stop on its own ended ([`sluice_up_until_exit`]).
pub struct Exited {
    /// Its exit status; `None` when it still ran at the limit (then killed).
    pub status: Option<ExitStatus>,
    /// From the spawn to the exit (or the limit).
    pub took: Duration,
    /// Everything it wrote to stderr.
    pub stderr: String,
}

/// Runs `sluice up --config <config> <args>` until it exits or `limit` passes (then kills it),
/// for tests of a start-up it must refuse.
pub fn sluice_up_until_exit(config: &Path, args: &[&std::ffi::OsStr], limit: Duration) -> Exited {
    let mut child = Command::new(target_bin("sluice"))
        .args(["up", "--config"])
        .arg(config)
        .args(args)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn sluice up");
    let started = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait for sluice up") {
            break Some(s);
        }
        if started.elapsed() > limit {
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let took = started.elapsed();
    let _ = child.kill();
    let _ = child.wait();
    let mut stderr = String::new();
    let _ = child
        .stderr
        .take()
        .expect("piped")
        .read_to_string(&mut stderr);
    Exited {
        status,
        took,
        stderr,
    }
}

/// A running `sluice up` (which runs its own `sluice-dataplane`) and the address it printed.
pub struct Sluice {
    pub child: Child,
    pub addr: SocketAddr,
}

impl Sluice {
    /// Starts `sluice up --config <config>` with `env` added (`RUST_LOG` is `warn` unless given)
    /// and waits (bounded) for its "sluice is up" line. Its other log lines are passed to
    /// stderr, except those a test causes on purpose (an injected fault, a panic).
    pub fn start(config: &Path, env: &[(&str, &str)]) -> Self {
        let mut child = Command::new(target_bin("sluice"))
            .args(["up", "--config"])
            .arg(config)
            .arg("--dataplane-bin")
            .arg(target_bin("sluice-dataplane"))
            .env("RUST_LOG", "warn")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn sluice up");
        let stderr = child.stderr.take().expect("piped");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.strip_prefix("sluice is up: http://") {
                    let _ = tx.send(rest.trim_end_matches('/').to_owned());
                } else if !line.contains("injected fault") && !line.contains("panicked") {
                    eprintln!("[sluice] {line}");
                }
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("sluice up prints its address within 20 s")
            .parse()
            .expect("address");
        Sluice { child, addr }
    }

    /// The pid of the `sluice-dataplane` this daemon runs now.
    pub fn dataplane_pid(&self) -> Option<u32> {
        let me = self.child.id();
        std::fs::read_dir("/proc").ok()?.find_map(|e| {
            let pid: u32 = e.ok()?.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let (comm, rest) = stat.split_once(") ")?;
            let ppid: u32 = rest.split_whitespace().nth(1)?.parse().ok()?;
            (ppid == me && comm.contains("sluice-datapl")).then_some(pid)
        })
    }
}

impl Drop for Sluice {
    fn drop(&mut self) {
        // SIGTERM first, so the daemon stops the dataplane it spawned.
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let end = Instant::now() + Duration::from_secs(5);
        while Instant::now() < end {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The value of the first `a=<name>:` line.
pub fn attr<'a>(sdp: &'a str, name: &str) -> &'a str {
    let prefix = format!("a={name}:");
    sdp.lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .unwrap_or_else(|| panic!("no a={name} in\n{sdp}"))
        .trim()
}

/// The first UDP host candidate's address.
pub fn candidate(sdp: &str) -> SocketAddr {
    let c = attr(sdp, "candidate");
    let f: Vec<&str> = c.split_whitespace().collect();
    assert!(f[2].eq_ignore_ascii_case("udp"), "{c}");
    format!("{}:{}", f[4], f[5])
        .parse()
        .expect("candidate address")
}

/// `sdp` with our ICE credentials and fingerprint; `dir` replaces `from`; `setup` if given.
pub fn rewrite(
    sdp: &str,
    creds: &IceCreds,
    fingerprint: &str,
    from: &str,
    dir: &str,
    setup: Option<&str>,
) -> String {
    sdp.lines()
        .filter(|l| !l.starts_with("a=ice-lite") && !l.starts_with("a=candidate") && !l.is_empty())
        .filter(|l| setup.is_none() || !l.starts_with("a=ssrc"))
        .map(|l| {
            if l.starts_with("a=ice-ufrag:") {
                format!("a=ice-ufrag:{}", creds.ufrag)
            } else if l.starts_with("a=ice-pwd:") {
                format!("a=ice-pwd:{}", creds.pwd)
            } else if l.starts_with("a=fingerprint:") {
                format!("a=fingerprint:{fingerprint}")
            } else if l.starts_with("a=setup:") && setup.is_some() {
                format!("a=setup:{}", setup.unwrap_or_default())
            } else if l == format!("a={from}") {
                format!("a={dir}")
            } else {
                l.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\r\n")
        + "\r\n"
}

/// The audio section's first payload type and SSRC in a subscriber offer.
pub fn audio_stream(offer: &str) -> (u8, u32) {
    let start = offer.find("m=audio").expect("audio section");
    let section = &offer[start..];
    let section = &section[..section[1..].find("\nm=").map_or(section.len(), |i| i + 1)];
    let pt = section
        .lines()
        .next()
        .unwrap()
        .split_whitespace()
        .nth(3)
        .unwrap()
        .parse()
        .unwrap();
    let ssrc = attr(section, "ssrc")
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    (pt, ssrc)
}

/// The one-worker dataplane of the in-process scenario tests: loopback, any port, the socket
/// backend, 256 buffers; `tweak` adjusts the rest. `None` (the test skips, the reason printed)
/// where it cannot start.
pub fn loopback_dataplane(
    tweak: impl FnOnce(&mut Config),
) -> Option<(tempfile::TempDir, DataplaneHandle)> {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = Config::defaults(1);
    cfg.workers = vec![0];
    cfg.bind = "127.0.0.1".parse().unwrap();
    cfg.port = 0;
    cfg.io = IoChoice::Socket;
    cfg.buffers_per_worker = 256;
    cfg.control_socket = dir.path().join("dp.sock");
    tweak(&mut cfg);
    match Dataplane::start(cfg) {
        Ok(dp) => Some((dir, dp)),
        Err(e) => {
            eprintln!("skipping: dataplane did not start: {e}");
            None
        }
    }
}

/// The in-process control server linked to `dp` (`f` sets the rest of its options), once the
/// link is up.
pub async fn linked_server(dp: &DataplaneHandle, f: impl FnOnce(&mut ServerOptions)) -> Server {
    let socket = dp.control_socket().to_path_buf();
    let s = crate::api_support::start_with(|o| {
        o.dataplane_socket = Some(socket);
        f(o);
    })
    .await;
    wait_linked(s.addr).await;
    s
}

/// Waits (bounded: 5 s) until the server at `addr` says its dataplane link is up (`/readyz`).
pub async fn wait_linked(addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while crate::api_support::http(addr, "GET", "/readyz", &[], "")
        .await
        .0
        != 200
    {
        assert!(Instant::now() < deadline, "dataplane link not up in 5 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A client's answer to our subscriber offer: full ICE, recvonly, DTLS client.
pub fn client_answer(offer: &str) -> String {
    offer
        .lines()
        .filter(|l| !l.starts_with("a=ice-lite") && !l.starts_with("a=candidate") && !l.starts_with("a=ssrc"))
        .map(|l| {
            if l.starts_with("a=ice-ufrag:") {
                "a=ice-ufrag:Cli1".to_owned()
            } else if l.starts_with("a=ice-pwd:") {
                "a=ice-pwd:clientpassword0123456789".to_owned()
            } else if l.starts_with("a=setup:") {
                "a=setup:active".to_owned()
            } else if l == "a=sendonly" {
                "a=recvonly".to_owned()
            } else if l.starts_with("a=fingerprint:") {
                "a=fingerprint:sha-256 7B:3A:91:0C:5E:D2:44:18:9F:A6:2B:E0:71:C3:58:0D:96:4F:BA:23:E8:15:67:CC:02:9D:3E:A1:F4:6B:80:52".to_owned()
            } else {
                l.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\r\n")
        + "\r\n"
}
