//! Compound RTCP parsing: every packet type's view and iterators, never panics.
#![no_main]
use libfuzzer_sys::fuzz_target;
use rtp_core::packet::rtcp::{RtcpCompound, RtcpPacket};

fuzz_target!(|data: &[u8]| {
    for p in RtcpCompound::new(data) {
        let Ok(p) = p else { break };
        match p {
            RtcpPacket::SenderReport(sr) => {
                let _ = (sr.ssrc(), sr.ntp(), sr.info());
                sr.report_blocks().for_each(drop);
            }
            RtcpPacket::ReceiverReport(rr) => rr.report_blocks().for_each(drop),
            RtcpPacket::Sdes(s) => {
                for c in s.chunks() {
                    c.items().for_each(drop);
                    let _ = c.cname();
                }
            }
            RtcpPacket::Bye(b) => {
                b.ssrcs().for_each(drop);
                let _ = b.reason();
            }
            RtcpPacket::Nack(n) => n.lost_seqs().take(10_000).for_each(drop),
            RtcpPacket::Fir(f) => f.entries().for_each(drop),
            RtcpPacket::Remb(r) => r.ssrcs().for_each(drop),
            RtcpPacket::TransportCc(t) => {
                let mut out = [rtp_core::bwe::TwccPacket::default(); 256];
                let _ = rtp_core::bwe::decode_fci(t.fci, &mut out);
            }
            _ => {}
        }
    }
});
