//! [`SrtpContext`]: one direction of one master key, SRTP half
//! (RFC 3711 §3.1 packet format, §3.3 processing, §3.3.1 ROC estimation;
//! RFC 7714 §8 for AES-GCM). The SRTCP half lives in `srtcp.rs`.
//!
//! Per-SSRC state on an inbound context is created only after a packet
//! authenticates, so forged packets can neither fill the table nor evict a
//! live stream. When the table is full, inbound contexts evict the least
//! recently used SSRC; outbound contexts refuse with
//! [`SrtpError::TooManySsrcs`], because forgetting a sender's ROC could reuse
//! a keystream.

use crate::packet::RTP_VERSION;

use super::cipher::Transform;
use super::kdf::{derive_session_keys, SessionKeys};
use super::replay::{MAX_WINDOW, MIN_WINDOW};
use super::ssrc_table::{SsrcTable, Window};
use super::{ProtectionProfile, SrtpError};

/// Sizes fixed at construction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SrtpConfig {
    /// Replay window in packets, for SRTP and SRTCP each (64..=4096).
    pub replay_window: usize,
    /// Number of SSRCs tracked (at least 1).
    pub max_ssrcs: usize,
}

impl Default for SrtpConfig {
    fn default() -> Self {
        Self {
            replay_window: 128,
            max_ssrcs: 16,
        }
    }
}

/// One direction (inbound or outbound) of one SRTP master key, for SRTP and SRTCP.
#[derive(Debug)]
pub struct SrtpContext {
    profile: ProtectionProfile,
    pub(super) rtp: Transform,
    pub(super) rtcp: Transform,
    pub(super) table: SsrcTable,
}

impl SrtpContext {
    /// A context for `profile` keyed by a master key and salt (e.g. one half
    /// of the DTLS-SRTP exporter output).
    pub fn new(
        profile: ProtectionProfile,
        master_key: &[u8],
        master_salt: &[u8],
        config: SrtpConfig,
    ) -> Result<Self, SrtpError> {
        let keys = derive_session_keys(profile, master_key, master_salt)?;
        Self::from_session_keys(profile, &keys, config)
    }

    /// A context from already-derived session keys (test vectors, key import).
    pub fn from_session_keys(
        profile: ProtectionProfile,
        keys: &SessionKeys,
        config: SrtpConfig,
    ) -> Result<Self, SrtpError> {
        if !(MIN_WINDOW..=MAX_WINDOW).contains(&config.replay_window) || config.max_ssrcs == 0 {
            return Err(SrtpError::BadConfig);
        }
        let (rtp, rtcp) = if profile.is_aead() {
            (Transform::gcm(&keys.rtp)?, Transform::gcm(&keys.rtcp)?)
        } else {
            (
                Transform::cm(&keys.rtp, profile.rtp_tag_len())?,
                Transform::cm(&keys.rtcp, profile.rtcp_tag_len())?,
            )
        };
        let expect = profile.master_key_len();
        if keys.rtp.enc_key.len() != expect || keys.rtcp.enc_key.len() != expect {
            return Err(SrtpError::BadKeyLength);
        }
        Ok(Self {
            profile,
            rtp,
            rtcp,
            table: SsrcTable::new(config.max_ssrcs, config.replay_window)?,
        })
    }

    /// The profile this context was keyed for.
    pub fn profile(&self) -> ProtectionProfile {
        self.profile
    }

    /// The current rollover counter of `ssrc`, if the SSRC is known.
    pub fn roc(&self, ssrc: u32) -> Option<u32> {
        let h = self.table.peek(ssrc)?.rtp_highest?;
        Some((h >> 16) as u32)
    }

    /// Protect `buf[..len]`, a plain RTP packet, in place: encrypt the payload
    /// and append the tag. Returns the protected length.
    pub fn protect_rtp(&mut self, buf: &mut [u8], len: usize) -> Result<usize, SrtpError> {
        let plain = buf.get(..len).ok_or(SrtpError::BufferTooSmall)?;
        // The header walk only (version, CSRCs, extension block): padding needs no check here,
        // and this is the per-subscriber hot path (`sluice-bench micro`, srtp_protect_*).
        let hl = protected_header_len(plain)?;
        let seq = u16::from_be_bytes([plain[2], plain[3]]);
        let ssrc = u32::from_be_bytes([plain[8], plain[9], plain[10], plain[11]]);
        let tag_len = self.rtp.tag_len();
        let out_len = len
            .checked_add(tag_len)
            .filter(|&n| n <= buf.len())
            .ok_or(SrtpError::BufferTooSmall)?;
        let slot = self.table.find_or_insert(ssrc, false)?;
        let state = self.table.slot_mut(slot);
        let index = state
            .rtp_highest
            .map_or(u64::from(seq), |h| estimate_index(h, seq));
        let roc = ((index >> 16) as u32).to_be_bytes();
        match &self.rtp {
            Transform::Cm { .. } => {
                self.rtp.ctr_xor(ssrc, index, &mut buf[hl..len])?;
                // Authenticated portion: header || encrypted payload, then the ROC.
                let (data, tail) = buf.split_at_mut(len);
                self.rtp.write_tag(data, &roc, &mut tail[..tag_len])?;
            }
            Transform::Gcm { .. } => {
                // AAD is the header; the tag follows the ciphertext.
                let (head, rest) = buf.split_at_mut(hl);
                let (payload, tail) = rest.split_at_mut(len - hl);
                self.rtp
                    .seal(ssrc, index, head, payload, &mut tail[..tag_len])?;
            }
        }
        if state.rtp_highest.is_none_or(|h| index > h) {
            state.rtp_highest = Some(index);
        }
        Ok(out_len)
    }

    /// Unprotect an SRTP packet in place: estimate the index, check replay,
    /// authenticate, then decrypt. Returns the plain RTP length.
    pub fn unprotect_rtp(&mut self, buf: &mut [u8]) -> Result<usize, SrtpError> {
        let hl = protected_header_len(buf)?;
        let tag_len = self.rtp.tag_len();
        let len = buf.len();
        if len < hl + tag_len {
            return Err(SrtpError::TooShort);
        }
        let seq = u16::from_be_bytes([buf[2], buf[3]]);
        let ssrc = u32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]);
        // Known SSRC: estimate against its highest index and reject replays
        // before spending any crypto. Unknown: the first packet sets ROC = 0.
        let known = self
            .table
            .position(ssrc)
            .and_then(|i| Some((i, self.table.state(i).rtp_highest?)));
        let index = match known {
            Some((i, h)) => {
                let index = estimate_index(h, seq);
                self.table.check(i, Window::Rtp, index)?;
                index
            }
            None => u64::from(seq),
        };
        let roc = ((index >> 16) as u32).to_be_bytes();
        let plain_len = len - tag_len;
        match &self.rtp {
            Transform::Cm { .. } => {
                let (data, tag) = buf.split_at(plain_len);
                self.rtp.verify_tag(data, &roc, tag)?;
                self.rtp.ctr_xor(ssrc, index, &mut buf[hl..plain_len])?;
            }
            Transform::Gcm { .. } => {
                let (head, rest) = buf.split_at_mut(hl);
                self.rtp.open(ssrc, index, head, rest)?;
            }
        }
        // Authenticated: only now may the packet create state or move the window.
        let slot = self.table.find_or_insert(ssrc, true)?;
        let state = self.table.slot_mut(slot);
        if state.rtp_highest.is_none_or(|h| index > h) {
            state.rtp_highest = Some(index);
        }
        self.table.update(slot, Window::Rtp, index);
        Ok(plain_len)
    }
}

/// RFC 3711 Appendix A: the packet index of `seq` given the highest index
/// seen so far, choosing among ROC-1, ROC and ROC+1 the closest to it.
pub(crate) fn estimate_index(highest: u64, seq: u16) -> u64 {
    const HALF: u16 = 0x8000;
    let roc = highest >> 16;
    let s_l = highest as u16;
    let v = if s_l < HALF {
        // A seq far above s_l is a late packet from before the last wrap; with
        // ROC = 0 there is no earlier epoch, so it counts as ROC 0.
        if seq > s_l && seq - s_l > HALF && roc > 0 {
            roc - 1
        } else {
            roc
        }
    } else if s_l - HALF > seq {
        // ROC is 32 bits; past 2^32 wraps the key must be retired anyway.
        (roc + 1) & 0xffff_ffff
    } else {
        roc
    };
    (v << 16) | u64::from(seq)
}

/// Header length of a protected RTP packet: like `RtpView::parse` but without
/// the padding check, because the padding count byte is still encrypted.
fn protected_header_len(buf: &[u8]) -> Result<usize, SrtpError> {
    let first = *buf.first().ok_or(SrtpError::TooShort)?;
    if buf.len() < 12 {
        return Err(SrtpError::TooShort);
    }
    if first >> 6 != RTP_VERSION {
        return Err(SrtpError::Malformed);
    }
    let mut hl = 12 + 4 * usize::from(first & 0x0f);
    if first & 0x10 != 0 {
        let ext = buf.get(hl..hl + 4).ok_or(SrtpError::Malformed)?;
        hl += 4 + 4 * usize::from(u16::from_be_bytes([ext[2], ext[3]]));
    }
    if hl > buf.len() {
        return Err(SrtpError::Malformed);
    }
    Ok(hl)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn idx(roc: u64, seq: u16) -> u64 {
        (roc << 16) | u64::from(seq)
    }

    #[test]
    fn roc_estimation_around_the_wrap() {
        // Forward across the wrap: ROC + 1.
        assert_eq!(estimate_index(idx(0, 65535), 0), idx(1, 0));
        assert_eq!(estimate_index(idx(0, 65000), 10), idx(1, 10));
        // Late packet from before the wrap: ROC - 1.
        assert_eq!(estimate_index(idx(1, 3), 65530), idx(0, 65530));
        // Plain in-order and reordered packets keep the ROC.
        assert_eq!(estimate_index(idx(1, 3), 4), idx(1, 4));
        assert_eq!(estimate_index(idx(1, 40000), 39990), idx(1, 39990));
        assert_eq!(estimate_index(idx(1, 40000), 60000), idx(1, 60000));
        // ROC 0 has no earlier epoch.
        assert_eq!(estimate_index(idx(0, 5), 60000), idx(0, 60000));
        // Boundary: exactly half a cycle away.
        assert_eq!(estimate_index(idx(2, 0x8000), 0), idx(2, 0));
        assert_eq!(estimate_index(idx(2, 0x8001), 0), idx(3, 0));
        assert_eq!(estimate_index(idx(2, 0), 0x8000), idx(2, 0x8000));
        assert_eq!(estimate_index(idx(2, 0), 0x8001), idx(1, 0x8001));
    }

    #[test]
    fn header_len_checks() {
        assert_eq!(protected_header_len(&[]), Err(SrtpError::TooShort));
        assert_eq!(protected_header_len(&[0x80; 11]), Err(SrtpError::TooShort));
        assert_eq!(protected_header_len(&[0x40; 12]), Err(SrtpError::Malformed));
        let mut p = [0u8; 20];
        p[0] = 0x90; // extension, no room for its header
        assert_eq!(protected_header_len(&p[..12]), Err(SrtpError::Malformed));
        p[14] = 0;
        p[15] = 1; // one word of extension data
        assert_eq!(protected_header_len(&p), Ok(20));
        p[15] = 2;
        assert_eq!(protected_header_len(&p), Err(SrtpError::Malformed));
        p[0] = 0x81; // one CSRC
        assert_eq!(protected_header_len(&p), Ok(16));
    }
}
