//! The STUN message subset an ICE-lite agent needs: zero-copy parsing,
//! integrity and fingerprint checks, and allocation-free building.
//!
//! Implements:
//! - RFC 8489 §5 (RFC 5389 §6): the 20-byte header, message type split into
//!   class and method, the magic cookie and transaction id.
//! - RFC 8489 §14 (RFC 5389 §15): attribute TLVs with 32-bit padding,
//!   XOR-MAPPED-ADDRESS (§14.2), USERNAME (§14.3), MESSAGE-INTEGRITY (§14.5,
//!   HMAC-SHA1 with the length field patched), FINGERPRINT (§14.7, CRC-32
//!   XOR 0x5354554e), ERROR-CODE (§14.8), UNKNOWN-ATTRIBUTES (§14.9), SOFTWARE.
//! - RFC 8445 §7.1.1–7.1.3 / §16.1: PRIORITY, USE-CANDIDATE, ICE-CONTROLLED and
//!   ICE-CONTROLLING, with short-term credentials (the key is the password).
//!
//! Files: `message` (parse + accessors + verification), `attribute`
//! (attribute types, iteration, value codecs), `writer` (building into a
//! caller buffer), `integrity` (the HMAC-SHA1 of MESSAGE-INTEGRITY), `crc32`
//! (the FINGERPRINT checksum); `vectors` holds the RFC 5769 tests.
//!
//! Not covered: long-term credentials (REALM/NONCE, RFC 5769 §2.4),
//! MESSAGE-INTEGRITY-SHA256, and STUN over TCP framing; ICE-lite needs none.

mod attribute;
mod crc32;
mod integrity;
mod message;
mod writer;

#[cfg(test)]
mod vectors;

use thiserror::Error;

pub use attribute::{attr, Attribute, Attributes, ErrorCode, UnknownRequired};
pub use crc32::crc32;
pub use message::StunMessage;
pub use writer::{write_binding_success, BindingRequest, ErrorResponse, IceRole, StunWriter};

/// The fixed value in bytes 4..8 of every RFC 5389+ STUN message.
pub const MAGIC_COOKIE: u32 = 0x2112_A442;

/// Length of the fixed STUN header.
pub const HEADER_LEN: usize = 20;

/// Most attributes one message may carry before parsing gives up. ICE
/// Binding messages carry about eight; the bound keeps hostile input cheap.
pub const MAX_ATTRIBUTES: usize = 32;

/// Length of a transaction id in bytes (96 bits).
pub const TRANSACTION_ID_LEN: usize = 12;

/// XOR applied to the CRC-32 in FINGERPRINT (RFC 8489 §14.7), "STUN" in ASCII.
pub const FINGERPRINT_XOR: u32 = 0x5354_554e;

/// Why a STUN message could not be parsed or built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum StunError {
    /// Fewer than 20 bytes.
    #[error("shorter than the STUN header")]
    TooShort,
    /// The two most significant bits of the message type are not zero.
    #[error("first two bits are not zero")]
    NotStun,
    /// Bytes 4..8 are not 0x2112A442.
    #[error("magic cookie mismatch")]
    BadMagicCookie,
    /// The header length is not a multiple of 4 or disagrees with the datagram.
    #[error("message length field is invalid")]
    BadLength,
    /// An attribute header or value (with padding) runs past the message.
    #[error("attribute runs past the message")]
    BadAttributeLength,
    /// More than [`MAX_ATTRIBUTES`] attributes.
    #[error("too many attributes")]
    TooManyAttributes,
    /// A known attribute has a value of the wrong size or content.
    #[error("malformed value of attribute {0:#06x}")]
    BadAttribute(u16),
    /// Something other than nothing follows FINGERPRINT.
    #[error("attribute after FINGERPRINT")]
    AttributeAfterFingerprint,
    /// The writer was asked for an attribute after MESSAGE-INTEGRITY (other
    /// than FINGERPRINT) or after FINGERPRINT.
    #[error("attribute written after MESSAGE-INTEGRITY or FINGERPRINT")]
    Misordered,
    /// The output buffer cannot hold the message being written.
    #[error("output buffer too small")]
    BufferTooSmall,
    /// An ERROR-CODE outside 300..=699 or an over-long attribute value.
    #[error("value cannot be encoded")]
    Unencodable,
}

/// The class bits of the message type (RFC 8489 §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StunClass {
    /// 0b00: a request.
    Request,
    /// 0b01: an indication.
    Indication,
    /// 0b10: a success response.
    Success,
    /// 0b11: an error response.
    Error,
}

impl StunClass {
    fn bits(self) -> u16 {
        match self {
            StunClass::Request => 0b00,
            StunClass::Indication => 0b01,
            StunClass::Success => 0b10,
            StunClass::Error => 0b11,
        }
    }

    fn from_bits(bits: u16) -> Self {
        match bits & 0b11 {
            0b00 => StunClass::Request,
            0b01 => StunClass::Indication,
            0b10 => StunClass::Success,
            _ => StunClass::Error,
        }
    }
}

/// The 12-bit method of the message type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StunMethod {
    /// 0x001, the only method ICE uses.
    Binding,
    /// Any other method value (12 bits), carried through untouched.
    Other(u16),
}

impl StunMethod {
    fn value(self) -> u16 {
        match self {
            StunMethod::Binding => 0x001,
            StunMethod::Other(m) => m & 0x0fff,
        }
    }

    fn from_value(m: u16) -> Self {
        match m {
            0x001 => StunMethod::Binding,
            other => StunMethod::Other(other),
        }
    }
}

/// Interleaves class and method into the 14-bit type field: the class bits
/// sit at positions 4 and 8, splitting the method into 4+3+5 bits.
fn encode_type(class: StunClass, method: StunMethod) -> u16 {
    let m = method.value();
    let c = class.bits();
    ((m & 0x0f80) << 2) | ((m & 0x0070) << 1) | (m & 0x000f) | ((c & 0b10) << 7) | ((c & 0b01) << 4)
}

/// Inverse of [`encode_type`]; the top two bits must already be known zero.
fn decode_type(t: u16) -> (StunClass, StunMethod) {
    let class = ((t >> 7) & 0b10) | ((t >> 4) & 0b01);
    let method = (t & 0x000f) | ((t >> 1) & 0x0070) | ((t >> 2) & 0x0f80);
    (StunClass::from_bits(class), StunMethod::from_value(method))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_type_round_trips_for_all_classes_and_methods() {
        for c in [
            StunClass::Request,
            StunClass::Indication,
            StunClass::Success,
            StunClass::Error,
        ] {
            for m in [0x001u16, 0x002, 0x003, 0x00f, 0x010, 0x07f, 0x080, 0xfff] {
                let t = encode_type(c, StunMethod::from_value(m));
                assert_eq!(t & 0xc000, 0);
                assert_eq!(decode_type(t), (c, StunMethod::from_value(m)));
            }
        }
    }

    #[test]
    fn binding_types_match_rfc_values() {
        assert_eq!(encode_type(StunClass::Request, StunMethod::Binding), 0x0001);
        assert_eq!(
            encode_type(StunClass::Indication, StunMethod::Binding),
            0x0011
        );
        assert_eq!(encode_type(StunClass::Success, StunMethod::Binding), 0x0101);
        assert_eq!(encode_type(StunClass::Error, StunMethod::Binding), 0x0111);
    }
}
