//! How fast a WebRTC subscriber's send-side estimate climbs when its receiver answers with
//! transport-cc feedback as a browser does, on a clean 1 ms link: the SFU-side session (the
//! dataplane's WebRTC start of 1 Mbit/s, capped at the bench's 10 Mbit/s quality) forwards
//! `sluice-bench`'s video shape (30 fps, 5 × 1,200 B per delta frame, a 25-packet keyframe every
//! 2 s: 1.536 Mbit/s) to a client session whose UpTrack knows the transport-cc id, so it records
//! transport-wide sequence numbers and sends feedback (every 50 ms). The estimate is printed
//! once per simulated second (`cargo test --test session_twcc_ramp -- --nocapture`), and must
//! leave its start: without feedback it never moves, and the pacer (2.5 × estimate) holds every
//! keyframe burst for ~100 ms.

mod session_harness;

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use rtp_core::bwe::SendSideBweConfig;
use rtp_core::packet::{write_rtp_header, RtpHeader};
use rtp_core::session::{MediaMeta, Session, SessionConfig, SessionMode};
use rtp_core::RtpView;

use session_harness::*;

const LINK_DELAY: Duration = Duration::from_millis(1);
const CAP_BPS: u64 = 10_000_000;
const PACKET: usize = 1200;

/// Packet `pos` of video frame `frame` in the generator's shape, with transport-wide seq `twcc`.
fn video_packet(
    frame: u32,
    pos: u32,
    last: bool,
    rtp_seq: u16,
    twcc: u16,
    out: &mut [u8],
) -> usize {
    let t = twcc.to_be_bytes();
    let h = write_rtp_header(
        &RtpHeader {
            pt: PT_VP8,
            marker: last,
            seq: rtp_seq,
            ts: frame.wrapping_mul(3000),
            ssrc: PUB_SSRC,
            csrcs: &[],
            extensions: &[(TWCC_ID, &t)],
        },
        out,
    )
    .expect("header");
    out[h] = if pos == 0 { 0x10 } else { 0x00 };
    // VP8 frame tag: P = 0 on a keyframe.
    out[h + 1] = if frame.is_multiple_of(60) { 0x00 } else { 0x01 };
    out[h + 2..PACKET].fill(0x5a);
    PACKET
}

#[test]
fn estimate_climbs_with_transport_cc_feedback() {
    let mut now = t0();
    let start = now;
    let client_addr = addr("127.0.0.1:6001");
    let c = cert();
    let mut cfg = SessionConfig::new(SessionMode::PlainRtp {
        remote: client_addr,
    });
    // What `bwe_config` gives a WebRTC session with the bench's 10 Mbit/s quality.
    cfg.bwe = SendSideBweConfig {
        max_bps: CAP_BPS,
        ..SendSideBweConfig::default()
    };
    let start_bps = cfg.bwe.start_bps;
    let mut server: Session<u32> = Session::new(now, cfg, &c).expect("server");
    let mut client: Session<u32> = Session::new(
        now,
        SessionConfig::new(SessionMode::PlainRtp {
            remote: addr(SERVER),
        }),
        &c,
    )
    .expect("client");
    let down = server.add_down_track(down_track()).expect("down track");
    client
        .add_up_track(up_track(PT_DOWN, PT_DOWN_RTX, DOWN_SSRC, DOWN_RTX_SSRC))
        .expect("client track");

    let mut src = vec![0u8; 1500];
    let mut slots: HashMap<u32, Vec<u8>> = HashMap::new();
    let mut next_handle = 0u32;
    let mut in_flight: VecDeque<(Instant, Vec<u8>)> = VecDeque::new();
    let mut ctl = vec![0u8; 1500];
    let (mut frame, mut rtp_seq, mut twcc) = (0u32, 0u16, 0u16);
    let mut per_second = Vec::new();
    let mut reached_cap = None;
    // 20 simulated seconds in 1 ms steps.
    for ms in 0..20_000u64 {
        now = start + Duration::from_millis(ms);
        // Frames due by now (30 fps).
        while u64::from(frame) * 1000 / 30 <= ms {
            let packets = if frame.is_multiple_of(60) { 25 } else { 5 };
            for pos in 0..packets {
                let n = video_packet(frame, pos, pos + 1 == packets, rtp_seq, twcc, &mut src);
                let view = RtpView::parse(&src[..n]).expect("parses");
                let mut out = vec![0u8; 1500];
                let h = next_handle;
                next_handle += 1;
                let queued = server
                    .forward(
                        now,
                        down,
                        &view,
                        MediaMeta {
                            layer: 0,
                            ext_seq: u64::from(rtp_seq),
                            len: n,
                            keyframe: false,
                        },
                        &mut out,
                        h,
                    )
                    .expect("forward");
                if let Some(len) = queued {
                    out.truncate(len);
                    slots.insert(h, out);
                }
                rtp_seq = rtp_seq.wrapping_add(1);
                twcc = twcc.wrapping_add(1);
            }
            frame += 1;
        }
        server.handle_timeout(now);
        while server.poll_output().is_some() {}
        while let Some((h, len, _)) = server.poll_paced(now) {
            let mut pkt = slots.remove(&h).expect("paced handle has a buffer");
            pkt.truncate(len);
            in_flight.push_back((now + LINK_DELAY, pkt));
        }
        while in_flight.front().is_some_and(|(t, _)| *t <= now) {
            let (_, mut pkt) = in_flight.pop_front().expect("front");
            client
                .handle_datagram(now, addr(SERVER), &mut pkt)
                .expect("client takes the forwarded packet");
            while client.poll_output().is_some() {}
        }
        client.handle_timeout(now);
        // Feedback reaches the SFU within the same millisecond (the return delay is constant).
        while let Some((n, _)) = client.poll_transmit(now, &mut ctl) {
            let _ = server.handle_datagram(now, client_addr, &mut ctl[..n]);
        }
        while server.poll_transmit(now, &mut ctl).is_some() {}
        let est = server.stats().estimate_bps;
        if reached_cap.is_none() && est >= CAP_BPS {
            reached_cap = Some(ms);
        }
        if (ms + 1) % 1000 == 0 {
            per_second.push(est);
            println!(
                "t = {:>2} s  estimate {:>6.2} Mbit/s  feedback received {}",
                (ms + 1) / 1000,
                est as f64 / 1e6,
                server.stats().rtcp_in
            );
        }
    }
    println!("reached the {CAP_BPS} bit/s cap after {reached_cap:?} ms");
    let after_2s = per_second[1];
    assert!(
        after_2s > start_bps,
        "estimate still at its start after 2 s of feedback: {per_second:?}"
    );
    // Media is 1.536 Mbit/s: the estimate must end above what is sent.
    assert!(
        *per_second.last().expect("20 samples") > 1_536_000,
        "{per_second:?}"
    );
}
