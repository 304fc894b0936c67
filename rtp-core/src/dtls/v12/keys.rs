//! The cryptography of our DTLS 1.2 server, all on aws-lc-rs: the cipher
//! suites (RFC 5289 ECDHE_ECDSA AES-GCM), ECDHE on X25519 and P-256
//! (RFC 8422 §5.4), the TLS 1.2 PRF and key schedule with the extended
//! master secret (RFC 5246 §5, §6.3, §7.4.9; RFC 7627 §4), the exporter
//! (RFC 5705 §4), ServerKeyExchange signing with our ECDSA key and client
//! CertificateVerify checking (ECDSA P-256/P-384, RSA PKCS#1 v1.5).

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_128_GCM, AES_256_GCM};
use aws_lc_rs::agreement::{self, EphemeralPrivateKey, UnparsedPublicKey};
use aws_lc_rs::digest;
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use aws_lc_rs::signature::{self, EcdsaKeyPair, KeyPair};
use aws_lc_rs::tls_prf;

use crate::dtls::der::PublicKey;

/// The cipher suites we serve (RFC 5289 §3.2), most preferred first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CipherSuite {
    /// TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 (0xC02B).
    Aes128Gcm,
    /// TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384 (0xC02C).
    Aes256Gcm,
}

impl CipherSuite {
    pub(crate) const PREFERENCE: [Self; 2] = [Self::Aes128Gcm, Self::Aes256Gcm];

    pub(crate) fn id(self) -> u16 {
        match self {
            Self::Aes128Gcm => 0xc02b,
            Self::Aes256Gcm => 0xc02c,
        }
    }

    fn key_len(self) -> usize {
        match self {
            Self::Aes128Gcm => 16,
            Self::Aes256Gcm => 32,
        }
    }

    fn prf(self) -> &'static tls_prf::Algorithm {
        match self {
            Self::Aes128Gcm => &tls_prf::P_SHA256,
            Self::Aes256Gcm => &tls_prf::P_SHA384,
        }
    }

    /// The handshake hash: the PRF's hash (RFC 5246 §7.4.9).
    pub(crate) fn hash(self, data: &[u8]) -> digest::Digest {
        let alg = match self {
            Self::Aes128Gcm => &digest::SHA256,
            Self::Aes256Gcm => &digest::SHA384,
        };
        digest::digest(alg, data)
    }
}

/// The ECDHE groups we serve (RFC 8422 §5.1.1), most preferred first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Group {
    /// x25519 (29).
    X25519,
    /// secp256r1 (23).
    P256,
}

impl Group {
    pub(crate) const PREFERENCE: [Self; 2] = [Self::X25519, Self::P256];

    pub(crate) fn id(self) -> u16 {
        match self {
            Self::X25519 => 29,
            Self::P256 => 23,
        }
    }

    fn alg(self) -> &'static agreement::Algorithm {
        match self {
            Self::X25519 => &agreement::X25519,
            Self::P256 => &agreement::ECDH_P256,
        }
    }
}

/// Our ephemeral ECDHE key for one handshake.
pub(crate) struct KeyExchange {
    group: Group,
    private: EphemeralPrivateKey,
    public: Vec<u8>,
}

impl KeyExchange {
    pub(crate) fn generate(group: Group) -> Option<Self> {
        let private = EphemeralPrivateKey::generate(group.alg(), &SystemRandom::new()).ok()?;
        let public = private.compute_public_key().ok()?.as_ref().to_vec();
        Some(Self {
            group,
            private,
            public,
        })
    }

    pub(crate) fn group(&self) -> Group {
        self.group
    }

    /// Our public value (the X25519 key or the uncompressed P-256 point).
    pub(crate) fn public(&self) -> &[u8] {
        &self.public
    }

    /// The premaster secret with the client's public value; `None` for an
    /// invalid point (aws-lc-rs checks it is on the curve).
    pub(crate) fn agree(self, peer: &[u8]) -> Option<Vec<u8>> {
        let peer = UnparsedPublicKey::new(self.group.alg(), peer);
        agreement::agree_ephemeral(self.private, peer, (), |s| Ok(s.to_vec())).ok()
    }
}

/// The TLS 1.2 PRF of `suite` (RFC 5246 §5).
pub(crate) fn prf(
    suite: CipherSuite,
    secret: &[u8],
    label: &[u8],
    seed: &[u8],
    len: usize,
) -> Option<Vec<u8>> {
    let s = tls_prf::Secret::new(suite.prf(), secret).ok()?;
    Some(s.derive(label, seed, len).ok()?.as_ref().to_vec())
}

/// The extended master secret (RFC 7627 §4) from the premaster secret and
/// the session hash (the transcript through ClientKeyExchange).
pub(crate) fn master_secret(
    suite: CipherSuite,
    pms: &[u8],
    session_hash: &[u8],
) -> Option<Vec<u8>> {
    prf(suite, pms, b"extended master secret", session_hash, 48)
}

/// The write keys and implicit nonces of both sides (RFC 5246 §6.3,
/// RFC 5288 §3: GCM takes a 4-byte salt from the key block).
pub(crate) struct RecordKeys {
    pub(crate) client: RecordCipher,
    pub(crate) server: RecordCipher,
}

impl RecordKeys {
    pub(crate) fn derive(
        suite: CipherSuite,
        master: &[u8],
        client_random: &[u8; 32],
        server_random: &[u8; 32],
    ) -> Option<Self> {
        let k = suite.key_len();
        let mut seed = Vec::with_capacity(64);
        seed.extend_from_slice(server_random);
        seed.extend_from_slice(client_random);
        let block = prf(suite, master, b"key expansion", &seed, 2 * k + 8)?;
        let (client_key, rest) = block.split_at(k);
        let (server_key, rest) = rest.split_at(k);
        let (client_iv, server_iv) = rest.split_at(4);
        Some(Self {
            client: RecordCipher::new(suite, client_key, client_iv)?,
            server: RecordCipher::new(suite, server_key, server_iv)?,
        })
    }
}

/// AES-GCM for one direction of epoch 1 (RFC 5288 §3, RFC 6347 §4.1.2.1).
pub(crate) struct RecordCipher {
    key: LessSafeKey,
    salt: [u8; 4],
}

impl RecordCipher {
    fn new(suite: CipherSuite, key: &[u8], salt: &[u8]) -> Option<Self> {
        let alg = match suite {
            CipherSuite::Aes128Gcm => &AES_128_GCM,
            CipherSuite::Aes256Gcm => &AES_256_GCM,
        };
        let key = LessSafeKey::new(UnboundKey::new(alg, key).ok()?);
        Some(Self {
            key,
            salt: salt.try_into().ok()?,
        })
    }

    /// Encrypts `plain` of a record whose 8-byte epoch + sequence is
    /// `epoch_seq`; returns explicit nonce | ciphertext | tag.
    pub(crate) fn seal(&self, epoch_seq: u64, content_type: u8, plain: &[u8]) -> Option<Vec<u8>> {
        let explicit = epoch_seq.to_be_bytes();
        let mut out = Vec::with_capacity(8 + plain.len() + 16);
        out.extend_from_slice(&explicit);
        let mut body = plain.to_vec();
        let aad = aad(epoch_seq, content_type, plain.len());
        self.key
            .seal_in_place_append_tag(self.nonce(&explicit), Aad::from(aad), &mut body)
            .ok()?;
        out.extend_from_slice(&body);
        Some(out)
    }

    /// Decrypts a record fragment (explicit nonce | ciphertext | tag) in
    /// place; returns the plaintext's length at the front of `fragment`.
    pub(crate) fn open(
        &self,
        epoch_seq: u64,
        content_type: u8,
        fragment: &mut [u8],
    ) -> Option<usize> {
        let plain_len = fragment.len().checked_sub(8 + 16)?;
        let (explicit, body) = fragment.split_at_mut(8);
        let explicit: [u8; 8] = (&*explicit).try_into().ok()?;
        let aad = aad(epoch_seq, content_type, plain_len);
        let plain = self
            .key
            .open_in_place(self.nonce(&explicit), Aad::from(aad), body)
            .ok()?;
        let n = plain.len();
        fragment.copy_within(8..8 + n, 0);
        Some(n)
    }

    fn nonce(&self, explicit: &[u8; 8]) -> Nonce {
        let mut n = [0u8; 12];
        n[..4].copy_from_slice(&self.salt);
        n[4..].copy_from_slice(explicit);
        Nonce::assume_unique_for_key(n)
    }
}

/// RFC 5246 §6.2.3.3: seq_num | type | version | length, with DTLS's epoch
/// in the top 16 bits of seq_num (RFC 6347 §4.1.2.1).
fn aad(epoch_seq: u64, content_type: u8, len: usize) -> [u8; 13] {
    let mut a = [0u8; 13];
    a[..8].copy_from_slice(&epoch_seq.to_be_bytes());
    a[8] = content_type;
    a[9..11].copy_from_slice(&DTLS12.to_be_bytes());
    a[11..].copy_from_slice(&(len as u16).to_be_bytes());
    a
}

/// DTLS 1.2 on the wire (RFC 6347 §4.1).
pub(crate) const DTLS12: u16 = 0xfefd;

/// A TLS 1.2 SignatureAndHashAlgorithm (RFC 5246 §7.4.1.4.1) we sign or verify with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SigScheme {
    /// ecdsa + sha256 (0x0403).
    EcdsaSha256,
    /// ecdsa + sha384 (0x0503).
    EcdsaSha384,
    /// rsa (PKCS#1 v1.5) + sha256 (0x0401).
    RsaSha256,
    /// rsa (PKCS#1 v1.5) + sha384 (0x0501).
    RsaSha384,
}

impl SigScheme {
    /// What our CertificateRequest offers (RFC 5246 §7.4.4), in this order.
    pub(crate) const CLIENT_CERTIFICATE: [Self; 4] = [
        Self::EcdsaSha256,
        Self::RsaSha256,
        Self::EcdsaSha384,
        Self::RsaSha384,
    ];

    pub(crate) fn id(self) -> u16 {
        match self {
            Self::EcdsaSha256 => 0x0403,
            Self::EcdsaSha384 => 0x0503,
            Self::RsaSha256 => 0x0401,
            Self::RsaSha384 => 0x0501,
        }
    }

    pub(crate) fn from_id(id: u16) -> Option<Self> {
        Self::CLIENT_CERTIFICATE.into_iter().find(|s| s.id() == id)
    }
}

/// Our ECDSA signing key (from [`crate::dtls::DtlsCert`]) and the scheme it signs with.
pub(crate) struct Signer {
    key: EcdsaKeyPair,
    scheme: SigScheme,
}

impl Signer {
    /// Loads a PKCS#8 or SEC 1 ECDSA key of the curve `cert_key` names; `None`
    /// for another key type or a key that is not the certificate's.
    pub(crate) fn new(cert_key: &PublicKey<'_>, key_der: &[u8]) -> Option<Self> {
        let (alg, scheme, point) = match *cert_key {
            PublicKey::EcP256(p) => (
                &signature::ECDSA_P256_SHA256_ASN1_SIGNING,
                SigScheme::EcdsaSha256,
                p,
            ),
            PublicKey::EcP384(p) => (
                &signature::ECDSA_P384_SHA384_ASN1_SIGNING,
                SigScheme::EcdsaSha384,
                p,
            ),
            PublicKey::Rsa(_) => return None,
        };
        let key = EcdsaKeyPair::from_private_key_der(alg, key_der).ok()?;
        (key.public_key().as_ref() == point).then_some(Self { key, scheme })
    }

    pub(crate) fn scheme(&self) -> SigScheme {
        self.scheme
    }

    /// A DER ECDSA signature of `msg`.
    pub(crate) fn sign(&self, msg: &[u8]) -> Option<Vec<u8>> {
        let rng = SystemRandom::new();
        Some(self.key.sign(&rng, msg).ok()?.as_ref().to_vec())
    }
}

/// Whether `sig` is a valid `scheme` signature of `msg` by `key`. RSA keys
/// must be 2048–8192 bits (aws-lc-rs's bounds); ECDSA on P-256 or P-384.
pub(crate) fn verify(scheme: SigScheme, key: &PublicKey<'_>, msg: &[u8], sig: &[u8]) -> bool {
    let (alg, key): (&dyn signature::VerificationAlgorithm, &[u8]) = match (scheme, *key) {
        (SigScheme::RsaSha256, PublicKey::Rsa(k)) => (&signature::RSA_PKCS1_2048_8192_SHA256, k),
        (SigScheme::RsaSha384, PublicKey::Rsa(k)) => (&signature::RSA_PKCS1_2048_8192_SHA384, k),
        (SigScheme::EcdsaSha256, PublicKey::EcP256(k)) => (&signature::ECDSA_P256_SHA256_ASN1, k),
        (SigScheme::EcdsaSha384, PublicKey::EcP256(k)) => (&signature::ECDSA_P256_SHA384_ASN1, k),
        (SigScheme::EcdsaSha256, PublicKey::EcP384(k)) => (&signature::ECDSA_P384_SHA256_ASN1, k),
        (SigScheme::EcdsaSha384, PublicKey::EcP384(k)) => (&signature::ECDSA_P384_SHA384_ASN1, k),
        _ => return false,
    };
    signature::UnparsedPublicKey::new(alg, key)
        .verify(msg, sig)
        .is_ok()
}

/// `n` random bytes from the system (server random, HelloVerifyRequest cookie key).
pub(crate) fn random<const N: usize>() -> Option<[u8; N]> {
    let mut b = [0u8; N];
    SystemRandom::new().fill(&mut b).ok()?;
    Some(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 5246's PRF with SHA-256, from the widely used test vector
    /// (secret 9bbe436ba940f017b17652849a71db35, seed a0ba9f936cda311827a6f796ffd5198c,
    /// label "test label", 100 bytes).
    #[test]
    fn prf_sha256_vector() {
        let secret = hex("9bbe436ba940f017b17652849a71db35");
        let seed = hex("a0ba9f936cda311827a6f796ffd5198c");
        let out = prf(CipherSuite::Aes128Gcm, &secret, b"test label", &seed, 100).unwrap();
        assert_eq!(
            &out[..16],
            &hex("e3f229ba727be17b8d122620557cd453")[..],
            "{out:02x?}"
        );
    }

    #[test]
    fn record_cipher_round_trip_and_tamper() {
        let master = [7u8; 48];
        let keys = RecordKeys::derive(CipherSuite::Aes128Gcm, &master, &[1; 32], &[2; 32]).unwrap();
        let seq = (1u64 << 48) | 5;
        let sealed = keys.server.seal(seq, 23, b"hello").unwrap();
        assert_eq!(sealed.len(), 8 + 5 + 16);
        // The client's reading key is the server's writing key.
        let mut f = sealed.clone();
        let n = keys.server.open(seq, 23, &mut f).unwrap();
        assert_eq!(&f[..n], b"hello");
        let mut f = sealed.clone();
        assert!(
            keys.server.open(seq + 1, 23, &mut f).is_none(),
            "seq is authenticated"
        );
        let mut f = sealed.clone();
        assert!(
            keys.server.open(seq, 22, &mut f).is_none(),
            "type is authenticated"
        );
        let mut f = sealed;
        f[9] ^= 1;
        assert!(keys.server.open(seq, 23, &mut f).is_none());
        assert!(keys.client.open(seq, 23, &mut [0u8; 10]).is_none(), "short");
    }

    #[test]
    fn ecdhe_agrees_both_groups() {
        for g in Group::PREFERENCE {
            let a = KeyExchange::generate(g).unwrap();
            let b = KeyExchange::generate(g).unwrap();
            let (pa, pb) = (a.public().to_vec(), b.public().to_vec());
            assert_eq!(a.agree(&pb).unwrap(), b.agree(&pa).unwrap());
            let c = KeyExchange::generate(g).unwrap();
            assert!(c.agree(&[4u8; 7]).is_none(), "invalid point");
        }
    }

    /// CertificateVerify as OpenSSL makes it with webrtcbin's RSA-2048 key
    /// (PKCS#1 v1.5 SHA-256 and SHA-384), and with a P-384 ECDSA key; a
    /// signature never verifies under the wrong scheme, key or message.
    #[test]
    fn client_signatures_verify() {
        use crate::dtls::der::certificate_public_key;
        use aws_lc_rs::signature::{
            RsaKeyPair, ECDSA_P256_SHA256_ASN1_SIGNING, ECDSA_P384_SHA384_ASN1_SIGNING,
            RSA_PKCS1_SHA256, RSA_PKCS1_SHA384,
        };
        let rng = SystemRandom::new();
        let msg = b"the handshake so far";

        let rsa_cert = include_bytes!("../testdata/rsa2048.der");
        let rsa = RsaKeyPair::from_pkcs8(include_bytes!("../testdata/rsa2048.key.der")).unwrap();
        let key = certificate_public_key(rsa_cert).unwrap();
        for (scheme, pad) in [
            (SigScheme::RsaSha256, &RSA_PKCS1_SHA256),
            (SigScheme::RsaSha384, &RSA_PKCS1_SHA384),
        ] {
            let mut sig = vec![0; rsa.public_modulus_len()];
            rsa.sign(pad, &rng, msg, &mut sig).unwrap();
            assert!(verify(scheme, &key, msg, &sig), "{scheme:?}");
            assert!(!verify(scheme, &key, b"another handshake", &sig));
            assert!(
                !verify(SigScheme::EcdsaSha256, &key, msg, &sig),
                "scheme of another key type"
            );
        }
        let mut sig = vec![0; rsa.public_modulus_len()];
        rsa.sign(&RSA_PKCS1_SHA256, &rng, msg, &mut sig).unwrap();
        assert!(
            !verify(SigScheme::RsaSha384, &key, msg, &sig),
            "hash differs"
        );

        let ec_cert = include_bytes!("../testdata/p384.der");
        let key = certificate_public_key(ec_cert).unwrap();
        let k = EcdsaKeyPair::from_pkcs8(
            &ECDSA_P384_SHA384_ASN1_SIGNING,
            include_bytes!("../testdata/p384.key.der"),
        )
        .unwrap();
        let sig = k.sign(&rng, msg).unwrap();
        assert!(verify(SigScheme::EcdsaSha384, &key, msg, sig.as_ref()));
        assert!(
            !verify(SigScheme::EcdsaSha256, &key, msg, sig.as_ref()),
            "hash differs"
        );
        assert!(!verify(SigScheme::RsaSha256, &key, msg, sig.as_ref()));
        // P-256 (a browser-like client certificate) with SHA-256.
        let ours = crate::dtls::DtlsCert::generate(
            std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_750_000_000),
        )
        .unwrap();
        let key = certificate_public_key(ours.cert_der()).unwrap();
        let k = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, ours.key_der()).unwrap();
        let sig = k.sign(&rng, msg).unwrap();
        assert!(verify(SigScheme::EcdsaSha256, &key, msg, sig.as_ref()));
        assert!(!verify(SigScheme::EcdsaSha384, &key, msg, sig.as_ref()));
        assert!(
            SigScheme::from_id(0x0804).is_none(),
            "RSA-PSS was not offered"
        );
    }

    /// Our signer refuses a key that is not the certificate's.
    #[test]
    fn signer_checks_the_key_matches() {
        use crate::dtls::der::certificate_public_key;
        let p384 = include_bytes!("../testdata/p384.der");
        let key = certificate_public_key(p384).unwrap();
        assert!(Signer::new(&key, include_bytes!("../testdata/p384.key.der")).is_some());
        let rsa = certificate_public_key(include_bytes!("../testdata/rsa2048.der")).unwrap();
        assert!(Signer::new(&rsa, include_bytes!("../testdata/rsa2048.key.der")).is_none());
        let ours = crate::dtls::DtlsCert::generate(
            std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_750_000_000),
        )
        .unwrap();
        let k = certificate_public_key(ours.cert_der()).unwrap();
        assert!(
            Signer::new(&k, include_bytes!("../testdata/p384.key.der")).is_none(),
            "another curve"
        );
        assert!(Signer::new(&k, ours.key_der()).is_some());
    }

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }
}
