//! A call between two `TestPeer`s (ICE, DTLS, SRTP) negotiated over the WebSocket signaling of
//! a real node: alice publishes Opus, bob receives it.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rtp_core::forward::{Codec as CoreCodec, MediaKind as CoreKind};
use serde_json::json;
use sluice_dataplane::testpeer::{generate_cert, IceCreds, TestPeer, WebRtcPeerConfig};

use super::{attr, audio_stream, candidate, rewrite, ALICE_AUDIO_SSRC, OFFER, OPUS_PT};
use crate::api_support::{recv_type, send, Ws};

/// One negotiation round: alice's publisher offer and bob's answer to the subscriber offer
/// carrying both tracks; then a thread drives both peers until `stop` (60 s at most), counting
/// alice's audio packets sent in `sent` and bob's received of them in `got`. A peer that fails
/// (its dataplane died) ends the thread or skips a turn: the counters show it.
pub async fn negotiate_and_run(
    alice: &mut Ws,
    bob: &mut Ws,
    tag: &str,
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    got: Arc<AtomicU64>,
) -> JoinHandle<()> {
    let alice_creds = IceCreds::new(format!("Alic{tag}"), "alicepassword0123456789");
    let alice_cert = generate_cert().unwrap();
    let offer = rewrite(
        OFFER,
        &alice_creds,
        &alice_cert.fingerprint().to_sdp(),
        "sendrecv",
        "sendonly",
        None,
    );
    send(
        alice,
        json!({"type": "offer", "pc": "publisher", "sdp": offer}),
    )
    .await;
    let answer = recv_type(alice, "answer").await["sdp"]
        .as_str()
        .unwrap()
        .to_owned();
    let bob_creds = IceCreds::new(format!("Bobb{tag}"), "bobpassword0123456789xx");
    let bob_cert = generate_cert().unwrap();
    let bob_fp = bob_cert.fingerprint().to_sdp();
    let mut sub_offer;
    loop {
        sub_offer = recv_type(bob, "offer").await["sdp"]
            .as_str()
            .unwrap()
            .to_owned();
        let a = rewrite(
            &sub_offer,
            &bob_creds,
            &bob_fp,
            "sendonly",
            "recvonly",
            Some("active"),
        );
        send(bob, json!({"type": "answer", "pc": "subscriber", "sdp": a})).await;
        if sub_offer.matches("m=").count() >= 2 {
            break;
        }
    }
    send(bob, json!({"type": "ping", "t": 1})).await;
    recv_type(bob, "pong").await;
    let (bob_pt, bob_ssrc) = audio_stream(&sub_offer);
    let alice_cfg = WebRtcPeerConfig {
        cert: alice_cert,
        ..WebRtcPeerConfig::new(
            alice_creds,
            IceCreds::new(attr(&answer, "ice-ufrag"), attr(&answer, "ice-pwd")),
            attr(&answer, "fingerprint"),
        )
        .unwrap()
    };
    let alice_server = candidate(&answer);
    let bob_cfg = WebRtcPeerConfig {
        cert: bob_cert,
        ..WebRtcPeerConfig::new(
            bob_creds,
            IceCreds::new(attr(&sub_offer, "ice-ufrag"), attr(&sub_offer, "ice-pwd")),
            attr(&sub_offer, "fingerprint"),
        )
        .unwrap()
    };
    let bob_server = candidate(&sub_offer);
    std::thread::spawn(move || {
        let Ok(mut alice) = TestPeer::connect(alice_server, &alice_cfg, Duration::from_secs(10))
        else {
            return;
        };
        let Ok(mut bob) = TestPeer::connect(bob_server, &bob_cfg, Duration::from_secs(10)) else {
            return;
        };
        if bob
            .expect_stream(
                CoreKind::Audio,
                CoreCodec::Opus,
                48_000,
                bob_pt,
                bob_ssrc,
                None,
            )
            .is_err()
        {
            return;
        }
        let end = Instant::now() + Duration::from_secs(60);
        let mut seq: u16 = 1;
        while !stop.load(Ordering::Relaxed) && Instant::now() < end {
            let published = alice.publish_rtp(
                seq,
                u32::from(seq) * 960,
                ALICE_AUDIO_SSRC,
                OPUS_PT,
                false,
                &[0xf8, 0xff, 0xfe],
            );
            seq = seq.wrapping_add(1);
            if published.is_err()
                || alice
                    .pump(Instant::now() + Duration::from_millis(2))
                    .is_err()
            {
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
            sent.fetch_add(1, Ordering::Relaxed);
            while let Ok(Some(m)) = bob.recv_media(Duration::from_millis(8)) {
                if m.ssrc == bob_ssrc {
                    got.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    })
}
