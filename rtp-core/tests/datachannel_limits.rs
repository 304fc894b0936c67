//! Data-channel limits, both directions: messages of 0 bytes, 16 KiB and
//! the negotiated maximum arrive intact (also through 10% loss); one byte
//! over the peer's max-message-size is refused with an error naming both
//! sizes; a peer that ignores ours loses its association instead of
//! getting the message through; a full send buffer refuses and recovers.

mod common;
mod datachannel_harness;
mod session_harness;

use std::time::Duration;

use rtp_core::datachannel::{ChannelConfig, ChannelId, DataConfig, DataError};
use rtp_core::session::SessionEvent;

use datachannel_harness::*;

const DELAY: Duration = Duration::from_millis(10);

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31) ^ seed)
        .collect()
}

/// A pair with one reliable channel opened by each side, both open.
fn pair_with_channels(
    tag: &str,
    loss: f64,
    server: DataConfig,
    client: DataConfig,
) -> (Pair, ChannelId, ChannelId) {
    let mut p = Pair::new(
        tag,
        server,
        client,
        link(41, loss, DELAY),
        link(42, loss, DELAY),
    );
    let c = p
        .client
        .open_channel(ChannelConfig::reliable("from-client"))
        .unwrap();
    let s = p
        .server
        .open_channel(ChannelConfig::reliable("from-server"))
        .unwrap();
    let open = |p: &Pair| {
        p.opened(Side::Server, "from-client").is_some()
            && p.opened(Side::Client, "from-server").is_some()
    };
    assert!(p.run_until(Duration::from_secs(30), open), "channels open");
    (p, c, s)
}

#[test]
fn empty_16k_and_max_size_messages_arrive_both_ways_through_loss() {
    let cfg = DataConfig::default();
    let max = cfg.max_message_size as usize;
    let (mut p, c, s) = pair_with_channels("sizes", 0.10, cfg, cfg);
    assert_eq!(p.client.max_send_message_size(), Some(max));
    // (binary, payload): empty string and binary (PPID 56/57), 16 KiB, the maximum.
    let sends = [
        (false, Vec::new()),
        (true, Vec::new()),
        (false, pattern(16 * 1024, 1)),
        (true, pattern(16 * 1024, 2)),
        (true, pattern(max, 3)),
        (false, pattern(max, 4)),
    ];
    for (side, ch) in [(Side::Client, c), (Side::Server, s)] {
        for (binary, data) in &sends {
            let now = p.now;
            p.session(side)
                .send_data(now, ch, *binary, data)
                .expect("within the limit");
        }
    }
    let all = |p: &Pair| p.server_got.len() == sends.len() && p.client_got.len() == sends.len();
    assert!(
        p.run_until(Duration::from_secs(60), all),
        "every message arrives"
    );
    for (side, ch) in [(Side::Server, c), (Side::Client, s)] {
        let got = p.got(side);
        for (g, (binary, data)) in got.iter().zip(&sends) {
            assert_eq!(
                (g.channel, g.binary, g.data.len()),
                (ch, *binary, data.len())
            );
            assert_eq!(&g.data, data, "payload of {} bytes intact", data.len());
        }
        println!(
            "{side:?} received sizes {:?}",
            got.iter().map(|g| g.data.len()).collect::<Vec<_>>()
        );
    }
    println!("links: up {:?} down {:?}", p.up.stats(), p.down.stats());
}

#[test]
fn one_byte_over_the_peers_max_message_size_is_refused() {
    let cfg = DataConfig::default();
    let (mut p, c, _) = pair_with_channels("over", 0.0, cfg, cfg);
    let now = p.now;
    let before = p.client.buffered_amount(c);
    // No a=max-message-size in the peer's SDP: 64 KiB (RFC 8841 §6.1).
    let err = p
        .client
        .send_data(now, c, true, &vec![7; 65_537])
        .unwrap_err();
    assert_eq!(
        err,
        DataError::TooBig {
            len: 65_537,
            max: 65_536
        }
    );
    let text = err.to_string();
    println!("refused: {text}");
    assert!(text.contains("65537") && text.contains("65536") && text.contains("max-message-size"));
    assert_eq!(p.client.buffered_amount(c), before, "nothing was queued");
    // The peer's SDP says 1000: 1000 goes, 1001 does not.
    p.client.set_remote_max_message_size(Some(1000));
    p.client
        .send_data(now, c, false, &[b'x'; 1000])
        .expect("at the limit");
    assert_eq!(
        p.client.send_data(now, c, false, &[b'x'; 1001]),
        Err(DataError::TooBig {
            len: 1001,
            max: 1000
        })
    );
    // 0 means any size: then our send buffer is the limit.
    p.client.set_remote_max_message_size(Some(0));
    assert_eq!(p.client.max_send_message_size(), Some(cfg.max_buffered));
    assert!(matches!(
        p.client
            .send_data(now, c, true, &vec![0; cfg.max_buffered + 1]),
        Err(DataError::TooBig { .. })
    ));
    assert_eq!(p.client.data_stats().unwrap().refused_too_big, 3);
    assert!(p.run_until(Duration::from_secs(5), |p| p.server_got.len() == 1));
    assert_eq!(p.server_got[0].data.len(), 1000);
}

#[test]
fn a_peer_ignoring_our_max_message_size_loses_its_association() {
    let ours = DataConfig {
        max_message_size: 16 * 1024,
        receive_buffer: 64 * 1024,
        ..DataConfig::default()
    };
    let (mut p, c, s) = pair_with_channels("ignores", 0.0, ours, DataConfig::default());
    // A peer that reads a larger value than our SDP says.
    p.client.set_remote_max_message_size(Some(65_536));
    let now = p.now;
    p.client
        .send_data(now, c, true, &pattern(16 * 1024, 5))
        .unwrap();
    p.client
        .send_data(now, c, true, &pattern(16 * 1024 + 1, 6))
        .unwrap();
    p.run_for(Duration::from_secs(5));
    let sizes: Vec<usize> = p.server_got.iter().map(|g| g.data.len()).collect();
    println!(
        "server received {sizes:?}; server events {:?}",
        p.server_events
    );
    assert_eq!(sizes, [16 * 1024], "the oversized message never arrives");
    assert!(p.server_events.contains(&SessionEvent::SctpClosed));
    assert!(p.closed(Side::Server, c) && p.closed(Side::Server, s));
    assert!(p
        .server
        .open_channel(ChannelConfig::reliable("again"))
        .is_err());
}

#[test]
fn a_full_send_buffer_refuses_and_recovers() {
    let client = DataConfig {
        max_buffered: 200 * 1024,
        ..DataConfig::default()
    };
    let (mut p, c, _) = pair_with_channels("full", 0.0, DataConfig::default(), client);
    p.server_reads = false;
    let msg = pattern(10 * 1024, 9);
    let mut sent = 0usize;
    let full = loop {
        let now = p.now;
        match p.client.send_data(now, c, true, &msg) {
            Ok(()) => sent += 1,
            Err(e) => break e,
        }
        p.run_for(Duration::from_millis(20));
        assert!(sent < 200, "the buffer never filled");
    };
    let buffered = p.client.buffered_amount(c);
    println!("sent {sent} × 10 KiB before {full}; buffered {buffered}");
    assert!(matches!(full, DataError::Full { max, .. } if max == 200 * 1024));
    assert!(buffered + msg.len() > 200 * 1024 && buffered <= 200 * 1024);
    assert_eq!(p.client.data_buffered(), buffered);
    // The reader that stopped holds the receive window (256 KiB) plus our buffer.
    assert!(sent * msg.len() > 256 * 1024);
    p.server_reads = true;
    assert!(p.run_until(Duration::from_secs(30), |p| p.server_got.len() == sent));
    // The last SACK may be delayed (RFC 9260 §6.2: up to 200 ms).
    p.run_for(Duration::from_millis(500));
    assert_eq!(p.client.buffered_amount(c), 0, "everything acknowledged");
    let now = p.now;
    p.client.send_data(now, c, true, &msg).expect("room again");
    assert!(p.server_got.iter().all(|g| g.data == msg));
    assert_eq!(p.client.data_stats().unwrap().refused_full, 1);
}
