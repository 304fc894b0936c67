//! Just enough DER (ITU-T X.690) to take the SubjectPublicKeyInfo out of an
//! X.509 certificate (RFC 5280 §4.1) and tell RSA from ECDSA P-256/P-384
//! (RFC 3279 §2.3, RFC 5480 §2). WebRTC peers authenticate a certificate by
//! its SDP fingerprint, not by its contents (RFC 8827 §6.5), so nothing else
//! of it is read: no validity, names or extensions. The key bytes go to
//! aws-lc-rs, which parses and checks them again.
//!
//! Untrusted input: every length is checked against what is left, lengths
//! take at most 4 bytes, indefinite lengths and multi-byte tags are refused,
//! and nothing recurses.

/// The public key of a certificate, as its SubjectPublicKeyInfo names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PublicKey<'a> {
    /// rsaEncryption: the DER `RSAPublicKey` (RFC 8017 §A.1.1).
    Rsa(&'a [u8]),
    /// id-ecPublicKey on prime256v1: the SEC 1 point.
    EcP256(&'a [u8]),
    /// id-ecPublicKey on secp384r1: the SEC 1 point.
    EcP384(&'a [u8]),
}

/// Why a certificate gave no key we can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DerError {
    /// Not well-formed DER where we looked.
    Malformed,
    /// Well-formed, but a key algorithm or curve we do not verify.
    Unsupported,
}

/// The subject public key of a DER X.509 certificate.
pub(crate) fn certificate_public_key(cert: &[u8]) -> Result<PublicKey<'_>, DerError> {
    let (cert_body, _) = element(cert, SEQUENCE)?;
    let (tbs, _) = element(cert_body, SEQUENCE)?;
    let mut rest = tbs;
    // version [0] EXPLICIT, optional.
    if rest.first() == Some(&CONTEXT_0) {
        rest = element(rest, CONTEXT_0)?.1;
    }
    // serialNumber, signature, issuer, validity, subject.
    for tag in [INTEGER, SEQUENCE, SEQUENCE, SEQUENCE, SEQUENCE] {
        rest = element(rest, tag)?.1;
    }
    let (spki, _) = element(rest, SEQUENCE)?;
    spki_public_key(spki)
}

/// The key of the contents of a SubjectPublicKeyInfo SEQUENCE.
fn spki_public_key(spki: &[u8]) -> Result<PublicKey<'_>, DerError> {
    let (alg, rest) = element(spki, SEQUENCE)?;
    let (bits, _) = element(rest, BIT_STRING)?;
    // The first byte counts unused bits; a key is whole bytes.
    let key = match bits.split_first() {
        Some((0, key)) if !key.is_empty() => key,
        _ => return Err(DerError::Malformed),
    };
    let (oid, params) = element(alg, OID)?;
    if oid == OID_RSA_ENCRYPTION {
        return Ok(PublicKey::Rsa(key));
    }
    if oid != OID_EC_PUBLIC_KEY {
        return Err(DerError::Unsupported);
    }
    let (curve, _) = element(params, OID)?;
    match curve {
        c if c == OID_P256 => Ok(PublicKey::EcP256(key)),
        c if c == OID_P384 => Ok(PublicKey::EcP384(key)),
        _ => Err(DerError::Unsupported),
    }
}

/// One element with tag `tag` at the start of `buf`: (contents, what follows).
fn element(buf: &[u8], tag: u8) -> Result<(&[u8], &[u8]), DerError> {
    let (&t, rest) = buf.split_first().ok_or(DerError::Malformed)?;
    if t != tag {
        return Err(DerError::Malformed);
    }
    let (&first, rest) = rest.split_first().ok_or(DerError::Malformed)?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        // Long form: 1..=4 length bytes; 0x80 alone would be BER's indefinite length.
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return Err(DerError::Malformed);
        }
        let (len_bytes, rest) = rest.split_at(n);
        let len = len_bytes
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        (len, rest)
    };
    if rest.len() < len {
        return Err(DerError::Malformed);
    }
    Ok(rest.split_at(len))
}

const INTEGER: u8 = 0x02;
const BIT_STRING: u8 = 0x03;
const OID: u8 = 0x06;
const SEQUENCE: u8 = 0x30;
const CONTEXT_0: u8 = 0xa0;

/// 1.2.840.113549.1.1.1
const OID_RSA_ENCRYPTION: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
/// 1.2.840.10045.2.1
const OID_EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
/// 1.2.840.10045.3.1.7 (prime256v1)
const OID_P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
/// 1.3.132.0.34 (secp384r1)
const OID_P384: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x22];

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, SystemTime};

    fn ours() -> Vec<u8> {
        let c = crate::dtls::DtlsCert::generate(
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_750_000_000),
        )
        .expect("cert");
        c.cert_der().to_vec()
    }

    #[test]
    fn our_certificate_is_p256() {
        match certificate_public_key(&ours()) {
            Ok(PublicKey::EcP256(k)) => {
                assert_eq!(k.len(), 65);
                assert_eq!(k[0], 4, "uncompressed point");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn rsa_certificate() {
        // An RSA-2048 certificate (openssl req -x509 -newkey rsa:2048, DER).
        let der = include_bytes!("testdata/rsa2048.der");
        match certificate_public_key(der) {
            Ok(PublicKey::Rsa(k)) => assert!(k.len() > 256, "{}", k.len()),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn p384_certificate() {
        let der = include_bytes!("testdata/p384.der");
        match certificate_public_key(der) {
            Ok(PublicKey::EcP384(k)) => assert_eq!(k.len(), 97),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        let der = ours();
        for n in 0..der.len() {
            assert!(certificate_public_key(&der[..n]).is_err(), "{n}");
        }
    }

    #[test]
    fn lengths_are_bounded() {
        assert_eq!(element(&[0x30, 0x80], SEQUENCE), Err(DerError::Malformed));
        assert_eq!(
            element(&[0x30, 0x85, 0, 0, 0, 0, 1], SEQUENCE),
            Err(DerError::Malformed)
        );
        assert_eq!(
            element(&[0x30, 0x82, 0xff, 0xff], SEQUENCE),
            Err(DerError::Malformed)
        );
        assert_eq!(
            element(&[0x30, 0x81, 1, 7, 8], SEQUENCE),
            Ok((&[7u8][..], &[8u8][..]))
        );
        assert_eq!(element(&[0x31, 0], SEQUENCE), Err(DerError::Malformed));
    }

    #[test]
    fn unknown_algorithm_is_unsupported() {
        // SPKI with OID 1.3.101.112 (Ed25519) and a 32-byte key.
        let mut spki = vec![0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00];
        spki.extend([7u8; 32]);
        assert_eq!(spki_public_key(&spki), Err(DerError::Unsupported));
    }
}
