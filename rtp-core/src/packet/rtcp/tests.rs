//! Compound-level tests: hand-built datagrams from the RFC 3550 layouts,
//! framing errors, and property tests for panics and round trips.

use super::*;
use proptest::prelude::*;

/// SR (one report block) followed by SDES CNAME "user@hst", byte by byte.
fn sr_sdes() -> Vec<u8> {
    let mut d = vec![
        0x81, 200, 0x00, 0x0c, // V=2 RC=1, PT=SR, length 12 words
        0x12, 0x34, 0x56, 0x78, // SSRC of sender
        0xe4, 0xa3, 0xb2, 0xc1, // NTP msw
        0x80, 0x00, 0x00, 0x00, // NTP lsw
        0x00, 0x01, 0x5f, 0x90, // RTP timestamp 90000
        0x00, 0x00, 0x00, 0x0a, // packet count
        0x00, 0x00, 0x17, 0x70, // octet count 6000
        0x9a, 0xbc, 0xde, 0xf0, // SSRC_1
        0x40, 0xff, 0xff, 0xfe, // fraction lost 64, cumulative -2
        0x00, 0x01, 0xff, 0xfe, // extended highest seq
        0x00, 0x00, 0x00, 0x20, // jitter
        0xb2, 0xc1, 0x80, 0x00, // LSR
        0x00, 0x01, 0x00, 0x00, // DLSR 1 s
    ];
    d.extend_from_slice(&[
        0x81, 202, 0x00, 0x04, // V=2 SC=1, PT=SDES, length 4 words
        0x12, 0x34, 0x56, 0x78, // SSRC
        1, 8, b'u', b's', b'e', b'r', b'@', b'h', b's', b't', 0, 0, // CNAME, end, pad
    ]);
    d
}

#[test]
fn hand_built_sr_sdes_compound() {
    let d = sr_sdes();
    let pkts: Vec<_> = RtcpCompound::new(&d).collect::<Result<_, _>>().unwrap();
    assert_eq!(pkts.len(), 2);
    let RtcpPacket::SenderReport(sr) = pkts[0] else {
        panic!("first is not SR")
    };
    assert_eq!(sr.ssrc(), 0x1234_5678);
    assert_eq!(sr.ntp(), 0xe4a3_b2c1_8000_0000);
    assert_eq!(sr.rtp_ts(), 90000);
    assert_eq!(sr.packet_count(), 10);
    assert_eq!(sr.octet_count(), 6000);
    let blocks: Vec<_> = sr.report_blocks().collect();
    assert_eq!(
        blocks,
        vec![ReportBlock {
            ssrc: 0x9abc_def0,
            fraction_lost: 64,
            cumulative_lost: -2,
            ext_highest_seq: 0x1_fffe,
            jitter: 32,
            lsr: 0xb2c1_8000,
            dlsr: 65536,
        }]
    );
    let RtcpPacket::Sdes(s) = pkts[1] else {
        panic!("second is not SDES")
    };
    let chunk = s.chunks().next().unwrap();
    assert_eq!(chunk.ssrc, 0x1234_5678);
    assert_eq!(chunk.cname(), Some(&b"user@hst"[..]));
}

#[test]
fn built_compound_parses_in_order() {
    let mut buf = [0u8; 256];
    let mut n = write_rr(&mut buf, 1, &[]).unwrap();
    n += write_sdes_cname(&mut buf[n..], 1, b"cname").unwrap();
    n += write_nack(&mut buf[n..], 1, 2, &[100, 101]).unwrap();
    n += write_pli(&mut buf[n..], 1, 2).unwrap();
    n += write_remb(&mut buf[n..], 1, 1_000_000, &[2]).unwrap();
    n += write_bye(&mut buf[n..], &[1], None).unwrap();
    let kinds: Vec<_> = RtcpCompound::new(&buf[..n])
        .map(|p| match p.unwrap() {
            RtcpPacket::ReceiverReport(_) => "rr",
            RtcpPacket::Sdes(_) => "sdes",
            RtcpPacket::Nack(_) => "nack",
            RtcpPacket::Pli(_) => "pli",
            RtcpPacket::Remb(_) => "remb",
            RtcpPacket::Bye(_) => "bye",
            _ => "other",
        })
        .collect();
    assert_eq!(kinds, ["rr", "sdes", "nack", "pli", "remb", "bye"]);
}

#[test]
fn padding_and_framing_errors() {
    // RR with no blocks plus 4 bytes of padding (P bit, count 4).
    let rr = [0xa0, 201, 0, 2, 0, 0, 0, 9, 0, 0, 0, 4];
    let mut it = RtcpCompound::new(&rr);
    assert!(matches!(it.next(), Some(Ok(RtcpPacket::ReceiverReport(r))) if r.ssrc() == 9));
    assert!(it.next().is_none());

    let first_err = |d: &[u8]| RtcpCompound::new(d).find_map(Result::err);
    let mut bad = rr;
    bad[11] = 0;
    assert_eq!(first_err(&bad), Some(RtcpError::BadPadding));
    bad[11] = 9;
    assert_eq!(first_err(&bad), Some(RtcpError::BadPadding));
    let mut bad = rr;
    bad[0] = 0x60;
    assert_eq!(first_err(&bad), Some(RtcpError::BadVersion));
    let mut bad = rr;
    bad[3] = 3;
    assert_eq!(first_err(&bad), Some(RtcpError::BadLength));
    assert_eq!(first_err(&rr[..3]), Some(RtcpError::TooShort));

    // An error stops iteration even if bytes follow.
    let mut d = sr_sdes();
    d[1 + 52] = 202;
    d[52] = 0x40;
    let res: Vec<_> = RtcpCompound::new(&d).collect();
    assert_eq!(res.len(), 2);
    assert!(res[0].is_ok());
    assert_eq!(res[1].unwrap_err(), RtcpError::BadVersion);

    // Unknown types pass through with their body.
    let x = [0x83, 210, 0, 1, 1, 2, 3, 4];
    assert!(matches!(
        RtcpCompound::new(&x).next(),
        Some(Ok(RtcpPacket::Unknown {
            pt: 210,
            fmt: 3,
            body: [1, 2, 3, 4]
        }))
    ));
    assert_eq!(RtcpCompound::new(&[]).count(), 0);
}

/// Touch every accessor and iterator so a panic anywhere would surface.
fn exercise(p: RtcpPacket<'_>) -> usize {
    match p {
        RtcpPacket::SenderReport(s) => s.report_blocks().count() + s.info().ntp as usize % 2,
        RtcpPacket::ReceiverReport(r) => r.report_blocks().count(),
        RtcpPacket::Sdes(s) => s.chunks().map(|c| c.items().count()).sum(),
        RtcpPacket::Bye(b) => b.ssrcs().count() + b.reason().map_or(0, <[u8]>::len),
        RtcpPacket::Nack(n) => n.lost_seqs().count(),
        RtcpPacket::Fir(f) => f.entries().count(),
        RtcpPacket::Remb(r) => r.ssrcs().count(),
        RtcpPacket::TransportCc(t) => t.fci.len(),
        RtcpPacket::App(a) => a.data.len(),
        _ => 0,
    }
}

proptest! {
    #[test]
    fn random_bytes_never_panic(d in proptest::collection::vec(any::<u8>(), 0..200)) {
        for p in RtcpCompound::new(&d).flatten() {
            exercise(p);
        }
    }

    #[test]
    fn mutated_valid_compound_never_panics(
        flips in proptest::collection::vec((0usize..72, any::<u8>()), 1..6),
        cut in 0usize..73,
    ) {
        let mut d = sr_sdes();
        for (i, v) in flips {
            d[i] = v;
        }
        d.truncate(cut);
        for p in RtcpCompound::new(&d).flatten() {
            exercise(p);
        }
    }

    #[test]
    fn nack_round_trip(set in proptest::collection::btree_set(any::<u16>(), 1..100)) {
        let seqs: Vec<u16> = set.iter().copied().collect();
        let mut buf = [0u8; 1024];
        let n = write_nack(&mut buf, 1, 2, &seqs).unwrap();
        let Some(Ok(RtcpPacket::Nack(nk))) = RtcpCompound::new(&buf[..n]).next() else {
            panic!("not a NACK");
        };
        let got: std::collections::BTreeSet<u16> = nk.lost_seqs().collect();
        prop_assert_eq!(got, set);
        prop_assert_eq!(nk.lost_seqs().count(), seqs.len());
    }

    #[test]
    fn nack_round_trip_wrapping_window(start in any::<u16>(), offs in proptest::collection::btree_set(0u16..300, 1..60)) {
        // Sorted in wrap-around order starting at `start`, as a NACK generator produces.
        let seqs: Vec<u16> = offs.iter().map(|&o| start.wrapping_add(o)).collect();
        let mut buf = [0u8; 1024];
        let n = write_nack(&mut buf, 1, 2, &seqs).unwrap();
        let Some(Ok(RtcpPacket::Nack(nk))) = RtcpCompound::new(&buf[..n]).next() else {
            panic!("not a NACK");
        };
        prop_assert_eq!(nk.lost_seqs().collect::<Vec<_>>(), seqs);
    }

    #[test]
    fn remb_round_trip(rate in any::<u64>(), small in 0u64..(1 << 18)) {
        let mut buf = [0u8; 64];
        for r in [rate, small] {
            let n = write_remb(&mut buf, 1, r, &[7]).unwrap();
            let Some(Ok(RtcpPacket::Remb(remb))) = RtcpCompound::new(&buf[..n]).next() else {
                panic!("not a REMB");
            };
            prop_assert!(remb.bitrate <= r);
            prop_assert!(r - remb.bitrate <= r >> 17);
            if r < (1 << 18) {
                prop_assert_eq!(remb.bitrate, r);
            }
        }
    }
}
