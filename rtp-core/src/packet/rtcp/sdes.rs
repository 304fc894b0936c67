//! Source description, goodbye and application-defined packets
//! (RFC 3550 §6.5, §6.6, §6.7).

use super::{be32, RtcpError, SsrcIter};

/// SDES item type CNAME (RFC 3550 §6.5.1).
pub const SDES_CNAME: u8 = 1;

/// Walk one SDES chunk starting at `pos`: `(ssrc, raw items, next chunk offset)`.
/// The items end at the first null octet; the chunk then pads with nulls to
/// the next 32-bit boundary. `None` when the chunk runs past the body.
fn walk_chunk(body: &[u8], pos: usize) -> Option<(u32, &[u8], usize)> {
    body.get(pos..pos + 4)?;
    let ssrc = be32(body, pos);
    let items_start = pos + 4;
    let mut p = items_start;
    loop {
        let t = *body.get(p)?;
        if t == 0 {
            // The body starts 32-bit aligned, so aligning within it aligns on the wire.
            let next = (p + 1).div_ceil(4) * 4;
            if next > body.len() {
                return None;
            }
            return Some((ssrc, &body[items_start..p], next));
        }
        let len = *body.get(p + 1)? as usize;
        p += 2 + len;
        if p > body.len() {
            return None;
        }
    }
}

/// A validated SDES packet view.
#[derive(Debug, Clone, Copy)]
pub struct Sdes<'a> {
    body: &'a [u8],
    count: u8,
}

impl<'a> Sdes<'a> {
    pub(crate) fn parse(count: u8, body: &'a [u8]) -> Result<Self, RtcpError> {
        let mut pos = 0;
        for _ in 0..count {
            let (_, _, next) = walk_chunk(body, pos).ok_or(RtcpError::Malformed)?;
            pos = next;
        }
        Ok(Self { body, count })
    }
    /// The chunks, one per source.
    pub fn chunks(&self) -> SdesChunks<'a> {
        SdesChunks {
            body: self.body,
            pos: 0,
            left: self.count,
        }
    }
}

/// Iterator over SDES chunks.
#[derive(Debug, Clone)]
pub struct SdesChunks<'a> {
    body: &'a [u8],
    pos: usize,
    left: u8,
}

impl<'a> Iterator for SdesChunks<'a> {
    type Item = SdesChunk<'a>;
    fn next(&mut self) -> Option<SdesChunk<'a>> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let (ssrc, items, next) = walk_chunk(self.body, self.pos)?;
        self.pos = next;
        Some(SdesChunk { ssrc, items })
    }
}

/// One SDES chunk: a source and its items.
#[derive(Debug, Clone, Copy)]
pub struct SdesChunk<'a> {
    /// The SSRC or CSRC described.
    pub ssrc: u32,
    items: &'a [u8],
}

impl<'a> SdesChunk<'a> {
    /// Iterate `(item type, value)`.
    pub fn items(&self) -> SdesItems<'a> {
        SdesItems { data: self.items }
    }
    /// The CNAME item's value, if present.
    pub fn cname(&self) -> Option<&'a [u8]> {
        self.items().find(|&(t, _)| t == SDES_CNAME).map(|(_, v)| v)
    }
}

/// Iterator over the `(type, value)` items of one chunk.
#[derive(Debug, Clone)]
pub struct SdesItems<'a> {
    data: &'a [u8],
}

impl<'a> Iterator for SdesItems<'a> {
    type Item = (u8, &'a [u8]);
    fn next(&mut self) -> Option<Self::Item> {
        let (&t, rest) = self.data.split_first()?;
        let (&len, rest) = rest.split_first()?;
        let value = rest.get(..len as usize)?;
        self.data = &rest[len as usize..];
        Some((t, value))
    }
}

/// A validated BYE packet view.
#[derive(Debug, Clone, Copy)]
pub struct Bye<'a> {
    ssrcs: &'a [u8],
    reason: Option<&'a [u8]>,
}

impl<'a> Bye<'a> {
    pub(crate) fn parse(count: u8, body: &'a [u8]) -> Result<Self, RtcpError> {
        let n = 4 * count as usize;
        let ssrcs = body.get(..n).ok_or(RtcpError::Malformed)?;
        let reason = match body.get(n) {
            None => None,
            Some(&len) => Some(
                body.get(n + 1..n + 1 + len as usize)
                    .ok_or(RtcpError::Malformed)?,
            ),
        };
        Ok(Self { ssrcs, reason })
    }
    /// The sources leaving.
    pub fn ssrcs(&self) -> SsrcIter<'a> {
        SsrcIter::new(self.ssrcs)
    }
    /// The reason for leaving, if given.
    pub fn reason(&self) -> Option<&'a [u8]> {
        self.reason
    }
}

/// A validated APP packet view.
#[derive(Debug, Clone, Copy)]
pub struct App<'a> {
    /// The 5-bit subtype.
    pub subtype: u8,
    /// Sender SSRC.
    pub ssrc: u32,
    /// Four ASCII name bytes.
    pub name: [u8; 4],
    /// Application-dependent data.
    pub data: &'a [u8],
}

impl<'a> App<'a> {
    pub(crate) fn parse(subtype: u8, body: &'a [u8]) -> Result<Self, RtcpError> {
        let (head, data) = body.split_first_chunk::<8>().ok_or(RtcpError::Malformed)?;
        Ok(Self {
            subtype,
            ssrc: be32(head, 0),
            name: [head[4], head[5], head[6], head[7]],
            data,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sdes_two_chunks_with_items() {
        let mut b = Vec::new();
        b.extend_from_slice(&1u32.to_be_bytes());
        b.extend_from_slice(&[1, 3, b'a', b'b', b'c', 2, 1, b'n', 0, 0, 0, 0]);
        b.extend_from_slice(&2u32.to_be_bytes());
        b.extend_from_slice(&[0, 0, 0, 0]); // no items: one word of nulls
        let s = Sdes::parse(2, &b).unwrap();
        let chunks: Vec<_> = s.chunks().collect();
        assert_eq!(chunks.len(), 2);
        assert_eq!(chunks[0].ssrc, 1);
        assert_eq!(chunks[0].cname(), Some(&b"abc"[..]));
        let items: Vec<_> = chunks[0].items().collect();
        assert_eq!(items, vec![(1, &b"abc"[..]), (2, &b"n"[..])]);
        assert_eq!(chunks[1].ssrc, 2);
        assert_eq!(chunks[1].items().count(), 0);
        // Item running past the body, missing terminator, or count too large.
        assert!(Sdes::parse(1, &[0, 0, 0, 1, 1, 9, b'a', 0]).is_err());
        assert!(Sdes::parse(1, &[0, 0, 0, 1, 1, 1, b'a', 2]).is_err());
        assert!(Sdes::parse(3, &b).is_err());
    }

    #[test]
    fn bye_and_app() {
        let b = [0, 0, 0, 7, 0, 0, 0, 8, 3, b'b', b'y', b'e'];
        let bye = Bye::parse(2, &b).unwrap();
        assert_eq!(bye.ssrcs().collect::<Vec<_>>(), vec![7, 8]);
        assert_eq!(bye.reason(), Some(&b"bye"[..]));
        assert!(Bye::parse(2, &b[..9]).is_err());
        assert!(Bye::parse(4, &b).is_err());
        let app = App::parse(3, &[0, 0, 0, 5, b'T', b'E', b'S', b'T', 1, 2, 3, 4]).unwrap();
        assert_eq!((app.subtype, app.ssrc, &app.name), (3, 5, b"TEST"));
        assert_eq!(app.data, &[1, 2, 3, 4]);
        assert!(App::parse(0, &[0; 7]).is_err());
    }
}
