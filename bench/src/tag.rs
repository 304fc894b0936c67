//! The tag the load generator writes at the end of every RTP payload: which stream the packet
//! belongs to, its per-stream sequence, and when it was sent (nanoseconds since the run's base
//! `Instant`, so sender and receiver read the same clock). At the end of the payload, so codec
//! payload headers (the VP8 descriptor the forwarder reads) stay where the codec wants them.
//! The payload before the tag is a byte pattern derived from the sequence, which a receiver can
//! check on a sample of packets. A copy's latency is its arrival ([`arrival_ns`]) minus the
//! tag's send time.

use std::time::Duration;

/// Bytes a tag occupies.
pub const TAG_LEN: usize = 20;
const MAGIC: u32 = 0x5e1c_e7a9;

/// A decoded tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tag {
    pub stream: u32,
    pub seq: u32,
    pub sent_ns: u64,
}

/// Why a payload's tag was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TagError {
    #[error("payload shorter than a tag")]
    Short,
    #[error("tag magic mismatch")]
    Magic,
}

impl Tag {
    /// Writes the tag into the last `TAG_LEN` bytes of `payload` (which must be that long).
    pub fn write(&self, payload: &mut [u8]) -> Result<(), TagError> {
        let n = payload.len();
        if n < TAG_LEN {
            return Err(TagError::Short);
        }
        let t = &mut payload[n - TAG_LEN..];
        t[0..4].copy_from_slice(&MAGIC.to_be_bytes());
        t[4..8].copy_from_slice(&self.stream.to_be_bytes());
        t[8..12].copy_from_slice(&self.seq.to_be_bytes());
        t[12..20].copy_from_slice(&self.sent_ns.to_be_bytes());
        Ok(())
    }

    /// Reads the tag from the end of `payload`.
    pub fn read(payload: &[u8]) -> Result<Tag, TagError> {
        let n = payload.len();
        if n < TAG_LEN {
            return Err(TagError::Short);
        }
        let t = &payload[n - TAG_LEN..];
        if u32::from_be_bytes([t[0], t[1], t[2], t[3]]) != MAGIC {
            return Err(TagError::Magic);
        }
        Ok(Tag {
            stream: u32::from_be_bytes([t[4], t[5], t[6], t[7]]),
            seq: u32::from_be_bytes([t[8], t[9], t[10], t[11]]),
            sent_ns: u64::from_be_bytes([t[12], t[13], t[14], t[15], t[16], t[17], t[18], t[19]]),
        })
    }
}

/// Fills `body` with the pattern of packet `seq`.
pub fn fill_pattern(body: &mut [u8], seq: u32) {
    let k = seq.wrapping_mul(0x9e37_79b9).to_be_bytes()[0];
    for (i, b) in body.iter_mut().enumerate() {
        *b = (i as u8).wrapping_add(k);
    }
}

/// Whether `body` holds the pattern of packet `seq`.
pub fn check_pattern(body: &[u8], seq: u32) -> bool {
    let k = seq.wrapping_mul(0x9e37_79b9).to_be_bytes()[0];
    body.iter()
        .enumerate()
        .all(|(i, &b)| b == (i as u8).wrapping_add(k))
}

/// When a datagram arrived, in ns since the run's base: the kernel's receive time (`stamp`, on
/// the wall clock) moved onto the monotonic clock through one `(now_ns, wall)` pair read
/// together, or `now_ns` where there is no stamp or it is not in the past (a wall-clock step).
pub fn arrival_ns(now_ns: u64, wall: Duration, stamp: Option<Duration>) -> u64 {
    match stamp.and_then(|s| wall.checked_sub(s)) {
        Some(age) => now_ns.saturating_sub(u64::try_from(age.as_nanos()).unwrap_or(u64::MAX)),
        None => now_ns,
    }
}

/// The wall clock since the Unix epoch (the reference for [`arrival_ns`]).
pub fn wall_now() -> Duration {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_at_the_end_of_the_payload() {
        let mut p = [0u8; 100];
        fill_pattern(&mut p[..80], 42);
        let tag = Tag {
            stream: 3,
            seq: 42,
            sent_ns: 123_456_789_012,
        };
        tag.write(&mut p).expect("fits");
        assert_eq!(Tag::read(&p), Ok(tag));
        assert!(check_pattern(&p[..80], 42));
        assert!(!check_pattern(&p[..80], 43));
    }

    #[test]
    fn refuses_short_and_foreign_payloads() {
        assert_eq!(Tag::read(&[0u8; 10]), Err(TagError::Short));
        assert_eq!(Tag::read(&[0u8; 40]), Err(TagError::Magic));
        let t = Tag {
            stream: 0,
            seq: 0,
            sent_ns: 0,
        };
        assert_eq!(t.write(&mut [0u8; 19]), Err(TagError::Short));
    }
}
