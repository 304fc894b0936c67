//! Data channels between two sessions over seeded in-memory links: a
//! reliable ordered channel and a lossy one (unordered, maxRetransmits 0)
//! opened by each side, 1,000 numbered 100-byte messages each way on each
//! channel, one every 5 ms, 20 ms one-way delay.
//!
//! Reliable: every message arrives once, in order, at 0%, 10% and burst
//! loss. Lossy: what arrives arrives once, and nothing waits for what was
//! lost: alone on the association every message that arrives does so at the
//! link delay. Beside a reliable channel under loss the two share one
//! congestion window (one association, as in browsers), so lossy messages
//! can queue while the reliable channel recovers; that is printed and
//! bounded, not hidden. Prints counts and latencies of every flow.

mod common;
mod datachannel_harness;
mod session_harness;

use std::time::{Duration, Instant};

use rtp_core::datachannel::{ChannelConfig, ChannelId, DataConfig};
use rtp_core::dtls::ClientVersion;

use common::NetemConfig;
use datachannel_harness::*;

const MESSAGES: u64 = 1000;
const INTERVAL: Duration = Duration::from_millis(5);
const DELAY: Duration = Duration::from_millis(20);
const SIZE: usize = 100;
/// What a lossy message alone on the association may wait beyond the link
/// delay under loss: one send interval, for a congestion window that a lost
/// packet kept full until the next SACK. A stall (waiting for a
/// retransmission) would be ≥ 200 ms, SCTP's shortest timeout.
const QUEUED: Duration = INTERVAL;

/// One direction of one channel: what was sent when, what arrived when.
#[derive(Debug, Default)]
struct Flow {
    sent_at: Vec<Instant>,
    arrived: Vec<(u64, Duration)>,
}

impl Flow {
    fn latencies(&self) -> Vec<Duration> {
        let mut l: Vec<Duration> = self.arrived.iter().map(|a| a.1).collect();
        l.sort();
        l
    }

    fn report(&self, name: &str) {
        let lat = self.latencies();
        let pct = |p: usize| {
            lat.get((lat.len().saturating_sub(1)) * p / 100)
                .copied()
                .unwrap_or_default()
        };
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        println!(
            "  {name:<22} arrived {:>4}/{:<4} latency p50 {:>6.1} ms  p99 {:>6.1} ms  max {:>6.1} ms",
            lat.len(),
            self.sent_at.len(),
            ms(pct(50)),
            ms(pct(99)),
            ms(lat.last().copied().unwrap_or_default()),
        );
    }

    fn seqs(&self) -> Vec<u64> {
        self.arrived.iter().map(|a| a.0).collect()
    }

    fn worst(&self) -> Duration {
        self.arrived.iter().map(|a| a.1).max().unwrap_or_default()
    }
}

/// Client→server reliable, client→server lossy, server→client reliable, server→client lossy.
type Flows = [Flow; 4];

fn message(seq: u64) -> Vec<u8> {
    let mut m = vec![0u8; SIZE];
    m[..8].copy_from_slice(&seq.to_be_bytes());
    for (i, b) in m[8..].iter_mut().enumerate() {
        *b = (seq as usize + i) as u8;
    }
    m
}

/// `reliable_too`: messages on all four channels; otherwise on the lossy ones only.
fn run(name: &str, up: NetemConfig, down: NetemConfig, reliable_too: bool) -> Flows {
    run_offering(name, ClientVersion::Auto, up, down, reliable_too)
}

fn run_offering(
    name: &str,
    version: ClientVersion,
    up: NetemConfig,
    down: NetemConfig,
    reliable_too: bool,
) -> Flows {
    let mut p = Pair::new_offering(
        name,
        version,
        DataConfig::default(),
        DataConfig::default(),
        up,
        down,
    );
    let c_rel = p
        .client
        .open_channel(ChannelConfig::reliable("c-reliable"))
        .unwrap();
    let c_lossy = p
        .client
        .open_channel(ChannelConfig::lossy("c-lossy"))
        .unwrap();
    let s_rel = p
        .server
        .open_channel(ChannelConfig::reliable("s-reliable"))
        .unwrap();
    let s_lossy = p
        .server
        .open_channel(ChannelConfig::lossy("s-lossy"))
        .unwrap();
    // Parity (RFC 8832 §6): the DTLS client's ids are even, the server's odd.
    assert!(
        c_rel.0.is_multiple_of(2) && c_lossy.0.is_multiple_of(2),
        "client ids {c_rel} {c_lossy}"
    );
    assert!(
        s_rel.0 % 2 == 1 && s_lossy.0 % 2 == 1,
        "server ids {s_rel} {s_lossy}"
    );
    let all_open = |p: &Pair| {
        ["c-reliable", "c-lossy", "s-reliable", "s-lossy"]
            .iter()
            .all(|l| p.opened(Side::Server, l).is_some() && p.opened(Side::Client, l).is_some())
    };
    assert!(
        p.run_until(Duration::from_secs(30), all_open),
        "channels did not open"
    );

    let channels = [
        (Side::Client, c_rel),
        (Side::Client, c_lossy),
        (Side::Server, s_rel),
        (Side::Server, s_lossy),
    ];
    let mut flows = Flows::default();
    let start = p.now;
    let mut seen = [0usize, 0];
    // One message on each channel every INTERVAL, arrivals collected as they come.
    for seq in 0..MESSAGES {
        let due = start + INTERVAL * seq as u32;
        p.run_until(due.saturating_duration_since(p.now), |_| false);
        for (i, &(side, ch)) in channels.iter().enumerate() {
            if !reliable_too && i % 2 == 0 {
                continue;
            }
            let now = p.now;
            p.session(side)
                .send_data(now, ch, true, &message(seq))
                .unwrap_or_else(|e| panic!("send {seq} on {ch}: {e}"));
            flows[i].sent_at.push(now);
        }
        collect(&p, &channels, &mut flows, &mut seen);
    }
    // Then until every reliable message is in (at most 60 s), and a little more.
    let done = |p: &Pair| {
        let n = |side: Side, ch: ChannelId| p.got(side).iter().filter(|g| g.channel == ch).count();
        n(Side::Server, c_rel) as u64 == MESSAGES && n(Side::Client, s_rel) as u64 == MESSAGES
    };
    if reliable_too {
        p.run_until(Duration::from_secs(60), done);
    }
    p.run_for(Duration::from_millis(500));
    collect(&p, &channels, &mut flows, &mut seen);

    println!("{name}: link up {:?}", p.up.stats());
    println!("{name}: link down {:?}", p.down.stats());
    let labels = [
        "client→server reliable",
        "client→server lossy",
        "server→client reliable",
        "server→client lossy",
    ];
    for (f, label) in flows.iter().zip(labels) {
        if !f.sent_at.is_empty() {
            f.report(label);
        }
    }
    println!("  server {:?}", p.server.data_stats().expect("enabled"));
    println!("  client {:?}", p.client.data_stats().expect("enabled"));
    flows
}

/// Moves newly received messages into their flows.
fn collect(p: &Pair, channels: &[(Side, ChannelId); 4], flows: &mut Flows, seen: &mut [usize; 2]) {
    for (k, receiver) in [Side::Server, Side::Client].into_iter().enumerate() {
        let got = p.got(receiver);
        for g in &got[seen[k]..] {
            let i = channels
                .iter()
                .position(|&(s, ch)| s != receiver && ch == g.channel)
                .expect("a message on a known channel");
            let seq = u64::from_be_bytes(g.data[..8].try_into().expect("8 bytes"));
            assert_eq!(g.data, message(seq), "payload of {seq} intact");
            assert!(g.binary);
            let sent = flows[i].sent_at[seq as usize];
            flows[i].arrived.push((seq, g.at - sent));
        }
        seen[k] = got.len();
    }
}

fn assert_reliable(f: &Flow) {
    let want: Vec<u64> = (0..MESSAGES).collect();
    assert_eq!(f.seqs(), want, "reliable: every message, in order, once");
}

/// Lossy: no duplicates, at least `share` arrived, and none waited longer
/// than the link delay plus `slack`.
fn assert_lossy(f: &Flow, share: f64, slack: Duration) {
    let mut s = f.seqs();
    let n = s.len();
    s.sort();
    s.dedup();
    assert_eq!(s.len(), n, "lossy: no message twice");
    assert!(
        n as f64 >= share * f.sent_at.len() as f64,
        "lossy: {n} of {} arrived, want ≥ {share}",
        f.sent_at.len()
    );
    let max = f.worst();
    assert!(max <= DELAY + slack, "lossy: a message waited {max:?}");
}

/// Lossy beside a reliable channel under loss: they share one congestion
/// window. When a reliable retransmission times out the window collapses
/// and lossy messages queue for it too, though never for a retransmission
/// of their own: most arrive at the link delay and none waits as long as
/// the reliable channel's worst.
fn assert_shared(flows: &Flows) {
    for (lossy, reliable) in [(&flows[1], &flows[0]), (&flows[3], &flows[2])] {
        assert_lossy(lossy, 0.80, Duration::from_secs(1));
        let l = lossy.latencies();
        assert_eq!(
            l[l.len() / 2],
            DELAY,
            "lossy: the median message waits for nothing"
        );
        assert!(
            lossy.worst() < reliable.worst(),
            "lossy waits less than reliable"
        );
    }
}

/// The same over the server's DTLS 1.2 engine (a client that does not offer DTLS 1.3, as
/// GStreamer and aiortc): its application records carry the SCTP packets both ways.
#[test]
fn over_the_dtls12_server_ten_percent_loss_reliable_complete() {
    let (up, down) = (link(41, 0.10, DELAY), link(42, 0.10, DELAY));
    let f = run_offering("dtls 1.2, 10% loss", ClientVersion::Dtls12, up, down, true);
    assert_reliable(&f[0]);
    assert_reliable(&f[2]);
    assert_lossy(&f[1], 0.80, Duration::from_secs(1));
    assert_lossy(&f[3], 0.80, Duration::from_secs(1));
}

#[test]
fn clean_link_delivers_everything() {
    let f = run("clean", link(11, 0.0, DELAY), link(12, 0.0, DELAY), true);
    assert_reliable(&f[0]);
    assert_reliable(&f[2]);
    assert_lossy(&f[1], 1.0, Duration::ZERO);
    assert_lossy(&f[3], 1.0, Duration::ZERO);
}

#[test]
fn ten_percent_loss_reliable_complete_lossy_never_stalls() {
    let (up, down) = (link(21, 0.10, DELAY), link(22, 0.10, DELAY));
    let mixed = run("10% loss, all channels", up, down, true);
    assert_reliable(&mixed[0]);
    assert_reliable(&mixed[2]);
    assert_shared(&mixed);
    let lossy = run("10% loss, lossy channels only", up, down, false);
    assert_lossy(&lossy[1], 0.85, QUEUED);
    assert_lossy(&lossy[3], 0.85, QUEUED);
}

#[test]
fn burst_loss_reliable_complete_lossy_never_stalls() {
    // Bursts of 4 packets (7-8% of packets lost). Longer packet-counted
    // bursts can hit a sender that is already backing off, one packet per
    // retransmission timeout, and then last seconds.
    let burst = |seed| NetemConfig {
        burst_loss: Some((0.02, 4)),
        ..link(seed, 0.0, DELAY)
    };
    let mixed = run("bursts of 4, all channels", burst(31), burst(32), true);
    assert_reliable(&mixed[0]);
    assert_reliable(&mixed[2]);
    assert_shared(&mixed);
    let lossy = run(
        "bursts of 4, lossy channels only",
        burst(31),
        burst(32),
        false,
    );
    assert_lossy(&lossy[1], 0.85, QUEUED);
    assert_lossy(&lossy[3], 0.85, QUEUED);
}
