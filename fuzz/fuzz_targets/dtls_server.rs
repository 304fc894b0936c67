//! A server-role DtlsEndpoint fed arbitrary datagrams, with time moving between them: the
//! first-ClientHello router, then whichever engine it picks (our DTLS 1.2 server or dimpl).
//! Input: [flags][len][datagram]...; flags bit 0 turns the cookie off for the run (first
//! byte only), bits 1-3 advance the clock by that many 100 ms steps. Never a panic; whatever
//! it sends stays within the MTU and the RFC 7983 DTLS range.
#![no_main]
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime};

use libfuzzer_sys::fuzz_target;
use rtp_core::dtls::{DtlsCert, DtlsEndpoint, DtlsRole, DtlsSettings, Fingerprint};

fn cert() -> &'static DtlsCert {
    static CERT: OnceLock<DtlsCert> = OnceLock::new();
    CERT.get_or_init(|| {
        DtlsCert::generate(SystemTime::UNIX_EPOCH + Duration::from_secs(1_750_000_000)).unwrap()
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, mut rest)) = data.split_first() else { return };
    let settings = DtlsSettings {
        server_cookie: first & 1 == 0,
        ..DtlsSettings::default()
    };
    #[allow(clippy::disallowed_methods)] // a fuzz target is not rtp-core
    let mut now = Instant::now();
    let fp = Some(Fingerprint::from_bytes([7; 32]));
    let mut ep = DtlsEndpoint::with_settings(DtlsRole::Server, cert(), fp, &settings, now).unwrap();
    let mut out = [0u8; 2048];
    while let [flags, len, tail @ ..] = rest {
        let n = usize::from(*len).min(tail.len());
        let (datagram, next) = tail.split_at(n);
        let _ = ep.handle_datagram(now, datagram);
        now += Duration::from_millis(u64::from((flags >> 1) & 7) * 100);
        ep.handle_timeout(now);
        while let Some(n) = ep.poll_transmit(now, &mut out) {
            assert!(n <= settings.mtu && (20..=63).contains(&out[0]));
        }
        while ep.poll_event().is_some() {}
        while ep.poll_application_data().is_some() {}
        rest = next;
    }
});
