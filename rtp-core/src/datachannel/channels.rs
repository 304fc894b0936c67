//! [`DataChannels`]: a session's channel table over its SCTP association.
//!
//! A channel we open in band goes Pending (association not up) → AwaitAck
//! (OPEN sent; reported open, and our messages go ordered until the ACK,
//! RFC 8832 §6) → Open. A peer's stream starts AwaitOpen: its first message
//! must be a valid `DATA_CHANNEL_OPEN` with the peer's parity, which we
//! acknowledge (Open), or the stream is reset and the channel refused.
//! Negotiated channels go straight to Open when the association is. Close
//! is an SCTP stream reset (RFC 8831 §6.7): sctp-proto answers a peer's reset
//! with its own, and the id is free again once both halves are reset.
//!
//! DCEP is handled as soon as it arrives (`drive`); user messages stay in
//! sctp-proto's reassembly queues until `poll_data` reads them, so an
//! unread channel closes the receive window (backpressure on the peer)
//! instead of growing a queue here.

use std::collections::{BTreeMap, VecDeque};
use std::time::Instant;

use bytes::Bytes;
use sctp_proto::{Error as SctpError, Event, PayloadProtocolIdentifier as Ppi, StreamEvent};

use super::drain::{Backlog, Drain};
use super::sctp::{Sctp, SctpState};
use super::{
    ChannelConfig, ChannelId, DataConfig, DataError, DataMeta, DataStats, Reliability,
    MAX_LABEL_LEN,
};

/// What the session reports about data channels (`SessionEvent`s).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DataEvent {
    /// The association is established.
    Connected,
    /// The association is gone; every channel was reported closed before.
    Closed,
    /// A channel may carry messages.
    ChannelOpen {
        id: ChannelId,
        label: String,
        protocol: String,
        ordered: bool,
        reliability: Reliability,
        negotiated: bool,
    },
    /// A channel ended (either side closed it, or the association ended).
    ChannelClosed { id: ChannelId },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum State {
    /// Ours, waiting for the association.
    Pending,
    /// Ours, OPEN sent: reported open, sending ordered until the ACK.
    AwaitAck,
    /// The peer's new stream: its first message must be OPEN.
    AwaitOpen,
    Open,
    /// Reset under way; the entry goes when it completes.
    Closing,
}

#[derive(Debug)]
pub(super) struct Channel {
    pub(super) state: State,
    pub(super) cfg: ChannelConfig,
    /// `open_channel` returned this id: the caller hears of its end even if
    /// it never opened.
    pub(super) ours: bool,
    /// ChannelOpen was reported and ChannelClosed is still due.
    pub(super) announced: bool,
    /// In the readable queue.
    pub(super) queued: bool,
    /// A reset of an older generation of this id is still completing (the
    /// peer reused the id quickly); its completion must not remove us.
    pub(super) stale_reset: bool,
    /// A user message read while waiting for the ACK (the implicit ACK).
    pub(super) stash: Option<(Ppi, Vec<u8>)>,
    /// How fast our writes leave ([`DataChannels::backlog`]).
    pub(super) drain: Drain,
}

/// See the module docs.
#[derive(Debug)]
pub(crate) struct DataChannels {
    pub(super) cfg: DataConfig,
    pub(super) sctp: Sctp,
    /// We are the DTLS client: our in-band ids are even (RFC 8832 §6).
    pub(super) even: bool,
    pub(super) channels: BTreeMap<u16, Channel>,
    /// Ids whose reset failed: sctp-proto keeps them unusable.
    pub(super) quarantined: Vec<u16>,
    pub(super) readable: VecDeque<u16>,
    pub(super) events: VecDeque<DataEvent>,
    /// The peer's `a=max-message-size` (0 = any size, RFC 8841 §6.1).
    pub(super) remote_max: u32,
    pub(super) stats: DataStats,
    pub(super) scratch: Vec<u8>,
}

impl DataChannels {
    /// `dtls_client` picks the parity of our ids and the SCTP role: the DTLS
    /// client sends INIT when [`on_dtls_connected`](Self::on_dtls_connected).
    pub(crate) fn new(cfg: DataConfig, dtls_client: bool, now: Instant) -> Result<Self, DataError> {
        cfg.validate()?;
        Ok(Self {
            sctp: Sctp::new(&cfg, dtls_client, now),
            cfg,
            even: dtls_client,
            channels: BTreeMap::new(),
            quarantined: Vec::new(),
            readable: VecDeque::new(),
            events: VecDeque::new(),
            remote_max: 65_536,
            stats: DataStats::default(),
            scratch: Vec::new(),
        })
    }

    pub(crate) fn stats(&self) -> &DataStats {
        &self.stats
    }

    pub(crate) fn is_connected(&self) -> bool {
        self.sctp.state() == SctpState::Established
    }

    /// The peer's SDP `a=max-message-size`: `None` when absent (64 KiB),
    /// `Some(0)` for "any size" (then only our send buffer limits it).
    pub(crate) fn set_remote_max_message_size(&mut self, max: Option<u32>) {
        self.remote_max = max.unwrap_or(65_536);
    }

    /// Largest message `send` accepts now.
    pub(crate) fn max_send(&self) -> usize {
        let remote = if self.remote_max == 0 {
            usize::MAX
        } else {
            self.remote_max as usize
        };
        remote.min(self.cfg.max_buffered)
    }

    pub(crate) fn on_dtls_connected(&mut self) {
        self.sctp.connect();
        self.drive();
    }

    /// DTLS closed or failed: the association cannot continue.
    pub(crate) fn on_dtls_closed(&mut self) {
        if self.sctp.state() != SctpState::Closed {
            self.sctp.abort();
            self.on_lost();
        }
    }

    pub(crate) fn handle_input(&mut self, now: Instant, packet: Vec<u8>) {
        self.sctp.handle_input(now, packet);
        self.drive();
    }

    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        self.sctp.handle_timeout(now);
        self.drive();
    }

    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        self.sctp.poll_timeout()
    }

    /// The next SCTP packet for a DTLS record.
    pub(crate) fn poll_packet(&mut self, now: Instant) -> Option<Bytes> {
        let p = self.sctp.poll_packet(now);
        self.drive();
        p
    }

    pub(crate) fn poll_event(&mut self) -> Option<DataEvent> {
        self.events.pop_front()
    }

    /// Queues an event. Each channel adds at most two per life, so the cap
    /// is only reached by a caller that stopped draining.
    pub(super) fn push_event(&mut self, e: DataEvent) {
        if self.events.len() < 4 * usize::from(self.cfg.max_channels) + 16 {
            self.events.push_back(e);
        } else {
            self.stats.events_dropped += 1;
        }
    }

    /// Opens a channel: in band on the lowest free id of our parity, or on
    /// the negotiated id. It is reported open once the association is up.
    pub(crate) fn open(&mut self, cfg: ChannelConfig) -> Result<ChannelId, DataError> {
        if self.sctp.state() == SctpState::Closed {
            return Err(DataError::Closed);
        }
        if cfg.label.len() > MAX_LABEL_LEN {
            return Err(DataError::LabelTooLong("label"));
        }
        if cfg.protocol.len() > MAX_LABEL_LEN {
            return Err(DataError::LabelTooLong("protocol"));
        }
        if self.channels.len() >= usize::from(self.cfg.max_channels) {
            return Err(DataError::TooManyChannels);
        }
        let id = match cfg.negotiated {
            Some(id) if id < self.cfg.max_streams && self.is_free(id) => id,
            Some(id) => return Err(DataError::IdUnavailable(id)),
            None => {
                let first = u16::from(!self.even);
                (first..self.cfg.max_streams)
                    .step_by(2)
                    .find(|&id| self.is_free(id))
                    .ok_or(DataError::TooManyChannels)?
            }
        };
        self.channels
            .insert(id, Channel::new(State::Pending, cfg, true));
        if self.is_connected() {
            self.start(id);
        }
        self.drive();
        Ok(ChannelId(id))
    }

    /// Closes a channel (stream reset). It is reported closed at once.
    pub(crate) fn close(&mut self, ch: ChannelId) -> Result<(), DataError> {
        let c = self
            .channels
            .get(&ch.0)
            .ok_or(DataError::NoSuchChannel(ch))?;
        if c.state == State::Closing {
            return Ok(());
        }
        if c.state == State::Pending {
            self.channels.remove(&ch.0);
            self.push_event(DataEvent::ChannelClosed { id: ch });
            return Ok(());
        }
        self.reset(ch.0);
        Ok(())
    }

    /// Queues one message. `Full` and `TooBig` leave nothing queued.
    pub(crate) fn send(
        &mut self,
        ch: ChannelId,
        binary: bool,
        data: &[u8],
    ) -> Result<(), DataError> {
        let state = self
            .channels
            .get(&ch.0)
            .ok_or(DataError::NoSuchChannel(ch))?
            .state;
        if !matches!(state, State::AwaitAck | State::Open) {
            return Err(DataError::NotOpen(ch));
        }
        let max = self.max_send();
        if data.len() > max {
            self.stats.refused_too_big += 1;
            return Err(DataError::TooBig {
                len: data.len(),
                max,
            });
        }
        // An empty message travels as one byte (RFC 8831 §6.6).
        let wire = data.len().max(1);
        let buffered = self.buffered_total();
        if buffered + wire > self.cfg.max_buffered {
            self.stats.refused_full += 1;
            return Err(DataError::Full {
                buffered,
                max: self.cfg.max_buffered,
            });
        }
        let (ppi, payload): (Ppi, &[u8]) = match (binary, data.is_empty()) {
            (true, false) => (Ppi::Binary, data),
            (false, false) => (Ppi::String, data),
            (true, true) => (Ppi::BinaryEmpty, &[0]),
            (false, true) => (Ppi::StringEmpty, &[0]),
        };
        let assoc = self.sctp.assoc().ok_or(DataError::NotOpen(ch))?;
        assoc.set_max_send_message_size(u32::try_from(max).unwrap_or(u32::MAX));
        let mut s = assoc.stream(ch.0).map_err(|_| DataError::NotOpen(ch))?;
        match s.write_with_ppi(payload, ppi) {
            Ok(_) => {
                if let Some(c) = self.channels.get_mut(&ch.0) {
                    c.drain.wrote(wire);
                }
                self.stats.messages_out += 1;
                self.stats.bytes_out += data.len() as u64;
                Ok(())
            }
            Err(SctpError::ErrOutboundPacketTooLarge) => {
                self.stats.refused_too_big += 1;
                Err(DataError::TooBig {
                    len: data.len(),
                    max,
                })
            }
            Err(_) => Err(DataError::NotOpen(ch)),
        }
    }

    /// Bytes of `ch` queued or in flight (0 for an unknown channel).
    pub(crate) fn buffered_amount(&mut self, ch: ChannelId) -> usize {
        self.sctp
            .assoc()
            .and_then(|a| a.stream(ch.0).ok()?.buffered_amount().ok())
            .unwrap_or(0)
    }

    /// `ch`'s buffered bytes and how fast they have been leaving, observed at `now` (call it
    /// before each write the caller may skip: a reader that stopped shows as a rate that decays
    /// to 0 only if it is observed).
    pub(crate) fn backlog(&mut self, now: Instant, ch: ChannelId) -> Backlog {
        let buffered = self.buffered_amount(ch);
        let drain_bytes_per_s = self
            .channels
            .get_mut(&ch.0)
            .and_then(|c| c.drain.observe(now, buffered));
        Backlog {
            buffered,
            drain_bytes_per_s,
        }
    }

    /// Bytes queued or in flight across all channels.
    pub(crate) fn buffered_total(&mut self) -> usize {
        let Some(a) = self.sctp.assoc() else { return 0 };
        self.channels
            .keys()
            .filter_map(|&id| a.stream(id).ok()?.buffered_amount().ok())
            .sum()
    }

    /// The next user message into `out`; see `Session::poll_data`.
    pub(crate) fn poll_data(&mut self, out: &mut [u8]) -> Option<DataMeta> {
        // Each turn consumes a message or retires an id from the queue.
        while let Some(&id) = self.readable.front() {
            let Some(c) = self.channels.get_mut(&id) else {
                self.readable.pop_front();
                continue;
            };
            if !matches!(c.state, State::Open | State::AwaitAck) {
                c.queued = false;
                self.readable.pop_front();
                continue;
            }
            if let Some((ppi, msg)) = c.stash.take() {
                if let Some(m) = self.deliver(id, ppi, &msg, out) {
                    return Some(m);
                }
                continue;
            }
            let a = self.sctp.assoc()?;
            let chunks = a
                .stream(id)
                .ok()
                .and_then(|mut s| s.read_sctp().ok().flatten());
            let Some(chunks) = chunks else {
                c.queued = false;
                self.readable.pop_front();
                continue;
            };
            // Round robin: this channel goes behind the others.
            self.readable.rotate_left(1);
            let len = chunks.len();
            if len > out.len() {
                self.stats.drop_truncated += 1;
                continue;
            }
            let n = chunks.read(&mut out[..len]).unwrap_or(0);
            if let Some(m) = self.meta(id, chunks.ppi, n) {
                return Some(m);
            }
        }
        None
    }

    /// Delivers a stashed message through the same checks as a read one.
    fn deliver(&mut self, id: u16, ppi: Ppi, msg: &[u8], out: &mut [u8]) -> Option<DataMeta> {
        let Some(dst) = out.get_mut(..msg.len()) else {
            self.stats.drop_truncated += 1;
            return None;
        };
        dst.copy_from_slice(msg);
        self.meta(id, ppi, msg.len())
    }

    fn meta(&mut self, id: u16, ppi: Ppi, n: usize) -> Option<DataMeta> {
        let (binary, len) = match ppi {
            Ppi::Binary => (true, n),
            Ppi::String => (false, n),
            Ppi::BinaryEmpty => (true, 0),
            Ppi::StringEmpty => (false, 0),
            Ppi::Dcep => {
                self.stats.drop_dcep += 1;
                return None;
            }
            Ppi::Unknown => {
                self.stats.drop_unknown_ppid += 1;
                return None;
            }
        };
        self.stats.messages_in += 1;
        self.stats.bytes_in += len as u64;
        Some(DataMeta {
            channel: ChannelId(id),
            binary,
            len,
        })
    }

    fn is_free(&self, id: u16) -> bool {
        !self.channels.contains_key(&id) && !self.quarantined.contains(&id)
    }

    /// Runs sctp-proto's events through the channel table.
    pub(super) fn drive(&mut self) {
        while let Some(e) = self.sctp.poll_event() {
            match e {
                Event::Connected => {
                    self.stats.associations += 1;
                    self.push_event(DataEvent::Connected);
                    let pending: Vec<u16> = self
                        .channels
                        .iter()
                        .filter(|(_, c)| c.state == State::Pending)
                        .map(|(&id, _)| id)
                        .collect();
                    for id in pending {
                        self.start(id);
                    }
                }
                Event::Stream(StreamEvent::Opened { id }) => self.on_opened(id),
                Event::Stream(StreamEvent::Readable { id }) => self.on_readable(id),
                Event::Stream(StreamEvent::Finished { id } | StreamEvent::Stopped { id, .. }) => {
                    self.on_finished(id)
                }
                Event::Stream(
                    StreamEvent::ResetComplete { id } | StreamEvent::ResetFailed { id, .. },
                ) => {
                    if matches!(e, Event::Stream(StreamEvent::ResetFailed { .. }))
                        && !self.quarantined.contains(&id)
                    {
                        self.quarantined.push(id);
                    }
                    self.on_reset_done(id);
                }
                Event::HandshakeFailed { .. } | Event::AssociationLost { .. } => self.on_lost(),
                _ => {}
            }
            if self.sctp.state() == SctpState::Closed {
                break;
            }
        }
        // Streams the peer opened are tracked by their events; sctp-proto's
        // accept queue would otherwise grow with every new stream id.
        if let Some(a) = self.sctp.assoc() {
            while a.accept_stream().is_some() {}
        }
    }

    /// Resets both halves of `id` and reports the channel closed.
    pub(super) fn reset(&mut self, id: u16) {
        if let Some(mut s) = self.sctp.assoc().and_then(|a| a.stream(id).ok()) {
            let _ = s.close();
        }
        if let Some(c) = self.channels.get_mut(&id) {
            c.state = State::Closing;
            c.stash = None;
        }
        self.report_closed(id);
    }

    pub(super) fn report_closed(&mut self, id: u16) {
        let Some(c) = self.channels.get_mut(&id) else {
            return;
        };
        if c.announced || c.ours {
            c.announced = false;
            c.ours = false;
            self.stats.channels_closed += 1;
            self.push_event(DataEvent::ChannelClosed { id: ChannelId(id) });
        }
    }

    fn on_finished(&mut self, id: u16) {
        if let Some(c) = self.channels.get_mut(&id) {
            c.state = State::Closing;
            c.stash = None;
        }
        self.report_closed(id);
    }

    fn on_reset_done(&mut self, id: u16) {
        let Some(c) = self.channels.get_mut(&id) else {
            return;
        };
        if c.stale_reset {
            c.stale_reset = false;
        } else if c.state == State::Closing {
            self.channels.remove(&id);
        }
    }

    /// The association ended (reported once: `abort` drops it).
    pub(super) fn on_lost(&mut self) {
        let ids: Vec<u16> = self.channels.keys().copied().collect();
        for id in ids {
            self.report_closed(id);
        }
        self.channels.clear();
        self.readable.clear();
        self.push_event(DataEvent::Closed);
    }
}

impl Channel {
    pub(super) fn new(state: State, cfg: ChannelConfig, ours: bool) -> Self {
        Self {
            state,
            cfg,
            ours,
            announced: false,
            queued: false,
            stale_reset: false,
            stash: None,
            drain: Drain::default(),
        }
    }
}
