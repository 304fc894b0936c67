//! DTLS 1.2 records (RFC 6347 §4.1): splitting a datagram into records,
//! writing plaintext (epoch 0) and AES-GCM (epoch 1) records, and the
//! anti-replay window of RFC 6347 §4.1.2.6.

use super::codec::{put_u16, put_u48, Reader};
use super::keys::{RecordCipher, DTLS12};

/// Record content types (RFC 5246 §6.2.1).
pub(crate) const CHANGE_CIPHER_SPEC: u8 = 20;
pub(crate) const ALERT: u8 = 21;
pub(crate) const HANDSHAKE: u8 = 22;
pub(crate) const APPLICATION_DATA: u8 = 23;

/// Record header length: type, version, epoch, 48-bit sequence, length.
pub(crate) const HEADER_LEN: usize = 13;
/// Bytes an epoch-1 record adds to its plaintext: explicit nonce and GCM tag.
pub(crate) const AEAD_OVERHEAD: usize = 8 + 16;
/// Largest record fragment we accept (RFC 6347 §4.1: 2^14 + 2048 for ciphertext).
const MAX_FRAGMENT: usize = (1 << 14) + 2048;

/// One record of a received datagram; `fragment` borrows the datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Record<'a> {
    pub(crate) content_type: u8,
    pub(crate) version: u16,
    pub(crate) epoch: u16,
    pub(crate) seq: u64,
    pub(crate) fragment: &'a [u8],
}

impl Record<'_> {
    /// Epoch and sequence number as one 64-bit value (the AEAD's seq_num).
    pub(crate) fn epoch_seq(&self) -> u64 {
        (u64::from(self.epoch) << 48) | self.seq
    }
}

/// The records of a datagram, in order. A record whose header or length does
/// not fit ends the iteration (RFC 6347 §4.1.2.7: invalid records are
/// silently discarded; what follows a broken length cannot be framed).
pub(crate) fn records(datagram: &[u8]) -> impl Iterator<Item = Record<'_>> {
    let mut r = Reader::new(datagram);
    std::iter::from_fn(move || {
        let content_type = r.u8()?;
        let version = r.u16()?;
        let epoch = r.u16()?;
        let seq = r.u48()?;
        let len = usize::from(r.u16()?);
        if len > MAX_FRAGMENT {
            return None;
        }
        let fragment = r.bytes(len)?;
        Some(Record {
            content_type,
            version,
            epoch,
            seq,
            fragment,
        })
    })
}

/// Whether a version field belongs to DTLS 1.0 or 1.2: a ClientHello's
/// record may say 1.0 (RFC 6347 §4.1), everything after says 1.2.
pub(crate) fn is_dtls_version(v: u16) -> bool {
    v == DTLS12 || v == DTLS10
}

/// DTLS 1.0's version, which HelloVerifyRequest and first ClientHellos carry.
pub(crate) const DTLS10: u16 = 0xfeff;

/// Appends a plaintext record.
pub(crate) fn write_plain(out: &mut Vec<u8>, content_type: u8, epoch: u16, seq: u64, body: &[u8]) {
    header(out, content_type, epoch, seq, body.len());
    out.extend_from_slice(body);
}

/// Appends an AES-GCM record under `cipher`; `None` if sealing failed.
pub(crate) fn write_sealed(
    out: &mut Vec<u8>,
    cipher: &RecordCipher,
    content_type: u8,
    epoch: u16,
    seq: u64,
    body: &[u8],
) -> Option<()> {
    let sealed = cipher.seal((u64::from(epoch) << 48) | seq, content_type, body)?;
    header(out, content_type, epoch, seq, sealed.len());
    out.extend_from_slice(&sealed);
    Some(())
}

fn header(out: &mut Vec<u8>, content_type: u8, epoch: u16, seq: u64, len: usize) {
    out.push(content_type);
    put_u16(out, DTLS12);
    put_u16(out, epoch);
    put_u48(out, seq & SEQ_MASK);
    put_u16(out, len as u16);
}

/// Record sequence numbers are 48 bits.
pub(crate) const SEQ_MASK: u64 = (1 << 48) - 1;

/// The sliding anti-replay window of one epoch (RFC 6347 §4.1.2.6, the
/// RFC 4303 §3.4.3 algorithm with 64 positions).
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct ReplayWindow {
    /// Highest sequence number accepted, if any.
    top: Option<u64>,
    /// Bit i set: `top - i` was accepted.
    bits: u64,
}

impl ReplayWindow {
    /// Whether `seq` is new and inside the window. Check before decrypting;
    /// [`accept`](Self::accept) only after the record authenticated.
    pub(crate) fn is_fresh(&self, seq: u64) -> bool {
        match self.top {
            None => true,
            Some(top) if seq > top => true,
            Some(top) => {
                let back = top - seq;
                back < 64 && self.bits & (1 << back) == 0
            }
        }
    }

    /// Marks `seq` as seen.
    pub(crate) fn accept(&mut self, seq: u64) {
        match self.top {
            None => {
                self.top = Some(seq);
                self.bits = 1;
            }
            Some(top) if seq > top => {
                let shift = seq - top;
                self.bits = if shift >= 64 { 0 } else { self.bits << shift };
                self.bits |= 1;
                self.top = Some(seq);
            }
            Some(top) => {
                let back = top - seq;
                if back < 64 {
                    self.bits |= 1 << back;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datagram_of_two_records_and_a_truncated_third() {
        let mut d = Vec::new();
        write_plain(&mut d, HANDSHAKE, 0, 1, b"abc");
        write_plain(&mut d, CHANGE_CIPHER_SPEC, 0, 2, &[1]);
        d.extend_from_slice(&[23, 0xfe, 0xfd, 0, 1, 0, 0, 0, 0, 0, 3, 0, 9, 1]);
        let got: Vec<_> = records(&d).collect();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].fragment, b"abc");
        assert_eq!((got[1].content_type, got[1].seq), (CHANGE_CIPHER_SPEC, 2));
        assert_eq!(records(&d[..5]).count(), 0);
    }

    #[test]
    fn replay_window() {
        let mut w = ReplayWindow::default();
        assert!(w.is_fresh(5));
        w.accept(5);
        assert!(!w.is_fresh(5));
        assert!(w.is_fresh(4));
        w.accept(4);
        assert!(!w.is_fresh(4));
        w.accept(100);
        assert!(!w.is_fresh(5), "fell out of the window");
        assert!(!w.is_fresh(36), "64 back is outside");
        assert!(w.is_fresh(37));
        w.accept(37);
        assert!(!w.is_fresh(37));
        assert!(w.is_fresh(99));
        w.accept(1000);
        assert!(w.is_fresh(999) && !w.is_fresh(1000) && !w.is_fresh(100));
    }
}
