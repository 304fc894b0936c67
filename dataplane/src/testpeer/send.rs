//! [`TestPeer`]'s sending side: RTP built and protected, raw datagrams, RTCP, NACKs.

use std::net::SocketAddr;
use std::time::Instant;

use rtp_core::packet::rtcp;
use rtp_core::packet::{write_rtp_header, RtpHeader};
use rtp_core::session::SessionError;

use super::{PeerError, TestPeer};

impl TestPeer {
    /// Builds one RTP packet and sends it SRTP-protected (plain in plain mode).
    pub fn publish_rtp(
        &mut self,
        seq: u16,
        ts: u32,
        ssrc: u32,
        pt: u8,
        marker: bool,
        payload: &[u8],
    ) -> Result<(), PeerError> {
        let (len, dst) = self.protect_into_tx(seq, ts, ssrc, pt, marker, payload)?;
        self.socket.send_to(&self.tx[..len], dst)?;
        self.stats.datagrams_sent += 1;
        Ok(())
    }

    /// [`TestPeer::publish_rtp`]'s datagram, returned instead of sent (to replay or tamper
    /// with it). It consumes SRTP state like a sent packet.
    pub fn protect_rtp(
        &mut self,
        seq: u16,
        ts: u32,
        ssrc: u32,
        pt: u8,
        marker: bool,
        payload: &[u8],
    ) -> Result<Vec<u8>, PeerError> {
        let (len, _) = self.protect_into_tx(seq, ts, ssrc, pt, marker, payload)?;
        Ok(self.tx[..len].to_vec())
    }

    /// Sends `bytes` as they are to the server from the peer's socket.
    pub fn send_raw(&mut self, bytes: &[u8]) -> Result<(), PeerError> {
        self.socket.send_to(bytes, self.server)?;
        self.stats.datagrams_sent += 1;
        Ok(())
    }

    /// Sends `rtcp` (any bytes, well-formed or not) SRTCP-protected with the session's keys.
    pub fn send_rtcp_raw(&mut self, rtcp: &[u8]) -> Result<(), PeerError> {
        let (len, dst) = self.session.send_rtcp(Instant::now(), rtcp, &mut self.tx)?;
        self.socket.send_to(&self.tx[..len], dst.addr)?;
        self.stats.datagrams_sent += 1;
        Ok(())
    }

    fn protect_into_tx(
        &mut self,
        seq: u16,
        ts: u32,
        ssrc: u32,
        pt: u8,
        marker: bool,
        payload: &[u8],
    ) -> Result<(usize, SocketAddr), PeerError> {
        let n = write_rtp_header(
            &RtpHeader {
                pt,
                marker,
                seq,
                ts,
                ssrc,
                csrcs: &[],
                extensions: &[],
            },
            &mut self.tx,
        )
        .map_err(|e| PeerError::Rtcp(format!("RTP header: {e}")))?;
        let end = n + payload.len();
        // SRTP's tag needs room after the payload.
        if end + 32 > self.tx.len() {
            return Err(SessionError::BufferTooSmall.into());
        }
        self.tx[n..end].copy_from_slice(payload);
        let (len, dst) = self
            .session
            .protect_outgoing(Instant::now(), &mut self.tx, end)?;
        Ok((len, dst.addr))
    }

    /// Sends a Generic NACK (RFC 4585 §6.2.1) for `seqs` of the forwarded stream `media_ssrc`.
    pub fn send_nack(&mut self, media_ssrc: u32, seqs: &[u16]) -> Result<(), PeerError> {
        let mut plain = [0u8; 1200];
        let n = rtcp::write_nack(&mut plain, self.session.local_ssrc(), media_ssrc, seqs)
            .map_err(|e| PeerError::Rtcp(e.to_string()))?;
        let (len, dst) = self
            .session
            .send_rtcp(Instant::now(), &plain[..n], &mut self.tx)?;
        self.socket.send_to(&self.tx[..len], dst.addr)?;
        self.stats.datagrams_sent += 1;
        Ok(())
    }
}
