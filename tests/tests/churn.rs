//! Issue 14 point 3, churn without growth: 5,000 participants join and leave across 500 rooms
//! through a real `sluice up` that supervises a real `sluice-dataplane` — WebSocket clients
//! that publish (publish request + publisher offer: a dataplane session and track), unpublish
//! and leave; and one in five as WHIP ingest (POST, then DELETE of its resource). Afterwards
//! the control daemon's maps (`sluice_control_map_entries`) and the dataplane's sessions, shard
//! tables and registry (`sluice_worker_sessions`, `sluice_worker_map_entries`,
//! `sluice_dataplane_registry_entries`, where the dataplane exports them) are back at their idle
//! sizes (as after the warm-up round, when everyone had left); the control daemon's live heap
//! (`sluice_control_heap_bytes`, its allocator counted: D122) is within 3 % of its post-warm-up
//! value, and both processes' resident memory at rest (the least of 20 readings over 2 s) within
//! 10 % (dataplane) and 25 % (control: allocator retention, not allocations — see
//! [`CONTROL_RSS_SLACK_PCT`]). Prints sizes and memory before and after, and how long it took.
//!
//! Bounded: 5,000 warm-up cycles, then 5,000, by 16 concurrent clients; every wait is bounded.
//! Each room keeps its last events for SSE replay, a bounded retention that fills as events
//! happen (256 per room by default: with 500 rooms, tens of MB); the test sets
//! `control.sse_backlog_per_room = 4` so the warm-up (5+ events per room) fills it and what
//! is compared afterwards is growth, not a backlog filling up to its bound.

#[path = "../../control/tests/api_support/mod.rs"]
mod api_support;
mod node_support;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use api_support::*;
use node_support::*;
use serde_json::json;
use sluice_control::auth::Role;

const OFFER: &str = include_str!("../../control/tests/fixtures/sdp/chromium_cam_mic.sdp");
const ROOMS: usize = 500;
const CYCLES: usize = 5_000;
const CONCURRENCY: usize = 16;
/// Ten cycles per room: the allocator and every bounded backlog reach their steady state. On
/// an AMD EPYC host the control daemon's resident floor rose ~8 MB between 1,000 and 5,000
/// cycles and then stayed there (after 20,000 cycles +13.0 %, no more than after 5,000: a
/// level, not a leak); with two cycles per room as warm-up, 4 of 8 runs read +13.0 to +17.1 %
/// afterwards, with ten three runs read +8.7 / −2.0 / +3.6 %.
const WARM_UP: usize = 10 * ROOMS;
/// How far the control daemon's resident size may rise over the churn. Its live heap is what
/// shows a leak (a 400-byte leak per WebSocket connection, tried: live heap +7.3 %, resident
/// +2.2 %); the resident size adds what mimalloc keeps of freed pages (~57 MB beside a 20 MB
/// heap here), which moved by −2.0 to +13.9 % over runs whose heap moved by +0.3 % (the CI
/// run of 2026-12-08: +13.9 %). This bound catches growth outside the heap (stacks, mappings).
const CONTROL_RSS_SLACK_PCT: u64 = 25;

/// Resident memory of `pid` in KiB.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

/// Resident memory of `pid` at rest, in KiB: the least of 20 readings over 2 s. The control
/// daemon's allocator (mimalloc) returns freed pages after a delay, so one reading taken right
/// after a burst of work swings by ±10 % between runs (75,876 KiB after the warm-up of one run,
/// 68,320 KiB 1,000 cycles later); the floor is what this reads.
async fn rss_at_rest(pid: u32) -> u64 {
    let mut least = u64::MAX;
    for _ in 0..20 {
        least = least.min(rss_kib(pid));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    least
}

/// The control daemon's live heap at rest, in bytes (`sluice_control_heap_bytes`): the least of
/// 10 readings over 1 s (the dataplane's stats every 100 ms allocate for a moment).
async fn heap_at_rest(addr: SocketAddr) -> u64 {
    let mut least = u64::MAX;
    for _ in 0..10 {
        let (_, _, body) = http_raw(addr, "GET", "/metrics", &[], "").await;
        let v = body
            .lines()
            .find_map(|l| l.strip_prefix("sluice_control_heap_bytes "))
            .and_then(|v| v.trim().parse().ok())
            .expect("sluice_control_heap_bytes in /metrics");
        least = least.min(v);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    least
}

/// Map sizes from `/metrics`: the control daemon's maps and the dataplane's sessions (summed
/// over shards, from the newest stats snapshot).
async fn sizes(addr: SocketAddr) -> BTreeMap<String, u64> {
    let (_, _, body) = http_raw(addr, "GET", "/metrics", &[], "").await;
    let mut out = BTreeMap::new();
    for line in body.lines() {
        let Some((series, v)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(v) = v.parse::<f64>() else { continue };
        if let Some(m) = series
            .strip_prefix("sluice_control_map_entries{map=\"")
            .and_then(|m| m.strip_suffix("\"}"))
        {
            out.insert(m.to_owned(), v as u64);
        } else if let Some(m) = series
            .strip_prefix("sluice_worker_map_entries{")
            .and_then(|l| l.split("map=\"").nth(1))
            .and_then(|m| m.strip_suffix("\"}"))
        {
            // Per-shard demux and routing tables, summed over shards.
            *out.entry(format!("dataplane_map_{m}")).or_default() += v as u64;
        } else if let Some(m) = series
            .strip_prefix("sluice_dataplane_registry_entries{map=\"")
            .and_then(|m| m.strip_suffix("\"}"))
        {
            out.insert(format!("dataplane_registry_{m}"), v as u64);
        } else if series.starts_with("sluice_worker_sessions{") {
            *out.entry("dataplane_sessions".to_owned()).or_default() += v as u64;
        } else if ["sluice_rooms", "sluice_participants", "sluice_tracks"].contains(&series) {
            out.insert(series.to_owned(), v as u64);
        }
    }
    out
}

/// One WebSocket participant: join, publish audio, publisher offer, unpublish, leave.
async fn ws_cycle(addr: SocketAddr, room: &str, identity: &str) {
    let t = token(room, identity, Role::Host);
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/rtc?access_token={t}"))
        .await
        .expect("connect");
    send(&mut ws, json!({"type": "join"})).await;
    recv_type(&mut ws, "joined").await;
    send(
        &mut ws,
        json!({"type": "publish", "cid": "a", "kind": "audio", "source": "microphone"}),
    )
    .await;
    let p = recv_type(&mut ws, "track_published").await;
    let start = OFFER.find("m=audio").unwrap();
    let end = OFFER.find("m=video").unwrap();
    let offer = OFFER[..start].replace("a=group:BUNDLE 0 1", "a=group:BUNDLE 0")
        + &OFFER[start..end].replace("a=sendrecv", "a=sendonly");
    send(
        &mut ws,
        json!({"type": "offer", "pc": "publisher", "sdp": offer}),
    )
    .await;
    recv_type(&mut ws, "answer").await;
    send(
        &mut ws,
        json!({"type": "unpublish", "track_sid": p["track"]["sid"]}),
    )
    .await;
    send(&mut ws, json!({"type": "leave"})).await;
    // The server closes after `leave`; wait for it (bounded) so the leave is done.
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        use futures_util::StreamExt;
        while let Some(Ok(_)) = ws.next().await {}
    })
    .await;
}

/// One WHIP participant: POST an offer, DELETE the resource it got.
async fn whip_cycle(addr: SocketAddr, room: &str, identity: &str) {
    let t = format!("Bearer {}", token(room, identity, Role::Host));
    let offer = OFFER.replace("a=sendrecv", "a=sendonly");
    let (st, head, body) = http_raw(
        addr,
        "POST",
        &format!("/whip/{room}"),
        &[("Authorization", &t), ("Content-Type", "application/sdp")],
        &offer,
    )
    .await;
    assert_eq!(st, 201, "{head}\n{body}");
    let loc = head
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("location:"))
        .expect("Location")[9..]
        .trim()
        .to_owned();
    let (st, _, body) = http_raw(addr, "DELETE", &loc, &[("Authorization", &t)], "").await;
    assert!(st == 200 || st == 204, "DELETE {loc}: {st} {body}");
}

/// `count` cycles over the rooms by `CONCURRENCY` tasks; one in five is WHIP.
async fn churn(addr: SocketAddr, round: &str, count: usize) {
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..CONCURRENCY {
        let next = Arc::clone(&next);
        let round = round.to_owned();
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    return;
                }
                let room = format!("churn{}", i % ROOMS);
                let identity = format!("{round}-{i}");
                if i % 5 == 4 {
                    whip_cycle(addr, &room, &identity).await;
                } else {
                    ws_cycle(addr, &room, &identity).await;
                }
            }
        }));
    }
    for t in tasks {
        t.await.expect("churn task");
    }
}

/// Polls until the sizes stop changing and no participant is left (bounded).
async fn settle(addr: SocketAddr) -> BTreeMap<String, u64> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut last = sizes(addr).await;
    loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let now = sizes(addr).await;
        let idle =
            now.get("sluice_participants") == Some(&0) && now.get("dataplane_sessions") == Some(&0);
        if (now == last && idle) || Instant::now() > deadline {
            return now;
        }
        last = now;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn churn_of_5000_participants_leaves_no_growth() {
    // The state file on tmpfs where there is one: the test is about maps and memory, and an
    // fsync per room operation would make it minutes long.
    let dir = match Path::new("/dev/shm").is_dir() {
        true => tempfile::tempdir_in("/dev/shm").unwrap(),
        false => tempfile::tempdir().unwrap(),
    };
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = dir.path().join("sluice.toml");
    std::fs::write(
        &config,
        format!(
            "[control]\nhttp = \"127.0.0.1:0\"\nstate_file = \"{}\"\n\
             sse_backlog_per_room = 4\n\
             [control.api_keys]\n{KEY} = \"{SECRET}\"\n\
             [dataplane]\ncontrol_socket = \"{}\"\nworkers = [0]\nbind = \"127.0.0.1\"\n\
             port = {port}\nio = \"socket\"\nbuffers_per_worker = 512\nstats_interval_ms = 100\n",
            dir.path().join("state.json").display(),
            dir.path().join("run").join("dp.sock").display()
        ),
    )
    .unwrap();
    let sluice = Sluice::start(&config, &[("RUST_LOG", "error")]);
    let addr = sluice.addr;
    let t_ready = Instant::now();
    while http(addr, "GET", "/readyz", &[], "").await.0 != 200 {
        assert!(t_ready.elapsed() < Duration::from_secs(15), "no dataplane");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let control_pid = sluice.child.id();
    let dp_pid = sluice.dataplane_pid().expect("dataplane pid");
    let start_sizes = settle(addr).await;

    let t0 = Instant::now();
    churn(addr, "warm", WARM_UP).await;
    let warm = settle(addr).await;
    let warm_rss = (rss_at_rest(control_pid).await, rss_at_rest(dp_pid).await);
    let warm_heap = heap_at_rest(addr).await;
    let t_warm = t0.elapsed();

    let t1 = Instant::now();
    // In five parts, with the control daemon's memory after each: a plateau is the allocator
    // settling, a steady climb would be a leak.
    let mut steps = Vec::new();
    for part in 0..5 {
        churn(addr, &format!("churn{part}"), CYCLES / 5).await;
        steps.push((
            rss_at_rest(control_pid).await,
            heap_at_rest(addr).await / 1024,
        ));
    }
    let t_churn = t1.elapsed();
    let after = settle(addr).await;
    let after_rss = (rss_at_rest(control_pid).await, rss_at_rest(dp_pid).await);
    let after_heap = heap_at_rest(addr).await;
    println!(
        "churn: warm-up {WARM_UP} cycles in {:.1} s, then {CYCLES} cycles over {ROOMS} rooms in {:.1} s ({CONCURRENCY} clients, 1 in 5 WHIP)",
        t_warm.as_secs_f64(),
        t_churn.as_secs_f64()
    );
    println!("control (RSS, live heap) after each 1,000 cycles (KiB): {steps:?}");
    println!(
        "control live heap: after warm-up {} KiB, after the churn {} KiB ({:+.1} %)",
        warm_heap / 1024,
        after_heap / 1024,
        (after_heap as f64 / warm_heap as f64 - 1.0) * 100.0
    );
    println!("map sizes at start:        {start_sizes:?}");
    println!("map sizes after warm-up:   {warm:?}");
    println!("map sizes after the churn: {after:?}");
    println!(
        "resident memory after warm-up: control {} KiB, dataplane {} KiB; after the churn: control {} KiB ({:+.1} %), dataplane {} KiB ({:+.1} %)",
        warm_rss.0,
        warm_rss.1,
        after_rss.0,
        (after_rss.0 as f64 / warm_rss.0 as f64 - 1.0) * 100.0,
        after_rss.1,
        (after_rss.1 as f64 / warm_rss.1 as f64 - 1.0) * 100.0
    );
    // Free packet buffers are a level, not a map: printed, not compared.
    let maps = |m: &BTreeMap<String, u64>| -> BTreeMap<String, u64> {
        m.iter()
            .filter(|(k, _)| !k.contains("pool_free"))
            .map(|(k, v)| (k.clone(), *v))
            .collect()
    };
    assert_eq!(
        maps(&after),
        maps(&warm),
        "maps are not back to their idle sizes"
    );
    for (name, n) in maps(&after).iter() {
        let room_scoped = ["room_actors", "sluice_rooms"].contains(&name.as_str());
        if !room_scoped {
            assert_eq!(*n, 0, "{name} is not empty when everyone has left");
        }
    }
    assert!(
        after_heap * 100 <= warm_heap * 103,
        "the control daemon's live heap grew more than 3 %: a leak"
    );
    assert!(
        after_rss.0 * 100 <= warm_rss.0 * (100 + CONTROL_RSS_SLACK_PCT),
        "control RSS grew more than {CONTROL_RSS_SLACK_PCT} %"
    );
    assert!(
        after_rss.1 * 10 <= warm_rss.1 * 11,
        "dataplane RSS grew more than 10 %"
    );

    // The rooms themselves go with an admin delete: nothing is left at all.
    let a = auth_header(&admin());
    for r in 0..ROOMS {
        let st = http(
            addr,
            "DELETE",
            &format!("/api/rooms/churn{r}"),
            &[("Authorization", &a)],
            "",
        )
        .await
        .0;
        assert!(st == 200 || st == 404, "delete churn{r}: {st}");
    }
    let empty = settle(addr).await;
    println!("map sizes after deleting the rooms: {empty:?}");
    assert!(
        maps(&empty).values().all(|n| *n == 0),
        "something is left: {empty:?}"
    );
}
