//! Header-extension ids across the SFU: a publisher's ids are renumbered to
//! `ExtIds::FORWARDED` at ingress, and every copy leaves with the ids its
//! subscriber negotiated. A WHEP player (aiortc) makes its own offer — audio
//! level on 2, abs-send-time on 3 — so the forwarded ids must not reach it as
//! they are: it read the 3-byte abs-send-time as a 1-byte audio level, failed
//! to parse the packet and closed its DTLS transport.

mod session_harness;

use std::time::Duration;

use rtp_core::packet::{write_rtp_header, RtpHeader};
use rtp_core::session::{ExtIds, SessionOutput};
use rtp_core::RtpView;

use session_harness::*;

const PUB_TWCC: u8 = 5;
const PUB_ABS: u8 = 9;
const PUB_MID: u8 = 1;
const ABS: [u8; 3] = [0x12, 0x34, 0x56];

/// A one-packet VP8 keyframe carrying mid, transport-cc and abs-send-time.
fn keyframe_packet(i: u16, out: &mut [u8]) -> usize {
    let twcc = i.to_be_bytes();
    let h = write_rtp_header(
        &RtpHeader {
            pt: PT_VP8,
            marker: true,
            seq: 1000 + i,
            ts: u32::from(i) * 3000,
            ssrc: PUB_SSRC,
            csrcs: &[],
            extensions: &[(PUB_MID, b"0"), (PUB_TWCC, &twcc), (PUB_ABS, &ABS)],
        },
        out,
    )
    .expect("header");
    out[h] = 0x10; // S: the frame's first packet
    out[h + 1] = 0x00; // keyframe
    let len = h + 2 + 100;
    out[h + 2..len].fill(0xab);
    len
}

/// Publishes one packet and returns the plain RTP copy that leaves towards a
/// subscriber with `sub_ext`.
fn forwarded_copy(sub_ext: ExtIds) -> Vec<u8> {
    let mut now = t0();
    let (c1, c2) = (addr("127.0.0.1:6001"), addr("127.0.0.1:6002"));
    let (mut s1, mut cl1) = plain_pair(now, c1);
    let (mut s2, _cl2) = plain_pair(now, c2);
    let mut up = up_track(PT_VP8, PT_RTX, PUB_SSRC, PUB_RTX_SSRC);
    up.ext = ExtIds {
        transport_cc: Some(PUB_TWCC),
        abs_send_time: Some(PUB_ABS),
        mid: Some(PUB_MID),
        ..ExtIds::default()
    };
    s1.add_up_track(up).unwrap();
    let mut down_cfg = down_track();
    down_cfg.ext = sub_ext;
    let down = s2.add_down_track(down_cfg).unwrap();

    now += Duration::from_millis(5);
    let mut buf = vec![0u8; 1500];
    let n = keyframe_packet(0, &mut buf);
    let (len, _) = cl1.protect_outgoing(now, &mut buf, n).unwrap();
    let out = s1.handle_datagram(now, c1, &mut buf[..len]).unwrap();
    let SessionOutput::Media { meta, .. } = out else {
        panic!("expected media, got {out:?}");
    };
    let len = meta.len;
    let view = RtpView::parse(&buf[..len]).unwrap();
    let mut slot = vec![0u8; 1500];
    let n = s2
        .forward(now, down, &view, meta, &mut slot, 0u32)
        .unwrap()
        .expect("keyframe forwarded");
    let (h, sent, dest) = s2.poll_paced(now).expect("paced");
    assert_eq!((h, sent, dest), (0, n, c2.into()));
    slot.truncate(n);
    slot
}

#[test]
fn subscriber_that_offered_its_own_ids_reads_them() {
    // aiortc's WHEP offer: mid 1, audio level 2 (audio only), abs-send-time 3, no transport-cc.
    let sub = ExtIds {
        mid: Some(1),
        abs_send_time: Some(3),
        ..ExtIds::default()
    };
    let pkt = forwarded_copy(sub);
    let v = RtpView::parse(&pkt).unwrap();
    assert_eq!(v.extension(3), Some(&ABS[..]), "abs-send-time under id 3");
    for id in [1, 2, 4, PUB_TWCC, PUB_ABS] {
        assert_eq!(v.extension(id), None, "id {id} must not be present");
    }
    assert_eq!(v.ssrc(), DOWN_SSRC);
    assert_eq!(v.payload_type(), PT_DOWN);
}

#[test]
fn subscriber_with_swapped_ids_gets_its_transport_cc() {
    let sub = ExtIds {
        transport_cc: Some(2),
        abs_send_time: Some(3),
        ..ExtIds::default()
    };
    let pkt = forwarded_copy(sub);
    let v = RtpView::parse(&pkt).unwrap();
    assert_eq!(v.extension(3), Some(&ABS[..]));
    // Our own transport-wide sequence number, the session's first.
    assert_eq!(v.extension(2), Some(&[0u8, 0][..]));
}

#[test]
fn subscriber_offered_the_forwarded_ids_gets_them_unchanged() {
    let fwd = ExtIds::FORWARDED;
    let pkt = forwarded_copy(ExtIds {
        mid: Some(1),
        ..fwd
    });
    let v = RtpView::parse(&pkt).unwrap();
    assert_eq!(v.extension(fwd.abs_send_time.unwrap()), Some(&ABS[..]));
    assert_eq!(
        v.extension(fwd.transport_cc.unwrap()).map(<[u8]>::len),
        Some(2)
    );
    assert_eq!(v.extension(1), None, "the publisher's mid is padded out");
}
