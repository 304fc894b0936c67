//! The ClientHello parser (and the route a server would take on it), the client Certificate,
//! ClientKeyExchange and CertificateVerify parsers and the X.509 SubjectPublicKeyInfo reader
//! on arbitrary bytes: refused or parsed, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    rtp_core::dtls::fuzzing::client_messages(data);
});
