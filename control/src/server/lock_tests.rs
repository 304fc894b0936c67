//! Finding #8: a panic while a lock is held does not take the control plane down, and
//! `/healthz` fails while the daemon cannot take its own state lock. A real server and a real
//! WebSocket client; the lock is poisoned and held from inside (no client can make the server
//! panic on purpose).

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{Server, ServerOptions};
use crate::auth::{self, Claims, Grants, Role};

const SECRET: &str = "lock-test-secret-0123456789";

/// A server on 127.0.0.1:0 with one API key and nothing else configured (also the shutdown
/// tests' of the room actors).
pub(crate) fn options() -> ServerOptions {
    ServerOptions {
        http: "127.0.0.1:0".parse().unwrap(),
        api_keys: [("k".to_owned(), SECRET.to_owned())].into(),
        rooms: Default::default(),
        state_file: None,
        webhooks: Vec::new(),
        webhook_secret: None,
        webhook_ca_file: None,
        webhook: Default::default(),
        sse: Default::default(),
        static_dir: None,
        dataplane_socket: None,
        drain_deadline: Duration::from_secs(5),
        dev_tokens: false,
        hybrid: Default::default(),
        turn: None,
        limits: Default::default(),
        cluster: None,
        heap_bytes: None,
    }
}

async fn status(addr: std::net::SocketAddr, path: &str) -> u16 {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut out = String::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_string(&mut out)).await;
    out.split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poisoned_lock_does_not_stop_the_server_and_healthz_sees_a_stuck_one() {
    let server = Server::start(options()).await.unwrap();
    let (addr, app) = (server.addr, Arc::clone(&server.app));
    app.hub.poison();

    // A client joins after the poisoning: the hub still registers it.
    let n = auth::unix_seconds(std::time::SystemTime::now());
    let token = auth::mint(
        "k",
        SECRET.as_bytes(),
        &Claims {
            iss: "k".into(),
            sub: "alice".into(),
            room: "r".into(),
            role: Role::Host,
            grants: Grants::for_role(Role::Host),
            name: None,
            metadata: None,
            region: None,
            exp: n + 60,
            nbf: n - 1,
            iat: n,
        },
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/rtc"))
        .await
        .unwrap();
    ws.send(tokio_tungstenite::tungstenite::Message::text(
        serde_json::json!({"type": "join", "token": token}).to_string(),
    ))
    .await
    .unwrap();
    let first = tokio::time::timeout(Duration::from_secs(5), ws.next()).await;
    let joined =
        matches!(&first, Ok(Some(Ok(m))) if m.to_text().unwrap_or("").contains("\"joined\""));
    let healthy = status(addr, "/healthz").await;
    println!("after a poisoned hub lock: joined = {joined}, /healthz {healthy}");
    assert!(joined, "{first:?}");
    assert_eq!(healthy, 200);

    // The registry's lock held by a stuck thread: /healthz says so.
    let stuck = Arc::clone(&app);
    let holder = std::thread::spawn(move || stuck.registry.hold_for(Duration::from_secs(3)));
    tokio::time::sleep(Duration::from_millis(100)).await;
    let during = status(addr, "/healthz").await;
    holder.join().unwrap();
    let after = status(addr, "/healthz").await;
    println!("/healthz while the state lock is held: {during}; after: {after}");
    assert_eq!((during, after), (503, 200));
}
