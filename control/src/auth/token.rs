//! Minting and verifying HS256 JWTs (RFC 7519, JWS compact form RFC 7515 §7.1,
//! HMAC-SHA256 per RFC 7518 §3.2), hand-rolled on aws-lc-rs.
//!
//! Verification order, each step with its own error so a client knows what to
//! fix: shape/base64/JSON ([`AuthError::Malformed`]) → `alg` is exactly HS256
//! (no `none`, no RSA/HMAC confusion) → `iss` names a known API key
//! ([`AuthError::UnknownKey`]) → signature, compared in constant time by
//! `aws_lc_rs::hmac::verify` ([`AuthError::BadSignature`]) → full claims →
//! `nbf`/`exp` with [`CLOCK_SKEW_S`] leeway → room.

use std::collections::HashMap;
use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::hmac;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::base64url;
use super::claims::{AdminClaims, Claims};

/// Why a token was refused. Every variant is the client's fault (HTTP 401),
/// except [`AuthError::WrongRoom`] and [`AuthError::NotAdmin`] (403).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    #[error("malformed token: {reason}")]
    Malformed { reason: &'static str },
    #[error("token signature does not verify")]
    BadSignature,
    #[error("token signed by unknown API key {key:?}")]
    UnknownKey { key: String },
    #[error("token expired at {exp} (unix seconds)")]
    Expired { exp: u64 },
    #[error("token not valid before {nbf} (unix seconds)")]
    NotYetValid { nbf: u64 },
    #[error("token is for room {token_room:?}, not {requested:?}")]
    WrongRoom {
        token_room: String,
        requested: String,
    },
    #[error("token has no admin grant")]
    NotAdmin,
}

/// API key → secret. Secrets never appear in `Debug` output.
#[derive(Default, Clone)]
pub struct Keyring {
    keys: HashMap<String, hmac::Key>,
}

impl Keyring {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) `api_key` with `secret`.
    pub fn insert(&mut self, api_key: impl Into<String>, secret: &[u8]) {
        self.keys
            .insert(api_key.into(), hmac::Key::new(hmac::HMAC_SHA256, secret));
    }

    pub fn contains(&self, api_key: &str) -> bool {
        self.keys.contains_key(api_key)
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring")
            .field("keys", &self.keys.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// Mints an access token: `claims` with `iss = api_key`, signed with `secret`.
pub fn mint(api_key: &str, secret: &[u8], claims: &Claims) -> String {
    let mut claims = claims.clone();
    claims.iss = api_key.to_owned();
    sign_claims(secret, &claims)
}

/// Mints an admin token for the HTTP API (`admin` and `iss` are set here).
pub fn mint_admin(api_key: &str, secret: &[u8], claims: &AdminClaims) -> String {
    let mut claims = claims.clone();
    claims.iss = api_key.to_owned();
    claims.admin = true;
    sign_claims(secret, &claims)
}

/// Verifies a participant access token for joining `room` at `now`.
pub fn verify(
    token: &str,
    keyring: &Keyring,
    room: &str,
    now: SystemTime,
) -> Result<Claims, AuthError> {
    let claims: Claims = decode_verified(token, keyring)?;
    check_times(claims.nbf, claims.exp, now)?;
    if claims
        .region
        .as_deref()
        .is_some_and(|r| !crate::cluster::name_ok(r))
    {
        return Err(AuthError::Malformed {
            reason: "region must be 1..=64 of [A-Za-z0-9_-]",
        });
    }
    if claims.room != room {
        return Err(AuthError::WrongRoom {
            token_room: claims.room,
            requested: room.to_owned(),
        });
    }
    Ok(claims)
}

/// Verifies an admin token (the value after `Bearer ` in `Authorization`).
pub fn verify_admin(
    token: &str,
    keyring: &Keyring,
    now: SystemTime,
) -> Result<AdminClaims, AuthError> {
    let claims: AdminClaims = decode_verified(token, keyring)?;
    check_times(claims.nbf, claims.exp, now)?;
    if !claims.admin {
        return Err(AuthError::NotAdmin);
    }
    Ok(claims)
}

/// Extracts the token from an `Authorization` header value (RFC 6750 §2.1).
pub fn bearer(header_value: &str) -> Result<&str, AuthError> {
    let (scheme, token) = header_value
        .trim()
        .split_once(' ')
        .ok_or(AuthError::Malformed {
            reason: "Authorization is not `Bearer <token>`",
        })?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(AuthError::Malformed {
            reason: "Authorization is not `Bearer <token>`",
        });
    }
    Ok(token.trim())
}

/// Unix seconds of `now` (0 before the epoch, which only a broken clock gives).
pub fn unix_seconds(now: SystemTime) -> u64 {
    now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn sign_claims<C: Serialize>(secret: &[u8], claims: &C) -> String {
    let header = base64url::encode(HEADER.as_bytes());
    let payload = base64url::encode(
        &serde_json::to_vec(claims).expect("claims are plain structs and always serialize"),
    );
    let signing_input = format!("{header}.{payload}");
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    let tag = hmac::sign(&key, signing_input.as_bytes());
    format!("{signing_input}.{}", base64url::encode(tag.as_ref()))
}

fn decode_verified<C: DeserializeOwned>(token: &str, keyring: &Keyring) -> Result<C, AuthError> {
    let malformed = |reason| AuthError::Malformed { reason };
    if token.len() > MAX_TOKEN_LEN {
        return Err(malformed("token longer than 8 KiB"));
    }
    let mut parts = token.split('.');
    let (Some(header_b64), Some(payload_b64), Some(sig_b64), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(malformed("not three dot-separated segments"));
    };
    let header_json = base64url::decode(header_b64).ok_or(malformed("header is not base64url"))?;
    let header: Header =
        serde_json::from_slice(&header_json).map_err(|_| malformed("header is not JSON"))?;
    if header.alg != "HS256" {
        return Err(malformed("alg must be HS256"));
    }
    if header.crit.is_some() {
        return Err(malformed("crit extensions are not supported"));
    }
    let payload_json =
        base64url::decode(payload_b64).ok_or(malformed("payload is not base64url"))?;
    // Read `iss` before the signature is checked only to choose the key; nothing
    // else from the payload is trusted until the signature verifies.
    let issuer: Issuer =
        serde_json::from_slice(&payload_json).map_err(|_| malformed("payload has no iss"))?;
    let key = keyring
        .keys
        .get(&issuer.iss)
        .ok_or_else(|| AuthError::UnknownKey {
            key: issuer.iss.clone(),
        })?;
    let signature = base64url::decode(sig_b64).ok_or(malformed("signature is not base64url"))?;
    let signing_input = &token[..header_b64.len() + 1 + payload_b64.len()];
    hmac::verify(key, signing_input.as_bytes(), &signature).map_err(|_| AuthError::BadSignature)?;
    serde_json::from_slice(&payload_json).map_err(|_| malformed("claims are missing or mistyped"))
}

fn check_times(nbf: u64, exp: u64, now: SystemTime) -> Result<(), AuthError> {
    let now = unix_seconds(now);
    if now.saturating_add(CLOCK_SKEW_S) < nbf {
        return Err(AuthError::NotYetValid { nbf });
    }
    if now >= exp.saturating_add(CLOCK_SKEW_S) {
        return Err(AuthError::Expired { exp });
    }
    Ok(())
}

#[derive(Deserialize)]
struct Header {
    alg: String,
    /// RFC 7515 §4.1.11: extensions the verifier must understand; we understand none.
    #[serde(default)]
    crit: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct Issuer {
    iss: String,
}

const HEADER: &str = r#"{"alg":"HS256","typ":"JWT"}"#;

/// Leeway for `nbf` and `exp`: the app server minting tokens and this daemon
/// rarely agree on the time to the second, and a token minted "now" must work
/// at once.
pub const CLOCK_SKEW_S: u64 = 10;

/// Longest token accepted; real ones are a few hundred bytes.
pub const MAX_TOKEN_LEN: usize = 8 * 1024;

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::auth::{Grants, Role};

    #[test]
    fn crit_headers_are_refused() {
        let mut ring = Keyring::new();
        ring.insert("k", b"0123456789abcdef");
        let header = base64url::encode(br#"{"alg":"HS256","typ":"JWT","crit":["x"]}"#);
        let payload = base64url::encode(&serde_json::to_vec(&claims("r")).unwrap());
        let input = format!("{header}.{payload}");
        let tag = hmac::sign(
            &hmac::Key::new(hmac::HMAC_SHA256, b"0123456789abcdef"),
            input.as_bytes(),
        );
        let token = format!("{input}.{}", base64url::encode(tag.as_ref()));
        assert!(matches!(
            decode_verified::<Claims>(&token, &ring),
            Err(AuthError::Malformed { .. })
        ));
    }

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn claims(room: &str) -> Claims {
        Claims {
            iss: String::new(),
            sub: "alice".into(),
            room: room.into(),
            role: Role::Host,
            grants: Grants::for_role(Role::Host),
            name: Some("Alice".into()),
            metadata: None,
            region: None,
            exp: T0 + 3600,
            nbf: T0,
            iat: T0,
        }
    }

    fn keyring() -> Keyring {
        let mut k = Keyring::new();
        k.insert("key1", b"secret-one");
        k
    }

    const T0: u64 = 1_700_000_000;

    #[test]
    fn mint_then_verify_round_trips() {
        let token = mint("key1", b"secret-one", &claims("r1"));
        let got = verify(&token, &keyring(), "r1", at(T0 + 5)).unwrap();
        assert_eq!(got.iss, "key1");
        assert_eq!(got.sub, "alice");
        assert_eq!(got.grants, Grants::for_role(Role::Host));
    }

    #[test]
    fn region_claim_round_trips_and_a_bad_one_is_refused() {
        let mut c = claims("r1");
        c.region = Some("eu-west_1".into());
        let token = mint("key1", b"secret-one", &c);
        let got = verify(&token, &keyring(), "r1", at(T0 + 5)).unwrap();
        assert_eq!(got.region.as_deref(), Some("eu-west_1"));
        for bad in ["", "eu west", &"x".repeat(65)] {
            c.region = Some(bad.into());
            let token = mint("key1", b"secret-one", &c);
            assert!(
                matches!(
                    verify(&token, &keyring(), "r1", at(T0 + 5)),
                    Err(AuthError::Malformed { .. })
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn known_vector_from_independent_hmac() {
        // The JWT signing input is header.payload; check our signature equals
        // an HMAC-SHA256 computed over exactly that string.
        let token = mint("key1", b"secret-one", &claims("r1"));
        let (input, sig) = token.rsplit_once('.').unwrap();
        let key = hmac::Key::new(hmac::HMAC_SHA256, b"secret-one");
        let expected = hmac::sign(&key, input.as_bytes());
        assert_eq!(base64url::decode(sig).unwrap(), expected.as_ref());
        assert!(input.starts_with("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."));
    }

    #[test]
    fn refusals_are_distinct() {
        let kr = keyring();
        let good = mint("key1", b"secret-one", &claims("r1"));
        let forged = mint("key1", b"wrong-secret", &claims("r1"));
        assert_eq!(
            verify(&forged, &kr, "r1", at(T0)),
            Err(AuthError::BadSignature)
        );
        let other_key = mint("key2", b"secret-one", &claims("r1"));
        assert_eq!(
            verify(&other_key, &kr, "r1", at(T0)),
            Err(AuthError::UnknownKey { key: "key2".into() })
        );
        assert_eq!(
            verify(&good, &kr, "r1", at(T0 + 3600 + CLOCK_SKEW_S)),
            Err(AuthError::Expired { exp: T0 + 3600 })
        );
        assert!(verify(&good, &kr, "r1", at(T0 + 3600 + CLOCK_SKEW_S - 1)).is_ok());
        assert_eq!(
            verify(&good, &kr, "r1", at(T0 - CLOCK_SKEW_S - 1)),
            Err(AuthError::NotYetValid { nbf: T0 })
        );
        assert!(verify(&good, &kr, "r1", at(T0 - CLOCK_SKEW_S)).is_ok());
        assert_eq!(
            verify(&good, &kr, "r2", at(T0)),
            Err(AuthError::WrongRoom {
                token_room: "r1".into(),
                requested: "r2".into()
            })
        );
    }

    #[test]
    fn tampered_payload_fails_signature() {
        let good = mint("key1", b"secret-one", &claims("r1"));
        let mut parts: Vec<&str> = good.split('.').collect();
        let mut c = claims("r1");
        c.iss = "key1".into();
        c.role = Role::Viewer;
        let evil = base64url::encode(&serde_json::to_vec(&c).unwrap());
        parts[1] = &evil;
        assert_eq!(
            verify(&parts.join("."), &keyring(), "r1", at(T0)),
            Err(AuthError::BadSignature)
        );
    }

    #[test]
    fn malformed_tokens() {
        let kr = keyring();
        for bad in ["", "a.b", "a.b.c.d", "!!.e30.AA", "e30.e30.AA"] {
            assert!(
                matches!(
                    verify(bad, &kr, "r1", at(T0)),
                    Err(AuthError::Malformed { .. })
                ),
                "{bad:?}"
            );
        }
        // alg "none" is refused before any key lookup.
        let none_header = base64url::encode(br#"{"alg":"none"}"#);
        let payload = base64url::encode(&serde_json::to_vec(&claims("r1")).unwrap());
        assert_eq!(
            verify(&format!("{none_header}.{payload}."), &kr, "r1", at(T0)),
            Err(AuthError::Malformed {
                reason: "alg must be HS256"
            })
        );
        let long = "a".repeat(MAX_TOKEN_LEN + 1);
        assert!(matches!(
            verify(&long, &kr, "r1", at(T0)),
            Err(AuthError::Malformed { .. })
        ));
    }

    #[test]
    fn admin_tokens() {
        let kr = keyring();
        let admin = AdminClaims {
            iss: String::new(),
            sub: "ops".into(),
            admin: false,
            exp: T0 + 60,
            nbf: T0,
            iat: T0,
        };
        let token = mint_admin("key1", b"secret-one", &admin);
        let header = format!("Bearer {token}");
        let got = verify_admin(bearer(&header).unwrap(), &kr, at(T0)).unwrap();
        assert!(got.admin);
        // A participant token is not an admin token.
        let participant = mint("key1", b"secret-one", &claims("r1"));
        assert_eq!(
            verify_admin(&participant, &kr, at(T0)),
            Err(AuthError::NotAdmin)
        );
        assert!(bearer("Basic abc").is_err());
        assert!(bearer("Bearer ").is_err());
    }

    #[test]
    fn keyring_debug_hides_secrets() {
        let text = format!("{:?}", keyring());
        assert!(text.contains("key1") && !text.contains("secret-one"));
    }
}
