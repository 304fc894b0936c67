//! Issue 14, findings #9 and #23 of the security review: a hostile process at the dataplane's
//! control socket. Real dataplane (`Dataplane::start`), real control daemon (in-process server,
//! and the `sluice up` binary for attaching), raw clients on the socket.

#[path = "../../control/tests/api_support/mod.rs"]
mod api_support;
mod node_support;

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use api_support::*;
use node_support::sluice_up_until_exit;
use sluice_dataplane::config::{Config, IoChoice};
use sluice_dataplane::runtime::{Dataplane, DataplaneHandle};
use sluice_proto::{encode_frame, Hello, Message, Request};

fn config(socket: &Path) -> Config {
    let mut cfg = Config::defaults(1);
    cfg.workers = vec![0];
    cfg.bind = "127.0.0.1".parse().unwrap();
    cfg.port = 0;
    cfg.io = IoChoice::Socket;
    cfg.buffers_per_worker = 256;
    cfg.control_socket = socket.to_path_buf();
    cfg
}

fn dataplane(dir: &Path) -> Option<DataplaneHandle> {
    match Dataplane::start(config(&dir.join("dp.sock"))) {
        Ok(dp) => Some(dp),
        Err(e) => {
            eprintln!("skipping: dataplane did not start: {e}");
            None
        }
    }
}

fn frame(msg: &Message) -> Vec<u8> {
    let mut out = Vec::new();
    encode_frame(msg, &mut out).unwrap();
    out
}

/// Reads until EOF or `limit`; `Some(bytes read)` on EOF, `None` if still open at `limit`.
fn eof_within(s: &mut UnixStream, limit: Duration) -> Option<usize> {
    let end = Instant::now() + limit;
    let mut n = 0;
    let mut buf = [0u8; 4096];
    while Instant::now() < end {
        s.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        match s.read(&mut buf) {
            Ok(0) => return Some(n),
            Ok(k) => n += k,
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => return Some(n),
        }
    }
    None
}

/// #23: a process that connects first and never says hello does not lock the control daemon
/// out: the dataplane drops it after the hello deadline (5 s) and the daemon connects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_peer_does_not_hold_the_control_socket() {
    let dir = tempfile::tempdir().unwrap();
    let Some(dp) = dataplane(dir.path()) else {
        return;
    };
    let mut squatter = UnixStream::connect(dp.control_socket()).unwrap();
    // The dataplane has taken the squatter (it sent its hello to it).
    let mut hello = [0u8; 64];
    squatter
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    assert!(squatter.read(&mut hello).unwrap() > 0);
    let t0 = Instant::now();
    let socket = dp.control_socket().to_path_buf();
    let s = start_with(|o| o.dataplane_socket = Some(socket)).await;
    let mut ready = None;
    while t0.elapsed() < Duration::from_secs(12) {
        if http(s.addr, "GET", "/readyz", &[], "").await.0 == 200 {
            ready = Some(t0.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let dropped = eof_within(&mut squatter, Duration::from_millis(200));
    println!("idle squatter on the control socket: dropped {dropped:?}; control daemon connected after {ready:?}");
    assert!(
        ready.is_some(),
        "the squatter held the control socket for 12 s"
    );
    assert!(dropped.is_some(), "the squatter is still connected");
    s.stop();
    dp.stop();
}

/// #23: a peer that says hello, then floods requests and never reads a reply is dropped once
/// its replies pass the output cap (8 MiB), instead of being buffered without bound.
#[test]
fn a_peer_that_never_reads_its_replies_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let Some(dp) = dataplane(dir.path()) else {
        return;
    };
    let mut s = UnixStream::connect(dp.control_socket()).unwrap();
    s.write_all(&frame(&Message::Hello(Hello::control("flood"))))
        .unwrap();
    let request = |id| {
        frame(&Message::Request(Request {
            id,
            command: sluice_proto::Command::ListSessions { after: None },
        }))
    };
    s.set_write_timeout(Some(Duration::from_secs(2))).unwrap();
    let t0 = Instant::now();
    const MAX_REQUESTS: u64 = 1_000_000;
    let mut sent = 0u64;
    let mut closed = None;
    while sent < MAX_REQUESTS && t0.elapsed() < Duration::from_secs(30) {
        let batch: Vec<u8> = (0..256).flat_map(|i| request(sent + i)).collect();
        match s.write_all(&batch) {
            Ok(()) => sent += 256,
            Err(e) => {
                closed = Some(e.kind());
                break;
            }
        }
    }
    println!(
        "unread-reply flood: {sent} requests in {:.1} s, connection closed by the dataplane: {closed:?}",
        t0.elapsed().as_secs_f64()
    );
    assert!(
        closed.is_some(),
        "{sent} requests with no reply read, still connected"
    );
    // The socket serves the next (well-behaved) client.
    let mut next = UnixStream::connect(dp.control_socket()).unwrap();
    next.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 64];
    assert!(
        next.read(&mut buf).unwrap() > 0,
        "no hello for the next client"
    );
    dp.stop();
}

/// #9: a socket directory that others may write is refused (another user could swap the
/// socket), and the error names the path.
#[test]
fn a_socket_directory_others_can_write_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let open = dir.path().join("shared");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
    let result = Dataplane::start(config(&open.join("dp.sock")));
    let text = match &result {
        Ok(_) => "started".to_owned(),
        Err(e) => e.to_string(),
    };
    println!("dataplane with its socket in a 0777 directory: {text}");
    if let Ok(dp) = result {
        dp.stop();
        panic!("bound a control socket in a directory others can write");
    }
    assert!(text.contains("shared"), "{text}");
    // A fresh directory is created 0700 and the socket is 0600.
    let fresh = dir.path().join("fresh").join("dp.sock");
    let dp = Dataplane::start(config(&fresh)).expect("dataplane starts");
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    println!(
        "fresh directory mode {:o}, socket mode {:o}",
        mode(fresh.parent().unwrap()),
        mode(&fresh)
    );
    assert_eq!(mode(fresh.parent().unwrap()), 0o700);
    assert_eq!(mode(&fresh), 0o600);
    dp.stop();
}

/// #9: a connection from another user is refused by the dataplane (`SO_PEERCRED`), even when
/// the socket's permissions would let it in. Runs where the test may switch users (root, with
/// `setpriv`); elsewhere it says so and passes.
#[test]
fn a_connection_from_another_user_is_refused() {
    let root = std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false);
    if !root
        || Command::new("setpriv").arg("--version").output().is_err()
        || !Path::new("/usr/bin/python3").exists()
    {
        eprintln!("skipping: needs root, setpriv and /usr/bin/python3 to connect as another user");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let Some(dp) = dataplane(dir.path()) else {
        return;
    };
    // Open the way, as a careless deployment might.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
    std::fs::set_permissions(dp.control_socket(), std::fs::Permissions::from_mode(0o666)).unwrap();
    // Reads for at most 3 s in all (a dataplane that serves it keeps sending events).
    let script = "import socket,sys,time\ns=socket.socket(socket.AF_UNIX)\ns.connect(sys.argv[1])\nend=time.monotonic()+3\nn=0\ntry:\n  while time.monotonic()<end:\n    s.settimeout(max(0.01,end-time.monotonic()))\n    b=s.recv(4096)\n    if not b: break\n    n+=len(b)\nexcept Exception: pass\nprint(n)\n";
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "/usr/bin/python3",
            "-c",
            script,
        ])
        .arg(dp.control_socket())
        .stderr(Stdio::inherit())
        .output()
        .expect("run python as nobody");
    let text = String::from_utf8_lossy(&out.stdout);
    println!("bytes the dataplane sent to uid 65534: {}", text.trim());
    assert_eq!(text.trim(), "0", "another user got the dataplane's hello");
    dp.stop();
}

/// #9: `sluice up` does not attach to a socket in a directory others can write (someone else
/// could have put it there); it exits naming `dataplane.control_socket`.
#[test]
fn sluice_up_does_not_attach_to_a_socket_others_could_have_placed() {
    let dir = tempfile::tempdir().unwrap();
    let open = dir.path().join("shared");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
    let socket = open.join("dataplane.sock");
    let _listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    let config = dir.path().join("sluice.toml");
    std::fs::write(
        &config,
        format!(
            "[control]\nhttp = \"127.0.0.1:0\"\nstate_file = \"{}\"\n[control.api_keys]\n{KEY} = \"{SECRET}\"\n[dataplane]\ncontrol_socket = \"{}\"\n",
            dir.path().join("state.json").display(),
            socket.display()
        ),
    )
    .unwrap();
    let run = sluice_up_until_exit(&config, &[], Duration::from_secs(5));
    let (status, err) = (run.status, run.stderr);
    println!("sluice up with a socket in a 0777 directory: exit {status:?}\n{err}");
    assert!(status.is_some(), "sluice up attached and kept running");
    assert!(err.contains("dataplane.control_socket"), "{err}");
}
