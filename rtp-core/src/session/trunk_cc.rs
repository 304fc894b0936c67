//! Congestion control on a trunk (cascade, issue 16, D108/D109): the relays carry the trunk's
//! transport-wide sequence number on its fixed extension id ([`ExtIds::TRUNK`]), the far
//! trunk acknowledges them with transport-cc feedback, and the same estimator as a
//! subscriber's runs on it; the pacer follows the estimate, capped by the trunk's
//! `max_bitrate_bps`. Instead of choosing a layer per track (a relay *is* one layer), the
//! [`Shedder`] suspends relays top-down while what they cost exceeds the estimate and resumes
//! them with hysteresis; a suspended relay sends nothing (no RTX, no probe padding), and its
//! resumption asks the publisher for a keyframe of that layer.

use std::time::Instant;

use crate::bwe::{RelayLoad, ShedConfig, Shedder};
use crate::forward::MediaKind;

use super::config::{DownTrackConfig, ExtIds, UpTrackConfig};
use super::{DownId, Session, SessionEvent, SessionOutput};

/// A trunk's shedder over its relay slots.
pub(super) fn shedder(slots: usize) -> Shedder {
    Shedder::new(ShedConfig::default(), slots)
}

impl<H: Copy> Session<H> {
    /// Whether relay slot `i` is shed now.
    pub(super) fn relay_shed(&self, i: usize) -> bool {
        self.shedder.as_ref().is_some_and(|s| s.is_shed(i))
    }

    /// An UpTrack of a trunk reads the trunk's extension ids.
    pub(super) fn trunk_up(&self, mut cfg: UpTrackConfig) -> UpTrackConfig {
        if self.shedder.is_some() {
            cfg.ext = ExtIds::TRUNK;
        }
        cfg
    }

    /// A relay on a trunk writes the trunk's extension ids, and its slot starts unshed.
    pub(super) fn trunk_down(&mut self, i: usize, mut cfg: DownTrackConfig) -> DownTrackConfig {
        if let Some(s) = self.shedder.as_mut() {
            s.reset(i);
            if cfg.relay_layer.is_some() {
                cfg.ext = ExtIds::TRUNK;
            }
        }
        cfg
    }

    fn relay_changed(&mut self, down: DownId, shed: bool, estimate_bps: u64) {
        self.push_event(SessionEvent::RelayShed {
            down,
            shed,
            estimate_bps,
        });
        let layer = self.downs[usize::from(down.0)]
            .as_ref()
            .and_then(|d| d.cfg.relay_layer);
        if let (false, Some(layer)) = (shed, layer) {
            // The far side's decoders of this layer restart at a keyframe.
            self.push_output(SessionOutput::KeyframeWanted { down, layer });
        }
    }

    /// A trunk's allocation: shed or resume relays for the estimate, then pacing, probing
    /// (towards what every relay would cost) and the shed count in the stats.
    pub(super) fn shed_relays(&mut self, now: Instant) {
        let Some(mut shedder) = self.shedder.take() else {
            return;
        };
        // One load per slot, in preallocated scratch.
        let mut loads = std::mem::take(&mut self.relay_loads);
        loads.clear();
        loads.extend(self.downs.iter().map(|d| {
            let d = d.as_ref()?;
            let layer = d.cfg.relay_layer?;
            let l = d
                .layers
                .get(usize::from(layer))
                .copied()
                .unwrap_or_default();
            let audio = d.cfg.kind == MediaKind::Audio;
            let rate_bps = match () {
                _ if d.muted => 0,
                _ if audio => d.layers[0].bitrate_bps,
                _ if l.available => l.bitrate_bps,
                _ => 0,
            };
            Some(RelayLoad {
                group: d.cfg.relay_group,
                layer,
                audio,
                rate_bps,
            })
        }));
        let estimate_bps = self.bwe.estimate_bps();
        shedder.update(now, estimate_bps, &loads, |i, shed| {
            self.relay_changed(DownId(i as u16), shed, estimate_bps);
        });
        self.allocated_bps = shedder.flowing_bps(&loads);
        let wanted = shedder.wanted_bps(&loads);
        self.stats.bwe_paused_tracks = shedder.shed_count();
        self.shedder = Some(shedder);
        self.relay_loads = loads;
        self.update_pacing();
        self.probe_down = self.pick_probe_down();
        let connected = self.is_connected();
        self.bwe.set_probing(connected && self.probe_down.is_some());
        self.bwe.set_desired(wanted);
        if connected {
            self.bwe.handle_timeout(now);
        }
    }
}
