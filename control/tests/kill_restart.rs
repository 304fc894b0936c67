//! `kill -9` of a real `sluice up` in the middle of a burst of joins, then a restart on the same
//! state file: the file parses (format 2), and each room's next event has `seq` = the last one
//! delivered + 1. Events are written ahead: counters and envelopes are durable before delivery,
//! so a number is never handed out twice, and what the kill caught between the store and the
//! receivers is delivered after the restart (the reader resumes with `Last-Event-ID`, as an
//! EventSource does). No dataplane is needed: joins work without one.

mod api_support;
mod sluice_up;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use api_support::*;
use serde_json::{json, Value};
use sluice_control::auth::Role;
use sluice_up::Sluice;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const ROOMS: usize = 4;

/// What an SSE reader saw: room → seqs in arrival order, and the last `id:` (node-wide number).
#[derive(Debug, Default)]
struct Seen {
    rooms: BTreeMap<String, Vec<u64>>,
    last_id: u64,
}

/// Reads the all-rooms SSE stream (after `last` when given) into `seen` until it ends.
async fn record(addr: SocketAddr, last: Option<u64>, seen: Arc<Mutex<Seen>>) {
    let a = auth_header(&admin());
    let Ok(mut sock) = tokio::net::TcpStream::connect(addr).await else {
        return;
    };
    let resume = last.map_or(String::new(), |l| format!("Last-Event-ID: {l}\r\n"));
    let req = format!("GET /api/events HTTP/1.1\r\nHost: t\r\nAuthorization: {a}\r\n{resume}\r\n");
    if sock.write_all(req.as_bytes()).await.is_err() {
        return;
    }
    let mut buf = vec![0u8; 64 * 1024];
    let mut pending = String::new();
    loop {
        let n = match sock.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        pending.push_str(&String::from_utf8_lossy(&buf[..n]));
        // Whole events only (they end with a blank line); the rest waits for the next read.
        let Some(end) = pending.rfind("\n\n") else {
            continue;
        };
        let complete: String = pending.drain(..end + 2).collect();
        let mut seen = seen.lock().unwrap();
        for line in complete.lines() {
            if let Some(id) = line.strip_prefix("id: ") {
                seen.last_id = id.trim().parse().unwrap_or(seen.last_id);
            } else if let Some(json) = line.strip_prefix("data: ") {
                if let Ok(v) = serde_json::from_str::<Value>(json) {
                    let room = v["room"].as_str().unwrap_or("").to_owned();
                    let seq = v["seq"].as_u64().unwrap_or(0);
                    seen.rooms.entry(room).or_default().push(seq);
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_burst_then_restart_continues_every_room() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state").join("state.json");
    let config = dir.path().join("sluice.toml");
    std::fs::write(
        &config,
        format!(
            "[control]\nhttp = \"127.0.0.1:0\"\nstate_file = \"{}\"\nexternal_dataplane = true\n\
             [control.api_keys]\n{KEY} = \"{SECRET}\"\n[dataplane]\ncontrol_socket = \"{}\"\n",
            state.display(),
            dir.path().join("no-dataplane.sock").display()
        ),
    )
    .unwrap();

    let first = Sluice::start(&config);
    let seen = Arc::new(Mutex::new(Seen::default()));
    let recorder = tokio::spawn(record(first.addr, None, Arc::clone(&seen)));
    tokio::time::sleep(Duration::from_millis(100)).await;
    // A burst of joins over four rooms, from eight tasks at once; the kill lands in the middle.
    let addr = first.addr;
    let mut burst = Vec::new();
    for t in 0..8 {
        burst.push(tokio::spawn(async move {
            let mut sockets = Vec::new();
            for i in 0..40 {
                let room = format!("room{}", (t + i) % ROOMS);
                let token = token(&room, &format!("p{t}-{i}"), Role::Viewer);
                let url = format!("ws://{addr}/rtc?access_token={token}");
                let Ok((mut ws, _)) = tokio_tungstenite::connect_async(url).await else {
                    return sockets.len();
                };
                use futures_util::SinkExt;
                if ws
                    .send(tokio_tungstenite::tungstenite::Message::text(
                        json!({"type": "join"}).to_string(),
                    ))
                    .await
                    .is_err()
                {
                    return sockets.len();
                }
                sockets.push(ws);
            }
            sockets.len()
        }));
    }
    // Kill once a good part of the burst has been delivered.
    let deadline = Instant::now() + Duration::from_secs(20);
    while seen
        .lock()
        .unwrap()
        .rooms
        .values()
        .map(Vec::len)
        .sum::<usize>()
        < 60
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let mut first = first;
    first.child.kill().expect("SIGKILL");
    first.child.wait().unwrap();
    let killed_at: usize = seen.lock().unwrap().rooms.values().map(Vec::len).sum();
    for b in burst {
        let _ = b.await;
    }
    recorder.abort();
    let before: BTreeMap<String, u64> = seen
        .lock()
        .unwrap()
        .rooms
        .iter()
        .map(|(r, seqs)| (r.clone(), *seqs.iter().max().unwrap()))
        .collect();
    let last_id = seen.lock().unwrap().last_id;

    // The file parses, in format 2.
    let text = std::fs::read_to_string(&state).expect("state file written");
    let on_disk: Value = serde_json::from_str(&text).expect("the state file parses after kill -9");
    assert_eq!(on_disk["version"], 2);
    let committed: BTreeMap<String, u64> = on_disk["events"]["last_seq"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(r, s)| (r.clone(), s.as_u64().unwrap()))
        .collect();

    // Restart; one more join per room; its first event continues the room's sequence.
    let second = Sluice::start(&config);
    // The reader reconnects where it stopped: what the kill caught in between arrives first.
    let recorder = tokio::spawn(record(second.addr, Some(last_id), Arc::clone(&seen)));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let delivered: BTreeMap<String, u64> = seen
        .lock()
        .unwrap()
        .rooms
        .iter()
        .map(|(r, seqs)| (r.clone(), *seqs.iter().max().unwrap()))
        .collect();
    for (room, seqs) in &seen.lock().unwrap().rooms {
        let ordered: Vec<u64> = (1..=seqs.len() as u64).collect();
        assert_eq!(
            *seqs, ordered,
            "{room}: delivered in order, no gap, no repeat"
        );
    }
    let counts: BTreeMap<String, usize> = seen
        .lock()
        .unwrap()
        .rooms
        .iter()
        .map(|(r, s)| (r.clone(), s.len()))
        .collect();
    let mut clients = Vec::new();
    for r in 0..ROOMS {
        let room = format!("room{r}");
        let token = token(&room, "after-restart", Role::Viewer);
        let url = format!("ws://{}/rtc?access_token={token}", second.addr);
        let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
        send(&mut ws, json!({"type": "join"})).await;
        recv_type(&mut ws, "joined").await;
        clients.push(ws);
    }
    let fresh = |seen: &Seen| {
        counts
            .iter()
            .filter(|(r, n)| seen.rooms.get(*r).is_some_and(|s| s.len() > **n))
            .count()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while fresh(&seen.lock().unwrap()) < ROOMS && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    recorder.abort();
    println!("kill -9 after {killed_at} delivered events");
    for r in 0..ROOMS {
        let room = format!("room{r}");
        let last_delivered = delivered.get(&room).copied().unwrap_or(0);
        let last_committed = committed.get(&room).copied().unwrap_or(0);
        let next = seen.lock().unwrap().rooms[&room][counts[&room]];
        println!(
            "{room}: delivered before the kill {}, after the restart's replay {last_delivered}, committed {last_committed}, next new event {next}",
            before.get(&room).copied().unwrap_or(0)
        );
        assert!(
            last_committed >= last_delivered,
            "{room}: a delivered seq was not durable"
        );
        assert_eq!(
            next,
            last_committed + 1,
            "{room}: continues the committed sequence"
        );
        assert_eq!(
            next,
            last_delivered + 1,
            "{room}: continues the delivered sequence"
        );
    }
    drop(clients);
    drop(second);
}
