//! Webhook signatures: header `Sluice-Signature: t=<unix seconds>,v1=<hex>`
//! where `v1` is HMAC-SHA256 (RFC 2104) keyed with `control.webhook_secret`
//! (never an API secret: a receiver must not be able to mint admin tokens) over the
//! bytes `"{t}.{body}"`. Signing the timestamp lets a receiver refuse replays
//! older than a few minutes; each retry is signed afresh with its own `t`.

use aws_lc_rs::hmac;

/// Header carrying the signature.
pub const SIGNATURE_HEADER: &str = "Sluice-Signature";
/// Header carrying the event's idempotency id (`evt_…`).
pub const EVENT_ID_HEADER: &str = "Sluice-Event-Id";

/// Why a receiver should refuse a webhook.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignatureError {
    #[error("signature header is not `t=<unix>,v1=<hex>`")]
    Malformed,
    #[error("signature timestamp outside the tolerance")]
    Stale,
    #[error("signature does not match")]
    Mismatch,
}

/// The header value for `body` sent at `t_unix`, signed with `secret`.
pub fn sign_webhook(secret: &[u8], t_unix: u64, body: &str) -> String {
    sign_with(&hmac::Key::new(hmac::HMAC_SHA256, secret), t_unix, body)
}

/// [`sign_webhook`] with a prepared key (the queue keeps one).
pub(crate) fn sign_with(key: &hmac::Key, t_unix: u64, body: &str) -> String {
    let tag = hmac::sign(key, format!("{t_unix}.{body}").as_bytes());
    format!("t={t_unix},v1={}", hex(tag.as_ref()))
}

/// Checks a received header (for receivers written in Rust, and tests).
pub fn verify_webhook(
    secret: &[u8],
    header: &str,
    body: &str,
    now_unix: u64,
    tolerance_s: u64,
) -> Result<(), SignatureError> {
    let mut t = None;
    let mut v1 = None;
    for part in header.split(',') {
        match part.split_once('=') {
            Some(("t", value)) => t = value.parse::<u64>().ok(),
            Some(("v1", value)) => v1 = unhex(value),
            _ => {}
        }
    }
    let (Some(t), Some(v1)) = (t, v1) else {
        return Err(SignatureError::Malformed);
    };
    if now_unix.abs_diff(t) > tolerance_s {
        return Err(SignatureError::Stale);
    }
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    hmac::verify(&key, format!("{t}.{body}").as_bytes(), &v1).map_err(|_| SignatureError::Mismatch)
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    s
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_then_verify() {
        let header = sign_webhook(b"s3cret", 1_700_000_000, "{}");
        assert!(header.starts_with("t=1700000000,v1="));
        assert_eq!(
            verify_webhook(b"s3cret", &header, "{}", 1_700_000_100, 300),
            Ok(())
        );
        assert_eq!(
            verify_webhook(b"s3cret", &header, "{ }", 1_700_000_100, 300),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_webhook(b"other", &header, "{}", 1_700_000_100, 300),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_webhook(b"s3cret", &header, "{}", 1_700_001_000, 300),
            Err(SignatureError::Stale)
        );
        assert_eq!(
            verify_webhook(b"s3cret", "v1=zz", "{}", 0, 300),
            Err(SignatureError::Malformed)
        );
    }
}
