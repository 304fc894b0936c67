//! Webhook delivery: each logged event is POSTed as JSON to every configured URL over a
//! minimal HTTP/1.1 client (plain TCP; receivers are on loopback or the LAN), signed with
//! `Sluice-Signature: t=<unix s>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>` and carrying
//! `Sluice-Event-Id` for de-duplication. At least once: a failed delivery is retried with
//! backoff (0.5 s doubling, 8 tries); the queue is bounded ([`QUEUE`]) and a full queue
//! drops the newest event with a warning.

use std::sync::Arc;
use std::time::Duration;

use aws_lc_rs::hmac;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use super::hub::Logged;
use super::App;

/// Events waiting for delivery.
pub(crate) const QUEUE: usize = 4096;
const TRIES: u32 = 8;

pub(crate) async fn deliver(app: Arc<App>, urls: Vec<String>, mut rx: mpsc::Receiver<Logged>) {
    while let Some(ev) = rx.recv().await {
        let body = ev.body.to_string();
        let id = ev.body["id"].as_str().unwrap_or_default().to_owned();
        for url in &urls {
            let mut wait = Duration::from_millis(500);
            for attempt in 1..=TRIES {
                let t = app.now_ms() / 1000;
                let sig = app.webhook_key.as_ref().map(|(_, secret)| {
                    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
                    let tag = hmac::sign(&key, format!("{t}.{body}").as_bytes());
                    let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
                    format!("t={t},v1={hex}")
                });
                match post(url, &body, &id, sig.as_deref()).await {
                    Ok(status) if (200..300).contains(&status) => break,
                    Ok(status) => tracing::warn!(url, status, attempt, "webhook refused"),
                    Err(e) => tracing::warn!(url, error = %e, attempt, "webhook failed"),
                }
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(30));
            }
        }
    }
}

/// POSTs `body` to an `http://host:port/path` URL; returns the status code.
pub(crate) async fn post(
    url: &str,
    body: &str,
    id: &str,
    sig: Option<&str>,
) -> std::io::Result<u16> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| std::io::Error::other("only http:// URLs"))?;
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let addr = if host.contains(':') {
        host.to_owned()
    } else {
        format!("{host}:80")
    };
    let io = async {
        let mut s = TcpStream::connect(&addr).await?;
        let mut req = format!(
            "POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\nSluice-Event-Id: {id}\r\n",
            body.len()
        );
        if let Some(sig) = sig {
            req.push_str(&format!("Sluice-Signature: {sig}\r\n"));
        }
        req.push_str("\r\n");
        req.push_str(body);
        s.write_all(req.as_bytes()).await?;
        let mut head = vec![0u8; 1024];
        let n = s.read(&mut head).await?;
        let line = std::str::from_utf8(&head[..n]).unwrap_or("");
        line.split(' ')
            .nth(1)
            .and_then(|c| c.parse::<u16>().ok())
            .ok_or_else(|| std::io::Error::other("bad HTTP status line"))
    };
    tokio::time::timeout(Duration::from_secs(5), io)
        .await
        .map_err(|_| std::io::Error::other("timeout"))?
}
