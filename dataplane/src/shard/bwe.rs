//! Congestion control's share of the shard (docs/congestion.md): the layer rates a publisher's
//! session measures on ingress, handed to every subscriber of the track (here, and over the mesh
//! on the workers with subscribers); probe padding the subscribers' estimators ask for; the
//! `session_stats` answer; the workers' congestion totals for `/metrics` (forwarder drops by
//! reason, probes sent, subscriptions the allocator has paused).

use std::collections::BTreeMap;
use std::time::Instant;

use rtp_core::bwe::{Layer, MAX_LAYERS};
use rtp_core::forward::MediaKind as CoreKind;
use rtp_core::session::{ForwardDrops, SessionStats};

use super::counters::Drop;
use super::mesh::RingItem;
use super::table::{Entry, Slot};
use super::Shard;
use crate::proto::{
    ErrorBody, ErrorCode, MediaKind, PublishedTrackStats, ReplyOk, SessionId, SessionStatsReport,
    SubscriptionStats, TrackId,
};

/// Forwarder drop reasons, in `ForwardDrops::by_reason` order.
const DROP_REASONS: usize = 8;

/// Congestion counters of a worker's sessions (closed ones kept, like the pacer's).
#[derive(Debug, Default, Clone, Copy)]
pub struct CongestionTotals {
    pub forward_drops: [u64; DROP_REASONS],
    pub probe_packets: u64,
    pub probe_bytes: u64,
    /// NACK packets cut short by their session's budget of NACKed sequence numbers.
    pub nacks_over_budget: u64,
}

impl CongestionTotals {
    /// Adds one session's counters.
    pub fn add(&mut self, s: &SessionStats) {
        for (total, (_, n)) in self
            .forward_drops
            .iter_mut()
            .zip(s.forward_drops.by_reason())
        {
            *total += n;
        }
        self.probe_packets += s.probe_packets;
        self.probe_bytes += s.probe_bytes;
        self.nacks_over_budget += s.nacks_over_budget;
    }

    /// Adds another total (retired sessions to live ones).
    pub fn merge(&mut self, o: &CongestionTotals) {
        for (total, n) in self.forward_drops.iter_mut().zip(o.forward_drops) {
            *total += n;
        }
        self.probe_packets += o.probe_packets;
        self.probe_bytes += o.probe_bytes;
        self.nacks_over_budget += o.nacks_over_budget;
    }

    /// `(name, value)` entries for the stats' `dropped` map (docs/control-socket.md): not
    /// drops of the worker, kept apart by name (`forward_drop_*`, `probe_*`,
    /// `bwe_paused_tracks`, a gauge) — but for `nack_over_budget`, refused input that `/metrics`
    /// counts with the worker's drops. Always present.
    pub fn entries(&self, paused_tracks: u64) -> impl Iterator<Item = (String, u64)> + '_ {
        ForwardDrops::default()
            .by_reason()
            .into_iter()
            .zip(self.forward_drops)
            .map(|((name, _), n)| (format!("forward_drop_{name}"), n))
            .chain([
                ("probe_packets".to_string(), self.probe_packets),
                ("probe_bytes".to_string(), self.probe_bytes),
                ("nack_over_budget".to_string(), self.nacks_over_budget),
                ("bwe_paused_tracks".to_string(), paused_tracks),
            ])
    }
}

fn kind(k: CoreKind) -> MediaKind {
    match k {
        CoreKind::Audio => MediaKind::Audio,
        _ => MediaKind::Video,
    }
}

impl Shard {
    /// A publisher's session measured its layers (`SessionEvent::LayerRates`), or another
    /// worker passed them on: keep them for new subscribers, give them to every subscriber
    /// here, and (when published here) to the workers with subscribers.
    pub(super) fn on_layer_rates(
        &mut self,
        track: TrackId,
        layers: [Layer; MAX_LAYERS],
        local_publisher: bool,
    ) {
        let Some(ts) = self.router.tracks.get_mut(&track) else {
            return;
        };
        ts.rates = Some(layers);
        for &(slot, down) in &ts.subs {
            if let Some(entry) = self.table.get_mut(slot) {
                entry.session.set_down_layer_rates(down, layers);
                // Its allocation may have changed, and with it its probe timer.
                self.table.mark_dirty(slot);
            }
        }
        if !local_publisher {
            return;
        }
        for &peer in &ts.remote {
            let peer = usize::from(peer);
            if self
                .mesh
                .push(self.index, peer, RingItem::LayerRates { track, layers })
            {
                self.wake_peers[peer] = true;
            } else {
                self.counters.drop(Drop::RingFull);
            }
        }
    }

    /// Probe padding the session's estimator asks for now, each in a fresh buffer (never out
    /// of the receive path's reserve), queued as control packets (outside the latency
    /// histograms); bounded by the estimator's cluster and the transmit queue's room.
    pub(super) fn drain_probes(&mut self, now: Instant, slot: Slot) {
        let reserve = self.router.reserve();
        let Some(entry) = self.table.get_mut(slot) else {
            return;
        };
        let io = &mut self.io;
        while io.room() > 0 && entry.session.wants_probe(now) {
            if io.pool.free_count() <= reserve {
                self.counters.drop(Drop::PoolEmpty);
                return;
            }
            let Some(buf) = io.pool.take() else {
                self.counters.drop(Drop::PoolEmpty);
                return;
            };
            match entry.session.poll_probe(now, &mut io.pool.get_mut(buf)[..]) {
                Some((len, dst)) => io.push_control(buf, len, dst),
                None => {
                    io.pool.give(buf);
                    return;
                }
            }
        }
    }

    /// The congestion totals of live sessions and the subscriptions paused now.
    pub(super) fn congestion_live(&self) -> (CongestionTotals, u64) {
        let mut t = CongestionTotals::default();
        let mut paused = 0u64;
        for entry in self.table.iter() {
            let s = entry.session.stats();
            t.add(s);
            paused += u64::from(s.bwe_paused_tracks);
        }
        (t, paused)
    }

    /// `session_stats` for a session on this worker.
    pub(super) fn session_stats(
        &mut self,
        now: Instant,
        session: SessionId,
    ) -> Result<ReplyOk, ErrorBody> {
        let Some(slot) = self.table.slot_of(session) else {
            return Err(ErrorBody::new(
                ErrorCode::NotFound,
                format!("{session} is not on this worker"),
            ));
        };
        let Some(entry) = self.table.get_mut(slot) else {
            return Err(ErrorBody::new(
                ErrorCode::NotFound,
                format!("{session} is closed"),
            ));
        };
        let (remb_cap_bps, acked_bps, sent_bps) = entry.session.bwe_rates(now);
        let s = *entry.session.stats();
        let forward_drops: BTreeMap<String, u64> = s
            .forward_drops
            .by_reason()
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        let subscriptions = subscriptions_of(entry);
        let tracks = entry
            .ups
            .iter()
            .flatten()
            .map(|t| PublishedTrackStats {
                track: *t,
                layer_bps: self
                    .router
                    .tracks
                    .get(t)
                    .and_then(|ts| ts.rates)
                    .map(|r| {
                        r.iter()
                            .map(|l| l.available.then_some(l.bitrate_bps))
                            .collect()
                    })
                    .unwrap_or_default(),
            })
            .collect();
        Ok(ReplyOk::SessionStats(SessionStatsReport {
            session,
            worker: Some(self.index as u16),
            connected: entry.session.is_connected(),
            estimate_bps: s.estimate_bps,
            estimate_source: s.estimate_source.as_str().to_string(),
            remb_cap_bps,
            acked_bps,
            sent_bps,
            pacing_bps: entry.session.pacing_rate_bps(),
            rtt_ms: s.rtt.map(|d| d.as_millis() as u64),
            fraction_lost: s.fraction_lost,
            reported_received: entry.session.feedback_totals().0,
            reported_lost: entry.session.feedback_totals().1,
            probe_packets: s.probe_packets,
            probe_bytes: s.probe_bytes,
            forwarded: s.forwarded,
            retransmitted: s.retransmitted,
            forward_drops,
            subscriptions,
            tracks,
        }))
    }
}

fn subscriptions_of(entry: &Entry) -> Vec<SubscriptionStats> {
    entry
        .downs
        .iter()
        .enumerate()
        .filter_map(|(i, d)| {
            let (track, subscription) = (*d)?;
            let r = entry
                .session
                .down_report(rtp_core::session::DownId(i as u16))?;
            let layers = if r.kind == CoreKind::Audio {
                1
            } else {
                MAX_LAYERS
            };
            Some(SubscriptionStats {
                subscription,
                track,
                kind: kind(r.kind),
                allocated_layer: r.allocated_layer,
                current_layer: r.current_layer,
                target_layer: r.target_layer,
                paused: r.bwe_paused,
                muted: r.muted,
                layer_bps: r.layers[..layers]
                    .iter()
                    .filter(|l| l.available)
                    .map(|l| l.bitrate_bps)
                    .collect(),
            })
        })
        .collect()
}
