//! [`StunMessage`]: a validated, borrowed STUN message (RFC 8489 §5, §14).
//!
//! One pass at parse time checks the header and every attribute's framing,
//! decodes the fixed-size ICE attributes and remembers where the variable
//! ones live, so accessors afterwards are infallible and copy nothing.

use std::net::SocketAddr;

use aws_lc_rs::constant_time;

use super::attribute::{self, attr, Attribute, Attributes, ErrorCode, UnknownRequired};
use super::crc32::crc32;
use super::integrity::{self, TAG_LEN};
use super::{
    decode_type, StunClass, StunError, StunMethod, FINGERPRINT_XOR, HEADER_LEN, MAGIC_COOKIE,
    MAX_ATTRIBUTES, TRANSACTION_ID_LEN,
};

/// Where a variable-length value lives: absolute offset and length.
#[derive(Debug, Clone, Copy)]
struct Span {
    start: usize,
    len: usize,
}

/// A validated STUN message borrowing the datagram it was parsed from.
///
/// When an attribute appears more than once, the first occurrence wins
/// (RFC 8489 §14). Attributes after MESSAGE-INTEGRITY other than FINGERPRINT
/// are ignored, as RFC 8489 §14.5 requires; they still show up in
/// [`StunMessage::attributes`].
#[derive(Debug, Clone, Copy)]
pub struct StunMessage<'a> {
    buf: &'a [u8],
    class: StunClass,
    method: StunMethod,
    transaction_id: [u8; TRANSACTION_ID_LEN],
    username: Option<Span>,
    software: Option<Span>,
    error_code: Option<Span>,
    priority: Option<u32>,
    use_candidate: bool,
    ice_controlling: Option<u64>,
    ice_controlled: Option<u64>,
    xor_mapped_address: Option<SocketAddr>,
    /// Offset of the MESSAGE-INTEGRITY attribute header.
    integrity_at: Option<usize>,
    /// Offset of the FINGERPRINT attribute header and its value.
    fingerprint: Option<(usize, u32)>,
    /// End (absolute) of the attributes that count: after MESSAGE-INTEGRITY
    /// only FINGERPRINT matters.
    considered_end: usize,
}

fn be_u32(v: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(v.try_into().ok()?))
}

fn be_u64(v: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(v.try_into().ok()?))
}

impl<'a> StunMessage<'a> {
    /// Parses one STUN message that fills `buf` exactly (one UDP datagram).
    pub fn parse(buf: &'a [u8]) -> Result<Self, StunError> {
        let header = buf.get(..HEADER_LEN).ok_or(StunError::TooShort)?;
        let msg_type = u16::from_be_bytes([header[0], header[1]]);
        if msg_type & 0xc000 != 0 {
            return Err(StunError::NotStun);
        }
        let length = usize::from(u16::from_be_bytes([header[2], header[3]]));
        if u32::from_be_bytes([header[4], header[5], header[6], header[7]]) != MAGIC_COOKIE {
            return Err(StunError::BadMagicCookie);
        }
        if length % 4 != 0 || HEADER_LEN + length != buf.len() {
            return Err(StunError::BadLength);
        }
        let (class, method) = decode_type(msg_type);
        let mut transaction_id = [0u8; TRANSACTION_ID_LEN];
        transaction_id.copy_from_slice(&header[8..HEADER_LEN]);

        let mut msg = StunMessage {
            buf,
            class,
            method,
            transaction_id,
            username: None,
            software: None,
            error_code: None,
            priority: None,
            use_candidate: false,
            ice_controlling: None,
            ice_controlled: None,
            xor_mapped_address: None,
            integrity_at: None,
            fingerprint: None,
            considered_end: buf.len(),
        };
        msg.scan_attributes()?;
        Ok(msg)
    }

    /// The validating attribute pass behind [`StunMessage::parse`].
    fn scan_attributes(&mut self) -> Result<(), StunError> {
        let body = &self.buf[HEADER_LEN..];
        let mut off = 0;
        let mut count = 0;
        while off < body.len() {
            if count == MAX_ATTRIBUTES {
                return Err(StunError::TooManyAttributes);
            }
            count += 1;
            if self.fingerprint.is_some() {
                return Err(StunError::AttributeAfterFingerprint);
            }
            let (a, next) = attribute::read_at(body, off).ok_or(StunError::BadAttributeLength)?;
            let at = HEADER_LEN + off;
            let span = Span {
                start: at + 4,
                len: a.value.len(),
            };
            let bad = StunError::BadAttribute(a.kind);
            match a.kind {
                attr::FINGERPRINT => {
                    self.fingerprint = Some((at, be_u32(a.value).ok_or(bad)?));
                }
                _ if self.integrity_at.is_some() => {}
                attr::MESSAGE_INTEGRITY => {
                    if a.value.len() != TAG_LEN {
                        return Err(bad);
                    }
                    self.integrity_at = Some(at);
                    self.considered_end = HEADER_LEN + next;
                }
                attr::USERNAME => {
                    self.username.get_or_insert(span);
                }
                attr::SOFTWARE => {
                    self.software.get_or_insert(span);
                }
                attr::ERROR_CODE => {
                    ErrorCode::decode(a.value).ok_or(bad)?;
                    self.error_code.get_or_insert(span);
                }
                attr::PRIORITY => {
                    let v = be_u32(a.value).ok_or(bad)?;
                    self.priority.get_or_insert(v);
                }
                attr::USE_CANDIDATE => {
                    if !a.value.is_empty() {
                        return Err(bad);
                    }
                    self.use_candidate = true;
                }
                attr::ICE_CONTROLLING => {
                    let v = be_u64(a.value).ok_or(bad)?;
                    self.ice_controlling.get_or_insert(v);
                }
                attr::ICE_CONTROLLED => {
                    let v = be_u64(a.value).ok_or(bad)?;
                    self.ice_controlled.get_or_insert(v);
                }
                attr::XOR_MAPPED_ADDRESS => {
                    let v =
                        attribute::decode_xor_address(a.value, &self.transaction_id).ok_or(bad)?;
                    self.xor_mapped_address.get_or_insert(v);
                }
                _ => {}
            }
            off = next;
        }
        Ok(())
    }

    fn slice(&self, span: Span) -> &'a [u8] {
        // Spans come from the validating pass, so they are in bounds; `get`
        // keeps this panic-free regardless.
        self.buf
            .get(span.start..span.start + span.len)
            .unwrap_or(&[])
    }

    /// The whole message as parsed.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.buf
    }

    /// Request, indication, success or error response.
    pub fn class(&self) -> StunClass {
        self.class
    }

    /// The method; ICE only uses [`StunMethod::Binding`].
    pub fn method(&self) -> StunMethod {
        self.method
    }

    /// The 96-bit transaction id.
    pub fn transaction_id(&self) -> &[u8; TRANSACTION_ID_LEN] {
        &self.transaction_id
    }

    /// USERNAME value as sent (for ICE, `receiver-ufrag:sender-ufrag`).
    pub fn username(&self) -> Option<&'a [u8]> {
        self.username.map(|s| self.slice(s))
    }

    /// USERNAME split at the first `:` into (local ufrag, remote ufrag) from
    /// the point of view of the agent receiving the request
    /// (RFC 8445 §7.2.2). `None` without USERNAME or without a colon.
    pub fn username_ufrags(&self) -> Option<(&'a [u8], &'a [u8])> {
        let u = self.username()?;
        let colon = u.iter().position(|&b| b == b':')?;
        Some((&u[..colon], &u[colon + 1..]))
    }

    /// SOFTWARE value as sent.
    pub fn software(&self) -> Option<&'a [u8]> {
        self.software.map(|s| self.slice(s))
    }

    /// PRIORITY (RFC 8445 §7.1.1).
    pub fn priority(&self) -> Option<u32> {
        self.priority
    }

    /// Whether USE-CANDIDATE is present (RFC 8445 §7.1.2).
    pub fn use_candidate(&self) -> bool {
        self.use_candidate
    }

    /// ICE-CONTROLLING tie-breaker (RFC 8445 §7.1.3).
    pub fn ice_controlling(&self) -> Option<u64> {
        self.ice_controlling
    }

    /// ICE-CONTROLLED tie-breaker (RFC 8445 §7.1.3).
    pub fn ice_controlled(&self) -> Option<u64> {
        self.ice_controlled
    }

    /// XOR-MAPPED-ADDRESS, un-XORed into a socket address.
    pub fn xor_mapped_address(&self) -> Option<SocketAddr> {
        self.xor_mapped_address
    }

    /// ERROR-CODE, validated to 300..=699 at parse time.
    pub fn error_code(&self) -> Option<ErrorCode<'a>> {
        self.error_code
            .and_then(|s| ErrorCode::decode(self.slice(s)))
    }

    /// The 20-byte MESSAGE-INTEGRITY value.
    pub fn message_integrity(&self) -> Option<&'a [u8; TAG_LEN]> {
        let at = self.integrity_at?;
        self.buf.get(at + 4..at + 4 + TAG_LEN)?.try_into().ok()
    }

    /// The FINGERPRINT value as sent.
    pub fn fingerprint(&self) -> Option<u32> {
        self.fingerprint.map(|(_, v)| v)
    }

    /// All attributes in wire order, including ignored ones.
    pub fn attributes(&self) -> Attributes<'a> {
        Attributes::new(self.buf.get(HEADER_LEN..).unwrap_or(&[]))
    }

    /// Comprehension-required attribute types this module does not
    /// understand, before MESSAGE-INTEGRITY. A server answers a request that
    /// has any with 420 and lists them in UNKNOWN-ATTRIBUTES.
    pub fn unknown_comprehension_required(&self) -> UnknownRequired<'a> {
        let body = self.buf.get(HEADER_LEN..self.considered_end).unwrap_or(&[]);
        UnknownRequired::new(Attributes::new(body))
    }

    /// The first attribute of type `kind` that counts (see type docs).
    pub fn attribute(&self, kind: u16) -> Option<Attribute<'a>> {
        let body = self.buf.get(HEADER_LEN..self.considered_end).unwrap_or(&[]);
        Attributes::new(body).find(|a| a.kind == kind)
    }

    /// True when FINGERPRINT is present and equals CRC-32 of everything
    /// before it XOR 0x5354554e (RFC 8489 §14.7).
    pub fn verify_fingerprint(&self) -> bool {
        let Some((at, value)) = self.fingerprint else {
            return false;
        };
        match self.buf.get(..at) {
            Some(covered) => crc32(covered) ^ FINGERPRINT_XOR == value,
            None => false,
        }
    }

    /// True when MESSAGE-INTEGRITY is present and matches HMAC-SHA1 under
    /// `key` (RFC 8489 §14.5). For ICE short-term credentials the key is the
    /// password (of the agent receiving a request, or of the peer when checking
    /// a response) as raw bytes. Compared in constant time.
    pub fn verify_integrity(&self, key: &[u8]) -> bool {
        let (Some(at), Some(sent)) = (self.integrity_at, self.message_integrity()) else {
            return false;
        };
        match integrity::tag(key, self.buf, at) {
            Some(expected) => constant_time::verify_slices_are_equal(&expected, sent).is_ok(),
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A Binding request header (length filled in) followed by `attrs`.
    fn message(msg_type: u16, attrs: &[u8]) -> Vec<u8> {
        let mut m = Vec::new();
        m.extend_from_slice(&msg_type.to_be_bytes());
        m.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
        m.extend_from_slice(&MAGIC_COOKIE.to_be_bytes());
        m.extend_from_slice(&[7u8; 12]);
        m.extend_from_slice(attrs);
        m
    }

    fn tlv(kind: u16, value: &[u8]) -> Vec<u8> {
        let mut v = kind.to_be_bytes().to_vec();
        v.extend_from_slice(&(value.len() as u16).to_be_bytes());
        v.extend_from_slice(value);
        while !v.len().is_multiple_of(4) {
            v.push(0);
        }
        v
    }

    #[test]
    fn parses_header_fields() {
        let m = message(0x0001, &[]);
        let msg = StunMessage::parse(&m).unwrap();
        assert_eq!(msg.class(), StunClass::Request);
        assert_eq!(msg.method(), StunMethod::Binding);
        assert_eq!(msg.transaction_id(), &[7u8; 12]);
        assert_eq!(msg.attributes().count(), 0);
        assert!(!msg.verify_fingerprint());
        assert!(!msg.verify_integrity(b"x"));
    }

    #[test]
    fn header_errors() {
        assert_eq!(
            StunMessage::parse(&[0; 19]).unwrap_err(),
            StunError::TooShort
        );
        let mut m = message(0x0001, &[]);
        m[0] = 0x40;
        assert_eq!(StunMessage::parse(&m).unwrap_err(), StunError::NotStun);
        let mut m = message(0x0001, &[]);
        m[4] = 0;
        assert_eq!(
            StunMessage::parse(&m).unwrap_err(),
            StunError::BadMagicCookie
        );
        let mut m = message(0x0001, &[0; 4]);
        m[3] = 2;
        assert_eq!(StunMessage::parse(&m).unwrap_err(), StunError::BadLength);
        let mut m = message(0x0001, &[]);
        m.push(0);
        assert_eq!(StunMessage::parse(&m).unwrap_err(), StunError::BadLength);
    }

    #[test]
    fn ice_attributes_decode() {
        let mut a = tlv(attr::USERNAME, b"local:remote");
        a.extend(tlv(attr::PRIORITY, &0x6e00_01ffu32.to_be_bytes()));
        a.extend(tlv(
            attr::ICE_CONTROLLING,
            &0x0102_0304_0506_0708u64.to_be_bytes(),
        ));
        a.extend(tlv(attr::USE_CANDIDATE, &[]));
        let m = message(0x0001, &a);
        let msg = StunMessage::parse(&m).unwrap();
        assert_eq!(msg.username(), Some(&b"local:remote"[..]));
        assert_eq!(msg.username_ufrags(), Some((&b"local"[..], &b"remote"[..])));
        assert_eq!(msg.priority(), Some(0x6e00_01ff));
        assert_eq!(msg.ice_controlling(), Some(0x0102_0304_0506_0708));
        assert_eq!(msg.ice_controlled(), None);
        assert!(msg.use_candidate());
        assert_eq!(msg.unknown_comprehension_required().count(), 0);
    }

    #[test]
    fn wrong_sized_known_attributes_are_rejected() {
        for (kind, len) in [
            (attr::PRIORITY, 3),
            (attr::ICE_CONTROLLED, 4),
            (attr::USE_CANDIDATE, 4),
            (attr::MESSAGE_INTEGRITY, 16),
            (attr::FINGERPRINT, 8),
            (attr::XOR_MAPPED_ADDRESS, 12),
            (attr::ERROR_CODE, 2),
        ] {
            let m = message(0x0001, &tlv(kind, &vec![0u8; len]));
            assert_eq!(
                StunMessage::parse(&m).unwrap_err(),
                StunError::BadAttribute(kind),
                "{kind:#x}"
            );
        }
    }

    #[test]
    fn truncated_attribute_is_rejected() {
        // A header claiming 8 value bytes with only 4 present.
        let m = message(0x0001, &[0x00, 0x24, 0x00, 0x08, 1, 2, 3, 4]);
        assert_eq!(
            StunMessage::parse(&m).unwrap_err(),
            StunError::BadAttributeLength
        );
    }

    #[test]
    fn attribute_count_is_bounded() {
        let mut a = Vec::new();
        for _ in 0..=MAX_ATTRIBUTES {
            a.extend(tlv(0x8000, &[]));
        }
        let m = message(0x0001, &a);
        assert_eq!(
            StunMessage::parse(&m).unwrap_err(),
            StunError::TooManyAttributes
        );
    }

    #[test]
    fn nothing_may_follow_fingerprint() {
        let mut a = tlv(attr::FINGERPRINT, &[0; 4]);
        a.extend(tlv(attr::SOFTWARE, b"x"));
        let m = message(0x0001, &a);
        assert_eq!(
            StunMessage::parse(&m).unwrap_err(),
            StunError::AttributeAfterFingerprint
        );
    }

    #[test]
    fn attributes_after_integrity_are_ignored() {
        let mut a = tlv(attr::MESSAGE_INTEGRITY, &[0; 20]);
        a.extend(tlv(attr::PRIORITY, &[0, 0, 0, 1]));
        a.extend(tlv(0x7777, &[]));
        let m = message(0x0001, &a);
        let msg = StunMessage::parse(&m).unwrap();
        assert_eq!(msg.priority(), None);
        assert_eq!(msg.unknown_comprehension_required().count(), 0);
        assert_eq!(msg.attribute(attr::PRIORITY), None);
        assert_eq!(msg.attributes().count(), 3);
    }

    #[test]
    fn first_occurrence_wins_and_unknowns_are_listed() {
        let mut a = tlv(attr::PRIORITY, &[0, 0, 0, 1]);
        a.extend(tlv(attr::PRIORITY, &[0, 0, 0, 2]));
        a.extend(tlv(0x0fff, &[1, 2, 3]));
        a.extend(tlv(0x8fff, &[1]));
        let m = message(0x0001, &a);
        let msg = StunMessage::parse(&m).unwrap();
        assert_eq!(msg.priority(), Some(1));
        let unknown: Vec<u16> = msg.unknown_comprehension_required().collect();
        assert_eq!(unknown, vec![0x0fff]);
        assert_eq!(msg.attribute(0x8fff).unwrap().value, &[1]);
    }

    #[test]
    fn username_without_colon_has_no_ufrags() {
        let m = message(0x0001, &tlv(attr::USERNAME, b"nocolon"));
        let msg = StunMessage::parse(&m).unwrap();
        assert_eq!(msg.username_ufrags(), None);
    }

    #[test]
    fn error_code_accessor() {
        let m = message(
            0x0111,
            &tlv(attr::ERROR_CODE, b"\0\0\x04\x01Unauthenticated"),
        );
        let msg = StunMessage::parse(&m).unwrap();
        assert_eq!(msg.class(), StunClass::Error);
        let e = msg.error_code().unwrap();
        assert_eq!(e.code, 401);
        assert_eq!(e.reason, b"Unauthenticated");
    }

    /// Exercises every accessor and both checks on a parsed message.
    fn touch_everything(msg: &StunMessage<'_>) {
        let _ = (
            msg.class(),
            msg.method(),
            msg.transaction_id(),
            msg.as_bytes(),
        );
        let _ = (msg.username(), msg.username_ufrags(), msg.software());
        let _ = (msg.priority(), msg.use_candidate());
        let _ = (msg.ice_controlling(), msg.ice_controlled());
        let _ = (msg.xor_mapped_address(), msg.error_code());
        let _ = (msg.message_integrity(), msg.fingerprint());
        let _ = msg.attributes().count();
        let _ = msg.unknown_comprehension_required().count();
        let _ = msg.attribute(attr::SOFTWARE);
        let _ = msg.verify_fingerprint();
        let _ = msg.verify_integrity(b"key");
    }

    proptest::proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            if let Ok(msg) = StunMessage::parse(&bytes) {
                touch_everything(&msg);
            }
        }

        /// A well-formed header over a random body reaches the attribute
        /// scanner, which random bytes alone almost never do.
        #[test]
        fn random_bodies_never_panic(
            msg_type in 0u16..0x4000,
            words in proptest::collection::vec(proptest::num::u32::ANY, 0..60),
        ) {
            let body: Vec<u8> = words.iter().flat_map(|w| w.to_be_bytes()).collect();
            let m = message(msg_type, &body);
            if let Ok(msg) = StunMessage::parse(&m) {
                touch_everything(&msg);
            }
        }

        /// Random sequences of well-framed attributes with random kinds from
        /// the known set and random values.
        #[test]
        fn random_known_attributes_never_panic(
            attrs in proptest::collection::vec(
                (
                    proptest::sample::select(vec![
                        attr::USERNAME, attr::MESSAGE_INTEGRITY, attr::ERROR_CODE,
                        attr::XOR_MAPPED_ADDRESS, attr::PRIORITY, attr::USE_CANDIDATE,
                        attr::SOFTWARE, attr::FINGERPRINT, attr::ICE_CONTROLLED,
                        attr::ICE_CONTROLLING, 0x7fff, 0xffff,
                    ]),
                    proptest::collection::vec(proptest::num::u8::ANY, 0..24),
                ),
                0..12,
            ),
        ) {
            let mut body = Vec::new();
            for (kind, value) in &attrs {
                body.extend(tlv(*kind, value));
            }
            let m = message(0x0001, &body);
            if let Ok(msg) = StunMessage::parse(&m) {
                touch_everything(&msg);
            }
        }
    }
}
