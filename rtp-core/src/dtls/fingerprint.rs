//! Certificate fingerprints as carried in SDP `a=fingerprint`
//! (RFC 8122 §5, RFC 8842 §5): SHA-256 of the DER certificate, written
//! `sha-256 AB:CD:...`. Only SHA-256 is supported; it is what every browser
//! sends and RFC 8122 §5 requires endpoints to support it.

use std::fmt;

use aws_lc_rs::{constant_time, digest};
use thiserror::Error;

/// SHA-256 fingerprint of a DER certificate.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint([u8; FINGERPRINT_LEN]);

/// Why an SDP fingerprint value did not parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum FingerprintError {
    /// The hash function is not `sha-256`.
    #[error("unsupported fingerprint hash function")]
    UnsupportedHash,
    /// The hex part is not 32 colon-separated byte pairs.
    #[error("malformed fingerprint")]
    Malformed,
}

impl Fingerprint {
    /// The fingerprint of a DER-encoded certificate.
    pub fn of_der(cert_der: &[u8]) -> Self {
        let d = digest::digest(&digest::SHA256, cert_der);
        let mut out = [0u8; FINGERPRINT_LEN];
        out.copy_from_slice(d.as_ref());
        Self(out)
    }

    /// A fingerprint from its 32 raw bytes.
    pub const fn from_bytes(bytes: [u8; FINGERPRINT_LEN]) -> Self {
        Self(bytes)
    }

    /// The raw digest.
    pub const fn as_bytes(&self) -> &[u8; FINGERPRINT_LEN] {
        &self.0
    }

    /// Whether `cert_der` hashes to this fingerprint. The comparison is
    /// constant-time so a peer cannot learn how many leading bytes matched.
    pub fn matches_der(&self, cert_der: &[u8]) -> bool {
        self.ct_eq(&Self::of_der(cert_der))
    }

    /// Constant-time equality, for checking a peer against the expected value.
    pub fn ct_eq(&self, other: &Self) -> bool {
        constant_time::verify_slices_are_equal(&self.0, &other.0).is_ok()
    }

    /// The SDP attribute value: `sha-256 AB:CD:...` (upper-case hex, RFC 8122 §5).
    pub fn to_sdp(&self) -> String {
        self.to_string()
    }

    /// Parse an SDP attribute value such as `sha-256 AB:CD:...`. The hash name
    /// is case-insensitive (RFC 8122 §5 uses lower case, some stacks send
    /// upper), hex digits may be either case, surrounding whitespace is ignored.
    pub fn parse_sdp(value: &str) -> Result<Self, FingerprintError> {
        let mut parts = value.split_ascii_whitespace();
        let hash = parts.next().ok_or(FingerprintError::Malformed)?;
        let hex = parts.next().ok_or(FingerprintError::Malformed)?;
        if parts.next().is_some() {
            return Err(FingerprintError::Malformed);
        }
        if !hash.eq_ignore_ascii_case("sha-256") {
            return Err(FingerprintError::UnsupportedHash);
        }
        let mut out = [0u8; FINGERPRINT_LEN];
        let mut n = 0;
        for pair in hex.split(':') {
            let slot = out.get_mut(n).ok_or(FingerprintError::Malformed)?;
            let b = pair.as_bytes();
            if b.len() != 2 {
                return Err(FingerprintError::Malformed);
            }
            *slot = (hex_val(b[0])? << 4) | hex_val(b[1])?;
            n += 1;
        }
        if n != FINGERPRINT_LEN {
            return Err(FingerprintError::Malformed);
        }
        Ok(Self(out))
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("sha-256 ")?;
        for (i, b) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(":")?;
            }
            write!(f, "{b:02X}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({self})")
    }
}

fn hex_val(c: u8) -> Result<u8, FingerprintError> {
    match c {
        b'0'..=b'9' => Ok(c - b'0'),
        b'a'..=b'f' => Ok(c - b'a' + 10),
        b'A'..=b'F' => Ok(c - b'A' + 10),
        _ => Err(FingerprintError::Malformed),
    }
}

/// Length of a SHA-256 fingerprint in bytes.
pub const FINGERPRINT_LEN: usize = 32;

#[cfg(test)]
mod tests {
    use super::*;

    fn counting() -> Fingerprint {
        let mut b = [0u8; FINGERPRINT_LEN];
        for (i, v) in b.iter_mut().enumerate() {
            *v = (i as u8).wrapping_mul(37);
        }
        Fingerprint::from_bytes(b)
    }

    #[test]
    fn sdp_round_trip() {
        let fp = counting();
        let s = fp.to_sdp();
        assert!(s.starts_with("sha-256 00:25:4A:"));
        assert_eq!(s.len(), "sha-256 ".len() + 32 * 3 - 1);
        assert_eq!(Fingerprint::parse_sdp(&s), Ok(fp));
    }

    #[test]
    fn parse_accepts_case_and_whitespace() {
        let fp = counting();
        let s = format!("  SHA-256\t{}  ", fp.to_sdp()[8..].to_ascii_lowercase());
        assert_eq!(Fingerprint::parse_sdp(&s), Ok(fp));
    }

    #[test]
    fn parse_rejects_bad_input() {
        let good = counting().to_sdp();
        let hex = &good[8..];
        assert_eq!(
            Fingerprint::parse_sdp(&format!("sha-1 {hex}")),
            Err(FingerprintError::UnsupportedHash)
        );
        for bad in [
            String::new(),
            "sha-256".to_owned(),
            format!("sha-256 {}", &hex[3..]),
            format!("sha-256 {hex}:00"),
            format!("sha-256 {hex} extra"),
            format!("sha-256 {}", hex.replace(':', "")),
            format!("sha-256 G{}", &hex[1..]),
            format!("sha-256 {}", hex.replacen(':', "::", 1)),
        ] {
            assert_eq!(
                Fingerprint::parse_sdp(&bad),
                Err(FingerprintError::Malformed),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn matches_der_is_sha256() {
        // SHA-256("abc"), FIPS 180-2 appendix B.1.
        let expect = Fingerprint::parse_sdp(
            "sha-256 BA:78:16:BF:8F:01:CF:EA:41:41:40:DE:5D:AE:22:23:\
             B0:03:61:A3:96:17:7A:9C:B4:10:FF:61:F2:00:15:AD",
        )
        .expect("valid");
        assert!(expect.matches_der(b"abc"));
        assert!(!expect.matches_der(b"abd"));
        assert_eq!(Fingerprint::of_der(b"abc"), expect);
    }
}
