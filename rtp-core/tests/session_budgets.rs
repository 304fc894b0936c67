//! A session's budgets (`rtp_core::budget`), time advanced by hand:
//! - NACKed sequence numbers (D121): a subscriber's NACKs are looked at up to `NACK_SEQS_PER_S`
//!   numbers a second, the rest of a NACK over it is not read (`nacks_over_budget`), and the
//!   budget refills with time.
//! - Published packets (D123): each layer of a publisher's track is forwarded up to
//!   `AUDIO_PACKETS_PER_S` / `VIDEO_PACKETS_PER_S` packets a second; a packet past that is
//!   received (its sequence number is not NACKed) but not forwarded (`drop_over_budget`).
//!
//! A trunk's peer is another node of ours, repairing and relaying for many sessions at once:
//! neither is budgeted on a trunk.

mod session_harness;

use std::time::{Duration, Instant};

use rtp_core::forward::{Codec, MediaKind};
use rtp_core::nack::NACK_SEQS_PER_S;
use rtp_core::packet::{rtcp, write_rtp_header, RtpHeader};
use rtp_core::session::{
    DownTrackConfig, ExtIds, LayerSsrc, Session, SessionConfig, SessionError, SessionMode,
    SessionOutput, TrunkKeys, UpTrackConfig, AUDIO_PACKETS_PER_S, VIDEO_PACKETS_PER_S,
};

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

/// A trunk session toward `to` keyed for `local` → `remote` (no keys: a trusted network).
fn trunk(now: Instant, local: &str, remote: &str, to: &str, keyed: bool) -> Session {
    const SECRET: [u8; 32] = [0x42; 32];
    let keys = keyed.then(|| TrunkKeys::derive(&SECRET, local, remote, 1).expect("keys"));
    Session::new(
        now,
        SessionConfig::new(SessionMode::Trunk {
            remote: addr(to),
            keys,
            silence: Duration::from_secs(2),
        }),
        &cert(),
    )
    .expect("trunk session")
}

#[test]
fn a_trunk_s_nacks_are_not_budgeted() {
    const RELAY_SSRC: u32 = 71_000;
    let now = t0();
    let mut a = trunk(now, "node-a", "node-b", "127.0.0.1:7002", true);
    let mut b = trunk(now, "node-b", "node-a", "127.0.0.1:7001", true);
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

const AUDIO_SSRC: u32 = 0x3333_0001;
const PT_OPUS: u8 = 111;

/// A published track of one layer: Opus audio or VP8 video on `ssrc`.
fn published(kind: MediaKind, ssrc: u32) -> UpTrackConfig {
    let (codec, clock_rate, payload_type) = match kind {
        MediaKind::Audio => (Codec::Opus, 48_000, PT_OPUS),
        MediaKind::Video => (Codec::Vp8, 90_000, PT_VP8),
    };
    UpTrackConfig {
        kind,
        codec,
        clock_rate,
        payload_type,
        rtx_payload_type: None,
        layers: vec![LayerSsrc {
            ssrc: Some(ssrc),
            rtx_ssrc: None,
            rid: None,
        }],
        ext: ExtIds::default(),
        e2ee: false,
        mid: None,
    }
}

/// Hands `count` plain RTP packets of `ssrc` (sequence numbers from `first`) to `sfu` at `now`
/// from `from`; returns how many came out as media to forward and how many were refused for
/// the budget.
fn publish(
    sfu: &mut Session,
    now: Instant,
    from: &str,
    (ssrc, pt): (u32, u8),
    first: u16,
    count: u16,
) -> (u32, u32) {
    let (mut forwarded, mut over) = (0, 0);
    let mut buf = [0u8; 1500];
    for i in 0..count {
        let seq = first.wrapping_add(i);
        let h = write_rtp_header(
            &RtpHeader {
                pt,
                marker: false,
                seq,
                ts: u32::from(seq) * 960,
                ssrc,
                csrcs: &[],
                extensions: &[],
            },
            &mut buf,
        )
        .expect("header");
        // A VP8 descriptor and delta-frame tag, or an Opus frame: either way 100 bytes.
        buf[h..h + 100].fill(0);
        buf[h + 1] = 0x01;
        match sfu.handle_datagram(now, addr(from), &mut buf[..h + 100]) {
            Ok(SessionOutput::Media { .. }) => forwarded += 1,
            Err(SessionError::OverBudget) => over += 1,
            other => panic!("packet {seq}: {other:?}"),
        }
        while sfu.poll_output().is_some() {}
    }
    (forwarded, over)
}

#[test]
fn a_publisher_s_layers_are_forwarded_up_to_their_budgets() {
    let mut now = t0();
    let client = "127.0.0.1:6002";
    let (mut sfu, _) = plain_pair(now, addr(client));
    sfu.add_up_track(published(MediaKind::Audio, AUDIO_SSRC))
        .unwrap();
    sfu.add_up_track(published(MediaKind::Video, PUB_SSRC))
        .unwrap();

    // Ten times the budgets at one instant: a second's worth of each is forwarded.
    let audio = publish(
        &mut sfu,
        now,
        client,
        (AUDIO_SSRC, PT_OPUS),
        0,
        10 * AUDIO_PACKETS_PER_S as u16,
    );
    let video = publish(
        &mut sfu,
        now,
        client,
        (PUB_SSRC, PT_VP8),
        0,
        (10 * VIDEO_PACKETS_PER_S).min(60_000) as u16,
    );
    println!("at one instant: audio (forwarded, over budget) {audio:?}, video {video:?}");
    assert_eq!(audio, (AUDIO_PACKETS_PER_S, 9 * AUDIO_PACKETS_PER_S));
    assert_eq!(video, (VIDEO_PACKETS_PER_S, 9 * VIDEO_PACKETS_PER_S));
    assert_eq!(
        sfu.stats().drop_over_budget,
        u64::from(9 * (AUDIO_PACKETS_PER_S + VIDEO_PACKETS_PER_S))
    );

    // A tenth of a second later a tenth of each is back.
    now += Duration::from_millis(100);
    let audio = publish(&mut sfu, now, client, (AUDIO_SSRC, PT_OPUS), 2_000, 100);
    let video = publish(&mut sfu, now, client, (PUB_SSRC, PT_VP8), 60_000, 1_000);
    assert_eq!(
        audio,
        (AUDIO_PACKETS_PER_S / 10, 100 - AUDIO_PACKETS_PER_S / 10)
    );
    assert_eq!(
        video,
        (VIDEO_PACKETS_PER_S / 10, 1_000 - VIDEO_PACKETS_PER_S / 10)
    );

    // What a real publisher sends passes whole: 50 audio and 500 video packets a second for
    // ten seconds, after the budget has had a second to fill.
    now += Duration::from_secs(1);
    let (mut a, mut v) = ((0, 0), (0, 0));
    for k in 0..100u16 {
        now += Duration::from_millis(100);
        let x = publish(
            &mut sfu,
            now,
            client,
            (AUDIO_SSRC, PT_OPUS),
            3_000 + 5 * k,
            5,
        );
        let y = publish(
            &mut sfu,
            now,
            client,
            (PUB_SSRC, PT_VP8),
            2_000 + 50 * k,
            50,
        );
        a = (a.0 + x.0, a.1 + x.1);
        v = (v.0 + y.0, v.1 + y.1);
    }
    assert_eq!((a, v), ((500, 0), (5_000, 0)));
}

#[test]
fn a_trunk_s_relays_are_not_budgeted() {
    let now = t0();
    let mut edge = trunk(now, "node-b", "node-a", "127.0.0.1:7001", false);
    edge.add_up_track(published(MediaKind::Audio, AUDIO_SSRC))
        .unwrap();
    let relayed = publish(
        &mut edge,
        now,
        "127.0.0.1:7001",
        (AUDIO_SSRC, PT_OPUS),
        0,
        10 * AUDIO_PACKETS_PER_S as u16,
    );
    assert_eq!(relayed, (10 * AUDIO_PACKETS_PER_S, 0));
}
