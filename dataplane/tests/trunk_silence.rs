//! A trunk that goes silent (issue 16 build 4, D100) between two real in-process dataplanes
//! on loopback, the trunk through `sluice-netem` (A → relay → B, B → relay's upstream socket
//! → A). No media at all:
//!
//! - idle for 5 s, neither dataplane says `trunk_silent` (the trunks' own reports keep it up);
//! - the relay blackholed both ways: each says `trunk_silent` once, within the default
//!   `silence_ms` (2 s) + one report interval (0.5 s) + slack of the blackhole (printed);
//! - the relay open again: each says `trunk_resumed` (time printed).
//!
//! The commands are built from JSON and events matched by their `type`, so the same file
//! builds against a dataplane without the feature (where it fails: no `trunk_silent`).

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use serde_json::json;
use sluice_dataplane::config::Config;
use sluice_dataplane::runtime::{Dataplane, DataplaneHandle};
use sluice_dataplane::sys::affinity;
use sluice_proto::{Command, ControlClient, Hello};
use sluice_tests::netem::{Direction, Relay, RelayConfig};

const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

struct Node {
    _dp: DataplaneHandle,
    ctl: ControlClient,
    media: SocketAddr,
}

fn node(dir: &tempfile::TempDir, name: &str) -> Node {
    let cores = affinity::online_cores().expect("cores");
    let mut cfg = Config::defaults(cores.len());
    cfg.workers = vec![cores[0]];
    cfg.bind = LOCAL;
    cfg.port = 0;
    cfg.control_socket = dir.path().join(format!("{name}.sock"));
    cfg.buffers_per_worker = 1024;
    cfg.stats_interval_ms = 1000;
    cfg.trunk_secret_file = Some(dir.path().join("cluster.secret"));
    let dp = Dataplane::start(cfg).expect("dataplane starts");
    let media = dp.local_addrs()[0];
    let mut ctl = ControlClient::connect(dp.control_socket()).expect("connect");
    ctl.hello(Hello::control("silence-test")).expect("hello");
    Node {
        _dp: dp,
        ctl,
        media,
    }
}

fn trunk(id: u64, remote: SocketAddr, local: &str, peer: &str) -> Command {
    serde_json::from_value(json!({
        "type": "create_session", "session": id,
        "ice": {"ufrag": format!("trk{id}"), "pwd": "0123456789abcdefghijklmn"},
        "dtls_role": "server", "worker_hint": 0,
        "quality": {"max_bitrate_bps": 20_000_000, "priority": 255},
        "mode": {"type": "trunk", "remote": remote, "local_port": null,
            "crypto": {"type": "srtp", "local_node": local, "remote_node": peer, "epoch": 1}}
    }))
    .expect("create_session")
}

/// Events of `kind` (`trunk_silent`, `trunk_resumed`) for `session` within `wait`, with when.
fn watch(ctl: &mut ControlClient, wait: Duration) -> Vec<(Instant, String, u64)> {
    let end = Instant::now() + wait;
    let mut seen = Vec::new();
    while let Some(left) = end.checked_duration_since(Instant::now()) {
        let Ok(Some(ev)) = ctl.next_event(left) else {
            continue;
        };
        let v = serde_json::to_value(&ev.event).expect("json");
        let kind = v["type"].as_str().unwrap_or_default().to_owned();
        if kind.starts_with("trunk_") {
            println!("  event {v}");
            seen.push((Instant::now(), kind, v["session"].as_u64().unwrap_or(0)));
        }
    }
    seen
}

fn first(seen: &[(Instant, String, u64)], kind: &str, session: u64) -> Option<Instant> {
    seen.iter()
        .find(|(_, k, s)| k == kind && *s == session)
        .map(|(t, _, _)| *t)
}

fn count(seen: &[(Instant, String, u64)], kind: &str) -> usize {
    seen.iter().filter(|(_, k, _)| k == kind).count()
}

#[test]
fn a_blackholed_trunk_is_found_silent_and_resumes() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("cluster.secret"), [0x42u8; 32]).expect("secret");
    let mut a = node(&dir, "a");
    let mut b = node(&dir, "b");
    let source = UdpSocket::bind((LOCAL, 0))
        .and_then(|s| s.local_addr())
        .expect("a free port");
    let relay = Relay::start(RelayConfig {
        upstream_source: Some(source),
        ..RelayConfig::new(SocketAddr::new(LOCAL, 0), b.media)
    })
    .expect("netem");
    a.ctl
        .request(trunk(1, relay.local_addr(), "node-a", "node-b"))
        .expect("trunk on A");
    b.ctl
        .request(trunk(2, source, "node-b", "node-a"))
        .expect("trunk on B");

    // Idle: both threads watch their control sockets at once.
    let idle = Duration::from_secs(5);
    let (seen_a, seen_b) = std::thread::scope(|s| {
        let ha = s.spawn(|| watch(&mut a.ctl, idle));
        let seen_b = watch(&mut b.ctl, idle);
        (ha.join().expect("watch"), seen_b)
    });
    println!(
        "idle {idle:?}: trunk events A {}, B {}; relay {}",
        seen_a.len(),
        seen_b.len(),
        relay.stats().to_json()
    );
    assert!(seen_a.is_empty() && seen_b.is_empty(), "no false silence");

    // Blackhole.
    let cut = Instant::now();
    relay.pause(Direction::Up);
    relay.pause(Direction::Down);
    let window = Duration::from_secs(4);
    let (seen_a, seen_b) = std::thread::scope(|s| {
        let ha = s.spawn(|| watch(&mut a.ctl, window));
        let seen_b = watch(&mut b.ctl, window);
        (ha.join().expect("watch"), seen_b)
    });
    let (ta, tb) = (
        first(&seen_a, "trunk_silent", 1).expect("A says trunk_silent"),
        first(&seen_b, "trunk_silent", 2).expect("B says trunk_silent"),
    );
    let (da, db) = (ta - cut, tb - cut);
    println!("blackholed: trunk_silent on A {da:?}, on B {db:?} after the cut (target <= 3 s)");
    assert!(da <= Duration::from_millis(2_700) && db <= Duration::from_millis(2_700));
    assert!(da >= Duration::from_millis(1_400) && db >= Duration::from_millis(1_400));
    assert_eq!(
        (
            count(&seen_a, "trunk_silent"),
            count(&seen_b, "trunk_silent")
        ),
        (1, 1)
    );

    // Open again.
    let back = Instant::now();
    relay.resume(Direction::Up);
    relay.resume(Direction::Down);
    let (seen_a, seen_b) = std::thread::scope(|s| {
        let ha = s.spawn(|| watch(&mut a.ctl, Duration::from_secs(2)));
        let seen_b = watch(&mut b.ctl, Duration::from_secs(2));
        (ha.join().expect("watch"), seen_b)
    });
    let (ra, rb) = (
        first(&seen_a, "trunk_resumed", 1).expect("A says trunk_resumed"),
        first(&seen_b, "trunk_resumed", 2).expect("B says trunk_resumed"),
    );
    println!(
        "open again: trunk_resumed on A {:?}, on B {:?} after",
        ra - back,
        rb - back
    );
    assert!(ra - back <= Duration::from_millis(1_000) && rb - back <= Duration::from_millis(1_000));
    assert_eq!(
        count(&seen_a, "trunk_silent") + count(&seen_b, "trunk_silent"),
        0
    );
    println!("relay {}", relay.stop().to_json());
}
