//! [`DtlsCert`]: our DTLS identity, a self-signed ECDSA P-256 certificate and
//! its PKCS#8 key. WebRTC authenticates it only through the SDP fingerprint
//! (RFC 8827 §6.5), so the subject and validity carry no meaning; browsers
//! expect ECDSA P-256 (RFC 8827 §6.5 recommends it for interoperability).

use std::fmt;
use std::time::{Duration, SystemTime};

use rcgen::{CertificateParams, DistinguishedName, DnType, IsCa, KeyPair, SerialNumber};
use time::OffsetDateTime;

use super::{DtlsError, Fingerprint};

/// A DTLS certificate and private key, both DER, with the fingerprint cached.
#[derive(Clone)]
pub struct DtlsCert {
    inner: dimpl::DtlsCertificate,
    fingerprint: Fingerprint,
}

impl DtlsCert {
    /// Generate a fresh self-signed ECDSA P-256 certificate, valid from a day
    /// before `wall_time` (peer clock skew) until [`CERT_LIFETIME`] after it.
    /// rtp-core never reads the clock, so the caller passes the wall time.
    pub fn generate(wall_time: SystemTime) -> Result<Self, DtlsError> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .map_err(|_| DtlsError::Certificate)?;
        let mut params =
            CertificateParams::new(Vec::<String>::new()).map_err(|_| DtlsError::Certificate)?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "sluice");
        params.distinguished_name = dn;
        params.is_ca = IsCa::NoCa;
        let now = OffsetDateTime::from(wall_time);
        params.not_before = now - Duration::from_secs(24 * 3600);
        params.not_after = now + CERT_LIFETIME;
        // Firefox rejects a second certificate from the same issuer name with
        // a serial it has already seen, so the serial must be unique across
        // processes and hosts: 16 random bytes, top bit clear so the DER
        // INTEGER is positive, never all zero.
        let mut serial = [0u8; 16];
        aws_lc_rs::rand::fill(&mut serial).map_err(|_| DtlsError::Certificate)?;
        serial[0] = (serial[0] & 0x7f) | 0x01;
        params.serial_number = Some(SerialNumber::from_slice(&serial));
        let cert = params
            .self_signed(&key)
            .map_err(|_| DtlsError::Certificate)?;
        Self::from_der(cert.der().to_vec(), key.serialize_der())
    }

    /// Load a DER certificate and its private key (PKCS#8 or SEC1 DER, ECDSA
    /// P-256 or P-384, the certificate's own). Checked here because dimpl
    /// panics on a key it cannot parse when the endpoint is built, and our
    /// DTLS 1.2 server signs with it.
    pub fn from_der(cert_der: Vec<u8>, key_der: Vec<u8>) -> Result<Self, DtlsError> {
        if dimpl::crypto::cert_named_group(&cert_der).is_err()
            || !super::v12::can_sign(&cert_der, &key_der)
        {
            return Err(DtlsError::Certificate);
        }
        let provider = dimpl::crypto::aws_lc_rs::default_provider();
        if provider.key_provider.load_private_key(&key_der).is_err() {
            return Err(DtlsError::Certificate);
        }
        let fingerprint = Fingerprint::of_der(&cert_der);
        Ok(Self {
            inner: dimpl::DtlsCertificate {
                certificate: cert_der,
                private_key: key_der,
            },
            fingerprint,
        })
    }

    /// SHA-256 fingerprint of the certificate, for our SDP `a=fingerprint`.
    pub fn fingerprint(&self) -> Fingerprint {
        self.fingerprint
    }

    /// The certificate, DER.
    pub fn cert_der(&self) -> &[u8] {
        &self.inner.certificate
    }

    /// The private key, DER (never leaves rtp-core's DTLS).
    pub(super) fn key_der(&self) -> &[u8] {
        &self.inner.private_key
    }

    pub(super) fn to_dimpl(&self) -> dimpl::DtlsCertificate {
        self.inner.clone()
    }
}

impl fmt::Debug for DtlsCert {
    /// Never prints the key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DtlsCert")
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

/// How long a generated certificate is valid. Browsers do not check the
/// validity of a fingerprint-pinned DTLS certificate today, but a process that
/// lives longer than this should still generate a new one.
pub const CERT_LIFETIME: Duration = Duration::from_secs(365 * 24 * 3600);

#[cfg(test)]
mod tests {
    use super::*;

    fn wall() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_750_000_000)
    }

    #[test]
    fn generated_cert_loads_and_fingerprints_its_der() {
        let c = DtlsCert::generate(wall()).expect("generate");
        assert_eq!(c.fingerprint(), Fingerprint::of_der(c.cert_der()));
        assert_eq!(
            dimpl::crypto::cert_named_group(c.cert_der()),
            Ok(dimpl::NamedGroup::Secp256r1)
        );
        let again = DtlsCert::from_der(c.inner.certificate.clone(), c.inner.private_key.clone())
            .expect("reload");
        assert_eq!(again.fingerprint(), c.fingerprint());
    }

    #[test]
    fn two_certs_differ() {
        let a = DtlsCert::generate(wall()).expect("a");
        let b = DtlsCert::generate(wall()).expect("b");
        assert_ne!(a.fingerprint(), b.fingerprint());
    }

    #[test]
    fn from_der_rejects_garbage() {
        let c = DtlsCert::generate(wall()).expect("generate");
        let key = c.inner.private_key.clone();
        let cert = c.inner.certificate.clone();
        assert!(DtlsCert::from_der(vec![0x30, 0x03, 1, 2, 3], key).is_err());
        assert!(DtlsCert::from_der(cert, vec![0x30, 0x00]).is_err());
    }

    #[test]
    fn debug_hides_key() {
        let c = DtlsCert::generate(wall()).expect("generate");
        let s = format!("{c:?}");
        assert!(s.contains("sha-256"));
        assert!(!s.contains("private"));
    }
}
