//! End-to-end ICE-lite Binding exchange through the public `rtp_core::stun`
//! API: a client request built with [`BindingRequest`] is parsed and
//! authenticated by a minimal "server", whose response the client parses and
//! verifies, for IPv4 and IPv6. Also checks the error answers (401, 420, 487)
//! and that the whole exchange performs no heap allocation after warm-up.

use std::net::SocketAddr;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rtp_core::stun::{
    attr, write_binding_success, BindingRequest, ErrorCode, ErrorResponse, IceRole, StunClass,
    StunMessage, StunMethod, StunWriter,
};

const SERVER_UFRAG: &[u8] = b"sfuU";
const SERVER_PWD: &[u8] = b"sfu-password-0123456789";
const CLIENT_UFRAG: &[u8] = b"cliU";

/// What the toy ICE-lite server decided.
#[derive(Debug, PartialEq, Eq)]
enum Served {
    Success,
    Error(u16),
    Dropped,
}

/// A minimal ICE-lite responder (RFC 8445 §7.3) built only on the public API.
/// The server is controlled, so a request claiming ICE-CONTROLLED conflicts.
fn serve(request: &[u8], source: SocketAddr, out: &mut [u8]) -> (Served, usize) {
    let Ok(msg) = StunMessage::parse(request) else {
        return (Served::Dropped, 0);
    };
    if msg.class() != StunClass::Request
        || msg.method() != StunMethod::Binding
        || !msg.verify_fingerprint()
    {
        return (Served::Dropped, 0);
    }
    let error = |code: u16, unknown: &[u16], key: Option<&[u8]>, out: &mut [u8]| {
        let n = ErrorResponse {
            transaction_id: *msg.transaction_id(),
            code,
            reason: b"error",
            unknown_attributes: unknown,
            integrity_key: key,
        }
        .write(out)
        .unwrap();
        (Served::Error(code), n)
    };
    let mut unknown = [0u16; 8];
    let mut n_unknown = 0;
    for t in msg.unknown_comprehension_required().take(unknown.len()) {
        unknown[n_unknown] = t;
        n_unknown += 1;
    }
    if n_unknown > 0 {
        return error(420, &unknown[..n_unknown], None, out);
    }
    let authentic = msg
        .username_ufrags()
        .is_some_and(|(local, _)| local == SERVER_UFRAG)
        && msg.verify_integrity(SERVER_PWD);
    if !authentic {
        return error(401, &[], None, out);
    }
    if msg.ice_controlled().is_some() {
        return error(487, &[], Some(SERVER_PWD), out);
    }
    let n = write_binding_success(out, msg.transaction_id(), source, SERVER_PWD).unwrap();
    (Served::Success, n)
}

fn username() -> [u8; 9] {
    let mut u = [0u8; 9];
    u[..4].copy_from_slice(SERVER_UFRAG);
    u[4] = b':';
    u[5..].copy_from_slice(CLIENT_UFRAG);
    u
}

fn client_request<'a>(tid: [u8; 12], user: &'a [u8], key: &'a [u8]) -> BindingRequest<'a> {
    BindingRequest {
        transaction_id: tid,
        username: user,
        priority: 0x6e7f_1eff,
        role: IceRole::Controlling(0xdead_beef_0bad_cafe),
        use_candidate: true,
        key,
    }
}

fn round_trip(source: SocketAddr, rng: &mut StdRng) {
    let tid: [u8; 12] = rng.gen();
    let user = username();
    let mut req = [0u8; 256];
    let n = client_request(tid, &user, SERVER_PWD)
        .write(&mut req)
        .unwrap();

    let mut resp = [0u8; 256];
    let (served, m) = serve(&req[..n], source, &mut resp);
    assert_eq!(served, Served::Success);

    let msg = StunMessage::parse(&resp[..m]).unwrap();
    assert_eq!(msg.class(), StunClass::Success);
    assert_eq!(msg.method(), StunMethod::Binding);
    assert_eq!(msg.transaction_id(), &tid);
    assert!(msg.verify_fingerprint());
    assert!(msg.verify_integrity(SERVER_PWD));
    assert_eq!(msg.xor_mapped_address(), Some(source));
}

#[test]
fn ipv4_binding_exchange() {
    let mut rng = StdRng::seed_from_u64(1);
    round_trip("198.51.100.20:61000".parse().unwrap(), &mut rng);
}

#[test]
fn ipv6_binding_exchange() {
    let mut rng = StdRng::seed_from_u64(2);
    round_trip(
        "[2001:db8:85a3::8a2e:370:7334]:443".parse().unwrap(),
        &mut rng,
    );
}

#[test]
fn wrong_password_gets_401_without_integrity() {
    let user = username();
    let mut req = [0u8; 256];
    let n = client_request([3; 12], &user, b"not-the-password")
        .write(&mut req)
        .unwrap();
    let mut resp = [0u8; 256];
    let (served, m) = serve(&req[..n], "192.0.2.9:9".parse().unwrap(), &mut resp);
    assert_eq!(served, Served::Error(401));
    let msg = StunMessage::parse(&resp[..m]).unwrap();
    assert_eq!(msg.class(), StunClass::Error);
    assert_eq!(msg.transaction_id(), &[3; 12]);
    assert_eq!(msg.error_code().unwrap().code, ErrorCode::UNAUTHENTICATED);
    assert!(msg.message_integrity().is_none());
    assert!(msg.verify_fingerprint());
}

#[test]
fn unknown_required_attribute_gets_420_listing_it() {
    let mut req = [0u8; 256];
    let mut w =
        StunWriter::new(&mut req, StunClass::Request, StunMethod::Binding, &[4; 12]).unwrap();
    w.username(&username()).unwrap();
    w.attribute(0x7123, b"??").unwrap();
    w.message_integrity(SERVER_PWD).unwrap();
    w.fingerprint().unwrap();
    let n = w.finish();
    let mut resp = [0u8; 256];
    let (served, m) = serve(&req[..n], "192.0.2.9:9".parse().unwrap(), &mut resp);
    assert_eq!(served, Served::Error(420));
    let msg = StunMessage::parse(&resp[..m]).unwrap();
    assert_eq!(msg.error_code().unwrap().code, ErrorCode::UNKNOWN_ATTRIBUTE);
    assert_eq!(
        msg.attribute(attr::UNKNOWN_ATTRIBUTES).unwrap().value,
        &[0x71, 0x23]
    );
}

#[test]
fn role_conflict_gets_487_with_integrity() {
    let user = username();
    let mut request = client_request([5; 12], &user, SERVER_PWD);
    request.role = IceRole::Controlled(7);
    request.use_candidate = false;
    let mut req = [0u8; 256];
    let n = request.write(&mut req).unwrap();
    let mut resp = [0u8; 256];
    let (served, m) = serve(&req[..n], "[::1]:5000".parse().unwrap(), &mut resp);
    assert_eq!(served, Served::Error(487));
    let msg = StunMessage::parse(&resp[..m]).unwrap();
    assert_eq!(msg.error_code().unwrap().code, ErrorCode::ROLE_CONFLICT);
    assert!(msg.verify_integrity(SERVER_PWD));
    assert!(msg.verify_fingerprint());
}

#[test]
fn corrupted_request_is_never_answered_with_success() {
    let user = username();
    let mut req = [0u8; 256];
    let n = client_request([6; 12], &user, SERVER_PWD)
        .write(&mut req)
        .unwrap();
    let mut resp = [0u8; 256];
    for i in 0..n {
        let mut bad = req;
        bad[i] ^= 0x80;
        let (served, _) = serve(&bad[..n], "192.0.2.1:1".parse().unwrap(), &mut resp);
        assert_ne!(served, Served::Success, "byte {i}");
    }
}

#[test]
fn exchange_does_not_allocate_after_warm_up() {
    let mut rng = StdRng::seed_from_u64(3);
    let sources: [SocketAddr; 2] = [
        "203.0.113.5:40000".parse().unwrap(),
        "[2001:db8::5]:40001".parse().unwrap(),
    ];
    round_trip(sources[0], &mut rng);
    round_trip(sources[1], &mut rng);
    // allocation-counter counts per thread, so parallel tests do not disturb the count.
    let info = allocation_counter::measure(|| {
        for i in 0..2_000 {
            round_trip(sources[i % 2], &mut rng);
        }
    });
    assert_eq!(info.count_total, 0);

    // The counter is live: a real allocation on this thread is seen.
    let info = allocation_counter::measure(|| drop(std::hint::black_box(vec![0u8; 64])));
    assert!(info.count_total > 0);
}
