//! Cascade orchestration (issue 16, docs/cluster.md "Cascading"): two cluster nodes on a real
//! `redis-server` sharing one trunk secret file: A an in-process control daemon linked to a
//! real loopback dataplane, B a real `sluice up` with its own `sluice-dataplane`. alice publishes Opus on A (ICE, DTLS, SRTP through our
//! WebSocket signaling); three plain-RTP viewers are created on B through B's control daemon
//! (`POST /internal/cascade/viewers`), which asks A for the relay; A opens the trunk (B sets up
//! the mirror) and relays the layer. The test issues no dataplane command itself.
//!
//! Asserted and printed: each viewer receives ≥ 95 % of what alice sent in a 4 s window with
//! no sequence gap; A's trunk forwarded each published packet once (not three times); after
//! the viewers are deleted the relay closes after the grace period (2 s here), not before;
//! `kill -9` of B (a real `sluice up` and its `sluice-dataplane`): A's trunk and relay are torn
//! down within the lease (1.5 s) plus a janitor period (target ≤ 3 s).
//!
//! A second test (two in-process nodes, each home of a room with a publisher): a viewer on
//! each of the other's room, requested at once, makes both ends set the pair up; they
//! converge on one epoch and the one trunk carries a relay each way.
//!
//! A third (two in-process nodes, the trunk through `sluice-netem` via `cluster.media`): the
//! trunk path blackholed while both nodes stay live is found silent by both dataplanes and torn
//! down (target ≤ 3 s), set up again when the path returns (the viewer gets media again, and a
//! new one); a one-way cut is found by the deaf end alone and healed through the mirror.
//!
//! A fourth (two in-process nodes, the trunk through `sluice-netem` with 3 % loss A → B): a VP8
//! camera relayed from A repairs with RTX through the control path (the relay names an RTX
//! SSRC, the edge ingests it): A's trunk retransmits and the viewer on B misses under 1 %.

#[path = "../../control/tests/api_support/mod.rs"]
mod api_support;
mod cascade_support;
#[path = "../../control/tests/cluster_support/mod.rs"]
mod cluster_support;
mod node_support;

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use api_support::*;
use cascade_support::*;
use cluster_support::Redis;
use node_support::*;
use serde_json::{json, Value};
use sluice_control::server::Server;
use sluice_dataplane::runtime::DataplaneHandle;
use sluice_dataplane::testpeer::TestPeer;

const GRACE_MS: u64 = 2000;
const LEASE_MS: u64 = 1500;

async fn cluster_node(
    redis: &Redis,
    id: &str,
    secret: &std::path::Path,
) -> Option<(tempfile::TempDir, DataplaneHandle, Server)> {
    let secret = secret.to_owned();
    let (dir, dp) = loopback_dataplane(|c| c.trunk_secret_file = Some(secret))?;
    let s = cluster_server(redis, id, &dp, (LEASE_MS, GRACE_MS), &[]).await;
    Some((dir, dp, s))
}

/// What one viewer got: sequence numbers in arrival order.
fn viewer_reader(s: UdpSocket, ssrc: u32, stop: Arc<AtomicBool>) -> Arc<Mutex<Vec<u16>>> {
    let seqs = Arc::new(Mutex::new(Vec::new()));
    let out = Arc::clone(&seqs);
    s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        while !stop.load(Ordering::Relaxed) {
            let Ok(n) = s.recv(&mut buf) else { continue };
            if n < 12 || (192..=223).contains(&buf[1]) {
                continue;
            }
            if u32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]) == ssrc {
                out.lock()
                    .unwrap()
                    .push(u16::from_be_bytes([buf[2], buf[3]]));
            }
        }
    });
    seqs
}

/// Sequence gaps (missing numbers) in `seqs`.
fn gaps(seqs: &[u16]) -> u32 {
    seqs.windows(2)
        .map(|w| u32::from(w[1].wrapping_sub(w[0]).wrapping_sub(1)).min(1000))
        .sum()
}

/// A viewer on `node` of `room`'s track `sid`: its session id and what it receives.
async fn viewer(
    node: SocketAddr,
    room: &str,
    sid: &str,
    stop: &Arc<AtomicBool>,
) -> (u64, Arc<Mutex<Vec<u16>>>) {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let body = json!({"room": room, "track": sid, "layer": 0,
        "remote": sock.local_addr().unwrap().to_string()});
    let (s, v) = call(node, "POST", "/internal/cascade/viewers", &body.to_string()).await;
    assert_eq!(s, 201, "{v}");
    let ssrc = v["ssrc"].as_u64().unwrap() as u32;
    (
        v["session"].as_u64().unwrap(),
        viewer_reader(sock, ssrc, Arc::clone(stop)),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trunk_carries_relays_both_ways_when_both_ends_set_it_up_at_once() {
    let redis = Redis::start();
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("cluster.secret");
    std::fs::write(&secret, [9u8; 32]).unwrap();
    let Some((_da, _dpa, a)) = cluster_node(&redis, "a", &secret).await else {
        return;
    };
    let Some((_db, _dpb, b)) = cluster_node(&redis, "b", &secret).await else {
        return;
    };
    until(
        "both nodes live with media",
        Duration::from_secs(10),
        async || media_published(&redis, &["a", "b"]),
    )
    .await;
    let stop = Arc::new(AtomicBool::new(false));
    // Room m homed on A (alice), room n homed on B (bob).
    let (_wa, pa, _, ta) = publish(a.addr, "m", "alice", Arc::clone(&stop)).await;
    let (_wb, pb, _, tb) = publish(b.addr, "n", "bob", Arc::clone(&stop)).await;
    assert_eq!(redis.cli(&["HGET", "sl:room:n", "home"]), "b");
    // A viewer of m on B and one of n on A at the same moment: both ends set the pair up.
    let ((_, on_b), (_, on_a)) = tokio::join!(
        viewer(b.addr, "m", &ta, &stop),
        viewer(a.addr, "n", &tb, &stop)
    );
    let (_, ra) = call(a.addr, "GET", "/internal/cascade", "").await;
    let (_, rb) = call(b.addr, "GET", "/internal/cascade", "").await;
    println!("A: {ra}\nB: {rb}");
    let (ea, eb) = (&ra["trunks"][0]["epoch"], &rb["trunks"][0]["epoch"]);
    assert_eq!(ra["trunks"].as_array().map(Vec::len), Some(1), "{ra}");
    assert_eq!(ea, eb, "both ends hold the same epoch");
    let t = until("media both ways", Duration::from_secs(5), async || {
        on_a.lock().unwrap().len() >= 100 && on_b.lock().unwrap().len() >= 100
    })
    .await;
    let (ga, gb) = (gaps(&on_a.lock().unwrap()), gaps(&on_b.lock().unwrap()));
    println!("one trunk (epoch {ea}) carries m to B and n to A: 100 packets each way within {t:?}, gaps {ga}/{gb}");
    assert_eq!((ga, gb), (0, 0));
    stop.store(true, Ordering::Relaxed);
    let _ = (pa.join(), pb.join());
    a.stop();
    b.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_track_on_a_reaches_viewers_on_b_through_one_relay() {
    let redis = Redis::start();
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("cluster.secret");
    std::fs::write(&secret, [7u8; 32]).unwrap();
    let Some((_da, _dpa, a)) = cluster_node(&redis, "a", &secret).await else {
        return;
    };
    let bdir = tempfile::tempdir().unwrap();
    let mut b = sluice_node(&redis, "b", &secret, bdir.path(), (LEASE_MS, GRACE_MS), "");
    until(
        "both nodes live with media",
        Duration::from_secs(10),
        async || {
            let (_, v) = call(a.addr, "GET", "/api/cluster", "").await;
            // Both media addresses: a relay from a node that has not published its own yet is
            // refused (409 `node`), which the refusal checks below would read first.
            v["nodes"].as_array().map_or(0, Vec::len) == 2 && media_published(&redis, &["a", "b"])
        },
    )
    .await;

    // alice publishes Opus on A (A becomes the room's home).
    let stop = Arc::new(AtomicBool::new(false));
    let (_ws, publisher, sent, sid) = publish(a.addr, "m", "alice", Arc::clone(&stop)).await;
    assert_eq!(redis.cli(&["HGET", "sl:room:m", "home"]), "a");

    // Refusals name the field.
    let (s, v) = call(
        b.addr,
        "POST",
        "/internal/cascade/trunks",
        r#"{"node":"zz","epoch":1}"#,
    )
    .await;
    assert_eq!(
        (s, v["error"]["field"].as_str()),
        (404, Some("node")),
        "{v}"
    );
    let (s, v) = call(
        b.addr,
        "POST",
        "/internal/cascade/trunks",
        r#"{"node":"a","epoch":0}"#,
    )
    .await;
    assert_eq!(
        (s, v["error"]["field"].as_str()),
        (400, Some("epoch")),
        "{v}"
    );
    let (s, _) = http(b.addr, "POST", "/internal/cascade/viewers", &[], "{}").await;
    assert_eq!(s, 401);
    let body = json!({"room": "m", "track": "TR_999", "remote": "127.0.0.1:9"});
    let (s, v) = call(
        b.addr,
        "POST",
        "/internal/cascade/viewers",
        &body.to_string(),
    )
    .await;
    assert_eq!(
        (s, v["error"]["field"].as_str()),
        (404, Some("track")),
        "{v}"
    );

    // Three viewers on B, through B's control daemon.
    let mut viewers = Vec::new();
    for _ in 0..3 {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        let body = json!({"room": "m", "track": sid, "layer": 0,
            "remote": sock.local_addr().unwrap().to_string()});
        let (s, v) = call(
            b.addr,
            "POST",
            "/internal/cascade/viewers",
            &body.to_string(),
        )
        .await;
        assert_eq!(s, 201, "{v}");
        let ssrc = v["ssrc"].as_u64().unwrap() as u32;
        // Plain RTP learns nothing from us, but a first packet opens any stateful path.
        sock.send_to(
            &[0x80, 0xc8, 0, 1, 0, 0, 0, 1],
            v["media"].as_str().unwrap(),
        )
        .unwrap();
        viewers.push((
            v["session"].as_u64().unwrap(),
            viewer_reader(sock, ssrc, Arc::clone(&stop)),
        ));
    }
    let (_, rep) = call(a.addr, "GET", "/internal/cascade", "").await;
    println!("A's cascade after 3 viewers: {rep}");
    assert_eq!(rep["relays"].as_array().map(Vec::len), Some(1), "{rep}");
    assert_eq!(rep["relays"][0]["users"], 3, "{rep}");
    let first = until(
        "media at every viewer",
        Duration::from_secs(5),
        async || viewers.iter().all(|(_, r)| !r.lock().unwrap().is_empty()),
    )
    .await;
    println!("first media at all 3 viewers {first:?} after the last viewer was made");

    // The window.
    let base = |v: &[(u64, Arc<Mutex<Vec<u16>>>)]| -> Vec<usize> {
        v.iter().map(|(_, r)| r.lock().unwrap().len()).collect()
    };
    let (s0, f0, r0) = (
        sent.load(Ordering::Relaxed),
        trunk_forwarded(a.addr).await,
        base(&viewers),
    );
    tokio::time::sleep(Duration::from_secs(4)).await;
    let (s1, f1, r1) = (
        sent.load(Ordering::Relaxed),
        trunk_forwarded(a.addr).await,
        base(&viewers),
    );
    let window = (s1 - s0) as f64;
    let crossed = (f1 - f0) as f64 / window;
    println!(
        "window 4 s: alice sent {}, A's trunk forwarded {} ({crossed:.3} per published packet)",
        s1 - s0,
        f1 - f0
    );
    for (i, (_, r)) in viewers.iter().enumerate() {
        let seqs = r.lock().unwrap();
        let got = (r1[i] - r0[i]) as f64 / window;
        let g = gaps(&seqs[r0[i]..r1[i]]);
        println!(
            "viewer {i}: {} packets in the window ({:.1} %), {g} sequence gaps",
            r1[i] - r0[i],
            got * 100.0
        );
        assert!(got >= 0.95, "viewer {i} got {:.1} %", got * 100.0);
        assert_eq!(g, 0, "viewer {i}: sequence gaps");
    }
    assert!(
        (0.95..=1.05).contains(&crossed),
        "each packet crosses the trunk once: {crossed:.3}"
    );

    // Release: the relay outlives the last viewer by the grace period.
    for (session, _) in &viewers {
        let (s, v) = call(
            b.addr,
            "DELETE",
            &format!("/internal/cascade/viewers/{session}"),
            "",
        )
        .await;
        assert_eq!(s, 204, "{v}");
    }
    let closed = until(
        "relay closed after release",
        Duration::from_millis(GRACE_MS + 3000),
        async || {
            let (_, v) = call(a.addr, "GET", "/internal/cascade", "").await;
            v["relays"].as_array().is_some_and(Vec::is_empty)
        },
    )
    .await;
    println!("relay closed {closed:?} after the last release (grace {GRACE_MS} ms)");
    assert!(
        closed >= Duration::from_millis(GRACE_MS - 100),
        "closed before the grace: {closed:?}"
    );

    // Nothing rides the trunk now: both ends close it after the grace.
    let idle = until(
        "both trunk ends closed when idle",
        Duration::from_millis(GRACE_MS + 3000),
        async || {
            let (_, va) = call(a.addr, "GET", "/internal/cascade", "").await;
            let (_, vb) = call(b.addr, "GET", "/internal/cascade", "").await;
            va["trunks"].as_array().is_some_and(Vec::is_empty)
                && vb["trunks"].as_array().is_some_and(Vec::is_empty)
        },
    )
    .await;
    println!("idle trunk closed on both ends {idle:?} after the relay");

    // A viewer again: a new trunk, re-keyed with the next epoch on both ends, carries media.
    let (_, again) = viewer(b.addr, "m", &sid, &stop).await;
    let (_, rep) = call(a.addr, "GET", "/internal/cascade", "").await;
    assert_eq!(rep["trunks"][0]["epoch"], 2, "{rep}");
    let t = until(
        "media over the re-keyed trunk",
        Duration::from_secs(5),
        async || again.lock().unwrap().len() >= 20,
    )
    .await;
    println!("re-keyed trunk (epoch 2): 20 packets at the new viewer within {t:?}");
    // B loses its side while A keeps its own (as when B's dataplane restarted): B's next
    // viewer finds no trunk for A's relay, sets the pair up again (epoch 3) and gets media.
    let (s, _) = call(
        b.addr,
        "POST",
        "/internal/cascade/trunks/close",
        r#"{"node":"a"}"#,
    )
    .await;
    assert_eq!(s, 204);
    let (_, third) = viewer(b.addr, "m", &sid, &stop).await;
    let (_, rep) = call(a.addr, "GET", "/internal/cascade", "").await;
    assert_eq!(rep["trunks"][0]["epoch"], 3, "{rep}");
    let t = until(
        "media after B set the pair up again",
        Duration::from_secs(5),
        async || third.lock().unwrap().len() >= 20,
    )
    .await;
    println!("B's side lost, A's kept: a new viewer re-keyed the pair (epoch 3), 20 packets within {t:?}");

    let dp_pid = b.dataplane_pid().expect("B's dataplane");
    for pid in [b.child.id(), dp_pid] {
        std::process::Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status()
            .unwrap();
    }
    let killed = Instant::now();
    let _ = b.child.wait();
    let torn = until(
        "A's trunk torn down after B vanished",
        Duration::from_secs(6),
        async || {
            let (_, v) = call(a.addr, "GET", "/internal/cascade", "").await;
            v["trunks"].as_array().is_some_and(Vec::is_empty)
                && v["relays"].as_array().is_some_and(Vec::is_empty)
        },
    )
    .await;
    println!("A tore its trunk and relay down {torn:?} after kill -9 of B (lease {LEASE_MS} ms)");
    assert!(
        killed.elapsed() <= Duration::from_secs(3),
        "target ≤ 3 s: {torn:?}"
    );
    let (_, _, text) = http_raw(a.addr, "GET", "/metrics", &[], "").await;
    println!(
        "{}",
        text.lines()
            .filter(|l| l.contains("cascade"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    stop.store(true, Ordering::Relaxed);
    let _ = publisher.join();
    a.stop();
}

/// `sluice_cascade_trunks_closed_total{reason="silent"}` of the node at `addr`.
async fn closed_silent(addr: SocketAddr) -> u64 {
    let (_, _, text) = http_raw(addr, "GET", "/metrics", &[], "").await;
    text.lines()
        .find_map(|l| l.strip_prefix("sluice_cascade_trunks_closed_total{reason=\"silent\"} "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// Issue 16 build 4 (D100–D101): the trunk between two live nodes runs through `sluice-netem`
/// (A's `cluster.media` is the relay's listening address, B's the relay's upstream socket, so
/// both directions cross it). alice publishes on A, a viewer on B gets her audio; the relay is
/// blackholed both ways while both nodes stay live in Redis: each end's dataplane says
/// `trunk_silent` and its control daemon tears the trunk down (counted `reason="silent"`;
/// detection printed, target ≤ 3 s) and keeps setting it up again with backoff. Opened again:
/// the trunk comes back (new epoch) and the viewer that lost its relay gets media again, as
/// does a new viewer (times printed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_trunk_is_torn_down_and_set_up_again_when_the_path_returns() {
    use sluice_tests::netem::{Direction, Relay, RelayConfig};
    let redis = Redis::start();
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("cluster.secret");
    std::fs::write(&secret, [9u8; 32]).unwrap();
    let tweak =
        |c: &mut sluice_dataplane::config::Config| c.trunk_secret_file = Some(secret.clone());
    let Some((_da, dpa)) = loopback_dataplane(tweak) else {
        return;
    };
    let Some((_db, dpb)) = loopback_dataplane(tweak) else {
        return;
    };
    let source = UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .unwrap();
    let relay = Relay::start(RelayConfig {
        upstream_source: Some(source),
        ..RelayConfig::new("127.0.0.1:0".parse().unwrap(), dpa.local_addrs()[0])
    })
    .unwrap();
    let (a, b) = nodes_through(&redis, (&dpa, &dpb), relay.local_addr(), source).await;
    let stop = Arc::new(AtomicBool::new(false));
    let (_ws, publisher, _, sid) = publish(a.addr, "m", "alice", Arc::clone(&stop)).await;
    let (_, v1) = viewer(b.addr, "m", &sid, &stop).await;
    until("media at the viewer", Duration::from_secs(5), async || {
        v1.lock().unwrap().len() >= 50
    })
    .await;
    let epoch = |v: &Value| v["trunks"][0]["epoch"].as_u64();
    let (_, before) = call(a.addr, "GET", "/internal/cascade", "").await;
    let e1 = epoch(&before).expect("a trunk");

    // Blackhole the trunk path; both nodes stay live in the registry.
    relay.pause(Direction::Up);
    relay.pause(Direction::Down);
    let cut = Instant::now();
    let mut seen = [None, None];
    until(
        "both ends find the trunk silent",
        Duration::from_secs(6),
        async || {
            for (i, n) in [&a, &b].iter().enumerate() {
                if seen[i].is_none() && closed_silent(n.addr).await >= 1 {
                    seen[i] = Some(cut.elapsed());
                }
            }
            seen.iter().all(Option::is_some)
        },
    )
    .await;
    let (ta, tb) = (seen[0].unwrap(), seen[1].unwrap());
    println!("blackholed: A tore the trunk down {ta:?}, B {tb:?} after the cut (silence 2 s, target <= 3 s)");
    assert!(ta <= Duration::from_secs(3) && tb <= Duration::from_secs(3));
    let had = v1.lock().unwrap().len();
    assert!(
        redis.cli(&["HGET", "sl:node:b", "media"]).contains(':'),
        "B still live"
    );

    // Open the path again: the trunk comes back and the viewer gets media again.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    relay.resume(Direction::Up);
    relay.resume(Direction::Down);
    let back = Instant::now();
    let t = until(
        "the viewer gets media again",
        Duration::from_secs(15),
        async || v1.lock().unwrap().len() >= had + 50,
    )
    .await;
    let (_, after) = call(a.addr, "GET", "/internal/cascade", "").await;
    let e2 = epoch(&after).expect("a trunk again");
    println!("path open again: trunk at epoch {e2} (was {e1}); the viewer got 50 more packets {t:?} after");
    assert!(e2 > e1);
    let (_, v2) = viewer(b.addr, "m", &sid, &stop).await;
    let t2 = until(
        "a new viewer gets media",
        Duration::from_secs(5),
        async || v2.lock().unwrap().len() >= 20,
    )
    .await;
    println!(
        "a new viewer got 20 packets within {t2:?} ({:?} after the path came back)",
        back.elapsed()
    );
    // One way only (B -> A lost): only A hears nothing; its new epoch replaces B's side, and
    // B's viewer gets its relay back through the mirror once the path returns.
    relay.pause(Direction::Up);
    let cut = Instant::now();
    until(
        "A finds the one-way cut",
        Duration::from_secs(6),
        async || closed_silent(a.addr).await >= 2,
    )
    .await;
    println!(
        "one-way cut (B -> A): A tore the trunk down {:?} after",
        cut.elapsed()
    );
    relay.resume(Direction::Up);
    let had = v1.lock().unwrap().len();
    let t = until(
        "the viewer gets media after the one-way cut",
        Duration::from_secs(15),
        async || v1.lock().unwrap().len() >= had + 50,
    )
    .await;
    println!("one-way path back: the old viewer got 50 more packets {t:?} after");
    for n in [&a, &b] {
        let (_, _, text) = http_raw(n.addr, "GET", "/metrics", &[], "").await;
        let lines: Vec<&str> = text
            .lines()
            .filter(|l| l.contains("trunks_closed_total{"))
            .collect();
        println!("{}: {}", n.addr, lines.join(" "));
    }
    println!("netem {}", relay.stop().to_json());
    stop.store(true, Ordering::Relaxed);
    let _ = publisher.join();
    a.stop();
    b.stop();
}

/// The fixture's camera SSRC (its FID group names an RTX SSRC the publisher never uses: the
/// home repairs from its own packet history).
const ALICE_VIDEO_SSRC: u32 = 1_432_905_237;
const VP8_PT: u8 = 96;

/// A video relay repairs with RTX through the control path (issue 16 Build 1, D108): two
/// in-process nodes, the trunk through `sluice-netem` with 3 % loss from A to B; alice sends
/// VP8 on A (every packet a one-packet keyframe, one every 5 ms); a viewer on B of her camera.
/// The relay A's control daemon opened names an RTX SSRC, A's trunk retransmits, and the viewer
/// misses under 1 % of what was sent (printed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_video_relay_repairs_with_rtx_across_a_lossy_trunk() {
    use sluice_tests::netem::{Impairment, Relay, RelayConfig};
    let redis = Redis::start();
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("cluster.secret");
    std::fs::write(&secret, [9u8; 32]).unwrap();
    let tweak =
        |c: &mut sluice_dataplane::config::Config| c.trunk_secret_file = Some(secret.clone());
    let Some((_da, dpa)) = loopback_dataplane(tweak) else {
        return;
    };
    let Some((_db, dpb)) = loopback_dataplane(tweak) else {
        return;
    };
    let source = UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .unwrap();
    // Upstream is A: `down` is A → B, where the relay's media goes.
    let relay = Relay::start(RelayConfig {
        upstream_source: Some(source),
        down: Impairment {
            loss: 0.03,
            delay: Duration::from_millis(10),
            ..Impairment::default()
        },
        seed: 108,
        ..RelayConfig::new("127.0.0.1:0".parse().unwrap(), dpa.local_addrs()[0])
    })
    .unwrap();
    let (a, b) = nodes_through(&redis, (&dpa, &dpb), relay.local_addr(), source).await;
    let stop = Arc::new(AtomicBool::new(false));
    let (_ws, publisher, sent, sid) = publish_video(a.addr, "v", "alice", Arc::clone(&stop)).await;
    let (_, seqs) = viewer(b.addr, "v", &sid, &stop).await;
    until("video at the viewer", Duration::from_secs(5), async || {
        seqs.lock().unwrap().len() >= 50
    })
    .await;
    // A 4 s window.
    let (s0, r0) = (sent.load(Ordering::Relaxed), seqs.lock().unwrap().len());
    tokio::time::sleep(Duration::from_secs(4)).await;
    let s1 = sent.load(Ordering::Relaxed);
    // Late repairs land within a few RTTs.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let got: Vec<u16> = seqs.lock().unwrap()[r0..].to_vec();
    // What the viewer misses: holes in the range of sequence numbers it got in the window
    // (B's numbering is continuous; a repair arrives late and fills its hole).
    let rel: std::collections::BTreeSet<i64> = got
        .iter()
        .map(|&q| i64::from(q.wrapping_sub(got[0]) as i16))
        .collect();
    let (lo, hi) = (
        rel.first().copied().unwrap_or(0),
        rel.last().copied().unwrap_or(0),
    );
    let span = (hi - lo + 1) as u64;
    let missing = span - rel.len() as u64;
    let published = s1 - s0;
    let (_, report) = call(a.addr, "GET", "/internal/cascade", "").await;
    let r = &report["relays"][0];
    let retransmitted = report["trunks"][0]["stats"]["retransmitted"]
        .as_u64()
        .unwrap_or(0);
    let residual = 100.0 * missing as f64 / span as f64;
    println!(
        "video relay {} (rtx_ssrc {}): alice sent {published} packets in 4 s; the viewer on B \
         got {} distinct over a range of {span}, {missing} missing ({residual:.2} %); A's trunk \
         retransmitted {retransmitted}; netem {}",
        r["ssrc"],
        r["rtx_ssrc"],
        rel.len(),
        relay.stats().to_json()
    );
    assert!(
        span >= published * 8 / 10,
        "the viewer got too little: {span} of {published}"
    );
    assert!(
        r["rtx_ssrc"].as_u64().is_some(),
        "the relay has no RTX SSRC: {r}"
    );
    assert!(
        retransmitted > 0,
        "nothing retransmitted over a 3 % lossy trunk"
    );
    assert!(residual < 1.0, "residual loss {residual:.2} %");
    // The trunk's link in A's /metrics (read from the dataplane every 2 s).
    let (_, _, text) = http_raw(a.addr, "GET", "/metrics", &[], "").await;
    let link: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("sluice_cascade_trunk_"))
        .collect();
    println!("A's trunk metrics: {}", link.join(" "));
    let (_, report) = call(a.addr, "GET", "/internal/cascade", "").await;
    println!("A's trunk: {}", report["trunks"][0]);
    let value = |name: &str| {
        link.iter()
            .find(|l| l.starts_with(&format!("sluice_cascade_trunk_{name}{{")))
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
    };
    assert!(value("rtt_ms").is_some_and(|r| r >= 10.0), "trunk RTT");
    // 3 % loss on A → B, before repair: transport-cc's totals say so (the exported ratio is
    // the share of the last 2 s poll only, and may be 0 in a window with no loss).
    assert!(
        value("loss_ratio").is_some_and(|l| (0.0..0.2).contains(&l)),
        "trunk loss ratio"
    );
    assert!(
        report["trunks"][0]["stats"]["reported_lost"]
            .as_u64()
            .is_some_and(|n| n > 0),
        "the trunk's transport-cc reported the losses"
    );
    relay.stop();
    stop.store(true, Ordering::Relaxed);
    let _ = publisher.join();
    a.stop();
    b.stop();
}

/// Nodes a and b on `dpa` / `dpb` whose trunk a → b runs through `relay`: a advertises the
/// relay's address as its media address, b advertises `source` (the relay's upstream source,
/// so b's packets to a come back through it); returned once both are live with media.
async fn nodes_through(
    redis: &Redis,
    (dpa, dpb): (&DataplaneHandle, &DataplaneHandle),
    relay: SocketAddr,
    source: SocketAddr,
) -> (Server, Server) {
    let media = |addr: SocketAddr| [("media", addr.to_string())];
    let a = cluster_server(redis, "a", dpa, (LEASE_MS, GRACE_MS), &media(relay)).await;
    let b = cluster_server(redis, "b", dpb, (LEASE_MS, GRACE_MS), &media(source)).await;
    until(
        "both nodes live with media",
        Duration::from_secs(10),
        async || media_published(redis, &["a", "b"]),
    )
    .await;
    (a, b)
}

/// As [`publish`], but VP8 on the camera (every packet a one-packet keyframe), and the camera
/// track's sid.
async fn publish_video(
    addr: SocketAddr,
    room: &str,
    identity: &str,
    stop: Arc<AtomicBool>,
) -> (Ws, std::thread::JoinHandle<()>, Arc<AtomicU64>, String) {
    let (ws, server, cfg) = publisher_peer(addr, room, identity, OFFER, "Vid").await;
    let sent = Arc::new(AtomicU64::new(0));
    let sn = Arc::clone(&sent);
    let publisher = std::thread::spawn(move || {
        let mut peer = TestPeer::connect(server, &cfg, Duration::from_secs(10)).expect("publisher");
        let end = Instant::now() + Duration::from_secs(60);
        let mut seq: u16 = 1;
        while !stop.load(Ordering::Relaxed) && Instant::now() < end {
            // VP8 descriptor S=1, then a keyframe frame tag and start code (RFC 6386 §9.1).
            let mut payload = vec![
                0x10, 0x00, 0x00, 0x00, 0x9d, 0x01, 0x2a, 0x40, 0x01, 0xf0, 0x00,
            ];
            payload.resize(600, seq as u8);
            let ts = u32::from(seq) * 3000;
            if peer
                .publish_rtp(seq, ts, ALICE_VIDEO_SSRC, VP8_PT, true, &payload)
                .is_ok()
            {
                sn.fetch_add(1, Ordering::Relaxed);
            }
            seq = seq.wrapping_add(1);
            let _ = peer.pump(Instant::now() + Duration::from_millis(5));
        }
    });
    let mut sid = String::new();
    until(
        "the camera is published",
        Duration::from_secs(10),
        async || {
            let (_, v) = call(addr, "GET", &format!("/api/rooms/{room}/participants"), "").await;
            for p in v["participants"].as_array().into_iter().flatten() {
                for t in p["tracks"].as_array().into_iter().flatten() {
                    if t["kind"] == "video" {
                        sid = t["sid"].as_str().unwrap_or_default().to_owned();
                    }
                }
            }
            !sid.is_empty()
        },
    )
    .await;
    (ws, publisher, sent, sid)
}
