//! Which DTLS engine serves a server-role endpoint, decided on the client's
//! first ClientHello (RFC 8446 §4.2.1 `supported_versions`, which DTLS 1.3
//! clients send, RFC 9147 §5.3): a client that offers DTLS 1.3 goes to
//! dimpl, every other one to our DTLS 1.2 server (`v12`). The hello may be
//! fragmented over records and datagrams (post-quantum key shares make it
//! bigger than one MTU): datagrams that carry part of it are kept, bounded,
//! until it is whole, then all of them are handed to the chosen engine in
//! the order they came.

use super::v12::{self, ClientHello, FragmentInserted, Reassembler};

/// Where the datagrams kept so far go.
#[derive(Debug)]
pub(super) enum Route {
    /// The hello is not whole yet.
    Pending,
    /// A DTLS 1.3 client: dimpl.
    Dimpl(Vec<Vec<u8>>),
    /// A DTLS 1.2 (or unparseable: it will be refused with an alert) client: ours.
    Ours(Vec<Vec<u8>>),
    /// More hello fragments than we keep: refuse.
    TooBig,
}

/// The first ClientHello being collected.
#[derive(Debug, Default)]
pub(super) struct Router {
    kept: Vec<Vec<u8>>,
    bytes: usize,
    reasm: Reassembler,
}

impl Router {
    /// Looks at one datagram. Datagrams without a fragment of the first
    /// ClientHello are ignored here (a plaintext record of anything else
    /// before the hello belongs to no handshake yet).
    pub(super) fn handle(&mut self, datagram: &[u8]) -> Route {
        let mut keep = false;
        for rec in v12::records(datagram) {
            if rec.content_type != HANDSHAKE || rec.epoch != 0 {
                continue;
            }
            for f in v12::fragments(rec.fragment) {
                if f.msg_type == v12::CLIENT_HELLO && f.message_seq == 0 {
                    keep |= self.reasm.insert(&f) == FragmentInserted::Kept;
                }
            }
        }
        if !keep {
            return Route::Pending;
        }
        self.bytes += datagram.len();
        if self.kept.len() >= MAX_DATAGRAMS || self.bytes > MAX_BYTES {
            return Route::TooBig;
        }
        self.kept.push(datagram.to_vec());
        let Some(hello) = self.reasm.pop() else {
            return Route::Pending;
        };
        let kept = std::mem::take(&mut self.kept);
        match ClientHello::parse(&hello.body) {
            Ok(ch) if ch.offers_dtls13() => Route::Dimpl(kept),
            _ => Route::Ours(kept),
        }
    }
}

const HANDSHAKE: u8 = 22;
/// Datagrams kept while the hello is incomplete (a 16 KiB hello in 1150-byte datagrams).
const MAX_DATAGRAMS: usize = 16;
/// Bytes kept while the hello is incomplete.
const MAX_BYTES: usize = 24 * 1024;

#[cfg(test)]
mod tests {
    use super::*;

    /// A ClientHello body with `supported_versions` listing `versions`.
    fn hello(versions: &[u16], pad: usize) -> Vec<u8> {
        let mut b = vec![0xfe, 0xfd];
        b.extend_from_slice(&[7; 32]);
        b.extend_from_slice(&[0, 0, 0, 2, 0xc0, 0x2b, 1, 0]);
        let mut ext = Vec::new();
        ext.extend_from_slice(&[0, 43]);
        let list: Vec<u8> = versions.iter().flat_map(|v| v.to_be_bytes()).collect();
        ext.extend_from_slice(&((list.len() + 1) as u16).to_be_bytes());
        ext.push(list.len() as u8);
        ext.extend_from_slice(&list);
        ext.extend_from_slice(&[0, 21]); // padding
        ext.extend_from_slice(&(pad as u16).to_be_bytes());
        ext.extend(std::iter::repeat_n(0, pad));
        b.extend_from_slice(&(ext.len() as u16).to_be_bytes());
        b.extend_from_slice(&ext);
        b
    }

    /// `body` as ClientHello fragments of at most `chunk` bytes, one record per datagram.
    fn datagrams(body: &[u8], chunk: usize) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        for (i, part) in body.chunks(chunk).enumerate() {
            let mut frag = vec![1];
            frag.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
            frag.extend_from_slice(&[0, 0]);
            frag.extend_from_slice(&((i * chunk) as u32).to_be_bytes()[1..]);
            frag.extend_from_slice(&(part.len() as u32).to_be_bytes()[1..]);
            frag.extend_from_slice(part);
            let mut d = vec![22, 0xfe, 0xff, 0, 0, 0, 0, 0, 0, 0, i as u8];
            d.extend_from_slice(&(frag.len() as u16).to_be_bytes());
            d.extend_from_slice(&frag);
            out.push(d);
        }
        out
    }

    #[test]
    fn a_dtls13_offer_goes_to_dimpl_a_12_one_to_us() {
        let mut r = Router::default();
        match r.handle(&datagrams(&hello(&[0xfefc, 0xfefd], 0), 5000)[0]) {
            Route::Dimpl(d) => assert_eq!(d.len(), 1),
            other => panic!("{other:?}"),
        }
        let mut r = Router::default();
        assert!(matches!(
            r.handle(&datagrams(&hello(&[0xfefd], 0), 5000)[0]),
            Route::Ours(_)
        ));
        let mut r = Router::default();
        assert!(matches!(
            r.handle(&datagrams(&hello(&[], 0), 5000)[0]),
            Route::Ours(_)
        ));
    }

    #[test]
    fn a_fragmented_hello_is_collected_in_any_order() {
        let body = hello(&[0xfefc, 0xfefd], 2500);
        let mut ds = datagrams(&body, 1000);
        ds.reverse();
        let mut r = Router::default();
        assert!(matches!(r.handle(&ds[0]), Route::Pending));
        assert!(matches!(r.handle(b"\x17garbage"), Route::Pending));
        assert!(matches!(r.handle(&ds[1]), Route::Pending));
        match r.handle(&ds[2]) {
            Route::Dimpl(kept) => assert_eq!(kept, ds),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn too_many_fragments_are_refused() {
        let body = hello(&[0xfefd], 8000);
        let ds = datagrams(&body, 100);
        let mut r = Router::default();
        let mut last = Route::Pending;
        for d in &ds {
            last = r.handle(d);
            if !matches!(last, Route::Pending) {
                break;
            }
        }
        assert!(matches!(last, Route::TooBig), "{last:?}");
    }
}
