//! The input relay over the `_input` data channel (issue 17's remote-control input, D87) through
//! a real dataplane with real TestPeers on both workers: a controller's `_input` messages reach
//! only the participant its input route names (the host), stamped with the controller's id,
//! whatever destinations its envelope names; with no route, or once `update_data` clears it,
//! they are dropped and counted `not_permitted`; a viewer never gets input, and a viewer's own
//! `_input` messages go nowhere.

mod webrtc_harness;

use std::time::{Duration, Instant};

use rtp_core::datachannel::{ChannelConfig, ChannelId, DataConfig};
use sluice_dataplane::config::IoChoice;
use sluice_dataplane::testpeer::TestPeer;
use sluice_proto::{Command, DataSpec, SessionId, ShardStats, UpdateData};
use webrtc_harness::{pin_to, Rig, CONNECT_TIMEOUT};

struct Peer {
    peer: TestPeer,
    session: SessionId,
    input: ChannelId,
}

fn connect(rig: &mut Rig, worker: u16, participant: &str) -> Peer {
    let spec = DataSpec {
        room: "room".into(),
        participant: participant.into(),
        can_publish: true,
        open_channels: false,
        remote_max_message_size: None,
        max_rate: Some(100_000),
        input_to: None,
    };
    let (mut peer, session) = rig.connect_with(worker, Some(spec));
    peer.enable_data_channels(DataConfig::default())
        .expect("data channels");
    let input = peer
        .open_channel(ChannelConfig::lossy("_input"))
        .expect("open _input");
    peer.wait_channel_open("_input", CONNECT_TIMEOUT)
        .expect("_input open");
    Peer {
        peer,
        session,
        input,
    }
}

/// Client envelope `[1][n]` + destinations + (seq, µs since `epoch`).
fn message(to: &[&str], seq: u32, epoch: Instant) -> Vec<u8> {
    let mut v = vec![1, to.len() as u8];
    for p in to {
        v.push(p.len() as u8);
        v.extend_from_slice(p.as_bytes());
    }
    v.extend_from_slice(&seq.to_be_bytes());
    v.extend_from_slice(&(epoch.elapsed().as_micros() as u64).to_be_bytes());
    v
}

/// Sends `n` messages on `_input` at about 1,000/s (paced so the 16 KiB lossy cap is not what
/// drops them), from a thread pinned to `worker`.
fn send(mut p: Peer, worker: usize, to: &'static [&'static str], n: u32, epoch: Instant) -> Peer {
    std::thread::spawn(move || {
        pin_to(worker);
        for seq in 0..n {
            let m = message(to, seq, epoch);
            p.peer.send_data(p.input, true, &m).expect("send input");
            // Drive the association (SACKs) while pacing.
            let until = Instant::now() + Duration::from_millis(1);
            while Instant::now() < until {
                let _ = p.peer.recv_data(Duration::from_micros(200)).expect("recv");
            }
        }
        p
    })
    .join()
    .expect("sender")
}

/// One message received: (sender, seq, latency µs, on `_input`).
type Got = (String, u32, u64, bool);

/// What `p` got within `wait` (or until it has `want`): (sender, seq, latency µs, on `_input`).
fn drain(p: &mut Peer, wait: Duration, want: usize, epoch: Instant) -> Vec<Got> {
    let mut out = Vec::new();
    let until = Instant::now() + wait;
    while Instant::now() < until && out.len() < want {
        let Some(m) = p.peer.recv_data(Duration::from_millis(1)).expect("recv") else {
            continue;
        };
        let d = &m.data;
        let n = usize::from(d[1]);
        let from = String::from_utf8(d[2..2 + n].to_vec()).expect("sender");
        let body = &d[2 + n..];
        let seq = u32::from_be_bytes(body[0..4].try_into().unwrap());
        let sent = u64::from_be_bytes(body[4..12].try_into().unwrap());
        let lat = (epoch.elapsed().as_micros() as u64).saturating_sub(sent);
        out.push((from, seq, lat, m.channel == p.input));
    }
    out
}

/// [`drain`] on a thread pinned to `worker`, so the receiver reads (and acknowledges) while
/// the sender sends.
fn drain_on(
    mut p: Peer,
    worker: usize,
    wait: Duration,
    want: usize,
    epoch: Instant,
) -> std::thread::JoinHandle<(Peer, Vec<Got>)> {
    std::thread::spawn(move || {
        pin_to(worker);
        let got = drain(&mut p, wait, want, epoch);
        (p, got)
    })
}

fn stat(stats: &[ShardStats], key: &str) -> u64 {
    stats
        .iter()
        .filter_map(|w| w.counters.dropped.get(key))
        .sum()
}

fn route(rig: &mut Rig, session: SessionId, to: Option<&str>) {
    rig.ctl
        .request(Command::UpdateData(UpdateData {
            session,
            can_publish: true,
            input_to: to.map(str::to_owned),
        }))
        .expect("update_data");
}

fn pct(mut v: Vec<u64>, p: usize) -> u64 {
    v.sort_unstable();
    v.get((v.len().max(1) - 1) * p / 100).copied().unwrap_or(0)
}

#[test]
fn data_input_goes_along_the_route_only_and_stops_when_it_is_cleared() {
    const N: u32 = 300;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut rig = Rig::start(IoChoice::Socket, &dir);
    let mut host = connect(&mut rig, 1, "host");
    let ctl = connect(&mut rig, 0, "ctl");
    let mut viewer0 = connect(&mut rig, 0, "viewer0");
    let viewer1 = connect(&mut rig, 1, "viewer1");
    let epoch = Instant::now();

    // No route yet: nothing goes anywhere, every message counted.
    let ctl = send(ctl, 0, &[], 50, epoch);
    let before = drain(&mut host, Duration::from_millis(300), usize::MAX, epoch);
    let stats = rig.worker_stats();
    let refused = stat(&stats, "data_input_drop_not_permitted");
    println!(
        "no route: host got {}, not_permitted {refused}",
        before.len()
    );
    assert!(before.is_empty(), "input without a route reached the host");
    assert_eq!(refused, 50, "every unrouted message counted");

    // Routed to the host: the envelope naming viewer0 changes nothing.
    route(&mut rig, ctl.session, Some("host"));
    let reader = drain_on(host, 1, Duration::from_secs(10), N as usize, epoch);
    let ctl = send(ctl, 0, &["viewer0"], N, epoch);
    let (mut host, got) = reader.join().expect("host reader");
    let lats: Vec<u64> = got.iter().map(|g| g.2).collect();
    println!(
        "routed: host got {}/{N} on _input {}, from {:?}; latency p50 {} us p99 {} us",
        got.len(),
        got.iter().all(|g| g.3),
        got.first().map(|g| &g.0),
        pct(lats.clone(), 50),
        pct(lats, 99),
    );
    let seen: std::collections::BTreeSet<u32> = got.iter().map(|g| g.1).collect();
    let missing: Vec<u32> = (0..N).filter(|s| !seen.contains(s)).collect();
    println!("missing seqs {missing:?}");
    let stats = rig.worker_stats();
    for w in &stats {
        let nz: Vec<_> = w
            .counters
            .dropped
            .iter()
            .filter(|(k, v)| k.starts_with("data_input") && **v > 0)
            .collect();
        println!("worker {}: {nz:?}", w.shard);
    }
    assert!(got.len() as u32 >= N * 95 / 100, "host got {}", got.len());
    assert!(
        got.iter().all(|g| g.0 == "ctl" && g.3),
        "stamped ctl, on _input"
    );

    // A viewer without a route sends input too: dropped.
    let viewer1 = send(viewer1, 1, &["host"], 20, epoch);
    // Route cleared (revoke): nothing more reaches the host.
    route(&mut rig, ctl.session, None);
    let _ctl = send(ctl, 0, &[], 50, epoch);
    let after = drain(&mut host, Duration::from_millis(500), usize::MAX, epoch);
    let v0 = drain(&mut viewer0, Duration::from_millis(100), usize::MAX, epoch);
    let mut viewer1 = viewer1;
    let v1 = drain(&mut viewer1, Duration::from_millis(100), usize::MAX, epoch);
    let stats = rig.worker_stats();
    let refused = stat(&stats, "data_input_drop_not_permitted");
    println!(
        "after clearing: host got {}, viewers got {} + {}, not_permitted {refused}, input rx {} tx {}",
        after.len(),
        v0.len(),
        v1.len(),
        stat(&stats, "data_input_rx_messages"),
        stat(&stats, "data_input_tx_messages"),
    );
    assert!(
        after.is_empty(),
        "input after the route was cleared: {after:?}"
    );
    assert!(v0.is_empty() && v1.is_empty(), "a viewer got input");
    assert_eq!(
        refused,
        50 + 20 + 50,
        "unrouted input counted not_permitted"
    );

    // A session without data channels, and one that does not exist, are refused.
    let missing = rig.ctl.request(Command::UpdateData(UpdateData {
        session: SessionId(9_999),
        can_publish: true,
        input_to: None,
    }));
    println!("unknown session: {missing:?}");
    assert!(missing.is_err());
    drop(host);
    rig.stop();
}
