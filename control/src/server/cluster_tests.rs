//! Tests of `server/cluster.rs`: routing by path, and the bound on a forwarded answer.

use super::*;

#[test]
fn routes_by_path() {
    let r = |m: Method, p: &str| match route_of(&m, p) {
        Route::Redirect { room, claim } => format!("redirect {room} {claim}"),
        Route::Forward { room, claim } => format!("forward {room} {claim}"),
        Route::CreateRoom => "create".into(),
        Route::ListRooms => "list".into(),
        Route::Pass => "pass".into(),
    };
    assert_eq!(r(Method::POST, "/whip/a%20b"), "redirect a b true");
    assert_eq!(r(Method::DELETE, "/whep/r/PA_1"), "redirect r false");
    assert_eq!(r(Method::POST, "/api/rooms/r/sessions"), "forward r true");
    assert_eq!(
        r(Method::GET, "/api/rooms/r/participants"),
        "forward r false"
    );
    assert_eq!(r(Method::POST, "/api/rooms"), "create");
    assert_eq!(r(Method::GET, "/api/rooms"), "list");
    assert_eq!(r(Method::GET, "/rtc"), "pass");
    assert_eq!(r(Method::GET, "/api/cluster"), "pass");
    assert_eq!(r(Method::POST, "/whip/%zz"), "pass");
    assert_eq!(r(Method::POST, "/whip/%ff"), "pass");
}

/// A home whose answer to a forwarded admin request never ends (chunked, up to 64 MiB): the
/// forwarding node stops at `MAX_FORWARD_ANSWER`, hangs up, answers its caller with an error
/// naming the limit, and counts it. Nothing is buffered past the limit.
#[tokio::test]
async fn a_forwarded_answer_over_the_limit_is_refused_and_counted() {
    use std::sync::atomic::AtomicU64;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let sent = Arc::new(AtomicU64::new(0));
    let counted = Arc::clone(&sent);
    const MAX_SENT: u64 = 64 * 1024 * 1024;
    let home = tokio::spawn(async move {
        let (mut sock, _) = listener.accept().await.unwrap();
        let (mut head, mut buf) = (Vec::new(), [0u8; 4096]);
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = sock.read(&mut buf).await.unwrap();
            assert!(n > 0, "request head");
            head.extend_from_slice(&buf[..n]);
        }
        sock.write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n")
            .await
            .unwrap();
        let chunk = vec![b'x'; 64 * 1024];
        let framed = [format!("{:x}\r\n", chunk.len()).as_bytes(), &chunk, b"\r\n"].concat();
        while counted.load(Ordering::Relaxed) < MAX_SENT {
            if sock.write_all(&framed).await.is_err() {
                break;
            }
            counted.fetch_add(chunk.len() as u64, Ordering::Relaxed);
        }
    });
    let mut d = crate::cluster::ClusterDraft::default();
    d.set("redis", "unix:/nonexistent/redis.sock").unwrap();
    d.set("node_id", "a").unwrap();
    d.set("advertise", "http://127.0.0.1:1").unwrap();
    let cluster = Cluster::new(d.finish().unwrap().unwrap()).unwrap();
    let req = Request::builder()
        .method(Method::GET)
        .uri("/api/rooms/r/participants")
        .body(Body::empty())
        .unwrap();
    let r = tokio::time::timeout(
        Duration::from_secs(20),
        forward(&cluster, req, &format!("http://{addr}")),
    )
    .await
    .expect("forward answers within 20 s");
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body = axum::body::to_bytes(r.into_body(), 64 * 1024)
        .await
        .unwrap();
    let v: Value = serde_json::from_slice(&body).unwrap();
    let msg = v["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(msg.contains("forwarding limit of 4194304 bytes"), "{v}");
    assert_eq!(v["error"]["field"], "cluster", "{v}");
    assert_eq!(cluster.metrics.forward_errors.load(Ordering::Relaxed), 1);
    tokio::time::timeout(Duration::from_secs(20), home)
        .await
        .expect("the forwarder hung up")
        .unwrap();
    let sent = sent.load(Ordering::Relaxed);
    // The limit plus what socket buffers hold; far from what the home would have sent.
    assert!(sent < MAX_SENT / 2, "home wrote {sent} bytes");
    println!("forwarded answer: home wrote {sent} bytes before the forwarder hung up; caller got {msg:?}");
}
