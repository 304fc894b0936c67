//! Hostile input on a connected WebRTC session: random bytes, truncated RTP,
//! a bad SRTP tag, a replayed SRTP packet, STUN with the wrong integrity key,
//! DTLS garbage (from a validated and an unvalidated address) and RTCP with
//! bad lengths are each refused and counted by reason, and media keeps
//! flowing afterwards.

mod session_harness;

use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rtp_core::session::{Session, SessionError, SessionOutput};
use rtp_core::srtp::SrtpError;
use rtp_core::stun::{BindingRequest, IceRole};

use session_harness::*;

fn publish(now: std::time::Instant, i: u32, cl: &mut Session) -> Vec<u8> {
    let mut buf = vec![0u8; 1500];
    let n = vp8_packet(i, PUB_SSRC, &mut buf);
    let (len, _) = cl.protect_outgoing(now, &mut buf, n).unwrap();
    buf.truncate(len);
    buf
}

#[test]
fn garbage_is_counted_and_does_not_disturb_media() {
    let mut now = t0();
    let c1 = addr("127.0.0.1:6001");
    let stranger = addr("127.0.0.1:6666");
    let (mut s1, mut cl1) = webrtc_pair(now, "one", c1);
    connect(&mut now, &mut s1, &mut cl1, c1);
    s1.add_up_track(up_track(PT_VP8, PT_RTX, PUB_SSRC, PUB_RTX_SSRC))
        .unwrap();
    let mut i = 0;
    let media = |now, s1: &mut Session, cl1: &mut Session, i: &mut u32| {
        let mut pkt = publish(now, *i, cl1);
        *i += 1;
        matches!(
            s1.handle_datagram(now, c1, &mut pkt),
            Ok(SessionOutput::Media { .. })
        )
    };
    for _ in 0..10 {
        now += Duration::from_millis(5);
        assert!(media(now, &mut s1, &mut cl1, &mut i));
    }

    // Random datagrams of every first byte and length.
    let mut rng = StdRng::seed_from_u64(7);
    for _ in 0..2000 {
        let len = rng.gen_range(0..300);
        let mut d: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
        let from = if rng.gen_bool(0.5) { c1 } else { stranger };
        let r = s1.handle_datagram(now, from, &mut d);
        assert!(
            !matches!(r, Ok(SessionOutput::Media { .. })),
            "random bytes became media"
        );
    }
    let base = *s1.stats();

    // Truncated SRTP.
    let mut p = publish(now, i, &mut cl1);
    i += 1;
    assert!(s1.handle_datagram(now, c1, &mut p[..10]).is_err());
    // Bad tag.
    let mut p = publish(now, i, &mut cl1);
    i += 1;
    let last = p.len() - 1;
    p[last] ^= 1;
    assert_eq!(
        s1.handle_datagram(now, c1, &mut p),
        Err(SessionError::Srtp(SrtpError::AuthFailed))
    );
    // Replay of a packet already accepted.
    let p = publish(now, i, &mut cl1);
    i += 1;
    let mut copy = p.clone();
    assert!(matches!(
        s1.handle_datagram(now, c1, &mut copy),
        Ok(SessionOutput::Media { .. })
    ));
    let mut copy = p.clone();
    assert_eq!(
        s1.handle_datagram(now, c1, &mut copy),
        Err(SessionError::Srtp(SrtpError::Replayed))
    );
    // STUN with the wrong integrity key: answered 401, counted.
    let mut stun = vec![0u8; 256];
    let n = BindingRequest {
        transaction_id: [9; 12],
        username: b"sone:cone",
        priority: 1,
        role: IceRole::Controlling(1),
        use_candidate: true,
        key: b"not-the-password-at-all",
    }
    .write(&mut stun)
    .unwrap();
    assert_eq!(
        s1.handle_datagram(now, c1, &mut stun[..n]),
        Ok(SessionOutput::None)
    );
    let mut out = vec![0u8; 1500];
    let (n401, dest) = s1.poll_transmit(now, &mut out).expect("401 response");
    assert_eq!(dest, c1.into());
    assert_eq!(
        out[0] & 0x01,
        0x01,
        "error class: {:?}",
        &out[..n401.min(4)]
    );
    // DTLS garbage: from a stranger refused outright; from the peer dropped by the endpoint.
    let mut dtls = vec![22u8, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 9, 0, 3, 1, 2, 3];
    assert_eq!(
        s1.handle_datagram(now, stranger, &mut dtls),
        Err(SessionError::UnvalidatedSource)
    );
    let _ = s1.handle_datagram(now, c1, &mut dtls);
    // RTCP whose length field runs past the datagram, properly SRTCP-protected.
    let bad = [0x80u8, 201, 0x00, 0x10, 0, 0, 0, 1];
    let mut dg = vec![0u8; 256];
    let (n, _) = cl1.send_rtcp(now, &bad, &mut dg).unwrap();
    assert!(matches!(
        s1.handle_datagram(now, c1, &mut dg[..n]),
        Err(SessionError::Rtcp(_))
    ));
    // Unauthenticated SRTCP.
    let mut forged = vec![0x80u8, 200, 0, 6];
    forged.extend_from_slice(&[0x55; 40]);
    let before_forged = *s1.stats();
    assert!(matches!(
        s1.handle_datagram(now, c1, &mut forged),
        Err(SessionError::Srtp(_))
    ));
    let after = *s1.stats();
    assert_eq!(
        after.drop_auth + after.drop_srtp_other,
        before_forged.drop_auth + before_forged.drop_srtp_other + 1
    );

    let st = *s1.stats();
    assert!(
        st.drop_srtp_other > base.drop_srtp_other,
        "truncated: {st:?}"
    );
    assert!(st.drop_auth > base.drop_auth, "bad tag");
    assert_eq!(st.drop_replay, base.drop_replay + 1);
    assert_eq!(st.drop_stun, base.drop_stun + 1);
    assert_eq!(st.drop_unvalidated_source, base.drop_unvalidated_source + 1);
    assert_eq!(st.drop_malformed_rtcp, base.drop_malformed_rtcp + 1);
    assert!(base.drop_unsupported > 0 && base.drop_unvalidated_source > 0);

    // Media still flows.
    assert!(s1.is_connected());
    for _ in 0..10 {
        now += Duration::from_millis(5);
        assert!(media(now, &mut s1, &mut cl1, &mut i));
    }
}
