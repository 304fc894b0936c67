//! Our DTLS 1.2 server against real OpenSSL (`openssl s_client -dtls1_2`,
//! Debian's OpenSSL 3.0 — the library GStreamer's webrtcbin and aiortc use)
//! over loopback UDP, with RSA and ECDSA client certificates: the handshake
//! completes with the certificate checked against its fingerprint, both
//! sides export the same SRTP keying material (checked by opening SRTP we
//! protect with keys built from OpenSSL's export), application data flows
//! both ways, and close_notify ends it. A client whose certificate is not
//! the expected one gets a fatal alert and gives up at once.
//!
//! Skips, saying so, where `openssl` is not installed (tests/run.sh installs it).
// A real peer over a real socket needs the real clock (rtp-core itself never reads it).
#![allow(clippy::disallowed_methods)]

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime};

use rtp_core::dtls::{
    DtlsCert, DtlsEndpoint, DtlsEvent, DtlsRole, DtlsSettings, DtlsState, DtlsVersion, Fingerprint,
};
use rtp_core::srtp::{ProtectionProfile, SrtpConfig, SrtpContext};

/// One client: its key type and what it offers.
struct Case {
    key: &'static [&'static str],
    extra: &'static [&'static str],
    srtp: &'static str,
    profile: ProtectionProfile,
    /// Our MTU: 576 makes us fragment ServerHello…ServerHelloDone.
    mtu: usize,
}

#[test]
fn openssl_clients_connect_with_rsa_and_ecdsa_certificates() {
    let Some(dir) = workdir("ok") else { return };
    let cases = [
        // webrtcbin's default: RSA-2048; OpenSSL picks x25519 and AES-128-GCM.
        Case {
            key: &["-newkey", "rsa:2048"],
            extra: &[],
            srtp: "SRTP_AES128_CM_SHA1_80:SRTP_AEAD_AES_128_GCM",
            profile: ProtectionProfile::AeadAes128Gcm,
            mtu: 1150,
        },
        Case {
            key: &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
            extra: &[
                "-groups",
                "P-256",
                "-cipher",
                "ECDHE-ECDSA-AES256-GCM-SHA384",
            ],
            srtp: "SRTP_AES128_CM_SHA1_80",
            profile: ProtectionProfile::Aes128CmHmacSha1_80,
            mtu: 1150,
        },
        Case {
            key: &["-newkey", "rsa:4096"],
            extra: &["-mtu", "600"],
            srtp: "SRTP_AEAD_AES_256_GCM:SRTP_AES128_CM_SHA1_80",
            profile: ProtectionProfile::AeadAes256Gcm,
            mtu: 576,
        },
        Case {
            key: &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-384"],
            extra: &[],
            srtp: "SRTP_AES128_CM_SHA1_80",
            profile: ProtectionProfile::Aes128CmHmacSha1_80,
            mtu: 1150,
        },
    ];
    for (i, case) in cases.iter().enumerate() {
        let (pem, key, fp) = client_identity(&dir, &format!("c{i}"), case.key);
        let t0 = Instant::now();
        run_case(case, &pem, &key, fp);
        println!(
            "{:?} {:?}: connected, keyed, data both ways, closed in {:?}",
            case.key,
            case.extra,
            t0.elapsed()
        );
    }
}

#[test]
fn an_unexpected_certificate_gets_an_alert_and_openssl_stops() {
    let Some(dir) = workdir("bad") else { return };
    let (pem, key, _) = client_identity(&dir, "c", &["-newkey", "rsa:2048"]);
    let (_, _, other) = client_identity(
        &dir,
        "other",
        &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
    );
    let mut s = Server::start(other, &DtlsSettings::default());
    let mut child = s_client(s.addr, &pem, &key, &[], "SRTP_AES128_CM_SHA1_80", 60);
    let t0 = Instant::now();
    let mut failed = None;
    while t0.elapsed() < Duration::from_secs(10) {
        s.step();
        if let Some(DtlsEvent::Failed(f)) = s.events.last() {
            failed.get_or_insert((*f, t0.elapsed()));
        }
        if let Ok(Some(status)) = child.try_wait() {
            assert!(
                !status.success(),
                "s_client succeeded against a refusing server"
            );
            let (f, at) = failed.expect("server failed");
            println!(
                "refused ({f:?}) after {at:?}; s_client exited {status} after {:?}",
                t0.elapsed()
            );
            assert!(
                t0.elapsed() < Duration::from_secs(3),
                "OpenSSL did not stop at the alert"
            );
            assert_eq!(s.ep.state(), DtlsState::Failed);
            return;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("s_client still running 10 s after the refusal ({failed:?})");
}

fn run_case(case: &Case, pem: &Path, key: &Path, fp: Fingerprint) {
    let settings = DtlsSettings {
        mtu: case.mtu,
        ..DtlsSettings::default()
    };
    let mut s = Server::start(fp, &settings);
    let mut child = s_client(
        s.addr,
        pem,
        key,
        case.extra,
        case.srtp,
        case.profile.keying_material_len(),
    );
    let lines = read_lines(&mut child);
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut exported = None;
    let mut out = Vec::new();
    while exported.is_none() || s.ep.state() != DtlsState::Connected {
        assert!(
            Instant::now() < deadline,
            "no handshake: {:?}\n{}",
            s.events,
            out.join("\n")
        );
        s.step();
        while let Ok(l) = lines.try_recv() {
            if let Some(hex) = l.trim().strip_prefix("Keying material: ") {
                exported = Some(unhex(hex));
            }
            out.push(l);
        }
    }
    assert!(
        s.events.contains(&DtlsEvent::Connected {
            profile: case.profile,
            version: DtlsVersion::Dtls12
        }),
        "{:?}",
        s.events
    );
    assert_same_srtp_keys(&s.ep, case.profile, &exported.unwrap());

    // OpenSSL -> us.
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(b"ping from openssl\n").unwrap();
    stdin.flush().unwrap();
    let got = loop {
        assert!(Instant::now() < deadline, "no application data");
        s.step();
        if let Some(d) = s.ep.poll_application_data() {
            break d;
        }
    };
    assert_eq!(got, b"ping from openssl\n");
    // Us -> OpenSSL.
    s.ep.send_application_data(b"pong from sluice\n").unwrap();
    loop {
        assert!(
            Instant::now() < deadline,
            "OpenSSL printed no pong: {}",
            out.join("\n")
        );
        s.step();
        if lines
            .try_recv()
            .is_ok_and(|l| l.contains("pong from sluice"))
        {
            break;
        }
    }
    // End of input: s_client sends close_notify and exits.
    drop(stdin);
    while s.ep.state() != DtlsState::Closed {
        assert!(Instant::now() < deadline, "no close_notify: {:?}", s.events);
        s.step();
    }
    let status = child.wait().unwrap();
    assert!(status.success(), "s_client exited {status}");
}

/// Our SRTP contexts and OpenSSL's exported material agree: what our
/// outbound context protects opens with the server write key/salt OpenSSL
/// exported, and what the client write key/salt protects opens with ours.
fn assert_same_srtp_keys(ep: &DtlsEndpoint, profile: ProtectionProfile, material: &[u8]) {
    assert_eq!(material.len(), profile.keying_material_len());
    let (k, s) = (profile.master_key_len(), profile.master_salt_len());
    let cfg = SrtpConfig::default();
    let (client_key, server_key) = (&material[..k], &material[k..2 * k]);
    let (client_salt, server_salt) = (&material[2 * k..2 * k + s], &material[2 * k + s..]);
    let mut their_rx = SrtpContext::new(profile, server_key, server_salt, cfg).unwrap();
    let mut their_tx = SrtpContext::new(profile, client_key, client_salt, cfg).unwrap();
    let (mut our_tx, mut our_rx) = ep.srtp_contexts(cfg).expect("keys");
    let plain: Vec<u8> = [0x80, 96, 0, 1, 0, 0, 0, 9, 0xde, 0xad, 0xbe, 0xef]
        .into_iter()
        .chain(0..100)
        .collect();
    for (tx, rx) in [(&mut our_tx, &mut their_rx), (&mut their_tx, &mut our_rx)] {
        let mut buf = [0u8; 256];
        buf[..plain.len()].copy_from_slice(&plain);
        let n = tx.protect_rtp(&mut buf, plain.len()).unwrap();
        let m = rx.unprotect_rtp(&mut buf[..n]).expect("same keys");
        assert_eq!(&buf[..m], &plain[..]);
    }
}

/// Our endpoint on a loopback UDP socket, driven with the real clock.
struct Server {
    ep: DtlsEndpoint,
    sock: UdpSocket,
    addr: SocketAddr,
    peer: Option<SocketAddr>,
    events: Vec<DtlsEvent>,
}

impl Server {
    fn start(expect: Fingerprint, settings: &DtlsSettings) -> Self {
        let cert = DtlsCert::generate(SystemTime::UNIX_EPOCH + Duration::from_secs(1_750_000_000))
            .unwrap();
        let ep =
            DtlsEndpoint::with_settings(DtlsRole::Server, &cert, Some(expect), settings, now())
                .unwrap();
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(10)))
            .unwrap();
        let addr = sock.local_addr().unwrap();
        Self {
            ep,
            sock,
            addr,
            peer: None,
            events: Vec::new(),
        }
    }

    /// Sends what is due, waits up to 10 ms for a datagram, runs timers.
    fn step(&mut self) {
        let mut buf = [0u8; 2048];
        if let Some(peer) = self.peer {
            while let Some(n) = self.ep.poll_transmit(now(), &mut buf) {
                self.sock.send_to(&buf[..n], peer).unwrap();
            }
        }
        while let Some(e) = self.ep.poll_event() {
            self.events.push(e);
        }
        if let Ok((n, from)) = self.sock.recv_from(&mut buf) {
            self.peer = Some(from);
            let _ = self.ep.handle_datagram(now(), &buf[..n]);
        }
        self.ep.handle_timeout(now());
    }
}

fn s_client(
    addr: SocketAddr,
    pem: &Path,
    key: &Path,
    extra: &[&str],
    srtp: &str,
    export_len: usize,
) -> Child {
    Command::new("openssl")
        .args(["s_client", "-dtls1_2", "-connect", &addr.to_string()])
        .arg("-cert")
        .arg(pem)
        .arg("-key")
        .arg(key)
        .args(["-use_srtp", srtp, "-keymatexport", "EXTRACTOR-dtls_srtp"])
        .args(["-keymatexportlen", &export_len.to_string(), "-no_ign_eof"])
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("openssl s_client")
}

fn read_lines(child: &mut Child) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    let stdout = child.stdout.take().expect("stdout");
    std::thread::spawn(move || {
        for l in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    rx
}

/// A self-signed client certificate made by openssl(1): PEM cert, PEM key,
/// and the SHA-256 fingerprint of its DER.
fn client_identity(dir: &Path, name: &str, key_args: &[&str]) -> (PathBuf, PathBuf, Fingerprint) {
    let (pem, key, der) = (
        dir.join(format!("{name}.pem")),
        dir.join(format!("{name}.key")),
        dir.join(format!("{name}.der")),
    );
    let ok = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-nodes",
            "-days",
            "30",
            "-subj",
            "/CN=dtls-client",
        ])
        .args(key_args)
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&pem)
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success();
    assert!(ok, "openssl req {key_args:?}");
    let ok = Command::new("openssl")
        .args(["x509", "-outform", "DER", "-in"])
        .arg(&pem)
        .arg("-out")
        .arg(&der)
        .status()
        .unwrap()
        .success();
    assert!(ok);
    let fp = Fingerprint::of_der(&std::fs::read(&der).unwrap());
    (pem, key, fp)
}

/// A fresh directory under the target dir, or `None` (test skipped) without openssl.
fn workdir(tag: &str) -> Option<PathBuf> {
    if Command::new("openssl").arg("version").output().is_err() {
        println!("SKIP: openssl(1) is not installed (tests/run.sh installs it)");
        return None;
    }
    let dir = std::env::temp_dir().join(format!(
        "sluice-dtls12-openssl-{}-{tag}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    Some(dir)
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap())
        .collect()
}

fn now() -> Instant {
    Instant::now()
}
