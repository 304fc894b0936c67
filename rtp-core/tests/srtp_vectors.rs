//! Known-answer tests: RFC 3711 Appendix B.2 (AES-CM keystream) and B.3
//! (key derivation), RFC 7714 §16/§17 (AEAD_AES_128_GCM / AEAD_AES_256_GCM
//! SRTP and SRTCP packets).

use rtp_core::srtp::{
    derive_session_keys, ProtectionProfile, SessionKeys, SrtpConfig, SrtpContext, SrtpError,
    StreamKeys,
};

fn unhex(s: &str) -> Vec<u8> {
    let s: String = s.chars().filter(|c| c.is_ascii_hexdigit()).collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn session(enc: &str, salt: &str, auth: &str) -> SessionKeys {
    let k = StreamKeys {
        enc_key: unhex(enc),
        salt: unhex(salt),
        auth_key: unhex(auth),
    };
    SessionKeys {
        rtp: k.clone(),
        rtcp: k,
    }
}

/// RFC 3711 B.2: the AES-CM keystream for session key 2B7E..., salt F0F1...FD,
/// SSRC 0, ROC 0, SEQ 0. Encrypting a zero payload exposes the keystream.
#[test]
fn rfc3711_b2_aes_cm_keystream() {
    let keys = session(
        "2B7E151628AED2A6ABF7158809CF4F3C",
        "F0F1F2F3F4F5F6F7F8F9FAFBFCFD",
        "0000000000000000000000000000000000000000",
    );
    let mut ctx = SrtpContext::from_session_keys(
        ProtectionProfile::Aes128CmHmacSha1_80,
        &keys,
        SrtpConfig::default(),
    )
    .unwrap();
    // Enough payload to reach counter block 0xFF01.
    let blocks = 0xff02usize;
    let len = 12 + 16 * blocks;
    let mut buf = vec![0u8; len + 10];
    buf[0] = 0x80;
    let out = ctx.protect_rtp(&mut buf, len).unwrap();
    assert_eq!(out, len + 10);
    let ks = |block: usize| &buf[12 + 16 * block..12 + 16 * (block + 1)];
    assert_eq!(ks(0), unhex("E03EAD0935C95E80E166B16DD92B4EB4"));
    assert_eq!(ks(1), unhex("D23513162B02D0F72A43A2FE4A5F97AB"));
    assert_eq!(ks(2), unhex("41E95B3BB0A2E8DD477901E4FCA894C0"));
    assert_eq!(ks(0xfeff), unhex("EC8CDF7398607CB0F2D21675EA9EA1E4"));
    assert_eq!(ks(0xff00), unhex("362B7C3C6773516318A077D7FC5073AE"));
    assert_eq!(ks(0xff01), unhex("6A2CC3787889374FBEB4C81B17BA6C44"));
}

/// RFC 3711 B.3: session keys from master key E1F9... and salt 0EC6....
#[test]
fn rfc3711_b3_key_derivation() {
    let keys = derive_session_keys(
        ProtectionProfile::Aes128CmHmacSha1_80,
        &unhex("E1F97A0D3E018BE0D64FA32C06DE4139"),
        &unhex("0EC675AD498AFEEBB6960B3AABE6"),
    )
    .unwrap();
    assert_eq!(keys.rtp.enc_key, unhex("C61E7A93744F39EE10734AFE3FF7A087"));
    assert_eq!(keys.rtp.salt, unhex("30CBBC08863D8C85D49DB34A9AE1"));
    assert_eq!(
        keys.rtp.auth_key,
        unhex("CEBE321F6FF7716B6FD4AB49AF256A156D38BAA4")
    );
}

// RFC 7714 §16 (SRTP) and §17 (SRTCP): session key 0001..0f(..1f), salt "Quid pro quo".
const GCM_KEY_128: &str = "000102030405060708090a0b0c0d0e0f";
const GCM_KEY_256: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
const GCM_SALT: &str = "517569642070726f2071756f";

const RTP_PLAIN: &str = "8040f17b 8041f8d3 5501a0b2 47616c6c 69612065 7374206f 6d6e6973
    20646976 69736120 696e2070 61727465 73207472 6573";
const RTCP_PLAIN: &str = "81c8000d 4d617273 4e545031 4e545032 52545020 0000042a 0000e930
    4c756e61 deadbeef deadbeef deadbeef deadbeef deadbeef";
const RTCP_SSRC: u32 = 0x4d61_7273;
const RTCP_INDEX: u32 = 0x5d4;

const RTP_128: &str = "8040f17b 8041f8d3 5501a0b2 f24de3a3 fb34de6c acba861c 9d7e4bca
    be633bd5 0d294e6f 42a5f47a 51c7d19b 36de3adf 8833899d 7f27beb1 6a9152cf 765ee439 0cce";
const RTCP_128: &str = "81c8000d 4d617273 63e94885 dcdab67c a727d766 2f6b7e99 7ff5c0f7
    6c06f32d c676a5f1 730d6fda 4ce09b46 86303ded 0bb9275b c84aa458 96cf4d2f c5abf872
    45d9eade 800005d4";
const RTP_256: &str = "8040f17b 8041f8d3 5501a0b2 32b1de78 a822fe12 ef9f78fa 332e33aa
    b1801238 9a58e2f3 b50b2a02 76ffae0f 1ba63799 b87b7aa3 db36dfff d6b0f9bb 7878d7a7 6c13";
const RTCP_256: &str = "81c8000d 4d617273 d50ae4d1 f5ce5d30 4ba297e4 7d470c28 2c3ece5d
    bffe0a50 a2eaa5c1 110555be 8415f658 c61de047 6f1b6fad 1d1eb30c 4446839f 57ff6f6c
    b26ac3be 800005d4";

fn gcm_ctx(profile: ProtectionProfile, key: &str) -> SrtpContext {
    SrtpContext::from_session_keys(profile, &session(key, GCM_SALT, ""), SrtpConfig::default())
        .unwrap()
}

fn check_gcm(profile: ProtectionProfile, key: &str, rtp_enc: &str, rtcp_enc: &str) {
    let (rtp_plain, rtp_enc) = (unhex(RTP_PLAIN), unhex(rtp_enc));
    let (rtcp_plain, rtcp_enc) = (unhex(RTCP_PLAIN), unhex(rtcp_enc));

    let mut tx = gcm_ctx(profile, key);
    let mut buf = [0u8; 256];
    buf[..rtp_plain.len()].copy_from_slice(&rtp_plain);
    let n = tx.protect_rtp(&mut buf, rtp_plain.len()).unwrap();
    assert_eq!(&buf[..n], &rtp_enc[..]);

    tx.set_srtcp_index(RTCP_SSRC, RTCP_INDEX).unwrap();
    buf[..rtcp_plain.len()].copy_from_slice(&rtcp_plain);
    let n = tx.protect_rtcp(&mut buf, rtcp_plain.len()).unwrap();
    assert_eq!(&buf[..n], &rtcp_enc[..]);

    let mut rx = gcm_ctx(profile, key);
    let mut pkt = rtp_enc.clone();
    let n = rx.unprotect_rtp(&mut pkt).unwrap();
    assert_eq!(&pkt[..n], &rtp_plain[..]);
    let mut pkt = rtcp_enc.clone();
    let n = rx.unprotect_rtcp(&mut pkt).unwrap();
    assert_eq!(&pkt[..n], &rtcp_plain[..]);

    // One flipped bit anywhere fails authentication.
    let mut rx = gcm_ctx(profile, key);
    let mut pkt = rtp_enc.clone();
    pkt[20] ^= 1;
    assert_eq!(rx.unprotect_rtp(&mut pkt), Err(SrtpError::AuthFailed));
    let mut pkt = rtcp_enc;
    pkt[2] ^= 1;
    assert_eq!(rx.unprotect_rtcp(&mut pkt), Err(SrtpError::AuthFailed));
}

#[test]
fn rfc7714_aead_aes_128_gcm() {
    check_gcm(
        ProtectionProfile::AeadAes128Gcm,
        GCM_KEY_128,
        RTP_128,
        RTCP_128,
    );
}

#[test]
fn rfc7714_aead_aes_256_gcm() {
    check_gcm(
        ProtectionProfile::AeadAes256Gcm,
        GCM_KEY_256,
        RTP_256,
        RTCP_256,
    );
}
