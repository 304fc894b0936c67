//! The control daemon stops a dataplane it spawned with the `shutdown` command (the process
//! signal is only its fallback): the real `sluice-dataplane` binary answers `done`, then exits
//! cleanly and removes its control socket.

use std::process::{Command as Process, Stdio};
use std::time::{Duration, Instant};

use sluice_proto::{Command, ControlClient, Hello, ReplyOk};

#[test]
fn shutdown_command_stops_the_binary() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("dp.sock");
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("free port")
        .port()
        .to_string();
    let mut child = Process::new(env!("CARGO_BIN_EXE_sluice-dataplane"))
        .args(["--workers", "0", "--bind", "127.0.0.1", "--io", "socket"])
        .args(["--port", &port])
        .arg("--control-socket")
        .arg(&socket)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .spawn()
        .expect("spawn sluice-dataplane");
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut client = loop {
        match ControlClient::connect(&socket) {
            Ok(c) => break c,
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => {
                let _ = child.kill();
                panic!("no control socket within 20 s: {e}");
            }
        }
        if let Some(status) = child.try_wait().expect("wait") {
            panic!("sluice-dataplane exited at start: {status}");
        }
    };
    client
        .hello(Hello::control("shutdown-test"))
        .expect("hello");
    assert_eq!(
        client.request(Command::Shutdown {}).expect("shutdown"),
        ReplyOk::Done {}
    );
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if started.elapsed() > Duration::from_secs(10) {
            let _ = child.kill();
            panic!("the dataplane did not exit within 10 s of the shutdown command");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    println!(
        "dataplane exited {:?} after {:?}",
        status.code(),
        started.elapsed()
    );
    assert!(status.success(), "{status}");
    assert!(!socket.exists(), "control socket removed on a clean stop");
}
