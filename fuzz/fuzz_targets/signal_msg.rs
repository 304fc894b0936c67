//! Signaling messages from clients (`/rtc`, docs/protocol.md): `ClientMessage::parse` never
//! panics, and what it accepts writes back out and parses to the same message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_control::signal::ClientMessage;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(request) = ClientMessage::parse(text) {
        let again = serde_json::to_string(&request.message).expect("a parsed message serializes");
        let back = ClientMessage::parse(&again).expect("a written message parses");
        assert_eq!(back.message, request.message);
    }
});
