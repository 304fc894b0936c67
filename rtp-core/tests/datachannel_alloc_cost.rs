//! What a data-channel message costs in heap allocations (docs/decisions.md
//! D32): a per-thread counting allocator around each phase of one message
//! from our client session to our server session, both in this process —
//! `send_data`, the transport (SCTP packet → DTLS record → datagram →
//! DTLS → SCTP, the SACKs back, timers), `poll_data` — for 100-byte, 1 KiB
//! and 16 KiB messages. Media stays allocation-free beside it
//! (`session_no_alloc.rs`); this is the price of the data path.

mod session_harness;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rtp_core::datachannel::{ChannelConfig, ChannelId, DataConfig};
use rtp_core::session::{Session, SessionEvent};

use session_harness::*;

const CLIENT: &str = "127.0.0.1:6100";
const WARMUP: usize = 200;
const MEASURED: usize = 1000;

struct Link {
    server: Session,
    client: Session,
    s_addr: SocketAddr,
    c_addr: SocketAddr,
    now: Instant,
    buf: Vec<u8>,
    rx: Vec<u8>,
}

impl Link {
    /// Datagrams both ways until none is left, in place (the test itself allocates nothing).
    fn exchange(&mut self) {
        for _ in 0..10_000 {
            let mut any = false;
            while let Some((n, _)) = self.client.poll_transmit(self.now, &mut self.buf) {
                let _ = self
                    .server
                    .handle_datagram(self.now, self.c_addr, &mut self.buf[..n]);
                while self.server.poll_output().is_some() {}
                any = true;
            }
            while let Some((n, _)) = self.server.poll_transmit(self.now, &mut self.buf) {
                let _ = self
                    .client
                    .handle_datagram(self.now, self.s_addr, &mut self.buf[..n]);
                while self.client.poll_output().is_some() {}
                any = true;
            }
            if !any {
                return;
            }
        }
    }

    fn tick(&mut self, d: Duration) {
        self.now += d;
        self.server.handle_timeout(self.now);
        self.client.handle_timeout(self.now);
        self.exchange();
    }
}

/// Allocations and bytes per message in each phase.
#[derive(Debug, Default, Clone, Copy)]
struct Cost {
    send: (f64, f64),
    transport: (f64, f64),
    receive: (f64, f64),
}

fn measure(size: usize) -> Cost {
    let mut now = t0();
    let c_addr = addr(CLIENT);
    let (mut server, mut client) = webrtc_pair(now, &format!("alloc{size}"), c_addr);
    server.enable_data_channels(DataConfig::default()).unwrap();
    client.enable_data_channels(DataConfig::default()).unwrap();
    connect(&mut now, &mut server, &mut client, c_addr);
    let mut l = Link {
        server,
        client,
        s_addr: addr(SERVER),
        c_addr,
        now,
        buf: vec![0; 2048],
        rx: vec![0; 65_536],
    };
    let ch = l
        .client
        .open_channel(ChannelConfig::reliable("cost"))
        .unwrap();
    let mut open = false;
    for _ in 0..1000 {
        l.tick(Duration::from_millis(5));
        while let Some(e) = l.server.poll_event() {
            open |= matches!(e, SessionEvent::ChannelOpen { id, .. } if id == ch);
        }
        while l.client.poll_event().is_some() {}
        if open {
            break;
        }
    }
    assert!(open, "channel open");
    let msg = vec![0x5a; size];
    let mut cost = Cost::default();
    let mut got = 0;
    for i in 0..WARMUP + MEASURED {
        let counted = i >= WARMUP;
        let (s, t, r) = one(&mut l, ch, &msg, &mut got);
        if counted {
            for (acc, m) in [
                (&mut cost.send, s),
                (&mut cost.transport, t),
                (&mut cost.receive, r),
            ] {
                acc.0 += m.0 as f64 / MEASURED as f64;
                acc.1 += m.1 as f64 / MEASURED as f64;
            }
        }
    }
    assert_eq!(got, WARMUP + MEASURED, "every message arrived");
    cost
}

/// One message: (allocations, bytes) of send, transport and receive.
fn one(
    l: &mut Link,
    ch: ChannelId,
    msg: &[u8],
    got: &mut usize,
) -> ((u64, u64), (u64, u64), (u64, u64)) {
    let now = l.now;
    let send = allocation_counter::measure(|| {
        l.client.send_data(now, ch, true, msg).unwrap();
    });
    let transport = allocation_counter::measure(|| {
        l.tick(Duration::from_millis(1));
    });
    let receive = allocation_counter::measure(|| {
        while let Some(m) = l.server.poll_data(&mut l.rx) {
            assert_eq!(m.len, msg.len());
            *got += 1;
        }
    });
    (
        (send.count_total, send.bytes_total),
        (transport.count_total, transport.bytes_total),
        (receive.count_total, receive.bytes_total),
    )
}

#[test]
fn allocations_per_data_channel_message() {
    println!(
        "allocations (bytes) per message, client → server, reliable channel, {MEASURED} messages:"
    );
    println!("  size      send_data          transport (both ways)      poll_data         total");
    for size in [100, 1024, 16 * 1024] {
        let c = measure(size);
        let total = (
            c.send.0 + c.transport.0 + c.receive.0,
            c.send.1 + c.transport.1 + c.receive.1,
        );
        println!(
            "  {size:>6}  {:>6.1} ({:>8.0})  {:>8.1} ({:>9.0})  {:>6.1} ({:>8.0})  {:>6.1} ({:>9.0})",
            c.send.0, c.send.1, c.transport.0, c.transport.1, c.receive.0, c.receive.1, total.0, total.1
        );
        // A ceiling far above today's figures: catches a per-byte or
        // quadratic regression, not noise.
        let fragments = size.div_ceil(1080) as f64;
        assert!(
            total.0 < 60.0 + 20.0 * fragments,
            "{size}-byte message: {total:?}"
        );
    }
}
