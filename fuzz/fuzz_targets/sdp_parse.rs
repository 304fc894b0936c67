//! Fuzz the SDP parser: any input is an `Err` or a description that prints
//! and re-parses, and answering it never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_control::sdp::{answer, parse, Fingerprint, LocalParams};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(sdp) = parse(text) else { return };
    let printed = sdp.to_string();
    assert!(parse(&printed).is_ok(), "printed SDP must parse again");
    let fp = Fingerprint::parse("sha-256 AB:CD").expect("constant fingerprint parses");
    let local = LocalParams::new("ufrag", "password0123456789abcd", fp, Vec::new(), 1);
    let _ = answer(&sdp, &local);
});
