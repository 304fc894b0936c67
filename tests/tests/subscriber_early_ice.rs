//! A subscriber's ICE checks are answered as soon as it has our offer, before its answer is
//! back: a browser starts checking right after applying the offer, and checks for a session
//! the dataplane does not know yet were dropped (Chromium, having sent three unanswered pings
//! of a pair, then paces it at ~900 ms, so the subscriber PC connected ~1 s late).

#[path = "../../control/tests/api_support/mod.rs"]
mod api_support;
mod node_support;

use std::time::Duration;

use api_support::*;
use node_support::*;
use rtp_core::stun::{BindingRequest, IceRole, StunClass, StunMessage};
use serde_json::json;
use sluice_control::auth::Role;

const OFFER: &str = include_str!("../../control/tests/fixtures/sdp/chromium_cam_mic.sdp");

fn attr<'a>(sdp: &'a str, prefix: &str) -> &'a str {
    sdp.lines()
        .find_map(|l| l.strip_prefix(prefix))
        .unwrap_or_else(|| panic!("no {prefix} in {sdp}"))
        .trim()
}

/// Sends a Binding request as the controlling browser would, up to `tries` times 100 ms
/// apart; true when a success response comes back.
async fn check_answered(to: std::net::SocketAddr, ufrag: &str, pwd: &str, tries: u32) -> bool {
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let username = format!("{ufrag}:Cli1");
    let mut req = [0u8; 256];
    let mut resp = [0u8; 1500];
    for i in 0..tries {
        let n = BindingRequest {
            transaction_id: [i as u8 + 1; 12],
            username: username.as_bytes(),
            priority: 1_845_501_695,
            role: IceRole::Controlling(0x1234_5678),
            use_candidate: false,
            key: pwd.as_bytes(),
        }
        .write(&mut req)
        .unwrap();
        sock.send_to(&req[..n], to).await.unwrap();
        if let Ok(Ok((len, _))) =
            tokio::time::timeout(Duration::from_millis(100), sock.recv_from(&mut resp)).await
        {
            if StunMessage::parse(&resp[..len]).is_ok_and(|m| m.class() == StunClass::Success) {
                return true;
            }
        }
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriber_checks_answered_before_its_answer() {
    let Some((_dir, dp)) = loopback_dataplane(|_| {}) else {
        return;
    };
    let s = linked_server(&dp, |_| {}).await;

    let mut alice = join(s.addr, "alice", Role::Host).await;
    let mut bob = join(s.addr, "bob", Role::Controller).await;
    send(
        &mut alice,
        json!({"type": "publish", "cid": "a", "kind": "audio", "source": "microphone"}),
    )
    .await;
    recv_type(&mut alice, "track_published").await;
    let offer = OFFER.replace("a=sendrecv", "a=sendonly");
    send(
        &mut alice,
        json!({"type": "offer", "pc": "publisher", "sdp": offer, "req": 5}),
    )
    .await;
    recv_type(&mut alice, "answer").await;

    // Bob has our offer and has not answered: his checks must be answered already.
    let sub_offer = recv_type(&mut bob, "offer").await;
    let sdp = sub_offer["sdp"].as_str().unwrap();
    let ufrag = attr(sdp, "a=ice-ufrag:");
    let pwd = attr(sdp, "a=ice-pwd:");
    let cand: Vec<&str> = attr(sdp, "a=candidate:").split_whitespace().collect();
    let media: std::net::SocketAddr = format!("{}:{}", cand[4], cand[5]).parse().unwrap();
    assert!(
        check_answered(media, ufrag, pwd, 20).await,
        "no STUN success for the subscriber's ufrag {ufrag} before its answer"
    );
    drop(dp);
}
