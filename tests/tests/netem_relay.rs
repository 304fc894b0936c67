//! `sluice-netem` end to end on loopback: a UDP echo server behind the relay, clients in front.
//! Every wait is a socket read timeout inside a loop bounded by a deadline; completion is
//! decided by counts (the relay's stats and the echoes received), never by sleeping.
#![forbid(unsafe_code)]

use std::collections::{BTreeSet, HashMap};
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, UdpSocket};
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use sluice_tests::netem::{Direction, Relay, RelayConfig, RelayHandle, Stats};

/// Datagrams sent before waiting for the window to settle: small enough that no socket
/// buffer on the path can overflow, so every loss the test sees is the relay's decision.
const WINDOW: usize = 64;
const SETTLE_LIMIT: Duration = Duration::from_secs(3);

#[test]
fn loss_is_near_the_rate_and_repeats_for_a_seed() {
    let echo = Echo::start();
    let lost = |seed| {
        let relay = relay(&echo, seed, |c| c.up.loss = 0.1);
        let client = client(&relay);
        let arrived: BTreeSet<u32> = pump(&client, &relay, 0..5_000).into_iter().collect();
        let lost: Vec<u32> = (0..5_000).filter(|s| !arrived.contains(s)).collect();
        let stats = relay.stop();
        assert_eq!(stats.up.dropped_loss, lost.len() as u64);
        assert_eq!(stats.up.received, 5_000);
        lost
    };
    let first = lost(42);
    // Binomial(5000, 0.1): mean 500, standard deviation 21.
    assert!((400..=600).contains(&first.len()), "lost {}", first.len());
    assert_eq!(first, lost(42), "same seed, same drop pattern");
}

#[test]
fn delay_shifts_every_arrival() {
    let echo = Echo::start();
    let delay = Duration::from_millis(30);
    let relay = relay(&echo, 1, |c| c.up.delay = delay);
    let client = client(&relay);
    for seq in 0..10 {
        let sent = Instant::now();
        client.send(&payload(seq)).expect("send");
        let echoed = recv_seq(&client).expect("echo within the read timeout");
        assert_eq!(echoed, seq);
        assert!(sent.elapsed() >= delay, "rtt {:?}", sent.elapsed());
    }
}

#[test]
fn reorder_produces_out_of_order_arrivals() {
    let echo = Echo::start();
    let relay = relay(&echo, 3, |c| {
        c.up.reorder = 0.2;
        c.up.reorder_delay = Duration::from_millis(5);
    });
    let client = client(&relay);
    let arrived = pump(&client, &relay, 0..500);
    assert_eq!(arrived.len(), 500, "reorder loses nothing");
    let mut highest = None;
    let mut late = 0;
    for &seq in &arrived {
        if highest.is_some_and(|h| seq < h) {
            late += 1;
        }
        highest = highest.max(Some(seq));
    }
    let stats = relay.stop();
    assert!(stats.up.reordered > 50, "{stats:?}");
    assert!(late > 0, "no arrival came after a later-sent datagram");
}

#[test]
fn duplicate_produces_copies() {
    let echo = Echo::start();
    let relay = relay(&echo, 4, |c| c.up.duplicate = 0.2);
    let client = client(&relay);
    let mut copies: HashMap<u32, u32> = HashMap::new();
    for seq in pump(&client, &relay, 0..500) {
        *copies.entry(seq).or_default() += 1;
    }
    let stats = relay.stop();
    assert_eq!(copies.len(), 500, "every datagram arrives");
    let twice = copies.values().filter(|&&n| n == 2).count() as u64;
    assert!(copies.values().all(|&n| n <= 2));
    assert!(twice > 50, "twice {twice}");
    assert_eq!(twice, stats.up.duplicated);
    assert_eq!(stats.up.forwarded, 500 + twice);
}

#[test]
fn pause_drops_everything_and_resume_restores() {
    let echo = Echo::start();
    let relay = relay(&echo, 5, |_| {});
    let client = client(&relay);

    relay.pause(Direction::Up);
    assert!(pump(&client, &relay, 0..100).is_empty());
    assert_eq!(relay.stats().up.dropped_pause, 100);

    relay.resume(Direction::Up);
    relay.pause(Direction::Down);
    assert!(pump(&client, &relay, 100..150).is_empty());
    assert_eq!(relay.stats().down.dropped_pause, 50);

    relay.resume(Direction::Down);
    let arrived = pump(&client, &relay, 150..250);
    assert_eq!(arrived, (150..250).collect::<Vec<_>>());
}

#[test]
fn each_client_gets_its_own_upstream_socket() {
    let echo = Echo::start();
    let relay = relay(&echo, 6, |_| {});
    let seen_by_server = |client: &UdpSocket| -> SocketAddr {
        client.send(b"whoami").expect("send");
        let mut buf = [0u8; 64];
        let n = client
            .recv(&mut buf)
            .expect("reply within the read timeout");
        std::str::from_utf8(&buf[..n])
            .expect("utf8")
            .parse()
            .expect("address")
    };
    let (a, b) = (client(&relay), client(&relay));
    let (seen_a, seen_b) = (seen_by_server(&a), seen_by_server(&b));
    assert_ne!(seen_a, seen_b);
    assert_eq!(seen_by_server(&a), seen_a, "the mapping is stable");
    for seen in [seen_a, seen_b] {
        assert!(seen.ip().is_loopback());
        assert_ne!(seen, relay.local_addr());
        assert_ne!(seen, a.local_addr().expect("addr"));
        assert_ne!(seen, b.local_addr().expect("addr"));
    }
    assert_eq!(relay.stop().clients, 2);
}

#[test]
fn refuses_non_loopback_addresses() {
    let loopback: SocketAddr = "127.0.0.1:0".parse().expect("addr");
    // 192.0.2.0/24 is TEST-NET-1; nothing is ever sent, start refuses first.
    let remote: SocketAddr = "192.0.2.1:9".parse().expect("addr");
    let any: SocketAddr = "0.0.0.0:0".parse().expect("addr");
    for config in [
        RelayConfig::new(loopback, remote),
        RelayConfig::new(any, loopback),
    ] {
        let err = Relay::start(config).expect_err("must refuse");
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    }
    let mut bad = RelayConfig::new(loopback, loopback);
    bad.down.loss = 2.0;
    assert!(Relay::start(bad).is_err());
}

#[test]
fn binary_is_driven_by_control_lines() {
    let echo = Echo::start();
    let mut child = Command::new(env!("CARGO_BIN_EXE_sluice-netem"))
        .args(["--listen", "127.0.0.1:0", "--upstream"])
        .arg(echo.addr.to_string())
        .args(["--seed", "7"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn sluice-netem");
    let mut stdin = child.stdin.take().expect("stdin");
    let lines = line_reader(child.stdout.take().expect("stdout"));
    let next_line = || {
        lines
            .recv_timeout(Duration::from_secs(5))
            .expect("a line from sluice-netem")
    };
    let mut command = |line: &str| {
        writeln!(stdin, "{line}").expect("write control line");
        next_line()
    };

    let ready = next_line();
    let addr: SocketAddr = ready
        .strip_prefix("ready ")
        .expect("ready line")
        .parse()
        .expect("addr");
    let client = UdpSocket::bind("127.0.0.1:0").expect("bind");
    client.connect(addr).expect("connect");
    client
        .set_read_timeout(Some(Duration::from_millis(300)))
        .expect("timeout");

    client.send(&payload(1)).expect("send");
    assert_eq!(recv_seq(&client), Some(1));
    assert_eq!(command("pause up"), "ok");
    client.send(&payload(2)).expect("send");
    assert_eq!(recv_seq(&client), None, "paused");
    let stats = command("stats");
    assert!(stats.contains("\"dropped_pause\":1"), "{stats}");
    assert_eq!(command("resume up"), "ok");
    assert_eq!(command("set down delay 20ms"), "ok");
    assert!(command("set sideways loss 0.1").starts_with("error:"));
    let sent = Instant::now();
    client.send(&payload(3)).expect("send");
    assert_eq!(recv_seq(&client), Some(3));
    assert!(sent.elapsed() >= Duration::from_millis(20));
    assert_eq!(command("quit"), "bye");
    let final_stats = next_line();
    assert!(final_stats.starts_with("{\"up\":{\"received\":3,\"forwarded\":2,"));
    assert!(final_stats.ends_with("\"clients\":1}"), "{final_stats}");
    drop(stdin);
    assert!(wait_exit(child).success());
}

#[test]
fn binary_serves_a_unix_control_socket() {
    let echo = Echo::start();
    let path = std::env::temp_dir().join(format!("sluice-netem-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let mut child = Command::new(env!("CARGO_BIN_EXE_sluice-netem"))
        .args(["--listen", "127.0.0.1:0", "--upstream"])
        .arg(echo.addr.to_string())
        .arg("--control")
        .arg(&path)
        .args(["--duration", "5s"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn sluice-netem");
    let lines = line_reader(child.stdout.take().expect("stdout"));
    let next_line = || {
        lines
            .recv_timeout(Duration::from_secs(5))
            .expect("a line from sluice-netem")
    };
    // The socket is bound before `ready` is printed.
    assert!(next_line().starts_with("ready "));
    let stream = UnixStream::connect(&path).expect("connect control socket");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut replies = BufReader::new(stream.try_clone().expect("clone"));
    let mut writer = stream;
    let mut command = |line: &str| {
        writeln!(writer, "{line}").expect("write");
        let mut reply = String::new();
        replies.read_line(&mut reply).expect("reply");
        reply.trim_end().to_owned()
    };
    assert_eq!(command("pause both"), "ok");
    assert!(command("stats").starts_with("{\"up\":{\"received\":0,"));
    assert_eq!(command("quit"), "bye");
    assert!(next_line().ends_with("\"clients\":0}"));
    assert!(wait_exit(child).success());
    assert!(!path.exists(), "the socket file is removed on exit");
}

#[test]
fn binary_refuses_a_non_loopback_upstream() {
    let child = Command::new(env!("CARGO_BIN_EXE_sluice-netem"))
        .args(["--listen", "127.0.0.1:0", "--upstream", "192.0.2.1:9"])
        .args(["--control", "none", "--duration", "5s"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn sluice-netem");
    assert_eq!(wait_exit(child).code(), Some(1));
}

/// Starts a relay in front of `echo` with `configure` applied to a perfect-link config.
fn relay(echo: &Echo, seed: u64, configure: impl FnOnce(&mut RelayConfig)) -> RelayHandle {
    let mut config = RelayConfig::new("127.0.0.1:0".parse().expect("addr"), echo.addr);
    config.seed = seed;
    configure(&mut config);
    Relay::start(config).expect("relay starts")
}

fn client(relay: &RelayHandle) -> UdpSocket {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind client");
    socket.connect(relay.local_addr()).expect("connect");
    socket
        .set_read_timeout(Some(Duration::from_secs(2)))
        .expect("timeout");
    socket
}

fn payload(seq: u32) -> [u8; 100] {
    let mut p = [0u8; 100];
    p[..4].copy_from_slice(&seq.to_be_bytes());
    p
}

fn recv_seq(socket: &UdpSocket) -> Option<u32> {
    let mut buf = [0u8; 256];
    let n = socket.recv(&mut buf).ok()?;
    Some(u32::from_be_bytes(buf[..4].try_into().ok()?)).filter(|_| n == 100)
}

/// Sends `seqs` through the relay in windows and returns the echoes in arrival order. A
/// window is done when the relay has settled every datagram of both directions and the client
/// has read every datagram the relay forwarded down.
fn pump(client: &UdpSocket, relay: &RelayHandle, seqs: std::ops::Range<u32>) -> Vec<u32> {
    client
        .set_read_timeout(Some(Duration::from_millis(5)))
        .expect("timeout");
    let base = relay.stats();
    let mut arrived = Vec::new();
    let mut sent = 0u64;
    let all: Vec<u32> = seqs.collect();
    for window in all.chunks(WINDOW) {
        for &seq in window {
            client.send(&payload(seq)).expect("send");
        }
        sent += window.len() as u64;
        let deadline = Instant::now() + SETTLE_LIMIT;
        while !settled(&base, &relay.stats(), sent, arrived.len() as u64) {
            assert!(
                Instant::now() < deadline,
                "window did not settle: {:?}",
                relay.stats()
            );
            if let Some(seq) = recv_seq(client) {
                arrived.push(seq);
            }
        }
    }
    arrived
}

/// Nothing in flight anywhere since `base`: the relay read all `sent` datagrams, decided every
/// one in both directions, the echo server answered everything forwarded up, and the client
/// read everything forwarded down.
fn settled(base: &Stats, now: &Stats, sent: u64, arrived: u64) -> bool {
    let delta = |d: Direction| {
        let (b, n) = (base.dir(d), now.dir(d));
        let out = (n.forwarded + n.dropped_loss + n.dropped_pause + n.dropped_queue)
            + n.dropped_other
            - (b.forwarded + b.dropped_loss + b.dropped_pause + b.dropped_queue + b.dropped_other);
        let input = (n.received + n.duplicated) - (b.received + b.duplicated);
        (input, out, n.forwarded - b.forwarded)
    };
    let (up_in, up_out, up_forwarded) = delta(Direction::Up);
    let (down_in, down_out, down_forwarded) = delta(Direction::Down);
    now.up.received - base.up.received == sent
        && up_in == up_out
        && down_in == up_forwarded
        && down_in == down_out
        && down_forwarded == arrived
}

/// Lines of the child's stdout, read on a thread so the test can wait with a timeout.
fn line_reader(stdout: std::process::ChildStdout) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Waits up to 5 s for the child to exit (every child here also has stdin EOF or
/// `--duration` to end it should the test fail first).
fn wait_exit(child: std::process::Child) -> std::process::ExitStatus {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut child = child;
        let _ = tx.send(child.wait());
    });
    rx.recv_timeout(Duration::from_secs(5))
        .expect("sluice-netem exits")
        .expect("wait")
}

/// A UDP echo server on loopback: echoes each datagram to its sender, except `whoami`, which
/// it answers with the sender's address.
struct Echo {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Echo {
    fn start() -> Self {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind echo");
        socket
            .set_read_timeout(Some(Duration::from_millis(20)))
            .expect("timeout");
        let addr = socket.local_addr().expect("addr");
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(60);
            let mut buf = [0u8; 2048];
            while !flag.load(Ordering::Relaxed) && Instant::now() < deadline {
                let Ok((n, from)) = socket.recv_from(&mut buf) else {
                    continue;
                };
                let _ = if &buf[..n] == b"whoami" {
                    socket.send_to(from.to_string().as_bytes(), from)
                } else {
                    socket.send_to(&buf[..n], from)
                };
            }
        });
        Echo {
            addr,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[test]
fn upstream_source_fixes_the_address_the_upstream_sees() {
    // An upstream that records who sends to it (a dataplane trunk accepts one known source).
    let upstream = UdpSocket::bind("127.0.0.1:0").expect("bind");
    upstream
        .set_read_timeout(Some(Duration::from_secs(2)))
        .expect("timeout");
    let source = UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("a free port");
    let relay = Relay::start(RelayConfig {
        upstream_source: Some(source),
        ..RelayConfig::new(
            "127.0.0.1:0".parse().expect("addr"),
            upstream.local_addr().expect("addr"),
        )
    })
    .expect("relay");
    let client = UdpSocket::bind("127.0.0.1:0").expect("bind");
    client.send_to(b"hello", relay.local_addr()).expect("send");
    let mut buf = [0u8; 16];
    let (n, from) = upstream.recv_from(&mut buf).expect("the datagram arrives");
    assert_eq!((&buf[..n], from), (&b"hello"[..], source));
    // Replies sent to that address reach the client.
    upstream.send_to(b"back", source).expect("reply");
    client
        .set_read_timeout(Some(Duration::from_secs(2)))
        .expect("timeout");
    let n = client.recv(&mut buf).expect("the reply arrives");
    assert_eq!(&buf[..n], b"back");
    relay.stop();
}
