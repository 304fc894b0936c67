//! `Session::data_backlog` over a 100 ms round trip: a lossy stream of 400 kB/s to a reader that
//! keeps up holds far more than 16 KiB in `bufferedAmount` (bytes in flight), which a fixed cap
//! took for a slow reader; the measured drain rate says the buffer empties in well under 500 ms.
//! When the reader stops, the rate decays and the drain time grows past any bound.

mod common;
mod datachannel_harness;
mod session_harness;

use std::time::Duration;

use rtp_core::datachannel::{ChannelConfig, DataConfig};

use datachannel_harness::*;

/// One way.
const DELAY: Duration = Duration::from_millis(50);
const MSG: usize = 1_000;
/// Messages per second (400 kB/s).
const RATE: u64 = 400;

#[test]
fn a_reader_that_keeps_up_over_a_long_path_drains_fast_and_a_stopped_one_does_not() {
    let cfg = DataConfig::default();
    let mut p = Pair::new(
        "backlog",
        cfg,
        cfg,
        link(51, 0.0, DELAY),
        link(52, 0.0, DELAY),
    );
    let ch = p
        .server
        .open_channel(ChannelConfig::lossy("_lossy"))
        .unwrap();
    assert!(
        p.run_until(Duration::from_secs(10), |p| p
            .opened(Side::Client, "_lossy")
            .is_some()),
        "channel open"
    );
    let step = Duration::from_micros(1_000_000 / RATE);
    let msg = vec![7u8; MSG];
    // 4 s of the stream to a reader; the first second lets the rate settle.
    let mut max_buffered = 0;
    let mut worst_drain = Duration::ZERO;
    for i in 0..4 * RATE {
        let now = p.now;
        let b = p.server.data_backlog(now, ch);
        if i >= RATE {
            max_buffered = max_buffered.max(b.buffered);
            let t = b.drain_time(MSG).expect("a reader that keeps up drains");
            worst_drain = worst_drain.max(t);
        }
        p.server.send_data(now, ch, true, &msg).unwrap();
        p.run_for(step);
    }
    let got = p.client_got.len();
    println!(
        "reader keeps up: {got} of {} delivered, bufferedAmount up to {max_buffered} B, drain time up to {worst_drain:?}",
        4 * RATE
    );
    assert!(got as u64 >= 4 * RATE - RATE / 2, "delivered {got}");
    assert!(
        max_buffered > 16 * 1024,
        "{max_buffered} B: in flight over 100 ms is more than a 16 KiB cap"
    );
    assert!(worst_drain < Duration::from_millis(500), "{worst_drain:?}");

    // The reader stops: within 2 s the buffer is not going anywhere.
    p.client_reads = false;
    let mut stopped_after = None;
    for i in 0..4 * RATE {
        let now = p.now;
        let b = p.server.data_backlog(now, ch);
        if b.buffered > 16 * 1024
            && b.drain_time(MSG)
                .is_none_or(|t| t > Duration::from_millis(500))
        {
            stopped_after = Some(step * i as u32);
            break;
        }
        let _ = p.server.send_data(now, ch, true, &msg);
        p.run_for(step);
    }
    let after = stopped_after.expect("a stopped reader shows as one");
    println!("reader stopped: over 16 KiB and not draining within 500 ms after {after:?}");
    assert!(after <= Duration::from_secs(2), "{after:?}");
}
