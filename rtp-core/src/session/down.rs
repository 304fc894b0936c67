//! DownTrack: a track's egress on a subscriber's Session. Owns the
//! [`Forwarder`] (layer choice and header continuity, RFC 3550 §5.1), the
//! [`SeqMap`] that answers NACKs (RFC 4585 §6.2.1) by naming the source
//! packet, the TX statistics for sender reports (RFC 3550 §6.4.1), the RTX
//! sequence space (RFC 4588 §4) and the layer demand the allocator sees.

use std::time::Instant;

use crate::bwe::{Layer, TrackDemand, MAX_LAYERS};
use crate::forward::{Codec, Forwarder, ForwarderConfig, MediaKind, Vp8Rewrite};
use crate::nack::SeqMap;
use crate::stats::TxStreamStats;

use super::config::DownTrackConfig;

/// Sent packets a video DownTrack remembers for NACKs: as many as the shard's packet history
/// keeps of a track (510, `dataplane` `router::HISTORY_PACKETS`), beyond which a NACK's source
/// packet is gone anyway (1.5 s of 3 Mbit/s video in 1,100-byte packets, 3 s of 1.5 Mbit/s).
pub(super) const SEQMAP_VIDEO: usize = 512;
/// The same for audio: 2.6 s of 20 ms packets, longer than any NACK is worth answering.
/// Every subscriber has a DownTrack per track it receives, so a room of N publishers costs
/// N² of them: at 1,024 slots of each kind and a VP8 ring on every track they were 64 KiB
/// each (docs/performance.md, "Memory per subscriber").
pub(super) const SEQMAP_AUDIO: usize = 128;

/// Nominal simulcast bitrates used until the shard tells the real ones
/// (`Session::set_down_layer_rates`); the common 1/4, 1/2, full ladder.
const NOMINAL_VIDEO_BPS: [u64; MAX_LAYERS] = [150_000, 500_000, 1_500_000];

#[derive(Debug)]
pub(super) struct DownTrack {
    pub(super) cfg: DownTrackConfig,
    pub(super) forwarder: Forwarder,
    pub(super) seqmap: SeqMap,
    /// VP8 munging of each sent seq (same ring shape as the SeqMap), so a
    /// retransmission carries the picture id the original had; empty where
    /// nothing is munged (other codecs, end-to-end encrypted VP8).
    pub(super) vp8: Vec<(u16, Option<Vp8Rewrite>)>,
    pub(super) tx: TxStreamStats,
    pub(super) rtx_seq: u16,
    pub(super) muted: bool,
    /// The allocator could not afford even the lowest layer.
    pub(super) bwe_paused: bool,
    pub(super) cap: (u8, u8),
    pub(super) layers: [Layer; MAX_LAYERS],
    /// `layers` are the publisher's measured rates (not the nominal ladder).
    pub(super) rates_known: bool,
    /// The allocator's latest choice (`None`: not sent by it).
    pub(super) allocated: Option<u8>,
    pub(super) last_keyframe_ask: Option<Instant>,
}

impl DownTrack {
    pub(super) fn new(cfg: DownTrackConfig) -> Self {
        let fcfg = ForwarderConfig {
            out_ssrc: cfg.ssrc,
            kind: cfg.kind,
            codec: cfg.codec,
            e2ee: cfg.e2ee,
            clock_rate: cfg.clock_rate,
            forward_padding: false,
        };
        let mut forwarder = Forwarder::new(fcfg);
        let top = cfg.max_layer.min(MAX_LAYERS as u8 - 1);
        forwarder.set_target_layer(top, u8::MAX);
        let mut layers = [Layer::default(); MAX_LAYERS];
        for (i, l) in layers.iter_mut().enumerate() {
            let bps = match cfg.kind {
                MediaKind::Audio => 64_000,
                MediaKind::Video => NOMINAL_VIDEO_BPS[i],
            };
            *l = Layer {
                bitrate_bps: bps,
                available: i <= usize::from(top),
            };
        }
        let slots = match cfg.kind {
            MediaKind::Audio => SEQMAP_AUDIO,
            MediaKind::Video => SEQMAP_VIDEO,
        };
        let vp8 = match cfg.codec {
            Codec::Vp8 if !cfg.e2ee => vec![(0, None); slots],
            _ => Vec::new(),
        };
        Self {
            cfg,
            forwarder,
            seqmap: SeqMap::new(slots),
            vp8,
            tx: TxStreamStats::new(cfg.ssrc),
            rtx_seq: 0,
            muted: false,
            bwe_paused: false,
            cap: (top, u8::MAX),
            layers,
            rates_known: false,
            allocated: None,
            last_keyframe_ask: None,
        }
    }

    pub(super) fn record_vp8(&mut self, seq: u16, v: Option<Vp8Rewrite>) {
        if self.vp8.is_empty() {
            return;
        }
        let i = usize::from(seq) % self.vp8.len();
        self.vp8[i] = (seq, v);
    }

    pub(super) fn vp8_for(&self, seq: u16) -> Option<Vp8Rewrite> {
        if self.vp8.is_empty() {
            return None;
        }
        match self.vp8[usize::from(seq) % self.vp8.len()] {
            (s, v) if s == seq => v,
            _ => None,
        }
    }

    pub(super) fn demand(&self) -> TrackDemand {
        TrackDemand {
            priority: self.cfg.priority,
            layers: self.layers,
            max_layer: self.cap.0,
            paused: self.muted,
        }
    }

    pub(super) fn apply_pause(&mut self) {
        self.forwarder.set_paused(self.muted || self.bwe_paused);
    }
}
