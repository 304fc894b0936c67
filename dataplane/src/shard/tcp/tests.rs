//! TcpSide against real loopback sockets: framing, the send queue's bounds, the cap and the
//! deadlines.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use rtp_core::net::Protocol;

use super::ring::TxRing;
use super::*;
use crate::pool::BufPool;
use crate::sys::RecvMeta;

#[test]
fn ring_wraps() {
    let mut r = TxRing::new(8);
    r.put(&[1, 2, 3, 4, 5, 6]);
    r.consume(5);
    r.put(&[7, 8, 9, 10]);
    let [a, b] = r.slices();
    assert_eq!([a, b].concat(), vec![6, 7, 8, 9, 10]);
    r.consume(5);
    assert_eq!(r.len, 0);
}

/// A side on a loopback port with one client connected and accepted.
fn side_with_client(cfg: TcpConfig) -> (TcpSide, TcpStream, BufPool, Instant) {
    let now = Instant::now();
    let listener = listen("127.0.0.1:0".parse().unwrap()).expect("listen");
    let mut side = TcpSide::new(listener, cfg, now).expect("side");
    let client = TcpStream::connect(side.local_addr()).expect("connect");
    let mut pool = BufPool::new(64);
    let mut out = Vec::new();
    for _ in 0..100 {
        side.poll(now, &mut pool, &mut out);
        if side.connections() == 1 {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(side.connections(), 1);
    (side, client, pool, now)
}

#[test]
fn a_backed_up_connection_drops_media_first_and_keeps_room_for_control() {
    let cfg = TcpConfig {
        send_queue_bytes: 16_384,
        ..TcpConfig::default()
    };
    let (mut side, client, _pool, now) = side_with_client(cfg);
    let peer = client.local_addr().unwrap();
    assert!(
        !side.send(peer, &[0; 100], false),
        "nothing goes to an unbound connection"
    );
    side.bind(now, peer);
    // The client never reads and nothing is flushed: the queue fills.
    let media = [0x80u8; 1000];
    let mut queued = 0;
    while side.send(peer, &media, true) {
        queued += 1;
    }
    assert_eq!(
        queued,
        (16_384 * 3 / 4) / 1002,
        "media stops at three quarters"
    );
    assert_eq!(side.stats.tx_media_dropped, 1);
    // STUN/DTLS/RTCP still fit in the last quarter, then are refused too (counted).
    let control = [1u8; 200];
    let mut control_queued = 0;
    while side.send(peer, &control, false) {
        control_queued += 1;
    }
    assert!(
        control_queued >= 16_384 / 4 / 202 - 1,
        "{control_queued} control frames"
    );
    assert_eq!(side.stats.tx_control_dropped, 1);
    drop(client);
}

#[test]
fn frames_are_cut_and_a_bad_length_closes() {
    let (mut side, mut client, mut pool, now) = side_with_client(TcpConfig::default());
    let peer = client.local_addr().unwrap();
    // Two frames in one write, the second split over two writes.
    client.write_all(&[0, 3, 1, 2, 3, 0, 4, 9]).unwrap();
    let mut out = Vec::new();
    let mut frames = Vec::new();
    let poll = |side: &mut TcpSide, pool: &mut BufPool, out: &mut Vec<RecvMeta>| {
        for _ in 0..100 {
            side.poll(now, pool, out);
            if !out.is_empty() {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    };
    poll(&mut side, &mut pool, &mut out);
    frames.extend(out.iter().map(|m| pool.get(m.buf)[..m.len].to_vec()));
    assert_eq!(
        frames,
        vec![vec![1, 2, 3]],
        "one frame per iteration until bound"
    );
    side.bind(now, peer);
    client.write_all(&[9, 9, 9]).unwrap();
    poll(&mut side, &mut pool, &mut out);
    frames.extend(out.iter().map(|m| pool.get(m.buf)[..m.len].to_vec()));
    assert_eq!(frames[1], vec![9, 9, 9, 9]);
    assert!(out
        .iter()
        .all(|m| m.proto == Protocol::Tcp && m.src == peer));
    // A length over a pool buffer: closed at once.
    client.write_all(&[0xff, 0xff, 0]).unwrap();
    for _ in 0..100 {
        side.poll(now, &mut pool, &mut out);
        if side.connections() == 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(side.stats.closed_bad_frame, 1);
    let mut closed = Vec::new();
    side.take_closed(&mut closed);
    assert_eq!(
        closed,
        vec![peer],
        "the worker hears a bound connection closed"
    );
    client
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let mut b = [0u8; 8];
    assert!(matches!(client.read(&mut b), Ok(0) | Err(_)));
}

#[test]
fn connections_past_the_cap_or_their_deadline_are_closed() {
    let cfg = TcpConfig {
        max_conns: 4,
        stun_timeout: Duration::from_millis(100),
        ..TcpConfig::default()
    };
    let now = Instant::now();
    let listener = listen("127.0.0.1:0".parse().unwrap()).expect("listen");
    let mut side = TcpSide::new(listener, cfg, now).expect("side");
    let clients: Vec<TcpStream> = (0..10)
        .map(|_| TcpStream::connect(side.local_addr()).expect("connect"))
        .collect();
    let mut pool = BufPool::new(16);
    let mut out = Vec::new();
    for _ in 0..100 {
        side.poll(now, &mut pool, &mut out);
        if side.stats.accepted + side.stats.refused_full == 10 {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!((side.stats.accepted, side.stats.refused_full), (4, 6));
    // The sweep after the deadline closes the four silent ones.
    side.poll(now + Duration::from_secs(1), &mut pool, &mut out);
    assert_eq!(side.connections(), 0);
    assert_eq!(side.stats.closed_no_stun, 4);
    for mut c in clients {
        c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let mut b = [0u8; 1];
        assert!(matches!(c.read(&mut b), Ok(0) | Err(_)));
    }
}
