//! Trunk sessions (cascade, issue 16) in memory, time advanced by hand: a plain publisher
//! session yields `Media`; the test plays the shard and forwards it to a relay DownTrack
//! (`relay_layer: Some(0)`) on trunk session A; A's paced SRTP packets go to trunk session B,
//! whose UpTrack for the relay SSRC yields them with the publisher's own sequence numbers,
//! delta frames included (a relay never waits for a keyframe). One packet is lost on the way:
//! B NACKs it over the trunk, A answers with RTX from the shard's history. A B keyed with
//! another epoch, and a datagram from another address, are refused.

mod session_harness;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rtp_core::packet::rtcp;
use rtp_core::session::{
    DownTrackConfig, ExtIds, Session, SessionConfig, SessionMode, SessionOutput, TrunkKeys,
};
use rtp_core::RtpView;

use session_harness::*;

const SECRET: [u8; 32] = [0x42; 32];
const TRUNK_SSRC: u32 = 71_000;
const TRUNK_RTX_SSRC: u32 = 71_001;

fn trunk(local: &str, remote: &str, epoch: u64, to: SocketAddr) -> Session {
    let keys = TrunkKeys::derive(&SECRET, local, remote, epoch).expect("keys");
    Session::new(
        t0(),
        SessionConfig::new(SessionMode::Trunk {
            remote: to,
            keys: Some(keys),
            silence: Duration::from_secs(2),
        }),
        &cert(),
    )
    .expect("trunk session")
}

const A_ADDR: &str = "127.0.0.1:7001";
const B_ADDR: &str = "127.0.0.1:7002";

/// Moves what A's pacer releases to B; the packet with sequence number 1020 is lost.
fn deliver(
    now: Instant,
    a: &mut Session,
    b: &mut Session,
    shard: &mut Shard,
    sent: &[(u16, Vec<u8>)],
    got: &mut Vec<Received>,
) {
    while let Some((h, _, dest)) = a.poll_paced(now) {
        assert_eq!(dest, addr(B_ADDR).into());
        let mut pkt = shard.slots.remove(&h).unwrap();
        // The header is the source's; the payload is SRTP, not readable on the wire.
        let seq = u16::from_be_bytes([pkt[2], pkt[3]]);
        let (_, plain) = sent.iter().find(|(s, _)| *s == seq).expect("a sent seq");
        assert!(!pkt.windows(32).any(|w| w == &plain[8..40]), "plaintext");
        if seq == 1020 {
            continue; // lost on the trunk
        }
        let out = b.handle_datagram(now, addr(A_ADDR), &mut pkt).unwrap();
        got.push(media_of(out, &pkt).expect("media at B"));
    }
}

#[test]
fn a_relay_keeps_the_source_sequence_numbers_and_repairs_over_the_trunk() {
    let mut now = t0();
    let (c1, a_addr, b_addr) = (addr("127.0.0.1:6001"), addr(A_ADDR), addr(B_ADDR));
    let (mut s1, mut cl1) = plain_pair(now, c1);
    let mut a = trunk("node-a", "node-b", 1, b_addr);
    let mut b = trunk("node-b", "node-a", 1, a_addr);
    assert!(a.is_connected() && b.is_connected(), "keyed at creation");
    s1.add_up_track(up_track(PT_VP8, PT_RTX, PUB_SSRC, PUB_RTX_SSRC))
        .unwrap();
    let relay = a
        .add_down_track(DownTrackConfig {
            ssrc: TRUNK_SSRC,
            rtx_ssrc: Some(TRUNK_RTX_SSRC),
            payload_type: PT_VP8,
            rtx_payload_type: Some(PT_RTX),
            ext: ExtIds::default(),
            relay_layer: Some(0),
            ..down_track()
        })
        .unwrap();
    b.add_up_track(up_track(PT_VP8, PT_RTX, TRUNK_SSRC, TRUNK_RTX_SSRC))
        .unwrap();

    let mut shard = Shard::default();
    let mut sent = Vec::new();
    let mut got = Vec::new();
    // From packet 3 on: frame 1, a delta frame.
    for i in 3..63u32 {
        now += Duration::from_millis(5);
        let mut buf = vec![0u8; 1500];
        let n = vp8_packet(i, PUB_SSRC, &mut buf);
        let (len, _) = cl1.protect_outgoing(now, &mut buf, n).unwrap();
        let SessionOutput::Media { meta, .. } =
            s1.handle_datagram(now, c1, &mut buf[..len]).unwrap()
        else {
            panic!("expected media");
        };
        shard.history.insert(meta.ext_seq, buf[..meta.len].to_vec());
        let view = RtpView::parse(&buf[..meta.len]).unwrap();
        sent.push((view.seq(), view.payload().to_vec()));
        let (h, mut slot) = shard.slot();
        let n = a
            .forward(now, relay, &view, meta, &mut slot, h)
            .unwrap()
            .expect("a relay forwards delta frames");
        slot.truncate(n);
        shard.slots.insert(h, slot);
        deliver(now, &mut a, &mut b, &mut shard, &sent, &mut got);
    }
    // The pacer may still hold the last packets.
    for _ in 0..200 {
        now += Duration::from_millis(5);
        deliver(now, &mut a, &mut b, &mut shard, &sent, &mut got);
    }
    assert_eq!(got.len(), sent.len() - 1);
    for r in &got {
        assert_eq!(r.ssrc, TRUNK_SSRC);
        let (_, payload) = sent.iter().find(|(s, _)| *s == r.seq).expect("a sent seq");
        assert_eq!(&r.payload, payload, "seq {}", r.seq);
    }
    let lost = 1000 + 20u16;
    assert!(got.iter().all(|r| r.seq != lost));
    assert_eq!(got[0].seq, 1003, "the publisher's own sequence numbers");

    // B NACKs the loss over the trunk; A answers from the shard's history with RTX.
    let mut nack = vec![0u8; 1200];
    let n = rtcp::write_nack(&mut nack, b.local_ssrc(), TRUNK_SSRC, &[lost]).unwrap();
    let mut dg = vec![0u8; 1500];
    let (len, _) = b.send_rtcp(now, &nack[..n], &mut dg).unwrap();
    let mut outs = vec![a.handle_datagram(now, b_addr, &mut dg[..len]).unwrap()];
    while let Some(o) = a.poll_output() {
        outs.push(o);
    }
    let Some(SessionOutput::Retransmit {
        seq, src_ext_seq, ..
    }) = outs
        .into_iter()
        .find(|o| matches!(o, SessionOutput::Retransmit { .. }))
    else {
        panic!("no retransmission asked");
    };
    assert_eq!(seq, lost);
    let orig = shard.history[&src_ext_seq].clone();
    let (h, mut slot) = shard.slot();
    let n = a
        .retransmit(
            now,
            relay,
            seq,
            &RtpView::parse(&orig).unwrap(),
            &mut slot,
            h,
        )
        .unwrap()
        .expect("retransmission queued");
    slot.truncate(n);
    shard.slots.insert(h, slot);
    now += Duration::from_millis(5);
    let (h, _, _) = a.poll_paced(now).expect("the RTX is paced");
    let mut pkt = shard.slots.remove(&h).unwrap();
    let out = b.handle_datagram(now, a_addr, &mut pkt).unwrap();
    let r = media_of(out, &pkt).expect("recovered at B");
    assert_eq!((r.ssrc, r.seq), (TRUNK_SSRC, lost));
    assert_eq!(b.stats().rtx_in, 1);

    // Only the trunk's remote is heard.
    let mut buf = vec![0u8; 1500];
    let n = vp8_packet(99, TRUNK_SSRC, &mut buf);
    assert!(b
        .handle_datagram(now, addr("127.0.0.1:7999"), &mut buf[..n])
        .is_err());
}

#[test]
fn a_trunk_keyed_with_another_epoch_decrypts_nothing() {
    let now = t0();
    let (a_addr, b_addr) = (addr("127.0.0.1:7001"), addr("127.0.0.1:7002"));
    let mut a = trunk("node-a", "node-b", 1, b_addr);
    let mut b = trunk("node-b", "node-a", 2, a_addr);
    b.add_up_track(up_track(PT_VP8, PT_RTX, TRUNK_SSRC, TRUNK_RTX_SSRC))
        .unwrap();
    let mut buf = vec![0u8; 1500];
    let mut rtcp_buf = vec![0u8; 1500];
    let n = rtcp::write_nack(&mut rtcp_buf, a.local_ssrc(), TRUNK_SSRC, &[1]).unwrap();
    let (len, _) = a.send_rtcp(now, &rtcp_buf[..n], &mut buf).unwrap();
    assert!(b.handle_datagram(now, a_addr, &mut buf[..len]).is_err());
    assert_eq!(b.stats().drop_auth, 1, "{:?}", b.stats());
}
