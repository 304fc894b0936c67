//! A session's budget of NACKed sequence numbers (D121): a subscriber's NACKs are looked at up
//! to `NACK_SEQS_PER_S` numbers a second, the rest of a NACK over it is not read
//! (`nacks_over_budget`), and the budget refills with time. A trunk's peer is another node of
//! ours, repairing many relays at once: its NACKs are not budgeted. Time is advanced by hand.

mod session_harness;

use std::time::{Duration, Instant};

use rtp_core::nack::NACK_SEQS_PER_S;
use rtp_core::packet::rtcp;
use rtp_core::session::{DownTrackConfig, Session, SessionConfig, SessionMode, TrunkKeys};

use session_harness::*;

/// Numbers one NACK datagram names: 290 entries of 17.
const PER_NACK: u16 = 290 * 17;

/// `from` sends `count` NACKs of `PER_NACK` numbers for `ssrc` to `to` at `now`.
fn flood(
    now: Instant,
    from: &mut Session,
    to: &mut Session,
    from_addr: &str,
    ssrc: u32,
    count: u32,
) {
    let seqs: Vec<u16> = (0..PER_NACK).collect();
    let mut nack = vec![0u8; 1500];
    let n = rtcp::write_nack(&mut nack, from.local_ssrc(), ssrc, &seqs).unwrap();
    for _ in 0..count {
        let mut dg = vec![0u8; 1500];
        let (len, _) = from.send_rtcp(now, &nack[..n], &mut dg).unwrap();
        to.handle_datagram(now, addr(from_addr), &mut dg[..len])
            .unwrap();
        while to.poll_output().is_some() {}
    }
}

/// Sequence numbers the session looked at: turned into retransmissions or refused as unknown.
fn looked_at(s: &Session) -> u64 {
    s.stats().nacks_in + s.stats().retransmit_suppressed
}

#[test]
fn a_subscriber_s_nacks_are_looked_at_up_to_the_budget() {
    let mut now = t0();
    let client = addr("127.0.0.1:6002");
    let (mut sfu, mut sub) = plain_pair(now, client);
    sfu.add_down_track(down_track()).unwrap();

    // Ten NACKs at once: the budget's one second's worth, then nothing.
    flood(now, &mut sub, &mut sfu, "127.0.0.1:6002", DOWN_SSRC, 10);
    let first = looked_at(&sfu);
    println!(
        "10 NACKs of {PER_NACK}: {first} numbers looked at, {} NACKs cut short",
        sfu.stats().nacks_over_budget
    );
    assert_eq!(first, u64::from(NACK_SEQS_PER_S));
    assert_eq!(
        sfu.stats().nacks_over_budget,
        10,
        "the first is cut short too"
    );

    // A quarter of a second later a quarter of the budget is back.
    now += Duration::from_millis(250);
    flood(now, &mut sub, &mut sfu, "127.0.0.1:6002", DOWN_SSRC, 1);
    assert_eq!(looked_at(&sfu) - first, u64::from(NACK_SEQS_PER_S / 4));
}

#[test]
fn a_trunk_s_nacks_are_not_budgeted() {
    const SECRET: [u8; 32] = [0x42; 32];
    const RELAY_SSRC: u32 = 71_000;
    let now = t0();
    let trunk = |local: &str, remote: &str, to: &str| {
        let keys = TrunkKeys::derive(&SECRET, local, remote, 1).expect("keys");
        Session::new(
            now,
            SessionConfig::new(SessionMode::Trunk {
                remote: addr(to),
                keys: Some(keys),
                silence: Duration::from_secs(2),
            }),
            &cert(),
        )
        .expect("trunk session")
    };
    let mut a = trunk("node-a", "node-b", "127.0.0.1:7002");
    let mut b = trunk("node-b", "node-a", "127.0.0.1:7001");
    a.add_down_track(DownTrackConfig {
        ssrc: RELAY_SSRC,
        relay_layer: Some(0),
        ..down_track()
    })
    .unwrap();

    flood(now, &mut b, &mut a, "127.0.0.1:7002", RELAY_SSRC, 10);
    println!(
        "a trunk, 10 NACKs of {PER_NACK}: {} numbers looked at",
        looked_at(&a)
    );
    assert_eq!(looked_at(&a), 10 * u64::from(PER_NACK));
    assert_eq!(a.stats().nacks_over_budget, 0);
}
