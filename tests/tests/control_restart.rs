//! Issue 4, "done when": the control daemon is killed with SIGKILL while two clients exchange
//! media; media keeps flowing during the outage; after a restart the rooms and participants are
//! back and a new participant can join — and is offered, and receives, what was published
//! before the restart.
//!
//! The dataplane runs in this process (`Dataplane::start` on 127.0.0.1); the control daemon is
//! the real `sluice up` binary, which attaches to the dataplane's socket instead of spawning
//! one, so killing it leaves the dataplane (and the calls) running. The two clients are
//! `TestPeer`s (ICE, DTLS, SRTP) negotiated through our WebSocket signaling.

#[path = "../../control/tests/api_support/mod.rs"]
mod api_support;
mod node_support;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use api_support::*;
use node_support::*;
use rtp_core::forward::{Codec as CoreCodec, MediaKind as CoreKind};
use serde_json::{json, Value};
use sluice_control::auth::Role;
use sluice_dataplane::config::{Config, IoChoice};
use sluice_dataplane::runtime::Dataplane;
use sluice_dataplane::testpeer::{generate_cert, IceCreds, TestPeer, WebRtcPeerConfig};

/// A running `sluice up` and the address it printed.
struct Control {
    child: Child,
    addr: SocketAddr,
}

impl Control {
    /// Starts `sluice up --config <dir>/sluice.toml` and waits (bounded) for its address.
    fn start(config: &Path) -> Control {
        let mut child = Command::new(target_bin("sluice"))
            .arg("up")
            .arg("--config")
            .arg(config)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn sluice up");
        let stderr = child.stderr.take().expect("piped");
        let (tx, rx) = mpsc::channel();
        // Keep draining stderr so the daemon never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.strip_prefix("sluice is up: http://") {
                    let _ = tx.send(rest.trim_end_matches('/').to_owned());
                } else {
                    eprintln!("[sluice] {line}");
                }
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("sluice up prints its address within 20 s")
            .parse()
            .expect("address");
        Control { child, addr }
    }

    fn sigkill(mut self) {
        // std's Child::kill sends SIGKILL.
        self.child.kill().expect("kill");
        self.child.wait().expect("reap");
    }
}

impl Drop for Control {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn join(addr: SocketAddr, identity: &str, role: Role) -> (Ws, Value) {
    let t = token("m", identity, role);
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/rtc?access_token={t}"))
        .await
        .unwrap();
    send(&mut ws, json!({"type": "join"})).await;
    let joined = recv_type(&mut ws, "joined").await;
    (ws, joined)
}

/// Packets bob received on alice's forwarded audio stream.
fn received(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

/// Polls (bounded) until `counter` exceeds `above`.
async fn wait_above(counter: &AtomicU64, above: u64, what: &str) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let n = received(counter);
        if n > above {
            return n;
        }
        assert!(Instant::now() < deadline, "{what}: stuck at {n} packets");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn media_outlives_a_control_sigkill_and_state_comes_back() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = Config::defaults(1);
    cfg.workers = vec![0];
    cfg.bind = "127.0.0.1".parse().unwrap();
    cfg.port = 0;
    cfg.io = IoChoice::Socket;
    cfg.buffers_per_worker = 256;
    cfg.control_socket = dir.path().join("dp.sock");
    let dp = match Dataplane::start(cfg) {
        Ok(dp) => dp,
        Err(e) => {
            eprintln!("skipping: dataplane did not start: {e}");
            return;
        }
    };
    let config = dir.path().join("sluice.toml");
    std::fs::write(
        &config,
        format!(
            "[control]\nhttp = \"127.0.0.1:0\"\nstate_file = \"{}\"\n\
             [control.api_keys]\n{KEY} = \"{SECRET}\"\n\
             [dataplane]\ncontrol_socket = \"{}\"\n",
            dir.path().join("state.json").display(),
            dp.control_socket().display()
        ),
    )
    .unwrap();

    let control = Control::start(&config);
    let addr = control.addr;
    wait_ready(addr).await;

    // Alice (host) publishes microphone + camera from a TestPeer.
    let (mut alice, _) = join(addr, "alice", Role::Host).await;
    let (mut bob, _) = join(addr, "bob", Role::Controller).await;
    for (cid, kind, source) in [("a", "audio", "microphone"), ("v", "video", "camera")] {
        send(
            &mut alice,
            json!({"type": "publish", "cid": cid, "kind": kind, "source": source}),
        )
        .await;
        recv_type(&mut alice, "track_published").await;
    }
    let alice_creds = IceCreds::new("AlIc", "alicepassword0123456789");
    let alice_cert = generate_cert().unwrap();
    let offer = rewrite(
        OFFER,
        &alice_creds,
        &alice_cert.fingerprint().to_sdp(),
        "sendrecv",
        "sendonly",
        None,
    );
    send(
        &mut alice,
        json!({"type": "offer", "pc": "publisher", "sdp": offer}),
    )
    .await;
    let answer = recv_type(&mut alice, "answer").await;
    let answer = answer["sdp"].as_str().unwrap().to_owned();

    // Bob answers the subscriber offer carrying both of alice's tracks.
    let bob_creds = IceCreds::new("BoBb", "bobpassword0123456789xx");
    let bob_cert = generate_cert().unwrap();
    let bob_fp = bob_cert.fingerprint().to_sdp();
    let mut sub_offer = recv_type(&mut bob, "offer").await["sdp"]
        .as_str()
        .unwrap()
        .to_owned();
    while sub_offer.matches("m=").count() < 2 {
        let a = rewrite(
            &sub_offer,
            &bob_creds,
            &bob_fp,
            "sendonly",
            "recvonly",
            Some("active"),
        );
        send(
            &mut bob,
            json!({"type": "answer", "pc": "subscriber", "sdp": a}),
        )
        .await;
        sub_offer = recv_type(&mut bob, "offer").await["sdp"]
            .as_str()
            .unwrap()
            .to_owned();
    }
    let a = rewrite(
        &sub_offer,
        &bob_creds,
        &bob_fp,
        "sendonly",
        "recvonly",
        Some("active"),
    );
    send(
        &mut bob,
        json!({"type": "answer", "pc": "subscriber", "sdp": a}),
    )
    .await;
    send(&mut bob, json!({"type": "ping", "t": 1})).await;
    recv_type(&mut bob, "pong").await;
    let (bob_pt, bob_ssrc) = audio_stream(&sub_offer);

    // Media: one thread drives both peers (bounded: 60 s at most, or until told to stop).
    let stop = Arc::new(AtomicBool::new(false));
    let got = Arc::new(AtomicU64::new(0));
    let media = {
        let (stop, got) = (stop.clone(), got.clone());
        let alice_cfg = WebRtcPeerConfig {
            cert: alice_cert,
            ..WebRtcPeerConfig::new(
                alice_creds,
                IceCreds::new(attr(&answer, "ice-ufrag"), attr(&answer, "ice-pwd")),
                attr(&answer, "fingerprint"),
            )
            .unwrap()
        };
        let alice_server = candidate(&answer);
        let bob_cfg = WebRtcPeerConfig {
            cert: bob_cert,
            ..WebRtcPeerConfig::new(
                bob_creds,
                IceCreds::new(attr(&sub_offer, "ice-ufrag"), attr(&sub_offer, "ice-pwd")),
                attr(&sub_offer, "fingerprint"),
            )
            .unwrap()
        };
        let bob_server = candidate(&sub_offer);
        std::thread::spawn(move || {
            let mut alice = TestPeer::connect(alice_server, &alice_cfg, Duration::from_secs(15))
                .expect("alice");
            let mut bob =
                TestPeer::connect(bob_server, &bob_cfg, Duration::from_secs(15)).expect("bob");
            bob.expect_stream(
                CoreKind::Audio,
                CoreCodec::Opus,
                48_000,
                bob_pt,
                bob_ssrc,
                None,
            )
            .expect("expect stream");
            let end = Instant::now() + Duration::from_secs(60);
            let mut seq: u16 = 1;
            while !stop.load(Ordering::Relaxed) && Instant::now() < end {
                alice
                    .publish_rtp(
                        seq,
                        u32::from(seq) * 960,
                        ALICE_AUDIO_SSRC,
                        OPUS_PT,
                        false,
                        &[0xf8, 0xff, 0xfe],
                    )
                    .expect("publish");
                seq = seq.wrapping_add(1);
                alice
                    .pump(Instant::now() + Duration::from_millis(2))
                    .expect("alice pump");
                while let Some(m) = bob.recv_media(Duration::from_millis(8)).expect("recv") {
                    if m.ssrc == bob_ssrc {
                        got.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        })
    };
    let before = wait_above(&got, 20, "media before the kill").await;

    // SIGKILL the control daemon: no goodbye to the dataplane, the WebSockets just drop.
    control.sigkill();
    drop((alice, bob));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let during = wait_above(&got, before + 20, "media while control is down").await;

    // Restart: the daemon attaches to the running dataplane and loads its state file.
    let control = Control::start(&config);
    let addr = control.addr;
    wait_ready(addr).await;
    let auth = format!("Bearer {}", admin());
    let (st, body) = http(
        addr,
        "GET",
        "/api/rooms/m/participants",
        &[("Authorization", &auth)],
        "",
    )
    .await;
    assert_eq!(st, 200, "{body}");
    let mut who: Vec<&str> = body["participants"]
        .as_array()
        .unwrap_or_else(|| panic!("participants list: {body}"))
        .iter()
        .filter_map(|p| p["identity"].as_str())
        .collect();
    who.sort_unstable();
    assert_eq!(who, ["alice", "bob"], "{body}");
    // The restart disturbed nothing: media still flows.
    wait_above(&got, during + 20, "media after the restart").await;

    // A new participant joins the recovered room and sees who is there.
    let (mut carol, joined) = join(addr, "carol", Role::Viewer).await;
    let text = joined.to_string();
    assert!(
        text.contains("alice") && text.contains("bob"),
        "joined: {text}"
    );
    // She is offered the tracks alice published before the restart (the restarted control
    // adopted them from the dataplane) and receives alice's audio.
    let carol_creds = IceCreds::new("CaRo", "carolpassword0123456789");
    let carol_cert = generate_cert().unwrap();
    let carol_fp = carol_cert.fingerprint().to_sdp();
    let offer = recv_type(&mut carol, "offer").await["sdp"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(offer.matches("m=").count(), 2, "{offer}");
    let a = rewrite(
        &offer,
        &carol_creds,
        &carol_fp,
        "sendonly",
        "recvonly",
        Some("active"),
    );
    send(
        &mut carol,
        json!({"type": "answer", "pc": "subscriber", "sdp": a}),
    )
    .await;
    send(&mut carol, json!({"type": "ping", "t": 2})).await;
    recv_type(&mut carol, "pong").await;
    let (carol_pt, carol_ssrc) = audio_stream(&offer);
    let carol_cfg = WebRtcPeerConfig {
        cert: carol_cert,
        ..WebRtcPeerConfig::new(
            carol_creds,
            IceCreds::new(attr(&offer, "ice-ufrag"), attr(&offer, "ice-pwd")),
            attr(&offer, "fingerprint"),
        )
        .unwrap()
    };
    let carol_server = candidate(&offer);
    let carol_got = tokio::task::spawn_blocking(move || {
        let mut carol =
            TestPeer::connect(carol_server, &carol_cfg, Duration::from_secs(15)).expect("carol");
        carol
            .expect_stream(
                CoreKind::Audio,
                CoreCodec::Opus,
                48_000,
                carol_pt,
                carol_ssrc,
                None,
            )
            .expect("expect stream");
        let end = Instant::now() + Duration::from_secs(15);
        let mut n = 0u32;
        while n < 20 && Instant::now() < end {
            if let Some(m) = carol.recv_media(Duration::from_millis(50)).expect("recv") {
                n += u32::from(m.ssrc == carol_ssrc);
            }
        }
        n
    })
    .await
    .unwrap();
    assert!(
        carol_got >= 20,
        "carol received {carol_got} packets of alice's audio"
    );

    stop.store(true, Ordering::Relaxed);
    media.join().expect("media thread");
    drop(control);
    dp.stop();
}

/// Polls `/readyz` (bounded) until the daemon's dataplane link is up.
async fn wait_ready(addr: SocketAddr) {
    for _ in 0..750 {
        if http(addr, "GET", "/readyz", &[], "").await.0 == 200 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("/readyz not 200 within 15 s");
}
