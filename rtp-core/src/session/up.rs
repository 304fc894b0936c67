//! UpTrack: a published track's ingress on the publisher's Session. Owns
//! per-layer receive state: SSRC binding (signalled, learnt from the
//! RFC 8852 RID extensions, or for an SSRC the offer did not name, from the
//! MID extension or a payload type unique in the BUNDLE, RFC 8843 §9.2), the extended-sequence unwrapper (RFC 3550 §A.1),
//! the NACK generator (RFC 4585 §6.2.1), RTCP receive statistics
//! (RFC 3550 §6.4) and the keyframe-request throttle (RFC 4585 §6.3.1,
//! RFC 5104 §4.3.1). The packet cache is NOT here: the shard keeps it.

use std::time::{Duration, Instant};

use crate::budget::Budget;
use crate::bwe::RateMeter;
use crate::forward::{PliThrottle, PliThrottleConfig};
use crate::nack::{NackConfig, NackGenerator, SeqUnwrapper};
use crate::stats::RxStreamStats;

use super::config::UpTrackConfig;

/// Most simulcast layers per UpTrack (the allocator's limit too).
pub(super) const MAX_UP_LAYERS: usize = crate::bwe::MAX_LAYERS;
/// What a layer costs a subscriber is averaged over this (a keyframe every few seconds).
pub(super) const LAYER_RATE_WINDOW: Duration = Duration::from_secs(2);

/// Packets (media and RTX) an audio layer may send a second, and at once, by default (D123).
/// Opus sends at most 100 (10 ms frames; 50 is usual).
pub const AUDIO_PACKETS_PER_S: u32 = 200;
/// Packets (media and RTX) a video layer may send a second, and at once, by default (D123):
/// ~58 Mbit/s of 1,200-byte packets, above what a 4K screen share or a 50 Mbit/s WHIP ingest
/// sends, and a keyframe of 7 MB in one burst.
pub const VIDEO_PACKETS_PER_S: u32 = 6_000;

/// What each layer of a published track may have forwarded, in packets a second and at once
/// (D123; `dataplane.audio_packets_per_s` and `dataplane.video_packets_per_s`). A trunk's
/// tracks have none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MediaBudget {
    pub audio_packets_per_s: u32,
    pub video_packets_per_s: u32,
}

impl Default for MediaBudget {
    fn default() -> Self {
        Self {
            audio_packets_per_s: AUDIO_PACKETS_PER_S,
            video_packets_per_s: VIDEO_PACKETS_PER_S,
        }
    }
}

impl MediaBudget {
    fn packets_per_s(&self, kind: crate::forward::MediaKind) -> u32 {
        match kind {
            crate::forward::MediaKind::Audio => self.audio_packets_per_s,
            crate::forward::MediaKind::Video => self.video_packets_per_s,
        }
    }
}

/// Receive state of one simulcast layer.
#[derive(Debug)]
pub(super) struct UpLayer {
    pub(super) ssrc: Option<u32>,
    pub(super) rtx_ssrc: Option<u32>,
    pub(super) rid: Option<String>,
    pub(super) unwrap: SeqUnwrapper,
    pub(super) nack: NackGenerator,
    pub(super) rx: RxStreamStats,
    pub(super) seen: bool,
    /// A PLI passed the throttle and waits for `poll_transmit`.
    pub(super) pli_due: bool,
    /// What the publisher sends on this layer (media packets, padding-only ones excluded).
    pub(super) rate: RateMeter,
    /// Packets it may still send to be forwarded; `None` on a trunk (its peer is another node of
    /// ours, whose own publishers were budgeted).
    pub(super) budget: Option<Budget>,
}

/// One published track arriving on this session.
#[derive(Debug)]
pub(super) struct UpTrack {
    pub(super) cfg: UpTrackConfig,
    pub(super) layers: Vec<UpLayer>,
    pub(super) pli: PliThrottle,
}

/// Which stream of which layer an SSRC is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum StreamKind {
    Media,
    Rtx,
}

impl UpTrack {
    /// `budget`: each layer's packet budget, full at `now` (every session but a trunk).
    pub(super) fn new(
        cfg: UpTrackConfig,
        nack: NackConfig,
        budget: Option<MediaBudget>,
        now: Instant,
    ) -> Self {
        let rate = budget.map(|b| b.packets_per_s(cfg.kind));
        let layers = cfg
            .layers
            .iter()
            .map(|l| UpLayer {
                ssrc: l.ssrc,
                rtx_ssrc: l.rtx_ssrc,
                rid: l.rid.clone(),
                unwrap: SeqUnwrapper::new(),
                nack: NackGenerator::new(nack),
                rx: RxStreamStats::new(l.ssrc.unwrap_or(0)),
                seen: false,
                pli_due: false,
                rate: RateMeter::new(LAYER_RATE_WINDOW),
                budget: rate.map(|r| Budget::new(r, now)),
            })
            .collect::<Vec<_>>();
        let pli = PliThrottle::new(PliThrottleConfig {
            layers: layers.len().max(1),
            ..PliThrottleConfig::default()
        });
        Self { cfg, layers, pli }
    }

    /// The layer and stream `ssrc` is bound to.
    pub(super) fn find(&self, ssrc: u32) -> Option<(usize, StreamKind)> {
        self.layers.iter().enumerate().find_map(|(i, l)| {
            if l.ssrc == Some(ssrc) {
                Some((i, StreamKind::Media))
            } else if l.rtx_ssrc == Some(ssrc) {
                Some((i, StreamKind::Rtx))
            } else {
                None
            }
        })
    }

    /// Bind an SSRC the offer did not name to this track's only layer by payload type: the
    /// media PT binds the media stream, the RTX PT its RTX stream (RFC 4588 §8.6), each only
    /// while unbound. A simulcast track is never bound this way: its layers are told apart by
    /// RID or signalled SSRCs only (RFC 8853 §5.1).
    pub(super) fn bind(&mut self, ssrc: u32, pt: u8) -> Option<StreamKind> {
        let [l] = self.layers.as_mut_slice() else {
            return None;
        };
        if pt == self.cfg.payload_type && l.ssrc.is_none() {
            l.ssrc = Some(ssrc);
            l.rx = RxStreamStats::new(ssrc);
            Some(StreamKind::Media)
        } else if Some(pt) == self.cfg.rtx_payload_type && l.rtx_ssrc.is_none() {
            l.rtx_ssrc = Some(ssrc);
            Some(StreamKind::Rtx)
        } else {
            None
        }
    }

    /// Whether packets of payload type `pt` belong to this track (media or RTX).
    pub(super) fn carries_pt(&self, pt: u8) -> bool {
        pt == self.cfg.payload_type || Some(pt) == self.cfg.rtx_payload_type
    }

    /// Bind `ssrc` to the layer whose RID is `rid` (RFC 8852 §3), if that
    /// layer has no SSRC of that kind yet. Compares bytes: no allocation.
    pub(super) fn learn(&mut self, ssrc: u32, rid: &[u8], kind: StreamKind) -> Option<usize> {
        let i = self
            .layers
            .iter()
            .position(|l| l.rid.as_deref().is_some_and(|r| r.as_bytes() == rid))?;
        let l = &mut self.layers[i];
        let slot = match kind {
            StreamKind::Media => &mut l.ssrc,
            StreamKind::Rtx => &mut l.rtx_ssrc,
        };
        if slot.is_some() {
            return None;
        }
        *slot = Some(ssrc);
        if kind == StreamKind::Media {
            l.rx = RxStreamStats::new(ssrc);
        }
        Some(i)
    }
}
