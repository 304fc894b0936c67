//! The data channels' rights follow the room live (D87): through the real control daemon, with a
//! stand-in dataplane on the control socket (the real protocol, `sluice-proto` frames) that
//! records every command, a controller's data session gets `update_data {input_to: host}` when
//! the host grants control and `{input_to: null}` when it revokes it, when the host role moves
//! and when the host leaves, and a route again when a new host joins; a grants PATCH without `can_publish_data` turns `can_publish` off.
//! A viewer's session is never routed; nothing is sent when nothing changed.

mod api_support;
mod standin_support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use api_support::*;
use serde_json::json;
use sluice_control::auth::Role;
use sluice_proto::{Command, SessionId, UpdateData};
use tokio::net::UnixListener;

const OFFER: &str = include_str!("fixtures/sdp/chromium_cam_mic.sdp");

type Log = Arc<Mutex<Vec<Command>>>;

/// The stand-in dataplane: answers every request at once and records it.
fn recording_dataplane(listener: UnixListener) -> Log {
    let log: Log = Arc::default();
    let seen = Arc::clone(&log);
    standin_support::serve(listener, "recording-dataplane", move |req, reply, out| {
        seen.lock().unwrap().push(req.command);
        let _ = out.send(reply);
    });
    log
}

/// A data-only publisher offer (the fixture's session part and transport lines).
fn data_offer() -> String {
    let (head, media) = OFFER.split_at(OFFER.find("m=").unwrap());
    let transport: String = media
        .lines()
        .filter(|l| {
            ["a=ice-ufrag", "a=ice-pwd", "a=fingerprint", "a=setup"]
                .iter()
                .any(|p| l.starts_with(p))
        })
        .take(4)
        .map(|l| format!("{l}\r\n"))
        .collect();
    let head = head.replace("a=group:BUNDLE 0 1", "a=group:BUNDLE 0");
    format!(
        "{head}m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\nc=IN IP4 0.0.0.0\r\n{transport}a=mid:0\r\na=sctp-port:5000\r\na=max-message-size:262144\r\n"
    )
}

/// Joins and makes a data session; its dataplane session id.
async fn data_session(
    addr: std::net::SocketAddr,
    log: &Log,
    who: &str,
    role: Role,
) -> (Ws, SessionId) {
    let mut ws = join(addr, who, role).await;
    let id = offer_data(&mut ws, log, who).await;
    (ws, id)
}

/// A data-only publisher offer from `who` on `ws`; its dataplane session id.
async fn offer_data(ws: &mut Ws, log: &Log, who: &str) -> SessionId {
    send(
        ws,
        json!({"type": "offer", "pc": "publisher", "sdp": data_offer(), "req": 1}),
    )
    .await;
    recv_type(ws, "answer").await;
    log.lock()
        .unwrap()
        .iter()
        .rev()
        .find_map(|c| match c {
            Command::CreateSession(s) if s.data.as_ref().is_some_and(|d| d.participant == who) => {
                Some(s.session)
            }
            _ => None,
        })
        .expect("a data session was created")
}

/// The `update_data` commands recorded since the last call, waiting (up to 2 s) for some.
async fn next_updates(log: &Log) -> Vec<UpdateData> {
    for _ in 0..100 {
        let u = updates(log);
        if !u.is_empty() {
            return u;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Vec::new()
}

/// The `update_data` commands recorded since the last call.
fn updates(log: &Log) -> Vec<UpdateData> {
    let mut l = log.lock().unwrap();
    let out = l
        .iter()
        .filter_map(|c| match c {
            Command::UpdateData(u) => Some(u.clone()),
            _ => None,
        })
        .collect();
    l.clear();
    out
}

fn ud(session: SessionId, can_publish: bool, input_to: Option<&str>) -> UpdateData {
    UpdateData {
        session,
        can_publish,
        input_to: input_to.map(str::to_owned),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn input_routes_and_data_grants_follow_the_room_live() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("dp.sock");
    let log = recording_dataplane(UnixListener::bind(&socket).unwrap());
    let s = start_with(|o| o.dataplane_socket = Some(socket.clone())).await;
    for _ in 0..200 {
        if http(s.addr, "GET", "/readyz", &[], "").await.0 == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (mut host, host_s) = data_session(s.addr, &log, "hal", Role::Host).await;
    let (mut ctl, ctl_s) = data_session(s.addr, &log, "cid", Role::Controller).await;
    let (_viewer, _) = data_session(s.addr, &log, "vic", Role::Viewer).await;
    assert_eq!(updates(&log), vec![], "nothing changed yet");

    send(&mut ctl, json!({"type": "request_control"})).await;
    recv_type(&mut host, "control_requested").await;
    send(
        &mut host,
        json!({"type": "grant_control", "identity": "cid"}),
    )
    .await;
    let granted = next_updates(&log).await;
    println!("grant: {granted:?}");
    assert_eq!(granted, vec![ud(ctl_s, true, Some("hal"))]);
    let route = recv_type(&mut ctl, "input_route").await;
    assert_eq!(route["data_channel"], true, "{route}");

    send(
        &mut host,
        json!({"type": "revoke_control", "identity": "cid"}),
    )
    .await;
    let revoked = next_updates(&log).await;
    println!("revoke: {revoked:?}");
    assert_eq!(revoked, vec![ud(ctl_s, true, None)]);
    let route = recv_type(&mut ctl, "input_route").await;
    assert_eq!(route["data_channel"], false, "{route}");

    // Granted again, then the host role moves to the controller: neither holds a route now.
    send(
        &mut host,
        json!({"type": "grant_control", "identity": "cid"}),
    )
    .await;
    assert_eq!(next_updates(&log).await, vec![ud(ctl_s, true, Some("hal"))]);
    send(
        &mut host,
        json!({"type": "transfer_host", "identity": "cid"}),
    )
    .await;
    let moved = next_updates(&log).await;
    println!("transfer: {moved:?}");
    assert_eq!(moved, vec![ud(ctl_s, true, None)]);

    // Back: cid (host now) grants hal (controller now), then hal's data grant is taken away.
    send(
        &mut ctl,
        json!({"type": "grant_control", "identity": "hal"}),
    )
    .await;
    assert_eq!(
        next_updates(&log).await,
        vec![ud(host_s, true, Some("cid"))]
    );
    let auth = auth_header(&admin());
    let h = [
        ("Authorization", auth.as_str()),
        ("Content-Type", "application/json"),
    ];
    let body = json!({"grants": {"can_publish": true, "can_subscribe": true, "can_publish_sources": [], "can_update_metadata": false, "can_publish_data": false}});
    let (st, v) = http(
        s.addr,
        "PATCH",
        "/api/rooms/m/participants/hal",
        &h,
        &body.to_string(),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    let patched = next_updates(&log).await;
    println!("grants PATCH: {patched:?}");
    assert_eq!(patched, vec![ud(host_s, false, Some("cid"))]);

    // The host (cid) leaves: hal's route goes with it.
    send(&mut ctl, json!({"type": "leave"})).await;
    let left = next_updates(&log).await;
    println!("host left: {left:?}");
    assert_eq!(left, vec![ud(host_s, false, None)]);

    // A new host joins: hal still holds control (as the WebSocket relay would let it), but the
    // route waits for the new host's data channels; then it names the new host.
    let mut neo = join(s.addr, "neo", Role::Host).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        updates(&log),
        vec![],
        "no route to a host without data channels"
    );
    let _ = data_session(s.addr, &log, "neo2", Role::Viewer).await;
    assert_eq!(
        updates(&log),
        vec![],
        "another participant's data session changes nothing"
    );
    offer_data(&mut neo, &log, "neo").await;
    let joined = next_updates(&log).await;
    println!("new host's data session: {joined:?}");
    assert_eq!(joined, vec![ud(host_s, false, Some("neo"))]);
    let route = recv_type(&mut host, "input_route").await;
    assert_eq!(route["data_channel"], true, "{route}");
}
