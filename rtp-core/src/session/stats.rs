//! [`SessionStats`]: a Session's counters, by direction and by drop reason,
//! plus the latest RTT and bandwidth estimate (and what set it). Plain integers, updated in
//! place: reading them never allocates.

use std::time::Duration;

use crate::bwe::EstimateSource;
use crate::forward::DropReason;

/// Packets the Forwarder did not forward, by reason (what `forward` skipped; not errors).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ForwardDrops {
    /// The DownTrack is muted or paused (by the subscriber, or by the allocator when allowed).
    pub paused: u64,
    /// Waiting for a keyframe (start, resume, layer switch).
    pub waiting_for_keyframe: u64,
    /// Another simulcast layer than the one forwarded.
    pub not_current_layer: u64,
    /// A temporal layer above the target.
    pub temporal_layer: u64,
    /// Padding-only packets of the publisher.
    pub padding: u64,
    /// Seen already.
    pub duplicate: u64,
    /// Too late for a consistent sequence number.
    pub too_late: u64,
    /// Unreadable payload descriptor.
    pub malformed: u64,
}

impl ForwardDrops {
    /// Every reason with its snake_case name, in a fixed order (metrics, stats).
    pub fn by_reason(&self) -> [(&'static str, u64); 8] {
        [
            ("paused", self.paused),
            ("waiting_for_keyframe", self.waiting_for_keyframe),
            ("not_current_layer", self.not_current_layer),
            ("temporal_layer", self.temporal_layer),
            ("padding", self.padding),
            ("duplicate", self.duplicate),
            ("too_late", self.too_late),
            ("malformed", self.malformed),
        ]
    }

    pub(super) fn count(&mut self, r: DropReason) {
        let c = match r {
            DropReason::Paused => &mut self.paused,
            DropReason::WaitingForKeyframe => &mut self.waiting_for_keyframe,
            DropReason::NotCurrentLayer => &mut self.not_current_layer,
            DropReason::TemporalLayer => &mut self.temporal_layer,
            DropReason::Padding => &mut self.padding,
            DropReason::Duplicate => &mut self.duplicate,
            DropReason::TooLate => &mut self.too_late,
            _ => &mut self.malformed,
        };
        *c += 1;
    }
}

/// Counters of one Session. Every dropped datagram increments exactly one
/// `drop_*` counter.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SessionStats {
    /// Datagrams given to `handle_datagram`.
    pub datagrams_in: u64,
    /// Their bytes.
    pub bytes_in: u64,
    /// STUN messages handled.
    pub stun_in: u64,
    /// DTLS datagrams handled.
    pub dtls_in: u64,
    /// RTP packets accepted (after unprotect), RTX included.
    pub rtp_in: u64,
    /// RTX packets recovered into their original stream.
    pub rtx_in: u64,
    /// SSRCs the offer did not name, bound to a track by RID, MID extension or payload type.
    pub unsignaled_bound: u64,
    /// Padding-only RTX packets (no OSN): bandwidth probes libwebrtc sends on the RTX SSRC.
    pub rtx_probes_in: u64,
    /// RTCP compounds accepted.
    pub rtcp_in: u64,
    /// NACKed sequence numbers turned into `Retransmit` outputs.
    pub nacks_in: u64,
    /// NACK packets cut short: the session's budget of NACKed sequence numbers
    /// (`nack::NACK_SEQS_PER_S`) was spent.
    pub nacks_over_budget: u64,
    /// PLI/FIR received and turned into `KeyframeWanted`.
    pub keyframe_requests_in: u64,
    /// Packets queued by `forward`.
    pub forwarded: u64,
    /// Packets `forward` dropped by Forwarder decision (not errors).
    pub forward_skipped: u64,
    /// The same by reason.
    pub forward_drops: ForwardDrops,
    /// Retransmissions queued.
    pub retransmitted: u64,
    /// Retransmit requests refused (unknown, stale or resent within the RTT).
    pub retransmit_suppressed: u64,
    /// Paced packets handed out by `poll_paced`.
    pub packets_out: u64,
    /// Their bytes.
    pub bytes_out: u64,
    /// RTCP datagrams written by `poll_transmit`.
    pub rtcp_out: u64,
    /// PLI/FIR sent towards the publisher.
    pub keyframe_requests_out: u64,
    /// NACKed sequence numbers sent towards the publisher.
    pub nacks_out: u64,
    /// Dropped: ZRTP, TURN channel or unknown first byte.
    pub drop_unsupported: u64,
    /// Dropped: STUN that does not parse or that the ICE agent refused.
    pub drop_stun: u64,
    /// Dropped: DTLS from an unvalidated address, or refused by the endpoint.
    pub drop_dtls: u64,
    /// Dropped: from an address ICE has not validated.
    pub drop_unvalidated_source: u64,
    /// Dropped: media/RTCP before the session was connected.
    pub drop_not_connected: u64,
    /// Dropped: SRTP/SRTCP tag did not verify.
    pub drop_auth: u64,
    /// Dropped: SRTP/SRTCP replayed or older than the replay window.
    pub drop_replay: u64,
    /// Dropped: any other SRTP failure (too short, malformed).
    pub drop_srtp_other: u64,
    /// Dropped: RTP that does not parse.
    pub drop_malformed_rtp: u64,
    /// Dropped: RTCP that does not parse (packets before the bad one are still used).
    pub drop_malformed_rtcp: u64,
    /// Dropped: RTP from an SSRC no track claims.
    pub drop_unknown_ssrc: u64,
    /// Dropped: unexpected payload type.
    pub drop_unknown_pt: u64,
    /// Not forwarded: media past its layer's packet budget (D123; received, so not NACKed).
    pub drop_over_budget: u64,
    /// Dropped: RTX that could not be unpacked (or padding-only probes).
    pub drop_rtx: u64,
    /// Dropped: DTLS application data (SCTP) on a session without data channels.
    pub drop_sctp: u64,
    /// Outputs or events dropped because nobody drained them.
    pub queue_overflow: u64,
    /// Latest round-trip time from RTCP reports.
    pub rtt: Option<Duration>,
    /// The latest receiver reports' mean fraction lost over our streams (RFC 3550 §6.4.1,
    /// /256; a packet repaired before the report counts as received).
    pub fraction_lost: Option<u8>,
    /// Latest send-side bandwidth estimate, bits per second.
    pub estimate_bps: u64,
    /// What set it.
    pub estimate_source: EstimateSource,
    /// Probe packets sent (padding written by `poll_probe`).
    pub probe_packets: u64,
    /// Their bytes.
    pub probe_bytes: u64,
    /// DownTracks the allocator has paused now (only with pausing allowed).
    pub bwe_paused_tracks: u32,
}
