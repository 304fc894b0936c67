//! A refused DTLS handshake reaches the client as a fatal alert, over real sockets through the
//! whole dataplane: the session's certificate check fails (the client's certificate is not
//! the one `CreateSession.remote_fingerprint` names), and the client — offering DTLS 1.2 only,
//! like GStreamer's webrtcbin, so the dataplane's own DTLS 1.2 server answers — learns it from
//! the alert at once instead of retransmitting until its own timeout. Before, the worker closed
//! the session on `DtlsFailed` before sending what it had queued, so the alert never left.

mod webrtc_harness;

use std::time::{Duration, Instant};

use rtp_core::dtls::ClientVersion;
use sluice_dataplane::testpeer::{generate_cert, IceCreds, PeerError, TestPeer, WebRtcPeerConfig};
use sluice_proto::{ReplyOk, SessionId};
use webrtc_harness::*;

#[test]
fn a_refused_dtls12_client_gets_the_alert() {
    for io in choices() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut rig = Rig::start(io, &dir);
        let id = SessionId(7);
        let server = IceCreds::new("srv7", "serverpassword0123456789ab");
        let cfg = WebRtcPeerConfig {
            dtls_version: ClientVersion::Dtls12,
            ..WebRtcPeerConfig::new(
                IceCreds::new("cli7", "clientpassword0123456789ab"),
                server.clone(),
                &rig.fingerprint,
            )
            .expect("cfg")
        };
        // The session expects another certificate's fingerprint.
        let other = generate_cert().expect("cert").fingerprint().to_sdp();
        match rig
            .ctl
            .request(webrtc_session(id, &server, &other))
            .expect("create")
        {
            ReplyOk::SessionCreated { .. } => {}
            r => panic!("unexpected {r:?}"),
        }
        let t0 = Instant::now();
        let r = TestPeer::connect(rig.media_addr(), &cfg, Duration::from_secs(20));
        let took = t0.elapsed();
        println!(
            "backend {:?}: client saw {:?} after {took:?}",
            rig.dp().io_mode(),
            r.as_ref().err()
        );
        match r {
            Err(PeerError::DtlsFailed(_)) => {}
            Err(e) => panic!("expected the server's alert, got {e}"),
            Ok(_) => panic!("connected with the wrong certificate"),
        }
        // Well inside the client's own retransmission schedule (1 s, 2 s, 4 s …).
        assert!(took < Duration::from_secs(3), "{took:?}");
        let failed: u64 = rig
            .worker_stats()
            .iter()
            .map(|w| w.counters.dropped.get("dtls_failed").copied().unwrap_or(0))
            .sum();
        assert_eq!(failed, 1, "counted once");
        rig.stop();
    }
}
