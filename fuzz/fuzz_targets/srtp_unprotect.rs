//! SRTP and SRTCP unprotect of arbitrary bytes under every profile: errors, never panics.
#![no_main]
use libfuzzer_sys::fuzz_target;
use rtp_core::srtp::{ProtectionProfile, SrtpConfig, SrtpContext};

fuzz_target!(|data: &[u8]| {
    let Some((&selector, packet)) = data.split_first() else { return };
    let profile = match selector % 4 {
        0 => ProtectionProfile::AeadAes128Gcm,
        1 => ProtectionProfile::AeadAes256Gcm,
        2 => ProtectionProfile::Aes128CmHmacSha1_80,
        _ => ProtectionProfile::Aes128CmHmacSha1_32,
    };
    let key = vec![7u8; profile.master_key_len()];
    let salt = vec![9u8; profile.master_salt_len()];
    let mut ctx = SrtpContext::new(profile, &key, &salt, SrtpConfig::default()).unwrap();
    let mut buf = packet.to_vec();
    let _ = ctx.unprotect_rtp(&mut buf);
    let mut buf = packet.to_vec();
    let _ = ctx.unprotect_rtcp(&mut buf);
});
