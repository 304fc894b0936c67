//! A shard's plain counters (no atomics: only the shard writes them; a snapshot travels to the
//! control thread every `stats_interval_ms`). Drops are counted by a fixed set of reasons so the
//! per-packet path only increments an array slot.

use std::collections::BTreeMap;

use rtp_core::session::SessionError;
use rtp_core::srtp::SrtpError;

use crate::proto::{Counters, WorkerStats};
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
}

impl Drop {
    const ALL: [Drop; 22] = [
        Drop::UnknownSource,
        Drop::SessionRejected,
        Drop::UnknownTrack,
        Drop::Parse,
        Drop::PoolEmpty,
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
        }
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
    /// Times the receive loop drained the pacers early because the pool ran low.
    pub early_drains: u64,
    dropped: [u64; Drop::ALL.len()],
}

impl ShardCounters {
    pub fn drop(&mut self, why: Drop) {
        self.dropped[why as usize] += 1;
    }

    pub fn dropped(&self, why: Drop) -> u64 {
        self.dropped[why as usize]
    }

    /// The wire snapshot (allocates; once per stats interval).
    pub fn snapshot(&self, worker: u16, sessions: u32, io: &IoStats) -> WorkerStats {
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
            ("early_drains", self.early_drains),
        ];
        for (name, n) in io_drops.into_iter().chain(delays) {
            if n > 0 {
                dropped.insert(name.to_string(), n);
            }
        }
        WorkerStats {
            worker,
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
