//! Transport-wide congestion control feedback codec
//! (draft-holmer-rmcat-transport-wide-cc-extensions-01 §3.1).
//!
//! Decoding works on the FCI bytes of an RTPFB FMT=15 packet (the RTCP header
//! is parsed by the packet module) and writes `(seq, arrival)` pairs into a
//! caller-provided slice. Encoding writes a whole RTCP packet, header included,
//! into a caller-provided buffer. Neither allocates.

/// RTCP packet type of transport-layer feedback (RFC 4585 §6.1).
pub const RTPFB_PT: u8 = 205;
/// Feedback message type of transport-cc.
pub const TWCC_FMT: u8 = 15;
/// One receive-delta tick in microseconds.
pub const DELTA_TICK_US: i64 = 250;
/// One reference-time tick in microseconds.
pub const REFERENCE_TICK_US: i64 = 64_000;

/// Length of the fixed FCI header (base seq, count, reference time, fb count).
const FCI_HEADER_LEN: usize = 8;
/// Common RTCP header plus sender and media SSRC.
const RTCP_FB_HEADER_LEN: usize = 12;
/// Largest run a run-length chunk can express (13 bits).
const MAX_RUN: usize = 0x1fff;
/// Reference time ticks per delta ticks (64 ms / 250 µs).
const DELTA_TICKS_PER_REFERENCE: i64 = REFERENCE_TICK_US / DELTA_TICK_US;

/// Why a transport-cc FCI could not be decoded or encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TwccError {
    /// The FCI ended before the chunks or deltas it announces.
    #[error("transport-cc feedback truncated")]
    Truncated,
    /// A chunk used the reserved status symbol 3.
    #[error("transport-cc feedback uses a reserved status symbol")]
    ReservedSymbol,
    /// The output buffer cannot hold even the headers and one chunk.
    #[error("output buffer too small for transport-cc feedback")]
    BufferTooSmall,
    /// Nothing to encode.
    #[error("no packets to encode")]
    Empty,
}

/// One packet as reported by a feedback message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TwccPacket {
    /// Transport-wide sequence number.
    pub seq: u16,
    /// Arrival time in µs on the receiver's clock (reference time × 64 ms plus
    /// the cumulative deltas), or `None` when reported as not received.
    pub arrival_us: Option<i64>,
}

/// The fixed fields of a decoded feedback message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TwccSummary {
    /// Sequence number of the first reported packet.
    pub base_seq: u16,
    /// Number of packets the message reports on.
    pub status_count: u16,
    /// Reference time in 64 ms ticks, sign-extended from 24 bits.
    pub reference_time: i32,
    /// Feedback packet counter of the sender of the feedback.
    pub fb_count: u8,
    /// How many entries were written to the output slice (at most its length).
    pub written: usize,
}

/// Status symbols (§3.1.1).
const SYM_NOT_RECEIVED: u8 = 0;
const SYM_SMALL: u8 = 1;
const SYM_LARGE: u8 = 2;

fn be16(b: &[u8], at: usize) -> Result<u16, TwccError> {
    match b.get(at..at + 2) {
        Some(s) => Ok(u16::from_be_bytes([s[0], s[1]])),
        None => Err(TwccError::Truncated),
    }
}

/// Stores one decoded status symbol. The arrival slot temporarily holds the
/// delta width (1 or 2 bytes) until the deltas are read in the second pass.
fn record(
    out: &mut [TwccPacket],
    base_seq: u16,
    total: usize,
    sym: u8,
    seen: &mut usize,
    delta_bytes: &mut usize,
) -> Result<(), TwccError> {
    if *seen >= total {
        return Ok(()); // trailing symbols of the last vector chunk
    }
    let marker = match sym {
        SYM_NOT_RECEIVED => None,
        SYM_SMALL => Some(1),
        SYM_LARGE => Some(2),
        _ => return Err(TwccError::ReservedSymbol),
    };
    // Only deltas of packets we keep need to be read, but all must be
    // present for the message to be well-formed.
    *delta_bytes += marker.unwrap_or(0) as usize;
    if let Some(slot) = out.get_mut(*seen) {
        *slot = TwccPacket {
            seq: base_seq.wrapping_add(*seen as u16),
            arrival_us: marker,
        };
    }
    *seen += 1;
    Ok(())
}

/// The packet status count an FCI announces (0 when too short to say): how many entries
/// [`decode_fci`] will want, before decoding.
pub(crate) fn status_count(fci: &[u8]) -> usize {
    be16(fci, 2).map_or(0, usize::from)
}

/// Decodes a transport-cc FCI into `out`.
///
/// Entries beyond `out.len()` are skipped (the deltas of the first packets
/// precede the rest, so a prefix decodes exactly). Padding after the last
/// delta is ignored.
pub fn decode_fci(fci: &[u8], out: &mut [TwccPacket]) -> Result<TwccSummary, TwccError> {
    if fci.len() < FCI_HEADER_LEN {
        return Err(TwccError::Truncated);
    }
    let base_seq = be16(fci, 0)?;
    let status_count = be16(fci, 2)?;
    // 24-bit signed: shift into the top of an i32 and back to sign-extend.
    let raw_ref = (u32::from(fci[4]) << 16) | (u32::from(fci[5]) << 8) | u32::from(fci[6]);
    let reference_time = ((raw_ref << 8) as i32) >> 8;
    let fb_count = fci[7];

    let total = usize::from(status_count);
    let written = total.min(out.len());

    // Pass 1: walk the chunks, storing each symbol in `arrival_us` as a marker
    // (the real arrival is filled in pass 2) and counting delta bytes.
    let mut pos = FCI_HEADER_LEN;
    let mut seen = 0usize;
    let mut delta_bytes = 0usize;
    while seen < total {
        let chunk = be16(fci, pos)?;
        pos += 2;
        if chunk & 0x8000 == 0 {
            // Run-length chunk: T=0 | S (2 bits) | run length (13 bits).
            let sym = ((chunk >> 13) & 0x3) as u8;
            let run = usize::from(chunk & 0x1fff);
            if sym == 3 {
                return Err(TwccError::ReservedSymbol);
            }
            let take = run.min(total - seen);
            if sym == SYM_NOT_RECEIVED {
                // Fast path: a long lost run must not cost per-symbol work
                // beyond the output we actually write.
                for i in seen..(seen + take).min(out.len()) {
                    out[i] = TwccPacket {
                        seq: base_seq.wrapping_add(i as u16),
                        arrival_us: None,
                    };
                }
                seen += take;
            } else {
                for _ in 0..take {
                    record(out, base_seq, total, sym, &mut seen, &mut delta_bytes)?;
                }
            }
        } else if chunk & 0x4000 == 0 {
            // Status vector, 14 one-bit symbols (0 = lost, 1 = small delta).
            for i in (0..14).rev() {
                record(
                    out,
                    base_seq,
                    total,
                    ((chunk >> i) & 1) as u8,
                    &mut seen,
                    &mut delta_bytes,
                )?;
            }
        } else {
            // Status vector, 7 two-bit symbols.
            for i in (0..7).rev() {
                record(
                    out,
                    base_seq,
                    total,
                    ((chunk >> (2 * i)) & 3) as u8,
                    &mut seen,
                    &mut delta_bytes,
                )?;
            }
        }
    }
    if fci.len() < pos + delta_bytes {
        return Err(TwccError::Truncated);
    }

    // Pass 2: the receive deltas, in the order of the received packets.
    let mut ticks = i64::from(reference_time) * DELTA_TICKS_PER_REFERENCE;
    for p in out.iter_mut().take(written) {
        let Some(kind) = p.arrival_us else { continue };
        let delta = if kind == 1 {
            let d = i64::from(fci[pos]);
            pos += 1;
            d
        } else {
            let d = i64::from(i16::from_be_bytes([fci[pos], fci[pos + 1]]));
            pos += 2;
            d
        };
        ticks += delta;
        p.arrival_us = Some(ticks * DELTA_TICK_US);
    }
    Ok(TwccSummary {
        base_seq,
        status_count,
        reference_time,
        fb_count,
        written,
    })
}

/// What [`encode_feedback`] wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EncodedFeedback {
    /// Bytes of RTCP written to the output buffer.
    pub len: usize,
    /// How many of the input statuses the packet covers (a prefix); the rest
    /// did not fit (buffer size or a delta beyond ±8.19 s) and go in another packet.
    pub consumed: usize,
}

/// Packs status symbols into chunks as they stream in. Every chunk but the
/// last holds at least 7 symbols, which bounds the chunk bytes by
/// `2 * ceil(n / 7)` (used when sizing the packet).
#[derive(Debug, Default)]
struct ChunkWriter {
    syms: [u8; 14],
    len: usize,
    all_same: bool,
    has_large: bool,
}

impl ChunkWriter {
    fn can_add(&self, sym: u8) -> bool {
        if self.len < 7 {
            return true; // any vector or run still fits
        }
        if self.all_same && sym == self.syms[0] && self.len < MAX_RUN {
            return true; // keep extending a run
        }
        self.len < 14 && !self.has_large && sym != SYM_LARGE
    }

    /// Adds a symbol; returns a finished chunk when one had to be closed.
    fn push(&mut self, sym: u8) -> Option<u16> {
        let done = if self.can_add(sym) {
            None
        } else if !self.all_same && self.len < 14 {
            // A large delta arrived in a not-yet-full 1-bit vector. Only the
            // last chunk may be partial (the decoder reads every symbol of a
            // vector), so close a full 2-bit vector of the first 7 symbols
            // and carry the rest over.
            let c = Self::two_bit(&self.syms[..7]);
            let rest = self.len - 7;
            self.syms.copy_within(7..self.len, 0);
            self.len = rest;
            self.all_same = self.syms[..rest].iter().all(|s| *s == self.syms[0]);
            Some(c)
        } else {
            self.flush()
        };
        if self.len == 0 {
            self.all_same = true;
            self.has_large = false;
        } else if sym != self.syms[0] {
            self.all_same = false;
        }
        if self.len < 14 {
            self.syms[self.len] = sym;
        }
        self.has_large |= sym == SYM_LARGE;
        self.len += 1;
        done
    }

    /// Closes the pending chunk, if any.
    fn flush(&mut self) -> Option<u16> {
        if self.len == 0 {
            return None;
        }
        let n = self.len;
        self.len = 0;
        let chunk = if self.all_same {
            (u16::from(self.syms[0]) << 13) | n as u16
        } else if !self.has_large {
            let mut c = 0x8000u16;
            for (k, s) in self.syms.iter().take(n).enumerate() {
                c |= u16::from(*s) << (13 - k);
            }
            c
        } else {
            Self::two_bit(&self.syms[..n])
        };
        Some(chunk)
    }

    /// A 2-bit status vector chunk of up to 7 symbols.
    fn two_bit(syms: &[u8]) -> u16 {
        let mut c = 0xc000u16;
        for (k, s) in syms.iter().take(7).enumerate() {
            c |= u16::from(*s) << (12 - 2 * k);
        }
        c
    }
}

/// Receiver-side status of one sequence number, as [`encode_feedback`] takes it.
fn symbol_for(delta_ticks: Option<i64>) -> u8 {
    match delta_ticks {
        None => SYM_NOT_RECEIVED,
        Some(d) if (0..=255).contains(&d) => SYM_SMALL,
        Some(_) => SYM_LARGE,
    }
}

/// Writes a complete RTCP transport-cc packet (RTPFB, FMT=15) into `out`.
///
/// `arrivals[i]` is the arrival time in µs (receiver clock, ≥ 0) of sequence
/// number `base_seq + i`, or `None` if it was not received. Leading entries may
/// be `None` (a feedback starts where the last one ended, losses included); the
/// reference time is the first arrival's. The packet covers a prefix of
/// `arrivals` and reports how much in
/// [`EncodedFeedback::consumed`].
pub fn encode_feedback(
    sender_ssrc: u32,
    media_ssrc: u32,
    base_seq: u16,
    fb_count: u8,
    arrivals: &[Option<i64>],
    out: &mut [u8],
) -> Result<EncodedFeedback, TwccError> {
    if arrivals.is_empty() {
        return Err(TwccError::Empty);
    }
    // Budget leaves room for headers, one chunk, and padding to 32 bits.
    if out.len() < RTCP_FB_HEADER_LEN + FCI_HEADER_LEN + 2 + 4 {
        return Err(TwccError::BufferTooSmall);
    }
    let max_count = arrivals.len().min(usize::from(u16::MAX));
    let first_arrival = arrivals.iter().take(max_count).flatten().next().copied();
    let reference_time = first_arrival.map_or(0, |a| a.max(0) / REFERENCE_TICK_US);
    // 24-bit field: wrap like the wire does.
    let reference_wire = (reference_time as u32) & 0x00ff_ffff;

    // Decide how many statuses fit: each costs its delta bytes plus up to a
    // 2-bit-vector share of a chunk (2 bytes per 7 symbols, rounded up).
    let cap = out.len() & !3;
    let mut prev_ticks = reference_time * DELTA_TICKS_PER_REFERENCE;
    let mut delta_bytes = 0usize;
    let mut count = 0usize;
    for a in arrivals.iter().take(max_count) {
        let (sym_bytes, next_ticks) = match a {
            None => (0, prev_ticks),
            Some(us) => {
                let t = us.div_euclid(DELTA_TICK_US);
                let d = t - prev_ticks;
                if d < i64::from(i16::MIN) || d > i64::from(i16::MAX) {
                    break; // needs a new reference time: next packet
                }
                (
                    if symbol_for(Some(d)) == SYM_SMALL {
                        1
                    } else {
                        2
                    },
                    t,
                )
            }
        };
        let chunks = (count + 1).div_ceil(7) * 2;
        let need = RTCP_FB_HEADER_LEN + FCI_HEADER_LEN + chunks + delta_bytes + sym_bytes;
        if need.next_multiple_of(4) > cap {
            break;
        }
        delta_bytes += sym_bytes;
        prev_ticks = next_ticks;
        count += 1;
    }
    if count == 0 {
        // Only possible if the very first delta is out of range, which the
        // reference time choice rules out; or a tiny buffer.
        return Err(TwccError::BufferTooSmall);
    }

    let ref_ticks = reference_time * DELTA_TICKS_PER_REFERENCE;
    // Headers (length is patched at the end).
    out[0] = 0x80 | TWCC_FMT;
    out[1] = RTPFB_PT;
    out[4..8].copy_from_slice(&sender_ssrc.to_be_bytes());
    out[8..12].copy_from_slice(&media_ssrc.to_be_bytes());
    let f = RTCP_FB_HEADER_LEN;
    out[f..f + 2].copy_from_slice(&base_seq.to_be_bytes());
    out[f + 2..f + 4].copy_from_slice(&(count as u16).to_be_bytes());
    out[f + 4..f + 7].copy_from_slice(&reference_wire.to_be_bytes()[1..]);
    out[f + 7] = fb_count;

    let mut pos = f + FCI_HEADER_LEN;
    let mut chunks = ChunkWriter::default();
    let mut prev = ref_ticks;
    for a in arrivals.iter().take(count) {
        let sym = symbol_for(a.map(|us| us.div_euclid(DELTA_TICK_US) - prev));
        if let Some(us) = a {
            prev = us.div_euclid(DELTA_TICK_US);
        }
        if let Some(chunk) = chunks.push(sym) {
            out[pos..pos + 2].copy_from_slice(&chunk.to_be_bytes());
            pos += 2;
        }
    }
    if let Some(chunk) = chunks.flush() {
        out[pos..pos + 2].copy_from_slice(&chunk.to_be_bytes());
        pos += 2;
    }

    // Receive deltas.
    prev = ref_ticks;
    for us in arrivals.iter().take(count).flatten() {
        let t = us.div_euclid(DELTA_TICK_US);
        let d = t - prev;
        prev = t;
        if (0..=255).contains(&d) {
            out[pos] = d as u8;
            pos += 1;
        } else {
            out[pos..pos + 2].copy_from_slice(&(d as i16).to_be_bytes());
            pos += 2;
        }
    }

    // Pad to 32 bits; the last padding byte holds the count (RFC 3550 §6.4.1).
    let padded = pos.next_multiple_of(4);
    let pad = padded - pos;
    if pad > 0 {
        out[pos..padded].fill(0);
        out[padded - 1] = pad as u8;
        out[0] |= 0x20;
    }
    let words = (padded / 4 - 1) as u16;
    out[2..4].copy_from_slice(&words.to_be_bytes());
    Ok(EncodedFeedback {
        len: padded,
        consumed: count,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fci(pkt: &[u8]) -> &[u8] {
        &pkt[RTCP_FB_HEADER_LEN..]
    }

    fn round_trip(base: u16, arrivals: &[Option<i64>]) {
        let mut buf = [0u8; 1500];
        let enc = encode_feedback(1, 2, base, 7, arrivals, &mut buf).unwrap();
        assert_eq!(enc.consumed, arrivals.len());
        assert_eq!(enc.len % 4, 0);
        let pkt = &buf[..enc.len];
        assert_eq!(pkt[0] & 0xc0, 0x80);
        assert_eq!(pkt[0] & 0x1f, TWCC_FMT);
        assert_eq!(pkt[1], RTPFB_PT);
        assert_eq!(
            usize::from(u16::from_be_bytes([pkt[2], pkt[3]])) * 4 + 4,
            enc.len
        );
        let mut out = [TwccPacket::default(); 512];
        let s = decode_fci(fci(pkt), &mut out).unwrap();
        assert_eq!(s.base_seq, base);
        assert_eq!(s.fb_count, 7);
        assert_eq!(s.written, arrivals.len());
        for (i, (a, p)) in arrivals.iter().zip(out.iter()).enumerate() {
            assert_eq!(p.seq, base.wrapping_add(i as u16));
            // Arrivals are quantized to 250 µs.
            assert_eq!(
                p.arrival_us,
                a.map(|us| us - us.rem_euclid(250)),
                "index {i}"
            );
        }
    }

    #[test]
    fn run_length_all_received_small() {
        let a: Vec<_> = (0..100).map(|i| Some(1_000_000 + i * 1000)).collect();
        round_trip(10, &a);
    }

    #[test]
    fn run_length_lost_then_received() {
        let mut a = vec![Some(5_000)];
        a.extend(std::iter::repeat_n(None, 40));
        a.push(Some(9_000));
        round_trip(65_500, &a); // wraps
    }

    #[test]
    fn one_bit_vector() {
        let a: Vec<_> = (0..30)
            .map(|i| if i % 3 == 1 { None } else { Some(i * 500) })
            .collect();
        round_trip(0, &a);
    }

    #[test]
    fn two_bit_vector_large_and_negative_deltas() {
        let a = vec![
            Some(100_000),
            Some(100_250),
            Some(180_000), // large positive
            None,
            Some(150_000), // negative (reordered)
            Some(150_500),
            Some(2_000_000), // large positive, near the i16 limit
            None,
            Some(2_000_000),
        ];
        round_trip(65_535, &a);
    }

    #[test]
    fn delta_out_of_range_splits() {
        let a = vec![Some(0), Some(1000), Some(20_000_000), Some(20_001_000)];
        let mut buf = [0u8; 200];
        let enc = encode_feedback(1, 2, 0, 0, &a, &mut buf).unwrap();
        assert_eq!(enc.consumed, 2);
        let enc2 = encode_feedback(1, 2, 2, 1, &a[2..], &mut buf).unwrap();
        assert_eq!(enc2.consumed, 2);
        let mut out = [TwccPacket::default(); 4];
        decode_fci(fci(&buf[..enc2.len]), &mut out).unwrap();
        assert_eq!(out[0].arrival_us, Some(20_000_000));
        assert_eq!(out[1].arrival_us, Some(20_001_000));
    }

    #[test]
    fn small_buffer_consumes_prefix() {
        let a: Vec<_> = (0..200).map(|i| Some(i * 40_000)).collect(); // all large
        let mut buf = [0u8; 64];
        let enc = encode_feedback(1, 2, 0, 0, &a, &mut buf).unwrap();
        assert!(enc.consumed > 0 && enc.consumed < 200);
        assert!(enc.len <= 64);
        let mut out = [TwccPacket::default(); 200];
        let s = decode_fci(fci(&buf[..enc.len]), &mut out).unwrap();
        assert_eq!(s.written, enc.consumed);
        assert_eq!(out[enc.consumed - 1].arrival_us, a[enc.consumed - 1]);
    }

    /// A packet laid out by hand following the draft's example structure.
    #[test]
    fn decodes_hand_built_packet() {
        let fci: [u8; 24] = [
            0x01, 0x00, // base seq 256
            0x00, 0x0d, // status count 13
            0xff, 0xff, 0xfe, // reference time -2 (× 64 ms)
            0x05, // fb pkt count
            0x20, 0x03, // run-length: small delta × 3
            0xe1, 0x00, // 2-bit vector: large, lost, small, lost × 4
            0xa8, 0x00, // 1-bit vector: 1, 0, 1 (11 trailing symbols unused)
            0x04, 0x08, 0x00, // small deltas: 4, 8, 0 ticks
            0xff, 0xfc, // large delta: -4 ticks
            0x02, // small: 2 ticks
            0x01, 0x01, // small: 1 tick, 1 tick
            0x00, 0x00, // padding
        ];
        let mut out = [TwccPacket::default(); 16];
        let s = decode_fci(&fci, &mut out).unwrap();
        assert_eq!(s.base_seq, 256);
        assert_eq!(s.status_count, 13);
        assert_eq!(s.reference_time, -2);
        assert_eq!(s.fb_count, 5);
        let b = -2 * 64_000;
        let want = [
            Some(b + 1000),
            Some(b + 3000),
            Some(b + 3000),
            Some(b + 2000),
            None,
            Some(b + 2500),
            None,
            None,
            None,
            None,
            Some(b + 2750),
            None,
            Some(b + 3000),
        ];
        for (i, w) in want.iter().enumerate() {
            assert_eq!(out[i].seq, 256 + i as u16);
            assert_eq!(out[i].arrival_us, *w, "index {i}");
        }
    }

    #[test]
    fn truncation_and_reserved_symbol() {
        let mut out = [TwccPacket::default(); 8];
        assert_eq!(decode_fci(&[0; 7], &mut out), Err(TwccError::Truncated));
        // Count 2 but no chunk.
        assert_eq!(
            decode_fci(&[0, 0, 0, 2, 0, 0, 0, 0], &mut out),
            Err(TwccError::Truncated)
        );
        // Run-length of symbol 3.
        assert_eq!(
            decode_fci(&[0, 0, 0, 2, 0, 0, 0, 0, 0x60, 0x02], &mut out),
            Err(TwccError::ReservedSymbol)
        );
        // Two small deltas announced, one present.
        assert_eq!(
            decode_fci(&[0, 0, 0, 2, 0, 0, 0, 0, 0x20, 0x02, 1], &mut out),
            Err(TwccError::Truncated)
        );
    }

    #[test]
    fn huge_lost_run_is_cheap_and_bounded() {
        let mut out = [TwccPacket::default(); 4];
        let fci = [
            0, 0, 0xff, 0xff, 0, 0, 0, 0, 0x1f, 0xff, 0x1f, 0xff, 0x1f, 0xff, 0x1f, 0xff,
        ];
        // 4 × 8191 < 65535: truncated, but must not panic.
        assert_eq!(decode_fci(&fci, &mut out), Err(TwccError::Truncated));
    }

    proptest::proptest! {
        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..300), n in 0usize..64) {
            let mut out = vec![TwccPacket::default(); n];
            let _ = decode_fci(&bytes, &mut out);
        }

        #[test]
        fn random_round_trip(
            base in proptest::num::u16::ANY,
            steps in proptest::collection::vec((proptest::bool::ANY, -30_000i64..300_000), 1..300),
        ) {
            let mut t = 10_000_000i64;
            let mut a = Vec::new();
            for (rx, dt) in steps {
                t = (t + dt).max(0);
                a.push(if rx || a.is_empty() { Some(t) } else { None });
            }
            let mut buf = [0u8; 1500];
            let enc = encode_feedback(1, 2, base, 0, &a, &mut buf).unwrap();
            let mut out = vec![TwccPacket::default(); a.len()];
            let s = decode_fci(fci(&buf[..enc.len]), &mut out).unwrap();
            proptest::prop_assert_eq!(s.written, enc.consumed);
            for i in 0..enc.consumed {
                proptest::prop_assert_eq!(out[i].arrival_us, a[i].map(|us| us - us.rem_euclid(250)));
            }
        }
    }
}
