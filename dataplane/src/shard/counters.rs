//! A shard's plain counters (no atomics: only the shard writes them; a snapshot travels to the
//! control thread every `stats_interval_ms`). Drops are counted by a fixed set of reasons so the
//! per-packet path only increments an array slot.

use std::collections::BTreeMap;

use rtp_core::pacer::{PacerStats, DELAY_BUCKETS};
use rtp_core::session::{SessionError, SsrcBinding};
use rtp_core::srtp::SrtpError;

use crate::proto::{pacer_delay_key, Counters, ShardStats};
use crate::sys::IoStats;

/// Why a shard dropped a datagram or a forwarded copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
pub enum Drop {
    /// From an address no session knows, and not a STUN binding naming a known ufrag.
    UnknownSource,
    /// The session's `handle_datagram` refused it for a reason not listed below.
    SessionRejected,
    /// Published media of a track this shard has no state for.
    UnknownTrack,
    /// A packet that does not parse as RTP after the session accepted it.
    Parse,
    /// No free pool buffer for a forwarded copy or a control packet.
    PoolEmpty,
    /// A cross-shard ring was full.
    RingFull,
    /// `forward`/`retransmit` failed for a subscriber.
    ForwardError,
    /// A NACKed packet no longer in the shard's history.
    HistoryMiss,
    /// Longer than a ring slot or a history slot.
    TooLong,
    /// A plain-RTP datagram handed to its shard found no session there either.
    Redirected,
    // The session's reasons (`Session::handle_datagram` errors), so the snapshot says why
    // without asking each session.
    /// SRTP/SRTCP authentication tag did not verify.
    SrtpAuth,
    /// SRTP/SRTCP replayed or older than the replay window.
    SrtpReplay,
    /// Any other SRTP failure (too short, malformed).
    Srtp,
    /// STUN that does not parse or that ICE refused (wrong integrity, unknown ufrag).
    Stun,
    /// DTLS refused by the endpoint.
    Dtls,
    /// RTP that does not parse.
    MalformedRtp,
    /// RTCP that does not parse (bad lengths).
    MalformedRtcp,
    /// DTLS or media from an address ICE has not validated.
    UnvalidatedSource,
    /// Media or RTCP before the session was connected.
    NotConnected,
    /// ZRTP, TURN channel data or an unknown first byte (RFC 7983).
    Unsupported,
    /// RTP from an SSRC no track claims, or with a payload type it did not negotiate.
    UnknownSsrc,
    /// An event or stats snapshot for the control thread found its bounded queue full.
    ControlBacklog,
    /// A video packet found the fan-out queue full.
    FanoutBacklog,
    /// A queued packet left the history before its fan-out reached it.
    FanoutStale,
    /// STUN naming a ufrag no session here, pending or placed, has (the lock-free filter, or the
    /// registry, said so).
    UnknownUfrag,
    /// A check for a pending session whose MESSAGE-INTEGRITY did not verify with its password:
    /// the session was not claimed.
    ClaimRefused,
    /// A datagram whose lookup would have taken the registry lock beyond the shard's rate limit.
    SlowPathLimited,
    /// STUN a session accepted without validating its source: an indication, a response or a
    /// refused check (answered or ignored; the address was not registered).
    StunUnauthenticated,
    /// A copy refused to a session already holding as many queued copies as the pool has free
    /// buffers (`router::admit`): its pacer does not drain, and the pool is shared.
    PoolShare,
    /// A forwarded copy that waited longer than the pacer's limit (2 s) and was not sent.
    PacerExpired,
    /// A published packet past its layer's packet budget (D123): received, not forwarded.
    MediaOverBudget,
}

impl Drop {
    const ALL: [Drop; 31] = [
        Drop::UnknownSource,
        Drop::SessionRejected,
        Drop::UnknownTrack,
        Drop::Parse,
        Drop::PoolEmpty,
        Drop::PoolShare,
        Drop::RingFull,
        Drop::ForwardError,
        Drop::HistoryMiss,
        Drop::TooLong,
        Drop::Redirected,
        Drop::SrtpAuth,
        Drop::SrtpReplay,
        Drop::Srtp,
        Drop::Stun,
        Drop::Dtls,
        Drop::MalformedRtp,
        Drop::MalformedRtcp,
        Drop::UnvalidatedSource,
        Drop::NotConnected,
        Drop::Unsupported,
        Drop::UnknownSsrc,
        Drop::ControlBacklog,
        Drop::FanoutBacklog,
        Drop::FanoutStale,
        Drop::UnknownUfrag,
        Drop::ClaimRefused,
        Drop::SlowPathLimited,
        Drop::StunUnauthenticated,
        Drop::PacerExpired,
        Drop::MediaOverBudget,
    ];

    /// The reason for a datagram its session refused.
    pub fn of_session_error(e: &SessionError) -> Self {
        match e {
            SessionError::Srtp(SrtpError::AuthFailed) => Drop::SrtpAuth,
            SessionError::Srtp(SrtpError::Replayed | SrtpError::TooOld) => Drop::SrtpReplay,
            SessionError::Srtp(_) => Drop::Srtp,
            SessionError::Stun(_) | SessionError::Ice(_) => Drop::Stun,
            SessionError::Dtls(_) => Drop::Dtls,
            SessionError::Rtp(_) | SessionError::Rtx(_) => Drop::MalformedRtp,
            SessionError::Rtcp(_) => Drop::MalformedRtcp,
            SessionError::UnvalidatedSource => Drop::UnvalidatedSource,
            SessionError::NotConnected => Drop::NotConnected,
            SessionError::Unsupported => Drop::Unsupported,
            SessionError::UnknownSsrc | SessionError::UnknownPayloadType => Drop::UnknownSsrc,
            SessionError::OverBudget => Drop::MediaOverBudget,
            _ => Drop::SessionRejected,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Drop::UnknownSource => "unknown_source",
            Drop::SessionRejected => "session_rejected",
            Drop::UnknownTrack => "unknown_track",
            Drop::Parse => "parse",
            Drop::PoolEmpty => "pool_empty",
            Drop::PoolShare => "pool_share",
            Drop::RingFull => "ring_full",
            Drop::ForwardError => "forward_error",
            Drop::HistoryMiss => "history_miss",
            Drop::TooLong => "too_long",
            Drop::Redirected => "redirect_lost",
            Drop::SrtpAuth => "srtp_auth",
            Drop::SrtpReplay => "srtp_replay",
            Drop::Srtp => "srtp_other",
            Drop::Stun => "stun",
            Drop::Dtls => "dtls",
            Drop::MalformedRtp => "malformed_rtp",
            Drop::MalformedRtcp => "malformed_rtcp",
            Drop::UnvalidatedSource => "unvalidated_source",
            Drop::NotConnected => "not_connected",
            Drop::Unsupported => "unsupported",
            Drop::UnknownSsrc => "unknown_ssrc",
            Drop::ControlBacklog => "control_backlog",
            Drop::FanoutBacklog => "fanout_backlog",
            Drop::FanoutStale => "fanout_stale",
            Drop::UnknownUfrag => "unknown_ufrag",
            Drop::ClaimRefused => "claim_unauthenticated",
            Drop::SlowPathLimited => "slow_path_limited",
            Drop::StunUnauthenticated => "stun_unauthenticated",
            Drop::PacerExpired => "expired_in_pacer",
            Drop::MediaOverBudget => "media_over_budget",
        }
    }
}

/// Pacer queueing delay (enqueue → leaves the pacer) summed over sessions and classes.
/// Plain integers so summing over a shard's sessions never allocates.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PacerTotals {
    /// Packets that left a pacer (`poll_paced`).
    pub packets: u64,
    /// Sum of their queueing delays, µs.
    pub delay_us_sum: u64,
    /// Largest single queueing delay, µs.
    pub delay_us_max: u64,
    /// Packets by delay; bucket `i` is below `DELAY_BUCKET_BOUNDS_MS[i]` ms, the last is the rest.
    pub histogram: [u64; DELAY_BUCKETS],
}

impl PacerTotals {
    /// Adds one session's pacer counters (all classes).
    pub fn add(&mut self, stats: &PacerStats) {
        for c in &stats.classes {
            self.packets += c.sent;
            let sum = u64::try_from(c.delay_sum.as_micros()).unwrap_or(u64::MAX);
            self.delay_us_sum = self.delay_us_sum.saturating_add(sum);
            let max = u64::try_from(c.delay_max.as_micros()).unwrap_or(u64::MAX);
            self.delay_us_max = self.delay_us_max.max(max);
            for (total, n) in self.histogram.iter_mut().zip(c.delay_histogram) {
                *total += n;
            }
        }
    }

    /// Adds another total (retired sessions to live ones).
    pub fn merge(&mut self, other: &PacerTotals) {
        self.packets += other.packets;
        self.delay_us_sum = self.delay_us_sum.saturating_add(other.delay_us_sum);
        self.delay_us_max = self.delay_us_max.max(other.delay_us_max);
        for (total, n) in self.histogram.iter_mut().zip(other.histogram) {
            *total += n;
        }
    }

    /// `(name, value)` entries for the `dropped` map; see docs/control-socket.md.
    fn entries(&self) -> impl Iterator<Item = (String, u64)> + '_ {
        let fixed = [
            ("pacer_packets".to_string(), self.packets),
            ("pacer_delay_us_sum".to_string(), self.delay_us_sum),
            ("pacer_delay_us_max".to_string(), self.delay_us_max),
        ];
        let buckets = self
            .histogram
            .iter()
            .enumerate()
            .map(|(i, &n)| (pacer_delay_key(i), n));
        fixed.into_iter().chain(buckets)
    }
}

/// Totals since the shard started.
#[derive(Debug, Default, Clone)]
pub struct ShardCounters {
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
    /// Media packets forwarded to a local subscriber (one per subscriber copy).
    pub forwarded: u64,
    /// Media packets pushed to another shard.
    pub ring_out: u64,
    pub ring_in: u64,
    pub loop_overruns: u64,
    /// Transmits a full socket buffer refused, kept and sent again later (a delay, not a loss).
    pub send_retry: u64,
    /// Times draining the sessions stopped on a full socket buffer (media stayed paced).
    pub send_stalls: u64,
    /// Registry lookups (the lock) this shard made for datagrams it could not place itself.
    pub slow_path: u64,
    /// Pacer counters of sessions already closed (live sessions are summed at snapshot time).
    pub pacer_retired: PacerTotals,
    /// Congestion counters of sessions already closed.
    pub congestion_retired: super::bwe::CongestionTotals,
    /// DTLS handshakes that failed (each logged once with its reason).
    pub dtls_failed: u64,
    /// SSRCs the offer did not name, bound to a track, by how (rid, mid, payload type).
    unsignaled: [u64; 3],
    dropped: [u64; Drop::ALL.len()],
}

impl ShardCounters {
    pub fn drop(&mut self, why: Drop) {
        self.dropped[why as usize] += 1;
    }

    pub fn dropped(&self, why: Drop) -> u64 {
        self.dropped[why as usize]
    }

    pub fn unsignaled_bound(&mut self, by: SsrcBinding) {
        let i = match by {
            SsrcBinding::Rid => 0,
            SsrcBinding::Mid => 1,
            SsrcBinding::PayloadType => 2,
        };
        self.unsignaled[i] += 1;
    }

    /// The wire snapshot (allocates; once per stats interval). `pacer`, `congestion`: the live
    /// sessions' counters (closed sessions' are added here) and the subscriptions paused now;
    /// `extra`: entries that are not drops (latency histograms `lat_*`, map sizes `map_*`), see
    /// docs/control-socket.md.
    pub fn snapshot(
        &self,
        worker: u16,
        sessions: u32,
        io: &IoStats,
        pacer: &PacerTotals,
        congestion: (&super::bwe::CongestionTotals, u64),
        extra: impl Iterator<Item = (String, u64)>,
    ) -> ShardStats {
        let mut dropped = BTreeMap::new();
        for why in Drop::ALL {
            let n = self.dropped(why);
            if n > 0 {
                dropped.insert(why.name().to_string(), n);
            }
        }
        let io_drops = [
            ("rx_truncated", io.rx_truncated),
            ("rx_errors", io.rx_errors),
            ("rx_pool_empty", io.rx_pool_empty),
            ("rx_queue_overflow", u64::from(io.rx_queue_drops)),
            ("tx_would_block", io.tx_would_block),
            ("tx_errors", io.tx_errors),
            ("bad_transmits", io.bad_transmits),
        ];
        // Not drops: retried sends. In the map because `Counters` only grows through it
        // (protocol rule); readers tell them apart by name.
        let delays = [
            ("send_retry", self.send_retry),
            ("send_stalls", self.send_stalls),
            ("tx_slots_busy", io.tx_slots_busy),
            ("gso_messages", io.tx_gso_messages),
            ("slow_path", self.slow_path),
            // Not drops either: handshakes refused, streams bound without a=ssrc (issue 20).
            ("dtls_failed", self.dtls_failed),
            ("unsignaled_ssrc_rid", self.unsignaled[0]),
            ("unsignaled_ssrc_mid", self.unsignaled[1]),
            ("unsignaled_ssrc_payload_type", self.unsignaled[2]),
        ];
        for (name, n) in io_drops.into_iter().chain(delays) {
            if n > 0 {
                dropped.insert(name.to_string(), n);
            }
        }
        // Pacer queueing delay, also through the map (same protocol rule). Always present, so a
        // reader can tell "no packet waited" from "this dataplane does not export it".
        let mut pacer_total = self.pacer_retired;
        pacer_total.merge(pacer);
        dropped.extend(pacer_total.entries());
        let mut cc = self.congestion_retired;
        cc.merge(congestion.0);
        dropped.extend(cc.entries(congestion.1));
        dropped.extend(extra);
        ShardStats {
            shard: worker,
            counters: Counters {
                rx_packets: self.rx_packets,
                tx_packets: self.tx_packets,
                rx_bytes: self.rx_bytes,
                tx_bytes: self.tx_bytes,
                dropped,
                sessions,
                loop_overruns: self.loop_overruns,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use rtp_core::pacer::ClassStats;

    use super::*;

    fn class(sent: u64, sum_ms: u64, max_ms: u64, bucket: usize) -> ClassStats {
        let mut c = ClassStats {
            sent,
            delay_sum: Duration::from_millis(sum_ms),
            delay_max: Duration::from_millis(max_ms),
            ..ClassStats::default()
        };
        c.delay_histogram[bucket] = sent;
        c
    }

    #[test]
    fn pacer_totals_sum_sessions_and_retired_ones() {
        let mut live = PacerStats::default();
        live.classes[0] = class(2, 0, 0, 0);
        live.classes[2] = class(3, 30, 25, 3);
        let mut closed = PacerStats::default();
        closed.classes[2] = class(1, 1500, 1500, DELAY_BUCKETS - 1);

        let mut counters = ShardCounters::default();
        counters.pacer_retired.add(&closed);
        let mut sum = PacerTotals::default();
        sum.add(&live);
        let cc = super::super::bwe::CongestionTotals::default();
        let snap = counters.snapshot(
            3,
            1,
            &IoStats::default(),
            &sum,
            (&cc, 0),
            std::iter::empty(),
        );
        let d = &snap.counters.dropped;
        assert_eq!(d["pacer_packets"], 6);
        assert_eq!(d["pacer_delay_us_sum"], 1_530_000);
        assert_eq!(d["pacer_delay_us_max"], 1_500_000);
        assert_eq!(d["pacer_delay_lt_1ms"], 2);
        assert_eq!(d["pacer_delay_lt_20ms"], 3);
        assert_eq!(d["pacer_delay_ge_1000ms"], 1);
        assert_eq!(d["pacer_delay_lt_5ms"], 0);
        // Nothing else: the map holds only the pacer entries (3 + one per bucket) and the
        // congestion ones (8 forwarder drop reasons, 2 probe totals, NACKs over budget, paused
        // tracks).
        assert_eq!(d.len(), 3 + DELAY_BUCKETS + 12);
        assert_eq!(d["forward_drop_not_current_layer"], 0);
        assert_eq!(d["nack_over_budget"], 0);
        assert_eq!(d["bwe_paused_tracks"], 0);
    }
}
