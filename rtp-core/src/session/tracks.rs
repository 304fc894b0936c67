//! Track management on a Session: adding and removing UpTracks (published tracks arriving on
//! the session) and DownTracks (tracks it receives from the SFU), and a DownTrack's
//! subscriber-side settings (mute, layer cap, the publisher's layer rates).

use crate::bwe::{Layer, MAX_LAYERS};

use super::down::DownTrack;
use super::up::{UpTrack, MAX_UP_LAYERS};
use super::{DownId, DownTrackConfig, Session, SessionError, UpId, UpTrackConfig};

impl<H: Copy> Session<H> {
    /// Add a published track arriving on this session.
    pub fn add_up_track(&mut self, cfg: UpTrackConfig) -> Result<UpId, SessionError> {
        if cfg.layers.is_empty() || cfg.layers.len() > MAX_UP_LAYERS {
            return Err(SessionError::TooManyTracks);
        }
        let i = self
            .ups
            .iter()
            .position(Option::is_none)
            .ok_or(SessionError::TooManyTracks)?;
        let cfg = self.trunk_up(cfg);
        self.ups[i] = Some(UpTrack::new(
            cfg,
            self.nack_cfg,
            self.media_budget,
            self.last_now,
        ));
        Ok(UpId(i as u16))
    }

    /// Remove an UpTrack; its SSRCs become unknown.
    pub fn remove_up_track(&mut self, up: UpId) {
        if let Some(slot) = self.ups.get_mut(usize::from(up.0)) {
            *slot = None;
        }
    }

    /// Add a track this session receives from the SFU.
    pub fn add_down_track(&mut self, cfg: DownTrackConfig) -> Result<DownId, SessionError> {
        let i = match self.downs.iter().position(Option::is_none) {
            Some(i) => i,
            None if self.downs.len() < self.max_downs => {
                self.downs.push(None);
                self.downs.len() - 1
            }
            None => return Err(SessionError::TooManyTracks),
        };
        let mut down = DownTrack::new(self.trunk_down(i, cfg));
        if let Some(h) = self.handoffs.take(down.cfg.ssrc) {
            down.forwarder.continue_from(h);
        }
        self.downs[i] = Some(down);
        self.allocator.reset_track(i);
        self.allocate(self.last_now);
        Ok(DownId(i as u16))
    }

    /// Remove a DownTrack.
    pub fn remove_down_track(&mut self, down: DownId) {
        if let Some(slot) = self.downs.get_mut(usize::from(down.0)) {
            if let Some(d) = slot.as_ref() {
                if let Some(h) = d.forwarder.handoff() {
                    self.handoffs.keep(d.cfg.ssrc, h);
                }
            }
            *slot = None;
            self.allocator.reset_track(usize::from(down.0));
            if let Some(s) = self.shedder.as_mut() {
                s.reset(usize::from(down.0));
            }
        }
    }

    /// Mute (pause) or unmute a DownTrack; a resumed video track restarts at a keyframe.
    pub fn set_down_muted(&mut self, down: DownId, muted: bool) {
        if let Some(d) = self.down_mut(down) {
            d.muted = muted;
            d.apply_pause();
        }
    }

    /// Cap the layers a DownTrack may get (subscriber's choice: video size).
    pub fn set_layer_cap(&mut self, down: DownId, max_spatial: u8, max_temporal: u8) {
        if let Some(d) = self.down_mut(down) {
            d.cap = (max_spatial.min(MAX_LAYERS as u8 - 1), max_temporal);
            let (s, _) = d.forwarder.target_layer();
            d.forwarder.set_target_layer(s.min(d.cap.0), d.cap.1);
        }
        self.allocate(self.last_now);
    }

    /// The publisher's real layer bitrates and availability for a DownTrack's
    /// source (the shard passes on the UpTrack's `SessionEvent::LayerRates`); until called, a
    /// nominal 150k / 500k / 1.5M ladder up to `max_layer` (64k for audio) is assumed. The next
    /// allocation (at most 500 ms away) uses them.
    pub fn set_down_layer_rates(&mut self, down: DownId, layers: [Layer; MAX_LAYERS]) {
        if let Some(d) = self.down_mut(down) {
            d.layers = layers;
            d.rates_known = true;
        }
    }

    fn down_mut(&mut self, down: DownId) -> Option<&mut DownTrack> {
        self.downs.get_mut(usize::from(down.0))?.as_mut()
    }
}
