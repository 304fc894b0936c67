//! The sans-IO peer Session: one ICE/DTLS/SRTP peer owned by one dataplane
//! shard, with the UpTracks it publishes and the DownTracks it receives.
//!
//! Wires the rtp-core pieces together; implements no protocol of its own:
//! RFC 7983 demux, ICE-lite / client (RFC 8445, RFC 7675), DTLS-SRTP
//! (RFC 5763, RFC 5764), SRTP/SRTCP (RFC 3711, RFC 7714), RTCP reports
//! (RFC 3550 §6.4) and feedback (RFC 4585 NACK/PLI, RFC 5104 FIR,
//! transport-cc, REMB), RTX (RFC 4588), pacing and send-side BWE.
//!
//! The NACK cache is NOT here: the shard keeps one `PacketHistory` per
//! (track, shard). A NACK from a subscriber becomes
//! [`SessionOutput::Retransmit`]; the shard looks the source packet up and
//! hands it back to [`Session::retransmit`].
//!
//! Files: `config` (what sessions and tracks are built from), `output`
//! (outputs, events, ids, errors), `stats`, `transport` (ICE + DTLS, source
//! validation), `up` / `down` (track state), `tracks` (adding, removing and
//! configuring tracks), `ingress` (handle_datagram:
//! STUN/DTLS/SRTP/RTP), `feedback` (incoming RTCP), `congestion` (the allocator, layer
//! rates, probe packets, per-DownTrack reports), `egress`
//! (forward, retransmit, pacing, client-side protect), `rtcp_out`
//! (poll_transmit: control datagrams and outgoing RTCP), `ring` (the fixed
//! output/event queues).
//!
//! After construction and track add, nothing on the media paths allocates
//! (handle_datagram for SRTP/SRTCP, forward, retransmit, poll_paced,
//! poll_transmit for RTCP): `tests/session_no_alloc.rs` checks it.

mod config;
mod congestion;
mod data;
mod down;
mod egress;
mod feedback;
mod handoff;
mod ingress;
mod liveness;
mod output;
mod ring;
mod rtcp_out;
mod stats;
mod tracks;
mod transport;
mod trunk;
mod trunk_cc;
mod up;

use std::time::{Duration, Instant};

pub use config::{DownTrackConfig, ExtIds, LayerSsrc, SessionConfig, SessionMode, UpTrackConfig};
pub use congestion::DownReport;
pub use output::{DownId, MediaMeta, SessionError, SessionEvent, SessionOutput, SsrcBinding, UpId};
pub use stats::{ForwardDrops, SessionStats};
pub use trunk::{TrunkKey, TrunkKeyError, TrunkKeys, MAX_NODE_NAME, MIN_TRUNK_SECRET};
pub use up::{MediaBudget, AUDIO_PACKETS_PER_S, VIDEO_PACKETS_PER_S};

use crate::bwe::{
    Allocator, AllocatorConfig, SendSideBwe, TrackDemand, TwccReceiver, TwccReceiverConfig,
};
use crate::datachannel::DataChannels;
use crate::dtls::{DtlsCert, DtlsEvent, Fingerprint};
use crate::net::Remote;
use crate::pacer::Pacer;
use crate::srtp::{SrtpConfig, SrtpContext};
use crate::time::{earliest, ntp_from_unix};

use down::DownTrack;
use ring::Ring;
use transport::{Happened, Transport};
use up::{UpTrack, MAX_UP_LAYERS};

/// Largest RTP/RTCP packet the session builds or unpacks in its scratch buffers.
pub const MAX_PACKET: usize = 1500;
/// Outputs one datagram may queue (an RTCP compound with many NACKs).
const OUTPUT_CAPACITY: usize = 256;
const EVENT_CAPACITY: usize = 32;
/// Pending STUN responses (answered checks not yet sent by `poll_transmit`).
const STUN_SLOTS: usize = 4;
const STUN_SLOT_LEN: usize = 256;
/// Mean RTCP report interval (RFC 3550 §6.2 lets a session pick its own;
/// WebRTC stacks use about a second). Randomised ×[0.5, 1.5].
const REPORT_INTERVAL: Duration = Duration::from_secs(1);
/// How often the allocator re-runs without new feedback (its upgrade hold
/// needs time to pass; periodic probes are decided then too).
const ALLOCATE_INTERVAL: Duration = Duration::from_millis(500);
/// How often each UpTrack's measured layer rates are reported (`SessionEvent::LayerRates`).
const LAYER_RATES_INTERVAL: Duration = Duration::from_millis(500);
/// libwebrtc paces at 2.5× the estimate so queues drain after a keyframe burst.
const PACING_FACTOR_X10: u64 = 25;
/// The pacer never runs below this share (×10) of what the allocator gave out: tracks kept
/// at their lowest layer over budget ("never starve") must not be starved by the pacer
/// instead (its queue would expire them, and the gaps read as loss in receiver reports).
const ALLOCATED_PACING_X10: u64 = 15;
/// Least spacing of `KeyframeWanted` raised by one DownTrack's Forwarder.
const KEYFRAME_ASK_INTERVAL: Duration = Duration::from_millis(250);
/// A retransmission of the same packet is refused within this (or the RTT,
/// if larger): several NACKs for it are usually in flight.
const MIN_RESEND_INTERVAL: Duration = Duration::from_millis(20);
/// SRTCP adds its index (4) and a tag (at most 16).
const SRTCP_OVERHEAD: usize = 20;

/// One item in the pacer: the caller's handle, its wire length, and the
/// transport-wide seq written into it (recorded in the BWE when it leaves).
#[derive(Debug, Clone, Copy)]
struct Paced<H: Copy> {
    handle: H,
    /// The datagram's length (at most `MAX_PACKET` + the SRTP tag).
    len: u16,
    twcc: Option<u16>,
}

/// One ICE/DTLS/SRTP peer; see the module docs. Generic over the pacer's
/// handle type (the dataplane uses its buffer id).
#[derive(Debug)]
pub struct Session<H: Copy = u32> {
    transport: Transport,
    /// Outbound and inbound SRTP, once DTLS keyed them.
    tx_srtp: Option<SrtpContext>,
    rx_srtp: Option<SrtpContext>,
    srtp_cfg: SrtpConfig,
    nack_cfg: crate::nack::NackConfig,
    /// Each published layer's packet budget (D123); `None` for a trunk, like `nack_budget`.
    media_budget: Option<MediaBudget>,
    ups: Vec<Option<UpTrack>>,
    /// DownTrack slots, grown by `add_down_track` up to `max_downs` (a slot is 688 bytes: the
    /// 64 a session may have, reserved up front, were 44 KB of every session).
    downs: Vec<Option<DownTrack>>,
    max_downs: usize,
    pacer: Pacer<Paced<H>>,
    bwe: SendSideBwe,
    allocator: Allocator,
    /// Allocator scratch: one demand and one result per DownTrack slot.
    demands: Vec<TrackDemand>,
    alloc_out: Vec<Option<u8>>,
    /// What the last allocation gave out (video layers and audio), bits per second.
    allocated_bps: u64,
    next_allocate: Instant,
    next_layer_rates: Instant,
    /// The DownTrack probe padding goes on (video, transport-cc, RTX or a flowing forwarder).
    probe_down: Option<usize>,
    twcc_rx: TwccReceiver,
    twcc_seq: u16,
    outputs: Ring<SessionOutput>,
    events: Ring<SessionEvent>,
    stun_out: Vec<[u8; STUN_SLOT_LEN]>,
    stun_pending: Ring<(usize, usize, Remote)>,
    stun_next_slot: usize,
    /// Scratch for RTX unpacking and retransmission rewrites.
    scratch: Vec<u8>,
    nack_scratch: [u16; 64],
    /// Sequence numbers the peer may still NACK (a flood costs the worker no more than this);
    /// `None` for a trunk, whose peer is another node of ours and may repair many relays.
    nack_budget: Option<crate::budget::Budget>,
    /// Our RTCP sender SSRC (receiver reports, feedback).
    local_ssrc: u32,
    next_report: Instant,
    /// DownTrack whose SR goes first in the next report (reports that do
    /// not fit one datagram continue where they stopped).
    report_cursor: usize,
    rng: u64,
    /// `(instant, wall time since the Unix epoch)` pair mapping `now` to NTP.
    wall_base: (Instant, Duration),
    last_now: Instant,
    stats: SessionStats,
    /// Data channels, when negotiated (boxed: most sessions have none).
    data: Option<Box<DataChannels>>,
    /// A trunk's silence detector (`None` for other sessions).
    liveness: Option<liveness::Liveness>,
    /// A trunk's relay shedding (`trunk_cc.rs`; `None` for other sessions).
    shedder: Option<crate::bwe::Shedder>,
    relay_loads: Vec<Option<crate::bwe::RelayLoad>>,
    /// The latest removed DownTracks' output state, by SSRC (`handoff.rs`, D110).
    handoffs: handoff::Handoffs,
}

impl<H: Copy> Session<H> {
    /// A session in `config.mode`. All per-packet storage is allocated here
    /// (and in `add_up_track` / `add_down_track`).
    pub fn new(now: Instant, config: SessionConfig, cert: &DtlsCert) -> Result<Self, SessionError> {
        if config.max_up_tracks == 0 && config.max_down_tracks == 0
            || config.max_up_tracks > usize::from(u16::MAX)
            || config.max_down_tracks > usize::from(u16::MAX)
        {
            return Err(SessionError::InvalidConfig);
        }
        let seed = seed_of(&config.mode);
        let (trunk_keys, liveness) = match &config.mode {
            SessionMode::Trunk { keys, silence, .. } => {
                if silence.is_zero() {
                    return Err(SessionError::InvalidConfig);
                }
                (keys.clone(), Some(liveness::Liveness::new(now, *silence)))
            }
            _ => (None, None),
        };
        let transport = Transport::new(now, config.mode, cert, &config.dtls)
            .map_err(|_| SessionError::InvalidConfig)?;
        let max_down = config.max_down_tracks;
        let mut rng = seed | 1;
        let local_ssrc = (xorshift(&mut rng) as u32).max(1);
        let mut s = Self {
            transport,
            tx_srtp: None,
            rx_srtp: None,
            srtp_cfg: config.srtp,
            nack_cfg: config.nack,
            media_budget: liveness.is_none().then_some(config.media_budget),
            ups: (0..config.max_up_tracks).map(|_| None).collect(),
            downs: Vec::new(),
            max_downs: max_down,
            pacer: Pacer::new(config.pacer, now),
            bwe: SendSideBwe::new(config.bwe),
            allocator: Allocator::new(AllocatorConfig {
                max_tracks: max_down.max(1),
                ..config.allocator
            }),
            demands: Vec::with_capacity(max_down),
            alloc_out: vec![None; max_down],
            allocated_bps: 0,
            next_allocate: now,
            next_layer_rates: now + LAYER_RATES_INTERVAL,
            probe_down: None,
            twcc_rx: TwccReceiver::new(TwccReceiverConfig::default()),
            twcc_seq: 0,
            outputs: Ring::new(OUTPUT_CAPACITY),
            events: Ring::new(EVENT_CAPACITY),
            stun_out: vec![[0; STUN_SLOT_LEN]; STUN_SLOTS],
            stun_pending: Ring::new(STUN_SLOTS),
            stun_next_slot: 0,
            scratch: vec![0; MAX_PACKET],
            nack_scratch: [0; 64],
            nack_budget: liveness
                .is_none()
                .then(|| crate::budget::Budget::new(crate::nack::NACK_SEQS_PER_S, now)),
            local_ssrc,
            next_report: now,
            report_cursor: 0,
            rng,
            wall_base: (now, Duration::ZERO),
            last_now: now,
            stats: SessionStats::default(),
            data: None,
            shedder: liveness.map(|_| trunk_cc::shedder(max_down)),
            relay_loads: Vec::with_capacity(max_down),
            liveness,
            handoffs: handoff::Handoffs::default(),
        };
        s.stats.estimate_bps = s.bwe.estimate_bps();
        s.next_report = now + s.report_interval();
        if let Some(keys) = trunk_keys {
            s.key_trunk(&keys)?;
        }
        if !s.transport.is_secure() {
            s.update_pacing();
        }
        Ok(s)
    }

    /// The peer's DTLS fingerprint arrived (remote description after the offer).
    pub fn set_remote_fingerprint(&mut self, fp: Fingerprint) {
        if let Some(d) = self.transport.dtls_mut() {
            d.set_remote_fingerprint(fp);
        }
        self.pump();
    }

    /// Map `now` to wall-clock time (Unix epoch based) for the NTP fields of
    /// sender reports. Without it the session's NTP clock starts at the Unix
    /// epoch at construction, which is enough for RTT (we only compare our
    /// own timestamps) but not for lip sync across senders.
    pub fn set_wall_clock(&mut self, now: Instant, since_unix_epoch: Duration) {
        self.wall_base = (now, since_unix_epoch);
    }

    /// ICE restart with new local credentials (RFC 8445 §9). For a
    /// `WebRtcClient`, `remote_ufrag` replaces the server's ufrag and the
    /// server's password is kept.
    pub fn ice_restart(&mut self, ufrag: &str, pwd: &str, remote_ufrag: Option<&str>) {
        self.transport.ice_restart(ufrag, pwd, remote_ufrag);
    }

    /// Whether DTLS and media from `src` are accepted: an address that passed an authenticated
    /// ICE check and is still in the agent's candidate table (always true for plain RTP, whose
    /// remote is configured). The shard enters an address in its demux maps only when this
    /// holds, and forgets the ones it no longer holds for (the candidate table evicted them).
    pub fn is_validated(&self, src: Remote) -> bool {
        self.transport.accepts(src)
    }

    /// The caller's transport to `remote` is gone (its TCP connection closed): it is no longer
    /// a valid pair, and if media went there the session is disconnected at once
    /// ([`SessionEvent::IceDisconnected`]) until the peer nominates another pair.
    pub fn remote_closed(&mut self, remote: Remote) {
        self.transport.forget(remote);
        self.pump();
    }

    /// Where media goes: the ICE-selected address, or the plain remote.
    pub fn remote_addr(&self) -> Option<Remote> {
        self.transport.remote_addr()
    }

    /// Our current ICE ufrag, for the shard's STUN demux table.
    pub fn local_ufrag(&self) -> Option<&str> {
        self.transport.local_ufrag()
    }

    /// Media may flow: ICE + DTLS done (or plain RTP).
    pub fn is_connected(&self) -> bool {
        if !self.transport.is_secure() {
            return true;
        }
        self.tx_srtp.is_some() && self.transport.remote_addr().is_some()
    }

    /// Counters by reason, packets/bytes in/out, RTT, estimate.
    pub fn stats(&self) -> &SessionStats {
        &self.stats
    }

    /// Pacer counters (queue depth, delay).
    pub fn pacer_stats(&self) -> &crate::pacer::PacerStats {
        self.pacer.stats()
    }

    /// The pacer's current rate: 2.5 × the estimate, at least 1.5 × what is allocated.
    pub fn pacing_rate_bps(&self) -> u64 {
        self.pacer.rate_bps()
    }

    /// Our RTCP sender SSRC.
    pub fn local_ssrc(&self) -> u32 {
        self.local_ssrc
    }

    /// The next event, oldest first.
    pub fn poll_event(&mut self) -> Option<SessionEvent> {
        self.events.pop().or_else(|| self.poll_data_event())
    }

    /// More outputs produced by the last `handle_datagram` (an RTCP
    /// compound can hold many NACKs), and `KeyframeWanted` raised by
    /// `forward` / `handle_timeout`: drain after each of those calls.
    pub fn poll_output(&mut self) -> Option<SessionOutput> {
        self.outputs.pop()
    }

    /// Earliest of ICE, DTLS, SCTP, RTCP report, NACK, feedback, pacer and allocation timers.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut t = self.transport.poll_timeout();
        if let Some(d) = &self.data {
            t = earliest(t, d.poll_timeout());
        }
        if self.is_connected() {
            t = earliest(t, Some(self.next_report));
            t = earliest(t, self.twcc_rx.poll_timeout());
            for up in self.ups.iter().flatten() {
                for l in &up.layers {
                    t = earliest(t, l.nack.poll_timeout());
                    if l.pli_due {
                        t = earliest(t, Some(self.last_now));
                    }
                }
            }
            if self.downs.iter().any(Option::is_some) {
                t = earliest(t, Some(self.next_allocate));
            }
            if self.ups.iter().any(Option::is_some) {
                t = earliest(t, Some(self.next_layer_rates));
            }
            t = earliest(t, self.bwe.probe_due());
            t = earliest(t, self.liveness.and_then(|l| l.deadline()));
        }
        earliest(t, self.pacer.poll_timeout())
    }

    /// Run every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.last_now = self.last_now.max(now);
        self.transport.handle_timeout(now);
        self.pump();
        if let Some(d) = self.data.as_mut() {
            d.handle_timeout(now);
        }
        for up in self.ups.iter_mut().flatten() {
            for l in &mut up.layers {
                l.nack.handle_timeout(now);
            }
        }
        self.pacer.handle_timeout(now);
        self.check_liveness(now);
        if now >= self.next_allocate {
            self.allocate(now);
            if self.is_connected() {
                self.bwe.handle_timeout(now);
            }
        }
        if now >= self.next_layer_rates {
            self.next_layer_rates = now + LAYER_RATES_INTERVAL;
            self.report_layer_rates(now);
        }
    }

    /// Drain ICE and DTLS happenings into events and state (SRTP keying),
    /// and DTLS application data into SCTP.
    fn pump(&mut self) {
        while let Some(h) = self.transport.poll_happened() {
            match h {
                Happened::Session(e) => self.push_event(e),
                Happened::Dtls(DtlsEvent::Connected { profile, version }) => {
                    self.key_srtp();
                    self.push_event(SessionEvent::DtlsConnected { profile, version });
                    if let Some(d) = self.data.as_mut() {
                        d.on_dtls_connected();
                    }
                }
                Happened::Dtls(DtlsEvent::Failed(f)) => {
                    self.push_event(SessionEvent::DtlsFailed {
                        reason: f.to_string(),
                    });
                    if let Some(d) = self.data.as_mut() {
                        d.on_dtls_closed();
                    }
                }
                Happened::Dtls(_) => {
                    self.tx_srtp = None;
                    self.rx_srtp = None;
                    if let Some(d) = self.data.as_mut() {
                        d.on_dtls_closed();
                    }
                }
            }
        }
        self.pump_sctp_in();
    }

    /// The SRTP settings with a slot for every SSRC we send (media + RTX per DownTrack, our
    /// RTCP SSRC) and receive (media + RTX per UpTrack layer).
    fn srtp_config(&self) -> SrtpConfig {
        let need = (self.max_downs.max(self.ups.len() * MAX_UP_LAYERS)) * 2 + 4;
        SrtpConfig {
            max_ssrcs: self.srtp_cfg.max_ssrcs.max(need),
            ..self.srtp_cfg
        }
    }

    /// A trunk's SRTP contexts from its derived keys: connected from the start.
    fn key_trunk(&mut self, keys: &TrunkKeys) -> Result<(), SessionError> {
        let cfg = self.srtp_config();
        let ctx = |k: &TrunkKey| {
            SrtpContext::new(TrunkKeys::PROFILE, &k.master_key, &k.master_salt, cfg)
                .map_err(|_| SessionError::InvalidConfig)
        };
        self.tx_srtp = Some(ctx(&keys.tx)?);
        self.rx_srtp = Some(ctx(&keys.rx)?);
        self.update_pacing();
        Ok(())
    }

    fn key_srtp(&mut self) {
        let cfg = self.srtp_config();
        let Some(dtls) = self.transport.dtls_mut() else {
            return;
        };
        if let Some((tx, rx)) = dtls.srtp_contexts(cfg) {
            self.tx_srtp = Some(tx);
            self.rx_srtp = Some(rx);
            self.update_pacing();
            // Allocate (and start probing) at the next timer.
            self.next_allocate = self.last_now;
        }
    }

    fn push_event(&mut self, e: SessionEvent) {
        if !self.events.push(e) {
            self.stats.queue_overflow += 1;
        }
    }

    fn push_output(&mut self, o: SessionOutput) {
        if !self.outputs.push(o) {
            self.stats.queue_overflow += 1;
        }
    }

    /// NTP time (RFC 3550 §4) at `now`.
    fn wall_ntp(&self, now: Instant) -> u64 {
        let (at, wall) = self.wall_base;
        ntp_from_unix(wall + now.saturating_duration_since(at))
    }

    fn report_interval(&mut self) -> Duration {
        // ×[0.5, 1.5) from the session's seeded generator (RFC 3550 §6.3.1
        // randomises to avoid synchronised reports).
        // A trunk's reports are its keepalive (`liveness.rs`): ×[0.5, 1.0) of 500 ms.
        let r = xorshift(&mut self.rng) % 1000;
        if self.liveness.is_some() {
            let i = liveness::TRUNK_REPORT_INTERVAL;
            return i / 2 + i / 2 * r as u32 / 1000;
        }
        REPORT_INTERVAL / 2 + REPORT_INTERVAL * r as u32 / 1000
    }
}

/// A deterministic per-session seed (SSRC and report jitter) from the
/// credentials, so two sessions of one shard differ without a clock read.
fn seed_of(mode: &SessionMode) -> u64 {
    let bytes: &[u8] = match mode {
        SessionMode::WebRtc { ice, .. } => ice.local_ufrag.as_bytes(),
        SessionMode::WebRtcClient { ice, .. } => ice.local_ufrag.as_bytes(),
        SessionMode::PlainRtp { .. } => b"plain",
        SessionMode::Trunk { .. } => b"trunk",
    };
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    if let SessionMode::PlainRtp { remote } | SessionMode::Trunk { remote, .. } = mode {
        h ^= u64::from(remote.port()) << 17;
    }
    h
}

fn xorshift(s: &mut u64) -> u64 {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    *s
}
