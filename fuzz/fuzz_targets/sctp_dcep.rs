//! SCTP and DCEP input to a data-channel association: the DCEP parser on
//! raw bytes (anything that parses writes back and parses to the same), then
//! the same bytes cut into SCTP packets fed to an established association
//! as its peer's (tag and checksum written in, or not, per packet) with
//! time moving between them. Refused or counted, never a panic.
#![no_main]
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use rtp_core::datachannel::fuzzing::FuzzPair;
use rtp_core::datachannel::DcepMessage;

fuzz_target!(|data: &[u8]| {
    if let Ok(DcepMessage::Open(o)) = DcepMessage::parse(data) {
        let mut again = Vec::new();
        o.write(&mut again);
        assert_eq!(DcepMessage::parse(&again), Ok(DcepMessage::Open(o)));
    }
    #[allow(clippy::disallowed_methods)] // a fuzz target is not rtp-core
    let mut pair = FuzzPair::new(Instant::now());
    // [flags][len][packet] … : bit 0 of flags: write tag and checksum; bits 1-3: ms to advance.
    let mut rest = data;
    while let [flags, len, tail @ ..] = rest {
        let n = usize::from(*len).min(tail.len());
        let (packet, next) = tail.split_at(n);
        pair.inject(packet, flags & 1 == 1);
        pair.step(Duration::from_millis(u64::from((flags >> 1) & 7) * 50));
        rest = next;
    }
    pair.step(Duration::from_secs(1));
});
