//! DTLS record splitting, handshake fragment headers and reassembly (our DTLS 1.2 server's
//! input path) on arbitrary datagrams: slices stay in bounds, messages are their declared size.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    rtp_core::dtls::fuzzing::records_and_fragments(data);
});
