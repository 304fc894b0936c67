//! RTP header, CSRC, extension and padding parsing: never panics, views stay in bounds.
#![no_main]
use libfuzzer_sys::fuzz_target;
use rtp_core::RtpView;

fuzz_target!(|data: &[u8]| {
    if let Ok(v) = RtpView::parse(data) {
        let _ = (v.seq(), v.ts(), v.ssrc(), v.marker(), v.payload_type());
        for i in 0..v.csrc_count() {
            let _ = v.csrc(i);
        }
        assert!(v.header_len() + v.payload().len() + v.padding_len() == data.len());
        for (id, value) in v.extensions() {
            let _ = (id, value.len());
        }
        for id in 0..=255u8 {
            let _ = v.extension(id);
        }
        let _ = v.is_padding_only();
    }
});
