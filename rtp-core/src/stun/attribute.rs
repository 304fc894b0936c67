//! STUN attribute TLVs (RFC 8489 §14): the type registry subset ICE uses,
//! iteration over validated messages, and the value codecs shared by the
//! parser and the writer (XOR-MAPPED-ADDRESS, ERROR-CODE).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::{StunError, MAGIC_COOKIE, TRANSACTION_ID_LEN};

/// Attribute type numbers (RFC 8489 §18.3, RFC 8445 §16.1).
pub mod attr {
    /// MAPPED-ADDRESS (comprehension-required, legacy).
    pub const MAPPED_ADDRESS: u16 = 0x0001;
    /// USERNAME: `remote-ufrag:local-ufrag` for ICE.
    pub const USERNAME: u16 = 0x0006;
    /// MESSAGE-INTEGRITY: HMAC-SHA1, 20 bytes.
    pub const MESSAGE_INTEGRITY: u16 = 0x0008;
    /// ERROR-CODE.
    pub const ERROR_CODE: u16 = 0x0009;
    /// UNKNOWN-ATTRIBUTES: list of 16-bit types, sent with 420.
    pub const UNKNOWN_ATTRIBUTES: u16 = 0x000A;
    /// XOR-MAPPED-ADDRESS.
    pub const XOR_MAPPED_ADDRESS: u16 = 0x0020;
    /// PRIORITY (ICE), 32-bit.
    pub const PRIORITY: u16 = 0x0024;
    /// USE-CANDIDATE (ICE), empty.
    pub const USE_CANDIDATE: u16 = 0x0025;
    /// SOFTWARE (comprehension-optional).
    pub const SOFTWARE: u16 = 0x8022;
    /// FINGERPRINT: CRC-32 XOR 0x5354554e, always last.
    pub const FINGERPRINT: u16 = 0x8028;
    /// ICE-CONTROLLED (ICE), 64-bit tie-breaker.
    pub const ICE_CONTROLLED: u16 = 0x8029;
    /// ICE-CONTROLLING (ICE), 64-bit tie-breaker.
    pub const ICE_CONTROLLING: u16 = 0x802A;

    /// Types 0x0000..=0x7FFF must be understood or the request answered with 420.
    pub const fn is_comprehension_required(t: u16) -> bool {
        t < 0x8000
    }

    /// The comprehension-required types this module understands. Anything
    /// else in that range is reported by
    /// [`StunMessage::unknown_comprehension_required`](crate::stun::StunMessage::unknown_comprehension_required).
    pub const fn is_understood(t: u16) -> bool {
        matches!(
            t,
            MAPPED_ADDRESS
                | USERNAME
                | MESSAGE_INTEGRITY
                | ERROR_CODE
                | UNKNOWN_ATTRIBUTES
                | XOR_MAPPED_ADDRESS
                | PRIORITY
                | USE_CANDIDATE
        )
    }
}

/// Bytes an attribute of `value_len` occupies on the wire, header and padding included.
pub(crate) const fn wire_len(value_len: usize) -> usize {
    4 + ((value_len + 3) & !3)
}

/// One attribute as it appears on the wire (padding excluded).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attribute<'a> {
    /// The 16-bit attribute type.
    pub kind: u16,
    /// The value, `length` bytes, without padding.
    pub value: &'a [u8],
}

/// Reads the attribute at `off` within `body`; returns it and the offset of
/// the next one. `None` when the header or padded value runs past `body`.
pub(crate) fn read_at(body: &[u8], off: usize) -> Option<(Attribute<'_>, usize)> {
    let hdr = body.get(off..off.checked_add(4)?)?;
    let kind = u16::from_be_bytes([hdr[0], hdr[1]]);
    let len = usize::from(u16::from_be_bytes([hdr[2], hdr[3]]));
    let next = off.checked_add(wire_len(len))?;
    if next > body.len() {
        return None;
    }
    let value = body.get(off + 4..off + 4 + len)?;
    Some((Attribute { kind, value }, next))
}

/// Iterator over the attributes of a parsed message, in wire order.
#[derive(Debug, Clone)]
pub struct Attributes<'a> {
    body: &'a [u8],
    off: usize,
}

impl<'a> Attributes<'a> {
    /// `body` is the region after the 20-byte header, already validated.
    pub(crate) fn new(body: &'a [u8]) -> Self {
        Self { body, off: 0 }
    }
}

impl<'a> Iterator for Attributes<'a> {
    type Item = Attribute<'a>;

    fn next(&mut self) -> Option<Attribute<'a>> {
        let (a, next) = read_at(self.body, self.off)?;
        self.off = next;
        Some(a)
    }
}

/// Iterator over comprehension-required attribute types this module does not
/// understand (the list a 420 response's UNKNOWN-ATTRIBUTES would carry).
#[derive(Debug, Clone)]
pub struct UnknownRequired<'a> {
    inner: Attributes<'a>,
}

impl<'a> UnknownRequired<'a> {
    pub(crate) fn new(inner: Attributes<'a>) -> Self {
        Self { inner }
    }
}

impl Iterator for UnknownRequired<'_> {
    type Item = u16;

    fn next(&mut self) -> Option<u16> {
        self.inner
            .by_ref()
            .map(|a| a.kind)
            .find(|&t| attr::is_comprehension_required(t) && !attr::is_understood(t))
    }
}

/// A decoded ERROR-CODE value (RFC 8489 §14.8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrorCode<'a> {
    /// 300..=699, e.g. 400, 401, 420, 487.
    pub code: u16,
    /// UTF-8 reason phrase as sent (not validated).
    pub reason: &'a [u8],
}

impl ErrorCode<'_> {
    /// 400 Bad Request.
    pub const BAD_REQUEST: u16 = 400;
    /// 401 Unauthenticated (bad or missing credentials).
    pub const UNAUTHENTICATED: u16 = 401;
    /// 420 Unknown Attribute.
    pub const UNKNOWN_ATTRIBUTE: u16 = 420;
    /// 487 Role Conflict (RFC 8445 §7.3.1.1).
    pub const ROLE_CONFLICT: u16 = 487;

    pub(crate) fn decode(value: &[u8]) -> Option<ErrorCode<'_>> {
        if value.len() < 4 {
            return None;
        }
        let class = u16::from(value[2] & 0x07);
        let number = u16::from(value[3]);
        if !(3..=6).contains(&class) || number > 99 {
            return None;
        }
        Some(ErrorCode {
            code: class * 100 + number,
            reason: &value[4..],
        })
    }
}

/// The 16 bytes XOR-ed over an IPv6 address: cookie then transaction id.
fn xor_key(tid: &[u8; TRANSACTION_ID_LEN]) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..4].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
    k[4..].copy_from_slice(tid);
    k
}

/// Decodes an XOR-MAPPED-ADDRESS value (RFC 8489 §14.2).
pub(crate) fn decode_xor_address(
    value: &[u8],
    tid: &[u8; TRANSACTION_ID_LEN],
) -> Option<SocketAddr> {
    let head = value.get(..4)?;
    let port = u16::from_be_bytes([head[2], head[3]]) ^ (MAGIC_COOKIE >> 16) as u16;
    let key = xor_key(tid);
    let ip = match (head[1], value.len()) {
        (0x01, 8) => {
            let mut a = [0u8; 4];
            for (i, o) in a.iter_mut().enumerate() {
                *o = value[4 + i] ^ key[i];
            }
            IpAddr::V4(Ipv4Addr::from(a))
        }
        (0x02, 20) => {
            let mut a = [0u8; 16];
            for (i, o) in a.iter_mut().enumerate() {
                *o = value[4 + i] ^ key[i];
            }
            IpAddr::V6(Ipv6Addr::from(a))
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

/// Encodes an XOR-MAPPED-ADDRESS value into `out`; returns the value length
/// (8 for IPv4, 20 for IPv6).
pub(crate) fn encode_xor_address(
    addr: SocketAddr,
    tid: &[u8; TRANSACTION_ID_LEN],
    out: &mut [u8; 20],
) -> usize {
    let key = xor_key(tid);
    let port = addr.port() ^ (MAGIC_COOKIE >> 16) as u16;
    out[0] = 0;
    out[2..4].copy_from_slice(&port.to_be_bytes());
    match addr.ip() {
        IpAddr::V4(ip) => {
            out[1] = 0x01;
            for (i, b) in ip.octets().iter().enumerate() {
                out[4 + i] = b ^ key[i];
            }
            8
        }
        IpAddr::V6(ip) => {
            out[1] = 0x02;
            for (i, b) in ip.octets().iter().enumerate() {
                out[4 + i] = b ^ key[i];
            }
            20
        }
    }
}

/// Encodes the 4-byte ERROR-CODE prefix for `code` (300..=699).
pub(crate) fn encode_error_prefix(code: u16) -> Result<[u8; 4], StunError> {
    if !(300..=699).contains(&code) {
        return Err(StunError::Unencodable);
    }
    Ok([0, 0, (code / 100) as u8, (code % 100) as u8])
}

#[cfg(test)]
mod tests {
    use super::*;

    const TID: [u8; 12] = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12];

    #[test]
    fn xor_address_round_trips_v4_and_v6() {
        for s in ["192.0.2.1:32853", "[2001:db8::1]:3478", "0.0.0.0:0"] {
            let addr: SocketAddr = s.parse().unwrap();
            let mut buf = [0u8; 20];
            let n = encode_xor_address(addr, &TID, &mut buf);
            assert_eq!(decode_xor_address(&buf[..n], &TID), Some(addr));
        }
    }

    #[test]
    fn xor_address_rejects_bad_family_and_length() {
        assert_eq!(decode_xor_address(&[0, 1, 0, 0, 0, 0, 0], &TID), None);
        assert_eq!(decode_xor_address(&[0, 3, 0, 0, 0, 0, 0, 0], &TID), None);
        assert_eq!(decode_xor_address(&[0, 2, 0, 0, 0, 0, 0, 0], &TID), None);
        assert_eq!(decode_xor_address(&[], &TID), None);
    }

    #[test]
    fn error_code_decodes_class_and_number() {
        let e = ErrorCode::decode(&[0, 0, 4, 87, b'x']).unwrap();
        assert_eq!(e.code, 487);
        assert_eq!(e.reason, b"x");
        assert_eq!(ErrorCode::decode(&[0, 0, 2, 0]), None);
        assert_eq!(ErrorCode::decode(&[0, 0, 4, 100]), None);
        assert_eq!(ErrorCode::decode(&[0, 0, 4]), None);
        assert_eq!(encode_error_prefix(420).unwrap(), [0, 0, 4, 20]);
        assert_eq!(encode_error_prefix(700), Err(StunError::Unencodable));
    }

    #[test]
    fn iteration_stops_at_truncated_attribute() {
        // One good attribute (USE-CANDIDATE), then a header claiming 8 bytes.
        let body = [0x00, 0x25, 0, 0, 0x00, 0x24, 0, 8, 1, 2, 3, 4];
        let kinds: Vec<u16> = Attributes::new(&body).map(|a| a.kind).collect();
        assert_eq!(kinds, vec![attr::USE_CANDIDATE]);
    }

    #[test]
    fn unknown_required_skips_optional_and_understood() {
        // USERNAME "a" (padded), 0x7777 empty, 0x8888 empty, 0x0003 empty.
        let body = [
            0x00, 0x06, 0, 1, b'a', 0, 0, 0, 0x77, 0x77, 0, 0, 0x88, 0x88, 0, 0, 0x00, 0x03, 0, 0,
        ];
        let unknown: Vec<u16> = UnknownRequired::new(Attributes::new(&body)).collect();
        assert_eq!(unknown, vec![0x7777, 0x0003]);
    }
}
