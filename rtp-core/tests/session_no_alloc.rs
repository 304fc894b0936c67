//! No heap allocation on a Session's media paths after warm-up, measured
//! with a per-thread counting allocator (allocation-counter): publish →
//! `handle_datagram` (SRTP) → `forward` → `poll_paced` → subscriber
//! `handle_datagram`, with loss, NACK (`send_rtcp` → `Retransmit`) →
//! `retransmit` → RTX recovery, and `poll_transmit` / `handle_timeout`
//! (RTCP reports, transport-cc feedback, NACKs) on every session.

mod session_harness;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rtp_core::datachannel::DataConfig;
use rtp_core::packet::rtcp;
use rtp_core::session::{DownId, Session, SessionOutput};
use rtp_core::RtpView;

use session_harness::*;

const SLOT: usize = 1500;
const SLOTS: usize = 512;
const HISTORY: usize = 1024;
const WARMUP: u32 = 3000;
const MEASURED: u32 = 4000;

struct World {
    s1: Session,
    cl1: Session,
    s2: Session,
    cl2: Session,
    c1: SocketAddr,
    c2: SocketAddr,
    down: DownId,
    /// The shard's packet history: (ext_seq, len, bytes) per slot.
    history: Vec<(u64, usize, [u8; SLOT])>,
    /// Send buffers addressed by pacer handle.
    slots: Vec<[u8; SLOT]>,
    next_slot: u32,
    lost: [u16; 64],
    n_lost: usize,
    buf: [u8; SLOT],
    ctl: [u8; 2048],
    paced: u64,
    delivered: u64,
    recovered: u64,
}

impl World {
    fn step(&mut self, now: Instant, i: u32) {
        let server = addr(SERVER);
        let n = vp8_packet(i, PUB_SSRC, &mut self.buf);
        let (len, _) = self.cl1.protect_outgoing(now, &mut self.buf, n).unwrap();
        let out = self
            .s1
            .handle_datagram(now, self.c1, &mut self.buf[..len])
            .unwrap();
        let SessionOutput::Media { meta, .. } = out else {
            panic!("expected media");
        };
        let (ext_seq, len) = (meta.ext_seq, meta.len);
        let h = &mut self.history[ext_seq as usize % HISTORY];
        h.0 = ext_seq;
        h.1 = len;
        h.2[..len].copy_from_slice(&self.buf[..len]);
        let view = RtpView::parse(&self.buf[..len]).unwrap();
        let handle = self.next_slot;
        self.next_slot = self.next_slot.wrapping_add(1);
        let slot = &mut self.slots[handle as usize % SLOTS];
        self.s2
            .forward(now, self.down, &view, meta, slot, handle)
            .unwrap();
        while self.s2.poll_output().is_some() {}
        self.deliver(now, server);

        if i.is_multiple_of(20) && self.n_lost > 0 {
            let mut nack = [0u8; 256];
            let n = rtcp::write_nack(
                &mut nack,
                self.cl2.local_ssrc(),
                DOWN_SSRC,
                &self.lost[..self.n_lost],
            )
            .unwrap();
            self.n_lost = 0;
            let (len, _) = self.cl2.send_rtcp(now, &nack[..n], &mut self.ctl).unwrap();
            let mut o = self.s2.handle_datagram(now, self.c2, &mut self.ctl[..len]);
            while let Ok(out) = o {
                if let SessionOutput::Retransmit {
                    down,
                    seq,
                    src_ext_seq,
                    ..
                } = out
                {
                    let h = &self.history[src_ext_seq as usize % HISTORY];
                    if h.0 == src_ext_seq {
                        let view = RtpView::parse(&h.2[..h.1]).unwrap();
                        let handle = self.next_slot;
                        self.next_slot = self.next_slot.wrapping_add(1);
                        let slot = &mut self.slots[handle as usize % SLOTS];
                        self.s2
                            .retransmit(now, down, seq, &view, slot, handle)
                            .unwrap();
                    }
                }
                match self.s2.poll_output() {
                    Some(out) => o = Ok(out),
                    None => break,
                }
            }
            self.deliver(now, server);
        }
        if i.is_multiple_of(10) {
            for s in [&mut self.s1, &mut self.cl1, &mut self.s2, &mut self.cl2] {
                s.handle_timeout(now);
                while s.poll_event().is_some() {}
            }
            control(
                now,
                &mut self.s1,
                server,
                &mut self.cl1,
                self.c1,
                &mut self.ctl,
            );
            control(
                now,
                &mut self.s2,
                server,
                &mut self.cl2,
                self.c2,
                &mut self.ctl,
            );
        }
    }

    fn deliver(&mut self, now: Instant, server: SocketAddr) {
        while let Some((h, len, _)) = self.s2.poll_paced(now) {
            self.paced += 1;
            let pkt = &mut self.slots[h as usize % SLOTS][..len];
            let is_rtx = pkt[8..12] == DOWN_RTX_SSRC.to_be_bytes();
            if !is_rtx && self.paced % 23 == 5 && self.n_lost < self.lost.len() {
                self.lost[self.n_lost] = u16::from_be_bytes([pkt[2], pkt[3]]);
                self.n_lost += 1;
                continue;
            }
            if let Ok(SessionOutput::Media { .. }) = self.cl2.handle_datagram(now, server, pkt) {
                self.delivered += 1;
                if is_rtx {
                    self.recovered += 1;
                }
            }
        }
    }
}

/// Control datagrams both ways, outputs discarded.
fn control(
    now: Instant,
    a: &mut Session,
    a_addr: SocketAddr,
    b: &mut Session,
    b_addr: SocketAddr,
    buf: &mut [u8],
) {
    for _ in 0..64 {
        let mut any = false;
        if let Some((n, _)) = a.poll_transmit(now, buf) {
            let _ = b.handle_datagram(now, a_addr, &mut buf[..n]);
            while b.poll_output().is_some() {}
            any = true;
        }
        if let Some((n, _)) = b.poll_transmit(now, buf) {
            let _ = a.handle_datagram(now, b_addr, &mut buf[..n]);
            while a.poll_output().is_some() {}
            any = true;
        }
        if !any {
            return;
        }
    }
}

#[test]
fn no_alloc_on_session_media_paths() {
    assert_eq!(
        media_path_allocations(false),
        0,
        "allocations on the media paths"
    );
}

/// The same with data channels on every session and their SCTP
/// associations up but idle: their timers and `poll_transmit`'s turn for
/// SCTP must not allocate on the media paths either.
#[test]
fn no_alloc_on_session_media_paths_beside_idle_data_channels() {
    assert_eq!(
        media_path_allocations(true),
        0,
        "allocations on the media paths with data channels on"
    );
}

fn media_path_allocations(data: bool) -> u64 {
    let mut now = t0();
    let (c1, c2) = (addr("127.0.0.1:6001"), addr("127.0.0.1:6002"));
    let (mut s1, mut cl1) = webrtc_pair(now, "one", c1);
    let (mut s2, mut cl2) = webrtc_pair(now, "two", c2);
    if data {
        for s in [&mut s1, &mut cl1, &mut s2, &mut cl2] {
            s.enable_data_channels(DataConfig::default()).unwrap();
        }
    }
    connect(&mut now, &mut s1, &mut cl1, c1);
    connect(&mut now, &mut s2, &mut cl2, c2);
    s1.add_up_track(up_track(PT_VP8, PT_RTX, PUB_SSRC, PUB_RTX_SSRC))
        .unwrap();
    let down = s2.add_down_track(down_track()).unwrap();
    cl2.add_up_track(up_track(PT_DOWN, PT_DOWN_RTX, DOWN_SSRC, DOWN_RTX_SSRC))
        .unwrap();
    let mut w = Box::new(World {
        s1,
        cl1,
        s2,
        cl2,
        c1,
        c2,
        down,
        history: vec![(u64::MAX, 0, [0; SLOT]); HISTORY],
        slots: vec![[0; SLOT]; SLOTS],
        next_slot: 0,
        lost: [0; 64],
        n_lost: 0,
        buf: [0; SLOT],
        ctl: [0; 2048],
        paced: 0,
        delivered: 0,
        recovered: 0,
    });
    for i in 0..WARMUP {
        now += Duration::from_millis(1);
        w.step(now, i);
    }
    let before = (w.delivered, w.recovered);
    let info = allocation_counter::measure(|| {
        for i in WARMUP..WARMUP + MEASURED {
            now += Duration::from_millis(1);
            w.step(now, i);
        }
    });
    let delivered = w.delivered - before.0;
    let recovered = w.recovered - before.1;
    println!(
        "{MEASURED} published, {delivered} delivered, {recovered} recovered by RTX, \
         rtt {:?}: {} allocations ({} bytes)",
        w.s2.stats().rtt,
        info.count_total,
        info.bytes_total
    );
    assert!(delivered > u64::from(MEASURED) * 9 / 10);
    assert!(recovered > 0);
    if data {
        for s in [&w.s1, &w.cl1, &w.s2, &w.cl2] {
            assert!(s.is_data_connected(), "associations up");
        }
    }
    info.count_total
}
