//! A Session's data channels: the glue between the DTLS endpoint's
//! application data and [`DataChannels`] (SCTP + DCEP, `crate::datachannel`),
//! and the session-level API the dataplane relays messages with.
//!
//! Inbound SCTP packets surface while `poll_transmit` drives DTLS and are fed
//! to the association at once; outbound ones leave through `poll_transmit`
//! after STUN, DTLS flights and RTCP, one DTLS record per datagram. None of
//! this touches the media paths: they stay allocation-free.

use std::time::Instant;

use crate::datachannel::{
    Backlog, ChannelConfig, ChannelId, DataChannels, DataConfig, DataError, DataEvent, DataMeta,
    DataStats,
};
use crate::dtls::{DtlsRole, DtlsState};
use crate::net::Remote;

use super::{Session, SessionError, SessionEvent};

/// SCTP packets `poll_transmit` tries per call before giving up (each one
/// that DTLS refuses is dropped; SCTP retransmits it).
const SCTP_TRIES: usize = 4;

impl<H: Copy> Session<H> {
    /// Turns data channels on (SDP `m=application … webrtc-datachannel`),
    /// once; WebRTC modes only. Our SCTP role follows the DTLS role: the DTLS
    /// client sends INIT and opens even channel ids, the DTLS server (the
    /// SFU) answers and opens odd ones.
    pub fn enable_data_channels(&mut self, cfg: DataConfig) -> Result<(), SessionError> {
        if self.data.is_some() {
            return Err(SessionError::InvalidConfig);
        }
        let Some(dtls) = self.transport.dtls_mut() else {
            return Err(SessionError::WrongMode);
        };
        let client = dtls.role() == DtlsRole::Client;
        let connected = dtls.state() == DtlsState::Connected;
        let mut d = DataChannels::new(cfg, client, self.last_now)?;
        if connected {
            d.on_dtls_connected();
        }
        self.data = Some(Box::new(d));
        Ok(())
    }

    /// The peer's SDP `a=max-message-size` (RFC 8841 §6): `None` when the
    /// attribute is absent (64 KiB), `Some(0)` when it says any size.
    pub fn set_remote_max_message_size(&mut self, max: Option<u32>) {
        if let Some(d) = self.data.as_mut() {
            d.set_remote_max_message_size(max);
        }
    }

    /// The largest message [`send_data`](Self::send_data) accepts now: the
    /// peer's max-message-size, capped by our send buffer.
    pub fn max_send_message_size(&self) -> Option<usize> {
        self.data.as_ref().map(|d| d.max_send())
    }

    /// Opens a data channel: in band (DCEP) on the lowest free id of our
    /// parity, or on `cfg.negotiated`'s id. `SessionEvent::ChannelOpen`
    /// follows once the association is up (at once if it is);
    /// `ChannelClosed` if it fails. Drain `poll_transmit` afterwards.
    pub fn open_channel(&mut self, cfg: ChannelConfig) -> Result<ChannelId, DataError> {
        self.data.as_mut().ok_or(DataError::NotEnabled)?.open(cfg)
    }

    /// Closes a channel by resetting its stream (RFC 8831 §6.7):
    /// `ChannelClosed` follows at once; the id is free again when the peer
    /// has reset its half too.
    pub fn close_channel(&mut self, ch: ChannelId) -> Result<(), DataError> {
        self.data.as_mut().ok_or(DataError::NotEnabled)?.close(ch)
    }

    /// Queues one message on an open channel (`binary` picks PPID 53/57
    /// over 51/56; an empty message is allowed). Refused, with nothing
    /// queued: `TooBig` over [`max_send_message_size`](Self::max_send_message_size),
    /// `Full` when the bytes queued across all channels would pass
    /// `DataConfig::max_buffered`. Drain `poll_transmit` afterwards.
    pub fn send_data(
        &mut self,
        now: Instant,
        ch: ChannelId,
        binary: bool,
        data: &[u8],
    ) -> Result<(), DataError> {
        self.last_now = self.last_now.max(now);
        self.data
            .as_mut()
            .ok_or(DataError::NotEnabled)?
            .send(ch, binary, data)
    }

    /// The next received message, copied to the start of `out`, channels
    /// served in turn. `out` must hold our `max_message_size`; a larger
    /// message cannot arrive, and one that does not fit a smaller buffer is
    /// dropped and counted (`DataStats::drop_truncated`). Reading frees the
    /// receive window: drain `poll_transmit` afterwards.
    pub fn poll_data(&mut self, out: &mut [u8]) -> Option<DataMeta> {
        self.data.as_mut()?.poll_data(out)
    }

    /// Bytes of channel `ch` queued or unacknowledged (the
    /// `RTCDataChannel.bufferedAmount` of this side): what a relay compares
    /// with its cap before `send_data`.
    pub fn buffered_amount(&mut self, ch: ChannelId) -> usize {
        self.data.as_mut().map_or(0, |d| d.buffered_amount(ch))
    }

    /// Channel `ch`'s buffered bytes and the rate they have been leaving at (acknowledged or
    /// abandoned), observed at `now`: how long a relayed message would wait behind them, where
    /// `bufferedAmount` alone cannot tell queued bytes from bytes in flight.
    pub fn data_backlog(&mut self, now: Instant, ch: ChannelId) -> Backlog {
        self.last_now = self.last_now.max(now);
        self.data.as_mut().map_or(
            Backlog {
                buffered: 0,
                drain_bytes_per_s: None,
            },
            |d| d.backlog(now, ch),
        )
    }

    /// Bytes queued or unacknowledged across all channels (what
    /// `DataConfig::max_buffered` limits).
    pub fn data_buffered(&mut self) -> usize {
        self.data.as_mut().map_or(0, |d| d.buffered_total())
    }

    /// The SCTP association is established.
    pub fn is_data_connected(&self) -> bool {
        self.data.as_ref().is_some_and(|d| d.is_connected())
    }

    /// Data-channel counters, when data channels are enabled.
    pub fn data_stats(&self) -> Option<&DataStats> {
        self.data.as_ref().map(|d| d.stats())
    }

    /// Feeds the DTLS endpoint's application records to SCTP.
    pub(super) fn pump_sctp_in(&mut self) {
        let now = self.last_now;
        let Some(dtls) = self.transport.dtls_mut() else {
            return;
        };
        // Bounded by the endpoint's record queue.
        while let Some(record) = dtls.poll_application_data() {
            match self.data.as_mut() {
                Some(d) => d.handle_input(now, record),
                None => self.stats.drop_sctp += 1,
            }
        }
    }

    /// The next SCTP packet, as one DTLS record, into `out`.
    pub(super) fn poll_sctp(
        &mut self,
        now: Instant,
        out: &mut [u8],
        dest: Remote,
    ) -> Option<(usize, Remote)> {
        for _ in 0..SCTP_TRIES {
            let packet = self.data.as_mut()?.poll_packet(now)?;
            let dtls = self.transport.dtls_mut()?;
            if dtls.send_application_data(&packet).is_err() {
                continue;
            }
            let r = dtls.poll_transmit(now, out);
            self.pump();
            if let Some(n) = r {
                return Some((n, dest));
            }
        }
        None
    }

    pub(super) fn poll_data_event(&mut self) -> Option<SessionEvent> {
        Some(match self.data.as_mut()?.poll_event()? {
            DataEvent::Connected => SessionEvent::SctpConnected,
            DataEvent::Closed => SessionEvent::SctpClosed,
            DataEvent::ChannelOpen {
                id,
                label,
                protocol,
                ordered,
                reliability,
                negotiated,
            } => SessionEvent::ChannelOpen {
                id,
                label,
                protocol,
                ordered,
                reliability,
                negotiated,
            },
            DataEvent::ChannelClosed { id } => SessionEvent::ChannelClosed { id },
        })
    }
}
