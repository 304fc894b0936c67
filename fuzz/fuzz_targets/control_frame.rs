//! Fuzzes the control-socket decoder: arbitrary bytes, split at a fuzzer-chosen point, must
//! only ever yield messages or errors, and every decoded message must re-encode and decode to
//! itself. Needs `sluice-dataplane` as a dependency of the fuzz crate.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_proto::{encode_frame, FrameDecoder};

fuzz_target!(|data: &[u8]| {
    let Some((&split, rest)) = data.split_first() else {
        return;
    };
    let cut = usize::from(split).min(rest.len());
    let mut decoder = FrameDecoder::new();
    for chunk in [&rest[..cut], &rest[cut..]] {
        decoder.push(chunk);
        // Bounded: each Ok(Some)/non-fatal Err consumes at least one 5-byte frame.
        for _ in 0..=rest.len() / 5 {
            match decoder.next_frame() {
                Ok(Some(msg)) => {
                    let mut wire = Vec::new();
                    if encode_frame(&msg, &mut wire).is_ok() {
                        let mut again = FrameDecoder::new();
                        again.push(&wire);
                        assert_eq!(again.next_frame().expect("re-decode"), Some(msg));
                    }
                }
                Ok(None) => break,
                Err(e) if e.is_fatal() => return,
                Err(_) => {}
            }
        }
    }
});
