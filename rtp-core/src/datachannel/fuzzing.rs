//! Entry point for the `sctp_dcep` fuzz target (`fuzz/`), behind the
//! `fuzzing` feature; not part of the API. Two [`DataChannels`] (the SFU's
//! DTLS-server side and a DTLS-client peer) with an established
//! association and a channel each way; the fuzzer's packets reach the
//! server as SCTP from the peer, with the association's verification tag
//! and a valid CRC32c written in, so they get past the common header into
//! chunk parsing, the association and DCEP.

use std::time::{Duration, Instant};

use super::{ChannelConfig, DataChannels, DataConfig, DataStats};

/// See the module docs.
#[derive(Debug)]
pub struct FuzzPair {
    server: DataChannels,
    client: DataChannels,
    now: Instant,
    /// The first 8 bytes of a client→server packet: ports and tag.
    header: [u8; 8],
    rx: Vec<u8>,
}

impl FuzzPair {
    /// An established pair (the client role reads the clock once, in
    /// sctp-proto's `connect`).
    pub fn new(now: Instant) -> Self {
        let cfg = DataConfig::default();
        let mut p = Self {
            server: DataChannels::new(cfg, false, now).expect("default config"),
            client: DataChannels::new(cfg, true, now).expect("default config"),
            now,
            header: [0; 8],
            rx: vec![0; cfg.max_message_size as usize],
        };
        p.server.on_dtls_connected();
        p.client.on_dtls_connected();
        let _ = p.client.open(ChannelConfig::reliable("c"));
        let _ = p.server.open(ChannelConfig::lossy("s"));
        for _ in 0..20 {
            p.step(Duration::from_millis(10));
        }
        p
    }

    /// Feeds `packet` to the server as SCTP from the peer; `fix` writes the
    /// association's ports and tag and a valid checksum over it first.
    pub fn inject(&mut self, packet: &[u8], fix: bool) {
        let mut p = packet.to_vec();
        if fix && p.len() >= 12 {
            p[..8].copy_from_slice(&self.header);
            p[8..12].fill(0);
            let sum = crc32c(&p);
            p[8..12].copy_from_slice(&sum.to_le_bytes());
        }
        self.server.handle_input(self.now, p);
    }

    /// Moves packets both ways, runs timers, drains events and messages.
    pub fn step(&mut self, advance: Duration) {
        self.now += advance;
        self.server.handle_timeout(self.now);
        self.client.handle_timeout(self.now);
        // Bounded: the associations' windows limit what they send.
        for _ in 0..64 {
            let mut moved = false;
            while let Some(pkt) = self.client.poll_packet(self.now) {
                if let Some(h) = pkt.first_chunk::<8>() {
                    self.header = *h;
                }
                self.server.handle_input(self.now, pkt.to_vec());
                moved = true;
            }
            while let Some(pkt) = self.server.poll_packet(self.now) {
                self.client.handle_input(self.now, pkt.to_vec());
                moved = true;
            }
            while self.server.poll_event().is_some() || self.client.poll_event().is_some() {
                moved = true;
            }
            while let Some(m) = self.server.poll_data(&mut self.rx) {
                assert!(
                    m.len <= self.rx.len(),
                    "a message fits what poll_data wrote"
                );
                moved = true;
            }
            while self.client.poll_data(&mut self.rx).is_some() {
                moved = true;
            }
            if !moved {
                break;
            }
        }
        let buffered = self.server.buffered_total();
        assert!(buffered <= DataConfig::default().max_buffered + 65_536);
    }

    /// The server's counters.
    pub fn stats(&self) -> DataStats {
        *self.server.stats()
    }
}

/// CRC32c (RFC 9260 Appendix A), bit by bit: fuzzing only.
fn crc32c(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0x82F6_3B78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_matches_rfc_3720_vector() {
        // RFC 3720 B.4: 32 bytes of zeros.
        assert_eq!(crc32c(&[0; 32]), 0x8A91_36AA);
    }

    #[test]
    fn a_fixed_packet_reaches_the_association() {
        #[allow(clippy::disallowed_methods)] // the one clock read a test needs
        let mut p = FuzzPair::new(Instant::now());
        assert!(p.server.is_connected());
        // An ABORT chunk: unfixed it fails the checksum, fixed it ends the association.
        let mut abort = vec![0u8; 12];
        abort.extend_from_slice(&[6, 0, 0, 4]);
        p.inject(&abort, false);
        p.step(Duration::from_millis(10));
        assert!(p.server.is_connected());
        p.inject(&abort, true);
        p.step(Duration::from_millis(10));
        assert!(!p.server.is_connected());
    }
}
