//! What the load generator's publishers send, shaped like real media: Opus-like audio at 50
//! packets/s of 100 bytes, and VP8-like video at 30 frames/s, 1,200-byte packets, ≈1.5 Mbit/s
//! with a keyframe burst (5× a delta frame) every 2 s. Deterministic: a frame's time, size and
//! packet count follow from its index alone.
//!
//! Each packet is a 12-byte RTP header (RFC 3550 §5.1, no CSRC, no extension), a payload
//! header where the codec needs one (the VP8 descriptor of RFC 7741 §4.2 and, at a frame start,
//! the frame tag of RFC 6386 §9.1, so the forwarder can find keyframes), a patterned body and
//! the [`Tag`](crate::tag::Tag).

use crate::tag::{fill_pattern, Tag, TAG_LEN};

/// RTP payload types the generator uses (and announces to the SFU).
pub const AUDIO_PT: u8 = 111;
pub const VIDEO_PT: u8 = 96;
/// RTP header length of the generator's packets.
pub const RTP_HEADER: usize = 12;

/// Audio or video.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Audio,
    Video,
}

/// The shape of one stream.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Profile {
    pub kind: Kind,
    /// Frame (audio: packet) interval in nanoseconds.
    pub frame_ns: u64,
    /// Packets in a delta frame and in a keyframe.
    pub delta_packets: u32,
    pub key_packets: u32,
    /// Frames between keyframes (video); 0 for audio.
    pub key_interval: u64,
    /// Bytes per packet, RTP header included.
    pub packet_len: usize,
    /// RTP timestamp step per frame.
    pub ts_step: u32,
}

impl Profile {
    /// 50 packets/s × 100 bytes.
    pub const AUDIO: Profile = Profile {
        kind: Kind::Audio,
        frame_ns: 20_000_000,
        delta_packets: 1,
        key_packets: 1,
        key_interval: 0,
        packet_len: 100,
        ts_step: 960,
    };
    /// 30 frames/s; 5 × 1,200 B per delta frame, 25 per keyframe every 60 frames:
    /// (59 × 5 + 25) × 1,200 B × 8 / 2 s = 1.536 Mbit/s.
    pub const VIDEO: Profile = Profile {
        kind: Kind::Video,
        frame_ns: 33_333_333,
        delta_packets: 5,
        key_packets: 25,
        key_interval: 60,
        packet_len: 1200,
        ts_step: 3000,
    };

    /// Average packets per second.
    pub fn pps(&self) -> f64 {
        let per_cycle = match self.key_interval {
            0 => f64::from(self.delta_packets),
            n => {
                (f64::from(self.key_packets) + (n - 1) as f64 * f64::from(self.delta_packets))
                    / n as f64
            }
        };
        per_cycle * 1e9 / self.frame_ns as f64
    }

    /// Average bits per second (whole RTP packets).
    pub fn bps(&self) -> f64 {
        self.pps() * self.packet_len as f64 * 8.0
    }

    pub fn payload_type(&self) -> u8 {
        match self.kind {
            Kind::Audio => AUDIO_PT,
            Kind::Video => VIDEO_PT,
        }
    }
}

/// One stream's send schedule and numbering.
#[derive(Debug, Clone)]
pub struct Stream {
    pub profile: Profile,
    /// Stream id carried in the tags.
    pub id: u32,
    pub ssrc: u32,
    frame: u64,
    rtp_seq: u16,
    /// Tag sequence: packets sent so far.
    seq: u32,
    /// Offset of this stream's frames from the run's base, so streams do not all burst at once.
    phase_ns: u64,
}

/// A frame due now: how many packets, and whether it is a keyframe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame {
    pub index: u64,
    pub packets: u32,
    pub keyframe: bool,
    pub due_ns: u64,
}

impl Stream {
    pub fn new(profile: Profile, id: u32, ssrc: u32, phase_ns: u64) -> Self {
        Self {
            profile,
            id,
            ssrc,
            frame: 0,
            rtp_seq: (id as u16).wrapping_mul(7919),
            seq: 0,
            phase_ns: phase_ns % profile.frame_ns,
        }
    }

    /// When the next frame is due, in nanoseconds since the run's base.
    pub fn next_due_ns(&self) -> u64 {
        self.phase_ns + self.frame * self.profile.frame_ns
    }

    /// The next frame if it is due at `now_ns`; advances the schedule.
    pub fn pop_due(&mut self, now_ns: u64) -> Option<Frame> {
        let due_ns = self.next_due_ns();
        if due_ns > now_ns {
            return None;
        }
        let keyframe = self.profile.kind == Kind::Video
            && self.frame.is_multiple_of(self.profile.key_interval.max(1));
        let packets = if keyframe {
            self.profile.key_packets
        } else {
            self.profile.delta_packets
        };
        let f = Frame {
            index: self.frame,
            packets,
            keyframe,
            due_ns,
        };
        self.frame += 1;
        Some(f)
    }

    /// Writes packet `pos` of `frame` into `out` (at least `profile.packet_len` bytes), tagged
    /// with `sent_ns`; returns its length and its tag sequence.
    pub fn write_packet(&mut self, out: &mut [u8], frame: &Frame, pos: u32, sent_ns: u64) -> usize {
        let p = self.profile;
        let len = p.packet_len;
        let out = &mut out[..len];
        let last = pos + 1 == frame.packets;
        out[0] = 0x80;
        out[1] = p.payload_type() | if last { 0x80 } else { 0 };
        out[2..4].copy_from_slice(&self.rtp_seq.to_be_bytes());
        let ts = (frame.index as u32).wrapping_mul(p.ts_step);
        out[4..8].copy_from_slice(&ts.to_be_bytes());
        out[8..12].copy_from_slice(&self.ssrc.to_be_bytes());
        let mut body = RTP_HEADER;
        if p.kind == Kind::Video {
            if pos == 0 {
                // Descriptor S=1 PID=0, then the frame tag: P=0 on a keyframe, with the start
                // code and a 640×480 size after it.
                out[body] = 0x10;
                if frame.keyframe {
                    out[body + 1..body + 11].copy_from_slice(&[
                        0x00, 0x00, 0x00, 0x9d, 0x01, 0x2a, 0x80, 0x02, 0xe0, 0x01,
                    ]);
                    body += 11;
                } else {
                    out[body + 1..body + 4].copy_from_slice(&[0x01, 0x00, 0x00]);
                    body += 4;
                }
            } else {
                out[body] = 0x00;
                body += 1;
            }
        }
        fill_pattern(&mut out[body..len - TAG_LEN], self.seq);
        let tag = Tag {
            stream: self.id,
            seq: self.seq,
            sent_ns,
        };
        tag.write(&mut out[RTP_HEADER..])
            .expect("packet_len leaves room for the headers and the tag");
        self.rtp_seq = self.rtp_seq.wrapping_add(1);
        self.seq += 1;
        len
    }
}

/// Where the pattern of a received payload starts: after the codec's payload header.
pub fn body_offset(kind: Kind, payload: &[u8]) -> usize {
    match kind {
        Kind::Audio => 0,
        Kind::Video => match payload.first() {
            Some(&d) if d & 0x10 != 0 => {
                if payload.get(1).is_some_and(|&t| t & 0x01 == 0) {
                    11
                } else {
                    4
                }
            }
            _ => 1,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tag::check_pattern;
    use rtp_core::forward::{parse_payload, Codec};

    #[test]
    fn profiles_match_the_brief() {
        assert!((Profile::AUDIO.pps() - 50.0).abs() < 1e-9);
        assert!((Profile::AUDIO.bps() - 40_000.0).abs() < 1e-6);
        let v = Profile::VIDEO.bps();
        assert!((1_500_000.0..1_600_000.0).contains(&v), "video {v} bps");
    }

    #[test]
    fn schedule_sends_keyframes_every_two_seconds() {
        let mut s = Stream::new(Profile::VIDEO, 1, 0x1234, 0);
        let mut packets = 0;
        let mut keys = Vec::new();
        // 4 s of frames, popped at 1 ms steps.
        for ms in 0..4_000u64 {
            while let Some(f) = s.pop_due(ms * 1_000_000) {
                packets += f.packets;
                if f.keyframe {
                    keys.push(f.index);
                }
            }
        }
        assert_eq!(keys, vec![0, 60]);
        assert_eq!(packets, 2 * (25 + 59 * 5));
    }

    #[test]
    fn packets_carry_descriptor_pattern_and_tag() {
        let mut s = Stream::new(Profile::VIDEO, 2, 0xabcd, 0);
        let f = s.pop_due(0).expect("frame 0 due at 0");
        assert!(f.keyframe);
        let mut buf = [0u8; 1500];
        for pos in 0..f.packets {
            let n = s.write_packet(&mut buf, &f, pos, 777);
            assert_eq!(n, 1200);
            let view = rtp_core::RtpView::parse(&buf[..n]).expect("valid RTP");
            assert_eq!(view.ssrc(), 0xabcd);
            assert_eq!(view.marker(), pos + 1 == f.packets);
            let payload = view.payload();
            let tag = Tag::read(payload).expect("tagged");
            assert_eq!((tag.stream, tag.seq, tag.sent_ns), (2, pos, 777));
            let off = body_offset(Kind::Video, payload);
            assert!(check_pattern(
                &payload[off..payload.len() - TAG_LEN],
                tag.seq
            ));
            let info = parse_payload(Codec::Vp8, payload).expect("descriptor");
            assert_eq!(info.keyframe, pos == 0);
            assert_eq!(info.begins_frame, pos == 0);
        }
    }
}
