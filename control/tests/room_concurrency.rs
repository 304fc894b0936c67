//! Rooms are actors: one room's dataplane round trip holds only that room. A stand-in
//! dataplane on the control socket (the real protocol, `sluice-proto` frames) holds back its
//! answer to room a's `create_session`; meanwhile a join to room b completes within 100 ms and
//! room b's publisher offer is answered. Room a's own next request waits its turn, and its
//! offer is answered once the dataplane answers.

mod api_support;
mod standin_support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use api_support::*;
use serde_json::json;
use sluice_control::auth::Role;
use sluice_proto::Command;
use tokio::net::UnixListener;
use tokio::sync::Notify;

const OFFER: &str = include_str!("fixtures/sdp/chromium_cam_mic.sdp");

/// The stand-in dataplane: answers every request at once, except the first `create_session`,
/// which waits for `release`.
struct HeldDataplane {
    /// Notified when the held request arrived.
    held: Arc<Notify>,
    release: Arc<Notify>,
    creates: Arc<AtomicUsize>,
}

async fn held_dataplane(listener: UnixListener) -> HeldDataplane {
    let dp = HeldDataplane {
        held: Arc::new(Notify::new()),
        release: Arc::new(Notify::new()),
        creates: Arc::new(AtomicUsize::new(0)),
    };
    let (held, release, creates) = (
        Arc::clone(&dp.held),
        Arc::clone(&dp.release),
        Arc::clone(&dp.creates),
    );
    standin_support::serve(listener, "held-dataplane", move |req, reply, out| {
        let first_create = matches!(req.command, Command::CreateSession(_))
            && creates.fetch_add(1, Ordering::SeqCst) == 0;
        if first_create {
            let (out, held, release) = (out.clone(), Arc::clone(&held), Arc::clone(&release));
            tokio::spawn(async move {
                held.notify_one();
                release.notified().await;
                let _ = out.send(reply);
            });
        } else {
            let _ = out.send(reply);
        }
    });
    dp
}

async fn connect(addr: std::net::SocketAddr, room: &str, identity: &str) -> Ws {
    let t = token(room, identity, Role::Host);
    let (ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/rtc?access_token={t}"))
        .await
        .unwrap();
    ws
}

async fn join_room(addr: std::net::SocketAddr, room: &str, identity: &str) -> Ws {
    let mut ws = connect(addr, room, identity).await;
    send(&mut ws, json!({"type": "join"})).await;
    recv_type(&mut ws, "joined").await;
    ws
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_dataplane_call_in_one_room_does_not_hold_another() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("dp.sock");
    let listener = UnixListener::bind(&socket).unwrap();
    let dp = held_dataplane(listener).await;
    let s = start_with(|o| o.dataplane_socket = Some(socket.clone())).await;
    for _ in 0..200 {
        if http(s.addr, "GET", "/readyz", &[], "").await.0 == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // Room a: alice's publisher offer; the dataplane holds the create_session.
    let mut alice = join_room(s.addr, "a", "alice").await;
    let offer = OFFER.replace("a=sendrecv", "a=sendonly");
    send(
        &mut alice,
        json!({"type": "offer", "pc": "publisher", "sdp": offer, "req": 1}),
    )
    .await;
    tokio::time::timeout(Duration::from_secs(5), dp.held.notified())
        .await
        .expect("room a's create_session reaches the dataplane");

    // Room b meanwhile: a join, then a publish, both done while room a waits. The join is
    // timed from its message to `joined` (the WebSocket connect before it is not room work).
    let mut bob = connect(s.addr, "b", "bob").await;
    let t0 = Instant::now();
    send(&mut bob, json!({"type": "join"})).await;
    recv_type(&mut bob, "joined").await;
    let join_took = t0.elapsed();
    send(
        &mut bob,
        json!({"type": "offer", "pc": "publisher", "sdp": offer, "req": 2}),
    )
    .await;
    let answer = recv_type(&mut bob, "answer").await;
    let publish_took = t0.elapsed();
    assert_eq!(answer["req"], 2);
    println!(
        "room a's create_session held; room b: join {join_took:?}, join + publish {publish_took:?}"
    );
    assert!(
        join_took < Duration::from_millis(100),
        "room b's join took {join_took:?} while room a waited on the dataplane"
    );

    // Room a's own next operation waits behind the held one...
    let mut carol = {
        let t = token("a", "carol", Role::Viewer);
        let (mut ws, _) =
            tokio_tungstenite::connect_async(format!("ws://{}/rtc?access_token={t}", s.addr))
                .await
                .unwrap();
        send(&mut ws, json!({"type": "join"})).await;
        ws
    };
    let early = tokio::time::timeout(Duration::from_millis(200), recv_type(&mut carol, "joined"));
    assert!(early.await.is_err(), "room a runs one operation at a time");
    // ...and both finish once the dataplane answers.
    dp.release.notify_one();
    let answer = recv_type(&mut alice, "answer").await;
    assert_eq!(answer["req"], 1);
    recv_type(&mut carol, "joined").await;
    s.stop();
}
