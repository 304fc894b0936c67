//! Sample packets and keys shared by `sluice-bench micro` and the criterion benches, so both
//! measure the same bytes.

use rtp_core::packet::{write_rtp_header, RtpHeader};
use rtp_core::srtp::{ProtectionProfile, SrtpConfig, SrtpContext};

/// The transport-wide sequence number extension id used in samples.
pub const TWCC_EXT_ID: u8 = 3;
/// The publisher's SSRC in samples.
pub const SSRC: u32 = 0x5eed_0001;
/// Room for the largest SRTP tag after a packet.
pub const TAG_ROOM: usize = 16;

/// A plain RTP packet of exactly `len` bytes (header with a transport-cc extension, then a
/// patterned payload), written into `out`; returns the header length.
pub fn rtp_packet(out: &mut [u8], len: usize, seq: u16, ts: u32) -> usize {
    let twcc = seq.to_be_bytes();
    let header = RtpHeader {
        pt: 96,
        marker: false,
        seq,
        ts,
        ssrc: SSRC,
        csrcs: &[],
        extensions: &[(TWCC_EXT_ID, &twcc)],
    };
    let h = write_rtp_header(&header, out).expect("sample buffer holds an RTP header");
    assert!(len >= h, "sample packet shorter than its header");
    for (i, b) in out[h..len].iter_mut().enumerate() {
        *b = i as u8;
    }
    h
}

/// A fixed master key and salt for `profile` (benchmarks need no secrecy, only repeatability).
pub fn master(profile: ProtectionProfile) -> (Vec<u8>, Vec<u8>) {
    let key = (0..profile.master_key_len() as u8)
        .map(|i| i.wrapping_mul(7))
        .collect();
    let salt = (0..profile.master_salt_len() as u8)
        .map(|i| i.wrapping_mul(13))
        .collect();
    (key, salt)
}

/// An SRTP context for `profile` with the sample master key.
pub fn context(profile: ProtectionProfile) -> SrtpContext {
    let (key, salt) = master(profile);
    SrtpContext::new(profile, &key, &salt, SrtpConfig::default()).expect("sample keys fit")
}

/// Short name of a profile for bench entry names.
pub fn profile_name(profile: ProtectionProfile) -> &'static str {
    match profile {
        ProtectionProfile::AeadAes128Gcm => "aes128gcm",
        ProtectionProfile::AeadAes256Gcm => "aes256gcm",
        ProtectionProfile::Aes128CmHmacSha1_80 => "aes128cm_sha1_80",
        ProtectionProfile::Aes128CmHmacSha1_32 => "aes128cm_sha1_32",
    }
}

/// A VP8 keyframe packet of exactly `len` bytes: RTP header with a transport-cc extension, a VP8
/// payload descriptor (S=1, 15-bit picture id) and a key-frame tag, then patterned bytes.
pub fn vp8_packet(out: &mut [u8], len: usize, seq: u16, ts: u32) -> usize {
    let h = rtp_packet(out, len, seq, ts);
    out[h..h + 5].copy_from_slice(&[0x90, 0x80, 0x80, 0x01, 0x00]);
    h
}
