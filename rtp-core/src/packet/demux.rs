//! RFC 7983 §7 first-byte demultiplexing, with RFC 5761 §4 RTP/RTCP split.

/// What a datagram on the media port carries, from its first bytes alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Demuxed {
    /// First byte 0..=3: STUN (RFC 7983).
    Stun,
    /// First byte 16..=19: ZRTP, which we do not speak.
    Zrtp,
    /// First byte 20..=63: DTLS.
    Dtls,
    /// First byte 64..=79: TURN channel data.
    TurnChannel,
    /// First byte 128..=191 and second byte's payload type outside 192..=223: RTP.
    Rtp,
    /// First byte 128..=191 and payload type 192..=223 (RFC 5761 §4): RTCP.
    Rtcp,
    /// Anything else, including datagrams too short to classify.
    Unknown,
}

/// Classify a datagram by RFC 7983's first-byte ranges.
pub fn demux(buf: &[u8]) -> Demuxed {
    let Some(&b0) = buf.first() else {
        return Demuxed::Unknown;
    };
    match b0 {
        0..=3 => Demuxed::Stun,
        16..=19 => Demuxed::Zrtp,
        20..=63 => Demuxed::Dtls,
        64..=79 => Demuxed::TurnChannel,
        128..=191 => match buf.get(1) {
            Some(b1) if (192..=223).contains(b1) => Demuxed::Rtcp,
            Some(_) => Demuxed::Rtp,
            None => Demuxed::Unknown,
        },
        _ => Demuxed::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(demux(&[0, 1]), Demuxed::Stun);
        assert_eq!(demux(&[22, 254, 253]), Demuxed::Dtls);
        assert_eq!(demux(&[0x80, 96]), Demuxed::Rtp);
        assert_eq!(demux(&[0x80, 111 | 0x80]), Demuxed::Rtp); // marker set, PT 111
        assert_eq!(demux(&[0x81, 200]), Demuxed::Rtcp);
        assert_eq!(demux(&[0x8f, 206]), Demuxed::Rtcp);
        assert_eq!(demux(&[0x80]), Demuxed::Unknown);
        assert_eq!(demux(&[]), Demuxed::Unknown);
        assert_eq!(demux(&[200, 0]), Demuxed::Unknown);
        assert_eq!(demux(&[64, 0]), Demuxed::TurnChannel);
    }
}
