//! Shared helpers for the API and signaling tests: an in-process server on 127.0.0.1:0,
//! token minting, a minimal HTTP/1.1 client, and signaling WebSocket helpers.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use sluice_control::auth::{self, AdminClaims, Claims, Grants, Role};
use sluice_control::room::RoomsConfig;
use sluice_control::server::{Server, ServerOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

pub const KEY: &str = "testkey";
pub const SECRET: &str = "test-secret-0123456789abcdef";

pub async fn start() -> Server {
    start_with(|_| {}).await
}

pub async fn start_with(f: impl FnOnce(&mut ServerOptions)) -> Server {
    let mut opts = ServerOptions {
        http: "127.0.0.1:0".parse().unwrap(),
        api_keys: BTreeMap::from([(KEY.to_owned(), SECRET.to_owned())]),
        rooms: RoomsConfig::default(),
        state_file: None,
        webhooks: Vec::new(),
        webhook_secret: None,
        webhook_ca_file: None,
        webhook: Default::default(),
        sse: Default::default(),
        static_dir: None,
        dataplane_socket: None,
        drain_deadline: Duration::from_secs(60),
        dev_tokens: false,
        hybrid: Default::default(),
        turn: None,
        limits: Default::default(),
        cluster: None,
        heap_bytes: None,
    };
    f(&mut opts);
    Server::start(opts).await.expect("server starts")
}

fn now() -> u64 {
    auth::unix_seconds(SystemTime::now())
}

pub fn admin() -> String {
    let n = now();
    auth::mint_admin(
        KEY,
        SECRET.as_bytes(),
        &AdminClaims {
            iss: KEY.into(),
            sub: "ops".into(),
            admin: true,
            exp: n + 600,
            nbf: n - 1,
            iat: n,
        },
    )
}

/// `Authorization` header value for `t`.
pub fn auth_header(t: &str) -> String {
    format!("Bearer {t}")
}

pub fn token(room: &str, identity: &str, role: Role) -> String {
    token_with(room, identity, role, SECRET, 600)
}

/// `ttl_s` may be negative (an expired token).
pub fn token_with(room: &str, identity: &str, role: Role, secret: &str, ttl_s: i64) -> String {
    let n = now();
    auth::mint(
        KEY,
        secret.as_bytes(),
        &Claims {
            iss: KEY.into(),
            sub: identity.into(),
            room: room.into(),
            role,
            grants: Grants::for_role(role),
            name: None,
            metadata: None,
            region: None,
            exp: (n as i64 + ttl_s) as u64,
            nbf: n - 3600,
            iat: n - 3600,
        },
    )
}

/// One request with `Connection: close`; returns status and the body parsed as JSON
/// (`Value::String` when it is not JSON).
pub async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, Value) {
    let (status, _, body) = http_raw(addr, method, path, headers, body).await;
    let v = serde_json::from_str(&body).unwrap_or(Value::String(body));
    (status, v)
}

pub async fn http_raw(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
        .await
        .expect("response within 10 s")
        .unwrap();
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_owned()
    };
    (status, head.to_owned(), body)
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((len, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(len.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// Asserts an error response: status, code and field.
pub fn assert_error(resp: &(u16, Value), status: u16, code: &str, field: Option<&str>) {
    assert_eq!(resp.0, status, "{resp:?}");
    assert_eq!(resp.1["error"]["code"], code, "{resp:?}");
    if let Some(f) = field {
        assert_eq!(resp.1["error"]["field"], f, "{resp:?}");
    }
}

/// A signaling WebSocket to the test server.
pub type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Sends one JSON message.
pub async fn send(ws: &mut Ws, v: Value) {
    ws.send(Message::text(v.to_string())).await.unwrap();
}

/// The next message of type `ty` (skipping others; an `error` fails the test), within 15 s each.
pub async fn recv_type(ws: &mut Ws, ty: &str) -> Value {
    for _ in 0..30 {
        let m = tokio::time::timeout(Duration::from_secs(15), ws.next())
            .await
            .unwrap_or_else(|_| panic!("no {ty} within 15 s"))
            .unwrap()
            .unwrap();
        if let Message::Text(t) = m {
            let v: Value = serde_json::from_str(&t).unwrap();
            if v["type"] == ty {
                return v;
            }
            assert_ne!(v["type"], "error", "while waiting for {ty}: {v}");
        }
    }
    panic!("no {ty} message");
}

/// The client is still in its call: a ping is answered, and nothing on the way is a `leave`
/// or a close.
pub async fn still_in_call(ws: &mut Ws, who: &str) {
    send(ws, json!({"type": "ping", "t": 7})).await;
    loop {
        let m = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .unwrap_or_else(|_| panic!("{who}: no pong within 5 s"))
            .unwrap_or_else(|| panic!("{who}: socket closed"))
            .unwrap_or_else(|e| panic!("{who}: socket error {e}"));
        match m {
            Message::Text(t) => {
                let v: Value = serde_json::from_str(&t).unwrap();
                assert_ne!(v["type"], "leave", "{who} was told to leave: {v}");
                if v["type"] == "pong" {
                    return;
                }
            }
            Message::Close(c) => panic!("{who}: closed {c:?}"),
            _ => {}
        }
    }
}

/// Joins room `m` as `identity` and waits for `joined`.
pub async fn join(addr: std::net::SocketAddr, identity: &str, role: Role) -> Ws {
    let t = token("m", identity, role);
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/rtc?access_token={t}"))
        .await
        .unwrap();
    send(&mut ws, json!({"type": "join"})).await;
    recv_type(&mut ws, "joined").await;
    ws
}
