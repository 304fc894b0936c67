//! Sender and receiver reports and their report blocks (RFC 3550 §6.4).

use super::{be32, RtcpError};

const BLOCK_LEN: usize = 24;
const SENDER_INFO_LEN: usize = 20;

/// One reception report block (RFC 3550 §6.4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReportBlock {
    /// Source this block reports on.
    pub ssrc: u32,
    /// Fraction lost since the previous report, in 1/256 units.
    pub fraction_lost: u8,
    /// Cumulative packets lost; 24-bit signed on the wire (writers clamp).
    pub cumulative_lost: i32,
    /// Extended highest sequence number received.
    pub ext_highest_seq: u32,
    /// Interarrival jitter in timestamp units.
    pub jitter: u32,
    /// Middle 32 bits of the last SR's NTP timestamp.
    pub lsr: u32,
    /// Delay since the last SR, in 1/65536 s.
    pub dlsr: u32,
}

impl ReportBlock {
    /// Wire length of one block.
    pub const LEN: usize = BLOCK_LEN;

    fn read(b: &[u8]) -> Self {
        let lost24 = be32(b, 4) & 0x00ff_ffff;
        // Sign-extend the 24-bit two's complement count.
        let cumulative_lost = ((lost24 << 8) as i32) >> 8;
        Self {
            ssrc: be32(b, 0),
            fraction_lost: b.get(4).copied().unwrap_or(0),
            cumulative_lost,
            ext_highest_seq: be32(b, 8),
            jitter: be32(b, 12),
            lsr: be32(b, 16),
            dlsr: be32(b, 20),
        }
    }

    /// Write the block into the first 24 bytes of `out` (caller checked the length).
    pub(crate) fn write(&self, out: &mut [u8]) {
        let lost = self.cumulative_lost.clamp(-0x80_0000, 0x7f_ffff) as u32 & 0x00ff_ffff;
        out[0..4].copy_from_slice(&self.ssrc.to_be_bytes());
        out[4..8].copy_from_slice(&(((self.fraction_lost as u32) << 24) | lost).to_be_bytes());
        out[8..12].copy_from_slice(&self.ext_highest_seq.to_be_bytes());
        out[12..16].copy_from_slice(&self.jitter.to_be_bytes());
        out[16..20].copy_from_slice(&self.lsr.to_be_bytes());
        out[20..24].copy_from_slice(&self.dlsr.to_be_bytes());
    }
}

/// Iterator over the report blocks of an SR or RR.
#[derive(Debug, Clone)]
pub struct ReportBlocks<'a> {
    data: &'a [u8],
}

impl Iterator for ReportBlocks<'_> {
    type Item = ReportBlock;
    fn next(&mut self) -> Option<ReportBlock> {
        let (head, tail) = self.data.split_first_chunk::<BLOCK_LEN>()?;
        self.data = tail;
        Some(ReportBlock::read(head))
    }
}

/// The sender-info part of an SR (RFC 3550 §6.4.1), minus the SSRC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SenderInfo {
    /// 64-bit NTP timestamp of the report.
    pub ntp: u64,
    /// RTP timestamp corresponding to `ntp`.
    pub rtp_ts: u32,
    /// Packets sent since the start of transmission.
    pub packet_count: u32,
    /// Payload octets sent since the start of transmission.
    pub octet_count: u32,
}

/// A validated sender report view.
#[derive(Debug, Clone, Copy)]
pub struct SenderReport<'a> {
    body: &'a [u8],
    count: u8,
}

impl<'a> SenderReport<'a> {
    pub(crate) fn parse(count: u8, body: &'a [u8]) -> Result<Self, RtcpError> {
        // Bytes beyond the blocks are a profile-specific extension: allowed, ignored.
        if body.len() < 4 + SENDER_INFO_LEN + BLOCK_LEN * count as usize {
            return Err(RtcpError::Malformed);
        }
        Ok(Self { body, count })
    }
    /// Sender SSRC.
    pub fn ssrc(&self) -> u32 {
        be32(self.body, 0)
    }
    /// 64-bit NTP timestamp.
    pub fn ntp(&self) -> u64 {
        ((be32(self.body, 4) as u64) << 32) | be32(self.body, 8) as u64
    }
    /// RTP timestamp matching `ntp()`.
    pub fn rtp_ts(&self) -> u32 {
        be32(self.body, 12)
    }
    /// Sender's packet count.
    pub fn packet_count(&self) -> u32 {
        be32(self.body, 16)
    }
    /// Sender's octet count.
    pub fn octet_count(&self) -> u32 {
        be32(self.body, 20)
    }
    /// All sender-info fields at once.
    pub fn info(&self) -> SenderInfo {
        SenderInfo {
            ntp: self.ntp(),
            rtp_ts: self.rtp_ts(),
            packet_count: self.packet_count(),
            octet_count: self.octet_count(),
        }
    }
    /// The reception report blocks.
    pub fn report_blocks(&self) -> ReportBlocks<'a> {
        let start = 4 + SENDER_INFO_LEN;
        ReportBlocks {
            data: self
                .body
                .get(start..start + BLOCK_LEN * self.count as usize)
                .unwrap_or(&[]),
        }
    }
}

/// A validated receiver report view.
#[derive(Debug, Clone, Copy)]
pub struct ReceiverReport<'a> {
    body: &'a [u8],
    count: u8,
}

impl<'a> ReceiverReport<'a> {
    pub(crate) fn parse(count: u8, body: &'a [u8]) -> Result<Self, RtcpError> {
        if body.len() < 4 + BLOCK_LEN * count as usize {
            return Err(RtcpError::Malformed);
        }
        Ok(Self { body, count })
    }
    /// Reporter SSRC.
    pub fn ssrc(&self) -> u32 {
        be32(self.body, 0)
    }
    /// The reception report blocks.
    pub fn report_blocks(&self) -> ReportBlocks<'a> {
        ReportBlocks {
            data: self
                .body
                .get(4..4 + BLOCK_LEN * self.count as usize)
                .unwrap_or(&[]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cumulative_lost_sign_extends_and_clamps() {
        let mut b = [0u8; 24];
        for (lost, wire) in [
            (-1, -1),
            (5, 5),
            (-0x80_0000, -0x80_0000),
            (i32::MIN, -0x80_0000),
            (i32::MAX, 0x7f_ffff),
        ] {
            let blk = ReportBlock {
                ssrc: 9,
                fraction_lost: 200,
                cumulative_lost: lost,
                ..Default::default()
            };
            blk.write(&mut b);
            let r = ReportBlock::read(&b);
            assert_eq!(r.cumulative_lost, wire);
            assert_eq!(r.fraction_lost, 200);
            assert_eq!(r.ssrc, 9);
        }
    }

    #[test]
    fn short_bodies_rejected() {
        assert_eq!(
            SenderReport::parse(0, &[0; 23]).unwrap_err(),
            RtcpError::Malformed
        );
        assert!(SenderReport::parse(0, &[0; 24]).is_ok());
        assert!(SenderReport::parse(1, &[0; 47]).is_err());
        assert!(ReceiverReport::parse(1, &[0; 27]).is_err());
        assert_eq!(
            ReceiverReport::parse(0, &[0; 4])
                .unwrap()
                .report_blocks()
                .count(),
            0
        );
    }
}
