//! Every packet forwarded to a subscriber that negotiated transport-cc carries
//! our transport-wide sequence number, whatever its publisher put in it.
//!
//! GStreamer's webrtcbin publishes with no header extension at all and aiortc
//! without transport-cc. Before, their packets reached a Chromium viewer with
//! no transport-wide sequence number: Chromium then had nothing to send
//! transport-cc feedback for, fell back to its receive-side estimate and sent
//! a REMB of ~24 kbit/s about 5 s in; the estimate capped at it paused the
//! video, the viewer got audio only and REMB never rose again (issue 20's
//! `gst_*_to_chromium` stall, docs/interop.md).

mod session_harness;

use std::time::Duration;

use rtp_core::packet::{write_rtp_header, RtpHeader};
use rtp_core::session::{ExtIds, SessionOutput};
use rtp_core::RtpView;

use session_harness::*;

const PUB_ABS: u8 = 2;
const ABS: [u8; 3] = [0x12, 0x34, 0x56];

/// Packet `i` of a VP8 stream of one-packet keyframes, with the extensions `ext`.
fn packet(i: u16, ext: &[(u8, &[u8])], out: &mut [u8]) -> usize {
    let h = write_rtp_header(
        &RtpHeader {
            pt: PT_VP8,
            marker: true,
            seq: 1000 + i,
            ts: u32::from(i) * 3000,
            ssrc: PUB_SSRC,
            csrcs: &[],
            extensions: ext,
        },
        out,
    )
    .expect("header");
    out[h] = 0x10; // S: the frame's first packet
    out[h + 1] = 0x00; // keyframe
    let len = h + 2 + 200;
    for (k, b) in out[h + 2..len].iter_mut().enumerate() {
        *b = (k as u16 ^ i) as u8;
    }
    len
}

/// Publishes `count` packets with the publisher's extensions `pub_ext` (ids as
/// negotiated in `up_ext`) and returns the plain RTP copies that leave towards a
/// subscriber with `sub_ext`, then one retransmission of the first.
fn forwarded(
    up_ext: ExtIds,
    pub_ext: &[(u8, &[u8])],
    sub_ext: ExtIds,
    count: u16,
) -> (Vec<Vec<u8>>, Vec<u8>) {
    let mut now = t0();
    let (c1, c2) = (addr("127.0.0.1:6001"), addr("127.0.0.1:6002"));
    let (mut s1, mut cl1) = plain_pair(now, c1);
    let (mut s2, _cl2) = plain_pair(now, c2);
    let mut up = up_track(PT_VP8, PT_RTX, PUB_SSRC, PUB_RTX_SSRC);
    up.ext = up_ext;
    s1.add_up_track(up).unwrap();
    let mut down_cfg = down_track();
    down_cfg.ext = sub_ext;
    let down = s2.add_down_track(down_cfg).unwrap();

    let mut copies = Vec::new();
    let mut first = None;
    for i in 0..count {
        now += Duration::from_millis(33);
        let mut buf = vec![0u8; 1500];
        let n = packet(i, pub_ext, &mut buf);
        let (len, _) = cl1.protect_outgoing(now, &mut buf, n).unwrap();
        let out = s1.handle_datagram(now, c1, &mut buf[..len]).unwrap();
        let SessionOutput::Media { meta, .. } = out else {
            panic!("expected media, got {out:?}");
        };
        buf.truncate(meta.len);
        let view = RtpView::parse(&buf).unwrap();
        let mut slot = vec![0u8; 1500];
        let n = s2
            .forward(now, down, &view, meta, &mut slot, 0u32)
            .unwrap()
            .expect("keyframe forwarded");
        while s2.poll_paced(now).is_some() {}
        slot.truncate(n);
        copies.push(slot);
        first.get_or_insert(buf);
    }
    let orig = first.expect("one packet");
    let view = RtpView::parse(&orig).unwrap();
    let seq = RtpView::parse(&copies[0]).unwrap().seq();
    let mut slot = vec![0u8; 1500];
    now += Duration::from_millis(100);
    let n = s2
        .retransmit(now, down, seq, &view, &mut slot, 1u32)
        .unwrap()
        .expect("retransmitted");
    slot.truncate(n);
    (copies, slot)
}

fn chromium_ids() -> ExtIds {
    ExtIds {
        mid: Some(1),
        ..ExtIds::FORWARDED
    }
}

fn twcc_of(pkt: &[u8]) -> Option<u16> {
    let id = ExtIds::FORWARDED.transport_cc.unwrap();
    let v = RtpView::parse(pkt).unwrap();
    v.extension(id)
        .map(|b| u16::from_be_bytes(b.try_into().expect("2 bytes")))
}

fn assert_numbered(copies: &[Vec<u8>], rtx: &[u8], payload_len: usize) {
    let seqs: Vec<_> = copies.iter().map(|c| twcc_of(c)).collect();
    let want: Vec<_> = (0..copies.len() as u16).map(Some).collect();
    assert_eq!(seqs, want, "one transport-wide seq per forwarded packet");
    assert_eq!(twcc_of(rtx), Some(copies.len() as u16), "and per resend");
    for c in copies {
        let v = RtpView::parse(c).unwrap();
        assert_eq!(v.ssrc(), DOWN_SSRC);
        assert_eq!(v.payload().len(), payload_len, "payload intact");
    }
}

/// GStreamer webrtcbin 1.22: no header extension in its packets.
#[test]
fn publisher_without_extensions() {
    let up_ext = ExtIds::default();
    let (copies, rtx) = forwarded(up_ext, &[], chromium_ids(), 5);
    assert_numbered(&copies, &rtx, 202);
}

/// aiortc: abs-send-time (and mid), no transport-cc.
#[test]
fn publisher_with_abs_send_time_only() {
    let up_ext = ExtIds {
        abs_send_time: Some(PUB_ABS),
        mid: Some(1),
        ..ExtIds::default()
    };
    let (copies, rtx) = forwarded(up_ext, &[(1, b"0"), (PUB_ABS, &ABS)], chromium_ids(), 5);
    assert_numbered(&copies, &rtx, 202);
    let abs = ExtIds::FORWARDED.abs_send_time.unwrap();
    for c in &copies {
        assert_eq!(RtpView::parse(c).unwrap().extension(abs), Some(&ABS[..]));
    }
}

/// A subscriber without transport-cc (aiortc, GStreamer players) gets no element added.
#[test]
fn subscriber_without_transport_cc_gets_none() {
    let (copies, _) = forwarded(ExtIds::default(), &[], ExtIds::default(), 3);
    for c in &copies {
        let v = RtpView::parse(c).unwrap();
        assert!(!v.has_extension(), "no block was added");
    }
}
