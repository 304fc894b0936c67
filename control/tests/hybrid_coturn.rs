//! The TURN REST credentials Sluice hands out (`joined.ice_servers`) authenticate against a
//! real coturn run with `--use-auth-secret --static-auth-secret=...` on 127.0.0.1: a TURN
//! Allocate (RFC 8656 §7.2) with the long-term credential mechanism (RFC 8489 §9.2) succeeds,
//! and one signed with another secret or past its expiry is refused with 401. Skips, saying
//! why, when `turnserver` is not installed.

use std::net::UdpSocket;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime};

use rtp_core::stun::{ErrorCode, StunClass, StunMessage, StunMethod, StunWriter};
use sluice_control::hybrid::turn::TurnConfig;

const ALLOCATE: u16 = 0x003;
const REQUESTED_TRANSPORT: u16 = 0x0019;
const XOR_RELAYED_ADDRESS: u16 = 0x0016;
const REALM: u16 = 0x0014;
const NONCE: u16 = 0x0015;
const SECRET: &str = "sluice-coturn-test-secret";

/// Kills the coturn we started when the test ends, however it ends.
struct Turnserver(Child);

impl Drop for Turnserver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn rest_credentials_allocate_against_coturn() {
    if Command::new("turnserver")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_err()
    {
        eprintln!("skipping: turnserver (coturn) is not installed");
        return;
    }
    let port = {
        let probe = UdpSocket::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let _server = Turnserver(
        Command::new("turnserver")
            .args([
                "-n",
                "--listening-ip=127.0.0.1",
                "--relay-ip=127.0.0.1",
                &format!("--listening-port={port}"),
                "--min-port=49300",
                "--max-port=49340",
                "--use-auth-secret",
                &format!("--static-auth-secret={SECRET}"),
                "--realm=sluice.test",
                "--no-cli",
                "--no-tls",
                "--no-dtls",
                "--allow-loopback-peers",
                "--log-file=stdout",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("turnserver starts"),
    );
    // Wait (bounded) until coturn answers: an unauthenticated Allocate gets 401.
    let ready = (0..50).any(|_| {
        let answered = challenge(&client(port)).is_some();
        if !answered {
            // Not listening yet (a refused send fails at once): wait a little.
            std::thread::sleep(Duration::from_millis(200));
        }
        answered
    });
    assert!(ready, "coturn answers within 10 s");

    let now_s = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let good = TurnConfig {
        urls: vec![format!("turn:127.0.0.1:{port}")],
        secret: SECRET.into(),
        ttl_s: 86_400,
        relay_ips: Vec::new(),
    }
    .credentials("alice", now_s);
    let bad_secret = TurnConfig {
        urls: Vec::new(),
        secret: "some-other-secret".into(),
        ttl_s: 86_400,
        relay_ips: Vec::new(),
    }
    .credentials("alice", now_s);
    // Expired an hour ago.
    let expired = TurnConfig {
        urls: Vec::new(),
        secret: SECRET.into(),
        ttl_s: 1,
        relay_ips: Vec::new(),
    }
    .credentials("alice", now_s - 3_600);

    // Each attempt from its own 5-tuple: coturn keeps per-5-tuple state (RFC 8656 §7.2).
    let attempt = |id: u8, user: &str, pass: &str| -> (StunClass, Option<u16>) {
        let sock = client(port);
        let (realm, nonce) = challenge(&sock).expect("a 401 challenge");
        assert_eq!(realm, b"sluice.test");
        let key = md5(format!("{user}:sluice.test:{pass}").as_bytes());
        let mut buf = [0u8; 1500];
        let n = allocate(&mut buf, 100 + id, Some((user, &realm, &nonce, &key)));
        sock.send(&buf[..n]).unwrap();
        let mut rx = [0u8; 1500];
        let len = sock.recv(&mut rx).expect("coturn answers");
        let msg = StunMessage::parse(&rx[..len]).expect("a STUN answer");
        if msg.class() == StunClass::Success {
            assert!(
                msg.attribute(XOR_RELAYED_ADDRESS).is_some(),
                "a relayed address"
            );
        }
        (msg.class(), msg.error_code().map(|e| e.code))
    };
    let refused = (StunClass::Error, Some(ErrorCode::UNAUTHENTICATED));
    assert_eq!(
        attempt(1, &bad_secret.username, &bad_secret.credential),
        refused
    );
    assert_eq!(attempt(2, &expired.username, &expired.credential), refused);
    assert_eq!(
        attempt(3, &good.username, &good.credential),
        (StunClass::Success, None)
    );
}

/// (USERNAME, REALM, NONCE, long-term key) of a signed request.
type Signed<'a> = (&'a str, &'a [u8], &'a [u8], &'a [u8; 16]);

/// A UDP socket connected to coturn on `port`.
fn client(port: u16) -> UdpSocket {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    sock.connect(("127.0.0.1", port)).unwrap();
    sock
}

/// Sends an unauthenticated Allocate; the (REALM, NONCE) of coturn's 401 answer.
fn challenge(sock: &UdpSocket) -> Option<(Vec<u8>, Vec<u8>)> {
    let mut buf = [0u8; 1500];
    let n = allocate(&mut buf, 0, None);
    sock.send(&buf[..n]).ok()?;
    let mut rx = [0u8; 1500];
    let len = sock.recv(&mut rx).ok()?;
    let msg = StunMessage::parse(&rx[..len]).expect("a STUN answer");
    assert_eq!(msg.class(), StunClass::Error);
    assert_eq!(
        msg.error_code().map(|e| e.code),
        Some(ErrorCode::UNAUTHENTICATED)
    );
    Some((
        msg.attribute(REALM)?.value.to_vec(),
        msg.attribute(NONCE)?.value.to_vec(),
    ))
}

/// An Allocate request for UDP; signed (USERNAME, REALM, NONCE, MESSAGE-INTEGRITY) when
/// `auth` is given. Returns its length in `buf`.
fn allocate(buf: &mut [u8], id: u8, auth: Option<Signed<'_>>) -> usize {
    let tid = [id, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11];
    let mut w = StunWriter::new(buf, StunClass::Request, StunMethod::Other(ALLOCATE), &tid)
        .expect("buffer fits");
    w.attribute(REQUESTED_TRANSPORT, &[17, 0, 0, 0]).unwrap();
    if let Some((user, realm, nonce, key)) = auth {
        w.username(user.as_bytes()).unwrap();
        w.attribute(REALM, realm).unwrap();
        w.attribute(NONCE, nonce).unwrap();
        w.message_integrity(key).unwrap();
    }
    w.finish()
}

/// MD5 (RFC 1321), which the long-term credential key is (RFC 8489 §9.2.2); only here, for
/// this test's client side.
fn md5(data: &[u8]) -> [u8; 16] {
    let s: [u32; 64] = [
        7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 5, 9, 14, 20, 5, 9, 14, 20, 5,
        9, 14, 20, 5, 9, 14, 20, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 6, 10,
        15, 21, 6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21,
    ];
    // K[i] = floor(abs(sin(i + 1)) * 2^32).
    let k: Vec<u32> = (0..64)
        .map(|i| ((i as f64 + 1.0).sin().abs() * 4_294_967_296.0) as u32)
        .collect();
    let mut msg = data.to_vec();
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&((data.len() as u64).wrapping_mul(8)).to_le_bytes());
    let mut h: [u32; 4] = [0x6745_2301, 0xefcd_ab89, 0x98ba_dcfe, 0x1032_5476];
    for block in msg.chunks(64) {
        let m: Vec<u32> = block
            .chunks(4)
            .map(|w| u32::from_le_bytes([w[0], w[1], w[2], w[3]]))
            .collect();
        let [mut a, mut b, mut c, mut d] = h;
        for i in 0..64 {
            let (f, g) = match i / 16 {
                0 => ((b & c) | (!b & d), i),
                1 => ((d & b) | (!d & c), (5 * i + 1) % 16),
                2 => (b ^ c ^ d, (3 * i + 5) % 16),
                _ => (c ^ (b | !d), (7 * i) % 16),
            };
            let rotated = a
                .wrapping_add(f)
                .wrapping_add(k[i])
                .wrapping_add(m[g])
                .rotate_left(s[i]);
            a = d;
            d = c;
            c = b;
            b = b.wrapping_add(rotated);
        }
        for (x, v) in h.iter_mut().zip([a, b, c, d]) {
            *x = x.wrapping_add(v);
        }
    }
    let mut out = [0u8; 16];
    for (i, x) in h.iter().enumerate() {
        out[i * 4..i * 4 + 4].copy_from_slice(&x.to_le_bytes());
    }
    out
}

#[test]
fn md5_known_vectors() {
    let hex = |b: [u8; 16]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    assert_eq!(hex(md5(b"")), "d41d8cd98f00b204e9800998ecf8427e");
    assert_eq!(hex(md5(b"abc")), "900150983cd24fb0d6963f7d28e17f72");
    assert_eq!(
        hex(md5(
            b"12345678901234567890123456789012345678901234567890123456789012345678901234567890"
        )),
        "57edf4a22be3c955ac49da2e2107b67a"
    );
}
