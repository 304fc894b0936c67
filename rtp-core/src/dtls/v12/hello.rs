//! The ClientHello we read (RFC 6347 §4.2.1, RFC 5246 §7.4.1.2) with the
//! extensions a WebRTC DTLS 1.2 handshake uses, and the two answers to it
//! we write: HelloVerifyRequest (RFC 6347 §4.2.1) and ServerHello
//! (RFC 5246 §7.4.1.3) with renegotiation_info (RFC 5746 §3.6),
//! extended_master_secret (RFC 7627 §5.1), use_srtp (RFC 5764 §4.1.1)
//! and ec_point_formats (RFC 8422 §5.2).

use super::codec::{put_u16, put_vec16, put_vec8, Reader};
use super::keys::{CipherSuite, Group, DTLS12};
use super::record::DTLS10;

/// Extension types (IANA TLS ExtensionType registry).
const EXT_SUPPORTED_GROUPS: u16 = 10;
const EXT_EC_POINT_FORMATS: u16 = 11;
const EXT_SIGNATURE_ALGORITHMS: u16 = 13;
const EXT_USE_SRTP: u16 = 14;
const EXT_EXTENDED_MASTER_SECRET: u16 = 23;
const EXT_SUPPORTED_VERSIONS: u16 = 43;
const EXT_RENEGOTIATION_INFO: u16 = 0xff01;
/// TLS_EMPTY_RENEGOTIATION_INFO_SCSV (RFC 5746 §3.3).
const SCSV: u16 = 0x00ff;
/// DTLS 1.3's version number (RFC 9147 §5.3).
pub(crate) const DTLS13: u16 = 0xfefc;
/// The ec_point_formats value "uncompressed" (RFC 8422 §5.1.2).
const UNCOMPRESSED: u8 = 0;

/// Why a ClientHello was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HelloError {
    /// Does not parse (decode_error).
    Malformed,
    /// An extension appears twice (illegal_parameter, RFC 5246 §7.4.1.4).
    Duplicate,
}

/// A parsed ClientHello; slices borrow the message body.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ClientHello<'a> {
    pub(crate) client_version: u16,
    pub(crate) random: [u8; 32],
    pub(crate) cookie: &'a [u8],
    cipher_suites: &'a [u8],
    supported_versions: Option<&'a [u8]>,
    supported_groups: Option<&'a [u8]>,
    ec_point_formats: Option<&'a [u8]>,
    signature_algorithms: Option<&'a [u8]>,
    srtp_profiles: Option<&'a [u8]>,
    pub(crate) extended_master_secret: bool,
    renegotiation_info: Option<&'a [u8]>,
}

impl<'a> ClientHello<'a> {
    /// Parses a ClientHello body.
    pub(crate) fn parse(body: &'a [u8]) -> Result<Self, HelloError> {
        let m = HelloError::Malformed;
        let mut r = Reader::new(body);
        let client_version = r.u16().ok_or(m)?;
        let random: [u8; 32] = r.bytes(32).ok_or(m)?.try_into().map_err(|_| m)?;
        let session_id = r.vec8().ok_or(m)?;
        let cookie = r.vec8().ok_or(m)?;
        let cipher_suites = r.vec16().ok_or(m)?;
        let compression = r.vec8().ok_or(m)?;
        if session_id.len() > 32 || cipher_suites.len() % 2 != 0 || !compression.contains(&0) {
            return Err(m);
        }
        let mut ch = Self {
            client_version,
            random,
            cookie,
            cipher_suites,
            supported_versions: None,
            supported_groups: None,
            ec_point_formats: None,
            signature_algorithms: None,
            srtp_profiles: None,
            extended_master_secret: false,
            renegotiation_info: None,
        };
        if r.is_empty() {
            return Ok(ch); // no extensions at all (RFC 5246 §7.4.1.2 allows it)
        }
        let mut exts = Reader::new(r.vec16().ok_or(m)?);
        if !r.is_empty() {
            return Err(m);
        }
        let mut seen: Vec<u16> = Vec::new();
        while !exts.is_empty() {
            let ty = exts.u16().ok_or(m)?;
            let data = exts.vec16().ok_or(m)?;
            if seen.contains(&ty) {
                return Err(HelloError::Duplicate);
            }
            seen.push(ty);
            let mut d = Reader::new(data);
            match ty {
                EXT_SUPPORTED_VERSIONS => ch.supported_versions = Some(whole(d.vec8(), &d)?),
                EXT_SUPPORTED_GROUPS => ch.supported_groups = Some(whole(d.vec16(), &d)?),
                EXT_EC_POINT_FORMATS => ch.ec_point_formats = Some(whole(d.vec8(), &d)?),
                EXT_SIGNATURE_ALGORITHMS => ch.signature_algorithms = Some(whole(d.vec16(), &d)?),
                EXT_USE_SRTP => {
                    let profiles = d.vec16().ok_or(m)?;
                    whole(d.vec8(), &d)?; // srtp_mki
                    ch.srtp_profiles = Some(profiles);
                }
                EXT_EXTENDED_MASTER_SECRET => {
                    if !data.is_empty() {
                        return Err(m);
                    }
                    ch.extended_master_secret = true;
                }
                EXT_RENEGOTIATION_INFO => ch.renegotiation_info = Some(whole(d.vec8(), &d)?),
                _ => {}
            }
        }
        Ok(ch)
    }

    /// Whether `supported_versions` offers DTLS 1.3 (RFC 8446 §4.2.1): such a
    /// client is dimpl's to serve.
    pub(crate) fn offers_dtls13(&self) -> bool {
        pairs(self.supported_versions.unwrap_or_default()).any(|v| v == DTLS13)
    }

    /// Whether the client can speak DTLS 1.2 at all.
    pub(crate) fn offers_dtls12(&self) -> bool {
        match self.supported_versions {
            Some(v) => pairs(v).any(|v| v == DTLS12),
            // Lower is newer in DTLS: 0xfefd (1.2) <= 0xfeff (1.0).
            None => self.client_version <= DTLS12,
        }
    }

    /// Our most preferred suite the client offers.
    pub(crate) fn suite(&self) -> Option<CipherSuite> {
        CipherSuite::PREFERENCE
            .into_iter()
            .find(|s| pairs(self.cipher_suites).any(|c| c == s.id()))
    }

    /// Our most preferred group the client offers. Without the extension a
    /// client supports anything (RFC 8422 §4); we then take P-256.
    pub(crate) fn group(&self) -> Option<Group> {
        match self.supported_groups {
            None => Some(Group::P256),
            Some(g) => Group::PREFERENCE
                .into_iter()
                .find(|ours| pairs(g).any(|c| c == ours.id())),
        }
    }

    /// Whether the client takes uncompressed points (RFC 8422 §5.1.2: when
    /// it sends ec_point_formats, "uncompressed" must be in it).
    pub(crate) fn takes_uncompressed(&self) -> bool {
        self.ec_point_formats
            .is_none_or(|f| f.contains(&UNCOMPRESSED))
    }

    /// Whether the client sent ec_point_formats (the ServerHello then echoes it).
    pub(crate) fn sent_point_formats(&self) -> bool {
        self.ec_point_formats.is_some()
    }

    /// Whether the client accepts signatures with `scheme` (a TLS 1.2
    /// SignatureAndHashAlgorithm). A client without the extension accepts
    /// SHA-1 only (RFC 5246 §7.4.1.4.1), which we do not sign with.
    pub(crate) fn accepts_signature(&self, scheme: u16) -> bool {
        self.signature_algorithms
            .is_some_and(|s| pairs(s).any(|c| c == scheme))
    }

    /// The SRTP profiles offered (RFC 5764 §4.1.2 ids). A client MKI is
    /// ignored: our use_srtp answer carries none (RFC 5764 §4.1.1).
    pub(crate) fn srtp(&self) -> Option<impl Iterator<Item = u16> + 'a> {
        self.srtp_profiles.map(pairs)
    }

    /// Secure renegotiation signalled, for an initial handshake
    /// (RFC 5746 §3.6: an empty renegotiation_info or the SCSV).
    pub(crate) fn secure_renegotiation(&self) -> Result<bool, HelloError> {
        match self.renegotiation_info {
            Some([]) => Ok(true),
            Some(_) => Err(HelloError::Malformed),
            None => Ok(pairs(self.cipher_suites).any(|c| c == SCSV)),
        }
    }
}

fn whole<'a>(v: Option<&'a [u8]>, rest: &Reader<'_>) -> Result<&'a [u8], HelloError> {
    match v {
        Some(v) if rest.is_empty() => Ok(v),
        _ => Err(HelloError::Malformed),
    }
}

/// The 16-bit values of a list (an odd trailing byte is ignored).
fn pairs(b: &[u8]) -> impl Iterator<Item = u16> + '_ {
    b.chunks_exact(2).map(|c| u16::from_be_bytes([c[0], c[1]]))
}

/// HelloVerifyRequest body (RFC 6347 §4.2.1: server_version DTLS 1.0 for
/// compatibility, whatever is negotiated later).
pub(crate) fn hello_verify_request(cookie: &[u8]) -> Vec<u8> {
    let mut b = Vec::with_capacity(3 + cookie.len());
    put_u16(&mut b, DTLS10);
    put_vec8(&mut b, cookie);
    b
}

/// ServerHello body: DTLS 1.2, an empty session id (no resumption), no
/// compression, and the extensions we agreed to (we never renegotiate, so
/// renegotiation_info is always empty).
pub(crate) fn server_hello(
    random: &[u8; 32],
    suite: CipherSuite,
    srtp_profile: u16,
    renegotiation: bool,
    point_formats: bool,
) -> Vec<u8> {
    let mut b = Vec::with_capacity(96);
    put_u16(&mut b, DTLS12);
    b.extend_from_slice(random);
    put_vec8(&mut b, &[]);
    put_u16(&mut b, suite.id());
    b.push(0);
    let mut ext = Vec::with_capacity(32);
    if renegotiation {
        // RFC 5746 §3.6: only for a client that signalled secure renegotiation.
        put_u16(&mut ext, EXT_RENEGOTIATION_INFO);
        put_vec16(&mut ext, &[0]);
    }
    put_u16(&mut ext, EXT_EXTENDED_MASTER_SECRET);
    put_vec16(&mut ext, &[]);
    put_u16(&mut ext, EXT_USE_SRTP);
    let mut srtp = Vec::with_capacity(5);
    put_vec16(&mut srtp, &srtp_profile.to_be_bytes());
    put_vec8(&mut srtp, &[]);
    put_vec16(&mut ext, &srtp);
    if point_formats {
        put_u16(&mut ext, EXT_EC_POINT_FORMATS);
        put_vec16(&mut ext, &[1, UNCOMPRESSED]);
    }
    put_vec16(&mut b, &ext);
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A ClientHello like OpenSSL 3.0's DTLS 1.2 one.
    pub(crate) fn openssl_like(cookie: &[u8]) -> Vec<u8> {
        let mut b = Vec::new();
        put_u16(&mut b, DTLS12);
        b.extend_from_slice(&[0x42; 32]);
        put_vec8(&mut b, &[]);
        put_vec8(&mut b, cookie);
        put_vec16(&mut b, &[0xc0, 0x2c, 0xc0, 0x2b, 0xcc, 0xa9, 0x00, 0xff]);
        put_vec8(&mut b, &[0]);
        let mut ext = Vec::new();
        let mut add = |ty: u16, data: &[u8]| {
            put_u16(&mut ext, ty);
            put_vec16(&mut ext, data);
        };
        add(EXT_EC_POINT_FORMATS, &[3, 0, 1, 2]);
        add(EXT_SUPPORTED_GROUPS, &[0, 6, 0, 29, 0, 23, 0, 24]);
        add(35, &[]); // session_ticket: ignored
        add(EXT_USE_SRTP, &[0, 4, 0, 1, 0, 2, 0]);
        add(22, &[]); // encrypt_then_mac: ignored
        add(EXT_EXTENDED_MASTER_SECRET, &[]);
        add(EXT_SIGNATURE_ALGORITHMS, &[0, 6, 4, 3, 8, 4, 4, 1]);
        put_vec16(&mut b, &ext);
        b
    }

    #[test]
    fn openssl_hello_parses() {
        let body = openssl_like(&[9; 20]);
        let ch = ClientHello::parse(&body).unwrap();
        assert_eq!(ch.cookie, &[9; 20]);
        assert_eq!(ch.suite(), Some(CipherSuite::Aes128Gcm));
        assert_eq!(ch.group(), Some(Group::X25519));
        assert!(ch.extended_master_secret && ch.takes_uncompressed() && ch.sent_point_formats());
        assert!(ch.accepts_signature(0x0403) && !ch.accepts_signature(0x0503));
        assert_eq!(ch.secure_renegotiation(), Ok(true), "SCSV");
        assert!(!ch.offers_dtls13() && ch.offers_dtls12());
        assert_eq!(ch.srtp().unwrap().collect::<Vec<_>>(), vec![1, 2]);
        // Every truncation is refused, never a panic — except right before the
        // extensions, which a hello may leave out.
        let fixed = 2 + 32 + 1 + 21 + 10 + 2;
        for n in 0..body.len() {
            assert_eq!(ClientHello::parse(&body[..n]).is_err(), n != fixed, "{n}");
        }
    }

    #[test]
    fn duplicate_extension_and_trailing_bytes() {
        let mut body = openssl_like(&[]);
        let mut twice = body.clone();
        // Append a second extended_master_secret inside the extensions block.
        let ext_len_at = twice.len() - openssl_ext_len(&body) - 2;
        let new_len = openssl_ext_len(&body) + 4;
        twice[ext_len_at..ext_len_at + 2].copy_from_slice(&(new_len as u16).to_be_bytes());
        twice.extend_from_slice(&[0, 23, 0, 0]);
        assert_eq!(
            ClientHello::parse(&twice).err(),
            Some(HelloError::Duplicate)
        );
        body.push(0);
        assert_eq!(ClientHello::parse(&body).err(), Some(HelloError::Malformed));
    }

    fn openssl_ext_len(body: &[u8]) -> usize {
        // version 2, random 32, session 1, cookie 1, suites 2+8, compression 2.
        let at = 2 + 32 + 1 + 1 + 2 + 8 + 2;
        u16::from_be_bytes([body[at], body[at + 1]]) as usize
    }

    #[test]
    fn versions_and_server_hello() {
        let mut body = openssl_like(&[]);
        // A hello with supported_versions [1.3, 1.2].
        let mut ext = Vec::new();
        put_u16(&mut ext, EXT_SUPPORTED_VERSIONS);
        put_vec16(&mut ext, &[4, 0xfe, 0xfc, 0xfe, 0xfd]);
        let base = 2 + 32 + 1 + 1 + 2 + 8 + 2;
        let old = openssl_ext_len(&body);
        body[base..base + 2].copy_from_slice(&((old + ext.len()) as u16).to_be_bytes());
        body.extend_from_slice(&ext);
        let ch = ClientHello::parse(&body).unwrap();
        assert!(ch.offers_dtls13() && ch.offers_dtls12());
        let sh = server_hello(&[1; 32], CipherSuite::Aes128Gcm, 7, true, true);
        assert_eq!(&sh[..2], &[0xfe, 0xfd]);
        assert_eq!(
            &sh[34..38],
            &[0, 0xc0, 0x2b, 0],
            "empty session id, suite, no compression"
        );
        assert_eq!(hello_verify_request(&[5, 6]), vec![0xfe, 0xff, 2, 5, 6]);
    }
}
