//! The DCEP open handshake of a channel, both ways (RFC 8832 §6): a
//! peer's new stream must start with a `DATA_CHANNEL_OPEN` of the peer's
//! parity, which we acknowledge, or it is refused with a stream reset; our
//! channels send the OPEN once the association is up and go ordered until
//! the ACK (or the peer's first message, an implicit ACK) arrives.

use sctp_proto::{
    Association, Error as SctpError, PayloadProtocolIdentifier as Ppi, ReliabilityType,
};

use super::channels::{Channel, DataChannels, DataEvent, State};
use super::dcep::{DcepMessage, DcepOpen, ACK};
use super::{ChannelConfig, ChannelId, Reliability};

impl DataChannels {
    pub(super) fn on_opened(&mut self, id: u16) {
        if id >= self.cfg.max_streams {
            // RFC 9260 §6.5: past the streams we announced. sctp-proto
            // would keep state for any of 65536 ids, so end it here.
            self.stats.aborts += 1;
            self.sctp.abort();
            self.on_lost();
            return;
        }
        let full = self.channels.len() >= usize::from(self.cfg.max_channels);
        match self.channels.get_mut(&id) {
            Some(c) if c.state == State::Closing => {
                // The peer reused the id before our reset completed.
                let mut fresh = Channel::new(State::AwaitOpen, ChannelConfig::reliable(""), false);
                fresh.stale_reset = true;
                *c = fresh;
            }
            Some(_) => {}
            None if full => {
                self.stats.channels_refused += 1;
                if let Some(mut s) = self.sctp.assoc().and_then(|a| a.stream(id).ok()) {
                    let _ = s.close();
                }
            }
            None => {
                let c = Channel::new(State::AwaitOpen, ChannelConfig::reliable(""), false);
                self.channels.insert(id, c);
            }
        }
    }

    pub(super) fn on_readable(&mut self, id: u16) {
        let Some(c) = self.channels.get_mut(&id) else {
            return;
        };
        match c.state {
            State::AwaitOpen | State::AwaitAck => self.read_dcep(id),
            State::Open if !c.queued => {
                c.queued = true;
                self.readable.push_back(id);
            }
            _ => {}
        }
    }

    /// Reads a waiting channel's messages until it is decided.
    fn read_dcep(&mut self, id: u16) {
        let mut buf = std::mem::take(&mut self.scratch);
        // Each turn reads one message or stops.
        while let Some(state) = self.channels.get(&id).map(|c| c.state) {
            if !matches!(state, State::AwaitOpen | State::AwaitAck) {
                break;
            }
            let Some(ppi) = self.read_one(id, &mut buf) else {
                break;
            };
            match (state, ppi) {
                (State::AwaitOpen, Ppi::Dcep) => match DcepMessage::parse(&buf) {
                    Ok(DcepMessage::Open(o)) if self.peer_parity(id) => self.accept(id, &o),
                    _ => {
                        self.stats.drop_dcep += 1;
                        self.refuse(id);
                    }
                },
                (State::AwaitOpen, _) => {
                    self.stats.drop_unopened += 1;
                    self.refuse(id);
                }
                (State::AwaitAck, Ppi::Dcep) => match DcepMessage::parse(&buf) {
                    Ok(DcepMessage::Ack) => self.acked(id),
                    _ => self.stats.drop_dcep += 1,
                },
                // User data before the ACK: the peer accepted (implicit ACK).
                (_, ppi) => {
                    self.acked(id);
                    if let Some(c) = self.channels.get_mut(&id) {
                        c.stash = Some((ppi, buf.clone()));
                    }
                }
            }
        }
        self.scratch = buf;
        // Whatever follows the decision is user data for `poll_data`.
        if let Some(c) = self.channels.get_mut(&id) {
            if c.state == State::Open && !c.queued {
                c.queued = true;
                self.readable.push_back(id);
            }
        }
    }

    /// One whole message of stream `id` into `buf`; its PPID.
    fn read_one(&mut self, id: u16, buf: &mut Vec<u8>) -> Option<Ppi> {
        let chunks = self.sctp.assoc()?.stream(id).ok()?.read_sctp().ok()??;
        buf.clear();
        buf.resize(chunks.len(), 0);
        let n = chunks.read(buf).ok()?;
        buf.truncate(n);
        Some(chunks.ppi)
    }

    /// An OPEN from the peer's side of the id space (RFC 8832 §6).
    fn peer_parity(&self, id: u16) -> bool {
        id.is_multiple_of(2) != self.even
    }

    fn accept(&mut self, id: u16, o: &DcepOpen<'_>) {
        let cfg = ChannelConfig {
            label: o.label.to_owned(),
            protocol: o.protocol.to_owned(),
            ordered: o.ordered,
            reliability: o.reliability,
            priority: o.priority,
            negotiated: None,
        };
        let ok = self
            .sctp
            .assoc()
            .and_then(|a| a.stream(id).ok())
            .is_some_and(|mut s| {
                configure(&mut s, cfg.ordered, cfg.reliability)
                    && s.write_with_ppi(&ACK, Ppi::Dcep).is_ok()
            });
        if !ok {
            self.refuse(id);
            return;
        }
        if let Some(c) = self.channels.get_mut(&id) {
            c.cfg = cfg;
            c.state = State::Open;
        }
        self.announce(id);
    }

    /// The peer acknowledged our OPEN: the channel's own ordering applies now.
    fn acked(&mut self, id: u16) {
        let Some(c) = self.channels.get_mut(&id) else {
            return;
        };
        c.state = State::Open;
        let (ordered, rel) = (c.cfg.ordered, c.cfg.reliability);
        if let Some(mut s) = self.sctp.assoc().and_then(|a| a.stream(id).ok()) {
            configure(&mut s, ordered, rel);
        }
    }

    /// Refuses a peer's channel: reset its stream without an ACK (RFC 8832 §6).
    fn refuse(&mut self, id: u16) {
        self.stats.channels_refused += 1;
        self.reset(id);
    }

    /// The association is up: open one of our pending channels.
    pub(super) fn start(&mut self, id: u16) {
        let Some(c) = self.channels.get(&id) else {
            return;
        };
        let cfg = c.cfg.clone();
        let Some(a) = self.sctp.assoc() else { return };
        let in_band = cfg.negotiated.is_none();
        let ok = match open_stream(a, id) {
            Some(mut s) => {
                // Ordered until the ACK (RFC 8832 §6); negotiated channels
                // have no ACK to wait for.
                configure(&mut s, cfg.ordered || in_band, cfg.reliability)
                    && (!in_band || {
                        let mut open = Vec::with_capacity(12 + cfg.label.len());
                        DcepOpen {
                            ordered: cfg.ordered,
                            reliability: cfg.reliability,
                            priority: cfg.priority,
                            label: &cfg.label,
                            protocol: &cfg.protocol,
                        }
                        .write(&mut open);
                        s.write_with_ppi(&open, Ppi::Dcep).is_ok()
                    })
            }
            None => false,
        };
        if !ok {
            self.channels.remove(&id);
            self.push_event(DataEvent::ChannelClosed { id: ChannelId(id) });
            return;
        }
        if let Some(c) = self.channels.get_mut(&id) {
            c.state = if in_band {
                State::AwaitAck
            } else {
                State::Open
            };
        }
        self.announce(id);
    }

    fn announce(&mut self, id: u16) {
        let Some(c) = self.channels.get_mut(&id) else {
            return;
        };
        c.announced = true;
        let e = DataEvent::ChannelOpen {
            id: ChannelId(id),
            label: c.cfg.label.clone(),
            protocol: c.cfg.protocol.clone(),
            ordered: c.cfg.ordered,
            reliability: c.cfg.reliability,
            negotiated: c.cfg.negotiated.is_some(),
        };
        self.stats.channels_opened += 1;
        self.push_event(e);
    }
}

/// Our half of stream `id`: new, or already created by the peer's data (a
/// negotiated channel the peer used first).
fn open_stream(a: &mut Association, id: u16) -> Option<sctp_proto::Stream<'_>> {
    match a.open_stream(id, Ppi::Binary) {
        Ok(_) | Err(SctpError::ErrStreamAlreadyExist) => a.stream(id).ok(),
        Err(_) => None,
    }
}

fn configure(s: &mut sctp_proto::Stream<'_>, ordered: bool, r: Reliability) -> bool {
    let (kind, value) = match r {
        Reliability::Reliable => (ReliabilityType::Reliable, 0),
        Reliability::MaxRetransmits(n) => (ReliabilityType::Rexmit, n),
        Reliability::MaxLifetimeMs(ms) => (ReliabilityType::Timed, ms),
    };
    s.set_reliability_params(!ordered, kind, value).is_ok()
}
