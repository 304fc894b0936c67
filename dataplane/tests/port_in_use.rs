//! A media port another process holds is a configuration error: the real `sluice-dataplane`
//! exits with status 2 naming `dataplane.port`, which `sluice up` treats as fatal on a first
//! start. Before, it exited with status 1, the supervisor restarted it forever, and the control
//! daemon served on (healthy, placed rooms in a cluster) with no dataplane to take a session:
//! every join answered `rejected: dataplane unavailable`.

use std::io::Read;
use std::net::UdpSocket;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn a_taken_media_port_is_a_configuration_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Held for the whole test (no SO_REUSEPORT: nobody may share it).
    let holder = UdpSocket::bind(("127.0.0.1", 0)).expect("bind");
    let port = holder.local_addr().expect("addr").port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_sluice-dataplane"))
        .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
        .args(["--workers", "1"])
        .arg("--control-socket")
        .arg(dir.path().join("ctl.sock"))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn sluice-dataplane");
    let started = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if started.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the dataplane still ran 20 s after start with its port taken");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    let _ = child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut err);
    println!("port {port} taken: {status:?}; {}", err.trim());
    assert_eq!(status.code(), Some(2), "exit status: {err}");
    assert!(
        err.contains(&format!("dataplane.port: 127.0.0.1:{port}")),
        "{err}"
    );
    drop(holder);
}
