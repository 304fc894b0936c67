//! What the cascade tests (issue 16) can share: a cluster node as a real `sluice up`, the admin API
//! calls, a bounded poll, and alice publishing Opus through WebSocket signaling.
//! Declared (`mod cascade_support;`) by the cascade test files, beside `api_support`,
//! `cluster_support` and `node_support`: also an in-process cluster node, the trunk's
//! forwarded count, the simulcast offer and a subscriber's answering loop.
#![allow(dead_code)] // each test file uses its own part

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sluice_control::auth::Role;
use sluice_control::cluster::ClusterDraft;
use sluice_control::server::Server;
use sluice_dataplane::runtime::DataplaneHandle;
use sluice_dataplane::testpeer::{generate_cert, IceCreds, TestPeer, WebRtcPeerConfig};

use crate::api_support::*;
use crate::cluster_support::{free_port, Redis};
use crate::node_support::*;

/// A cluster node as a real `sluice up` (control daemon + its own `sluice-dataplane`, one
/// worker), so a test can `kill -9` both: lease `lease_ms`, relay grace `grace_ms`, the trunk
/// secret file `secret`, and `extra` lines appended to its `[cluster]` section.
pub fn sluice_node(
    redis: &Redis,
    id: &str,
    secret: &std::path::Path,
    dir: &std::path::Path,
    (lease_ms, grace_ms): (u64, u64),
    extra: &str,
) -> Sluice {
    let http_port = free_port();
    let media_port = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = dir.join("sluice.toml");
    std::fs::write(
        &config,
        format!(
            "[control]\nhttp = \"127.0.0.1:{http_port}\"\nstate_file = \"{state}\"\n\
             [control.api_keys]\n{KEY} = \"{SECRET}\"\n\
             [dataplane]\ncontrol_socket = \"{sock}\"\nworkers = [0]\nbind = \"127.0.0.1\"\n\
             port = {media_port}\nio = \"socket\"\nbuffers_per_worker = 512\n\
             trunk_secret_file = \"{secret}\"\n\
             [cluster]\nredis = \"{redis}\"\nnode_id = \"{id}\"\n\
             advertise = \"http://127.0.0.1:{http_port}\"\nlease_ms = {lease_ms}\n\
             relay_grace_ms = {grace_ms}\n{extra}\n",
            state = dir.join("state.json").display(),
            sock = dir.join("run").join("dp.sock").display(),
            secret = secret.display(),
            redis = redis.url(),
        ),
    )
    .unwrap();
    Sluice::start(&config, &[])
}

/// An in-process control daemon of the cluster linked to `dp`: lease `lease_ms`, relay grace
/// `grace_ms`, and `keys` set in its cluster section (`capacity`, `region`, `media`, ...).
pub async fn cluster_server(
    redis: &Redis,
    id: &str,
    dp: &DataplaneHandle,
    (lease_ms, grace_ms): (u64, u64),
    keys: &[(&str, String)],
) -> Server {
    let port = free_port();
    let mut d = ClusterDraft::default();
    d.set("redis", &redis.url()).unwrap();
    d.set("node_id", id).unwrap();
    d.set("advertise", &format!("http://127.0.0.1:{port}"))
        .unwrap();
    d.set("lease_ms", &lease_ms.to_string()).unwrap();
    d.set("relay_grace_ms", &grace_ms.to_string()).unwrap();
    for (k, v) in keys {
        d.set(k, v).unwrap();
    }
    let c = d.finish().unwrap().unwrap();
    linked_server(dp, move |o| {
        o.http = SocketAddr::from(([127, 0, 0, 1], port));
        o.cluster = Some(c);
    })
    .await
}

/// A's first trunk's `forwarded` count, from `GET /internal/cascade` on `addr`.
pub async fn trunk_forwarded(addr: SocketAddr) -> u64 {
    let (_, v) = call(addr, "GET", "/internal/cascade", "").await;
    v["trunks"][0]["stats"]["forwarded"].as_u64().unwrap_or(0)
}

/// The camera + microphone offer with its video as SSRC-signalled simulcast `layers` (SSRC,
/// rate), low to high.
pub fn simulcast_offer(layers: &[(u32, u32)]) -> String {
    let mut out = Vec::new();
    for l in OFFER.lines() {
        if l.starts_with("a=ssrc-group:FID") {
            let ids: Vec<String> = layers.iter().map(|(s, _)| s.to_string()).collect();
            out.push(format!("a=ssrc-group:SIM {}", ids.join(" ")));
            for (ssrc, _) in layers {
                out.push(format!("a=ssrc:{ssrc} cname:q8vY3nKc2L0dFz7R"));
            }
        } else if l.starts_with("a=ssrc:1432905237") || l.starts_with("a=ssrc:3987156512") {
            continue;
        } else {
            out.push(l.to_owned());
        }
    }
    out.join("\r\n") + "\r\n"
}

/// A subscriber: answers subscriber offers on `ws` until one carries audio; that offer.
pub async fn answer_until_audio(ws: &mut Ws, creds: &IceCreds, fp: &str) -> String {
    loop {
        let offer = recv_type(ws, "offer").await["sdp"]
            .as_str()
            .unwrap()
            .to_owned();
        let a = rewrite(&offer, creds, fp, "sendonly", "recvonly", Some("active"));
        send(ws, json!({"type": "answer", "pc": "subscriber", "sdp": a})).await;
        if offer.contains("m=audio") && offer.contains("a=ssrc") {
            return offer;
        }
    }
}

fn admin_h() -> Vec<(&'static str, String)> {
    vec![
        ("Authorization", auth_header(&admin())),
        ("Content-Type", "application/json".to_owned()),
    ]
}

/// The admin API of the node at `addr`.
pub async fn call(addr: SocketAddr, method: &str, path: &str, body: &str) -> (u16, Value) {
    let h = admin_h();
    let h: Vec<(&str, &str)> = h.iter().map(|(k, v)| (*k, v.as_str())).collect();
    http(addr, method, path, &h, body).await
}

/// Polls `f` every 20 ms until it is true (bounded).
pub async fn until(what: &str, within: Duration, mut f: impl AsyncFnMut() -> bool) -> Duration {
    let t0 = Instant::now();
    while !f().await {
        assert!(t0.elapsed() < within, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    t0.elapsed()
}

/// Every node of `ids` has its media address in the registry (`sl:node:{id}` `media`): before
/// that, a relay from it is refused (409 `node`).
pub fn media_published(redis: &Redis, ids: &[&str]) -> bool {
    ids.iter().all(|id| {
        redis
            .cli(&["HGET", &format!("sl:node:{id}"), "media"])
            .contains(':')
    })
}

/// `identity` joins `room` through `addr` (its home) as a host and offers `offer` for its
/// publisher connection (ICE ufrag `{ufrag_prefix}{identity}`): the socket, the server's media
/// address from the answer, and the peer's configuration to connect with.
pub async fn publisher_peer(
    addr: SocketAddr,
    room: &str,
    identity: &str,
    offer: &str,
    ufrag_prefix: &str,
) -> (Ws, SocketAddr, WebRtcPeerConfig) {
    let t = token(room, identity, Role::Host);
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/rtc?access_token={t}"))
        .await
        .unwrap();
    send(&mut ws, json!({"type": "join"})).await;
    recv_type(&mut ws, "joined").await;
    let creds = IceCreds::new(
        format!("{ufrag_prefix}{identity}"),
        "publisherpassword0123456789",
    );
    let cert = generate_cert().unwrap();
    let offer = rewrite(
        offer,
        &creds,
        &cert.fingerprint().to_sdp(),
        "sendrecv",
        "sendonly",
        None,
    );
    send(
        &mut ws,
        json!({"type": "offer", "pc": "publisher", "sdp": offer}),
    )
    .await;
    let answer = recv_type(&mut ws, "answer").await["sdp"]
        .as_str()
        .unwrap()
        .to_owned();
    let cfg = WebRtcPeerConfig {
        cert,
        ..WebRtcPeerConfig::new(
            creds,
            IceCreds::new(attr(&answer, "ice-ufrag"), attr(&answer, "ice-pwd")),
            attr(&answer, "fingerprint"),
        )
        .unwrap()
    };
    let server = candidate(&answer);
    (ws, server, cfg)
}

/// `identity` joins `room` through `addr` (which becomes its home) and publishes Opus from a
/// thread (one packet every 5 ms) until `stop`: the socket, the thread, the count sent and
/// the track's sid.
pub async fn publish(
    addr: SocketAddr,
    room: &str,
    identity: &str,
    stop: Arc<AtomicBool>,
) -> (Ws, std::thread::JoinHandle<()>, Arc<AtomicU64>, String) {
    let (ws, server, cfg) = publisher_peer(addr, room, identity, OFFER, "Pub").await;
    let sent = Arc::new(AtomicU64::new(0));
    let sn = Arc::clone(&sent);
    let publisher = std::thread::spawn(move || {
        let mut peer = TestPeer::connect(server, &cfg, Duration::from_secs(10)).expect("publisher");
        let end = Instant::now() + Duration::from_secs(60);
        let mut seq: u16 = 1;
        while !stop.load(Ordering::Relaxed) && Instant::now() < end {
            let payload = [0xf8, 0xff, 0xfe];
            let ts = u32::from(seq) * 240;
            if peer
                .publish_rtp(seq, ts, ALICE_AUDIO_SSRC, OPUS_PT, false, &payload)
                .is_ok()
            {
                sn.fetch_add(1, Ordering::Relaxed);
            }
            seq = seq.wrapping_add(1);
            let _ = peer.pump(Instant::now() + Duration::from_millis(5));
        }
    });
    let mut sid = String::new();
    until(
        "the track is published",
        Duration::from_secs(10),
        async || {
            let (_, v) = call(addr, "GET", &format!("/api/rooms/{room}/participants"), "").await;
            let text = v.to_string();
            if let Some(i) = text.find("\"TR_") {
                sid = text[i + 1..]
                    .split('"')
                    .next()
                    .unwrap_or_default()
                    .to_owned();
            }
            !sid.is_empty()
        },
    )
    .await;
    (ws, publisher, sent, sid)
}

/// What a publisher thread sends: one Opus packet every 5 ms, and simulcast video layers at
/// the given rates (packets per second per layer; empty: none).
pub struct Publishing {
    pub ws: Ws,
    pub thread: std::thread::JoinHandle<()>,
    /// Opus packets sent.
    pub sent: Arc<AtomicU64>,
    /// Video packets sent per layer.
    pub vsent: Arc<Vec<AtomicU64>>,
}

/// `identity` joins room `m` through `addr` (its home) and publishes `offer` from a thread
/// until `stop`: Opus always, and `layers` (SSRC, packets per second) of VP8 packets carrying
/// `payload` when given.
pub async fn publish_simulcast(
    addr: SocketAddr,
    identity: &str,
    offer: &str,
    layers: Vec<(u32, u32)>,
    payload: Vec<u8>,
    stop: Arc<AtomicBool>,
) -> Publishing {
    let (ws, server, cfg) = publisher_peer(addr, "m", identity, offer, "Pub").await;
    let sent = Arc::new(AtomicU64::new(0));
    let sn = Arc::clone(&sent);
    let vsent: Arc<Vec<AtomicU64>> = Arc::new(layers.iter().map(|_| AtomicU64::new(0)).collect());
    let vs = Arc::clone(&vsent);
    let thread = std::thread::spawn(move || {
        let mut peer = TestPeer::connect(server, &cfg, Duration::from_secs(10)).expect("publisher");
        let start = Instant::now();
        let end = start + Duration::from_secs(60);
        let mut seq: u16 = 1;
        let mut vseq = vec![1u16; layers.len()];
        while !stop.load(Ordering::Relaxed) && Instant::now() < end {
            let ts = u32::from(seq) * 240;
            if peer
                .publish_rtp(
                    seq,
                    ts,
                    ALICE_AUDIO_SSRC,
                    OPUS_PT,
                    false,
                    &[0xf8, 0xff, 0xfe],
                )
                .is_ok()
            {
                sn.fetch_add(1, Ordering::Relaxed);
            }
            seq = seq.wrapping_add(1);
            let elapsed = start.elapsed().as_secs_f64();
            for (i, (ssrc, pps)) in layers.iter().enumerate() {
                while (vs[i].load(Ordering::Relaxed) as f64) < elapsed * f64::from(*pps) {
                    let _ = peer.publish_rtp(vseq[i], ts, *ssrc, 96, true, &payload);
                    vseq[i] = vseq[i].wrapping_add(1);
                    vs[i].fetch_add(1, Ordering::Relaxed);
                }
            }
            let _ = peer.pump(Instant::now() + Duration::from_millis(5));
        }
    });
    until(
        "the track is published",
        Duration::from_secs(10),
        async || {
            let (_, v) = call(addr, "GET", "/api/rooms/m/participants", "").await;
            v.to_string().contains("\"TR_")
        },
    )
    .await;
    Publishing {
        ws,
        thread,
        sent,
        vsent,
    }
}
