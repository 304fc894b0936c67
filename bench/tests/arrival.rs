//! The generator's arrival stamp (`--arrival kernel`, the default): a copy that waited in its
//! socket before the generator's one thread got to it is measured to when the kernel received
//! it, not to when it was read. Before, the generator stamped the read, so during a keyframe's
//! burst (hundreds of sockets read in turn, every copy decrypted) its own backlog was counted as
//! the SFU's latency.

use std::time::{Duration, Instant};

use bench::limit::open_endpoint;
use bench::tag::{arrival_ns, wall_now};
use sluice_dataplane::pool::BufPool;
use sluice_dataplane::sys::{Backend, RecvMeta, Transmit};

/// Sends one datagram from `tx` to `rx`, lets it wait `wait` unread, reads it; returns
/// (sent, read, arrival, stamped) in ns since `base`.
fn wait_in_socket(
    rx: &mut Backend,
    tx: &mut Backend,
    base: Instant,
    wait: Duration,
) -> (u64, u64, u64, bool) {
    let dst = rx.local_addr().expect("addr");
    let mut pool = BufPool::new(8);
    let id = pool.take().expect("buffer");
    pool.get_mut(id)[..4].copy_from_slice(b"ping");
    let one = [Transmit {
        buf: id,
        offset: 0,
        len: 4,
        dst,
        segment_size: None,
    }];
    assert_eq!(tx.send(&pool, &one).expect("send"), 1);
    let sent = base.elapsed().as_nanos() as u64;
    // The copy waits unread: that wait is what the stamp must not count.
    std::thread::sleep(wait);
    let mut metas = [RecvMeta::default(); 4];
    let t0 = Instant::now();
    let n = loop {
        let n = rx.recv(&mut pool, &mut metas).expect("recv");
        if n > 0 || t0.elapsed() > Duration::from_secs(5) {
            break n;
        }
        std::thread::yield_now();
    };
    assert_eq!(n, 1, "the datagram arrives");
    let read = base.elapsed().as_nanos() as u64;
    let at = arrival_ns(read, wall_now(), metas[0].stamp);
    (sent, read, at, metas[0].stamp.is_some())
}

#[test]
fn a_copy_read_late_is_measured_to_its_arrival() {
    let mut rx = open_endpoint(true).expect("receiver");
    let mut tx = open_endpoint(false).expect("sender");
    let base = Instant::now();
    // The kernel turns receive stamping on a moment after the first socket asks (a deferred
    // static key); until then it stamps a datagram when it is read. Poll for that, bounded.
    let wait = Duration::from_millis(20);
    let mut tries = 0;
    let (sent, read, at) = loop {
        tries += 1;
        let (sent, read, at, stamped) = wait_in_socket(&mut rx, &mut tx, base, wait);
        assert!(stamped, "the kernel stamped the datagram");
        if read - at >= 15_000_000 || tries == 100 {
            break (sent, read, at);
        }
    };
    println!(
        "try {tries}: sent {sent} ns, read {read} ns, kernel arrival {at} ns: {:.3} ms before the read",
        (read - at) as f64 / 1e6
    );
    assert!(
        read - at >= 15_000_000,
        "arrival {at} ns is the read ({read} ns), not the kernel's time"
    );
    // The sender's clock read follows its system call: allow a millisecond either way.
    assert!(
        at + 1_000_000 >= sent,
        "arrived {at} ns before it was sent ({sent} ns)"
    );
    assert!(at <= sent + 10_000_000, "loopback took {} ns", at - sent);
}

#[test]
fn without_the_stamp_the_read_is_the_arrival() {
    let mut rx = open_endpoint(false).expect("receiver");
    let mut tx = open_endpoint(false).expect("sender");
    let (_, read, at, stamped) =
        wait_in_socket(&mut rx, &mut tx, Instant::now(), Duration::from_millis(5));
    assert!(!stamped);
    assert_eq!(at, read);
}

#[test]
fn a_stamp_from_the_future_is_not_trusted() {
    let wall = Duration::from_secs(1_000);
    assert_eq!(
        arrival_ns(5_000, wall, Some(wall + Duration::from_nanos(1))),
        5_000
    );
    assert_eq!(
        arrival_ns(5_000, wall, Some(wall - Duration::from_nanos(300))),
        4_700
    );
    assert_eq!(arrival_ns(5_000, wall, Some(Duration::ZERO)), 0);
    assert_eq!(arrival_ns(5_000, wall, None), 5_000);
}
