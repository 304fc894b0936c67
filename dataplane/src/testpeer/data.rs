//! [`TestPeer`]'s data channels: enable, open, close, send, receive, wait for a channel, and the
//! server's channel events.

use std::time::{Duration, Instant};

use rtp_core::datachannel::{ChannelConfig, ChannelId, DataConfig};
use rtp_core::session::SessionEvent;

use super::{PeerError, ReceivedData, TestPeer};

impl TestPeer {
    /// Turns data channels on (the server's session must have them on too); call before
    /// [`TestPeer::handshake`] so the association starts with DTLS, or after it to start now.
    pub fn enable_data_channels(&mut self, cfg: DataConfig) -> Result<(), PeerError> {
        self.session.enable_data_channels(cfg)?;
        self.data_rx = vec![0; cfg.max_message_size as usize];
        self.flush()
    }

    /// Opens a channel (in band with DCEP on the next even id, or on `cfg.negotiated`).
    pub fn open_channel(&mut self, cfg: ChannelConfig) -> Result<ChannelId, PeerError> {
        let id = self.session.open_channel(cfg)?;
        self.flush()?;
        Ok(id)
    }

    /// Closes a channel (stream reset).
    pub fn close_channel(&mut self, ch: ChannelId) -> Result<(), PeerError> {
        self.session.close_channel(ch)?;
        self.flush()
    }

    /// Sends one message on an open channel (`Full`/`TooBig` come back as `PeerError::Data`).
    pub fn send_data(&mut self, ch: ChannelId, binary: bool, data: &[u8]) -> Result<(), PeerError> {
        self.session.send_data(Instant::now(), ch, binary, data)?;
        self.flush()
    }

    /// Bytes of `ch` not yet acknowledged by the server.
    pub fn buffered_amount(&mut self, ch: ChannelId) -> usize {
        self.session.buffered_amount(ch)
    }

    /// The next data-channel message, or `None` when `timeout` passes first. Media that
    /// arrives meanwhile is handled and discarded.
    pub fn recv_data(&mut self, timeout: Duration) -> Result<Option<ReceivedData>, PeerError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(m) = self.session.poll_data(&mut self.data_rx) {
                let data = self.data_rx[..m.len].to_vec();
                self.flush()?;
                return Ok(Some(ReceivedData {
                    channel: m.channel,
                    binary: m.binary,
                    data,
                }));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            self.step(deadline, None)?;
        }
    }

    /// Waits until a channel called `label` is open (ours or the server's) and returns its id.
    pub fn wait_channel_open(
        &mut self,
        label: &str,
        timeout: Duration,
    ) -> Result<ChannelId, PeerError> {
        let deadline = Instant::now() + timeout;
        loop {
            let found = self.data_events.iter().rev().find_map(|e| match e {
                SessionEvent::ChannelOpen { id, label: l, .. } if l == label => Some(*id),
                _ => None,
            });
            if let Some(id) = found {
                return Ok(id);
            }
            if Instant::now() >= deadline {
                return Err(PeerError::Timeout(timeout));
            }
            self.step(deadline, None)?;
        }
    }

    /// Data-channel events so far (`ChannelOpen`, `ChannelClosed`, `SctpConnected`,
    /// `SctpClosed`), oldest first; taking them empties the list.
    pub fn take_data_events(&mut self) -> Vec<SessionEvent> {
        self.data_events.drain(..).collect()
    }
}
