//! DTLS handshake messages over records (RFC 6347 §4.2.2–§4.2.4): the
//! 12-byte fragment header, reassembly of fragmented and reordered messages
//! (bounded), the transcript form of a message, and a flight of our messages
//! cut into records and datagrams that respect the MTU.

use super::codec::{put_u16, put_u24, Reader};
use super::keys::RecordCipher;
use super::record::{self, AEAD_OVERHEAD, HEADER_LEN};

/// Handshake message types (RFC 5246 §7.4, RFC 6347 §4.3.2).
pub(crate) const CLIENT_HELLO: u8 = 1;
pub(crate) const SERVER_HELLO: u8 = 2;
pub(crate) const HELLO_VERIFY_REQUEST: u8 = 3;
pub(crate) const CERTIFICATE: u8 = 11;
pub(crate) const SERVER_KEY_EXCHANGE: u8 = 12;
pub(crate) const CERTIFICATE_REQUEST: u8 = 13;
pub(crate) const SERVER_HELLO_DONE: u8 = 14;
pub(crate) const CERTIFICATE_VERIFY: u8 = 15;
pub(crate) const CLIENT_KEY_EXCHANGE: u8 = 16;
pub(crate) const FINISHED: u8 = 20;

/// The handshake header in front of every fragment.
pub(crate) const FRAGMENT_HEADER_LEN: usize = 12;
/// Largest handshake message we reassemble: a ClientHello with post-quantum
/// key shares is ~2 KB, a client certificate chain a few KB.
pub(crate) const MAX_MESSAGE: usize = 16 * 1024;
/// Messages ahead of the next expected one that are buffered.
const MAX_AHEAD: u16 = 8;
/// Distinct received ranges tracked per message (fragments that do not merge).
const MAX_RANGES: usize = 32;

/// One handshake fragment of a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Fragment<'a> {
    pub(crate) msg_type: u8,
    pub(crate) length: usize,
    pub(crate) message_seq: u16,
    pub(crate) offset: usize,
    pub(crate) body: &'a [u8],
}

/// The fragments in a handshake record's plaintext; stops at the first that
/// does not parse or lies about its bounds.
pub(crate) fn fragments(plain: &[u8]) -> impl Iterator<Item = Fragment<'_>> {
    let mut r = Reader::new(plain);
    std::iter::from_fn(move || {
        let msg_type = r.u8()?;
        let length = r.u24()? as usize;
        let message_seq = r.u16()?;
        let offset = r.u24()? as usize;
        let frag_len = r.u24()? as usize;
        let body = r.bytes(frag_len)?;
        if offset.checked_add(frag_len)? > length {
            return None;
        }
        Some(Fragment {
            msg_type,
            length,
            message_seq,
            offset,
            body,
        })
    })
}

/// A complete handshake message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Message {
    pub(crate) msg_type: u8,
    pub(crate) message_seq: u16,
    pub(crate) body: Vec<u8>,
}

impl Message {
    /// The message as the transcript hashes it: one unfragmented fragment
    /// (RFC 6347 §4.2.6).
    pub(crate) fn transcript_bytes(&self, out: &mut Vec<u8>) {
        write_header(
            out,
            self.msg_type,
            self.body.len(),
            self.message_seq,
            0,
            self.body.len(),
        );
        out.extend_from_slice(&self.body);
    }
}

/// What [`Reassembler::insert`] did with a fragment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Inserted {
    /// Kept (or a harmless duplicate of what we have).
    Kept,
    /// Its message_seq is below the next expected: a retransmission of a
    /// message we already processed.
    Old,
    /// Dropped: too far ahead, too big, inconsistent or too fragmented.
    Dropped,
}

#[derive(Debug)]
struct Partial {
    msg_type: u8,
    message_seq: u16,
    body: Vec<u8>,
    /// Received byte ranges, sorted and merged.
    ranges: Vec<(usize, usize)>,
}

impl Partial {
    fn is_complete(&self) -> bool {
        self.ranges.first() == Some(&(0, self.body.len())) || self.body.is_empty()
    }

    fn add(&mut self, offset: usize, data: &[u8]) -> bool {
        let end = offset + data.len();
        if data.is_empty() {
            return true;
        }
        // Overlapping bytes must agree with what arrived before (RFC 6347
        // allows overlap; a different copy is not the same message).
        for &(s, e) in &self.ranges {
            let (a, b) = (s.max(offset), e.min(end));
            if a < b && self.body[a..b] != data[a - offset..b - offset] {
                return false;
            }
        }
        let mut merged = (offset, end);
        let mut kept = Vec::with_capacity(self.ranges.len() + 1);
        for &(s, e) in &self.ranges {
            if e < merged.0 || s > merged.1 {
                kept.push((s, e));
            } else {
                merged = (merged.0.min(s), merged.1.max(e));
            }
        }
        if kept.len() >= MAX_RANGES {
            return false;
        }
        kept.push(merged);
        kept.sort_unstable();
        self.body[offset..end].copy_from_slice(data);
        self.ranges = kept;
        true
    }
}

/// Reassembles the peer's handshake messages in message_seq order.
#[derive(Debug, Default)]
pub(crate) struct Reassembler {
    next: u16,
    pending: Vec<Partial>,
}

impl Reassembler {
    /// The message_seq the next complete message must carry.
    #[cfg(test)]
    pub(crate) fn next_seq(&self) -> u16 {
        self.next
    }

    /// Takes one fragment.
    pub(crate) fn insert(&mut self, f: &Fragment<'_>) -> Inserted {
        if f.message_seq < self.next {
            return Inserted::Old;
        }
        if f.message_seq - self.next >= MAX_AHEAD || f.length > MAX_MESSAGE {
            return Inserted::Dropped;
        }
        let i = match self
            .pending
            .iter()
            .position(|p| p.message_seq == f.message_seq)
        {
            Some(i) => i,
            None => {
                self.pending.push(Partial {
                    msg_type: f.msg_type,
                    message_seq: f.message_seq,
                    body: vec![0; f.length],
                    ranges: Vec::new(),
                });
                self.pending.len() - 1
            }
        };
        let p = &mut self.pending[i];
        if p.msg_type != f.msg_type || p.body.len() != f.length {
            return Inserted::Dropped;
        }
        if p.add(f.offset, f.body) {
            Inserted::Kept
        } else {
            Inserted::Dropped
        }
    }

    /// The next message in order, once all of it arrived.
    pub(crate) fn pop(&mut self) -> Option<Message> {
        let i = self
            .pending
            .iter()
            .position(|p| p.message_seq == self.next && p.is_complete())?;
        let p = self.pending.swap_remove(i);
        self.next = self.next.wrapping_add(1);
        Some(Message {
            msg_type: p.msg_type,
            message_seq: p.message_seq,
            body: p.body,
        })
    }

    /// Forgets everything and expects `next` (after a HelloVerifyRequest the
    /// client starts over with a new ClientHello).
    pub(crate) fn reset(&mut self, next: u16) {
        self.next = next;
        self.pending.clear();
    }
}

fn write_header(
    out: &mut Vec<u8>,
    msg_type: u8,
    length: usize,
    seq: u16,
    offset: usize,
    frag_len: usize,
) {
    out.push(msg_type);
    put_u24(out, length);
    put_u16(out, seq);
    put_u24(out, offset);
    put_u24(out, frag_len);
}

/// One item of a flight we send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Item {
    /// A handshake message, in epoch 0 or (Finished) 1.
    Handshake { msg: Message, epoch: u16 },
    /// ChangeCipherSpec (epoch 0).
    ChangeCipherSpec,
}

/// Record sequence numbers of our two epochs.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct WriteSeq {
    pub(crate) epoch0: u64,
    pub(crate) epoch1: u64,
}

impl WriteSeq {
    pub(crate) fn take(&mut self, epoch: u16) -> u64 {
        let s = if epoch == 0 {
            &mut self.epoch0
        } else {
            &mut self.epoch1
        };
        let v = *s;
        *s += 1;
        v
    }
}

/// Cuts `items` into records of at most `mtu` bytes each and packs them
/// into datagrams of at most `mtu` bytes, with fresh record sequence
/// numbers (a retransmitted flight is new records, RFC 6347 §4.2.4).
/// `None` when epoch 1 is needed but `cipher` is missing or sealing failed.
pub(crate) fn pack(
    items: &[Item],
    mtu: usize,
    seq: &mut WriteSeq,
    cipher: Option<&RecordCipher>,
) -> Option<Vec<Vec<u8>>> {
    let mut datagrams: Vec<Vec<u8>> = Vec::new();
    let mut cur = Vec::with_capacity(mtu);
    let mut push_record = |rec: Vec<u8>, cur: &mut Vec<u8>| {
        if !cur.is_empty() && cur.len() + rec.len() > mtu {
            datagrams.push(std::mem::replace(cur, Vec::with_capacity(mtu)));
        }
        cur.extend_from_slice(&rec);
    };
    for item in items {
        match item {
            Item::ChangeCipherSpec => {
                let mut rec = Vec::with_capacity(HEADER_LEN + 1);
                record::write_plain(&mut rec, record::CHANGE_CIPHER_SPEC, 0, seq.take(0), &[1]);
                push_record(rec, &mut cur);
            }
            Item::Handshake { msg, epoch } => {
                let overhead =
                    HEADER_LEN + FRAGMENT_HEADER_LEN + if *epoch == 0 { 0 } else { AEAD_OVERHEAD };
                let chunk = mtu.saturating_sub(overhead).max(1);
                let len = msg.body.len();
                let mut offset = 0;
                loop {
                    let n = chunk.min(len - offset);
                    let mut plain = Vec::with_capacity(FRAGMENT_HEADER_LEN + n);
                    write_header(&mut plain, msg.msg_type, len, msg.message_seq, offset, n);
                    plain.extend_from_slice(&msg.body[offset..offset + n]);
                    let mut rec = Vec::with_capacity(overhead + n);
                    let s = seq.take(*epoch);
                    if *epoch == 0 {
                        record::write_plain(&mut rec, record::HANDSHAKE, 0, s, &plain);
                    } else {
                        record::write_sealed(
                            &mut rec,
                            cipher?,
                            record::HANDSHAKE,
                            *epoch,
                            s,
                            &plain,
                        )?;
                    }
                    push_record(rec, &mut cur);
                    offset += n;
                    if offset >= len {
                        break;
                    }
                }
            }
        }
    }
    if !cur.is_empty() {
        datagrams.push(cur);
    }
    Some(datagrams)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(msg_type: u8, seq: u16, len: usize) -> Message {
        Message {
            msg_type,
            message_seq: seq,
            body: (0..len).map(|i| (i * 7) as u8).collect(),
        }
    }

    /// Everything `pack` wrote, read back through `records` + `fragments` +
    /// a reassembler, whatever the MTU.
    #[test]
    fn pack_and_reassemble_round_trip() {
        let items = vec![
            Item::Handshake {
                msg: msg(SERVER_HELLO, 1, 70),
                epoch: 0,
            },
            Item::Handshake {
                msg: msg(CERTIFICATE, 2, 2500),
                epoch: 0,
            },
            Item::Handshake {
                msg: msg(SERVER_HELLO_DONE, 3, 0),
                epoch: 0,
            },
        ];
        for mtu in [200usize, 576, 1150, 5000] {
            let mut seq = WriteSeq::default();
            let dgrams = pack(&items, mtu, &mut seq, None).unwrap();
            let mut r = Reassembler::default();
            r.reset(1);
            // Reverse order: reassembly must not depend on arrival order.
            for d in dgrams.iter().rev() {
                assert!(d.len() <= mtu, "{} > {mtu}", d.len());
                for rec in record::records(d) {
                    for f in fragments(rec.fragment) {
                        assert_eq!(r.insert(&f), Inserted::Kept);
                    }
                }
            }
            for it in &items {
                let Item::Handshake { msg, .. } = it else {
                    unreachable!()
                };
                assert_eq!(r.pop().as_ref(), Some(msg), "mtu {mtu}");
            }
            assert_eq!(r.pop(), None);
            assert!(seq.epoch0 >= 3);
        }
    }

    #[test]
    fn old_ahead_inconsistent_and_oversized() {
        let mut r = Reassembler::default();
        r.reset(2);
        let f = |seq, len, offset, body: &'static [u8]| Fragment {
            msg_type: CLIENT_KEY_EXCHANGE,
            length: len,
            message_seq: seq,
            offset,
            body,
        };
        assert_eq!(r.insert(&f(1, 3, 0, b"abc")), Inserted::Old);
        assert_eq!(r.insert(&f(2 + MAX_AHEAD, 3, 0, b"abc")), Inserted::Dropped);
        assert_eq!(r.insert(&f(2, MAX_MESSAGE + 1, 0, b"a")), Inserted::Dropped);
        assert_eq!(r.insert(&f(2, 4, 0, b"ab")), Inserted::Kept);
        assert_eq!(r.pop(), None, "incomplete");
        assert_eq!(
            r.insert(&f(2, 5, 2, b"cd")),
            Inserted::Dropped,
            "length changed"
        );
        assert_eq!(
            r.insert(&f(2, 4, 1, b"Xc")),
            Inserted::Dropped,
            "overlap disagrees"
        );
        assert_eq!(r.insert(&f(2, 4, 1, b"bcd")), Inserted::Kept);
        assert_eq!(r.pop().map(|m| m.body), Some(b"abcd".to_vec()));
        assert_eq!(r.next_seq(), 3);
    }

    #[test]
    fn too_many_ranges_are_refused() {
        let mut r = Reassembler::default();
        let body = [1u8];
        for i in 0..MAX_RANGES {
            let f = Fragment {
                msg_type: 1,
                length: 1000,
                message_seq: 0,
                offset: i * 3,
                body: &body,
            };
            assert_eq!(r.insert(&f), Inserted::Kept, "{i}");
        }
        let f = Fragment {
            msg_type: 1,
            length: 1000,
            message_seq: 0,
            offset: 999,
            body: &body,
        };
        assert_eq!(r.insert(&f), Inserted::Dropped);
    }

    #[test]
    fn fragment_bounds_are_checked() {
        // length 4, offset 3, fragment 2: past the end.
        let rec = [1, 0, 0, 4, 0, 0, 0, 0, 3, 0, 0, 2, 9, 9];
        assert_eq!(fragments(&rec).count(), 0);
        let ok = [1, 0, 0, 4, 0, 0, 0, 0, 2, 0, 0, 2, 9, 9];
        assert_eq!(fragments(&ok).count(), 1);
    }
}
