//! Entry points for the DTLS fuzz targets (`fuzz/`, feature `fuzzing` only):
//! the parsers of our DTLS 1.2 server on raw bytes, each checking its own
//! invariants besides "no panic".

use super::v12::{self, ClientHello, Reassembler};

/// Records of a datagram, the handshake fragments in each, and reassembly of
/// whatever message they make: every slice stays inside the datagram and a
/// reassembled message is exactly its declared length.
pub fn records_and_fragments(datagram: &[u8]) {
    let mut reasm = Reassembler::default();
    for rec in v12::records(datagram) {
        assert!(rec.fragment.len() <= datagram.len());
        for f in v12::fragments(rec.fragment) {
            assert!(f.offset + f.body.len() <= f.length);
            let _ = reasm.insert(&f);
        }
    }
    while let Some(m) = reasm.pop() {
        assert!(m.body.len() <= v12::MAX_MESSAGE);
    }
}

/// The ClientHello parser, the route it would take, and the client-message
/// and certificate parsers on the same bytes.
pub fn client_messages(body: &[u8]) {
    if let Ok(ch) = ClientHello::parse(body) {
        let _ = (
            ch.offers_dtls13(),
            ch.offers_dtls12(),
            ch.suite(),
            ch.group(),
        );
        let _ = (ch.takes_uncompressed(), ch.accepts_signature(0x0403));
        let _ = ch.secure_renegotiation();
        if let Some(p) = ch.srtp() {
            assert!(p.count() <= body.len() / 2);
        }
    }
    v12::fuzz_client_messages(body);
    let _ = super::der::certificate_public_key(body);
}
