//! Malformed traffic of every kind at a dataplane with an active WebRTC session (issue 3,
//! "done when"): random bytes, truncated RTP, RTP with a bad SRTP tag, replayed SRTP, STUN with
//! wrong integrity, DTLS garbage and RTCP with bad lengths — from a foreign socket and, where
//! it reaches the session, from the publisher's own socket. The subscriber still receives
//! every legitimate packet, in order, and the workers' `StatsSnapshot` counters name each drop
//! by reason. Both backends.

mod webrtc_harness;

use std::collections::{BTreeMap, HashMap};
use std::net::UdpSocket;
use std::time::{Duration, Instant};

use sluice_dataplane::testpeer::TestPeer;
use webrtc_harness::*;

const PACKETS: u16 = 200;

#[test]
fn malformed_traffic_is_dropped_by_reason_and_media_continues() {
    for io in choices() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut rig = Rig::start(io, &dir);
        println!("case malformed_traffic on backend {:?}", rig.dp().io_mode());
        let (mut publisher, pub_id) = rig.connect_on(0);
        let pub_ufrag = format!("srv{}", pub_id.0);
        rig.publish_tracks(pub_id);
        let (mut sub, sub_id) = rig.connect_on(1);
        let (audio, video) = rig.subscribe_both(0, sub_id, &mut sub);
        let reader = std::thread::spawn(move || receive_all(&mut sub, audio, video));

        let foreign = UdpSocket::bind((LOCAL, 0)).expect("bind");
        let server = rig.media_addr();
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        // The publisher's packets all reach its own worker (no reordering hand-over).
        pin_to(0);
        for seq in 0..PACKETS {
            publish_pair(&mut publisher, seq);
            if seq % 10 != 5 {
                continue;
            }
            // A bad tag: a well-formed SRTP packet (of a stream of its own, so the real
            // streams' SRTP state is untouched) with one tag bit flipped.
            let legit = publisher
                .protect_rtp(seq, 0, 0xbeef, PT_AUDIO, false, &payload(false, seq))
                .expect("protect");
            let mut bad_tag = legit.clone();
            *bad_tag.last_mut().expect("tag") ^= 0x01;
            publisher.send_raw(&bad_tag).expect("bad tag");
            // A replay: the same valid SRTP packet twice (the first passes SRTP and is then
            // refused for its unknown SSRC; the second is refused as a replay).
            let replay = publisher
                .protect_rtp(seq, 0, 0xdead, PT_AUDIO, false, &[0; 8])
                .expect("protect");
            publisher.send_raw(&replay).expect("first copy");
            publisher.send_raw(&replay).expect("replay");
            // Truncated RTP: a header cut short.
            publisher.send_raw(&legit[..8]).expect("truncated");
            // RTCP whose length field claims more than the datagram holds, SRTCP-protected
            // with the session's own keys so it reaches the RTCP parser.
            let ssrc = publisher.rtcp_ssrc().to_be_bytes();
            publisher
                .send_rtcp_raw(&[
                    0x81, 201, 0x00, 0x40, ssrc[0], ssrc[1], ssrc[2], ssrc[3], 0, 0, 0, 0,
                ])
                .expect("bad rtcp");
            // STUN binding naming the session's ufrag with a wrong MESSAGE-INTEGRITY, from
            // the peer and from a stranger.
            let stun = bad_stun(&pub_ufrag, seq);
            publisher.send_raw(&stun).expect("stun");
            foreign.send_to(&stun, server).expect("stun");
            // DTLS garbage (a handshake record header, then noise), both sources.
            let mut dtls = vec![22, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 9, 0, 32];
            dtls.extend((0..32).map(|_| next(&mut rng) as u8));
            publisher.send_raw(&dtls).expect("dtls");
            foreign.send_to(&dtls, server).expect("dtls");
            // Random bytes, an unsupported first byte, and RTP/RTCP-looking noise from afar.
            let noise: Vec<u8> = (0..(next(&mut rng) % 200 + 1))
                .map(|_| next(&mut rng) as u8)
                .collect();
            foreign.send_to(&noise, server).expect("noise");
            publisher.send_raw(&[0xff; 40]).expect("unsupported");
            foreign
                .send_to(&[0x80, 96, 0, 1, 0, 0, 0, 0], server)
                .expect("short rtp");
            foreign
                .send_to(&[0x81, 200, 0xff, 0xff, 0, 0, 0, 1], server)
                .expect("bad rtcp");
            publisher
                .pump(Instant::now() + Duration::from_millis(20))
                .expect("pump");
        }
        let count = reader.join().expect("reader");
        println!("received on {:?}: {count:x?}", rig.dp().io_mode());
        assert_eq!(count.get(&audio), Some(&u32::from(PACKETS)), "{count:x?}");
        assert_eq!(count.get(&video), Some(&u32::from(PACKETS)), "{count:x?}");

        let mut dropped: BTreeMap<String, u64> = BTreeMap::new();
        for w in rig.worker_stats() {
            println!("shard {} dropped {:?}", w.shard, w.counters.dropped);
            for (k, v) in w.counters.dropped {
                *dropped.entry(k).or_default() += v;
            }
        }
        let rounds = u64::from(PACKETS / 10);
        for reason in [
            "unknown_source",
            "srtp_auth",
            "srtp_replay",
            "srtp_other",
            "malformed_rtcp",
            "unsupported",
            "stun",
        ] {
            assert!(
                dropped.get(reason).copied().unwrap_or(0) >= rounds,
                "{reason}: {dropped:?}"
            );
        }
        rig.stop();
    }
}

/// A STUN Binding request (RFC 8489 §5) whose USERNAME names `ufrag` and whose
/// MESSAGE-INTEGRITY is 20 bytes of nonsense.
fn bad_stun(ufrag: &str, seq: u16) -> Vec<u8> {
    let username = format!("{ufrag}:stranger");
    let padded = username.len().div_ceil(4) * 4;
    let attrs = 4 + padded + 4 + 20;
    let mut m = Vec::with_capacity(20 + attrs);
    m.extend_from_slice(&[0x00, 0x01]);
    m.extend_from_slice(&(attrs as u16).to_be_bytes());
    m.extend_from_slice(&0x2112_a442u32.to_be_bytes());
    m.extend_from_slice(&[7; 10]);
    m.extend_from_slice(&seq.to_be_bytes());
    m.extend_from_slice(&[0x00, 0x06]);
    m.extend_from_slice(&(username.len() as u16).to_be_bytes());
    m.extend_from_slice(username.as_bytes());
    m.resize(m.len() + padded - username.len(), 0);
    m.extend_from_slice(&[0x00, 0x08, 0x00, 20]);
    m.extend_from_slice(&[0xab; 20]);
    m
}

fn next(s: &mut u64) -> u64 {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    *s
}

/// Reads until both streams delivered all `PACKETS` sequence numbers (or 20 s pass), each with
/// the published payload. Completeness, not arrival order: a datagram the loaded machine's kernel
/// dropped comes back by the subscriber's own NACK and RTX.
fn receive_all(sub: &mut TestPeer, audio: u32, video: u32) -> HashMap<u32, u32> {
    let mut first: HashMap<u32, u16> = HashMap::new();
    let mut seen: HashMap<u32, std::collections::BTreeSet<u16>> = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while seen.values().map(|s| s.len()).sum::<usize>() < 2 * usize::from(PACKETS)
        && Instant::now() < deadline
    {
        let Some(m) = sub.recv_media(Duration::from_millis(100)).expect("recv") else {
            continue;
        };
        assert!(m.ssrc == audio || m.ssrc == video, "ssrc {:#x}", m.ssrc);
        let k = m.seq.wrapping_sub(*first.entry(m.ssrc).or_insert(m.seq));
        assert!(
            k < PACKETS,
            "seq {} outside the stream on {:#x}",
            m.seq,
            m.ssrc
        );
        assert_eq!(m.payload, payload(m.ssrc == video, k), "packet {k}");
        seen.entry(m.ssrc).or_default().insert(k);
    }
    seen.into_iter()
        .map(|(ssrc, s)| (ssrc, s.len() as u32))
        .collect()
}
