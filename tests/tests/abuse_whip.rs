//! Abuse suite, WHIP/WHEP resources (docs/security.md, findings #3 and #33), against the real
//! control server and a real in-process dataplane: a resource id is 128 random bits (not the
//! participant sid), only its own token or an admin token ends it (a foreign token is refused
//! and counted), no WebSocket participant can be ended through `/whip` or `/whep`, and the
//! `Location` of a room whose name needs escaping is percent-encoded and works.

#[path = "../../control/tests/api_support/mod.rs"]
mod api_support;
mod node_support;

use api_support::*;
use node_support::*;
use sluice_control::auth::Role;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const OFFER: &str = include_str!("../../control/tests/fixtures/sdp/whip_obs.sdp");

/// `POST /{kind}/{room}` with `token`: status and `Location`.
async fn post(addr: std::net::SocketAddr, kind: &str, room: &str, token: &str) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    // WHEP: the same offer, receive-only.
    let offer = if kind == "whep" {
        OFFER.replace("a=sendonly", "a=recvonly")
    } else {
        OFFER.to_owned()
    };
    let req = format!(
        "POST /{kind}/{room} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{offer}",
        offer.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    let status = out.split(' ').nth(1).unwrap().parse().unwrap();
    let location = out
        .lines()
        .find_map(|l| {
            l.strip_prefix("location: ")
                .or(l.strip_prefix("Location: "))
        })
        .unwrap_or("")
        .to_owned();
    (status, location)
}

async fn delete(addr: std::net::SocketAddr, path: &str, token: &str) -> u16 {
    let a = auth_header(token);
    http(addr, "DELETE", path, &[("Authorization", &a)], "")
        .await
        .0
}

async fn identities(addr: std::net::SocketAddr, room: &str) -> Vec<String> {
    let a = auth_header(&admin());
    let (_, v) = http(
        addr,
        "GET",
        &format!("/api/rooms/{room}/participants"),
        &[("Authorization", &a)],
        "",
    )
    .await;
    let mut out: Vec<String> = v["participants"]
        .as_array()
        .map(|l| {
            l.iter()
                .filter_map(|p| p["identity"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

async fn refused_foreign(addr: std::net::SocketAddr) -> f64 {
    let (_, m) = http(addr, "GET", "/metrics", &[], "").await;
    m.as_str()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("sluice_refused_total{reason=\"foreign_resource\"}"))
                .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        })
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whip_resources_are_random_and_owned() {
    let Some((_dir, dp)) = loopback_dataplane(|_| {}) else {
        return;
    };
    let s = linked_server(&dp, |_| {}).await;
    // The host on WebSocket (its sid is PA_1), a WHIP publisher and a WHEP viewer.
    let _host = join(s.addr, "host", Role::Host).await;
    let (st, pub_loc) = post(s.addr, "whip", "m", &token("m", "cam", Role::Controller)).await;
    assert_eq!(st, 201, "{pub_loc}");
    let (st, view_loc) = post(s.addr, "whep", "m", &token("m", "viewer", Role::Viewer)).await;
    assert_eq!(st, 201, "{view_loc}");
    println!("WHIP resource {pub_loc}, WHEP resource {view_loc}");

    // Mallory: a valid viewer token for the room, never joined.
    let mallory = token("m", "mallory", Role::Viewer);
    let mut tried = Vec::new();
    for path in [
        pub_loc.clone(),
        view_loc.clone(),
        "/whip/m/PA_1".to_owned(),
        "/whep/m/PA_1".to_owned(),
        "/whip/m/PA_2".to_owned(),
        "/whep/m/PA_3".to_owned(),
    ] {
        tried.push((path.clone(), delete(s.addr, &path, &mallory).await));
    }
    // The viewer's own token cannot end the publisher's resource, nor a WHEP id via /whip.
    let viewer = token("m", "viewer", Role::Viewer);
    tried.push((pub_loc.clone(), delete(s.addr, &pub_loc, &viewer).await));
    let swapped = view_loc.replace("/whep/", "/whip/");
    tried.push((swapped.clone(), delete(s.addr, &swapped, &viewer).await));
    let left = identities(s.addr, "m").await;
    println!("foreign deletes: {tried:?}; room now {left:?}");
    assert_eq!(left, ["cam", "host", "viewer"], "{tried:?}");
    for (path, status) in &tried {
        assert!(matches!(status, 403 | 404), "{path}: {status}");
    }
    let id = pub_loc.rsplit('/').next().unwrap();
    assert!(
        id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()),
        "a 128-bit random id, not a sid: {pub_loc}"
    );
    let foreign = refused_foreign(s.addr).await;
    println!("refused foreign_resource {foreign}");
    assert_eq!(foreign, 3.0);

    // Its own token ends the viewer; an admin token ends the publisher.
    assert_eq!(delete(s.addr, &view_loc, &viewer).await, 200);
    assert_eq!(delete(s.addr, &pub_loc, &admin()).await, 200);
    assert_eq!(identities(s.addr, "m").await, ["host"]);

    // A room name that needs escaping: the Location is percent-encoded and deletes.
    let (st, loc) = post(
        s.addr,
        "whep",
        "a%2Fb%20c",
        &token("a/b c", "w", Role::Viewer),
    )
    .await;
    println!("room \"a/b c\": {st} {loc}");
    assert_eq!(st, 201);
    assert!(loc.starts_with("/whep/a%2Fb%20c/"), "{loc}");
    assert_eq!(
        delete(s.addr, &loc, &token("a/b c", "w", Role::Viewer)).await,
        200
    );
    drop(dp);
}
