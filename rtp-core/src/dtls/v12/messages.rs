//! The rest of a DTLS 1.2 ECDHE_ECDSA handshake with client authentication:
//! Certificate (RFC 5246 §7.4.2, §7.4.6), ServerKeyExchange
//! (RFC 8422 §5.4), CertificateRequest (RFC 5246 §7.4.4; ecdsa_sign and
//! rsa_sign), ClientKeyExchange (RFC 8422 §5.7), CertificateVerify
//! (RFC 5246 §7.4.8) and Finished (RFC 5246 §7.4.9).

use super::codec::{put_u16, put_vec16, put_vec24, put_vec8, Reader};
use super::keys::{KeyExchange, SigScheme, Signer};

/// ClientCertificateType values (RFC 5246 §7.4.4, RFC 8422 §5.5).
const RSA_SIGN: u8 = 1;
const ECDSA_SIGN: u8 = 64;
/// ECCurveType named_curve (RFC 8422 §5.4).
const NAMED_CURVE: u8 = 3;
/// Most certificates in a client's chain we look at (only the first is used).
const MAX_CHAIN: usize = 8;

/// Certificate body with our one certificate.
pub(crate) fn certificate(der: &[u8]) -> Vec<u8> {
    let mut list = Vec::with_capacity(der.len() + 3);
    put_vec24(&mut list, der);
    let mut b = Vec::with_capacity(list.len() + 3);
    put_vec24(&mut b, &list);
    b
}

/// ServerKeyExchange body: our ECDHE parameters signed with our key over
/// client_random | server_random | params.
pub(crate) fn server_key_exchange(
    kx: &KeyExchange,
    signer: &Signer,
    client_random: &[u8; 32],
    server_random: &[u8; 32],
) -> Option<Vec<u8>> {
    let mut params = Vec::with_capacity(4 + kx.public().len());
    params.push(NAMED_CURVE);
    put_u16(&mut params, kx.group().id());
    put_vec8(&mut params, kx.public());
    let mut signed = Vec::with_capacity(64 + params.len());
    signed.extend_from_slice(client_random);
    signed.extend_from_slice(server_random);
    signed.extend_from_slice(&params);
    let sig = signer.sign(&signed)?;
    let mut b = params;
    put_u16(&mut b, signer.scheme().id());
    put_vec16(&mut b, &sig);
    Some(b)
}

/// CertificateRequest body: ECDSA or RSA certificates, signed with the
/// schemes we verify, any issuer.
pub(crate) fn certificate_request() -> Vec<u8> {
    let mut b = Vec::with_capacity(16);
    put_vec8(&mut b, &[ECDSA_SIGN, RSA_SIGN]);
    let mut algs = Vec::with_capacity(8);
    for s in SigScheme::CLIENT_CERTIFICATE {
        put_u16(&mut algs, s.id());
    }
    put_vec16(&mut b, &algs);
    put_vec16(&mut b, &[]);
    b
}

/// The client's Certificate: its leaf (first) certificate, `None` for an
/// empty list (a client with no certificate of the requested types).
pub(crate) fn client_certificate(body: &[u8]) -> Result<Option<&[u8]>, ()> {
    let mut r = Reader::new(body);
    let list = r.vec24().ok_or(())?;
    if !r.is_empty() {
        return Err(());
    }
    let mut certs = Reader::new(list);
    let mut leaf = None;
    for _ in 0..MAX_CHAIN {
        if certs.is_empty() {
            break;
        }
        let c = certs.vec24().ok_or(())?;
        if c.is_empty() {
            return Err(());
        }
        leaf.get_or_insert(c);
    }
    if !certs.is_empty() {
        return Err(());
    }
    Ok(leaf)
}

/// The client's ECDHE public value from ClientKeyExchange.
pub(crate) fn client_key_exchange(body: &[u8]) -> Option<&[u8]> {
    let mut r = Reader::new(body);
    let point = r.vec8()?;
    (r.is_empty() && !point.is_empty()).then_some(point)
}

/// CertificateVerify: (scheme id, signature).
pub(crate) fn certificate_verify(body: &[u8]) -> Option<(u16, &[u8])> {
    let mut r = Reader::new(body);
    let scheme = r.u16()?;
    let sig = r.vec16()?;
    r.is_empty().then_some((scheme, sig))
}

/// Length of Finished's verify_data (RFC 5246 §7.4.9).
pub(crate) const VERIFY_DATA_LEN: usize = 12;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificate_round_trip() {
        let body = certificate(b"cert-der");
        assert_eq!(client_certificate(&body), Ok(Some(&b"cert-der"[..])));
        assert_eq!(client_certificate(&[0, 0, 0]), Ok(None), "empty list");
        assert!(
            client_certificate(&[0, 0, 3, 0, 0, 0]).is_err(),
            "empty certificate"
        );
        for n in 0..body.len() {
            assert!(client_certificate(&body[..n]).is_err(), "{n}");
        }
        let mut long = Vec::new();
        for _ in 0..=MAX_CHAIN {
            put_vec24(&mut long, b"c");
        }
        let mut body = Vec::new();
        put_vec24(&mut body, &long);
        assert!(client_certificate(&body).is_err(), "chain too long");
    }

    #[test]
    fn request_offers_ecdsa_and_rsa() {
        let b = certificate_request();
        assert_eq!(&b[..3], &[2, ECDSA_SIGN, RSA_SIGN]);
        assert_eq!(&b[3..5], &[0, 8]);
        assert_eq!(&b[5..13], &[4, 3, 4, 1, 5, 3, 5, 1]);
        assert_eq!(&b[13..], &[0, 0]);
    }

    #[test]
    fn client_messages() {
        assert_eq!(client_key_exchange(&[2, 7, 8]), Some(&[7u8, 8][..]));
        assert_eq!(client_key_exchange(&[0]), None);
        assert_eq!(client_key_exchange(&[2, 7, 8, 9]), None);
        assert_eq!(
            certificate_verify(&[4, 1, 0, 1, 9]),
            Some((0x0401, &[9u8][..]))
        );
        assert_eq!(certificate_verify(&[4, 1, 0, 2, 9]), None);
    }
}
