//! Both UDP backends over loopback: echo, address metadata, GSO, SO_REUSEPORT, the waker,
//! buffer accounting and zero allocation per packet. io_uring cases are skipped, with a printed
//! reason, when the probe says the kernel can't run that backend.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use sluice_dataplane::pool::{BufPool, BUF_SIZE};
use sluice_dataplane::sys::{capabilities, Backend, IoMode, RecvMeta, SocketConfig, Transmit};

const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

fn modes() -> Vec<IoMode> {
    let caps = capabilities();
    println!("probe: {}", caps.log_line());
    let mut m = Vec::new();
    if caps.uring_usable() {
        m.push(IoMode::Uring);
    } else {
        println!("skipping io_uring cases: probe says multishot recvmsg/buf ring unavailable");
    }
    m.push(IoMode::Socket);
    m
}

fn open(mode: IoMode, port: u16) -> Backend {
    let cfg = SocketConfig::new(SocketAddr::new(LOCAL, port));
    let b = Backend::open_mode(mode, &cfg, 256).expect("open backend");
    assert_eq!(b.mode(), mode);
    b
}

fn fill_pattern(buf: &mut [u8], seq: u32) {
    for (k, b) in buf.iter_mut().enumerate() {
        *b = (seq as usize).wrapping_mul(31).wrapping_add(k) as u8;
    }
}

fn size_of_seq(seq: u32) -> usize {
    // Mixed sizes from 4 (room for the sequence number) to 1404 bytes.
    4 + (seq as usize * 37) % 1401
}

/// Receives into `out` until at least one datagram arrived or `deadline` passed.
fn recv_some(
    b: &mut Backend,
    pool: &mut BufPool,
    out: &mut [RecvMeta],
    deadline: Instant,
) -> usize {
    loop {
        let n = b.recv(pool, out).expect("recv");
        if n > 0 {
            return n;
        }
        let now = Instant::now();
        if now >= deadline {
            return 0;
        }
        b.wait(Some((deadline - now).min(Duration::from_millis(100))))
            .expect("wait");
    }
}

/// Hands `tx` to the kernel the way a worker does (`submit`, then the wait's enter); the backend
/// gives each buffer back to `pool` itself (socket: at once; io_uring: when `recv` reaps the
/// send's completion). Returns how many transmits went.
fn submit_all(b: &mut Backend, pool: &mut BufPool, tx: &[Transmit]) -> usize {
    let mut at = 0;
    let deadline = Instant::now() + Duration::from_secs(5);
    while at < tx.len() && Instant::now() < deadline {
        let o = b.submit(pool, &tx[at..]).expect("submit");
        at += o.consumed;
        b.wait_for(Some(Duration::ZERO), false).expect("enter");
        if at < tx.len() {
            // Slots in flight: reaping frees them (and receives nothing we need here).
            let mut sink = [RecvMeta::default(); 8];
            let n = b.recv(pool, &mut sink).expect("recv");
            for m in &sink[..n] {
                pool.give(m.buf);
            }
        }
    }
    at
}

/// Reaps every outstanding send completion (io_uring), so the pool holds all its buffers.
fn reap_sends(b: &mut Backend, pool: &mut BufPool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut sink = [RecvMeta::default(); 8];
    while b.in_flight() > 0 && Instant::now() < deadline {
        b.wait_for(Some(Duration::from_millis(1)), false)
            .expect("wait");
        let n = b.recv(pool, &mut sink).expect("recv");
        for m in &sink[..n] {
            pool.give(m.buf);
        }
    }
    assert_eq!(b.in_flight(), 0, "send completions never came");
}

#[test]
fn echo_10k_mixed_sizes_with_metadata_and_no_leak() {
    const TOTAL: u32 = 10_000;
    const WINDOW: u32 = 32;
    for mode in modes() {
        let mut a = open(mode, 0);
        let mut b = open(mode, 0);
        let (mut pa, mut pb) = (BufPool::new(1024), BufPool::new(1024));
        let a_addr = a.local_addr().expect("addr");
        let b_addr = b.local_addr().expect("addr");
        let mut out = [RecvMeta::default(); 64];
        let mut echo = Vec::with_capacity(64);
        let (mut next, mut got) = (0u32, 0u32);
        let start = Instant::now();
        let deadline = start + Duration::from_secs(60);
        while got < TOTAL {
            assert!(
                Instant::now() < deadline,
                "{mode:?}: echo stalled at {got}/{TOTAL}"
            );
            // A: keep WINDOW datagrams in flight.
            let mut tx = Vec::with_capacity(WINDOW as usize);
            while next < TOTAL && next - got < WINDOW {
                let id = pa.take().expect("pool A has room");
                let len = size_of_seq(next);
                let buf = pa.get_mut(id);
                fill_pattern(&mut buf[..len], next);
                buf[..4].copy_from_slice(&next.to_be_bytes());
                tx.push(Transmit {
                    buf: id,
                    offset: 0,
                    len,
                    dst: b_addr,
                    segment_size: None,
                });
                next += 1;
            }
            if !tx.is_empty() {
                assert_eq!(submit_all(&mut a, &mut pa, &tx), tx.len());
            }
            // B: echo whatever arrived, from the very buffers it arrived in.
            let n = recv_some(
                &mut b,
                &mut pb,
                &mut out,
                Instant::now() + Duration::from_secs(5),
            );
            echo.clear();
            for m in &out[..n] {
                assert_eq!(m.src, a_addr, "{mode:?}: source address");
                assert_eq!(m.dst, Some(LOCAL), "{mode:?}: destination address");
                assert!(m.offset + m.len <= BUF_SIZE);
                echo.push(Transmit {
                    buf: m.buf,
                    offset: m.offset,
                    len: m.len,
                    dst: m.src,
                    segment_size: None,
                });
            }
            assert_eq!(submit_all(&mut b, &mut pb, &echo), echo.len());
            // A: check the echoes.
            let n = recv_some(
                &mut a,
                &mut pa,
                &mut out,
                Instant::now() + Duration::from_secs(5),
            );
            for m in &out[..n] {
                assert_eq!(m.src, b_addr);
                let p = &pa.get(m.buf)[m.offset..m.offset + m.len];
                let seq = u32::from_be_bytes(p[..4].try_into().expect("4 bytes"));
                assert_eq!(m.len, size_of_seq(seq), "{mode:?}: size of {seq}");
                let mut want = vec![0u8; m.len];
                fill_pattern(&mut want, seq);
                assert_eq!(&p[4..], &want[4..], "{mode:?}: payload of {seq}");
                pa.give(m.buf);
                got += 1;
            }
        }
        let secs = start.elapsed().as_secs_f64();
        println!(
            "{mode:?}: echoed {TOTAL} datagrams in {secs:.3}s = {:.0} round trips/s (debug build, informational)",
            f64::from(TOTAL) / secs
        );
        reap_sends(&mut a, &mut pa);
        reap_sends(&mut b, &mut pb);
        a.shutdown(&mut pa).expect("shutdown A");
        b.shutdown(&mut pb).expect("shutdown B");
        assert_eq!(pa.free_count(), pa.len(), "{mode:?}: pool A leaked");
        assert_eq!(pb.free_count(), pb.len(), "{mode:?}: pool B leaked");
        assert_eq!(b.stats().rx_truncated + b.stats().rx_errors, 0);
    }
}

/// `submit` with room in the socket: the whole batch is consumed in one call and arrives in
/// order, once; the socket backend's `try_send` too.
#[test]
fn submit_consumes_the_batch_in_order() {
    for mode in modes() {
        let mut a = open(mode, 0);
        let mut b = open(mode, 0);
        let (mut pa, mut pb) = (BufPool::new(256), BufPool::new(512));
        let b_addr = b.local_addr().expect("addr");
        let mut tx = Vec::new();
        for i in 0..150u8 {
            let id = pa.take().expect("room");
            pa.get_mut(id)[..300].fill(i);
            tx.push(Transmit {
                buf: id,
                offset: 0,
                len: 300,
                dst: b_addr,
                segment_size: None,
            });
        }
        if mode == IoMode::Socket {
            let o = a.try_send(&pa, &tx).expect("try_send");
            assert_eq!((o.sent, o.consumed), (150, 150), "{mode:?}");
            for t in &tx {
                pa.give(t.buf);
            }
        } else {
            assert!(
                a.try_send(&pa, &tx).is_err(),
                "io_uring sends only by submit"
            );
            let o = a.submit(&mut pa, &tx).expect("submit");
            assert_eq!(o.consumed, 150, "{mode:?}");
            a.wait_for(Some(Duration::ZERO), false).expect("enter");
        }
        assert_eq!(a.stats().tx_retry, 0);
        let mut out = [RecvMeta::default(); 64];
        let mut seen = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(5);
        while seen.len() < 150 && Instant::now() < deadline {
            let n = recv_some(&mut b, &mut pb, &mut out, deadline);
            for m in &out[..n] {
                seen.push(pb.get(m.buf)[m.offset]);
                pb.give(m.buf);
            }
        }
        assert_eq!(
            seen,
            (0..150).collect::<Vec<u8>>(),
            "{mode:?}: in order, once"
        );
        // A writable wait returns at once: the socket has room.
        let t0 = Instant::now();
        a.wait_for(Some(Duration::from_secs(2)), true)
            .expect("wait");
        assert!(
            t0.elapsed() < Duration::from_secs(1),
            "{mode:?}: writable wait"
        );
        reap_sends(&mut a, &mut pa);
        a.shutdown(&mut pa).expect("shutdown");
        b.shutdown(&mut pb).expect("shutdown");
        assert_eq!(
            pa.free_count(),
            pa.len(),
            "{mode:?}: every send buffer came back"
        );
    }
}

#[test]
fn gso_batch_of_10_arrives_as_10_datagrams() {
    for mode in modes() {
        let mut a = open(mode, 0);
        let mut b = open(mode, 0);
        let (mut pa, mut pb) = (BufPool::new(64), BufPool::new(512));
        let b_addr = b.local_addr().expect("addr");
        let gso_before = a.gso();
        let mut tx = Vec::new();
        for i in 0..10u8 {
            let id = pa.take().expect("room");
            pa.get_mut(id)[..1200].fill(i);
            tx.push(Transmit {
                buf: id,
                offset: 0,
                len: 1200,
                dst: b_addr,
                segment_size: Some(1200),
            });
        }
        assert_eq!(submit_all(&mut a, &mut pa, &tx), 10);
        let mut out = [RecvMeta::default(); 16];
        let mut seen = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(5);
        while seen.len() < 10 && Instant::now() < deadline {
            let n = recv_some(&mut b, &mut pb, &mut out, deadline);
            for m in &out[..n] {
                assert_eq!(m.len, 1200, "{mode:?}: segment size");
                let p = &pb.get(m.buf)[m.offset..m.offset + m.len];
                assert!(p.iter().all(|&x| x == p[0]));
                seen.push(p[0]);
                pb.give(m.buf);
            }
        }
        assert_eq!(
            seen,
            (0..10).collect::<Vec<u8>>(),
            "{mode:?}: 10 datagrams in order"
        );
        println!(
            "{mode:?}: GSO {} (enabled at open: {gso_before}, tx datagrams counted: {})",
            if a.gso() {
                "used"
            } else {
                "off (sent one by one)"
            },
            a.stats().tx_datagrams
        );
        reap_sends(&mut a, &mut pa);
        a.shutdown(&mut pa).expect("shutdown");
        b.shutdown(&mut pb).expect("shutdown");
        assert_eq!(pa.free_count(), pa.len());
        assert_eq!(pb.free_count(), pb.len());
    }
}

#[test]
fn two_reuseport_sockets_on_one_port_both_receive() {
    for mode in modes() {
        let mut s1 = open(mode, 0);
        let port = s1.local_addr().expect("addr").port();
        let mut s2 = open(mode, port);
        assert_eq!(s2.local_addr().expect("addr").port(), port);
        let (mut p1, mut p2) = (BufPool::new(256), BufPool::new(256));
        let target = SocketAddr::new(LOCAL, port);
        let mut out = [RecvMeta::default(); 64];
        let (mut n1, mut n2) = (0usize, 0usize);
        // The reuseport hash spreads source ports across the group; a few dozen sources
        // reach both sockets with overwhelming probability. Bounded at 256.
        let mut sent = 0usize;
        for _ in 0..256 {
            if n1 > 0 && n2 > 0 {
                break;
            }
            let src = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind source");
            src.send_to(b"hello", target).expect("send");
            sent += 1;
            // Exactly one of the two sockets gets it.
            let deadline = Instant::now() + Duration::from_secs(5);
            loop {
                let a = s1.recv(&mut p1, &mut out).expect("recv 1");
                for m in &out[..a] {
                    p1.give(m.buf);
                }
                let b = s2.recv(&mut p2, &mut out).expect("recv 2");
                for m in &out[..b] {
                    p2.give(m.buf);
                }
                n1 += a;
                n2 += b;
                if n1 + n2 == sent || Instant::now() >= deadline {
                    break;
                }
                s1.wait(Some(Duration::from_millis(1))).expect("wait");
            }
            assert_eq!(n1 + n2, sent, "{mode:?}: datagram lost");
        }
        println!("{mode:?}: reuseport split {n1}/{n2} over {sent} sources");
        assert!(n1 > 0 && n2 > 0, "{mode:?}: both sockets must receive");
        s1.shutdown(&mut p1).expect("shutdown");
        s2.shutdown(&mut p2).expect("shutdown");
    }
}

#[test]
fn waker_wakes_a_waiting_backend_from_another_thread() {
    for mode in modes() {
        let mut b = open(mode, 0);
        // The steering hint is accepted. (Not set in the reuseport test: it would steer every
        // loopback datagram to the socket whose CPU matches, which is its job.)
        b.set_incoming_cpu(0).expect("SO_INCOMING_CPU");
        let mut pool = BufPool::new(64);
        let mut out = [RecvMeta::default(); 4];
        assert_eq!(b.recv(&mut pool, &mut out).expect("recv"), 0);
        let waker = b.waker();
        let barrier = Arc::new(Barrier::new(2));
        let t = {
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                barrier.wait();
                waker.wake();
            })
        };
        barrier.wait();
        let start = Instant::now();
        b.wait(Some(Duration::from_secs(10))).expect("wait");
        let woke = start.elapsed();
        t.join().expect("waker thread");
        assert!(
            woke < Duration::from_secs(5),
            "{mode:?}: not woken ({woke:?})"
        );
        // The wake-up is consumed: the next idle wait runs to its timeout.
        assert_eq!(b.recv(&mut pool, &mut out).expect("recv"), 0);
        let start = Instant::now();
        b.wait(Some(Duration::from_millis(30))).expect("wait");
        assert!(
            start.elapsed() >= Duration::from_millis(25),
            "{mode:?}: wake-up not drained"
        );
        println!("{mode:?}: woken after {woke:?}");
        reap_sends(&mut b, &mut pool);
        b.shutdown(&mut pool).expect("shutdown");
        assert_eq!(pool.free_count(), pool.len());
    }
}

#[test]
fn recv_and_send_do_not_allocate() {
    const PACKETS: usize = 20_000;
    const BATCH: usize = 16;
    for mode in modes() {
        let mut b = open(mode, 0);
        let mut pool = BufPool::new(512);
        let me = b.local_addr().expect("addr");
        let mut out = [RecvMeta::default(); BATCH];
        let mut tx = [Transmit {
            buf: pool.take().expect("room"),
            offset: 0,
            len: 0,
            dst: me,
            segment_size: None,
        }; BATCH];
        pool.give(tx[0].buf);
        // One round: send BATCH datagrams to ourselves, receive them back.
        let mut round = |b: &mut Backend, pool: &mut BufPool| -> usize {
            for (i, t) in tx.iter_mut().enumerate() {
                let id = pool.take().expect("room");
                pool.get_mut(id)[..100 + i].fill(i as u8);
                *t = Transmit {
                    buf: id,
                    offset: 0,
                    len: 100 + i,
                    dst: me,
                    segment_size: None,
                };
            }
            let sent = submit_all(b, pool, &tx);
            let mut got = 0;
            let deadline = Instant::now() + Duration::from_secs(5);
            while got < sent {
                let n = recv_some(b, pool, &mut out, deadline);
                assert!(n > 0, "datagrams lost");
                for m in &out[..n] {
                    pool.give(m.buf);
                }
                got += n;
            }
            got
        };
        // Warm-up: first arming, lazy kernel state.
        for _ in 0..8 {
            round(&mut b, &mut pool);
        }
        let mut moved = 0;
        let info = allocation_counter::measure(|| {
            while moved < PACKETS {
                moved += round(&mut b, &mut pool);
            }
        });
        println!(
            "{mode:?}: {moved} packets sent and received, {} allocations",
            info.count_total
        );
        assert_eq!(
            info.count_total, 0,
            "{mode:?}: allocated on the packet path"
        );
        reap_sends(&mut b, &mut pool);
        b.shutdown(&mut pool).expect("shutdown");
        assert_eq!(pool.free_count(), pool.len());
    }
}
