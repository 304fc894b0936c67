//! Transport-wide feedback acknowledges every packet that reached the session, not only the
//! media it forwards: a padding-only RTX probe and a packet on an SSRC not learnt yet must be
//! reported received, or the sender's estimator counts them lost and backs off (the simulcast
//! e2e scenario saw Chromium stuck at ~190 kbit/s, sending only its lowest layer).

mod session_harness;

use std::time::Duration;

use rtp_core::bwe::{decode_fci, TwccPacket};
use rtp_core::packet::rtcp::{RtcpCompound, RtcpPacket};
use rtp_core::packet::{write_rtp_header, RtpHeader};

use session_harness::*;

/// A padding-only RTX packet (no OSN) carrying transport-wide sequence `twcc`.
fn rtx_probe(seq: u16, twcc: u16, out: &mut [u8]) -> usize {
    let t = twcc.to_be_bytes();
    let h = write_rtp_header(
        &RtpHeader {
            pt: PT_RTX,
            marker: false,
            seq,
            ts: 0,
            ssrc: PUB_RTX_SSRC,
            csrcs: &[],
            extensions: &[(TWCC_ID, &t)],
        },
        out,
    )
    .expect("header");
    // P bit, then 32 bytes of padding whose last byte is the count.
    out[0] |= 0x20;
    out[h..h + 32].fill(0);
    out[h + 31] = 32;
    h + 32
}

#[test]
fn probes_and_unlearnt_ssrcs_are_acknowledged() {
    let mut now = t0();
    let client = addr("127.0.0.1:6001");
    let (mut server, _) = plain_pair(now, client);
    server
        .add_up_track(up_track(PT_VP8, PT_RTX, PUB_SSRC, PUB_RTX_SSRC))
        .unwrap();
    let mut buf = vec![0u8; 1500];
    // Media 0..5 (transport seq = i), a probe with seq 5, unknown-SSRC media with seq 6.
    for i in 0..5 {
        let n = vp8_packet(i, PUB_SSRC, &mut buf);
        server.handle_datagram(now, client, &mut buf[..n]).unwrap();
        now += Duration::from_millis(2);
    }
    let n = rtx_probe(1, 5, &mut buf);
    server.handle_datagram(now, client, &mut buf[..n]).unwrap();
    now += Duration::from_millis(2);
    let n = vp8_packet(6, 0xDEAD_BEEF, &mut buf);
    assert!(server.handle_datagram(now, client, &mut buf[..n]).is_err());
    assert_eq!(server.stats().rtx_probes_in, 1);

    let mut reported: Vec<TwccPacket> = Vec::new();
    for _ in 0..50 {
        now += Duration::from_millis(20);
        server.handle_timeout(now);
        while let Some((n, _)) = server.poll_transmit(now, &mut buf) {
            for p in RtcpCompound::new(&buf[..n]).flatten() {
                if let RtcpPacket::TransportCc(fb) = p {
                    let mut out = [TwccPacket {
                        seq: 0,
                        arrival_us: None,
                    }; 32];
                    let s = decode_fci(fb.fci, &mut out).unwrap();
                    reported.extend_from_slice(&out[..s.written]);
                }
            }
        }
        if reported.iter().any(|p| p.seq == 6) {
            break;
        }
    }
    for seq in 0..7u16 {
        assert!(
            reported
                .iter()
                .any(|p| p.seq == seq && p.arrival_us.is_some()),
            "transport seq {seq} not acknowledged: {reported:?}"
        );
    }
}
