//! A cascade `create_session` the dataplane does not answer within the link's 5 s (D118): the
//! caller gets `unavailable` (503), and the session the daemon gave up on is closed at once, in
//! case the dataplane makes it after all (requests are served in order: the close follows the
//! create). Before, a trunk session or an edge viewer's session made that late stayed in the
//! dataplane, unknown to the daemon (these modes have no ICE to time them out), and kept its
//! fixed remote address: the dataplane refuses another session toward it. Two control daemons
//! on a real `redis-server`; the edge's dataplane is a stand-in (the real protocol) that records
//! every command and never answers the `create_session`s the test picks.

mod api_support;
mod cluster_support;
mod standin_support;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use api_support::*;
use cluster_support::{draft, free_port, Redis};
use serde_json::{json, Value};
use sluice_control::auth::Role;
use sluice_control::server::Server;
use sluice_proto::{Command, CreateSession, SessionId};
use tokio::net::UnixListener;

const OFFER: &str = include_str!("fixtures/sdp/chromium_cam_mic.sdp");

type Log = Arc<Mutex<Vec<Command>>>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trunk_session_given_up_on_is_closed() {
    let redis = Redis::start();
    let dir = tempfile::tempdir().unwrap();
    let log = standin(&dir.path().join("a.sock"), |_| true);
    let a = node(&redis, "a", Some(&dir.path().join("a.sock")), None).await;
    // b has no dataplane; it publishes a media address of its own for trunks.
    let _b = node(&redis, "b", None, Some("127.0.0.1:7881")).await;
    wait_media(a.addr, &["a", "b"]).await;

    // b asks a for its side of the pair's trunk: a's create_session is never answered.
    let t0 = Instant::now();
    let r = post(
        a.addr,
        "/internal/cascade/trunks",
        json!({"node": "b", "epoch": 1}),
    )
    .await;
    println!("refused after {:?}: {r:?}", t0.elapsed());
    assert_error(&r, 503, "unavailable", None);
    let held = created(&log, "trk").expect("the trunk's create_session reached the dataplane");
    wait_closed(&log, held).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edge_viewer_session_given_up_on_is_closed() {
    let redis = Redis::start();
    let dir = tempfile::tempdir().unwrap();
    let (sock_a, sock_b) = (dir.path().join("a.sock"), dir.path().join("b.sock"));
    // The edge (a) answers everything but its viewer's create_session; the home (b) everything.
    let log = standin(&sock_a, |spec| spec.ice.ufrag.starts_with("view"));
    let _ = standin(&sock_b, |_| false);
    let a = node(&redis, "a", Some(&sock_a), None).await;
    let b = node(&redis, "b", Some(&sock_b), None).await;
    wait_media(a.addr, &["a", "b"]).await;

    // Room m, homed on b, where alice publishes her microphone.
    let r = post(b.addr, "/api/rooms", json!({"name": "m"})).await;
    assert_eq!(r.0, 201, "{r:?}");
    let mut alice = join(b.addr, "alice", Role::Host).await;
    send(
        &mut alice,
        json!({"type": "publish", "cid": "mic", "kind": "audio", "source": "microphone"}),
    )
    .await;
    let published = recv_type(&mut alice, "track_published").await;
    let sid = published["track"]["sid"].as_str().unwrap().to_owned();
    let offer = OFFER.replace("a=sendrecv", "a=sendonly");
    send(
        &mut alice,
        json!({"type": "offer", "pc": "publisher", "sdp": offer}),
    )
    .await;
    recv_type(&mut alice, "answer").await;

    // A viewer of it on a: trunk and relay are set up, the viewer's session is never answered.
    let t0 = Instant::now();
    let body = json!({"room": "m", "track": sid, "remote": "127.0.0.1:5004"});
    let r = post(a.addr, "/internal/cascade/viewers", body).await;
    println!("refused after {:?}: {r:?}", t0.elapsed());
    assert_error(&r, 503, "unavailable", None);
    assert!(
        created(&log, "trk").is_some(),
        "the viewer got as far as the trunk"
    );
    let held = created(&log, "view").expect("the viewer's create_session reached the dataplane");
    wait_closed(&log, held).await;
}

/// A stand-in dataplane on `socket` that records every command and leaves each
/// `create_session` for which `withhold` says so unanswered.
fn standin(socket: &Path, withhold: impl Fn(&CreateSession) -> bool + Send + 'static) -> Log {
    let listener = UnixListener::bind(socket).unwrap();
    let log: Log = Arc::default();
    let seen = Arc::clone(&log);
    standin_support::serve(listener, "standin", move |req, reply, out| {
        let held = matches!(&req.command, Command::CreateSession(spec) if withhold(spec));
        seen.lock().unwrap().push(req.command);
        if !held {
            let _ = out.send(reply);
        }
    });
    log
}

/// Cluster node `id`, with the dataplane on `socket` and the trunk media address `media`.
async fn node(redis: &Redis, id: &str, socket: Option<&Path>, media: Option<&str>) -> Server {
    let port = free_port();
    let mut d = draft(redis, id, &format!("http://127.0.0.1:{port}"), 1500);
    if let Some(m) = media {
        d.set("media", m).unwrap();
    }
    let c = d.finish().unwrap().unwrap();
    let socket = socket.map(Path::to_path_buf);
    start_with(move |o| {
        o.http = SocketAddr::from(([127, 0, 0, 1], port));
        o.cluster = Some(c);
        o.dataplane_socket = socket;
    })
    .await
}

/// Waits until `addr` sees the nodes `ids` live, each with its media address published.
async fn wait_media(addr: SocketAddr, ids: &[&str]) {
    let a = auth_header(&admin());
    let started = Instant::now();
    loop {
        let (s, v) = http(addr, "GET", "/api/cluster", &[("Authorization", &a)], "").await;
        let nodes = v["nodes"].as_array().cloned().unwrap_or_default();
        let ready = |id: &&str| {
            nodes
                .iter()
                .any(|n| n["id"] == *id && n["media"].as_str().is_some_and(|m| !m.is_empty()))
        };
        if s == 200 && ids.iter().all(ready) {
            return;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "cluster: {v}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `POST path` with `body` as the admin.
async fn post(addr: SocketAddr, path: &str, body: Value) -> (u16, Value) {
    let a = auth_header(&admin());
    let h = [
        ("Authorization", a.as_str()),
        ("Content-Type", "application/json"),
    ];
    http(addr, "POST", path, &h, &body.to_string()).await
}

/// The last session the stand-in was asked to create with an ICE ufrag starting `prefix`.
fn created(log: &Log, prefix: &str) -> Option<SessionId> {
    log.lock().unwrap().iter().rev().find_map(|c| match c {
        Command::CreateSession(spec) if spec.ice.ufrag.starts_with(prefix) => Some(spec.session),
        _ => None,
    })
}

/// Polls (3 s at most) for a `close_session` of `id` at the stand-in.
async fn wait_closed(log: &Log, id: SessionId) {
    let closed = || {
        log.lock()
            .unwrap()
            .iter()
            .any(|c| matches!(c, Command::CloseSession { session } if *session == id))
    };
    let wait = Instant::now();
    while !closed() {
        assert!(
            wait.elapsed() < Duration::from_secs(3),
            "{id:?}, given up on, was never closed: {:?}",
            log.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    println!("{id:?} closed, seen {:?} after the refusal", wait.elapsed());
}
