//! Ephemeral TURN credentials, the "TURN REST API" scheme coturn implements as
//! `use-auth-secret` (draft-uberti-behave-turn-rest-00 §2.2): the username is
//! `<unix expiry>:<identity>` and the password is base64(HMAC-SHA1(shared secret, username)).
//! The TURN server recomputes the HMAC from the same secret, so nothing is stored per user,
//! and it refuses a username whose expiry has passed.

use aws_lc_rs::hmac;
use serde::Serialize;

/// The `[turn]` configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TurnConfig {
    /// `turn:` / `turns:` URLs handed to clients.
    pub urls: Vec<String>,
    /// coturn's `static-auth-secret`.
    pub secret: String,
    /// Lifetime of a credential.
    pub ttl_s: u64,
    /// The TURN servers' relay addresses (coturn `relay-ip`): a session whose peer address is
    /// one of them is reported as relayed. Empty: the IP literals of `urls`.
    pub relay_ips: Vec<std::net::IpAddr>,
}

/// One entry of `joined.ice_servers` (the shape of WebRTC's `RTCIceServer`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IceServer {
    pub urls: Vec<String>,
    pub username: String,
    pub credential: String,
}

impl TurnConfig {
    /// A credential for `identity`, valid until `now_s + ttl_s`.
    pub fn credentials(&self, identity: &str, now_s: u64) -> IceServer {
        let username = format!("{}:{identity}", now_s.saturating_add(self.ttl_s));
        let credential = credential(self.secret.as_bytes(), &username);
        IceServer {
            urls: self.urls.clone(),
            username,
            credential,
        }
    }
}

/// base64(HMAC-SHA1(secret, username)). SHA-1 because coturn's scheme fixes it; the HMAC
/// construction keeps it sound for this use.
pub fn credential(secret: &[u8], username: &str) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, secret);
    base64_std(hmac::sign(&key, username.as_bytes()).as_ref())
}

/// Standard base64 with padding (RFC 4648 §4), as coturn compares it.
fn base64_std(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 0x3f) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_pads() {
        assert_eq!(base64_std(b"f"), "Zg==");
        assert_eq!(base64_std(b"fo"), "Zm8=");
        assert_eq!(base64_std(b"foo"), "Zm9v");
        assert_eq!(base64_std(b""), "");
    }

    #[test]
    fn hmac_sha1_known_vector() {
        // HMAC_SHA1("key", "The quick brown fox jumps over the lazy dog")
        // = de7c9b85b8b78aa6bc8a7a36f70a90701c9db4d9.
        assert_eq!(
            credential(b"key", "The quick brown fox jumps over the lazy dog"),
            "3nybhbi3iqa8ino29wqQcBydtNk="
        );
    }

    #[test]
    fn username_carries_expiry_and_identity() {
        let cfg = TurnConfig {
            urls: vec!["turn:127.0.0.1:3478?transport=udp".into()],
            secret: "north".into(),
            ttl_s: 86_400,
            relay_ips: Vec::new(),
        };
        let s = cfg.credentials("alice", 1_700_000_000);
        assert_eq!(s.username, "1700086400:alice");
        assert_eq!(s.credential, "SXua5ne/+mDhiHTp0pQJzRO4ESg=");
        assert_eq!(s.urls, cfg.urls);
    }
}
