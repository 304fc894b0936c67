//! A whole in-process dataplane (2 workers, real loopback sockets, both backends) over full
//! ICE + DTLS + SRTP: a test peer publishes audio and VP8 video, three test subscribers on
//! different workers receive every packet with their own SSRC, contiguous sequence numbers and
//! the published payload (so SRTP verified at their end), and both workers' counters show
//! sending. Then NACK → RTX: a subscriber on the other worker drops packets on purpose, NACKs
//! them and recovers every one from RTX. Each case prints which backend it ran on.

mod webrtc_harness;

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use sluice_dataplane::testpeer::TestPeer;
use webrtc_harness::*;

const PACKETS: u16 = 200;
/// Bytes of VP8 payload descriptor + keyframe header before the body in `payload(true, _)`.
const VP8_HEADER: usize = 11;

#[test]
fn webrtc_fan_out_across_two_workers() {
    for io in choices() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut rig = Rig::start(io, &dir);
        println!("case webrtc_fan_out on backend {:?}", rig.dp().io_mode());

        let (mut publisher, pub_id) = rig.connect_on(0);
        rig.publish_tracks(pub_id);
        let mut readers = Vec::new();
        for (i, worker) in [1u16, 0, 1].into_iter().enumerate() {
            let (mut sub, id) = rig.connect_on(worker);
            let (audio, video) = rig.subscribe_both(i as u32, id, &mut sub);
            readers.push(std::thread::spawn(move || {
                receive_all(i, &mut sub, audio, video)
            }));
        }

        // Small bursts, the publisher answering its RTCP in between, so the pacers
        // (1 Mbit/s initial estimate) keep up.
        // The publisher's packets all reach its own worker (no reordering hand-over).
        pin_to(0);
        for seq in 0..PACKETS {
            publish_pair(&mut publisher, seq);
            if seq % 20 == 19 {
                publisher
                    .pump(Instant::now() + Duration::from_millis(20))
                    .expect("pump");
            }
        }
        for r in readers {
            let (i, got) = r.join().expect("reader");
            println!("subscriber {i} on {:?}: {got:x?}", rig.dp().io_mode());
            assert_eq!(got.len(), 2, "subscriber {i}: {got:x?}");
            assert!(
                got.values().all(|&c| c == u32::from(PACKETS)),
                "subscriber {i}: {got:x?}"
            );
        }

        // Subscribers 0 and 2 live on worker 1, subscriber 1 on worker 0.
        let stats = rig.worker_stats();
        let tx: Vec<u64> = stats.iter().map(|s| s.counters.tx_packets).collect();
        println!("tx_packets per worker on {:?}: {tx:?}", rig.dp().io_mode());
        for s in &stats {
            println!("shard {} dropped {:?}", s.shard, s.counters.dropped);
        }
        assert!(tx[0] >= 2 * u64::from(PACKETS), "worker 0 sent {}", tx[0]);
        assert!(tx[1] >= 4 * u64::from(PACKETS), "worker 1 sent {}", tx[1]);
        rig.stop();
    }
}

#[test]
fn webrtc_nack_recovers_with_rtx_across_workers() {
    for io in choices() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut rig = Rig::start(io, &dir);
        println!("case webrtc_nack_rtx on backend {:?}", rig.dp().io_mode());
        let (mut publisher, pub_id) = rig.connect_on(0);
        rig.publish_tracks(pub_id);
        let (mut sub, id) = rig.connect_on(1);
        let (_, video) = rig.subscribe_both(0, id, &mut sub);

        let reader = std::thread::spawn(move || {
            // Lose every 10th video packet (by our seq offset) the first time it comes.
            let mut first: Option<u16> = None;
            let mut dropped: Vec<u16> = Vec::new();
            let mut got: BTreeMap<u16, (bool, Vec<u8>)> = BTreeMap::new();
            let deadline = Instant::now() + Duration::from_secs(20);
            let mut nacked = false;
            // The subscriber's seq of publisher packet 0, read from a payload (its body bytes are
            // the packet's index): `first` alone would be wrong if the first packets were lost.
            let mut base: Option<u16> = None;
            while got.len() < usize::from(PACKETS) && Instant::now() < deadline {
                let m = sub
                    .recv_media_dropping(Duration::from_millis(100), |ssrc, seq| {
                        if ssrc != video {
                            return false;
                        }
                        let f = *first.get_or_insert(seq);
                        let k = seq.wrapping_sub(f);
                        let lose = k % 10 == 3 && !dropped.contains(&seq);
                        if lose {
                            dropped.push(seq);
                        }
                        lose
                    })
                    .expect("recv");
                match m {
                    Some(m) if m.ssrc == video => {
                        let index = m.payload.get(VP8_HEADER).copied().map_or(0, u16::from);
                        let b = *base.get_or_insert(m.seq.wrapping_sub(index));
                        got.insert(m.seq.wrapping_sub(b), (m.recovered, m.payload));
                    }
                    Some(_) => {}
                    // The stream is over: NACK whatever is still missing (the session's
                    // own NACK generator usually got there first).
                    None if !nacked && got.len() + 25 >= usize::from(PACKETS) => {
                        let f = base.expect("a video packet seen");
                        let missing: Vec<u16> = (0..PACKETS)
                            .filter(|k| !got.contains_key(k))
                            .map(|k| f.wrapping_add(k))
                            .collect();
                        if !missing.is_empty() {
                            sub.send_nack(video, &missing).expect("nack");
                        }
                        nacked = true;
                    }
                    None => {}
                }
            }
            let f = base.unwrap_or(0);
            let dropped: Vec<u16> = dropped.iter().map(|s| s.wrapping_sub(f)).collect();
            (dropped, got, sub.session_stats().rtx_in)
        });

        // As in the fan-out case: the publisher's packets all reach its own worker. Unpinned,
        // this thread moves between the cores while the other test runs, its bursts land on
        // both workers, and the hand-over reorders them: whole bursts then arrive too late to
        // be forwarded, are never sent to the subscriber, and cannot be NACKed back.
        pin_to(0);
        for seq in 0..PACKETS {
            publish_pair(&mut publisher, seq);
            if seq % 20 == 19 {
                publisher
                    .pump(Instant::now() + Duration::from_millis(20))
                    .expect("pump");
            }
        }
        let (dropped, got, rtx_in) = reader.join().expect("reader");
        println!(
            "on {:?}: dropped {}, received {}, rtx_in {rtx_in}",
            rig.dp().io_mode(),
            dropped.len(),
            got.len()
        );
        if got.len() != usize::from(PACKETS) {
            // Which side lost them: the workers' drop counters (kernel drops included).
            let missing: Vec<u16> = (0..PACKETS).filter(|k| !got.contains_key(k)).collect();
            println!("never received: {missing:?}");
            let counters: Vec<_> = rig.worker_stats().into_iter().map(|w| w.counters).collect();
            println!("worker counters: {counters:?}");
        }
        // Every 10th packet that arrived was dropped on purpose (one the kernel lost on a
        // loaded machine never arrived to be dropped, and is recovered the same way).
        assert!(!dropped.is_empty() && dropped.len() <= usize::from(PACKETS) / 10);
        assert_eq!(
            got.len(),
            usize::from(PACKETS),
            "every packet, recovered or not"
        );
        let recovered: Vec<u16> = got
            .iter()
            .filter(|(_, (r, _))| *r)
            .map(|(&k, _)| k)
            .collect();
        assert!(
            dropped.iter().all(|k| recovered.contains(k)),
            "dropped {dropped:?}, recovered {recovered:?}"
        );
        for (k, (_, payload)) in &got {
            assert_eq!(payload, &payload_of(*k), "payload of packet {k}");
        }
        rig.stop();
    }
}

/// The subscriber sees its own seq space starting wherever the forwarder started; the
/// publisher's seq k went out as first + k, so payload k is the published payload of seq k.
fn payload_of(k: u16) -> Vec<u8> {
    payload(true, k)
}

/// Reads until both streams delivered `PACKETS` packets (or 20 s pass), checking each arrives
/// with our SSRC and PT, contiguous sequence numbers and the published payload.
fn receive_all(i: usize, sub: &mut TestPeer, audio: u32, video: u32) -> (usize, HashMap<u32, u32>) {
    let mut first: HashMap<u32, u16> = HashMap::new();
    let mut last: HashMap<u32, u16> = HashMap::new();
    let mut count: HashMap<u32, u32> = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while count.values().sum::<u32>() < 2 * u32::from(PACKETS) && Instant::now() < deadline {
        let Some(m) = sub.recv_media(Duration::from_millis(100)).expect("recv") else {
            continue;
        };
        assert!(
            m.ssrc == audio || m.ssrc == video,
            "subscriber {i}: foreign ssrc {:#x}",
            m.ssrc
        );
        let is_video = m.ssrc == video;
        assert_eq!(m.pt, if is_video { PT_VIDEO } else { PT_AUDIO });
        assert!(!m.recovered, "subscriber {i}: nothing was lost");
        if let Some(prev) = last.insert(m.ssrc, m.seq) {
            assert_eq!(
                m.seq,
                prev.wrapping_add(1),
                "subscriber {i} ssrc {:#x}",
                m.ssrc
            );
        }
        let k = m.seq.wrapping_sub(*first.entry(m.ssrc).or_insert(m.seq));
        assert_eq!(m.payload, payload(is_video, k), "subscriber {i} packet {k}");
        *count.entry(m.ssrc).or_default() += 1;
    }
    (i, count)
}
