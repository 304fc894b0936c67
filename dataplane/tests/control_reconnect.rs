//! The control connection is dropped and re-established while WebRTC media flows (issue 3,
//! "done when"): forwarding does not depend on the control daemon, so the subscriber's sequence
//! numbers show no packet lost, and the new connection's `Hello` + `ListSessions` /
//! `ListTracks` / `ListSubscriptions` resync shows the state as it was. Both backends.

mod webrtc_harness;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use sluice_proto::{Command, ControlClient, Hello, ReplyOk, SessionState};
use webrtc_harness::*;

const PACKETS: u16 = 200;
/// The publisher sends a pair every few ms, so the reconnect happens mid-stream.
const SEND_EVERY: Duration = Duration::from_millis(4);

#[test]
fn control_reconnect_while_media_flows_loses_nothing() {
    for io in choices() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut rig = Rig::start(io, &dir);
        println!("case control_reconnect on backend {:?}", rig.dp().io_mode());
        let (mut publisher, pub_id) = rig.connect_on(0);
        rig.publish_tracks(pub_id);
        let (mut sub, sub_id) = rig.connect_on(1);
        let (audio, video) = rig.subscribe_both(0, sub_id, &mut sub);

        let reader = std::thread::spawn(move || {
            // Every sequence number of both streams must arrive: "no packet lost". The
            // subscriber's own NACKs may bring one back by RTX if the loaded machine's kernel
            // dropped a datagram, so completeness is checked, not arrival order.
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
                seen.entry(m.ssrc).or_default().insert(k);
            }
            seen.into_iter()
                .map(|(ssrc, s)| (ssrc, s.len() as u32))
                .collect::<HashMap<u32, u32>>()
        });
        let sender = std::thread::spawn(move || {
            // The publisher's packets all reach its own worker (no reordering hand-over).
            pin_to(0);
            for seq in 0..PACKETS {
                publish_pair(&mut publisher, seq);
                publisher
                    .pump(Instant::now() + SEND_EVERY)
                    .expect("publisher pump");
            }
        });

        // Mid-stream: drop the control connection, wait, reconnect.
        std::thread::sleep(Duration::from_millis(150));
        let path = rig.dp().control_socket().to_path_buf();
        // The new connection waits in the listener's backlog until the control thread has
        // seen the old one close; media keeps flowing all along.
        let old = std::mem::replace(
            &mut rig.ctl,
            ControlClient::connect(&path).expect("reconnect"),
        );
        drop(old);
        std::thread::sleep(Duration::from_millis(50));
        let hello = rig.ctl.hello(Hello::control("test-again")).expect("hello");
        assert_eq!(hello.shards, 2);
        assert_eq!(hello.fingerprint.as_deref(), Some(rig.fingerprint.as_str()));

        // Resync shows what exists.
        let ReplyOk::Sessions { sessions, .. } = rig
            .ctl
            .request(Command::ListSessions { after: None })
            .expect("list sessions")
        else {
            panic!("not a session list");
        };
        let mut placed: Vec<_> = sessions
            .iter()
            .map(|s| (s.spec.session, s.shard, s.state))
            .collect();
        placed.sort_by_key(|p| p.0);
        assert_eq!(
            placed,
            vec![
                (pub_id, 0, SessionState::Connected),
                (sub_id, 1, SessionState::Connected)
            ]
        );
        let ReplyOk::Tracks { tracks, .. } = rig
            .ctl
            .request(Command::ListTracks { after: None })
            .expect("list tracks")
        else {
            panic!("not a track list");
        };
        let mut ids: Vec<_> = tracks.iter().map(|t| t.spec.track).collect();
        ids.sort();
        assert_eq!(ids, vec![AUDIO_TRACK, VIDEO_TRACK]);
        let ReplyOk::Subscriptions { subscriptions, .. } = rig
            .ctl
            .request(Command::ListSubscriptions { after: None })
            .expect("list subscriptions")
        else {
            panic!("not a subscription list");
        };
        assert_eq!(subscriptions.len(), 2);
        assert!(subscriptions.iter().all(|s| s.spec.session == sub_id));

        sender.join().expect("sender");
        let count = reader.join().expect("reader");
        println!("received on {:?}: {count:x?}", rig.dp().io_mode());
        for w in rig.worker_stats() {
            println!(
                "worker {} rx {} tx {} dropped {:?}",
                w.shard,
                w.counters.rx_packets,
                w.counters.tx_packets,
                w.counters
                    .dropped
                    .iter()
                    .filter(|(k, v)| **v > 0
                        && !k.starts_with("lat_")
                        && !k.starts_with("pacer_delay_lt"))
                    .collect::<Vec<_>>()
            );
        }
        assert_eq!(count.get(&audio), Some(&u32::from(PACKETS)), "{count:x?}");
        assert_eq!(count.get(&video), Some(&u32::from(PACKETS)), "{count:x?}");
        rig.stop();
    }
}
