//! A `create_session` the dataplane does not answer within the link's 5 s: the client gets
//! `unavailable` (D118) and may send its offer again, which makes another session — so the
//! control daemon closes the one it gave up on, in case the dataplane makes it after all
//! (requests are served in order: the close follows the create). Before, that session stayed in
//! the dataplane, unknown to the daemon, until its ICE timeout. The close is queued before the
//! refusal goes out, so the client's retry at once still finds it ahead of its own
//! `create_session`. Through the real control daemon with a stand-in dataplane (the real
//! protocol) that never answers the first `create_session` and records every command.

mod api_support;
mod standin_support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use api_support::*;
use serde_json::json;
use sluice_control::auth::Role;
use sluice_proto::{Command, SessionId};
use tokio::net::UnixListener;

const OFFER: &str = include_str!("fixtures/sdp/chromium_cam_mic.sdp");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_session_given_up_on_is_closed() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("dp.sock");
    let listener = UnixListener::bind(&socket).unwrap();
    let log: Arc<Mutex<Vec<Command>>> = Arc::default();
    let creates = Arc::new(AtomicUsize::new(0));
    let (seen, n) = (Arc::clone(&log), Arc::clone(&creates));
    standin_support::serve(listener, "slow-dataplane", move |req, reply, out| {
        let first_create = matches!(req.command, Command::CreateSession(_))
            && n.fetch_add(1, Ordering::SeqCst) == 0;
        seen.lock().unwrap().push(req.command);
        if !first_create {
            let _ = out.send(reply);
        }
    });
    let s = start_with(|o| o.dataplane_socket = Some(socket.clone())).await;
    for _ in 0..200 {
        if http(s.addr, "GET", "/readyz", &[], "").await.0 == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut alice = join(s.addr, "alice", Role::Host).await;
    let offer = OFFER.replace("a=sendrecv", "a=sendonly");
    let t0 = Instant::now();
    send(
        &mut alice,
        json!({"type": "offer", "pc": "publisher", "sdp": offer, "req": 1}),
    )
    .await;
    let refused = tokio::time::timeout(Duration::from_secs(10), recv_type(&mut alice, "error"))
        .await
        .expect("the offer is refused after the link's timeout");
    println!("refused after {:?}: {refused}", t0.elapsed());
    assert_eq!(refused["code"], "unavailable", "{refused}");
    assert_eq!(refused["req"], 1, "{refused}");
    let held = log
        .lock()
        .unwrap()
        .iter()
        .find_map(|c| match c {
            Command::CreateSession(spec) => Some(spec.session),
            _ => None,
        })
        .expect("the create_session reached the dataplane");
    // The client's offer again at once: a new session, answered. The close of the one given up
    // on was queued before the refusal went out, so the dataplane sees it first (a trunk's retry
    // names the same remote address, which it gives one session at a time).
    send(
        &mut alice,
        json!({"type": "offer", "pc": "publisher", "sdp": offer, "req": 2}),
    )
    .await;
    let answer = recv_type(&mut alice, "answer").await;
    assert_eq!(answer["req"], 2, "{answer}");
    // One snapshot of the log for every question below.
    let log = log.lock().unwrap().clone();
    let sessions: Vec<SessionId> = log
        .iter()
        .filter_map(|c| match c {
            Command::CreateSession(spec) => Some(spec.session),
            _ => None,
        })
        .collect();
    assert_eq!(sessions.len(), 2, "{log:?}");
    let at = |f: &dyn Fn(&Command) -> bool| log.iter().position(f);
    let closed_at = at(&|c| matches!(c, Command::CloseSession { session } if *session == held));
    let second_at = at(&|c| matches!(c, Command::CreateSession(s) if s.session == sessions[1]));
    println!("create_session for {sessions:?}; {held:?} closed at command {closed_at:?}, the retry's create at {second_at:?}");
    let closed_at =
        closed_at.unwrap_or_else(|| panic!("{held:?}, given up on, was never closed: {log:?}"));
    assert!(
        Some(closed_at) < second_at,
        "the close went out after the retry's create_session: {log:?}"
    );
    assert!(
        !log.iter()
            .any(|c| matches!(c, Command::CloseSession { session } if *session == sessions[1])),
        "the session in use was closed"
    );
}
