//! Zero heap allocations per packet on the whole forwarding path, checked with a per-thread
//! counting global allocator (allocation-counter) after a warm-up.
//!
//! Each packet goes: publisher protect → demux → SRTP unprotect → RTP parse + extensions →
//! ingress bookkeeping (sequence unwrap, NACK generator, transport-cc receiver, RX stats) →
//! NACK-cache insert → per subscriber: forwarding decision, copy + rewrite, sequence map record,
//! SRTP protect, pacer enqueue → pacer dequeue. Periodically also: a subscriber NACK (build,
//! parse, cache lookup, RTX encapsulate, protect), transport-cc feedback (build, parse, estimate),
//! an RR (build, SRTCP protect/unprotect, parse), a PLI through the throttle, the allocator, and a
//! STUN binding check. Upstream loss (one packet in 50 withheld) keeps the NACK generator busy.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rtp_core::bwe::{
    Allocator, AllocatorConfig, Layer, SendSideBwe, SendSideBweConfig, TrackDemand, TwccReceiver,
    TwccReceiverConfig,
};
use rtp_core::forward::{
    apply_rewrite, Codec, Decision, Forwarder, ForwarderConfig, PacketIn, PliThrottle,
    PliThrottleConfig,
};
use rtp_core::nack::{
    rtx_encapsulate, HistoryConfig, NackConfig, NackGenerator, PacketHistory, SentEntry, SeqMap,
    SeqUnwrapper,
};
use rtp_core::pacer::{Pacer, PacerConfig, PacketClass};
use rtp_core::packet::rtcp::{self, RtcpCompound, RtcpPacket};
use rtp_core::packet::{transport_cc_seq, write_rtp_header, RtpHeader};
use rtp_core::srtp::{ProtectionProfile, SrtpConfig, SrtpContext};
use rtp_core::stats::{RxStreamStats, TxStreamStats};
use rtp_core::stun::{write_binding_success, BindingRequest, IceRole, StunMessage};
use rtp_core::{demux, Demuxed, RtpView};

const SUBSCRIBERS: usize = 3;
const WARMUP: u32 = 5_000;
const MEASURED: u32 = 120_000;
const TWCC_ID: u8 = 3;
const PUB_SSRC: u32 = 0x1111_0001;
const PT_VP8: u8 = 96;
const SLOT: usize = 1600;

#[allow(clippy::disallowed_methods)] // the test needs a base instant; rtp-core itself never reads the clock
fn t0() -> Instant {
    Instant::now()
}

fn srtp(profile: ProtectionProfile, seed: u8) -> SrtpContext {
    let key: Vec<u8> = (0..profile.master_key_len() as u8)
        .map(|i| i ^ seed)
        .collect();
    let salt: Vec<u8> = (0..profile.master_salt_len() as u8)
        .map(|i| i.wrapping_mul(seed))
        .collect();
    SrtpContext::new(profile, &key, &salt, SrtpConfig::default()).unwrap()
}

struct Subscriber {
    forwarder: Forwarder,
    seqmap: SeqMap,
    srtp: SrtpContext,
    pacer: Pacer<u16>,
    tx: TxStreamStats,
    bwe: SendSideBwe,
    /// Send buffers, one slot per pacer handle (the dataplane's buffer pool in miniature).
    slots: Vec<[u8; SLOT]>,
    lens: Vec<usize>,
    next_slot: u16,
    twcc_seq: u16,
    rtx_seq: u16,
    last_out_seq: u16,
}

struct Sfu {
    inbound: SrtpContext,
    unwrap: SeqUnwrapper,
    nack: NackGenerator,
    twcc: TwccReceiver,
    rx: RxStreamStats,
    history: PacketHistory,
    pli: PliThrottle,
    allocator: Allocator,
    subs: Vec<Subscriber>,
    // scratch
    nacks: [u16; 64],
    rtcp_buf: [u8; 1500],
    rtx_buf: [u8; SLOT],
    copy_buf: [u8; SLOT],
    layers: [Option<u8>; 1],
    forwarded: u64,
}

impl Sfu {
    fn new(now: Instant) -> Self {
        let subs = (0..SUBSCRIBERS)
            .map(|i| Subscriber {
                forwarder: Forwarder::new(ForwarderConfig::video(
                    0x2222_0000 + i as u32,
                    Codec::Vp8,
                )),
                seqmap: SeqMap::new(1024),
                srtp: srtp(ProtectionProfile::AeadAes128Gcm, 10 + i as u8),
                pacer: Pacer::new(
                    PacerConfig {
                        initial_rate_bps: 50_000_000,
                        ..PacerConfig::default()
                    },
                    now,
                ),
                tx: TxStreamStats::new(0x2222_0000 + i as u32),
                bwe: SendSideBwe::new(SendSideBweConfig::default()),
                slots: vec![[0u8; SLOT]; 256],
                lens: vec![0; 256],
                next_slot: 0,
                twcc_seq: 0,
                rtx_seq: 0,
                last_out_seq: 0,
            })
            .collect();
        Self {
            inbound: srtp(ProtectionProfile::AeadAes128Gcm, 1),
            unwrap: SeqUnwrapper::new(),
            nack: NackGenerator::new(NackConfig::default()),
            twcc: TwccReceiver::new(TwccReceiverConfig::default()),
            rx: RxStreamStats::new(PUB_SSRC),
            history: PacketHistory::new(HistoryConfig {
                capacity: 2048,
                max_age: Duration::from_secs(2),
                max_packet_len: SLOT,
            }),
            pli: PliThrottle::new(PliThrottleConfig::default()),
            allocator: Allocator::new(AllocatorConfig::default()),
            subs,
            nacks: [0; 64],
            rtcp_buf: [0; 1500],
            rtx_buf: [0; SLOT],
            copy_buf: [0; SLOT],
            layers: [None],
            forwarded: 0,
        }
    }

    /// One datagram from the publisher.
    fn ingress(&mut self, now: Instant, datagram: &mut [u8]) {
        assert_eq!(demux(datagram), Demuxed::Rtp);
        let len = self.inbound.unprotect_rtp(datagram).unwrap();
        let pkt = &datagram[..len];
        let view = RtpView::parse(pkt).unwrap();
        if let Some(seq) = view.extension(TWCC_ID).and_then(transport_cc_seq) {
            self.twcc.on_packet(now, seq);
        }
        let ext = self.unwrap.unwrap(view.seq());
        self.nack.on_packet(now, ext);
        self.rx.on_packet(now, ext, view.ts(), len, 90_000);
        self.history.insert(now, ext, pkt).unwrap();

        let input = PacketIn::from_rtp(0, ext, &view);
        for sub in &mut self.subs {
            let Decision::Forward(rw) = sub.forwarder.decide(now, &input) else {
                continue;
            };
            let slot = sub.next_slot as usize % sub.slots.len();
            sub.next_slot = sub.next_slot.wrapping_add(1);
            let out = &mut sub.slots[slot];
            let n = apply_rewrite(&view, &rw, out).unwrap();
            sub.seqmap.record(
                rw.seq,
                SentEntry {
                    src_ext_seq: ext,
                    ts_offset: view.ts().wrapping_sub(rw.ts),
                    layer: 0,
                },
            );
            sub.last_out_seq = rw.seq;
            sub.tx.on_packet(now, rw.ts, n - 12);
            sub.lens[slot] = sub.srtp.protect_rtp(out, n).unwrap();
            sub.twcc_seq = sub.twcc_seq.wrapping_add(1);
            sub.bwe.on_packet_sent(now, sub.twcc_seq, sub.lens[slot]);
            sub.pacer
                .enqueue(now, PacketClass::Video, sub.lens[slot], slot as u16)
                .unwrap();
            self.forwarded += 1;
        }
        for sub in &mut self.subs {
            while let Some((slot, _class)) = sub.pacer.poll_transmit(now) {
                std::hint::black_box(&sub.slots[slot as usize][..sub.lens[slot as usize]]);
            }
        }
    }

    /// Upstream NACKs due now, as an RTCP packet towards the publisher (built and parsed back).
    fn upstream_nacks(&mut self, now: Instant) -> usize {
        self.nack.handle_timeout(now);
        let n = self.nack.poll_nacks(now, &mut self.nacks);
        if n == 0 {
            return 0;
        }
        let len = rtcp::write_nack(&mut self.rtcp_buf, 1, PUB_SSRC, &self.nacks[..n]).unwrap();
        let mut count = 0;
        for p in RtcpCompound::new(&self.rtcp_buf[..len]) {
            if let Ok(RtcpPacket::Nack(nack)) = p {
                count += nack.lost_seqs().count();
            }
        }
        count
    }

    /// Subscriber `i` NACKs the packet sent 5 before its newest: answer with RTX from the cache.
    fn downstream_nack(&mut self, now: Instant, i: usize) -> bool {
        let sub = &mut self.subs[i];
        let asked = sub.last_out_seq.wrapping_sub(5);
        let len = rtcp::write_nack(&mut self.rtcp_buf, 7, 0x2222_0000, &[asked]).unwrap();
        let mut answered = false;
        for p in RtcpCompound::new(&self.rtcp_buf[..len]) {
            let Ok(RtcpPacket::Nack(nack)) = p else {
                continue;
            };
            for seq in nack.lost_seqs() {
                let Some(entry) = sub.seqmap.lookup(seq) else {
                    continue;
                };
                let Some(orig) = self.history.get(now, entry.src_ext_seq) else {
                    continue;
                };
                // Rebuild our copy of the packet, then wrap it in RTX.
                let view = RtpView::parse(orig).unwrap();
                let rw = rtp_core::forward::Rewrite {
                    ssrc: 0x2222_0000 + i as u32,
                    seq,
                    ts: view.ts().wrapping_sub(entry.ts_offset),
                    marker: view.marker(),
                    vp8: None,
                };
                let n = apply_rewrite(&view, &rw, &mut self.copy_buf).unwrap();
                sub.rtx_seq = sub.rtx_seq.wrapping_add(1);
                let n = rtx_encapsulate(
                    &self.copy_buf[..n],
                    0x3333_0000,
                    97,
                    sub.rtx_seq,
                    &mut self.rtx_buf,
                )
                .unwrap();
                sub.srtp.protect_rtp(&mut self.rtx_buf, n).unwrap();
                answered = true;
            }
        }
        answered
    }

    /// Transport-cc feedback from our receiver, fed to each subscriber's estimator as if it
    /// were theirs (same format, same parse path), then the allocator.
    fn feedback(&mut self, now: Instant) {
        while let Some(len) = self
            .twcc
            .poll_feedback(now, 1, PUB_SSRC, &mut self.rtcp_buf)
        {
            for p in RtcpCompound::new(&self.rtcp_buf[..len]) {
                if let Ok(RtcpPacket::TransportCc(fb)) = p {
                    for sub in &mut self.subs {
                        let _ = sub.bwe.on_transport_feedback(now, fb.fci);
                    }
                }
            }
        }
        let budget = self.subs[0].bwe.estimate_bps();
        let demand = TrackDemand {
            priority: 1,
            layers: [
                Layer {
                    bitrate_bps: 150_000,
                    available: true,
                },
                Layer {
                    bitrate_bps: 500_000,
                    available: true,
                },
                Layer {
                    bitrate_bps: 1_500_000,
                    available: true,
                },
            ],
            max_layer: 2,
            paused: false,
        };
        self.allocator
            .allocate(now, budget, &[demand], &mut self.layers);
    }

    /// A receiver report for the publisher's stream: build, SRTCP round trip, parse.
    fn receiver_report(&mut self, now: Instant, outbound_rtcp: &mut SrtpContext) {
        let block = self.rx.report_block(now);
        let len = rtcp::write_rr(&mut self.rtcp_buf, 1, &[block]).unwrap();
        let n = outbound_rtcp.protect_rtcp(&mut self.rtcp_buf, len).unwrap();
        let len = self
            .inbound
            .unprotect_rtcp(&mut self.rtcp_buf[..n])
            .unwrap_or(0);
        for p in RtcpCompound::new(&self.rtcp_buf[..len]) {
            std::hint::black_box(p.is_ok());
        }
    }
}

/// The publisher: VP8 frames of 4 packets, a keyframe every 60 frames, each with a
/// transport-cc sequence number; returns the protected length.
fn publish(ctx: &mut SrtpContext, i: u32, out: &mut [u8; SLOT]) -> usize {
    let seq = i as u16;
    let frame = i / 4;
    let first = i.is_multiple_of(4);
    let twcc = seq.to_be_bytes();
    let h = write_rtp_header(
        &RtpHeader {
            pt: PT_VP8,
            marker: i % 4 == 3,
            seq,
            ts: frame.wrapping_mul(3000),
            ssrc: PUB_SSRC,
            csrcs: &[],
            extensions: &[(TWCC_ID, &twcc)],
        },
        out,
    )
    .unwrap();
    // VP8 descriptor: X, S on a frame's first packet, 15-bit picture id; then the frame tag.
    let pid = (frame & 0x7fff) as u16 | 0x8000;
    let desc = [
        0x80 | if first { 0x10 } else { 0 },
        0x80,
        (pid >> 8) as u8,
        pid as u8,
    ];
    out[h..h + 4].copy_from_slice(&desc);
    let keyframe = frame.is_multiple_of(60);
    out[h + 4] = if keyframe { 0x00 } else { 0x01 };
    let len = h + 5 + 1000;
    for (k, b) in out[h + 5..len].iter_mut().enumerate() {
        *b = (k as u32 ^ i) as u8;
    }
    ctx.protect_rtp(out, len).unwrap()
}

#[test]
fn no_alloc_on_the_whole_packet_path() {
    let start = t0();
    let mut sfu = Sfu::new(start);
    let mut publisher = srtp(ProtectionProfile::AeadAes128Gcm, 1);
    let mut publisher_rtcp = srtp(ProtectionProfile::AeadAes128Gcm, 1);
    let mut datagram = [0u8; SLOT];
    let mut stun_buf = [0u8; 256];
    let mut stun_out = [0u8; 256];
    let source: SocketAddr = "192.0.2.10:50000".parse().unwrap();
    let (mut upstream_nacked, mut rtx_sent, mut plis) = (0usize, 0usize, 0usize);

    let mut step = |sfu: &mut Sfu,
                    i: u32,
                    upstream_nacked: &mut usize,
                    rtx_sent: &mut usize,
                    plis: &mut usize| {
        let now = start + Duration::from_micros(u64::from(i) * 500); // 2,000 packets/s
        let len = publish(&mut publisher, i, &mut datagram);
        if i % 50 != 17 {
            sfu.ingress(now, &mut datagram[..len]);
        }
        if i.is_multiple_of(10) {
            *upstream_nacked += sfu.upstream_nacks(now);
        }
        if i.is_multiple_of(25) {
            *rtx_sent += usize::from(sfu.downstream_nack(now, (i as usize / 25) % SUBSCRIBERS));
        }
        if i.is_multiple_of(100) {
            sfu.feedback(now);
            sfu.receiver_report(now, &mut publisher_rtcp);
            *plis += usize::from(sfu.pli.request(now, 0));
            // ICE consent check from the client: request → verify → response.
            let tid = [i as u8; 12];
            let n = BindingRequest {
                transaction_id: tid,
                username: b"sfu1:cli1",
                priority: 1,
                role: IceRole::Controlling(7),
                use_candidate: true,
                key: b"server-password-123456",
            }
            .write(&mut stun_buf)
            .unwrap();
            assert_eq!(demux(&stun_buf[..n]), Demuxed::Stun);
            let msg = StunMessage::parse(&stun_buf[..n]).unwrap();
            assert!(msg.verify_fingerprint() && msg.verify_integrity(b"server-password-123456"));
            write_binding_success(
                &mut stun_out,
                msg.transaction_id(),
                source,
                b"server-password-123456",
            )
            .unwrap();
        }
    };

    for i in 0..WARMUP {
        step(&mut sfu, i, &mut upstream_nacked, &mut rtx_sent, &mut plis);
    }
    let forwarded_before = sfu.forwarded;
    let info = allocation_counter::measure(|| {
        for i in WARMUP..WARMUP + MEASURED {
            step(&mut sfu, i, &mut upstream_nacked, &mut rtx_sent, &mut plis);
        }
    });
    let forwarded = sfu.forwarded - forwarded_before;
    println!(
        "{MEASURED} published packets, {forwarded} forwarded copies, {upstream_nacked} upstream NACKed seqs, \
         {rtx_sent} RTX answers, {plis} PLIs: {} allocations ({} bytes)",
        info.count_total, info.bytes_total
    );
    // The path really ran: every subscriber got (nearly) every received packet, NACKs and RTX flowed.
    assert!(
        forwarded >= (MEASURED as u64 * 49 / 50 - 100) * SUBSCRIBERS as u64,
        "{forwarded}"
    );
    assert!(upstream_nacked > 1000 && rtx_sent > 1000 && plis > 0);
    assert_eq!(info.count_total, 0, "allocations on the packet path");
}
