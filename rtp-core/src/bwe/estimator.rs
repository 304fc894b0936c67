//! Send-side bandwidth estimate (draft-ietf-rmcat-gcc-02 §4–§6): transport-cc
//! feedback is matched against the send history, packets are grouped into
//! 5 ms send bursts, the inter-group delay variation feeds the trendline
//! detector and the AIMD controller; loss (from feedback and receiver
//! reports) feeds the loss controller; probe clusters ([`Prober`]) raise the
//! estimate to what the path was seen to carry.
//!
//! A REMB is a receiver's opinion, not a measurement of the path: aiortc reports about 1.5 × its
//! received rate, Chromium repeats a low figure for streams without transport-cc. So a REMB
//! caps the estimate only while it is below what we send (non-audio) and falling — a receiver
//! signalling congestion — and until a REMB at or above what we send, or `remb_timeout`
//! without one. Without transport-cc feedback the estimate is the loss-based rate (receiver
//! reports' fraction lost), under that cap.

use std::time::{Duration, Instant};

use super::aimd::Aimd;
use super::loss::LossController;
use super::probe::{ProbeConfig, ProbeStats, Prober};
use super::rate::RateMeter;
use super::send_history::SendHistory;
use super::trendline::{BandwidthUsage, Trendline, TrendlineConfig};
use super::twcc::{decode_fci, status_count, TwccError, TwccPacket};

/// What set the current estimate.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum EstimateSource {
    /// No feedback yet: the start value.
    #[default]
    Initial,
    /// The delay-based controller on transport-cc feedback.
    Twcc,
    /// A receiver's REMB, trusted as a ceiling (below what we send and falling).
    Remb,
    /// The loss-based controller (feedback or receiver-report loss).
    Loss,
    /// A probe cluster's result, not contradicted by later feedback yet.
    Probe,
}

impl EstimateSource {
    /// The lower-case name used in stats (`twcc`, `remb`, `loss`, `probe`, `initial`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Initial => "initial",
            Self::Twcc => "twcc",
            Self::Remb => "remb",
            Self::Loss => "loss",
            Self::Probe => "probe",
        }
    }
}

/// Configuration of a [`SendSideBwe`].
#[derive(Debug, Clone, Copy)]
pub struct SendSideBweConfig {
    /// Most sent packets remembered for matching feedback; a session whose `max_bps` is lower
    /// keeps fewer ([`SendSideBweConfig::history_len`]).
    pub history_capacity: usize,
    /// Most packets decoded from one feedback message (the rest are skipped).
    pub max_feedback_packets: usize,
    /// Lower bound of the estimate.
    pub min_bps: u64,
    /// Upper bound of the estimate.
    pub max_bps: u64,
    /// Estimate before any feedback.
    pub start_bps: u64,
    /// A REMB older than this no longer caps the estimate.
    pub remb_timeout: Duration,
    /// Over-use detector tuning.
    pub trendline: TrendlineConfig,
    /// Probing (runs only once enabled with [`SendSideBwe::set_probing`]).
    pub probe: ProbeConfig,
}

impl Default for SendSideBweConfig {
    fn default() -> Self {
        Self {
            history_capacity: 8192,
            max_feedback_packets: 2048,
            min_bps: 30_000,
            max_bps: 20_000_000,
            start_bps: 1_000_000,
            remb_timeout: Duration::from_secs(3),
            trendline: TrendlineConfig::default(),
            probe: ProbeConfig::default(),
        }
    }
}

impl SendSideBweConfig {
    /// Sent packets the history keeps: two seconds of packets averaging 500 bytes at
    /// `max_bps` — feedback comes every 50–100 ms, an RTT after the packets it reports, and
    /// a record older than that is never looked up — at least [`MIN_HISTORY`], at most
    /// `history_capacity`. 8,192 records (128 KiB) for every session were most of what a
    /// subscriber cost in memory; a session capped at 4 Mbit/s keeps 2,048 (docs/decisions.md
    /// D116).
    pub fn history_len(&self) -> usize {
        let two_seconds = (self.max_bps / 8 * 2 / 500) as usize;
        two_seconds
            .next_power_of_two()
            .max(MIN_HISTORY)
            .min(self.history_capacity.max(1))
    }
}

/// The fewest sent packets a history keeps: 0.6 s of 64 audio tracks at 50 packets a second
/// each (audio is not paced, so a cap on bits is no cap on packets).
pub const MIN_HISTORY: usize = 2_048;

/// Packets sent within this span of a group's first packet form one group.
const BURST_US: i64 = 5_000;
/// Acked-rate measurement window (on the receiver's clock).
/// 250 ms (libwebrtc's acknowledged-bitrate window is 150 ms once running): at the onset of
/// congestion the rate an over-use decrease starts from must already be the path's, not what
/// was sent before the path narrowed (half a second at the old rate meant two or three
/// decreases, each costing a layer switch).
const ACKED_WINDOW_US: i64 = 250_000;
/// Feedback-derived loss is evaluated over at least this many packets...
const LOSS_MIN_PACKETS: u32 = 20;
/// ...and at least this much time.
const LOSS_MIN_INTERVAL: Duration = Duration::from_millis(250);
/// No periodic probe this long after the estimate fell.
const PROBE_HOLDOFF: Duration = Duration::from_millis(1500);
/// Growth per second of the loss-based rate under low loss.
const LOSS_INCREASE_PER_S: f64 = 1.08;

/// One send-time group (GCC §5.1 pre-filtering).
#[derive(Debug, Clone, Copy)]
struct Group {
    first_send_us: i64,
    last_send_us: i64,
    last_arrival_us: i64,
}

/// Received bytes over a window of arrival time.
#[derive(Debug, Default)]
struct AckedRate {
    start_us: Option<i64>,
    last_us: i64,
    bytes: u64,
    rate_bps: Option<f64>,
}

/// A window in progress this long already says what the path carries now.
const ACKED_RECENT_MIN_US: i64 = 100_000;

impl AckedRate {
    /// What an over-use decrease starts from: the last full window's rate, or the window in
    /// progress when that is lower and already 100 ms long (the path just narrowed).
    fn for_decrease(&self) -> Option<f64> {
        let recent = self.start_us.and_then(|s| {
            let span = self.last_us - s;
            (span >= ACKED_RECENT_MIN_US).then(|| self.bytes as f64 * 8.0 * 1e6 / span as f64)
        });
        match (self.rate_bps, recent) {
            (Some(r), Some(n)) => Some(r.min(n)),
            (r, n) => r.or(n),
        }
    }

    fn on_acked(&mut self, arrival_us: i64, size: u32) {
        let start = *self.start_us.get_or_insert(arrival_us);
        self.last_us = self.last_us.max(arrival_us);
        self.bytes += u64::from(size);
        let span = arrival_us - start;
        if span >= ACKED_WINDOW_US {
            self.rate_bps = Some(self.bytes as f64 * 8.0 * 1e6 / span as f64);
            self.start_us = Some(arrival_us);
            self.bytes = 0;
        } else if span < 0 {
            // Reordered across the window start or a clock jump: restart.
            self.start_us = Some(arrival_us);
            self.bytes = u64::from(size);
        }
    }
}

/// Send-side bandwidth estimator fed by transport-cc feedback, REMB and
/// receiver-report loss. All storage is allocated in [`SendSideBwe::new`].
#[derive(Debug)]
pub struct SendSideBwe {
    cfg: SendSideBweConfig,
    base: Option<Instant>,
    history: SendHistory,
    scratch: Vec<TwccPacket>,
    trendline: Trendline,
    aimd: Aimd,
    loss: LossController,
    acked: AckedRate,
    current: Option<Group>,
    previous: Option<Group>,
    usage: BandwidthUsage,
    /// The latest REMB, and the cap in force (see the module docs).
    remb_last: Option<u64>,
    remb_cap: Option<(u64, Instant)>,
    /// What we send that is not audio (a REMB is compared with it) and everything.
    sent_media: RateMeter,
    sent_all: RateMeter,
    prober: Prober,
    /// Transport-cc feedback arrived: the delay-based rate counts.
    twcc_seen: bool,
    loss_seen: bool,
    /// The delay-based rate was last raised by a probe (and not decreased since).
    probe_raised: bool,
    desired_bps: u64,
    /// When the estimate last fell by 10 % or more (no periodic probe for a while after).
    last_drop: Option<Instant>,
    source: EstimateSource,
    loss_received: u32,
    loss_lost: u32,
    last_loss_eval: Option<Instant>,
    /// Packets transport-cc feedback reported received and lost, since the start.
    feedback_totals: (u64, u64),
    latest_now: Option<Instant>,
    estimate_bps: u64,
}

impl SendSideBwe {
    /// An estimator with the storage `cfg` asks for.
    pub fn new(cfg: SendSideBweConfig) -> Self {
        let start = cfg.start_bps as f64;
        Self {
            history: SendHistory::new(cfg.history_len()),
            scratch: Vec::with_capacity(cfg.max_feedback_packets.max(1)),
            trendline: Trendline::new(cfg.trendline),
            aimd: Aimd::new(start),
            loss: LossController::new(start, LOSS_INCREASE_PER_S),
            acked: AckedRate::default(),
            current: None,
            previous: None,
            usage: BandwidthUsage::Normal,
            remb_last: None,
            remb_cap: None,
            sent_media: RateMeter::new(Duration::from_secs(1)),
            sent_all: RateMeter::new(Duration::from_secs(1)),
            prober: Prober::new(cfg.probe),
            twcc_seen: false,
            loss_seen: false,
            probe_raised: false,
            desired_bps: 0,
            last_drop: None,
            source: EstimateSource::Initial,
            loss_received: 0,
            loss_lost: 0,
            last_loss_eval: None,
            feedback_totals: (0, 0),
            latest_now: None,
            estimate_bps: cfg
                .start_bps
                .clamp(cfg.min_bps, cfg.max_bps.max(cfg.min_bps)),
            base: None,
            cfg,
        }
    }

    /// Sets the bounds and restarts both controllers at `start_bps`.
    pub fn set_bounds(&mut self, min_bps: u64, max_bps: u64, start_bps: u64) {
        self.cfg.min_bps = min_bps;
        self.cfg.max_bps = max_bps.max(min_bps);
        self.cfg.start_bps = start_bps;
        self.aimd.reset(start_bps as f64);
        self.loss.reset(start_bps as f64);
        self.recompute();
    }

    /// The current estimate in bits per second.
    pub fn estimate_bps(&self) -> u64 {
        self.estimate_bps
    }

    /// The latest over-use detector state.
    pub fn usage(&self) -> BandwidthUsage {
        self.usage
    }

    /// Packets transport-cc feedback reported `(received, lost)` since the start (a packet
    /// reported lost and then received counts in both): the path's loss before any repair, as a
    /// retransmission carries a new transport-wide sequence number.
    pub fn feedback_totals(&self) -> (u64, u64) {
        self.feedback_totals
    }

    /// The acked (received) bitrate measured from feedback, once known.
    pub fn acked_bps(&self) -> Option<u64> {
        self.acked.rate_bps.map(|r| r as u64)
    }

    /// What set the current estimate.
    pub fn source(&self) -> EstimateSource {
        self.source
    }

    /// The REMB cap in force, if any.
    pub fn remb_cap_bps(&self) -> Option<u64> {
        self.remb_cap.map(|(r, _)| r)
    }

    /// What was sent over the last second, all packets.
    pub fn sent_bps(&mut self, now: Instant) -> u64 {
        self.sent_all.rate_bps(now).unwrap_or(0)
    }

    /// The estimator's upper bound.
    pub fn max_bps(&self) -> u64 {
        self.cfg.max_bps
    }

    /// Probing counters.
    pub fn probe_stats(&self) -> &ProbeStats {
        self.prober.stats()
    }

    /// Records a packet carrying transport-wide `twcc_seq` leaving at `now`.
    pub fn on_packet_sent(&mut self, now: Instant, twcc_seq: u16, size: usize) {
        self.on_sent(now, Some(twcc_seq), size, false);
    }

    /// Records any packet leaving at `now` (its transport-wide seq when it has one; `audio`
    /// packets are left out of the rate a REMB is compared with). Media sent while a probe
    /// cluster runs counts towards it.
    pub fn on_sent(&mut self, now: Instant, twcc_seq: Option<u16>, size: usize, audio: bool) {
        self.sent_all.add(now, size);
        if !audio {
            self.sent_media.add(now, size);
        }
        let Some(seq) = twcc_seq else { return };
        let cluster = self.prober.on_sent(now, size, false).unwrap_or(0);
        self.record(now, seq, size, cluster);
    }

    /// Records a probe (padding) packet leaving at `now`, sent because [`Self::probe_due`] said so.
    pub fn on_probe_sent(&mut self, now: Instant, twcc_seq: u16, size: usize) {
        self.sent_all.add(now, size);
        self.sent_media.add(now, size);
        let cluster = self.prober.on_sent(now, size, true).unwrap_or(0);
        self.record(now, twcc_seq, size, cluster);
    }

    fn record(&mut self, now: Instant, seq: u16, size: usize, cluster: u16) {
        let base = *self.base.get_or_insert(now);
        let send_us = now.saturating_duration_since(base).as_micros() as i64;
        self.history.insert(seq, send_us, size, cluster);
    }

    /// Probing needs transport-cc feedback and something to pad on; the owner says when it has
    /// both. The start clusters go out at the first [`Self::handle_timeout`] after enabling.
    pub fn set_probing(&mut self, enabled: bool) {
        self.prober.set_enabled(enabled);
    }

    /// What the owner would send without a budget (every track at its best layer): while it
    /// exceeds the estimate, a probe goes out every 1–2 s.
    pub fn set_desired(&mut self, desired_bps: u64) {
        self.desired_bps = desired_bps;
    }

    /// When the next probe packet is due (at or before `now`: send one and report it with
    /// [`Self::on_probe_sent`]).
    pub fn probe_due(&self) -> Option<Instant> {
        self.prober.next_send()
    }

    /// Probe scheduling: the start clusters, periodic probes, timeouts. No periodic probe
    /// within [`PROBE_HOLDOFF`] of a drop of the estimate: the path just said it is full, and
    /// a probe into the queue it built reads as room that is not there.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.prober.enabled() {
            self.prober.start(now, self.estimate_bps, self.cfg.max_bps);
        }
        let settled = self
            .last_drop
            .is_none_or(|t| now.saturating_duration_since(t) >= PROBE_HOLDOFF);
        let desired = if settled { self.desired_bps } else { 0 };
        self.prober
            .tick(now, self.estimate_bps, desired, self.cfg.max_bps);
    }

    /// Processes the FCI of a transport-cc feedback packet.
    pub fn on_transport_feedback(&mut self, now: Instant, fci: &[u8]) -> Result<(), TwccError> {
        self.latest_now = Some(now);
        // The scratch is reserved once and written only as far as the largest feedback so far
        // reached (a subscriber's usual feedback covers tens of packets, not the 2,048 the
        // bound allows): grown within the reservation, never reallocated.
        let need = status_count(fci).min(self.cfg.max_feedback_packets.max(1));
        if self.scratch.len() < need {
            self.scratch.resize(need, TwccPacket::default());
        }
        let summary = decode_fci(fci, &mut self.scratch)?;
        for i in 0..summary.written {
            let p = self.scratch[i];
            let Some(sent) = self.history.lookup_mut(p.seq) else {
                continue; // unknown or evicted: nothing to learn
            };
            let Some(arrival_us) = p.arrival_us else {
                if !sent.acked() {
                    self.loss_lost += 1;
                    self.feedback_totals.1 += 1;
                    if sent.cluster != 0 {
                        self.prober
                            .on_feedback(sent.cluster, sent.send_us, None, sent.size());
                    }
                }
                continue;
            };
            if sent.acked() {
                continue; // reported twice (overlapping feedback)
            }
            sent.set_acked();
            let (send_us, size, cluster) = (sent.send_us, sent.size(), sent.cluster);
            self.loss_received += 1;
            self.feedback_totals.0 += 1;
            self.acked.on_acked(arrival_us, size);
            self.on_arrival(send_us, arrival_us);
            if cluster != 0 {
                self.prober
                    .on_feedback(cluster, send_us, Some(arrival_us), size);
            }
        }
        self.twcc_seen = true;
        let before = self.aimd.rate_bps();
        // GCC decreases to β × the acked rate: right when the path carries less than we send
        // (a bottleneck), wrong when we are application-limited (an SFU sends what publishers
        // send): then the acked rate is only our media, and an over-use signal (a probe's
        // queue, a burst) would throw away the capacity a probe just found. Application-
        // limited means the path delivered about all we sent; then the decrease is β × the
        // current rate.
        let acked = self.acked.for_decrease();
        let sent = self.sent_all.rate_bps(now).unwrap_or(0) as f64;
        let decrease_from = match acked {
            Some(a) if a >= 0.9 * sent => Some(self.aimd.rate_bps().max(a)),
            other => other,
        };
        self.aimd
            .update(now, self.usage, self.acked.rate_bps, decrease_from);
        if self.aimd.rate_bps() < before {
            self.probe_raised = false;
        }
        self.evaluate_feedback_loss(now);
        while let Some((target, result)) = self.prober.poll_result() {
            if let Some(r) = result {
                self.apply_probe(r);
            }
            self.recompute();
            self.prober
                .on_result(now, target, result, self.estimate_bps, self.cfg.max_bps);
        }
        self.recompute();
        Ok(())
    }

    /// A probe saw the path carry `bps`: the estimate rises to it (never falls by it).
    fn apply_probe(&mut self, bps: u64) {
        let r = (bps as f64).min(self.cfg.max_bps as f64);
        if r > self.aimd.rate_bps() {
            self.aimd.reset(r);
            self.probe_raised = true;
        }
        if r > self.loss.rate_bps() {
            self.loss.reset(r);
        }
    }

    /// Grouping and the detector for one received packet.
    fn on_arrival(&mut self, send_us: i64, arrival_us: i64) {
        let Some(cur) = self.current.as_mut() else {
            self.current = Some(Group {
                first_send_us: send_us,
                last_send_us: send_us,
                last_arrival_us: arrival_us,
            });
            return;
        };
        if send_us < cur.first_send_us {
            return; // reordered into an already closed group
        }
        if send_us - cur.first_send_us <= BURST_US {
            cur.last_send_us = cur.last_send_us.max(send_us);
            cur.last_arrival_us = cur.last_arrival_us.max(arrival_us);
            return;
        }
        let done = *cur;
        if let Some(prev) = self.previous {
            let send_delta = done.last_send_us - prev.last_send_us;
            let arrival_delta = done.last_arrival_us - prev.last_arrival_us;
            let variation_ms = (arrival_delta - send_delta) as f64 / 1000.0;
            self.usage = self
                .trendline
                .update(variation_ms, done.last_arrival_us as f64 / 1000.0);
        }
        self.previous = Some(done);
        self.current = Some(Group {
            first_send_us: send_us,
            last_send_us: send_us,
            last_arrival_us: arrival_us,
        });
    }

    fn evaluate_feedback_loss(&mut self, now: Instant) {
        let total = self.loss_received + self.loss_lost;
        let since = *self.last_loss_eval.get_or_insert(now);
        if total < LOSS_MIN_PACKETS || now.saturating_duration_since(since) < LOSS_MIN_INTERVAL {
            return;
        }
        let fraction = f64::from(self.loss_lost) / f64::from(total);
        self.loss_seen = true;
        self.loss.on_loss(now, fraction, self.estimate_bps as f64);
        self.loss_received = 0;
        self.loss_lost = 0;
        self.last_loss_eval = Some(now);
    }

    /// A REMB (draft-alvestrand-rmcat-remb) from the receiver: a ceiling only while below
    /// what we send and falling (module docs).
    pub fn on_remb(&mut self, now: Instant, bitrate_bps: u64) {
        self.latest_now = Some(now);
        let sent = self.sent_media.rate_bps(now).unwrap_or(0);
        let falling = self.remb_last.is_some_and(|prev| bitrate_bps < prev);
        self.remb_last = Some(bitrate_bps);
        if bitrate_bps >= sent {
            // The receiver keeps up with all we send: nothing to cap.
            self.remb_cap = None;
        } else if falling || self.remb_cap.is_some() {
            // Signalling congestion (or still below us since it did): follow it.
            self.remb_cap = Some((bitrate_bps, now));
        }
        self.recompute();
    }

    /// The fraction-lost field (×256) of a receiver report block (or the mean of one report's
    /// blocks: the caller applies each report once, not once per stream).
    pub fn on_loss_report(&mut self, now: Instant, fraction_lost: u8) {
        self.latest_now = Some(now);
        self.loss_seen = true;
        self.loss.on_loss(
            now,
            f64::from(fraction_lost) / 256.0,
            self.estimate_bps as f64,
        );
        self.recompute();
    }

    fn recompute(&mut self) {
        let loss = self.loss.rate_bps();
        // Without transport-cc feedback the delay-based rate is only its start value.
        // With transport-cc both controllers run; the delay-based one is named unless the
        // loss-based one is clearly lower (both grow alike on a clean path).
        let (mut e, mut source) = if self.twcc_seen && self.aimd.rate_bps() <= loss * 1.02 {
            let s = if self.probe_raised {
                EstimateSource::Probe
            } else {
                EstimateSource::Twcc
            };
            (self.aimd.rate_bps().min(loss), s)
        } else if self.loss_seen || self.twcc_seen {
            (loss, EstimateSource::Loss)
        } else {
            (loss.min(self.aimd.rate_bps()), EstimateSource::Initial)
        };
        if let (Some((remb, at)), Some(now)) = (self.remb_cap, self.latest_now) {
            if now.saturating_duration_since(at) > self.cfg.remb_timeout {
                self.remb_cap = None;
            } else if (remb as f64) < e {
                e = remb as f64;
                source = EstimateSource::Remb;
            }
        }
        let e = (e.max(0.0) as u64).clamp(self.cfg.min_bps, self.cfg.max_bps);
        if (e as f64) < 0.9 * self.estimate_bps as f64 {
            self.last_drop = self.latest_now;
        }
        self.estimate_bps = e;
        self.source = source;
        // Keep the controllers inside the bounds so they don't wind up.
        let (lo, hi) = (self.cfg.min_bps as f64, self.cfg.max_bps as f64);
        if self.aimd.rate_bps() > hi || self.aimd.rate_bps() < lo {
            self.aimd.reset(self.aimd.rate_bps().clamp(lo, hi));
        }
        if self.loss.rate_bps() > hi || self.loss.rate_bps() < lo {
            self.loss.reset(self.loss.rate_bps().clamp(lo, hi));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::twcc::encode_feedback;
    use super::*;

    #[allow(clippy::disallowed_methods)] // tests need some base instant
    fn t0() -> Instant {
        Instant::now()
    }

    /// Sends `n` packets 10 ms apart from `seq0`, arriving with extra delay
    /// `extra_us(i)`, and feeds them back in one message.
    fn exchange(
        bwe: &mut SendSideBwe,
        t: Instant,
        seq0: u16,
        n: usize,
        extra_us: impl Fn(usize) -> i64,
        lost: impl Fn(usize) -> bool,
    ) {
        let mut arrivals = vec![None; n];
        for (i, a) in arrivals.iter_mut().enumerate() {
            bwe.on_packet_sent(
                t + Duration::from_millis(i as u64 * 10),
                seq0.wrapping_add(i as u16),
                1200,
            );
            if !lost(i) || i == 0 {
                *a = Some(20_000 + i as i64 * 10_000 + extra_us(i));
            }
        }
        let mut buf = [0u8; 1500];
        let mut at = 0;
        while at < n {
            let e = encode_feedback(
                1,
                2,
                seq0.wrapping_add(at as u16),
                0,
                &arrivals[at..],
                &mut buf,
            )
            .unwrap();
            let now = t + Duration::from_millis(n as u64 * 10 + 30);
            bwe.on_transport_feedback(now, &buf[12..e.len]).unwrap();
            at += e.consumed;
        }
    }

    /// The history holds two seconds of 500-byte packets at the session's cap, within
    /// [`MIN_HISTORY`] and `history_capacity`.
    #[test]
    fn history_follows_the_sessions_cap() {
        let len = |max_bps| {
            SendSideBweConfig {
                max_bps,
                ..SendSideBweConfig::default()
            }
            .history_len()
        };
        assert_eq!(len(300_000), MIN_HISTORY);
        assert_eq!(len(4_000_000), 2_048);
        assert_eq!(len(10_000_000), 8_192);
        assert_eq!(len(20_000_000), 8_192);
        assert_eq!(len(1_000_000_000), 8_192, "never above history_capacity");
        let small = SendSideBweConfig {
            history_capacity: 16,
            ..SendSideBweConfig::default()
        };
        assert_eq!(small.history_len(), 16);
    }

    /// The feedback scratch is written only as far as the largest feedback so far: 20
    /// packets' feedback writes 20 entries, not the 2,048 the bound allows; a feedback naming
    /// 60,000 packets stops at the bound, inside the one reservation.
    #[test]
    fn feedback_scratch_grows_with_the_feedback_within_its_reserve() {
        let t = t0();
        let mut bwe = SendSideBwe::new(SendSideBweConfig::default());
        let reserved = bwe.scratch.capacity();
        assert_eq!(bwe.scratch.len(), 0);
        exchange(&mut bwe, t, 0, 20, |_| 0, |_| false);
        assert_eq!(bwe.scratch.len(), 20);
        // Base 0, 60,000 statuses, reference time 0, count 1; eight run-length chunks of
        // 8,191 "not received".
        let mut fci = vec![0, 0, 0xea, 0x60, 0, 0, 0, 1];
        for _ in 0..8 {
            fci.extend_from_slice(&[0x1f, 0xff]);
        }
        bwe.on_transport_feedback(t + Duration::from_secs(1), &fci)
            .unwrap();
        assert_eq!(bwe.scratch.len(), 2048);
        assert_eq!(bwe.scratch.capacity(), reserved);
    }

    #[test]
    fn growing_delay_cuts_the_estimate() {
        let t = t0();
        let mut bwe = SendSideBwe::new(SendSideBweConfig::default());
        exchange(
            &mut bwe,
            t,
            0,
            200,
            |i| if i < 50 { 0 } else { (i as i64 - 50) * 2_000 },
            |_| false,
        );
        assert_eq!(bwe.usage(), BandwidthUsage::Overusing);
        // 1200 B per 10 ms ≈ 960 kbit/s received (less while the queue grows).
        assert!(bwe.estimate_bps() < 900_000, "{}", bwe.estimate_bps());
    }

    #[test]
    fn flat_delay_keeps_or_grows() {
        let t = t0();
        let mut bwe = SendSideBwe::new(SendSideBweConfig::default());
        exchange(&mut bwe, t, 65_000, 200, |_| 0, |_| false);
        assert_ne!(bwe.usage(), BandwidthUsage::Overusing);
        assert!(bwe.estimate_bps() >= 1_000_000);
    }

    /// 1250 bytes every 10 ms (1 Mbit/s) for `ms` milliseconds from `t`.
    fn send_for(bwe: &mut SendSideBwe, t: Instant, ms: u64) {
        for i in 0..ms / 10 {
            bwe.on_sent(t + Duration::from_millis(i * 10), None, 1250, false);
        }
    }

    #[test]
    fn heavy_loss_cuts_and_a_falling_remb_caps() {
        let t = t0();
        let ms = Duration::from_millis;
        let mut bwe = SendSideBwe::new(SendSideBweConfig::default());
        bwe.on_loss_report(t, 64); // 25 %
        assert!(bwe.estimate_bps() <= 875_000 + 1);
        assert_eq!(bwe.source(), EstimateSource::Loss);
        send_for(&mut bwe, t, 1000);
        // Below what we send but the first one: not yet a sign of congestion.
        bwe.on_remb(t + ms(1000), 500_000);
        assert!(bwe.estimate_bps() > 500_000);
        // Below what we send and falling: a ceiling.
        bwe.on_remb(t + ms(1000), 300_000);
        assert_eq!(bwe.estimate_bps(), 300_000);
        assert_eq!(bwe.source(), EstimateSource::Remb);
        // Stale REMB no longer caps.
        bwe.on_loss_report(t + Duration::from_secs(10), 0);
        assert!(bwe.estimate_bps() > 300_000);
        bwe.set_bounds(100_000, 200_000, 150_000);
        assert_eq!(bwe.estimate_bps(), 150_000);
    }

    #[test]
    fn a_remb_above_what_we_send_is_no_ceiling() {
        let t = t0();
        let ms = Duration::from_millis;
        let mut bwe = SendSideBwe::new(SendSideBweConfig::default());
        send_for(&mut bwe, t, 1000);
        // aiortc's habit: 1.5 × what it receives + 10 kbit/s, and it goes up and down.
        for (i, r) in [1_510_000, 1_400_000, 1_600_000, 1_450_000]
            .into_iter()
            .enumerate()
        {
            bwe.on_remb(t + ms(1000 + i as u64), r);
            assert_eq!(bwe.remb_cap_bps(), None);
            assert_eq!(bwe.estimate_bps(), 1_000_000);
        }
        // It falls below what we send: followed; back above: released.
        bwe.on_remb(t + ms(1010), 600_000);
        assert_eq!(bwe.estimate_bps(), 600_000);
        bwe.on_remb(t + ms(1020), 700_000);
        assert_eq!(
            bwe.estimate_bps(),
            700_000,
            "still below what we send: followed"
        );
        bwe.on_remb(t + ms(1030), 1_200_000);
        assert_eq!(bwe.remb_cap_bps(), None);
        assert_eq!(bwe.estimate_bps(), 1_000_000);
    }

    #[test]
    fn garbage_feedback_is_an_error() {
        let mut bwe = SendSideBwe::new(SendSideBweConfig::default());
        assert!(bwe.on_transport_feedback(t0(), &[1, 2, 3]).is_err());
    }
}
