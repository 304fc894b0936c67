//! Data-channel life cycle between two sessions: close and reopen (stream
//! reset, RFC 6525, and id reuse), many channels each way with the right
//! parity, negotiated channels (no DCEP), and the peer-facing limits: too
//! many channels, a stream id past what we announced, data on a stream
//! nobody opened.

mod common;
mod datachannel_harness;
mod session_harness;

use std::time::Duration;

use rtp_core::datachannel::{ChannelConfig, ChannelId, DataConfig, DataError, Reliability};
use rtp_core::session::SessionEvent;

use datachannel_harness::*;

const DELAY: Duration = Duration::from_millis(10);

fn clean_pair(tag: &str, server: DataConfig, client: DataConfig) -> Pair {
    Pair::new(
        tag,
        server,
        client,
        link(51, 0.0, DELAY),
        link(52, 0.0, DELAY),
    )
}

fn labels_open(p: &Pair, side: Side) -> usize {
    p.events(side)
        .iter()
        .filter(|e| matches!(e, SessionEvent::ChannelOpen { .. }))
        .count()
}

#[test]
fn close_and_reopen_reuses_the_id_after_the_reset() {
    let mut p = clean_pair("reopen", DataConfig::default(), DataConfig::default());
    let a = p
        .client
        .open_channel(ChannelConfig::reliable("first"))
        .unwrap();
    assert!(
        p.run_until(Duration::from_secs(5), |p| p.opened(Side::Server, "first")
            == Some(a))
    );
    let now = p.now;
    p.client.send_data(now, a, false, b"one").unwrap();
    assert!(p.run_until(Duration::from_secs(5), |p| p.server_got.len() == 1));

    p.client.close_channel(a).unwrap();
    assert!(
        p.closed(Side::Client, a) || {
            p.drain();
            p.closed(Side::Client, a)
        },
        "closing side reports at once"
    );
    assert_eq!(
        p.client.send_data(now, a, false, b"late"),
        Err(DataError::NotOpen(a))
    );
    assert!(
        p.run_until(Duration::from_secs(5), |p| p.closed(Side::Server, a)),
        "peer sees the reset"
    );
    // Both halves reset: the id is free again.
    p.run_for(Duration::from_secs(1));
    let b = p
        .client
        .open_channel(ChannelConfig::reliable("second"))
        .unwrap();
    assert_eq!(b, a, "lowest free even id reused");
    assert!(
        p.run_until(Duration::from_secs(5), |p| p.opened(Side::Server, "second")
            == Some(b))
    );
    let now = p.now;
    p.client.send_data(now, b, false, b"two").unwrap();
    // And the server closes one of its own: the client hears of it.
    let s = p
        .server
        .open_channel(ChannelConfig::lossy("server-side"))
        .unwrap();
    assert!(p.run_until(Duration::from_secs(5), |p| p
        .opened(Side::Client, "server-side")
        == Some(s)));
    p.server.close_channel(s).unwrap();
    assert!(
        p.run_until(Duration::from_secs(5), |p| p.closed(Side::Client, s)
            && p.server_got.len() == 2)
    );
    let got: Vec<(ChannelId, &[u8])> = p
        .server_got
        .iter()
        .map(|g| (g.channel, &g.data[..]))
        .collect();
    assert_eq!(got, [(a, &b"one"[..]), (b, &b"two"[..])]);
    let st = p.server.data_stats().unwrap();
    println!("server {st:?}\nclient {:?}", p.client.data_stats().unwrap());
    assert_eq!((st.channels_opened, st.channels_closed), (3, 2));
}

#[test]
fn many_channels_each_way_with_their_parity() {
    const N: usize = 100;
    let mut p = clean_pair("many", DataConfig::default(), DataConfig::default());
    let mut client_ids = Vec::new();
    let mut server_ids = Vec::new();
    for i in 0..N {
        client_ids.push(
            p.client
                .open_channel(ChannelConfig::reliable(format!("c{i}")))
                .unwrap(),
        );
        server_ids.push(
            p.server
                .open_channel(ChannelConfig::lossy(format!("s{i}")))
                .unwrap(),
        );
    }
    assert!(
        client_ids
            .iter()
            .enumerate()
            .all(|(i, c)| c.0 == 2 * i as u16),
        "client: 0, 2, 4, …"
    );
    assert!(
        server_ids
            .iter()
            .enumerate()
            .all(|(i, s)| s.0 == 2 * i as u16 + 1),
        "server: 1, 3, 5, …"
    );
    let all =
        |p: &Pair| labels_open(p, Side::Server) == 2 * N && labels_open(p, Side::Client) == 2 * N;
    assert!(
        p.run_until(Duration::from_secs(10), all),
        "every channel open on both sides"
    );
    let now = p.now;
    for i in 0..N {
        p.client
            .send_data(now, client_ids[i], false, format!("c{i}").as_bytes())
            .unwrap();
        p.server
            .send_data(now, server_ids[i], false, format!("s{i}").as_bytes())
            .unwrap();
    }
    assert!(
        p.run_until(Duration::from_secs(10), |p| p.server_got.len() == N
            && p.client_got.len() == N)
    );
    for (side, peer_ids, prefix) in [
        (Side::Server, &client_ids, "c"),
        (Side::Client, &server_ids, "s"),
    ] {
        for g in p.got(side) {
            let i = peer_ids
                .iter()
                .position(|&c| c == g.channel)
                .expect("known channel");
            assert_eq!(
                g.data,
                format!("{prefix}{i}").as_bytes(),
                "message on its own channel"
            );
            assert_eq!(p.opened(side, &format!("{prefix}{i}")), Some(g.channel));
        }
    }
    // The peer's channels carry the peer's settings.
    assert!(p.client_events.iter().any(|e| matches!(e,
        SessionEvent::ChannelOpen { label, ordered: false, reliability: Reliability::MaxRetransmits(0), negotiated: false, .. } if label == "s7")));
}

#[test]
fn negotiated_channels_open_without_dcep() {
    let mut p = clean_pair("negotiated", DataConfig::default(), DataConfig::default());
    let cfg = ChannelConfig {
        negotiated: Some(10),
        ..ChannelConfig::lossy("input")
    };
    let c = p.client.open_channel(cfg.clone()).unwrap();
    let s = p.server.open_channel(cfg.clone()).unwrap();
    assert_eq!((c, s), (ChannelId(10), ChannelId(10)));
    assert_eq!(
        p.client.open_channel(cfg),
        Err(DataError::IdUnavailable(10))
    );
    p.drain();
    let now = p.now;
    p.client.send_data(now, c, true, b"left").unwrap();
    p.server.send_data(now, s, true, b"right").unwrap();
    assert!(
        p.run_until(Duration::from_secs(5), |p| p.server_got.len() == 1
            && p.client_got.len() == 1)
    );
    assert_eq!(p.server_got[0].data, b"left");
    assert_eq!(p.client_got[0].data, b"right");
    for side in [Side::Server, Side::Client] {
        // Each side reported its own open; no DCEP crossed the wire.
        assert!(matches!(
            p.events(side)
                .iter()
                .find(|e| matches!(e, SessionEvent::ChannelOpen { .. })),
            Some(SessionEvent::ChannelOpen {
                id: ChannelId(10),
                negotiated: true,
                ..
            })
        ));
        let st = *p.session(side).data_stats().unwrap();
        assert_eq!(
            (st.channels_opened, st.drop_dcep, st.drop_unopened),
            (1, 0, 0)
        );
    }
}

#[test]
fn data_on_a_stream_nobody_opened_is_dropped_and_the_stream_reset() {
    let mut p = clean_pair("unopened", DataConfig::default(), DataConfig::default());
    // Negotiated on the client only: the server never agreed to id 20.
    let c = p
        .client
        .open_channel(ChannelConfig {
            negotiated: Some(20),
            ..ChannelConfig::reliable("rogue")
        })
        .unwrap();
    p.drain();
    let now = p.now;
    p.client.send_data(now, c, false, b"who?").unwrap();
    assert!(
        p.run_until(Duration::from_secs(5), |p| p.closed(Side::Client, c)),
        "the client sees its stream reset"
    );
    let st = p.server.data_stats().unwrap();
    assert!(p.server_got.is_empty());
    assert_eq!(
        (st.drop_unopened, st.channels_refused, st.channels_opened),
        (1, 1, 0)
    );
}

#[test]
fn remote_channels_past_max_channels_are_refused() {
    let server = DataConfig {
        max_channels: 4,
        ..DataConfig::default()
    };
    let mut p = clean_pair("limit", server, DataConfig::default());
    let ids: Vec<ChannelId> = (0..6)
        .map(|i| {
            p.client
                .open_channel(ChannelConfig::reliable(format!("x{i}")))
                .unwrap()
        })
        .collect();
    p.run_for(Duration::from_secs(3));
    let refused: Vec<ChannelId> = ids
        .iter()
        .copied()
        .filter(|&id| p.closed(Side::Client, id))
        .collect();
    println!(
        "server {:?}; refused {refused:?}",
        p.server.data_stats().unwrap()
    );
    assert_eq!(labels_open(&p, Side::Server), 4);
    assert_eq!(refused.len(), 2);
    assert_eq!(p.server.data_stats().unwrap().channels_refused, 2);
    // Our own opens obey the same limit.
    assert_eq!(
        p.server.open_channel(ChannelConfig::reliable("mine")),
        Err(DataError::TooManyChannels)
    );
}

#[test]
fn a_stream_id_past_max_streams_ends_the_association() {
    let server = DataConfig {
        max_streams: 64,
        ..DataConfig::default()
    };
    let mut p = clean_pair("streams", server, DataConfig::default());
    let ok = p
        .server
        .open_channel(ChannelConfig::reliable("kept"))
        .unwrap();
    assert!(p.run_until(Duration::from_secs(5), |p| p
        .opened(Side::Client, "kept")
        .is_some()));
    let c = p
        .client
        .open_channel(ChannelConfig {
            negotiated: Some(500),
            ..ChannelConfig::reliable("far")
        })
        .unwrap();
    p.drain();
    let now = p.now;
    p.client.send_data(now, c, false, b"x").unwrap();
    p.run_for(Duration::from_secs(2));
    let st = p.server.data_stats().unwrap();
    println!("server {st:?} events {:?}", p.server_events);
    assert_eq!(st.aborts, 1);
    assert!(p.server_events.contains(&SessionEvent::SctpClosed));
    assert!(
        p.closed(Side::Server, ok),
        "its channels are reported closed"
    );
    assert!(p.server_got.is_empty());
    assert_eq!(
        p.server.open_channel(ChannelConfig::reliable("again")),
        Err(DataError::Closed)
    );
}

#[test]
fn the_association_comes_up_through_lost_handshake_packets() {
    // 30% loss each way from the first INIT on; INIT and COOKIE are
    // retransmitted until they get through (ICE, not SCTP, gives up).
    let mut p = Pair::init_over(
        "handshake",
        DataConfig::default(),
        DataConfig::default(),
        link(61, 0.3, DELAY),
        link(62, 0.3, DELAY),
    );
    let start = p.now;
    p.wait_sctp();
    println!(
        "up after {:?}; links up {:?} down {:?}",
        p.now - start,
        p.up.stats(),
        p.down.stats()
    );
}

#[test]
fn sctp_to_a_session_without_data_channels_is_dropped_and_counted() {
    let mut now = common::t0();
    let c_addr = session_harness::addr(CLIENT);
    let (mut server, mut client) = session_harness::webrtc_pair(now, "nodata", c_addr);
    session_harness::connect(&mut now, &mut server, &mut client, c_addr);
    client.enable_data_channels(DataConfig::default()).unwrap();
    session_harness::run_for(
        &mut now,
        Duration::from_secs(3),
        &mut server,
        session_harness::addr(session_harness::SERVER),
        &mut client,
        c_addr,
    );
    let dropped = server.stats().drop_sctp;
    println!("server dropped {dropped} SCTP packets (INIT and its retransmissions)");
    assert!(dropped >= 2);
    assert!(!client.is_data_connected());
    assert_eq!(
        server.open_channel(ChannelConfig::reliable("x")),
        Err(DataError::NotEnabled)
    );
    assert!(server.is_connected(), "media is not disturbed");
}
