//! Issue 14 (hostile clients), control-daemon part B: each test is one attack by a real
//! WebSocket or HTTP client against the control daemon's real server, driving a real
//! in-process dataplane (`Dataplane::start` on 127.0.0.1), and asserts that the attack is
//! refused or bounded, that the refusal is counted (`sluice_refused_total{reason}`),
//! and, where state could grow, that the map sizes (`sluice_control_map_entries{map}`) stay
//! bounded. Findings of `../shared/review/security.md`: #7, #10, #11, #12, #14, #26.

#[path = "../../control/tests/api_support/mod.rs"]
mod api_support;
mod node_support;

use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use api_support::*;
use node_support::*;
use serde_json::{json, Value};
use sluice_control::auth::{self, Claims, Grants, Role, Source};
use sluice_control::room::RoomMode;

fn now_s() -> u64 {
    auth::unix_seconds(SystemTime::now())
}

/// A room-`m` token with `grants`, issued at `iat`.
fn mint(identity: &str, role: Role, grants: Grants, iat: u64) -> String {
    let n = now_s();
    auth::mint(
        KEY,
        SECRET.as_bytes(),
        &Claims {
            iss: KEY.into(),
            sub: identity.into(),
            room: "m".into(),
            role,
            grants,
            name: None,
            metadata: None,
            region: None,
            exp: n + 600,
            nbf: n - 3600,
            iat,
        },
    )
}

/// Opens `/rtc` with `token` and sends `join` (with `extra` fields); the first `joined` or
/// `error` reply.
async fn join_with(addr: SocketAddr, token: &str, extra: Value) -> (Ws, Value) {
    let (mut ws, _) =
        tokio_tungstenite::connect_async(format!("ws://{addr}/rtc?access_token={token}"))
            .await
            .unwrap();
    let mut msg = json!({"type": "join"});
    if let (Some(m), Some(e)) = (msg.as_object_mut(), extra.as_object()) {
        m.extend(e.clone());
    }
    send(&mut ws, msg).await;
    let reply = next_of(&mut ws, &["joined", "error"]).await;
    (ws, reply)
}

/// The next message whose type is one of `types`.
async fn next_of(ws: &mut Ws, types: &[&str]) -> Value {
    use futures_util::StreamExt;
    loop {
        let m = tokio::time::timeout(Duration::from_secs(15), ws.next())
            .await
            .unwrap_or_else(|_| panic!("no {types:?} within 15 s"))
            .expect("socket open")
            .expect("message");
        if let tokio_tungstenite::tungstenite::Message::Text(t) = m {
            let v: Value = serde_json::from_str(&t).unwrap();
            if types.iter().any(|ty| v["type"] == *ty) {
                return v;
            }
        }
    }
}

/// A `/metrics` value: the first line starting with `series` (name and labels).
async fn metric(addr: SocketAddr, series: &str) -> Option<u64> {
    let (_, _, body) = http_raw(addr, "GET", "/metrics", &[], "").await;
    body.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

async fn refused(addr: SocketAddr, reason: &str) -> u64 {
    metric(
        addr,
        &format!("sluice_refused_total{{reason=\"{reason}\"}}"),
    )
    .await
    .unwrap_or(0)
}

async fn map(addr: SocketAddr, name: &str) -> Option<u64> {
    metric(
        addr,
        &format!("sluice_control_map_entries{{map=\"{name}\"}}"),
    )
    .await
}

/// Round trip through the room: every earlier message of `ws` has been handled.
async fn sync(ws: &mut Ws) {
    send(ws, json!({"type": "ping", "t": 1})).await;
    next_of(ws, &["pong"]).await;
}

/// Publishes the fixture's audio and video from `ws` (sendonly): the answer.
async fn publish_av(ws: &mut Ws) -> Value {
    for (cid, kind, source) in [("a", "audio", "microphone"), ("v", "video", "camera")] {
        send(
            ws,
            json!({"type": "publish", "cid": cid, "kind": kind, "source": source}),
        )
        .await;
        next_of(ws, &["track_published"]).await;
    }
    let offer = OFFER.replace("a=sendrecv", "a=sendonly");
    send(
        ws,
        json!({"type": "offer", "pc": "publisher", "sdp": offer, "req": 1}),
    )
    .await;
    next_of(ws, &["answer"]).await
}

async fn whep(addr: SocketAddr, token: &str) -> (u16, String, String) {
    let auth = format!("Bearer {token}");
    http_raw(
        addr,
        "POST",
        "/whep/m",
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/sdp"),
        ],
        &OFFER.replace("a=sendrecv", "a=recvonly"),
    )
    .await
}

fn participants(v: &Value) -> Vec<String> {
    v["participants"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|p| p["identity"].as_str().unwrap_or("").to_owned())
                .collect()
        })
        .unwrap_or_default()
}

async fn list(addr: SocketAddr) -> Vec<String> {
    let a = auth_header(&admin());
    let (_, v) = http(
        addr,
        "GET",
        "/api/rooms/m/participants",
        &[("Authorization", &a)],
        "",
    )
    .await;
    participants(&v)
}

/// #7: a publisher loops publish (with the longest `cid` allowed) / unpublish. Every round's
/// pending request goes with its track: the pending map ends empty, not one entry per round.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_unpublish_loop_leaves_no_pending_requests() {
    let Some((_dir, dp)) = loopback_dataplane(|c| c.stats_interval_ms = 100) else {
        return;
    };
    let s = linked_server(&dp, |_| {}).await;
    let mut alice = join(s.addr, "alice", Role::Host).await;
    const ROUNDS: usize = 200;
    let cid = "c".repeat(128);
    for _ in 0..ROUNDS {
        send(
            &mut alice,
            json!({"type": "publish", "cid": cid, "kind": "audio", "source": "microphone"}),
        )
        .await;
        let t = next_of(&mut alice, &["track_published"]).await;
        send(
            &mut alice,
            json!({"type": "unpublish", "track_sid": t["track"]["sid"]}),
        )
        .await;
    }
    sync(&mut alice).await;
    let pending = map(s.addr, "media_pending_publishes").await;
    let dropped = refused(s.addr, "pending_publish_dropped").await;
    println!(
        "after {ROUNDS} publish/unpublish rounds: pending publishes {pending:?}, dropped {dropped}"
    );
    assert_eq!(pending, Some(0), "pending requests outlived their tracks");
    assert!(dropped >= ROUNDS as u64, "drops counted: {dropped}");
    // The publisher still publishes normally afterwards.
    let answer = publish_av(&mut alice).await;
    assert!(answer["sdp"].as_str().unwrap().contains("a=recvonly"));
    s.stop();
    dp.stop();
}

/// #11: a controller saves a `publish` request, is demoted to viewer, then offers a sendonly
/// section: the saved request is re-checked and the section refused — no track.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demoted_publishers_saved_request_is_refused() {
    let Some((_dir, dp)) = loopback_dataplane(|c| c.stats_interval_ms = 100) else {
        return;
    };
    let s = linked_server(&dp, |_| {}).await;
    let _host = join(s.addr, "alice", Role::Host).await;
    let mut bob = join(s.addr, "bob", Role::Controller).await;
    send(
        &mut bob,
        json!({"type": "publish", "cid": "mic", "kind": "audio", "source": "microphone"}),
    )
    .await;
    next_of(&mut bob, &["track_published"]).await;
    let a = auth_header(&admin());
    let r = http(
        s.addr,
        "PATCH",
        "/api/rooms/m/participants/bob",
        &[("Authorization", &a), ("Content-Type", "application/json")],
        r#"{"role":"viewer"}"#,
    )
    .await;
    assert_eq!(r.0, 200, "{r:?}");
    let start = OFFER.find("m=audio").unwrap();
    let end = OFFER.find("m=video").unwrap();
    let audio_only = OFFER[..start].replace("a=group:BUNDLE 0 1", "a=group:BUNDLE 0")
        + &OFFER[start..end].replace("a=sendrecv", "a=sendonly");
    send(
        &mut bob,
        json!({"type": "offer", "pc": "publisher", "sdp": audio_only, "req": 2}),
    )
    .await;
    let reply = next_of(&mut bob, &["answer", "error"]).await;
    println!("demoted viewer's publisher offer: {reply}");
    assert_eq!(reply["type"], "error", "a viewer published: {reply}");
    assert_eq!(reply["code"], "forbidden", "{reply}");
    assert_eq!(map(s.addr, "media_tracks").await, Some(0));
    assert_eq!(map(s.addr, "media_pending_publishes").await, Some(0));
    s.stop();
    dp.stop();
}

/// #10 (a): a WHEP viewer whose token says `can_subscribe: false` gets an answer that sends
/// nothing; the refusal is counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whep_without_can_subscribe_receives_nothing() {
    let Some((_dir, dp)) = loopback_dataplane(|c| c.stats_interval_ms = 100) else {
        return;
    };
    let s = linked_server(&dp, |_| {}).await;
    let mut alice = join(s.addr, "alice", Role::Host).await;
    publish_av(&mut alice).await;
    let grants = Grants {
        can_subscribe: false,
        ..Grants::for_role(Role::Viewer)
    };
    let (st, _, body) = whep(s.addr, &mint("peek", Role::Viewer, grants, now_s())).await;
    let ssrcs = body.matches("a=ssrc:").count();
    let subs = map(s.addr, "media_subscriptions").await;
    let counted = refused(s.addr, "subscribe_not_granted").await;
    println!("WHEP without can_subscribe: status {st}, a=ssrc lines {ssrcs}, subscriptions {subs:?}, refused {counted}");
    assert_eq!(st, 201, "{body}");
    assert_eq!(ssrcs, 0, "the answer sends the room's tracks:\n{body}");
    assert_eq!(subs, Some(0));
    assert_eq!(counted, 2);
    s.stop();
    dp.stop();
}

/// #10 (b): `can_subscribe` revoked by the API takes the dataplane subscriptions away at once
/// — of a WebSocket subscriber that never answers the re-offer, and of a WHEP session (which
/// gets no re-offer at all).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_can_subscribe_unsubscribes_at_once() {
    let Some((_dir, dp)) = loopback_dataplane(|c| c.stats_interval_ms = 100) else {
        return;
    };
    let s = linked_server(&dp, |_| {}).await;
    let mut alice = join(s.addr, "alice", Role::Host).await;
    let mut bob = join(s.addr, "bob", Role::Viewer).await;
    publish_av(&mut alice).await;
    // Bob answers the subscriber offer that carries both tracks.
    loop {
        let offer = next_of(&mut bob, &["offer"]).await;
        let text = offer["sdp"].as_str().unwrap().to_owned();
        send(
            &mut bob,
            json!({"type": "answer", "pc": "subscriber", "sdp": client_answer(&text)}),
        )
        .await;
        if text.matches("m=").count() >= 2 {
            break;
        }
    }
    sync(&mut bob).await;
    let (st, _, body) = whep(s.addr, &token("m", "watch", Role::Viewer)).await;
    assert_eq!(st, 201, "{body}");
    let before = map(s.addr, "media_subscriptions").await;
    println!("subscriptions before the revocation: {before:?}");
    assert_eq!(before, Some(4), "bob's two and the WHEP viewer's two");

    let a = auth_header(&admin());
    let none = json!({"grants": {"can_publish": false, "can_subscribe": false,
        "can_publish_sources": [], "can_update_metadata": false}})
    .to_string();
    for who in ["bob", "watch"] {
        let r = http(
            s.addr,
            "PATCH",
            &format!("/api/rooms/m/participants/{who}"),
            &[("Authorization", &a), ("Content-Type", "application/json")],
            &none,
        )
        .await;
        assert_eq!(r.0, 200, "{r:?}");
    }
    // Bob does not answer; nobody waits for him.
    let after = map(s.addr, "media_subscriptions").await;
    let revoked = refused(s.addr, "subscription_revoked").await;
    println!("subscriptions right after the PATCHes: {after:?}, revoked {revoked}");
    assert_eq!(after, Some(0), "revocation waited for the client");
    assert_eq!(revoked, 4);
    s.stop();
    dp.stop();
}

/// #12: in a P2P room, a viewer whose token carries a publish grant may not send media over
/// the relay (the SFU path refuses a viewer whatever its grants).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p2p_relay_refuses_a_viewer_sending_media() {
    let s = start_with(|o| o.hybrid.default_mode = RoomMode::P2p).await;
    let p2p = json!({"capabilities": ["p2p"]});
    let (mut host, hj) = join_with(s.addr, &token("m", "alice", Role::Host), p2p.clone()).await;
    assert_eq!(hj["type"], "joined", "{hj}");
    let grants = Grants {
        can_publish: true,
        can_publish_sources: vec![Source::Camera, Source::Microphone],
        ..Grants::for_role(Role::Viewer)
    };
    let (mut viewer, vj) =
        join_with(s.addr, &mint("eve", Role::Viewer, grants, now_s()), p2p).await;
    assert_eq!(vj["type"], "joined", "{vj}");
    let to = hj["participant"]["sid"].as_str().unwrap();
    // Unsignalled: sendonly without a=ssrc or a=msid (the old check looked only for those).
    let sdp = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\na=sendonly\r\na=rtpmap:96 VP8/90000\r\n";
    send(
        &mut viewer,
        json!({"type": "p2p_signal", "to": to, "signal": {"type": "offer", "sdp": sdp}, "req": 4}),
    )
    .await;
    send(&mut viewer, json!({"type": "ping", "t": 2})).await;
    let reply = next_of(&mut viewer, &["error", "pong"]).await;
    println!("viewer's sending p2p offer: {reply}");
    assert_eq!(reply["type"], "error", "relayed: {reply}");
    assert_eq!(reply["code"], "forbidden");
    assert_eq!(reply["field"], "sdp");
    assert_eq!(refused(s.addr, "p2p_forbidden").await, 1);
    // Nothing reached the host.
    sync(&mut host).await;
    let quiet = tokio::time::timeout(
        Duration::from_millis(200),
        next_of(&mut host, &["p2p_signal"]),
    )
    .await;
    assert!(quiet.is_err(), "the host got the viewer's offer");
    s.stop();
}

/// #26 (D38): a kicked participant cannot come straight back with the same token; a token
/// issued after the kick gets in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kick_lasts_for_the_tokens_lifetime() {
    let s = start_with(|_| {}).await;
    let old = token("m", "mallory", Role::Controller);
    let (_ws, j) = join_with(s.addr, &old, json!({})).await;
    assert_eq!(j["type"], "joined");
    let a = auth_header(&admin());
    let r = http(
        s.addr,
        "DELETE",
        "/api/rooms/m/participants/mallory",
        &[("Authorization", &a)],
        "",
    )
    .await;
    assert_eq!(r.0, 200, "{r:?}");
    let (_ws2, again) = join_with(s.addr, &old, json!({})).await;
    println!("rejoin with the kicked token: {again}");
    assert_eq!(again["type"], "error", "the kick did not last: {again}");
    assert_eq!(again["code"], "forbidden");
    assert_eq!(again["field"], "token");
    assert_eq!(refused(s.addr, "kicked_rejoin").await, 1);
    assert_eq!(list(s.addr).await, Vec::<String>::new());
    let fresh = mint(
        "mallory",
        Role::Controller,
        Grants::for_role(Role::Controller),
        now_s() + 1,
    );
    let (_ws3, back) = join_with(s.addr, &fresh, json!({})).await;
    assert_eq!(back["type"], "joined", "{back}");
    assert_eq!(map(s.addr, "kick_bans").await, Some(1));
    s.stop();
}

/// #14: a WHEP participant that never starts ICE leaves after `oneshot_grace_s`, with
/// `participant_left` to the room.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whep_participant_that_never_connects_leaves() {
    let Some((_dir, dp)) = loopback_dataplane(|c| c.stats_interval_ms = 100) else {
        return;
    };
    let s = linked_server(&dp, |o| o.rooms.lifetimes.oneshot_grace_s = 1).await;
    let mut alice = join(s.addr, "alice", Role::Host).await;
    publish_av(&mut alice).await;
    let (st, _, body) = whep(s.addr, &token("m", "ghost", Role::Viewer)).await;
    assert_eq!(st, 201, "{body}");
    assert!(list(s.addr).await.contains(&"ghost".to_owned()));
    let t0 = Instant::now();
    let left = tokio::time::timeout(Duration::from_secs(6), async {
        loop {
            let m = next_of(&mut alice, &["participant_left"]).await;
            if m["identity"] == "ghost" {
                return m;
            }
        }
    })
    .await;
    let still = list(s.addr).await;
    println!(
        "ghost WHEP participant after {:.1} s: left message {:?}, participants {still:?}",
        t0.elapsed().as_secs_f64(),
        left.as_ref().ok()
    );
    assert!(left.is_ok(), "no participant_left within 6 s");
    assert!(!still.contains(&"ghost".to_owned()));
    assert_eq!(refused(s.addr, "ghost_left").await, 1);
    assert_eq!(map(s.addr, "media_sessions").await, Some(1), "alice's only");
    s.stop();
    dp.stop();
}
