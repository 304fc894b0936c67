//! A shard that panics ends the `sluice-dataplane` process (security review #22): the real
//! binary, with a debug-build fault injection making worker 1 panic 300 ms after start, must
//! exit with status 70 soon after the panic message, instead of living on half-dead (the old
//! binary kept its control socket and its other worker, forwarding nothing for the dead
//! worker's sessions, and never exited, so no supervisor restarted it). Prints the time from
//! the panic to the exit.

use std::io::{BufRead, BufReader};
use std::net::UdpSocket;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use sluice_dataplane::sys::affinity;

#[test]
fn a_shard_panic_ends_the_process() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = UdpSocket::bind(("127.0.0.1", 0))
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let cores = affinity::online_cores().expect("cores");
    let workers = format!("{},{}", cores[0], cores.get(1).unwrap_or(&cores[0]));
    let start = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_sluice-dataplane"))
        .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
        .args(["--workers", &workers])
        .arg("--control-socket")
        .arg(dir.path().join("ctl.sock"))
        .env("SLUICE_DATAPLANE_FAULT", "panic-shard:1:300")
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn sluice-dataplane");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send((Instant::now(), line));
        }
    });
    let deadline = start + Duration::from_secs(20);
    let mut panicked_at = None;
    let status = loop {
        while let Ok((t, line)) = rx.try_recv() {
            println!("dataplane: {line}");
            if panicked_at.is_none() && line.contains("panicked") {
                panicked_at = Some(t);
            }
        }
        if let Some(s) = child.try_wait().expect("wait") {
            break Some(s);
        }
        if Instant::now() >= deadline {
            break None;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let exited_at = Instant::now();
    let Some(status) = status else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("the dataplane still ran 20 s after its shard panicked");
    };
    let panicked_at = panicked_at.expect("the injected panic was logged");
    println!(
        "exit status {status:?}, {:?} from the panic message to the exit",
        exited_at.saturating_duration_since(panicked_at)
    );
    assert_eq!(status.code(), Some(70), "exit status");
    assert!(exited_at.saturating_duration_since(panicked_at) < Duration::from_secs(2));
}
