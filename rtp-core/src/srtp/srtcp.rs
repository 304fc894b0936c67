//! The SRTCP half of [`SrtpContext`] (RFC 3711 §3.4, RFC 7714 §9).
//!
//! AES-CM layout: header(8) || encrypted || E|index(4) || tag(10), the tag
//! covering everything before it. AES-GCM layout: header(8) || encrypted ||
//! tag(16) || E|index(4), with AAD = header || E|index.

use super::cipher::Transform;
use super::context::SrtpContext;
use super::ssrc_table::Window;
use super::SrtpError;
use crate::packet::RTP_VERSION;

/// The fixed RTCP header part that stays in the clear: V/P/RC, PT, length, SSRC.
const RTCP_HEADER_LEN: usize = 8;
/// The E-flag || SRTCP index word.
const TRAILER_LEN: usize = 4;
const E_FLAG: u32 = 0x8000_0000;
const INDEX_MASK: u32 = 0x7fff_ffff;

impl SrtpContext {
    /// Set the SRTCP index the next [`protect_rtcp`](Self::protect_rtcp) for
    /// `ssrc` uses (31 bits; e.g. to resume a stream or reproduce vectors).
    pub fn set_srtcp_index(&mut self, ssrc: u32, index: u32) -> Result<(), SrtpError> {
        let slot = self.table.find_or_insert(ssrc, false)?;
        self.table.slot_mut(slot).rtcp_next = index & INDEX_MASK;
        Ok(())
    }

    /// Protect `buf[..len]`, a plain (compound) RTCP packet, in place: encrypt
    /// after the first 8 bytes, append E|index and the tag. Returns the new length.
    pub fn protect_rtcp(&mut self, buf: &mut [u8], len: usize) -> Result<usize, SrtpError> {
        let plain = buf.get(..len).ok_or(SrtpError::BufferTooSmall)?;
        if plain.len() < RTCP_HEADER_LEN {
            return Err(SrtpError::TooShort);
        }
        if plain[0] >> 6 != RTP_VERSION {
            return Err(SrtpError::Malformed);
        }
        let tag_len = self.rtcp.tag_len();
        let out_len = len
            .checked_add(TRAILER_LEN + tag_len)
            .filter(|&n| n <= buf.len())
            .ok_or(SrtpError::BufferTooSmall)?;
        let ssrc = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]);
        let slot = self.table.find_or_insert(ssrc, false)?;
        let state = self.table.slot_mut(slot);
        let index = state.rtcp_next;
        let trailer = (E_FLAG | index).to_be_bytes();
        match &self.rtcp {
            Transform::Cm { .. } => {
                self.rtcp
                    .ctr_xor(ssrc, u64::from(index), &mut buf[RTCP_HEADER_LEN..len])?;
                buf[len..len + TRAILER_LEN].copy_from_slice(&trailer);
                let (data, tag) = buf.split_at_mut(len + TRAILER_LEN);
                self.rtcp.write_tag(data, &[], &mut tag[..tag_len])?;
            }
            Transform::Gcm { .. } => {
                let aad = aad(&buf[..RTCP_HEADER_LEN], trailer);
                let (payload, tail) = buf[RTCP_HEADER_LEN..].split_at_mut(len - RTCP_HEADER_LEN);
                let (tag, rest) = tail.split_at_mut(tag_len);
                self.rtcp.seal(ssrc, u64::from(index), &aad, payload, tag)?;
                rest[..TRAILER_LEN].copy_from_slice(&trailer);
            }
        }
        // The index wraps modulo 2^31 (RFC 3711 §3.4); rekeying is due long before.
        state.rtcp_next = index.wrapping_add(1) & INDEX_MASK;
        Ok(out_len)
    }

    /// Unprotect an SRTCP packet in place: check replay on the SRTCP index,
    /// authenticate, then decrypt (when the E flag is set). Returns the plain length.
    pub fn unprotect_rtcp(&mut self, buf: &mut [u8]) -> Result<usize, SrtpError> {
        let tag_len = self.rtcp.tag_len();
        let len = buf.len();
        if len < RTCP_HEADER_LEN + TRAILER_LEN + tag_len {
            return Err(SrtpError::TooShort);
        }
        if buf[0] >> 6 != RTP_VERSION {
            return Err(SrtpError::Malformed);
        }
        let is_gcm = matches!(self.rtcp, Transform::Gcm { .. });
        let trailer_at = if is_gcm {
            len - TRAILER_LEN
        } else {
            len - tag_len - TRAILER_LEN
        };
        let word = u32::from_be_bytes([
            buf[trailer_at],
            buf[trailer_at + 1],
            buf[trailer_at + 2],
            buf[trailer_at + 3],
        ]);
        let encrypted = word & E_FLAG != 0;
        let index = word & INDEX_MASK;
        let ssrc = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]);
        if let Some(i) = self.table.position(ssrc) {
            self.table.check(i, Window::Rtcp, u64::from(index))?;
        }
        let plain_len = len - tag_len - TRAILER_LEN;
        if is_gcm {
            if !encrypted {
                // Unencrypted GCM SRTCP authenticates the whole packet as AAD,
                // which would need a scratch copy; no WebRTC peer sends it.
                return Err(SrtpError::Unsupported);
            }
            let aad = aad(&buf[..RTCP_HEADER_LEN], word.to_be_bytes());
            self.rtcp.open(
                ssrc,
                u64::from(index),
                &aad,
                &mut buf[RTCP_HEADER_LEN..len - TRAILER_LEN],
            )?;
        } else {
            let (data, tag) = buf.split_at(len - tag_len);
            self.rtcp.verify_tag(data, &[], tag)?;
            if encrypted {
                self.rtcp
                    .ctr_xor(ssrc, u64::from(index), &mut buf[RTCP_HEADER_LEN..plain_len])?;
            }
        }
        let slot = self.table.find_or_insert(ssrc, true)?;
        self.table.update(slot, Window::Rtcp, u64::from(index));
        Ok(plain_len)
    }
}

/// RFC 7714 §9.1 AAD for encrypted SRTCP: the first 8 header bytes, then E|index.
fn aad(header: &[u8], trailer: [u8; 4]) -> [u8; RTCP_HEADER_LEN + TRAILER_LEN] {
    let mut a = [0u8; RTCP_HEADER_LEN + TRAILER_LEN];
    a[..RTCP_HEADER_LEN].copy_from_slice(header);
    a[RTCP_HEADER_LEN..].copy_from_slice(&trailer);
    a
}
