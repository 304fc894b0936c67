//! Feedback message views: Generic NACK (RFC 4585 §6.2.1), PLI (RFC 4585
//! §6.3.1), FIR (RFC 5104 §4.3.1), REMB (draft-alvestrand-rmcat-remb-03 §2.2)
//! and transport-cc framing. All share the RFC 4585 §6.1 layout: sender SSRC,
//! media SSRC, then the feedback control information (FCI).

use super::{be16, be32, RtcpError, SsrcIter};

/// Split a feedback body into `(sender ssrc, media ssrc, fci)`.
fn split(body: &[u8]) -> Result<(u32, u32, &[u8]), RtcpError> {
    let (head, fci) = body.split_first_chunk::<8>().ok_or(RtcpError::Malformed)?;
    Ok((be32(head, 0), be32(head, 4), fci))
}

/// A validated Generic NACK view.
#[derive(Debug, Clone, Copy)]
pub struct Nack<'a> {
    /// SSRC of the packet sender (the receiver asking for retransmission).
    pub sender_ssrc: u32,
    /// SSRC of the media source with losses.
    pub media_ssrc: u32,
    fci: &'a [u8],
}

impl<'a> Nack<'a> {
    pub(crate) fn parse(body: &'a [u8]) -> Result<Self, RtcpError> {
        let (sender_ssrc, media_ssrc, fci) = split(body)?;
        if fci.is_empty() || fci.len() % 4 != 0 {
            return Err(RtcpError::Malformed);
        }
        Ok(Self {
            sender_ssrc,
            media_ssrc,
            fci,
        })
    }
    /// Raw `(pid, blp)` entries.
    pub fn entries(&self) -> NackEntries<'a> {
        NackEntries { fci: self.fci }
    }
    /// Every lost sequence number, PID then each BLP bit, in wire order.
    pub fn lost_seqs(&self) -> NackSeqs<'a> {
        NackSeqs {
            entries: self.entries(),
            pid: 0,
            blp: 0,
            bit: 17,
        }
    }
}

/// Iterator over raw NACK `(pid, blp)` pairs.
#[derive(Debug, Clone)]
pub struct NackEntries<'a> {
    fci: &'a [u8],
}

impl Iterator for NackEntries<'_> {
    type Item = (u16, u16);
    fn next(&mut self) -> Option<(u16, u16)> {
        let (e, rest) = self.fci.split_first_chunk::<4>()?;
        self.fci = rest;
        Some((be16(e, 0), be16(e, 2)))
    }
}

/// Iterator expanding NACK entries into lost sequence numbers (wrapping at 65535).
#[derive(Debug, Clone)]
pub struct NackSeqs<'a> {
    entries: NackEntries<'a>,
    pid: u16,
    blp: u16,
    /// 0 = PID not yet yielded, 1..=16 = next BLP bit to test, 17 = entry done.
    bit: u8,
}

impl Iterator for NackSeqs<'_> {
    type Item = u16;
    fn next(&mut self) -> Option<u16> {
        loop {
            if self.bit == 0 {
                self.bit = 1;
                return Some(self.pid);
            }
            while self.bit <= 16 {
                let b = self.bit;
                self.bit += 1;
                if self.blp & (1 << (b - 1)) != 0 {
                    return Some(self.pid.wrapping_add(b as u16));
                }
            }
            let (pid, blp) = self.entries.next()?;
            self.pid = pid;
            self.blp = blp;
            self.bit = 0;
        }
    }
}

/// Picture Loss Indication: no FCI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pli {
    /// SSRC of the packet sender.
    pub sender_ssrc: u32,
    /// SSRC of the media source that needs a key frame.
    pub media_ssrc: u32,
}

impl Pli {
    pub(crate) fn parse(body: &[u8]) -> Result<Self, RtcpError> {
        let (sender_ssrc, media_ssrc, _) = split(body)?;
        Ok(Self {
            sender_ssrc,
            media_ssrc,
        })
    }
}

/// A validated Full Intra Request view.
#[derive(Debug, Clone, Copy)]
pub struct Fir<'a> {
    /// SSRC of the packet sender.
    pub sender_ssrc: u32,
    /// Media SSRC field (unused by FIR, normally 0; the targets are in the entries).
    pub media_ssrc: u32,
    fci: &'a [u8],
}

impl<'a> Fir<'a> {
    pub(crate) fn parse(body: &'a [u8]) -> Result<Self, RtcpError> {
        let (sender_ssrc, media_ssrc, fci) = split(body)?;
        if fci.is_empty() || fci.len() % 8 != 0 {
            return Err(RtcpError::Malformed);
        }
        Ok(Self {
            sender_ssrc,
            media_ssrc,
            fci,
        })
    }
    /// `(target ssrc, command sequence number)` entries.
    pub fn entries(&self) -> FirEntries<'a> {
        FirEntries { fci: self.fci }
    }
}

/// Iterator over FIR `(ssrc, seq_nr)` entries.
#[derive(Debug, Clone)]
pub struct FirEntries<'a> {
    fci: &'a [u8],
}

impl Iterator for FirEntries<'_> {
    type Item = (u32, u8);
    fn next(&mut self) -> Option<(u32, u8)> {
        let (e, rest) = self.fci.split_first_chunk::<8>()?;
        self.fci = rest;
        Some((be32(e, 0), e[4]))
    }
}

/// A validated REMB view.
#[derive(Debug, Clone, Copy)]
pub struct Remb<'a> {
    /// SSRC of the packet sender.
    pub sender_ssrc: u32,
    /// Estimated maximum bitrate in bits per second (mantissa << exp, saturating).
    pub bitrate: u64,
    ssrcs: &'a [u8],
}

impl<'a> Remb<'a> {
    /// Whether an AFB body carries the "REMB" identifier.
    pub(crate) fn matches(body: &[u8]) -> bool {
        body.get(8..12) == Some(b"REMB")
    }
    pub(crate) fn parse(body: &'a [u8]) -> Result<Self, RtcpError> {
        let (sender_ssrc, _, fci) = split(body)?;
        let (head, rest) = fci.split_first_chunk::<8>().ok_or(RtcpError::Malformed)?;
        let n = head[4] as usize;
        let ssrcs = rest.get(..4 * n).ok_or(RtcpError::Malformed)?;
        let exp = (head[5] >> 2) as u32;
        let mantissa = (be32(head, 4) & 0x3_ffff) as u128;
        let bitrate = (mantissa << exp).min(u64::MAX as u128) as u64;
        Ok(Self {
            sender_ssrc,
            bitrate,
            ssrcs,
        })
    }
    /// The media sources the estimate applies to.
    pub fn ssrcs(&self) -> SsrcIter<'a> {
        SsrcIter::new(self.ssrcs)
    }
}

/// Transport-wide congestion control feedback framing; the FCI is decoded by the bwe module.
#[derive(Debug, Clone, Copy)]
pub struct TransportCc<'a> {
    /// SSRC of the packet sender.
    pub sender_ssrc: u32,
    /// Media SSRC field.
    pub media_ssrc: u32,
    /// The undecoded FCI, padding excluded.
    pub fci: &'a [u8],
}

impl<'a> TransportCc<'a> {
    pub(crate) fn parse(body: &'a [u8]) -> Result<Self, RtcpError> {
        let (sender_ssrc, media_ssrc, fci) = split(body)?;
        Ok(Self {
            sender_ssrc,
            media_ssrc,
            fci,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fb(fci: &[u8]) -> Vec<u8> {
        let mut b = vec![0, 0, 0, 1, 0, 0, 0, 2];
        b.extend_from_slice(fci);
        b
    }

    #[test]
    fn nack_expands_pid_and_blp_with_wrap() {
        let b = fb(&[0xff, 0xfe, 0b1000_0000, 0b0000_0101, 0, 5, 0, 0]);
        let n = Nack::parse(&b).unwrap();
        assert_eq!((n.sender_ssrc, n.media_ssrc), (1, 2));
        let seqs: Vec<_> = n.lost_seqs().collect();
        // 65534, +1 = 65535, +3 = 1 (wrapped), +16 = 14 (wrapped), then 5.
        assert_eq!(seqs, vec![65534, 65535, 1, 14, 5]);
        assert_eq!(
            n.entries().collect::<Vec<_>>(),
            vec![(0xfffe, 0x8005), (5, 0)]
        );
        assert!(Nack::parse(&fb(&[])).is_err());
        assert!(Nack::parse(&fb(&[0, 1, 0])).is_err());
    }

    #[test]
    fn remb_mantissa_exponent_and_saturation() {
        // exp 2, mantissa 0x3ffff -> 0xffffc.
        let b = fb(&[b'R', b'E', b'M', b'B', 1, 0x0b, 0xff, 0xff, 0, 0, 0, 9]);
        let r = Remb::parse(&b).unwrap();
        assert_eq!(r.bitrate, 0x3_ffff << 2);
        assert_eq!(r.ssrcs().collect::<Vec<_>>(), vec![9]);
        let b = fb(&[b'R', b'E', b'M', b'B', 0, 0xff, 0xff, 0xff]);
        assert_eq!(Remb::parse(&b).unwrap().bitrate, u64::MAX);
        let b = fb(&[b'R', b'E', b'M', b'B', 2, 0, 0, 1, 0, 0, 0, 9]);
        assert!(Remb::parse(&b).is_err());
    }

    #[test]
    fn fir_entries() {
        let b = fb(&[0, 0, 0, 7, 3, 0, 0, 0, 0, 0, 0, 8, 255, 0, 0, 0]);
        let f = Fir::parse(&b).unwrap();
        assert_eq!(f.entries().collect::<Vec<_>>(), vec![(7, 3), (8, 255)]);
        assert!(Fir::parse(&fb(&[0; 4])).is_err());
        assert!(Pli::parse(&[0; 7]).is_err());
    }
}
