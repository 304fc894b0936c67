//! The Data Channel Establishment Protocol's two messages (RFC 8832 §5):
//! `DATA_CHANNEL_OPEN` (type 0x03) and `DATA_CHANNEL_ACK` (type 0x02), sent
//! with PPID 50 on the channel's own stream. Parsing borrows the label and
//! protocol from the message; anything not exactly as §5.1 lays it out is an
//! error (the receiver then refuses the channel, §6).

use thiserror::Error;

use super::Reliability;

/// Longest label or protocol we accept or send. RFC 8832 allows 65535;
/// browsers' labels are short, and each open channel's label is kept and
/// reported, so a hostile peer must not make that cost 64 KiB a channel.
pub const MAX_LABEL_LEN: usize = 1024;

const TYPE_OPEN: u8 = 0x03;
const TYPE_ACK: u8 = 0x02;
/// Fixed part of `DATA_CHANNEL_OPEN`, before label and protocol.
const OPEN_HEADER: usize = 12;
/// Channel type bit: unordered delivery (RFC 8832 §5.1).
const UNORDERED: u8 = 0x80;

/// A parsed DCEP message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DcepMessage<'a> {
    /// `DATA_CHANNEL_OPEN`.
    Open(DcepOpen<'a>),
    /// `DATA_CHANNEL_ACK`.
    Ack,
}

/// A `DATA_CHANNEL_OPEN` (RFC 8832 §5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DcepOpen<'a> {
    /// Delivery order.
    pub ordered: bool,
    /// Reliability from the channel type and reliability parameter.
    pub reliability: Reliability,
    /// Priority (RFC 8832 §5.1; browsers send 256 for "normal").
    pub priority: u16,
    /// The channel label (UTF-8).
    pub label: &'a str,
    /// The sub-protocol (UTF-8), usually empty.
    pub protocol: &'a str,
}

/// Why a DCEP message was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum DcepError {
    /// Shorter than its fixed part or than its lengths say.
    #[error("DCEP message truncated")]
    Truncated,
    /// Bytes after the protocol field (or after an ACK's type byte).
    #[error("DCEP message has trailing bytes")]
    Trailing,
    /// A message type other than OPEN (0x03) or ACK (0x02).
    #[error("unknown DCEP message type {0:#04x}")]
    UnknownType(u8),
    /// A channel type RFC 8832 §8.2.2 does not define.
    #[error("unknown DCEP channel type {0:#04x}")]
    UnknownChannelType(u8),
    /// Label or protocol is not UTF-8.
    #[error("DCEP label or protocol is not UTF-8")]
    NotUtf8,
    /// Label or protocol longer than [`MAX_LABEL_LEN`].
    #[error("DCEP label or protocol longer than {MAX_LABEL_LEN} bytes")]
    TooLong,
}

impl<'a> DcepMessage<'a> {
    /// Parses one DCEP message (the payload of a PPID 50 SCTP message).
    pub fn parse(buf: &'a [u8]) -> Result<Self, DcepError> {
        match buf.first() {
            None => Err(DcepError::Truncated),
            Some(&TYPE_ACK) if buf.len() == 1 => Ok(Self::Ack),
            Some(&TYPE_ACK) => Err(DcepError::Trailing),
            Some(&TYPE_OPEN) => DcepOpen::parse(buf).map(Self::Open),
            Some(&t) => Err(DcepError::UnknownType(t)),
        }
    }
}

impl<'a> DcepOpen<'a> {
    fn parse(buf: &'a [u8]) -> Result<Self, DcepError> {
        let head: &[u8; OPEN_HEADER] = buf.first_chunk().ok_or(DcepError::Truncated)?;
        let channel_type = head[1];
        let priority = u16::from_be_bytes([head[2], head[3]]);
        let param = u32::from_be_bytes([head[4], head[5], head[6], head[7]]);
        let label_len = usize::from(u16::from_be_bytes([head[8], head[9]]));
        let protocol_len = usize::from(u16::from_be_bytes([head[10], head[11]]));
        let reliability = match channel_type & !UNORDERED {
            0x00 => Reliability::Reliable,
            0x01 => Reliability::MaxRetransmits(param),
            0x02 => Reliability::MaxLifetimeMs(param),
            _ => return Err(DcepError::UnknownChannelType(channel_type)),
        };
        if label_len > MAX_LABEL_LEN || protocol_len > MAX_LABEL_LEN {
            return Err(DcepError::TooLong);
        }
        let rest = &buf[OPEN_HEADER..];
        let (label, rest) = rest
            .split_at_checked(label_len)
            .ok_or(DcepError::Truncated)?;
        let (protocol, rest) = rest
            .split_at_checked(protocol_len)
            .ok_or(DcepError::Truncated)?;
        if !rest.is_empty() {
            return Err(DcepError::Trailing);
        }
        Ok(Self {
            ordered: channel_type & UNORDERED == 0,
            reliability,
            priority,
            label: std::str::from_utf8(label).map_err(|_| DcepError::NotUtf8)?,
            protocol: std::str::from_utf8(protocol).map_err(|_| DcepError::NotUtf8)?,
        })
    }

    /// Appends the message to `out`. Label and protocol are clipped to
    /// [`MAX_LABEL_LEN`] (callers check lengths first).
    pub fn write(&self, out: &mut Vec<u8>) {
        let label = &self.label.as_bytes()[..self.label.len().min(MAX_LABEL_LEN)];
        let protocol = &self.protocol.as_bytes()[..self.protocol.len().min(MAX_LABEL_LEN)];
        let (kind, param) = match self.reliability {
            Reliability::Reliable => (0x00, 0),
            Reliability::MaxRetransmits(n) => (0x01, n),
            Reliability::MaxLifetimeMs(ms) => (0x02, ms),
        };
        let unordered = if self.ordered { 0 } else { UNORDERED };
        out.push(TYPE_OPEN);
        out.push(kind | unordered);
        out.extend_from_slice(&self.priority.to_be_bytes());
        out.extend_from_slice(&param.to_be_bytes());
        // Both at most MAX_LABEL_LEN, far below u16::MAX.
        out.extend_from_slice(&(label.len() as u16).to_be_bytes());
        out.extend_from_slice(&(protocol.len() as u16).to_be_bytes());
        out.extend_from_slice(label);
        out.extend_from_slice(protocol);
    }
}

/// The one-byte `DATA_CHANNEL_ACK`.
pub const ACK: [u8; 1] = [TYPE_ACK];

#[cfg(test)]
mod tests {
    use super::*;

    fn open(label: &'static str, ordered: bool, reliability: Reliability) -> DcepOpen<'static> {
        DcepOpen {
            ordered,
            reliability,
            priority: 256,
            label,
            protocol: "",
        }
    }

    #[test]
    fn open_round_trips_every_channel_type() {
        for ordered in [true, false] {
            for r in [
                Reliability::Reliable,
                Reliability::MaxRetransmits(0),
                Reliability::MaxRetransmits(7),
                Reliability::MaxLifetimeMs(1500),
            ] {
                let mut m = open("chat", ordered, r);
                m.protocol = "json";
                let mut buf = Vec::new();
                m.write(&mut buf);
                assert_eq!(DcepMessage::parse(&buf), Ok(DcepMessage::Open(m)));
            }
        }
    }

    #[test]
    fn open_matches_rfc_8832_layout() {
        // Unordered, maxRetransmits 3, priority 256, label "ab", protocol "c".
        let mut m = open("ab", false, Reliability::MaxRetransmits(3));
        m.protocol = "c";
        let mut buf = Vec::new();
        m.write(&mut buf);
        assert_eq!(
            buf,
            [0x03, 0x81, 0x01, 0x00, 0, 0, 0, 3, 0, 2, 0, 1, b'a', b'b', b'c']
        );
    }

    #[test]
    fn ack_parses_and_trailing_bytes_do_not() {
        assert_eq!(DcepMessage::parse(&ACK), Ok(DcepMessage::Ack));
        assert_eq!(DcepMessage::parse(&[2, 0]), Err(DcepError::Trailing));
    }

    #[test]
    fn malformed_opens_are_refused() {
        let mut good = Vec::new();
        open("label", true, Reliability::Reliable).write(&mut good);
        assert_eq!(DcepMessage::parse(&[]), Err(DcepError::Truncated));
        assert_eq!(DcepMessage::parse(&good[..11]), Err(DcepError::Truncated));
        assert_eq!(
            DcepMessage::parse(&good[..good.len() - 1]),
            Err(DcepError::Truncated)
        );
        let mut long = good.clone();
        long.push(0);
        assert_eq!(DcepMessage::parse(&long), Err(DcepError::Trailing));
        let mut kind = good.clone();
        kind[1] = 0x03;
        assert_eq!(
            DcepMessage::parse(&kind),
            Err(DcepError::UnknownChannelType(0x03))
        );
        let mut utf = good.clone();
        utf[12] = 0xff;
        assert_eq!(DcepMessage::parse(&utf), Err(DcepError::NotUtf8));
        assert_eq!(DcepMessage::parse(&[0x04]), Err(DcepError::UnknownType(4)));
        // A label length past MAX_LABEL_LEN is refused before its bytes are looked at.
        let mut huge = good.clone();
        huge[8..10].copy_from_slice(&u16::MAX.to_be_bytes());
        assert_eq!(DcepMessage::parse(&huge), Err(DcepError::TooLong));
    }

    #[test]
    fn longest_label_is_accepted() {
        let label = "x".repeat(MAX_LABEL_LEN);
        let m = DcepOpen {
            label: &label,
            ..open("", true, Reliability::Reliable)
        };
        let mut buf = Vec::new();
        m.write(&mut buf);
        assert!(matches!(
            DcepMessage::parse(&buf),
            Ok(DcepMessage::Open(o)) if o.label.len() == MAX_LABEL_LEN
        ));
    }
}
