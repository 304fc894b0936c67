//! Publisher → SFU → subscriber through real Sessions, in memory, time
//! advanced by hand: client 1 publishes (protect_outgoing), server session 1
//! yields `Media`, the test plays the shard (history + `forward` on server
//! session 2), client 2 receives the paced packets with loss, NACKs the
//! gaps (`send_rtcp`), server session 2 yields `Retransmit`, the shard
//! answers with `retransmit`, and the RTX is recovered at client 2. Once over
//! WebRTC (ICE + DTLS + SRTP), once over plain RTP.

mod session_harness;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rtp_core::packet::rtcp;
use rtp_core::session::{Session, SessionOutput};
use rtp_core::RtpView;

use session_harness::*;

const PACKETS: u32 = 300;

#[test]
fn webrtc_media_flows_and_nack_recovers() {
    let mut now = t0();
    let (c1, c2) = (addr("127.0.0.1:6001"), addr("127.0.0.1:6002"));
    let (mut s1, mut cl1) = webrtc_pair(now, "one", c1);
    let (mut s2, mut cl2) = webrtc_pair(now, "two", c2);
    connect(&mut now, &mut s1, &mut cl1, c1);
    connect(&mut now, &mut s2, &mut cl2, c2);
    let mut events = Vec::new();
    while let Some(e) = s1.poll_event() {
        events.push(e);
    }
    assert!(
        events
            .iter()
            .any(|e| matches!(e, rtp_core::session::SessionEvent::DtlsConnected { .. })),
        "{events:?}"
    );
    scenario(&mut now, [&mut s1, &mut cl1, &mut s2, &mut cl2], c1, c2);
}

#[test]
fn plain_rtp_media_flows_and_nack_recovers() {
    let mut now = t0();
    let (c1, c2) = (addr("127.0.0.1:6001"), addr("127.0.0.1:6002"));
    let (mut s1, mut cl1) = plain_pair(now, c1);
    let (mut s2, mut cl2) = plain_pair(now, c2);
    assert!(s1.is_connected() && cl2.is_connected());
    scenario(&mut now, [&mut s1, &mut cl1, &mut s2, &mut cl2], c1, c2);
}

fn scenario(
    now: &mut Instant,
    [s1, cl1, s2, cl2]: [&mut Session; 4],
    c1: SocketAddr,
    c2: SocketAddr,
) {
    let server = addr(SERVER);
    s1.add_up_track(up_track(PT_VP8, PT_RTX, PUB_SSRC, PUB_RTX_SSRC))
        .unwrap();
    let down = s2.add_down_track(down_track()).unwrap();
    cl2.add_up_track(up_track(PT_DOWN, PT_DOWN_RTX, DOWN_SSRC, DOWN_RTX_SSRC))
        .unwrap();

    let mut shard = Shard::default();
    let mut expected: Vec<Vec<u8>> = Vec::new();
    let mut got: Vec<Received> = Vec::new();
    let mut paced = 0u32;
    let mut first_events = 0;
    for i in 0..PACKETS {
        *now += Duration::from_millis(5);
        let mut buf = vec![0u8; 1500];
        let n = vp8_packet(i, PUB_SSRC, &mut buf);
        let (len, dest) = cl1.protect_outgoing(*now, &mut buf, n).unwrap();
        assert_eq!(dest, server.into());
        let out = s1.handle_datagram(*now, c1, &mut buf[..len]).unwrap();
        let SessionOutput::Media { meta, .. } = out else {
            panic!("expected media, got {out:?}");
        };
        let (ext_seq, len) = (meta.ext_seq, meta.len);
        assert_eq!(meta.keyframe, i % 90 == 0, "packet {i}");
        shard.history.insert(ext_seq, buf[..len].to_vec());
        let view = RtpView::parse(&buf[..len]).unwrap();
        let (h, mut slot) = shard.slot();
        if let Some(n) = s2.forward(*now, down, &view, meta, &mut slot, h).unwrap() {
            slot.truncate(n);
            shard.slots.insert(h, slot);
            expected.push(view.payload().to_vec());
        }
        while s2.poll_output().is_some() {}
        while let Some(e) = s1.poll_event() {
            if matches!(e, rtp_core::session::SessionEvent::FirstPacket { .. }) {
                first_events += 1;
            }
        }
        // Deliver what the pacer releases; every 17th packet is lost on the way.
        while let Some((h, len, dest)) = s2.poll_paced(*now) {
            assert_eq!(dest, c2.into());
            let mut pkt = shard.slots.remove(&h).expect("slot of handle");
            assert_eq!(len, pkt.len());
            paced += 1;
            if paced % 17 == 5 {
                continue;
            }
            let out = cl2.handle_datagram(*now, server, &mut pkt).unwrap();
            got.push(media_of(out, &pkt).expect("media at client 2"));
        }
    }
    assert_eq!(first_events, 1);
    assert_eq!(expected.len(), PACKETS as usize, "all packets forwarded");
    assert_eq!(paced, PACKETS, "pacer released everything");

    // SSRC and PT rewritten, sequence numbers contiguous, payload intact.
    let first = got[0].seq;
    let mut seen = BTreeSet::new();
    for r in &got {
        assert_eq!(r.ssrc, DOWN_SSRC);
        assert_eq!(r.pt, PT_DOWN);
        let k = r.seq.wrapping_sub(first) as usize;
        assert!(k < expected.len(), "seq {} outside the sent range", r.seq);
        assert_eq!(r.payload, expected[k], "payload of seq {}", r.seq);
        seen.insert(k);
    }
    let lost: Vec<u16> = (0..expected.len())
        .filter(|k| !seen.contains(k))
        .map(|k| first.wrapping_add(k as u16))
        .collect();
    assert_eq!(lost.len(), (PACKETS as usize + 12) / 17, "lost {lost:?}");

    // Client 2 NACKs the gaps; the SFU answers from the shard's history.
    let mut nack = vec![0u8; 1200];
    let n = rtcp::write_nack(&mut nack, cl2.local_ssrc(), DOWN_SSRC, &lost).unwrap();
    let mut dg = vec![0u8; 1500];
    let (len, dest) = cl2.send_rtcp(*now, &nack[..n], &mut dg).unwrap();
    assert_eq!(dest, server.into());
    let mut outs = vec![s2.handle_datagram(*now, c2, &mut dg[..len]).unwrap()];
    while let Some(o) = s2.poll_output() {
        outs.push(o);
    }
    let mut answered = 0;
    for o in outs {
        let SessionOutput::Retransmit {
            down: d,
            seq,
            src_ext_seq,
            ..
        } = o
        else {
            continue;
        };
        assert_eq!(d, down);
        let orig = shard.history[&src_ext_seq].clone();
        let (h, mut slot) = shard.slot();
        let view = RtpView::parse(&orig).unwrap();
        let n = s2
            .retransmit(*now, down, seq, &view, &mut slot, h)
            .unwrap()
            .expect("retransmission queued");
        slot.truncate(n);
        shard.slots.insert(h, slot);
        answered += 1;
    }
    assert_eq!(answered, lost.len());
    // A duplicate NACK within the RTT is suppressed.
    let (len, _) = cl2.send_rtcp(*now, &nack[..n], &mut dg).unwrap();
    assert_eq!(
        s2.handle_datagram(*now, c2, &mut dg[..len]).unwrap(),
        SessionOutput::None
    );

    let mut recovered = 0;
    for _ in 0..100 {
        *now += Duration::from_millis(5);
        while let Some((h, _, _)) = s2.poll_paced(*now) {
            let mut pkt = shard.slots.remove(&h).unwrap();
            let out = cl2.handle_datagram(*now, server, &mut pkt).unwrap();
            let r = media_of(out, &pkt).expect("recovered media");
            assert_eq!(r.ssrc, DOWN_SSRC);
            assert!(lost.contains(&r.seq), "recovered {} was not lost", r.seq);
            let k = r.seq.wrapping_sub(first) as usize;
            assert_eq!(r.payload, expected[k]);
            recovered += 1;
        }
        if recovered == lost.len() {
            break;
        }
    }
    assert_eq!(recovered, lost.len());
    assert_eq!(cl2.stats().rtx_in, lost.len() as u64);
    assert_eq!(s2.stats().retransmitted, lost.len() as u64);

    // Reports both ways give the SFU an RTT towards the subscriber.
    run_for(now, Duration::from_secs(4), s2, server, cl2, c2);
    assert!(s2.stats().rtt.is_some(), "{:?}", s2.stats());
    assert!(s2.stats().rtcp_out > 0 && cl2.stats().rtcp_out > 0);
}
