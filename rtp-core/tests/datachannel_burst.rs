//! A peer whose SCTP sends a burst of packets that arrive together (a grown congestion window
//! on a fast path: Firefox does this) must not overrun the DTLS 1.3 engine's receive queue.
//! dimpl keeps each application record in a 30-entry queue until it is polled; the endpoint
//! now polls it after every input, as dimpl's API asks. Before that, the server's DTLS failed
//! with a protocol error (`ReceiveQueueFull`) as soon as more than 30 datagrams arrived
//! between two of its `poll_transmit`s — the burst below does that within a few round trips.

mod common;
mod datachannel_harness;
mod session_harness;

use std::time::Duration;

use rtp_core::datachannel::{ChannelConfig, DataConfig};
use rtp_core::session::SessionEvent;

use datachannel_harness::*;

const MESSAGES: usize = 600;
const SIZE: usize = 1000;

#[test]
fn a_burst_of_records_arriving_together_is_delivered_and_the_session_survives() {
    let cfg = DataConfig::default();
    // No loss, a fixed delay, no rate limit: what one side sends at one instant arrives at one.
    let delay = Duration::from_millis(10);
    let mut p = Pair::new("burst", cfg, cfg, link(5, 0.0, delay), link(6, 0.0, delay));
    let c = p
        .client
        .open_channel(ChannelConfig::reliable("burst"))
        .unwrap();
    assert!(
        p.run_until(Duration::from_secs(10), |p| p
            .opened(Side::Server, "burst")
            .is_some()),
        "channel open"
    );
    let mut sent = 0;
    let mut biggest = 0;
    // Keep the client's send buffer full, so its window (and so the bursts) grows.
    for _ in 0..400 {
        while sent < MESSAGES {
            let now = p.now;
            if p.client
                .send_data(now, c, true, &[sent as u8; SIZE])
                .is_err()
            {
                break;
            }
            sent += 1;
        }
        let before = p.up.in_flight();
        p.run_for(Duration::from_millis(5));
        biggest = biggest.max(before);
        if p.server_got.len() == MESSAGES {
            break;
        }
    }
    let failed: Vec<_> = p
        .events(Side::Server)
        .iter()
        .filter(|e| {
            matches!(
                e,
                SessionEvent::SctpClosed | SessionEvent::DtlsFailed { .. }
            )
        })
        .collect();
    println!(
        "burst: {} of {MESSAGES} messages of {SIZE} bytes arrived, at most {biggest} datagrams in flight at once, server failures {failed:?}",
        p.server_got.len()
    );
    assert!(failed.is_empty(), "server session failed: {failed:?}");
    assert!(
        biggest > 30,
        "the bursts must exceed dimpl's 30-record queue (were {biggest})"
    );
    assert_eq!(p.server_got.len(), MESSAGES, "every message arrives");
    for (i, g) in p.server_got.iter().enumerate() {
        assert_eq!(
            g.data,
            vec![i as u8; SIZE],
            "message {i} intact and in order"
        );
    }
}
