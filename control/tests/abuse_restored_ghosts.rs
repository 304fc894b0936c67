//! Issue 14, finding #14 (ghost participants), the restart half: a WebSocket participant
//! restored from the state file after `kill -9` of a real `sluice up` that never comes back
//! leaves after `control.resume_grace_s`, with `participant_left` on the event stream, and is
//! counted (`sluice_refused_total{reason="restored_expired"}`). One that does come back
//! in time stays. No dataplane is needed: joins work without one.

mod api_support;
mod sluice_up;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use api_support::*;
use serde_json::{json, Value};
use sluice_control::auth::Role;
use sluice_up::Sluice;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn participants(addr: SocketAddr) -> Vec<String> {
    let a = auth_header(&admin());
    let (_, v) = http(
        addr,
        "GET",
        "/api/rooms/m/participants",
        &[("Authorization", &a)],
        "",
    )
    .await;
    let mut out: Vec<String> = v["participants"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|p| p["identity"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restored_participants_that_do_not_resume_leave() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("sluice.toml");
    std::fs::write(
        &config,
        format!(
            "[control]\nhttp = \"127.0.0.1:0\"\nstate_file = \"{}\"\nexternal_dataplane = true\n\
             resume_grace_s = 2\n[control.api_keys]\n{KEY} = \"{SECRET}\"\n[dataplane]\n\
             control_socket = \"{}\"\n",
            dir.path().join("state.json").display(),
            dir.path().join("no-dataplane.sock").display()
        ),
    )
    .unwrap();
    let first = Sluice::start(&config);
    let alice = join(first.addr, "alice", Role::Host).await;
    let bob = join(first.addr, "bob", Role::Viewer).await;
    assert_eq!(participants(first.addr).await, ["alice", "bob"]);
    drop(first); // SIGKILL
    drop((alice, bob));

    let second = Sluice::start(&config);
    let t0 = Instant::now();
    let restored = participants(second.addr).await;
    // The event stream of the restarted node, from now on.
    let a = auth_header(&admin());
    let mut sse = tokio::net::TcpStream::connect(second.addr).await.unwrap();
    sse.write_all(
        format!("GET /api/events?room=m HTTP/1.1\r\nHost: t\r\nAuthorization: {a}\r\n\r\n")
            .as_bytes(),
    )
    .await
    .unwrap();
    // Bob resumes (joins again) in time; alice never comes back.
    let _bob = join(second.addr, "bob", Role::Viewer).await;
    let mut left_at = None;
    while t0.elapsed() < Duration::from_secs(8) {
        if participants(second.addr).await == ["bob"] {
            left_at = Some(t0.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut events = String::new();
    let mut buf = vec![0u8; 16 * 1024];
    let deadline = Instant::now() + Duration::from_secs(2);
    while !events.contains("\"participant_left\"") && Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_millis(300), sse.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => events.push_str(&String::from_utf8_lossy(&buf[..n])),
            _ => {}
        }
    }
    let (_, _, metrics) = http_raw(second.addr, "GET", "/metrics", &[], "").await;
    let counted = metrics
        .lines()
        .find(|l| l.starts_with("sluice_refused_total{reason=\"restored_expired\"}"))
        .map(str::to_owned);
    let left: Vec<Value> = events
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter_map(|j| serde_json::from_str::<Value>(j).ok())
        .filter(|v| v["event"] == "participant_left")
        .collect();
    println!(
        "restored {restored:?}; alice gone after {left_at:?}; participant_left events {}; {counted:?}",
        json!(left)
    );
    assert!(
        left_at.is_some(),
        "alice stayed: {:?}",
        participants(second.addr).await
    );
    assert!(
        left.iter().any(|v| v.to_string().contains("alice")),
        "no participant_left for alice: {events}"
    );
    assert_eq!(
        counted.as_deref(),
        Some("sluice_refused_total{reason=\"restored_expired\"} 1")
    );
}
