//! The security review's open question (`shared/review/security.md`, "Not verified: pool
//! starvation by subscribers reporting low bandwidth"): can subscribers that report a tiny
//! bandwidth and NACK everything make their worker's packet pool run dry, so that another
//! subscriber of that worker loses media? A subscriber's pacer may queue 3,392 copies for up to
//! 2 s, each holding a pool buffer, and the test dataplane has 2,048 buffers per worker (on
//! io_uring half of them lent to the kernel's buffer ring for receiving).
//!
//! One publisher on worker 0 (audio at 100 packets/s, video at 400 packets/s of 1,000 bytes)
//! for 8 s; on worker 1 one well-behaved subscriber and three hostile ones. Every 20 ms each
//! hostile subscriber sends a REMB (20 and 10 kbit/s in turn: falling, so it caps the estimate)
//! and a NACK for the 400 video packets before the newest it received: retransmissions go
//! before video, so its pacer never drains. Asserts that the well-behaved subscriber received
//! at least 99 % of the audio and video sent with no gap of a second, that worker 1 never
//! refused a copy or a receive for want of a buffer (`pool_empty`, `rx_pool_empty`), and that
//! the attack reached the SFU (the hostile subscribers got retransmissions). Before D120
//! (`router::admit`), on io_uring: 495 of 800 audio and 1,957 of 3,200 video packets, 6,366
//! `pool_empty`; the socket backend, all of whose buffers are free for copies, held at this load.

mod webrtc_harness;

use std::time::{Duration, Instant};

use rtp_core::packet::rtcp;
use sluice_dataplane::testpeer::TestPeer;
use webrtc_harness::*;

/// How long the publisher sends.
const DURATION: Duration = Duration::from_secs(8);
/// Video packets per 10 ms tick.
const VIDEO_PER_TICK: u16 = 4;
/// Video payload bytes after the VP8 descriptor.
const VIDEO_BYTES: usize = 1_000;
/// Hostile subscribers.
const HOSTILE: u32 = 3;
/// Sequence numbers each hostile NACK names.
const NACKED: u16 = 400;

/// A one-packet VP8 keyframe of `VIDEO_BYTES` (any packet lets a subscriber start).
fn video_payload(seq: u16) -> Vec<u8> {
    let mut p = vec![
        0x10, 0x00, 0x00, 0x00, 0x9d, 0x01, 0x2a, 0x40, 0x01, 0xf0, 0x00,
    ];
    p.resize(p.len() + VIDEO_BYTES, seq as u8);
    p
}

/// What a subscriber thread saw.
#[derive(Debug, Default)]
struct Seen {
    audio: u64,
    video: u64,
    rtx: u64,
    /// Longest time between two video packets after the first.
    longest_gap: Duration,
    nacks_sent: u64,
    rembs_sent: u64,
}

/// Reads media until `end`; a hostile reader also sends its REMB and NACK every 20 ms.
fn read(mut peer: TestPeer, audio: u32, video: u32, hostile: bool, end: Instant) -> Seen {
    let mut seen = Seen::default();
    let (mut last_video, mut newest) = (None::<Instant>, None::<u16>);
    let mut next_attack = Instant::now();
    while Instant::now() < end {
        if hostile && Instant::now() >= next_attack {
            next_attack += Duration::from_millis(20);
            // A REMB caps the estimate only once it falls (D21): 20 and 10 kbit/s in turn.
            let remb = if seen.rembs_sent % 2 == 0 {
                20_000
            } else {
                10_000
            };
            seen.rembs_sent += 1;
            let mut buf = [0u8; 1200];
            let n =
                rtcp::write_remb(&mut buf, peer.rtcp_ssrc(), remb, &[audio, video]).expect("remb");
            peer.send_rtcp_raw(&buf[..n]).expect("send remb");
            if let Some(top) = newest {
                let seqs: Vec<u16> = (1..=NACKED).map(|k| top.wrapping_sub(k)).collect();
                // A NACK's FCI entries cover 17 sequence numbers each: 100 per packet fit.
                for chunk in seqs.chunks(100) {
                    peer.send_nack(video, chunk).expect("send nack");
                }
                seen.nacks_sent += 1;
            }
        }
        let Some(m) = peer.recv_media(Duration::from_millis(5)).expect("recv") else {
            continue;
        };
        if m.ssrc == audio {
            seen.audio += 1;
        } else if m.ssrc == video {
            if m.recovered {
                seen.rtx += 1;
                continue;
            }
            seen.video += 1;
            let now = Instant::now();
            if let Some(t) = last_video {
                seen.longest_gap = seen.longest_gap.max(now - t);
            }
            last_video = Some(now);
            if newest.is_none_or(|n| m.seq.wrapping_sub(n) < 0x8000) {
                newest = Some(m.seq);
            }
        }
    }
    seen
}

#[test]
fn subscribers_that_report_no_bandwidth_and_nack_everything_do_not_starve_the_pool() {
    for io in choices() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut rig = Rig::start(io, &dir);
        println!(
            "case hostile_subscribers on backend {:?}",
            rig.dp().io_mode()
        );
        let (mut publisher, pub_id) = rig.connect_on(0);
        rig.publish_tracks(pub_id);
        let mut subs = Vec::new();
        for i in 0..=HOSTILE {
            let (mut peer, id) = rig.connect_on(1);
            let (audio, video) = rig.subscribe_both(i, id, &mut peer);
            subs.push((peer, audio, video, i > 0));
        }
        // The readers stop a second after the publisher, to take what is still in flight.
        let end = Instant::now() + DURATION + Duration::from_secs(1);
        let readers: Vec<_> = subs
            .into_iter()
            .map(|(peer, audio, video, hostile)| {
                std::thread::spawn(move || read(peer, audio, video, hostile, end))
            })
            .collect();

        // The publisher's packets all reach worker 0 (see `webrtc_fanout`).
        pin_to(0);
        let (mut audio_sent, mut video_sent) = (0u64, 0u64);
        let (mut aseq, mut vseq) = (0u16, 0u16);
        let start = Instant::now();
        let mut tick = start;
        while tick < start + DURATION {
            publisher
                .publish_rtp(
                    aseq,
                    u32::from(aseq) * 480,
                    AUDIO_SSRC,
                    PT_AUDIO,
                    false,
                    &payload(false, aseq),
                )
                .expect("publish audio");
            aseq = aseq.wrapping_add(1);
            audio_sent += 1;
            for _ in 0..VIDEO_PER_TICK {
                publisher
                    .publish_rtp(
                        vseq,
                        u32::from(vseq / VIDEO_PER_TICK) * 900,
                        VIDEO_SSRC,
                        PT_VIDEO,
                        true,
                        &video_payload(vseq),
                    )
                    .expect("publish video");
                vseq = vseq.wrapping_add(1);
                video_sent += 1;
            }
            tick += Duration::from_millis(10);
            publisher.pump(tick).expect("pump");
        }
        let seen: Vec<Seen> = readers
            .into_iter()
            .map(|r| r.join().expect("reader"))
            .collect();
        let stats = rig.worker_stats();
        let w1 = &stats
            .iter()
            .find(|s| s.shard == 1)
            .expect("worker 1")
            .counters;
        let dropped = |k: &str| w1.dropped.get(k).copied().unwrap_or(0);
        println!(
            "on {:?}: sent audio {audio_sent}, video {video_sent}; well-behaved {:?}; hostile {:?}",
            rig.dp().io_mode(),
            seen[0],
            &seen[1..]
        );
        println!(
            "worker 1: pool_empty {}, rx_pool_empty {}, pool_share {}, expired_in_pacer {}, tx {} packets",
            dropped("pool_empty"),
            dropped("rx_pool_empty"),
            dropped("pool_share"),
            dropped("expired_in_pacer"),
            w1.tx_packets,
        );
        let healthy = &seen[0];
        assert!(
            healthy.audio * 100 >= audio_sent * 99,
            "the well-behaved subscriber got {} of {audio_sent} audio packets",
            healthy.audio
        );
        assert!(
            healthy.video * 100 >= video_sent * 99,
            "the well-behaved subscriber got {} of {video_sent} video packets",
            healthy.video
        );
        assert!(
            healthy.longest_gap < Duration::from_secs(1),
            "the well-behaved subscriber's video stopped for {:?}",
            healthy.longest_gap
        );
        assert_eq!(
            dropped("pool_empty"),
            0,
            "copies refused for want of a buffer"
        );
        assert_eq!(
            dropped("rx_pool_empty"),
            0,
            "receives refused for want of a buffer"
        );
        assert!(
            seen[1..].iter().all(|s| s.nacks_sent > 0 && s.rtx > 0),
            "the attack did not reach the SFU: {:?}",
            &seen[1..]
        );
        rig.stop();
    }
}
