//! Fuzzes the data-channel relay's client envelope parser (`[1][n]` + n × `[len][id]` +
//! payload, issue 17): arbitrary bytes must parse or be refused, never panic; what parses
//! names at most 64 destinations of 1–255 bytes, each inside the input, and the payload is the
//! input's tail. Re-stamping the payload as the server does keeps it byte for byte.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_dataplane::shard::data::{parse_envelope, stamp, MAX_DESTINATIONS};

fuzz_target!(|data: &[u8]| {
    let Some(m) = parse_envelope(data) else {
        return;
    };
    assert!(m.to.len() <= MAX_DESTINATIONS);
    let header: usize = 2 + m.to.iter().map(|d| 1 + d.len()).sum::<usize>();
    assert!(m.to.iter().all(|d| !d.is_empty() && d.len() <= 255));
    assert_eq!(header + m.payload.len(), data.len());
    assert_eq!(&data[header..], m.payload);
    let stamped = stamp("sender", m.payload);
    assert_eq!(&stamped[2 + 6..], m.payload);
});
