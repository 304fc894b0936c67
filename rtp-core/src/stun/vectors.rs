//! RFC 5769 test vectors (§2.1 sample request, §2.2 IPv4 response, §2.3 IPv6
//! response), checked against both the parser and the writer. The vectors
//! pad with 0x20 rather than zero, which the writer reproduces with
//! [`StunWriter::set_padding_byte`].

use std::net::SocketAddr;

use super::{StunClass, StunMessage, StunMethod, StunWriter};

const PASSWORD: &[u8] = b"VOkJxbRl1RmTxUk/WvJxBt";
const TID: [u8; 12] = [
    0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86, 0xfa, 0x87, 0xdf, 0xae,
];

/// RFC 5769 §2.1, split per attribute: header, SOFTWARE, PRIORITY,
/// ICE-CONTROLLED, USERNAME, MESSAGE-INTEGRITY, FINGERPRINT.
const SAMPLE_REQUEST: &str = "000100582112a442b7e7a701bc34d686fa87dfae\
    802200105354554e207465737420636c69656e74\
    002400046e0001ff\
    80290008932ff9b151263b36\
    000600096576746a3a68367659202020\
    000800149aeaa70cbfd8cb56781ef2b5b2d3f249c1b571a2\
    80280004e57a3bcf";

/// RFC 5769 §2.2: header, SOFTWARE, XOR-MAPPED-ADDRESS, MESSAGE-INTEGRITY, FINGERPRINT.
const SAMPLE_IPV4_RESPONSE: &str = "0101003c2112a442b7e7a701bc34d686fa87dfae\
    8022000b7465737420766563746f7220\
    002000080001a147e112a643\
    000800142b91f599fd9e90c38c7489f92af9ba53f06be7d7\
    80280004c07d4c96";

/// RFC 5769 §2.3: as §2.2 with an IPv6 XOR-MAPPED-ADDRESS.
const SAMPLE_IPV6_RESPONSE: &str = "010100482112a442b7e7a701bc34d686fa87dfae\
    8022000b7465737420766563746f7220\
    002000140002a1470113a9faa5d3f179bc25f4b5bed2b9d9\
    00080014a382954e4be67bf11784c97c8292c275bfe3ed41\
    80280004c8fb0b4c";

fn hex(s: &str) -> Vec<u8> {
    let digits: Vec<u8> = s.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    digits
        .chunks(2)
        .map(|p| u8::from_str_radix(std::str::from_utf8(p).unwrap(), 16).unwrap())
        .collect()
}

#[test]
fn sample_request_parses_and_verifies() {
    let bytes = hex(SAMPLE_REQUEST);
    assert_eq!(bytes.len(), 108);
    let msg = StunMessage::parse(&bytes).unwrap();
    assert_eq!(msg.class(), StunClass::Request);
    assert_eq!(msg.method(), StunMethod::Binding);
    assert_eq!(msg.transaction_id(), &TID);
    assert_eq!(msg.software(), Some(&b"STUN test client"[..]));
    assert_eq!(msg.priority(), Some(0x6e00_01ff));
    assert_eq!(msg.ice_controlled(), Some(0x932f_f9b1_5126_3b36));
    assert_eq!(msg.ice_controlling(), None);
    assert!(!msg.use_candidate());
    assert_eq!(msg.username(), Some(&b"evtj:h6vY"[..]));
    assert_eq!(msg.username_ufrags(), Some((&b"evtj"[..], &b"h6vY"[..])));
    assert_eq!(msg.fingerprint(), Some(0xe57a_3bcf));
    assert!(msg.verify_integrity(PASSWORD));
    assert!(msg.verify_fingerprint());
    assert!(!msg.verify_integrity(b"VOkJxbRl1RmTxUk/WvJxBu"));
    assert_eq!(msg.unknown_comprehension_required().count(), 0);
}

#[test]
fn sample_request_is_reproduced_byte_for_byte() {
    let mut buf = [0u8; 128];
    let mut w = StunWriter::new(&mut buf, StunClass::Request, StunMethod::Binding, &TID).unwrap();
    w.set_padding_byte(0x20);
    w.software(b"STUN test client").unwrap();
    w.priority(0x6e00_01ff).unwrap();
    w.ice_controlled(0x932f_f9b1_5126_3b36).unwrap();
    w.username(b"evtj:h6vY").unwrap();
    w.message_integrity(PASSWORD).unwrap();
    w.fingerprint().unwrap();
    let n = w.finish();
    assert_eq!(&buf[..n], &hex(SAMPLE_REQUEST)[..]);
}

fn check_response(vector: &str, mapped: &str) {
    let bytes = hex(vector);
    let mapped: SocketAddr = mapped.parse().unwrap();
    let msg = StunMessage::parse(&bytes).unwrap();
    assert_eq!(msg.class(), StunClass::Success);
    assert_eq!(msg.method(), StunMethod::Binding);
    assert_eq!(msg.software(), Some(&b"test vector"[..]));
    assert_eq!(msg.xor_mapped_address(), Some(mapped));
    assert!(msg.verify_integrity(PASSWORD));
    assert!(msg.verify_fingerprint());

    let mut buf = [0u8; 128];
    let mut w = StunWriter::new(&mut buf, StunClass::Success, StunMethod::Binding, &TID).unwrap();
    w.set_padding_byte(0x20);
    w.software(b"test vector").unwrap();
    w.xor_mapped_address(mapped).unwrap();
    w.message_integrity(PASSWORD).unwrap();
    w.fingerprint().unwrap();
    let n = w.finish();
    assert_eq!(&buf[..n], &bytes[..]);
}

#[test]
fn sample_ipv4_response_parses_verifies_and_is_reproduced() {
    check_response(SAMPLE_IPV4_RESPONSE, "192.0.2.1:32853");
}

#[test]
fn sample_ipv6_response_parses_verifies_and_is_reproduced() {
    check_response(
        SAMPLE_IPV6_RESPONSE,
        "[2001:db8:1234:5678:11:2233:4455:6677]:32853",
    );
}

#[test]
fn every_single_bit_flip_in_a_vector_is_caught() {
    for vector in [SAMPLE_REQUEST, SAMPLE_IPV4_RESPONSE, SAMPLE_IPV6_RESPONSE] {
        let bytes = hex(vector);
        for i in 0..bytes.len() {
            for bit in 0..8 {
                let mut copy = bytes.clone();
                copy[i] ^= 1 << bit;
                if let Ok(msg) = StunMessage::parse(&copy) {
                    // Padding bytes are covered by both checksums as well, so
                    // no flip anywhere may leave both intact.
                    assert!(
                        !(msg.verify_integrity(PASSWORD) && msg.verify_fingerprint()),
                        "byte {i} bit {bit}"
                    );
                }
            }
        }
    }
}
