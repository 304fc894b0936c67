//! The send path of the [`WebRtcGen`] publishers: each frame due written by its [`Stream`],
//! stamped with the peer's transport-wide sequence number when transport-cc is negotiated
//! (RFC 8285 one-byte extension), SRTP-protected by the peer's session and sent in
//! `sendmmsg` batches. The receive path is [`webrtc_rx`](crate::webrtc_rx).

use std::time::Instant;

use sluice_dataplane::pool::BufPool;
use sluice_dataplane::sys::{Backend, Transmit};

use super::WebRtcGen;
use crate::gen::GenReport;
use crate::media::Stream;
use crate::report::BenchError;
use crate::webrtc_rx::{Accounting, BATCH};

impl WebRtcGen {
    /// Protects and sends every frame due at `now_ns`.
    pub(super) fn send_due(
        &mut self,
        streams: &mut [(u32, Stream)],
        now_ns: u64,
        acct: &Accounting,
        r: &mut GenReport,
    ) -> Result<(), BenchError> {
        let now = Instant::now();
        let mut batch: [Option<Transmit>; BATCH] = [None; BATCH];
        for (owner, s) in streams.iter_mut() {
            let peer = &mut self.pubs[*owner as usize];
            let Some(session) = peer.session.as_mut() else {
                continue;
            };
            let mut n = 0;
            // Bounded by the frames due so far, which `pop_due` advances past.
            while let Some(f) = s.pop_due(now_ns) {
                r.max_send_lateness_ns = r.max_send_lateness_ns.max(now_ns - f.due_ns);
                for pos in 0..f.packets {
                    let Some(id) = self.pool.take() else {
                        return Err(BenchError::Other("generator pool exhausted".into()));
                    };
                    let buf = self.pool.get_mut(id);
                    let mut len = s.write_packet(buf, &f, pos, now_ns);
                    if let Some(ext_id) = peer.transport_cc {
                        len = add_transport_seq(buf, len, ext_id, peer.transport_seq);
                        peer.transport_seq = peer.transport_seq.wrapping_add(1);
                    }
                    let (len, dst) = session
                        .protect_outgoing(now, buf, len)
                        .map_err(|e| BenchError::Other(format!("protect: {e}")))?;
                    if (acct.win_start..acct.win_end).contains(&now_ns) {
                        r.sent_in_window += 1;
                    }
                    batch[n] = Some(Transmit {
                        buf: id,
                        offset: 0,
                        len,
                        dst: dst.addr,
                        segment_size: None,
                    });
                    n += 1;
                    if n == BATCH {
                        send_batch(&mut peer.backend, &mut self.pool, &mut batch[..n])?;
                        n = 0;
                    }
                }
            }
            send_batch(&mut peer.backend, &mut self.pool, &mut batch[..n])?;
        }
        Ok(())
    }
}

fn send_batch(
    backend: &mut Backend,
    pool: &mut BufPool,
    batch: &mut [Option<Transmit>],
) -> Result<(), BenchError> {
    if batch.is_empty() {
        return Ok(());
    }
    let tx: Vec<Transmit> = batch.iter().flatten().copied().collect();
    let res = backend.send(pool, &tx);
    for t in batch.iter_mut() {
        if let Some(t) = t.take() {
            pool.give(t.buf);
        }
    }
    res?;
    Ok(())
}

/// Gives the plain RTP packet `buf[..len]` (no CSRCs, no extension: what
/// [`Stream::write_packet`] writes) a one-byte-header extension block (RFC 8285 §4.2) holding
/// the transport-wide sequence number `seq` under `id`; returns the new length (8 bytes more:
/// the 0xBEDE header, one element of 2 bytes, one byte of padding).
fn add_transport_seq(buf: &mut [u8], len: usize, id: u8, seq: u16) -> usize {
    const HDR: usize = 12;
    const EXT: usize = 8;
    buf.copy_within(HDR..len, HDR + EXT);
    buf[0] |= 0x10;
    let s = seq.to_be_bytes();
    buf[HDR..HDR + EXT].copy_from_slice(&[0xBE, 0xDE, 0, 1, (id << 4) | 1, s[0], s[1], 0]);
    len + EXT
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::Profile;
    use rtp_core::packet::transport_cc_seq;
    use rtp_core::RtpView;

    #[test]
    fn transport_seq_goes_into_a_one_byte_extension_before_the_payload() {
        let mut s = Stream::new(Profile::VIDEO, 1, 0x1234, 0);
        let f = s.pop_due(0).expect("first frame due");
        let mut buf = [0u8; 1500];
        let n = s.write_packet(&mut buf, &f, 0, 7);
        let plain = buf[12..n].to_vec();
        let m = add_transport_seq(&mut buf, n, 3, 0xABCD);
        assert_eq!(m, n + 8);
        let v = RtpView::parse(&buf[..m]).expect("parses");
        assert_eq!(v.ssrc(), 0x1234);
        assert_eq!(v.extension(3).and_then(transport_cc_seq), Some(0xABCD));
        assert_eq!(v.payload(), &plain[..]);
    }
}
