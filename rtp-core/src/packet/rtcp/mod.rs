//! Compound RTCP: zero-copy parse and allocation-free build.
//!
//! Implements the common header and compound walk of RFC 3550 §6.1/§6.4-6.7
//! (SR, RR, SDES, BYE, APP), generic feedback framing of RFC 4585 §6.1 with
//! Generic NACK (§6.2.1) and PLI (§6.3.1), FIR (RFC 5104 §4.3.1), REMB
//! (draft-alvestrand-rmcat-remb-03 §2.2) and the transport-cc framing
//! (draft-holmer-rmcat-transport-wide-cc-extensions-01 §3.1; its FCI is
//! decoded by the bwe module).
//!
//! Parsing validates each packet's framing and its type-specific body once,
//! so the views' accessors and iterators never fail afterwards. Building is
//! one `write_*` call per packet into consecutive slices of a caller buffer.

mod build;
mod feedback;
mod report;
mod sdes;

use thiserror::Error;

pub use build::{
    write_bye, write_feedback, write_fir, write_nack, write_pli, write_remb, write_rr,
    write_sdes_cname, write_sr, write_transport_cc_header,
};
pub use feedback::{Fir, FirEntries, Nack, NackEntries, NackSeqs, Pli, Remb, TransportCc};
pub use report::{ReceiverReport, ReportBlock, ReportBlocks, SenderInfo, SenderReport};
pub use sdes::{App, Bye, Sdes, SdesChunk, SdesChunks, SdesItems, SDES_CNAME};

/// Sender report packet type (RFC 3550 §6.4.1).
pub const PT_SR: u8 = 200;
/// Receiver report packet type (RFC 3550 §6.4.2).
pub const PT_RR: u8 = 201;
/// Source description packet type (RFC 3550 §6.5).
pub const PT_SDES: u8 = 202;
/// Goodbye packet type (RFC 3550 §6.6).
pub const PT_BYE: u8 = 203;
/// Application-defined packet type (RFC 3550 §6.7).
pub const PT_APP: u8 = 204;
/// Transport-layer feedback packet type (RFC 4585 §6.1).
pub const PT_RTPFB: u8 = 205;
/// Payload-specific feedback packet type (RFC 4585 §6.1).
pub const PT_PSFB: u8 = 206;
/// RTPFB format: Generic NACK (RFC 4585 §6.2.1).
pub const FMT_NACK: u8 = 1;
/// RTPFB format: transport-wide congestion control feedback.
pub const FMT_TRANSPORT_CC: u8 = 15;
/// PSFB format: Picture Loss Indication (RFC 4585 §6.3.1).
pub const FMT_PLI: u8 = 1;
/// PSFB format: Full Intra Request (RFC 5104 §4.3.1).
pub const FMT_FIR: u8 = 4;
/// PSFB format: application layer feedback, carrying REMB.
pub const FMT_AFB: u8 = 15;

/// Why an RTCP packet could not be parsed or built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum RtcpError {
    /// Fewer than 4 bytes left for a common header.
    #[error("datagram shorter than an RTCP header")]
    TooShort,
    /// Version field is not 2.
    #[error("RTCP version is not 2")]
    BadVersion,
    /// The length field runs past the datagram.
    #[error("RTCP length field runs past the datagram")]
    BadLength,
    /// Padding count zero or longer than the body.
    #[error("RTCP padding count is zero or too large")]
    BadPadding,
    /// The body does not match its packet type's layout.
    #[error("RTCP body malformed for its packet type")]
    Malformed,
    /// The output buffer is too small for the packet being built.
    #[error("output buffer too small")]
    BufferTooSmall,
    /// More items than the packet's count field (or the length field) can hold.
    #[error("too many items for one RTCP packet")]
    TooManyItems,
    /// A text item longer than 255 bytes.
    #[error("RTCP text item longer than 255 bytes")]
    ValueTooLong,
    /// A feedback packet that needs at least one FCI entry got none.
    #[error("feedback packet without entries")]
    NoItems,
    /// A count/format field value above 31.
    #[error("format field above 31")]
    BadFormat,
}

/// One parsed RTCP packet, borrowing the datagram.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub enum RtcpPacket<'a> {
    /// Sender report.
    SenderReport(SenderReport<'a>),
    /// Receiver report.
    ReceiverReport(ReceiverReport<'a>),
    /// Source description.
    Sdes(Sdes<'a>),
    /// Goodbye.
    Bye(Bye<'a>),
    /// Generic NACK.
    Nack(Nack<'a>),
    /// Picture loss indication.
    Pli(Pli),
    /// Full intra request.
    Fir(Fir<'a>),
    /// Receiver estimated maximum bitrate.
    Remb(Remb<'a>),
    /// Transport-wide congestion control feedback (FCI undecoded).
    TransportCc(TransportCc<'a>),
    /// Application-defined.
    App(App<'a>),
    /// Any other packet type or feedback format.
    Unknown {
        /// Packet type.
        pt: u8,
        /// The 5-bit count/format field.
        fmt: u8,
        /// Body after the 4-byte header, padding excluded.
        body: &'a [u8],
    },
}

impl<'a> RtcpPacket<'a> {
    /// Parse the packet at the start of `buf`; returns it and its length on
    /// the wire (padding included), so the next packet starts there.
    pub fn parse(buf: &'a [u8]) -> Result<(Self, usize), RtcpError> {
        let hdr = buf.get(..4).ok_or(RtcpError::TooShort)?;
        if hdr[0] >> 6 != 2 {
            return Err(RtcpError::BadVersion);
        }
        let fmt = hdr[0] & 0x1f;
        let pt = hdr[1];
        let len = (u16::from_be_bytes([hdr[2], hdr[3]]) as usize + 1) * 4;
        let pkt = buf.get(..len).ok_or(RtcpError::BadLength)?;
        let mut body = &pkt[4..];
        if hdr[0] & 0x20 != 0 {
            let pad = pkt[len - 1] as usize;
            if pad == 0 || pad > body.len() {
                return Err(RtcpError::BadPadding);
            }
            body = &body[..body.len() - pad];
        }
        let p = match (pt, fmt) {
            (PT_SR, _) => Self::SenderReport(SenderReport::parse(fmt, body)?),
            (PT_RR, _) => Self::ReceiverReport(ReceiverReport::parse(fmt, body)?),
            (PT_SDES, _) => Self::Sdes(Sdes::parse(fmt, body)?),
            (PT_BYE, _) => Self::Bye(Bye::parse(fmt, body)?),
            (PT_APP, _) => Self::App(App::parse(fmt, body)?),
            (PT_RTPFB, FMT_NACK) => Self::Nack(Nack::parse(body)?),
            (PT_RTPFB, FMT_TRANSPORT_CC) => Self::TransportCc(TransportCc::parse(body)?),
            (PT_PSFB, FMT_PLI) => Self::Pli(Pli::parse(body)?),
            (PT_PSFB, FMT_FIR) => Self::Fir(Fir::parse(body)?),
            (PT_PSFB, FMT_AFB) if Remb::matches(body) => Self::Remb(Remb::parse(body)?),
            _ => Self::Unknown { pt, fmt, body },
        };
        Ok((p, len))
    }
}

/// The packets of a compound RTCP datagram, in order. A malformed packet
/// yields one `Err` and ends iteration: its length cannot be trusted, so
/// nothing after it can be found reliably.
#[derive(Debug, Clone)]
pub struct RtcpCompound<'a> {
    buf: &'a [u8],
    pos: usize,
    done: bool,
}

impl<'a> RtcpCompound<'a> {
    /// Walk the packets of `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Self {
            buf,
            pos: 0,
            done: false,
        }
    }
}

impl<'a> Iterator for RtcpCompound<'a> {
    type Item = Result<RtcpPacket<'a>, RtcpError>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let rest = self.buf.get(self.pos..).unwrap_or(&[]);
        if rest.is_empty() {
            self.done = true;
            return None;
        }
        match RtcpPacket::parse(rest) {
            Ok((p, len)) => {
                self.pos += len;
                Some(Ok(p))
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

/// Iterator over a run of big-endian SSRCs (BYE, REMB).
#[derive(Debug, Clone)]
pub struct SsrcIter<'a> {
    data: &'a [u8],
}

impl<'a> SsrcIter<'a> {
    pub(crate) fn new(data: &'a [u8]) -> Self {
        Self { data }
    }
}

impl Iterator for SsrcIter<'_> {
    type Item = u32;
    fn next(&mut self) -> Option<u32> {
        let (head, tail) = self.data.split_first_chunk::<4>()?;
        self.data = tail;
        Some(u32::from_be_bytes(*head))
    }
}

/// Big-endian u32 at `o`, 0 when out of range (parse validated the range already).
pub(crate) fn be32(b: &[u8], o: usize) -> u32 {
    b.get(o..o + 4)
        .and_then(|s| s.first_chunk::<4>())
        .map_or(0, |s| u32::from_be_bytes(*s))
}

/// Big-endian u16 at `o`, 0 when out of range.
pub(crate) fn be16(b: &[u8], o: usize) -> u16 {
    b.get(o..o + 2)
        .and_then(|s| s.first_chunk::<2>())
        .map_or(0, |s| u16::from_be_bytes(*s))
}

#[cfg(test)]
mod tests;
