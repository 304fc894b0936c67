//! Webhooks through a real server: each receiver URL is its own lane, so one that never answers
//! delays only itself — the other receives every event, in each room's order, at once; deliveries are
//! signed with `webhook_secret` (not an API secret); https receivers work with a CA given in
//! `webhook_ca_file`; `/metrics` counts per URL.

mod api_support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use api_support::*;
use serde_json::Value;
use sluice_control::events::{verify_webhook, SignatureError};
use sluice_control::room::RoomsConfig;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;

const WEBHOOK_SECRET: &str = "webhook-secret-fedcba9876543210";

/// One POST a receiver got.
#[derive(Debug, Clone)]
struct Got {
    at: Instant,
    signature: String,
    body: String,
}

/// A minimal HTTP/1.1 receiver on 127.0.0.1 (keep-alive, Content-Length bodies). `answer`
/// false: it reads requests and never answers (a hung receiver). `tls`: serve https.
async fn receiver(
    answer: bool,
    tls: Option<tokio_rustls::TlsAcceptor>,
) -> (String, Arc<Mutex<Vec<Got>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let got = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&got);
    tokio::spawn(async move {
        loop {
            let Ok((sock, _)) = listener.accept().await else {
                return;
            };
            let sink = Arc::clone(&sink);
            let tls = tls.clone();
            tokio::spawn(async move {
                match tls {
                    Some(acceptor) => {
                        if let Ok(s) = acceptor.accept(sock).await {
                            serve(s, answer, sink).await;
                        }
                    }
                    None => serve(sock, answer, sink).await,
                }
            });
        }
    });
    (addr.to_string(), got)
}

async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    answer: bool,
    sink: Arc<Mutex<Vec<Got>>>,
) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        // One request: head, then Content-Length bytes.
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
        let header = |name: &str| {
            head.lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
                })
                .unwrap_or_default()
        };
        let len: usize = header("content-length").parse().unwrap_or(0);
        while buf.len() < head_end + len {
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let body = String::from_utf8_lossy(&buf[head_end..head_end + len]).to_string();
        buf.drain(..head_end + len);
        sink.lock().unwrap().push(Got {
            at: Instant::now(),
            signature: header("sluice-signature"),
            body,
        });
        if !answer {
            // Hold the connection open, never answer.
            tokio::time::sleep(Duration::from_secs(3600)).await;
            return;
        }
        if s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
            .await
            .is_err()
        {
            return;
        }
    }
}

/// Room → seqs in arrival order.
fn seqs_by_room(got: &[Got]) -> std::collections::BTreeMap<String, Vec<u64>> {
    let mut out: std::collections::BTreeMap<String, Vec<u64>> = Default::default();
    for g in got {
        let v: Value = serde_json::from_str(&g.body).unwrap();
        out.entry(v["room"].as_str().unwrap().to_owned())
            .or_default()
            .push(v["seq"].as_u64().unwrap());
    }
    out
}

fn rooms_created(got: &[Got]) -> Vec<String> {
    got.iter()
        .filter_map(|g| {
            let v: Value = serde_json::from_str(&g.body).ok()?;
            (v["event"] == "room_created").then(|| v["room"].as_str().unwrap().to_owned())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_that_never_answers_delays_only_itself() {
    let (hung, hung_got) = receiver(false, None).await;
    let (good, good_got) = receiver(true, None).await;
    let hung_url = format!("http://{hung}/hook");
    let good_url = format!("http://{good}/hook");
    let s = start_with(|o| {
        o.webhooks = vec![hung_url.clone(), good_url.clone()];
        o.webhook_secret = Some(WEBHOOK_SECRET.into());
        o.rooms = RoomsConfig::default();
    })
    .await;
    let a = auth_header(&admin());
    let h = [
        ("Authorization", a.as_str()),
        ("Content-Type", "application/json"),
    ];
    // Five rooms, each created and joined by three participants: 4 events a room.
    const ROOMS: usize = 5;
    const PER_ROOM: usize = 4;
    let mut sent = Vec::new();
    let mut clients = Vec::new();
    for i in 0..ROOMS {
        let name = format!("r{i:02}");
        let t = Instant::now();
        let resp = http(
            s.addr,
            "POST",
            "/api/rooms",
            &h,
            &format!(r#"{{"name":"{name}"}}"#),
        )
        .await;
        assert_eq!(resp.0, 201, "{resp:?}");
        sent.push((name.clone(), 1u64, t));
        for p in 0..PER_ROOM - 1 {
            let token = token(&name, &format!("p{p}"), sluice_control::auth::Role::Viewer);
            let t = Instant::now();
            let (mut ws, _) = tokio_tungstenite::connect_async(format!(
                "ws://{}/rtc?access_token={token}",
                s.addr
            ))
            .await
            .unwrap();
            send(&mut ws, serde_json::json!({"type": "join"})).await;
            recv_type(&mut ws, "joined").await;
            sent.push((name.clone(), 2 + p as u64, t));
            clients.push(ws);
        }
    }
    // Every event reaches the answering receiver, each room's in order, promptly.
    let total = ROOMS * PER_ROOM;
    let deadline = Instant::now() + Duration::from_secs(10);
    while good_got.lock().unwrap().len() < total && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let got = good_got.lock().unwrap().clone();
    let by_room = seqs_by_room(&got);
    assert_eq!(by_room.len(), ROOMS);
    for (room, seqs) in &by_room {
        let expected: Vec<u64> = (1..=PER_ROOM as u64).collect();
        assert_eq!(*seqs, expected, "{room}: every event, in seq order");
    }
    let delays: Vec<Duration> = sent
        .iter()
        .map(|(name, seq, t)| {
            let g = got
                .iter()
                .find(|g| {
                    g.body.contains(&format!("\"room\":\"{name}\""))
                        && g.body.contains(&format!("\"seq\":{seq},"))
                })
                .unwrap();
            g.at.saturating_duration_since(*t)
        })
        .collect();
    let worst = delays.iter().max().unwrap();
    println!(
        "answering receiver: {} events in {} rooms, worst delay after the API call or join {:?}, mean {:?}; hung receiver got {} requests",
        got.len(),
        by_room.len(),
        worst,
        delays.iter().sum::<Duration>() / delays.len() as u32,
        hung_got.lock().unwrap().len()
    );
    assert!(
        *worst < Duration::from_millis(1000),
        "the hung receiver held the other back: worst {worst:?}"
    );
    // The hung one got its first requests (one per room lane, up to its in-flight limit).
    assert!(!hung_got.lock().unwrap().is_empty());

    // Signed with the webhook secret, not the API secret.
    let first = &got[0];
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert_eq!(
        verify_webhook(
            WEBHOOK_SECRET.as_bytes(),
            &first.signature,
            &first.body,
            now,
            300
        ),
        Ok(())
    );
    assert_eq!(
        verify_webhook(SECRET.as_bytes(), &first.signature, &first.body, now, 300),
        Err(SignatureError::Mismatch)
    );

    // Per-URL metrics.
    let (_, metrics) = http(s.addr, "GET", "/metrics", &[], "").await;
    let metrics = metrics.as_str().unwrap().to_owned();
    let line = format!("sluice_webhook_delivered_total{{url=\"{good_url}\"}} {total}");
    assert!(metrics.contains(&line), "{metrics}");
    let hung_line = format!("sluice_webhook_queued{{url=\"{hung_url}\"}} {total}");
    assert!(metrics.contains(&hung_line), "{metrics}");
    drop(clients);
    s.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_receivers_with_a_configured_ca() {
    // A CA, and a certificate for 127.0.0.1 it signed.
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&leaf_key, &ca)
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![leaf.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into()),
        )
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
    let (addr, got) = receiver(true, Some(acceptor)).await;

    let s = start_with(|o| {
        o.webhooks = vec![format!("https://{addr}/hook")];
        o.webhook_secret = Some(WEBHOOK_SECRET.into());
        o.webhook_ca_file = Some(ca_file.clone());
    })
    .await;
    let a = auth_header(&admin());
    let h = [
        ("Authorization", a.as_str()),
        ("Content-Type", "application/json"),
    ];
    assert_eq!(
        http(s.addr, "POST", "/api/rooms", &h, r#"{"name":"tls"}"#)
            .await
            .0,
        201
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while got.lock().unwrap().is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let got = got.lock().unwrap().clone();
    assert_eq!(rooms_created(&got), ["tls"], "{got:?}");
    s.stop();

    // Without the CA the same receiver is not trusted: nothing arrives, failures are counted.
    let untrusted = tempfile::tempdir().unwrap();
    let bad = untrusted.path().join("other.pem");
    let other = rcgen::generate_simple_self_signed(vec!["x".to_owned()]).unwrap();
    std::fs::write(&bad, other.cert.pem()).unwrap();
    let s = start_with(|o| {
        o.webhooks = vec![format!("https://{addr}/hook")];
        o.webhook_secret = Some(WEBHOOK_SECRET.into());
        o.webhook_ca_file = Some(bad.clone());
    })
    .await;
    http(s.addr, "POST", "/api/rooms", &h, r#"{"name":"tls2"}"#).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut failed = false;
    while !failed && Instant::now() < deadline {
        let (_, m) = http(s.addr, "GET", "/metrics", &[], "").await;
        failed = m
            .as_str()
            .unwrap()
            .lines()
            .any(|l| l.starts_with("sluice_webhook_failed_total") && !l.ends_with(" 0"));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(failed, "an untrusted certificate fails the delivery");
    s.stop();
}
