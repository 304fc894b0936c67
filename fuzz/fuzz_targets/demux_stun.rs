//! RFC 7983 demux then STUN parse, accessors, integrity and fingerprint checks.
#![no_main]
use libfuzzer_sys::fuzz_target;
use rtp_core::stun::StunMessage;
use rtp_core::{demux, Demuxed};

fuzz_target!(|data: &[u8]| {
    if demux(data) != Demuxed::Stun {
        return;
    }
    if let Ok(m) = StunMessage::parse(data) {
        let _ = (m.class(), m.method(), m.username_ufrags(), m.priority(), m.use_candidate());
        let _ = (m.ice_controlling(), m.ice_controlled(), m.xor_mapped_address(), m.error_code());
        m.attributes().for_each(drop);
        m.unknown_comprehension_required().for_each(drop);
        let _ = m.verify_fingerprint();
        let _ = m.verify_integrity(b"fuzz-password");
    }
});
