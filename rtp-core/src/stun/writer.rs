//! Building STUN messages into a caller-provided `&mut [u8]` without
//! allocating: [`StunWriter`] appends attributes in order and keeps the header
//! length current, then MESSAGE-INTEGRITY (RFC 8489 §14.5) and FINGERPRINT
//! (§14.7) seal the message. [`write_binding_success`], [`ErrorResponse`] and
//! [`BindingRequest`] are the three shapes an ICE-lite agent and its test
//! client need (RFC 8445 §7.2, §7.3).

use std::net::SocketAddr;

use super::attribute::{self, attr, wire_len};
use super::crc32::crc32;
use super::integrity::{self, TAG_LEN};
use super::{
    encode_type, StunClass, StunError, StunMethod, FINGERPRINT_XOR, HEADER_LEN, MAGIC_COOKIE,
    TRANSACTION_ID_LEN,
};

/// Appends attributes to a STUN message being built in a borrowed buffer.
#[derive(Debug)]
pub struct StunWriter<'b> {
    buf: &'b mut [u8],
    len: usize,
    transaction_id: [u8; TRANSACTION_ID_LEN],
    padding: u8,
    has_integrity: bool,
    has_fingerprint: bool,
}

impl<'b> StunWriter<'b> {
    /// Writes the 20-byte header into `buf` and starts an empty message.
    pub fn new(
        buf: &'b mut [u8],
        class: StunClass,
        method: StunMethod,
        transaction_id: &[u8; TRANSACTION_ID_LEN],
    ) -> Result<Self, StunError> {
        let header = buf.get_mut(..HEADER_LEN).ok_or(StunError::BufferTooSmall)?;
        header[0..2].copy_from_slice(&encode_type(class, method).to_be_bytes());
        header[2..4].copy_from_slice(&[0, 0]);
        header[4..8].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
        header[8..].copy_from_slice(transaction_id);
        Ok(Self {
            buf,
            len: HEADER_LEN,
            transaction_id: *transaction_id,
            padding: 0,
            has_integrity: false,
            has_fingerprint: false,
        })
    }

    /// Sets the byte used to pad values to 32 bits (default 0). Receivers
    /// ignore padding; this exists so RFC 5769's space-padded vectors can be
    /// reproduced exactly.
    pub fn set_padding_byte(&mut self, byte: u8) {
        self.padding = byte;
    }

    /// Bytes written so far (a complete message at every point).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false: the header is written at construction.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Ends the message and returns its length.
    pub fn finish(self) -> usize {
        self.len
    }

    /// Reserves an attribute of `value_len` bytes, writes its header and
    /// padding, updates the header length, and returns the value's offset.
    fn begin(&mut self, kind: u16, value_len: usize) -> Result<usize, StunError> {
        if self.has_fingerprint || (self.has_integrity && kind != attr::FINGERPRINT) {
            return Err(StunError::Misordered);
        }
        let wire_value_len = u16::try_from(value_len).map_err(|_| StunError::Unencodable)?;
        let end = self.len + wire_len(value_len);
        let body_len = u16::try_from(end - HEADER_LEN).map_err(|_| StunError::Unencodable)?;
        let slot = self
            .buf
            .get_mut(self.len..end)
            .ok_or(StunError::BufferTooSmall)?;
        slot[0..2].copy_from_slice(&kind.to_be_bytes());
        slot[2..4].copy_from_slice(&wire_value_len.to_be_bytes());
        slot[4 + value_len..].fill(self.padding);
        self.buf[2..4].copy_from_slice(&body_len.to_be_bytes());
        let value_at = self.len + 4;
        self.len = end;
        Ok(value_at)
    }

    /// Appends an arbitrary attribute with `value`.
    pub fn attribute(&mut self, kind: u16, value: &[u8]) -> Result<(), StunError> {
        let at = self.begin(kind, value.len())?;
        self.buf[at..at + value.len()].copy_from_slice(value);
        Ok(())
    }

    /// USERNAME (for an ICE check: `remote-ufrag:local-ufrag`).
    pub fn username(&mut self, username: &[u8]) -> Result<(), StunError> {
        self.attribute(attr::USERNAME, username)
    }

    /// SOFTWARE.
    pub fn software(&mut self, software: &[u8]) -> Result<(), StunError> {
        self.attribute(attr::SOFTWARE, software)
    }

    /// PRIORITY.
    pub fn priority(&mut self, priority: u32) -> Result<(), StunError> {
        self.attribute(attr::PRIORITY, &priority.to_be_bytes())
    }

    /// USE-CANDIDATE (empty value).
    pub fn use_candidate(&mut self) -> Result<(), StunError> {
        self.attribute(attr::USE_CANDIDATE, &[])
    }

    /// ICE-CONTROLLING with its tie-breaker.
    pub fn ice_controlling(&mut self, tie_breaker: u64) -> Result<(), StunError> {
        self.attribute(attr::ICE_CONTROLLING, &tie_breaker.to_be_bytes())
    }

    /// ICE-CONTROLLED with its tie-breaker.
    pub fn ice_controlled(&mut self, tie_breaker: u64) -> Result<(), StunError> {
        self.attribute(attr::ICE_CONTROLLED, &tie_breaker.to_be_bytes())
    }

    /// XOR-MAPPED-ADDRESS for `addr`, XOR-ed with this message's cookie and id.
    pub fn xor_mapped_address(&mut self, addr: SocketAddr) -> Result<(), StunError> {
        let mut value = [0u8; 20];
        let n = attribute::encode_xor_address(addr, &self.transaction_id, &mut value);
        self.attribute(attr::XOR_MAPPED_ADDRESS, &value[..n])
    }

    /// ERROR-CODE `code` (300..=699) with a UTF-8 `reason` phrase.
    pub fn error_code(&mut self, code: u16, reason: &[u8]) -> Result<(), StunError> {
        let prefix = attribute::encode_error_prefix(code)?;
        let at = self.begin(attr::ERROR_CODE, 4 + reason.len())?;
        self.buf[at..at + 4].copy_from_slice(&prefix);
        self.buf[at + 4..at + 4 + reason.len()].copy_from_slice(reason);
        Ok(())
    }

    /// UNKNOWN-ATTRIBUTES listing `types` (sent with a 420 error).
    pub fn unknown_attributes(&mut self, types: &[u16]) -> Result<(), StunError> {
        let at = self.begin(attr::UNKNOWN_ATTRIBUTES, types.len().saturating_mul(2))?;
        for (i, t) in types.iter().enumerate() {
            self.buf[at + 2 * i..at + 2 * i + 2].copy_from_slice(&t.to_be_bytes());
        }
        Ok(())
    }

    /// MESSAGE-INTEGRITY: HMAC-SHA1 under `key` over everything so far.
    /// Only FINGERPRINT may follow.
    pub fn message_integrity(&mut self, key: &[u8]) -> Result<(), StunError> {
        let mi_off = self.len;
        let at = self.begin(attr::MESSAGE_INTEGRITY, TAG_LEN)?;
        self.has_integrity = true;
        let tag =
            integrity::tag(key, &self.buf[..self.len], mi_off).ok_or(StunError::Unencodable)?;
        self.buf[at..at + TAG_LEN].copy_from_slice(&tag);
        Ok(())
    }

    /// FINGERPRINT over everything so far; nothing may follow.
    pub fn fingerprint(&mut self) -> Result<(), StunError> {
        let fp_off = self.len;
        let at = self.begin(attr::FINGERPRINT, 4)?;
        self.has_fingerprint = true;
        let value = crc32(&self.buf[..fp_off]) ^ FINGERPRINT_XOR;
        self.buf[at..at + 4].copy_from_slice(&value.to_be_bytes());
        Ok(())
    }
}

/// Writes a Binding success response (RFC 8445 §7.3.1.4): XOR-MAPPED-ADDRESS
/// set to the request's source `mapped`, MESSAGE-INTEGRITY under `key` (the
/// local password), FINGERPRINT. Returns the length written.
pub fn write_binding_success(
    buf: &mut [u8],
    transaction_id: &[u8; TRANSACTION_ID_LEN],
    mapped: SocketAddr,
    key: &[u8],
) -> Result<usize, StunError> {
    let mut w = StunWriter::new(buf, StunClass::Success, StunMethod::Binding, transaction_id)?;
    w.xor_mapped_address(mapped)?;
    w.message_integrity(key)?;
    w.fingerprint()?;
    Ok(w.finish())
}

/// A Binding error response (RFC 8489 §6.3.4, RFC 8445 §7.3.1.1).
#[derive(Debug, Clone, Copy)]
pub struct ErrorResponse<'r> {
    /// Copied from the request.
    pub transaction_id: [u8; TRANSACTION_ID_LEN],
    /// 400, 401, 420, 487 (see [`super::ErrorCode`] constants), or any 300..=699.
    pub code: u16,
    /// Reason phrase, UTF-8.
    pub reason: &'r [u8],
    /// For 420: the unknown comprehension-required types; empty otherwise.
    pub unknown_attributes: &'r [u16],
    /// Key for MESSAGE-INTEGRITY. `None` for 400/401, where the request's
    /// credentials could not be trusted; `Some(local password)` for 487.
    pub integrity_key: Option<&'r [u8]>,
}

impl ErrorResponse<'_> {
    /// Writes the response (FINGERPRINT always last) and returns its length.
    pub fn write(&self, buf: &mut [u8]) -> Result<usize, StunError> {
        let mut w = StunWriter::new(
            buf,
            StunClass::Error,
            StunMethod::Binding,
            &self.transaction_id,
        )?;
        w.error_code(self.code, self.reason)?;
        if !self.unknown_attributes.is_empty() {
            w.unknown_attributes(self.unknown_attributes)?;
        }
        if let Some(key) = self.integrity_key {
            w.message_integrity(key)?;
        }
        w.fingerprint()?;
        Ok(w.finish())
    }
}

/// The ICE role a Binding request advertises, with its tie-breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IceRole {
    /// Sends ICE-CONTROLLING.
    Controlling(u64),
    /// Sends ICE-CONTROLLED.
    Controlled(u64),
}

/// An ICE connectivity-check Binding request (RFC 8445 §7.2.2), as a client
/// (load generator, tests) sends it.
#[derive(Debug, Clone, Copy)]
pub struct BindingRequest<'r> {
    /// Fresh random id per check.
    pub transaction_id: [u8; TRANSACTION_ID_LEN],
    /// `remote-ufrag:local-ufrag` (the receiver's ufrag first).
    pub username: &'r [u8],
    /// PRIORITY of the would-be peer-reflexive candidate.
    pub priority: u32,
    /// ICE-CONTROLLING or ICE-CONTROLLED.
    pub role: IceRole,
    /// Adds USE-CANDIDATE (controlling side nominating).
    pub use_candidate: bool,
    /// The receiver's password, keying MESSAGE-INTEGRITY.
    pub key: &'r [u8],
}

impl BindingRequest<'_> {
    /// Writes USERNAME, PRIORITY, the role, USE-CANDIDATE if set,
    /// MESSAGE-INTEGRITY and FINGERPRINT; returns the length written.
    pub fn write(&self, buf: &mut [u8]) -> Result<usize, StunError> {
        let mut w = StunWriter::new(
            buf,
            StunClass::Request,
            StunMethod::Binding,
            &self.transaction_id,
        )?;
        w.username(self.username)?;
        w.priority(self.priority)?;
        match self.role {
            IceRole::Controlling(t) => w.ice_controlling(t)?,
            IceRole::Controlled(t) => w.ice_controlled(t)?,
        }
        if self.use_candidate {
            w.use_candidate()?;
        }
        w.message_integrity(self.key)?;
        w.fingerprint()?;
        Ok(w.finish())
    }
}

#[cfg(test)]
mod tests {
    use super::super::{ErrorCode, StunMessage};
    use super::*;

    const TID: [u8; 12] = [0xa5; 12];
    const KEY: &[u8] = b"server-password";

    fn request() -> BindingRequest<'static> {
        BindingRequest {
            transaction_id: TID,
            username: b"srvufrag:cliufrag",
            priority: 0x6e00_01ff,
            role: IceRole::Controlling(0x1122_3344_5566_7788),
            use_candidate: true,
            key: KEY,
        }
    }

    #[test]
    fn request_round_trips() {
        let mut buf = [0u8; 256];
        let n = request().write(&mut buf).unwrap();
        let msg = StunMessage::parse(&buf[..n]).unwrap();
        assert_eq!(msg.class(), StunClass::Request);
        assert_eq!(msg.method(), StunMethod::Binding);
        assert_eq!(msg.transaction_id(), &TID);
        assert_eq!(
            msg.username_ufrags(),
            Some((&b"srvufrag"[..], &b"cliufrag"[..]))
        );
        assert_eq!(msg.priority(), Some(0x6e00_01ff));
        assert_eq!(msg.ice_controlling(), Some(0x1122_3344_5566_7788));
        assert_eq!(msg.ice_controlled(), None);
        assert!(msg.use_candidate());
        assert!(msg.verify_integrity(KEY));
        assert!(!msg.verify_integrity(b"wrong"));
        assert!(msg.verify_fingerprint());
    }

    #[test]
    fn controlled_request_without_nomination() {
        let mut req = request();
        req.role = IceRole::Controlled(5);
        req.use_candidate = false;
        let mut buf = [0u8; 256];
        let n = req.write(&mut buf).unwrap();
        let msg = StunMessage::parse(&buf[..n]).unwrap();
        assert_eq!(msg.ice_controlled(), Some(5));
        assert_eq!(msg.ice_controlling(), None);
        assert!(!msg.use_candidate());
    }

    #[test]
    fn success_round_trips_v4_and_v6() {
        for a in ["203.0.113.7:50000", "[2001:db8::7]:50001"] {
            let addr: SocketAddr = a.parse().unwrap();
            let mut buf = [0u8; 128];
            let n = write_binding_success(&mut buf, &TID, addr, KEY).unwrap();
            let msg = StunMessage::parse(&buf[..n]).unwrap();
            assert_eq!(msg.class(), StunClass::Success);
            assert_eq!(msg.xor_mapped_address(), Some(addr));
            assert!(msg.verify_integrity(KEY));
            assert!(msg.verify_fingerprint());
        }
    }

    #[test]
    fn error_responses_round_trip() {
        let mut buf = [0u8; 128];
        let resp = ErrorResponse {
            transaction_id: TID,
            code: ErrorCode::UNKNOWN_ATTRIBUTE,
            reason: b"Unknown Attribute",
            unknown_attributes: &[0x7001, 0x7002, 0x7003],
            integrity_key: Some(KEY),
        };
        let n = resp.write(&mut buf).unwrap();
        let msg = StunMessage::parse(&buf[..n]).unwrap();
        assert_eq!(msg.class(), StunClass::Error);
        let e = msg.error_code().unwrap();
        assert_eq!((e.code, e.reason), (420, &b"Unknown Attribute"[..]));
        let ua = msg.attribute(attr::UNKNOWN_ATTRIBUTES).unwrap();
        assert_eq!(ua.value, &[0x70, 0x01, 0x70, 0x02, 0x70, 0x03]);
        assert!(msg.verify_integrity(KEY));
        assert!(msg.verify_fingerprint());

        for code in [400, 401, 487] {
            let resp = ErrorResponse {
                code,
                reason: b"x",
                unknown_attributes: &[],
                integrity_key: None,
                ..resp
            };
            let n = resp.write(&mut buf).unwrap();
            let msg = StunMessage::parse(&buf[..n]).unwrap();
            assert_eq!(msg.error_code().unwrap().code, code);
            assert!(msg.message_integrity().is_none());
            assert!(msg.verify_fingerprint());
        }

        let bad = ErrorResponse { code: 299, ..resp };
        assert_eq!(bad.write(&mut buf), Err(StunError::Unencodable));
    }

    #[test]
    fn every_short_buffer_is_reported() {
        let mut full = [0u8; 256];
        let n = request().write(&mut full).unwrap();
        for short in 0..n {
            let mut buf = vec![0u8; short];
            assert_eq!(request().write(&mut buf), Err(StunError::BufferTooSmall));
        }
        let mut exact = vec![0u8; n];
        assert_eq!(request().write(&mut exact), Ok(n));
        assert_eq!(&exact[..], &full[..n]);
    }

    #[test]
    fn order_is_enforced() {
        let mut buf = [0u8; 128];
        let mut w =
            StunWriter::new(&mut buf, StunClass::Request, StunMethod::Binding, &TID).unwrap();
        w.message_integrity(KEY).unwrap();
        assert_eq!(w.priority(1), Err(StunError::Misordered));
        assert_eq!(w.message_integrity(KEY), Err(StunError::Misordered));
        w.fingerprint().unwrap();
        assert_eq!(w.fingerprint(), Err(StunError::Misordered));
        let n = w.finish();
        assert!(StunMessage::parse(&buf[..n]).unwrap().verify_integrity(KEY));
    }

    #[test]
    fn padding_byte_is_applied() {
        let mut buf = [0u8; 64];
        let mut w =
            StunWriter::new(&mut buf, StunClass::Request, StunMethod::Binding, &TID).unwrap();
        w.set_padding_byte(0x20);
        w.username(b"abcde").unwrap();
        let n = w.finish();
        assert_eq!(n, HEADER_LEN + 12);
        assert_eq!(&buf[HEADER_LEN + 4..n], b"abcde   ");
    }

    #[test]
    fn tampering_breaks_integrity_and_fingerprint() {
        let mut buf = [0u8; 256];
        let n = request().write(&mut buf).unwrap();
        // Flip one bit in each byte of the attribute area before
        // MESSAGE-INTEGRITY; the message must still parse or fail cleanly,
        // and if it parses neither check may pass.
        let mi_off = n - 8 - 24;
        for i in HEADER_LEN..mi_off {
            let mut copy = buf;
            copy[i] ^= 0x01;
            if let Ok(msg) = StunMessage::parse(&copy[..n]) {
                assert!(!msg.verify_integrity(KEY), "byte {i}");
                assert!(!msg.verify_fingerprint(), "byte {i}");
            }
        }
    }
}
