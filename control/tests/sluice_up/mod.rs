//! A real `sluice up` of this package's build as a child process, for the restart tests: its
//! address read from its log; dropped with SIGKILL (what those tests do to it on purpose).
//! Its dataplane lines are not echoed (these configurations run without one).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

pub struct Sluice {
    pub child: Child,
    pub addr: SocketAddr,
}

impl Sluice {
    pub fn start(config: &Path) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(["up", "--config"])
            .arg(config)
            .env("RUST_LOG", "warn")
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
                } else if !line.contains("dataplane") {
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
}

impl Drop for Sluice {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
