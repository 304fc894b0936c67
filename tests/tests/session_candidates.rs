//! The candidates in our SDP are the ones the dataplane gave the session
//! (`SessionCreated.local_candidates`), not every media address of the dataplane's hello: with
//! `port_per_worker` each shard has its own port, and a session is reachable only on its shard's
//! port. Two shards on 127.0.0.1 with a port each; the publisher's answer and the subscriber's
//! offer must each name exactly one port, a shard's.

#[path = "../../control/tests/api_support/mod.rs"]
mod api_support;

use std::collections::BTreeSet;
use std::time::Duration;

use api_support::*;
use serde_json::json;
use sluice_control::auth::Role;
use sluice_dataplane::config::{Config, IoChoice};
use sluice_dataplane::runtime::Dataplane;

const OFFER: &str = include_str!("../../control/tests/fixtures/sdp/chromium_cam_mic.sdp");

/// The ports of the `a=candidate` lines of `sdp`.
fn candidate_ports(sdp: &str) -> BTreeSet<u16> {
    sdp.lines()
        .filter_map(|l| l.strip_prefix("a=candidate:"))
        .map(|c| {
            let fields: Vec<&str> = c.split_whitespace().collect();
            fields[5].parse().expect("candidate port")
        })
        .collect()
}

/// Two consecutive free UDP ports on 127.0.0.1 (bound then released; the race is acceptable).
fn free_port_pair() -> u16 {
    for _ in 0..50 {
        let a = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = a.local_addr().unwrap().port();
        if port < u16::MAX && std::net::UdpSocket::bind(("127.0.0.1", port + 1)).is_ok() {
            return port;
        }
    }
    panic!("no two consecutive free UDP ports");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn port_per_shard_sessions_announce_their_shard_only() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = Config::defaults(2);
    cfg.workers = vec![0, 1];
    cfg.bind = "127.0.0.1".parse().unwrap();
    cfg.port = free_port_pair();
    cfg.port_per_worker = true;
    cfg.io = IoChoice::Socket;
    cfg.buffers_per_worker = 256;
    cfg.control_socket = dir.path().join("dp.sock");
    let dp = match Dataplane::start(cfg) {
        Ok(dp) => dp,
        Err(e) => {
            eprintln!("skipping: dataplane did not start: {e}");
            return;
        }
    };
    let shard_ports: BTreeSet<u16> = dp.local_addrs().iter().map(|a| a.port()).collect();
    assert_eq!(shard_ports.len(), 2, "{:?}", dp.local_addrs());
    let socket = dp.control_socket().to_path_buf();
    let s = start_with(|o| o.dataplane_socket = Some(socket)).await;
    for _ in 0..100 {
        if http(s.addr, "GET", "/readyz", &[], "").await.0 == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let mut alice = join(s.addr, "alice", Role::Host).await;
    let mut bob = join(s.addr, "bob", Role::Controller).await;
    send(
        &mut alice,
        json!({"type": "publish", "cid": "a", "kind": "audio", "source": "microphone"}),
    )
    .await;
    recv_type(&mut alice, "track_published").await;
    let offer = OFFER.replace("a=sendrecv", "a=sendonly");
    send(
        &mut alice,
        json!({"type": "offer", "pc": "publisher", "sdp": offer}),
    )
    .await;
    let answer = recv_type(&mut alice, "answer").await;
    let ports = candidate_ports(answer["sdp"].as_str().unwrap());
    println!("publisher answer candidate ports {ports:?}, shard ports {shard_ports:?}");
    assert_eq!(ports.len(), 1, "one shard's port: {ports:?}");
    assert!(
        ports.is_subset(&shard_ports),
        "{ports:?} vs {shard_ports:?}"
    );

    let sub_offer = recv_type(&mut bob, "offer").await;
    let ports = candidate_ports(sub_offer["sdp"].as_str().unwrap());
    println!("subscriber offer candidate ports {ports:?}");
    assert_eq!(ports.len(), 1, "one shard's port: {ports:?}");
    assert!(
        ports.is_subset(&shard_ports),
        "{ports:?} vs {shard_ports:?}"
    );
    s.stop();
    dp.stop();
}
