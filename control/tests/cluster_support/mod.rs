//! A real `redis-server` for the cluster tests: started on a Unix socket in a temporary
//! directory (no TCP port, no persistence), stopped when dropped; killed and restarted empty on
//! the same socket for the outage tests.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sluice_control::cluster::ClusterDraft;

pub struct Redis {
    child: Option<Child>,
    pub socket: PathBuf,
    _dir: tempfile::TempDir,
}

impl Redis {
    pub fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("redis.sock");
        let child = spawn(&socket, dir.path());
        Self {
            child: Some(child),
            socket,
            _dir: dir,
        }
    }

    /// Starts the server again on the same socket after [`Redis::stop`]: empty (no
    /// persistence), as a restarted Debian `redis-server` without a dump.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "restart after stop");
        self.child = Some(spawn(&self.socket, self._dir.path()));
    }

    /// Sends `sig` (`STOP`, `CONT`) to the server: a Redis that is there but answers nothing.
    pub fn signal(&self, sig: &str) {
        let pid = self.child.as_ref().expect("running").id();
        let ok = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(pid.to_string())
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{sig} {pid}");
    }

    /// `cluster.redis` for this instance.
    pub fn url(&self) -> String {
        format!("unix:{}", self.socket.display())
    }

    /// Stops the server (a Redis outage); the socket path stays the same for [`Redis::restart`].
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_file(&self.socket);
    }

    /// Runs a `redis-cli` command against this instance and returns its output.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .arg("-s")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("redis-cli");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }
}

impl Redis {
    /// `redis-cli -x args…` with `last` as the final argument (read from stdin: no argv limit).
    pub fn cli_stdin(&self, args: &[&str], last: &[u8]) -> String {
        use std::io::Write as _;
        let mut child = Command::new("redis-cli")
            .arg("-s")
            .arg(&self.socket)
            .arg("-x")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("redis-cli");
        child.stdin.take().unwrap().write_all(last).unwrap();
        let out = child.wait_with_output().unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        if self.child.is_some() {
            self.signal("CONT");
        }
        self.stop();
    }
}

fn spawn(socket: &std::path::Path, dir: &std::path::Path) -> Child {
    let _ = std::fs::remove_file(socket);
    let child = Command::new("redis-server")
        .args(["--port", "0", "--save", "", "--appendonly", "no"])
        .arg("--unixsocket")
        .arg(socket)
        .arg("--dir")
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("redis-server (apt install redis-server; tests/run.sh installs it)");
    let started = Instant::now();
    while !socket.exists() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "redis-server did not open {}",
            socket.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

/// A free loopback port (bound and released: the server binds it right after).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A cluster node's settings on `redis`: `node_id`, `advertise` and `lease_ms` set; a test adds
/// what it varies (`region`, `media`, …) before `finish`.
pub fn draft(redis: &Redis, id: &str, advertise: &str, lease_ms: u64) -> ClusterDraft {
    let mut d = ClusterDraft::default();
    d.set("redis", &redis.url()).unwrap();
    d.set("node_id", id).unwrap();
    d.set("advertise", advertise).unwrap();
    d.set("lease_ms", &lease_ms.to_string()).unwrap();
    d
}
