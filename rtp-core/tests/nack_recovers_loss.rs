//! Scenario: NACK + RTX recovery over a lossy path.
//!
//! A publisher paces N video packets (100 pps) through a lossy 20 ms link to
//! an SFU-side receiver running `SeqUnwrapper` + `NackGenerator`. Generic
//! NACKs (RFC 4585 §6.2.1) go back over a second link with the same loss;
//! the publisher answers from its `PacketHistory` with RTX packets
//! (RFC 4588 §4) that cross the lossy forward link again, and the receiver
//! decapsulates them. Time is advanced by hand to the next event.
//!
//! Run with `cargo test -p rtp-core --test nack_recovers_loss -- --nocapture`.
//!
//! Only packets the receiver can know about are measured: the stream has an
//! unmeasured lead-in and tail, since a loss before the first received packet
//! or after the last one leaves no sequence gap to detect.
//!
//! Why the thresholds: with independent loss `p` on both links, one request
//! round succeeds when the NACK and the RTX both survive, `(1-p)^2`. A lost
//! packet is unrecovered only if all `max_retries` = 10 rounds fail, i.e.
//! `(1-(1-p)^2)^10`: 8e-11 at 5 %, 3.7e-5 at 20 %. Over 5,000 packets that is
//! an expected 0.04 residual losses at 20 % and ~0 at 5 %, so the tests demand
//! zero residual loss at 5 % and in bursts and at most 1 packet (0.02 %) at
//! 20 % (far below the "< 0.1 % / < 1 %" one might guess; `seed_sweep`
//! checks this holds beyond the fixed seeds). The expected number of RTX sent per lost packet is `1/(1-p)` (an RTX
//! is only sent for NACKs that got through), so the RTX overhead is asserted
//! to stay within 15 % of that, which also proves re-requests are not spammed
//! faster than the RTT.

mod common;

use std::time::{Duration, Instant};

use common::{t0, Netem, NetemConfig};
use rtp_core::nack::{
    rtx_decapsulate, rtx_encapsulate, HistoryConfig, NackConfig, NackGenerator, PacketHistory,
    SeqUnwrapper,
};
use rtp_core::packet::rtcp;
use rtp_core::RtpView;

const MEDIA_SSRC: u32 = 0x1000_0001;
const RTX_SSRC: u32 = 0x1000_0002;
const RECEIVER_SSRC: u32 = 0x2000_0001;
const MEDIA_PT: u8 = 96;
const RTX_PT: u8 = 97;
const PACKET_INTERVAL: Duration = Duration::from_millis(10);
const ONE_WAY: Duration = Duration::from_millis(20);
const JITTER: Duration = Duration::from_millis(2);
/// Packets measured.
const N: usize = 5_000;
/// Unmeasured packets before and after the measured ones: a receiver cannot
/// detect the loss of packets before the first one it sees or after the last
/// one (no sequence gap), so the measured stretch sits inside a longer stream.
const LEAD: usize = 50;
const TAIL: usize = 50;
/// First sequence number, so the stream wraps 65535 -> 0 mid-run.
const FIRST_SEQ: u16 = 63_000;

/// Build one RTCP generic NACK (RFC 4585 §6.2.1) for `seqs` with rtp-core's writer.
fn build_nack(seqs: &[u16]) -> Vec<u8> {
    let mut out = vec![0u8; 1500];
    let n = rtcp::write_nack(&mut out, RECEIVER_SSRC, MEDIA_SSRC, seqs).unwrap();
    out.truncate(n);
    out
}

/// Sequence numbers named by the generic NACKs of a compound RTCP packet.
fn parse_nack(p: &[u8]) -> Vec<u16> {
    let mut seqs = Vec::new();
    for packet in rtcp::RtcpCompound::new(p) {
        match packet.unwrap() {
            rtcp::RtcpPacket::Nack(nack) => seqs.extend(nack.lost_seqs()),
            other => panic!("unexpected RTCP packet {other:?}"),
        }
    }
    seqs
}

#[derive(Debug)]
struct Outcome {
    /// Measured packets whose original transmission was lost.
    raw_lost: usize,
    /// Maximal runs of consecutive lost originals.
    raw_lost_runs: usize,
    /// Measured packets never received, original or RTX.
    residual: usize,
    rtx_sent: u64,
    /// RTX packets that arrived for a packet already received.
    rtx_redundant: u64,
    nack_packets: u64,
    requested: u64,
    given_up: u64,
}

fn run(link: NetemConfig) -> Outcome {
    let start = t0();
    let mut uplink = Netem::new(link);
    let mut downlink = Netem::new(NetemConfig {
        seed: link.seed ^ 0x5eed,
        ..link
    });

    // Publisher side.
    let mut history = PacketHistory::new(HistoryConfig {
        capacity: 1024,
        max_age: Duration::from_secs(2),
        max_packet_len: 1200,
    });
    let mut pub_seqs = SeqUnwrapper::new();
    let mut rtx_seq: u16 = 1;
    let mut rtx_sent = 0;
    let mut rtx_buf = [0u8; 1500];

    // Receiver (SFU) side.
    let mut unwrapper = SeqUnwrapper::new();
    let mut gen = NackGenerator::new(NackConfig {
        max_tracked: 1024,
        max_retries: 10,
        give_up_after: Duration::from_secs(1),
        reorder_grace: Duration::from_millis(10),
        min_retry_interval: Duration::from_millis(10),
    });
    gen.set_rtt(2 * ONE_WAY + JITTER);
    let mut got = vec![false; LEAD + N + TAIL];
    let mut got_original = vec![false; LEAD + N + TAIL];
    let mut rtx_redundant = 0;
    let mut nack_packets = 0;
    let mut nack_buf = [0u16; 256];
    let mut plain = [0u8; 1500];

    let total = LEAD + N + TAIL;
    let mut sent = 0;
    let mut next_send = start;
    let mut now = start;
    let mut first_ext = None;
    for _ in 0..10_000_000 {
        // Publisher paces media and stores every packet once.
        while sent < total && next_send <= now {
            let seq = FIRST_SEQ.wrapping_add(sent as u16);
            let ts = (sent as u32).wrapping_mul(3000);
            let pkt = common::rtp_packet(seq, ts, MEDIA_SSRC, MEDIA_PT, 1000);
            let ext = pub_seqs.unwrap(seq);
            history.insert(now, ext, &pkt).unwrap();
            uplink.send(now, &pkt);
            sent += 1;
            next_send += PACKET_INTERVAL;
        }

        // Receiver: media and RTX arrivals.
        while let Some(pkt) = uplink.poll_recv(now) {
            let view = RtpView::parse(&pkt).unwrap();
            let (bytes, is_rtx): (&[u8], bool) = if view.ssrc() == RTX_SSRC {
                let n = rtx_decapsulate(&pkt, MEDIA_SSRC, MEDIA_PT, &mut plain).unwrap();
                (&plain[..n], true)
            } else {
                (&pkt[..], false)
            };
            let view = RtpView::parse(bytes).unwrap();
            assert_eq!((view.ssrc(), view.payload_type()), (MEDIA_SSRC, MEDIA_PT));
            assert!(view.payload().iter().all(|&b| b == view.seq() as u8));
            let ext = unwrapper.unwrap(view.seq());
            let first = *first_ext.get_or_insert(ext - view.seq().wrapping_sub(FIRST_SEQ) as u64);
            let idx = (ext - first) as usize;
            if is_rtx && got[idx] {
                rtx_redundant += 1;
            }
            got[idx] = true;
            got_original[idx] |= !is_rtx;
            gen.on_packet(now, ext);
        }

        // Receiver: NACKs due now.
        gen.handle_timeout(now);
        loop {
            let n = gen.poll_nacks(now, &mut nack_buf);
            if n == 0 {
                break;
            }
            downlink.send(now, &build_nack(&nack_buf[..n]));
            nack_packets += 1;
        }

        // Publisher: answer NACKs with RTX from the history.
        while let Some(nack) = downlink.poll_recv(now) {
            for seq in parse_nack(&nack) {
                let ext = pub_seqs.peek(seq);
                if let Some(orig) = history.get(now, ext) {
                    let n = rtx_encapsulate(orig, RTX_SSRC, RTX_PT, rtx_seq, &mut rtx_buf).unwrap();
                    rtx_seq = rtx_seq.wrapping_add(1);
                    rtx_sent += 1;
                    uplink.send(now, &rtx_buf[..n]);
                }
            }
        }

        let next = [
            (sent < total).then_some(next_send),
            uplink.next_arrival(),
            downlink.next_arrival(),
            gen.poll_timeout(),
        ]
        .into_iter()
        .flatten()
        .min();
        match next {
            Some(t) => {
                assert!(t > now, "no progress at {:?}", now - start);
                now = t;
            }
            None => break,
        }
    }
    assert_eq!(sent, total);
    assert!(uplink.in_flight() == 0 && downlink.in_flight() == 0);

    let st = gen.stats();
    Outcome {
        raw_lost: measured(&got_original).iter().filter(|g| !**g).count(),
        raw_lost_runs: got_original[LEAD - 1..LEAD + N]
            .windows(2)
            .filter(|w| w[0] && !w[1])
            .count(),
        residual: measured(&got).iter().filter(|g| !**g).count(),
        rtx_sent,
        rtx_redundant,
        nack_packets,
        requested: st.requested,
        given_up: st.given_up,
    }
}

fn measured(v: &[bool]) -> &[bool] {
    &v[LEAD..LEAD + N]
}

fn report(name: &str, o: &Outcome) {
    println!(
        "{name}: raw loss {:.2}% ({} of {N}), residual {:.3}% ({}), rtx sent {}, \
         redundant rtx {}, nack packets {}, seqs requested {}, given up {}",
        100.0 * o.raw_lost as f64 / N as f64,
        o.raw_lost,
        100.0 * o.residual as f64 / N as f64,
        o.residual,
        o.rtx_sent,
        o.rtx_redundant,
        o.nack_packets,
        o.requested,
        o.given_up,
    );
}

fn lossy(seed: u64, loss: f64) -> NetemConfig {
    NetemConfig {
        seed,
        loss,
        delay: ONE_WAY,
        jitter: JITTER,
        ..NetemConfig::default()
    }
}

/// RTX overhead bound: `1/(1-p)` RTX per lost packet on average (see module
/// docs), with 15 % slack for sampling noise over a few hundred losses.
fn assert_rtx_overhead(o: &Outcome, p: f64) {
    let expected = o.raw_lost as f64 / (1.0 - p);
    assert!(
        (o.rtx_sent as f64) <= expected * 1.15 + 5.0,
        "rtx sent {} vs expected ~{expected:.0}",
        o.rtx_sent
    );
}

#[test]
fn recovers_5_percent_random_loss() {
    let o = run(lossy(5, 0.05));
    report("5% random", &o);
    assert!((200..=300).contains(&o.raw_lost), "raw loss off: {o:?}");
    assert_eq!(o.residual, 0, "{o:?}");
    assert_rtx_overhead(&o, 0.05);
}

#[test]
fn recovers_20_percent_random_loss() {
    let o = run(lossy(20, 0.20));
    report("20% random", &o);
    assert!((900..=1100).contains(&o.raw_lost), "raw loss off: {o:?}");
    assert!(o.residual <= 1, "{o:?}");
    assert_rtx_overhead(&o, 0.20);
}

#[test]
fn recovers_10_packet_bursts() {
    // A burst starts on ~0.5 % of packets and drops 10 in a row (100 ms of
    // media): ~5 % loss, all of it in bursts, on both directions.
    let o = run(NetemConfig {
        burst_loss: Some((0.005, 10)),
        ..lossy(10, 0.0)
    });
    report("10-packet bursts", &o);
    assert!(o.raw_lost >= 100, "too few bursts to mean anything: {o:?}");
    // Bursts also swallow RTX packets, so originals are not always lost in
    // whole tens, but runs must be long on average.
    assert!(
        o.raw_lost_runs * 5 <= o.raw_lost,
        "losses not bursty: {o:?}"
    );
    assert_eq!(o.residual, 0, "{o:?}");
}

#[test]
fn lossless_path_sends_no_nacks() {
    let o = run(lossy(1, 0.0));
    assert_eq!(
        (o.raw_lost, o.residual, o.nack_packets, o.rtx_sent),
        (0, 0, 0, 0)
    );
}

#[test]
fn generic_nack_codec_round_trips() {
    let seqs = [65530, 65531, 65535, 0, 9, 10, 30];
    let p = build_nack(&seqs);
    assert_eq!(p.len(), 12 + 4 * 2); // 65530 covers up to 10; 30 starts a new FCI
    assert_eq!(parse_nack(&p), seqs);
}

#[test]
fn netem_is_deterministic_and_loses_at_its_rate() {
    let cfg = NetemConfig {
        seed: 42,
        loss: 0.1,
        delay: Duration::from_millis(5),
        jitter: Duration::from_millis(3),
        reorder: 0.05,
        duplicate: 0.02,
        ..NetemConfig::default()
    };
    let start = t0();
    let drive = |cfg: NetemConfig| {
        let mut net = Netem::new(cfg);
        let mut got: Vec<(Duration, u16)> = Vec::new();
        for i in 0..10_000u16 {
            let now = start + Duration::from_millis(i as u64);
            net.send(now, &i.to_be_bytes());
            while let Some(p) = net.poll_recv(now) {
                got.push((now - start, u16::from_be_bytes([p[0], p[1]])));
            }
        }
        let end: Instant = start + Duration::from_secs(60);
        while let Some(p) = net.poll_recv(end) {
            got.push((end - start, u16::from_be_bytes([p[0], p[1]])));
        }
        (got, net.stats())
    };
    let (a, sa) = drive(cfg);
    let (b, _) = drive(cfg);
    assert_eq!(a, b);
    assert!((900..1100).contains(&sa.dropped), "{sa:?}");
    assert_eq!(sa.delivered, sa.sent - sa.dropped + sa.duplicated);
    assert!(
        a.windows(2).any(|w| w[1].1 < w[0].1),
        "expected some reordering"
    );
}

/// The fixed-seed cases above, over 30 more seeds, with aggregate bounds.
/// Slow in debug builds (~20 s), so opt-in:
/// `cargo test -p rtp-core --test nack_recovers_loss -- --ignored --nocapture`.
/// Measured when written: 5 % and bursts never left a residual loss; 20 %
/// left 3 packets in total over ~30,000 losses, all given up after 10 rounds
/// (1e-4 per lost packet vs. 3.7e-5 predicted: NACKs batch several sequence
/// numbers, so their losses are correlated); RTX per lost packet stayed within
/// 8 % of 1/(1-p).
#[test]
#[ignore]
fn seed_sweep() {
    let (mut res5, mut res20, mut res_burst) = (0, 0, 0);
    for seed in 100..130 {
        let a = run(lossy(seed, 0.05));
        let b = run(lossy(seed, 0.20));
        let c = run(NetemConfig {
            burst_loss: Some((0.005, 10)),
            ..lossy(seed, 0.0)
        });
        report(&format!("seed {seed} 5%"), &a);
        report(&format!("seed {seed} 20%"), &b);
        report(&format!("seed {seed} bursts"), &c);
        assert_rtx_overhead(&a, 0.05);
        assert_rtx_overhead(&b, 0.20);
        res5 += a.residual;
        res20 += b.residual;
        res_burst += c.residual;
    }
    println!("residual over 30 seeds: 5% {res5}, 20% {res20}, bursts {res_burst}");
    assert_eq!(res5 + res_burst, 0);
    assert!(res20 <= 10, "{res20}");
}
