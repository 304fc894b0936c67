//! RTCP packet writers. Each writes one packet at the start of `out` and
//! returns its length; a compound is several calls into consecutive slices.
//! Nothing allocates: sizes are computed first, then bytes are written once.

use super::{
    ReportBlock, RtcpError, SenderInfo, FMT_AFB, FMT_FIR, FMT_NACK, FMT_PLI, FMT_TRANSPORT_CC,
    PT_BYE, PT_PSFB, PT_RR, PT_RTPFB, PT_SDES, PT_SR, SDES_CNAME,
};

/// Largest REMB mantissa (18 bits).
const REMB_MANTISSA_MAX: u64 = (1 << 18) - 1;

/// Check room for a `total`-byte packet (a multiple of 4) and write its common
/// header; returns the packet's slice of `out`.
fn start(out: &mut [u8], count: u8, pt: u8, total: usize) -> Result<&mut [u8], RtcpError> {
    if count > 31 {
        return Err(RtcpError::TooManyItems);
    }
    let words = total / 4 - 1;
    if words > u16::MAX as usize {
        return Err(RtcpError::TooManyItems);
    }
    let pkt = out.get_mut(..total).ok_or(RtcpError::BufferTooSmall)?;
    pkt[0] = 0x80 | count;
    pkt[1] = pt;
    pkt[2..4].copy_from_slice(&(words as u16).to_be_bytes());
    Ok(pkt)
}

fn put32(out: &mut [u8], o: usize, v: u32) {
    out[o..o + 4].copy_from_slice(&v.to_be_bytes());
}

fn write_blocks(out: &mut [u8], blocks: &[ReportBlock]) {
    for (i, b) in blocks.iter().enumerate() {
        b.write(&mut out[i * ReportBlock::LEN..]);
    }
}

/// Write a sender report with up to 31 report blocks.
pub fn write_sr(
    out: &mut [u8],
    ssrc: u32,
    info: &SenderInfo,
    blocks: &[ReportBlock],
) -> Result<usize, RtcpError> {
    if blocks.len() > 31 {
        return Err(RtcpError::TooManyItems);
    }
    let total = 28 + ReportBlock::LEN * blocks.len();
    let p = start(out, blocks.len() as u8, PT_SR, total)?;
    put32(p, 4, ssrc);
    put32(p, 8, (info.ntp >> 32) as u32);
    put32(p, 12, info.ntp as u32);
    put32(p, 16, info.rtp_ts);
    put32(p, 20, info.packet_count);
    put32(p, 24, info.octet_count);
    write_blocks(&mut p[28..], blocks);
    Ok(total)
}

/// Write a receiver report with up to 31 report blocks.
pub fn write_rr(out: &mut [u8], ssrc: u32, blocks: &[ReportBlock]) -> Result<usize, RtcpError> {
    if blocks.len() > 31 {
        return Err(RtcpError::TooManyItems);
    }
    let total = 8 + ReportBlock::LEN * blocks.len();
    let p = start(out, blocks.len() as u8, PT_RR, total)?;
    put32(p, 4, ssrc);
    write_blocks(&mut p[8..], blocks);
    Ok(total)
}

/// Write an SDES packet with one chunk holding one CNAME item.
pub fn write_sdes_cname(out: &mut [u8], ssrc: u32, cname: &[u8]) -> Result<usize, RtcpError> {
    if cname.len() > 255 {
        return Err(RtcpError::ValueTooLong);
    }
    // SSRC, type, length, text, then at least one null up to a word boundary.
    let chunk = 4 + (2 + cname.len() + 1).div_ceil(4) * 4;
    let total = 4 + chunk;
    let p = start(out, 1, PT_SDES, total)?;
    put32(p, 4, ssrc);
    p[8] = SDES_CNAME;
    p[9] = cname.len() as u8;
    p[10..10 + cname.len()].copy_from_slice(cname);
    p[10 + cname.len()..].fill(0);
    Ok(total)
}

/// Write a BYE for up to 31 sources with an optional reason (at most 255 bytes).
pub fn write_bye(out: &mut [u8], ssrcs: &[u32], reason: Option<&[u8]>) -> Result<usize, RtcpError> {
    if ssrcs.len() > 31 {
        return Err(RtcpError::TooManyItems);
    }
    let reason_len = match reason {
        Some(r) if r.len() > 255 => return Err(RtcpError::ValueTooLong),
        Some(r) => (1 + r.len()).div_ceil(4) * 4,
        None => 0,
    };
    let total = 4 + 4 * ssrcs.len() + reason_len;
    let p = start(out, ssrcs.len() as u8, PT_BYE, total)?;
    for (i, &s) in ssrcs.iter().enumerate() {
        put32(p, 4 + 4 * i, s);
    }
    if let Some(r) = reason {
        let o = 4 + 4 * ssrcs.len();
        p[o] = r.len() as u8;
        p[o + 1..o + 1 + r.len()].copy_from_slice(r);
        p[o + 1 + r.len()..].fill(0);
    }
    Ok(total)
}

/// Packs lost sequence numbers into `(pid, blp)` pairs in input order: a seq
/// within 1..=16 after the current PID sets a BLP bit, anything else opens a
/// new entry. Sorted input packs densest; any input round-trips as a set.
struct NackPacker<'a> {
    seqs: &'a [u16],
}

impl Iterator for NackPacker<'_> {
    type Item = (u16, u16);
    fn next(&mut self) -> Option<(u16, u16)> {
        let (&pid, rest) = self.seqs.split_first()?;
        let mut blp = 0u16;
        let mut used = 0;
        for &s in rest {
            let d = s.wrapping_sub(pid);
            match d {
                0 => {}
                1..=16 => blp |= 1 << (d - 1),
                _ => break,
            }
            used += 1;
        }
        self.seqs = &rest[used..];
        Some((pid, blp))
    }
}

/// Write a Generic NACK for `lost_seqs` (at least one), packed into PID+BLP entries.
pub fn write_nack(
    out: &mut [u8],
    sender: u32,
    media: u32,
    lost_seqs: &[u16],
) -> Result<usize, RtcpError> {
    if lost_seqs.is_empty() {
        return Err(RtcpError::NoItems);
    }
    let entries = NackPacker { seqs: lost_seqs }.count();
    let total = 12 + 4 * entries;
    let p = start(out, FMT_NACK, PT_RTPFB, total)?;
    put32(p, 4, sender);
    put32(p, 8, media);
    for (i, (pid, blp)) in (NackPacker { seqs: lost_seqs }).enumerate() {
        let o = 12 + 4 * i;
        p[o..o + 2].copy_from_slice(&pid.to_be_bytes());
        p[o + 2..o + 4].copy_from_slice(&blp.to_be_bytes());
    }
    Ok(total)
}

/// Write a Picture Loss Indication.
pub fn write_pli(out: &mut [u8], sender: u32, media: u32) -> Result<usize, RtcpError> {
    let p = start(out, FMT_PLI, PT_PSFB, 12)?;
    put32(p, 4, sender);
    put32(p, 8, media);
    Ok(12)
}

/// Write a Full Intra Request with `(target ssrc, command seq nr)` entries (at least one).
pub fn write_fir(out: &mut [u8], sender: u32, entries: &[(u32, u8)]) -> Result<usize, RtcpError> {
    if entries.is_empty() {
        return Err(RtcpError::NoItems);
    }
    let total = 12 + 8 * entries.len();
    let p = start(out, FMT_FIR, PT_PSFB, total)?;
    put32(p, 4, sender);
    // RFC 5104 §4.3.1.2: the media source SSRC field is unused and set to 0.
    put32(p, 8, 0);
    for (i, &(ssrc, seq)) in entries.iter().enumerate() {
        let o = 12 + 8 * i;
        put32(p, o, ssrc);
        p[o + 4] = seq;
        p[o + 5..o + 8].fill(0);
    }
    Ok(total)
}

/// Write a REMB for `bitrate` bps applying to up to 255 `ssrcs`. The
/// smallest exponent whose mantissa fits 18 bits is used, so the encoded
/// value is `bitrate` rounded down to the mantissa's precision.
pub fn write_remb(
    out: &mut [u8],
    sender: u32,
    bitrate: u64,
    ssrcs: &[u32],
) -> Result<usize, RtcpError> {
    if ssrcs.len() > 255 {
        return Err(RtcpError::TooManyItems);
    }
    let mut exp = 0u32;
    while bitrate >> exp > REMB_MANTISSA_MAX {
        exp += 1;
    }
    let mantissa = (bitrate >> exp) as u32;
    let total = 20 + 4 * ssrcs.len();
    let p = start(out, FMT_AFB, PT_PSFB, total)?;
    put32(p, 4, sender);
    put32(p, 8, 0);
    p[12..16].copy_from_slice(b"REMB");
    put32(p, 16, ((ssrcs.len() as u32) << 24) | (exp << 18) | mantissa);
    for (i, &s) in ssrcs.iter().enumerate() {
        put32(p, 20 + 4 * i, s);
    }
    Ok(total)
}

/// Write the 12-byte header of a feedback packet whose FCI of `fci_len` bytes
/// the caller writes at `out[12..12 + fci_len]` afterwards. When `fci_len` is
/// not a multiple of 4 the packet is padded (P bit, RFC 3550 §6.4.1) and the
/// padding bytes at the tail are written here. Returns the full packet length.
fn write_feedback_header(
    out: &mut [u8],
    pt: u8,
    fmt: u8,
    sender: u32,
    media: u32,
    fci_len: usize,
) -> Result<usize, RtcpError> {
    if fmt > 31 {
        return Err(RtcpError::BadFormat);
    }
    // The length field counts 32-bit words minus one in 16 bits.
    if fci_len > 4 * (u16::MAX as usize - 2) {
        return Err(RtcpError::TooManyItems);
    }
    let total = 12 + fci_len.div_ceil(4) * 4;
    let pad = total - 12 - fci_len;
    let p = start(out, fmt, pt, total)?;
    if pad > 0 {
        p[0] |= 0x20;
        p[12 + fci_len..total].fill(0);
        p[total - 1] = pad as u8;
    }
    put32(p, 4, sender);
    put32(p, 8, media);
    Ok(total)
}

/// Write a transport-cc feedback header for an FCI of `fci_len` bytes that the
/// caller (the bwe module) encodes in place at `out[12..12 + fci_len]`.
/// Padding, if needed, is already written. Returns the full packet length.
pub fn write_transport_cc_header(
    out: &mut [u8],
    sender: u32,
    media: u32,
    fci_len: usize,
) -> Result<usize, RtcpError> {
    write_feedback_header(out, PT_RTPFB, FMT_TRANSPORT_CC, sender, media, fci_len)
}

/// Write a generic feedback packet (RFC 4585 §6.1) of type `pt` (205/206) and
/// format `fmt` with the given FCI; an FCI not a multiple of 4 is padded.
pub fn write_feedback(
    out: &mut [u8],
    pt: u8,
    fmt: u8,
    sender: u32,
    media: u32,
    fci: &[u8],
) -> Result<usize, RtcpError> {
    let total = write_feedback_header(out, pt, fmt, sender, media, fci.len())?;
    out[12..12 + fci.len()].copy_from_slice(fci);
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::super::{RtcpCompound, RtcpPacket};
    use super::*;

    fn one(buf: &[u8]) -> RtcpPacket<'_> {
        let mut it = RtcpCompound::new(buf);
        let p = it.next().unwrap().unwrap();
        assert!(it.next().is_none());
        p
    }

    fn block(i: u32) -> ReportBlock {
        ReportBlock {
            ssrc: i,
            fraction_lost: i as u8,
            cumulative_lost: -(i as i32),
            ext_highest_seq: 0x1_0000 + i,
            jitter: 3 * i,
            lsr: 0xabcd_0000 + i,
            dlsr: 65536 * i,
        }
    }

    #[test]
    fn sr_rr_round_trip() {
        let mut buf = [0u8; 1500];
        let blocks = [block(1), block(2)];
        let info = SenderInfo {
            ntp: 0xe000_0001_8000_0000,
            rtp_ts: 90000,
            packet_count: 10,
            octet_count: 12000,
        };
        let n = write_sr(&mut buf, 0x55, &info, &blocks).unwrap();
        assert_eq!(n, 28 + 48);
        let RtcpPacket::SenderReport(sr) = one(&buf[..n]) else {
            panic!("not an SR")
        };
        assert_eq!(sr.ssrc(), 0x55);
        assert_eq!(sr.info(), info);
        assert_eq!(sr.report_blocks().collect::<Vec<_>>(), blocks);

        let n = write_rr(&mut buf, 0x66, &blocks[..1]).unwrap();
        let RtcpPacket::ReceiverReport(rr) = one(&buf[..n]) else {
            panic!("not an RR")
        };
        assert_eq!(rr.ssrc(), 0x66);
        assert_eq!(rr.report_blocks().collect::<Vec<_>>(), &blocks[..1]);
        let n = write_rr(&mut buf, 0x66, &[]).unwrap();
        assert_eq!(n, 8);
        assert_eq!(
            write_rr(&mut buf, 1, &[block(0); 32]),
            Err(RtcpError::TooManyItems)
        );
        assert_eq!(
            write_sr(&mut buf[..30], 1, &info, &blocks),
            Err(RtcpError::BufferTooSmall)
        );
    }

    #[test]
    fn sdes_bye_round_trip() {
        let mut buf = [0u8; 600];
        for name in [&b""[..], b"a", b"ab", b"abc", b"abcd", &[b'x'; 255]] {
            let n = write_sdes_cname(&mut buf, 7, name).unwrap();
            assert_eq!(n % 4, 0);
            let RtcpPacket::Sdes(s) = one(&buf[..n]) else {
                panic!("not SDES")
            };
            let c: Vec<_> = s.chunks().collect();
            assert_eq!(c.len(), 1);
            assert_eq!((c[0].ssrc, c[0].cname()), (7, Some(name)));
        }
        assert_eq!(
            write_sdes_cname(&mut buf, 7, &[0; 256]),
            Err(RtcpError::ValueTooLong)
        );
        for reason in [None, Some(&b""[..]), Some(b"bye"), Some(b"going")] {
            let n = write_bye(&mut buf, &[1, 2, 3], reason).unwrap();
            let RtcpPacket::Bye(b) = one(&buf[..n]) else {
                panic!("not BYE")
            };
            assert_eq!(b.ssrcs().collect::<Vec<_>>(), vec![1, 2, 3]);
            assert_eq!(b.reason(), reason);
        }
    }

    fn nack_round_trip(seqs: &[u16]) -> (usize, Vec<u16>) {
        let mut buf = [0u8; 1500];
        let n = write_nack(&mut buf, 1, 2, seqs).unwrap();
        let RtcpPacket::Nack(nk) = one(&buf[..n]) else {
            panic!("not NACK")
        };
        assert_eq!((nk.sender_ssrc, nk.media_ssrc), (1, 2));
        (nk.entries().count(), nk.lost_seqs().collect())
    }

    #[test]
    fn nack_packing_edges() {
        // PID + 16 following fit one entry; the 18th opens another.
        let seqs: Vec<u16> = (0..18).map(|i| 65530u16.wrapping_add(i)).collect();
        assert_eq!(nack_round_trip(&seqs), (2, seqs.clone()));
        // Wrap 65535 -> 0 inside one BLP.
        assert_eq!(nack_round_trip(&[65535, 0, 15]), (1, vec![65535, 0, 15]));
        // Gap of exactly 17 needs a second entry; duplicates are dropped.
        assert_eq!(nack_round_trip(&[10, 10, 27]), (2, vec![10, 27]));
        assert_eq!(nack_round_trip(&[5]), (1, vec![5]));
        let mut buf = [0u8; 64];
        assert_eq!(write_nack(&mut buf, 1, 2, &[]), Err(RtcpError::NoItems));
        assert_eq!(
            write_nack(&mut buf[..15], 1, 2, &[1]),
            Err(RtcpError::BufferTooSmall)
        );
    }

    #[test]
    fn pli_fir_remb_round_trip() {
        let mut buf = [0u8; 256];
        let n = write_pli(&mut buf, 3, 4).unwrap();
        let RtcpPacket::Pli(p) = one(&buf[..n]) else {
            panic!("not PLI")
        };
        assert_eq!((p.sender_ssrc, p.media_ssrc), (3, 4));

        let n = write_fir(&mut buf, 3, &[(10, 1), (11, 255)]).unwrap();
        let RtcpPacket::Fir(f) = one(&buf[..n]) else {
            panic!("not FIR")
        };
        assert_eq!(f.sender_ssrc, 3);
        assert_eq!(f.entries().collect::<Vec<_>>(), vec![(10, 1), (11, 255)]);
        assert_eq!(write_fir(&mut buf, 3, &[]), Err(RtcpError::NoItems));

        for rate in [0u64, 1, 262_143, 262_144, 2_500_000, u64::MAX] {
            let n = write_remb(&mut buf, 3, rate, &[100, 200]).unwrap();
            let RtcpPacket::Remb(r) = one(&buf[..n]) else {
                panic!("not REMB")
            };
            assert_eq!(r.sender_ssrc, 3);
            assert_eq!(r.ssrcs().collect::<Vec<_>>(), vec![100, 200]);
            assert!(r.bitrate <= rate);
            // Rounded down to 18 significant bits at most.
            assert!(rate - r.bitrate <= rate >> 17, "{rate} -> {}", r.bitrate);
        }
    }

    #[test]
    fn feedback_and_transport_cc_padding() {
        let mut buf = [0u8; 64];
        for len in 0usize..9 {
            let fci: Vec<u8> = (1..=len as u8).collect();
            let n = write_feedback(&mut buf, PT_RTPFB, FMT_TRANSPORT_CC, 5, 6, &fci).unwrap();
            assert_eq!(n, 12 + len.div_ceil(4) * 4);
            let RtcpPacket::TransportCc(t) = one(&buf[..n]) else {
                panic!("not transport-cc")
            };
            assert_eq!((t.sender_ssrc, t.media_ssrc, t.fci), (5, 6, &fci[..]));
        }
        let n = write_transport_cc_header(&mut buf, 5, 6, 3).unwrap();
        buf[12..15].copy_from_slice(&[9, 8, 7]);
        let RtcpPacket::TransportCc(t) = one(&buf[..n]) else {
            panic!("not transport-cc")
        };
        assert_eq!(t.fci, &[9, 8, 7]);
        let n = write_feedback(&mut buf, PT_PSFB, 9, 5, 6, &[1, 2, 3, 4]).unwrap();
        assert!(matches!(
            one(&buf[..n]),
            RtcpPacket::Unknown {
                pt: PT_PSFB,
                fmt: 9,
                ..
            }
        ));
        assert_eq!(
            write_feedback(&mut buf, PT_PSFB, 32, 5, 6, &[]),
            Err(RtcpError::BadFormat)
        );
    }
}
