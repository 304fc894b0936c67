//! The shard's half of the data-channel relay (`data.rs` has the envelope, the limits and the
//! counters): data sessions join their room's member list here, their channel events name the
//! `_reliable`/`_lossy`/`_input` channels, and after each drain their received messages are stamped and
//! handed to the room's members on this shard and, boxed, to every other shard's data ring.

use std::time::Instant;

use rtp_core::datachannel::DataConfig;
use rtp_core::session::{Session, SessionEvent};

use crate::pool::BufId;
use crate::proto::{DataSpec, ErrorBody, ErrorCode};

use super::data::{
    behind_notice, drop_of, lossy_over, parse_envelope, stamp, tell_behind, DataDrop, DataMsg,
    DataState, Kind, LOSSY_CAP, MAX_MESSAGE, POLL_BUDGET, RELIABLE_CAP,
};
use super::msg::ShardMsg;
use super::table::Slot;
use super::{Shard, RING_BUDGET};

/// Turns data channels on for a session being built (`CreateSession.data`).
pub(super) fn enable(
    session: &mut Session<BufId>,
    spec: &DataSpec,
) -> Result<DataState, ErrorBody> {
    let cfg = DataConfig {
        max_message_size: MAX_MESSAGE as u32,
        ..DataConfig::default()
    };
    session
        .enable_data_channels(cfg)
        .map_err(|e| ErrorBody::new(ErrorCode::Rejected, format!("data: {e}")))?;
    session.set_remote_max_message_size(spec.remote_max_message_size);
    Ok(DataState::new(spec))
}

impl Shard {
    /// A closing session leaves its room.
    pub(super) fn leave_data(&mut self, slot: Slot, data: Option<&DataState>) {
        if let Some(d) = data {
            self.data_rooms.leave(&d.room, slot);
        }
    }

    /// Channel events of a data session: which channel is `_reliable`/`_lossy`, and our own
    /// channels once SCTP is up (`open_channels`).
    pub(super) fn on_data_event(&mut self, slot: Slot, ev: &SessionEvent) {
        let Some(entry) = self.table.get_mut(slot) else {
            return;
        };
        let Some(d) = entry.data.as_deref_mut() else {
            return;
        };
        match ev {
            SessionEvent::ChannelOpen { id, label, .. } => {
                if let Some(k) = Kind::of_label(label) {
                    d.channels[k as usize] = Some(*id);
                }
            }
            SessionEvent::ChannelClosed { id } => {
                if let Some(k) = d.kind_of(*id) {
                    d.channels[k as usize] = None;
                }
            }
            SessionEvent::SctpConnected if d.open_channels => {
                for k in Kind::ALL {
                    if d.channels[k as usize].is_none() {
                        if let Err(e) = entry.session.open_channel(k.config()) {
                            tracing::warn!(session = %entry.id, error = %e, "opening {} failed", k.name());
                        }
                    }
                }
                self.table.mark_dirty(slot);
            }
            _ => {}
        }
    }

    /// Messages the session's peer sent: stamped and relayed, [`POLL_BUDGET`] per call. A session
    /// that had any is drained again next iteration: reading opened its receive window (a SACK is
    /// due) and may have moved its SCTP timer, which `drain_session` cached before.
    pub(super) fn pump_data(&mut self, now: Instant, slot: Slot) {
        for i in 0..=POLL_BUDGET {
            let Some(entry) = self.table.get_mut(slot) else {
                return;
            };
            let Some(d) = entry.data.as_deref_mut() else {
                return;
            };
            if i == POLL_BUDGET {
                self.table.mark_dirty(slot);
                return;
            }
            let Some(meta) = entry.session.poll_data(&mut self.data_buf) else {
                if i > 0 {
                    self.table.mark_dirty(slot);
                }
                return;
            };
            // Messages on other channels than the two relayed ones are read and discarded.
            let Some(kind) = d.kind_of(meta.channel) else {
                continue;
            };
            let c = &mut self.data_counters;
            c.rx[kind as usize].0 += 1;
            c.rx[kind as usize].1 += meta.len as u64;
            // `_input` goes along the session's input route only (never where the client says);
            // the other kinds need `can_publish`.
            let allowed = match kind {
                Kind::Input => d.input_to.is_some(),
                _ => d.can_publish,
            };
            if !allowed {
                c.drop(kind, DataDrop::NotPermitted);
                continue;
            }
            if !d.rate.allow(now) {
                c.drop(kind, DataDrop::RateLimited);
                continue;
            }
            let Some(inbound) = parse_envelope(&self.data_buf[..meta.len]) else {
                c.drop(kind, DataDrop::BadEnvelope);
                continue;
            };
            let msg = DataMsg {
                room: d.room.clone(),
                kind,
                binary: meta.binary,
                from: entry.id,
                to: match (&d.input_to, kind) {
                    (Some(host), Kind::Input) => vec![host.clone()],
                    _ => inbound.to.iter().map(|s| s.to_string()).collect(),
                },
                bytes: stamp(&d.participant, inbound.payload),
                at: now,
            };
            self.relay(now, msg);
        }
    }

    /// A server message (`Command::SendData`), counted as received and relayed like a peer's.
    pub(super) fn relay_server_message(&mut self, now: Instant, msg: DataMsg) {
        let k = msg.kind as usize;
        self.data_counters.rx[k].0 += 1;
        self.data_counters.rx[k].1 += msg.bytes.len() as u64;
        self.relay(now, msg);
    }

    /// To this shard's members and every other shard.
    fn relay(&mut self, now: Instant, msg: DataMsg) {
        self.deliver(now, &msg);
        let n = self.mesh.shards();
        if n < 2 {
            return;
        }
        let mut msg = Some(msg);
        let last = if self.index == n - 1 { n - 2 } else { n - 1 };
        let me = self.index;
        for to in (0..n).filter(|&s| s != me) {
            let m = if to == last {
                msg.take().map(Box::new)
            } else {
                msg.as_ref().map(|m| {
                    Box::new(DataMsg {
                        room: m.room.clone(),
                        to: m.to.clone(),
                        bytes: m.bytes.clone(),
                        ..*m
                    })
                })
            };
            let Some(m) = m else { break };
            let kind = m.kind;
            if self.mesh.push_data(self.index, to, m).is_err() {
                self.data_counters.drop(kind, DataDrop::RingFull);
            } else {
                self.wake_peers[to] = true;
            }
        }
    }

    /// Hands `msg` to each member of its room on this shard (not its sender; only the named
    /// participants when it names any), each receiver's backpressure checked on its own.
    pub(super) fn deliver(&mut self, now: Instant, msg: &DataMsg) {
        let k = msg.kind as usize;
        let (cap, over) = match msg.kind {
            Kind::Reliable => (RELIABLE_CAP, DataDrop::SlowReceiver),
            Kind::Lossy | Kind::Input => (LOSSY_CAP, DataDrop::Behind),
        };
        // Input always names its one receiver (the sender's route); never the whole room.
        if msg.kind == Kind::Input && msg.to.is_empty() {
            return;
        }
        for &slot in self.data_rooms.members(&msg.room) {
            let Some(entry) = self.table.get_mut(slot) else {
                continue;
            };
            let Some(d) = entry.data.as_deref_mut() else {
                continue;
            };
            if entry.id == msg.from || (!msg.to.is_empty() && !msg.to.contains(&d.participant)) {
                continue;
            }
            let result = match d.channels[k] {
                None => Err(DataDrop::NoChannel),
                Some(ch) => {
                    let backlog = entry.session.data_backlog(now, ch);
                    let buffered = backlog.buffered;
                    let too_far = match msg.kind {
                        Kind::Reliable => buffered + msg.bytes.len() > cap,
                        Kind::Lossy | Kind::Input => lossy_over(backlog, msg.bytes.len()),
                    };
                    if too_far {
                        Err(over)
                    } else {
                        entry
                            .session
                            .send_data(now, ch, msg.binary, &msg.bytes)
                            .map_err(drop_of)
                            .map(|()| buffered)
                    }
                }
            };
            match result {
                Ok(buffered) => {
                    self.data_counters.tx[k].0 += 1;
                    self.data_counters.tx[k].1 += msg.bytes.len() as u64;
                    if d.behind[k] && buffered < cap / 2 {
                        d.behind[k] = false;
                    }
                    self.table.mark_dirty(slot);
                }
                Err(why) => {
                    self.data_counters.drop(msg.kind, why);
                    d.dropped[k] += 1;
                    if matches!(why, DataDrop::SlowReceiver | DataDrop::Behind)
                        && tell_behind(d.behind[k], d.told_at[k], now)
                    {
                        d.behind[k] = true;
                        d.told_at[k] = Some(now);
                        let n = behind_notice(entry.id, msg.kind, d.dropped[k]);
                        if !self.to_control.lossy(ShardMsg::Event(n)) {
                            self.counters.drop(super::counters::Drop::ControlBacklog);
                        }
                    }
                }
            }
        }
    }

    /// Messages other shards relayed to this one, [`RING_BUDGET`] per peer per iteration.
    pub(super) fn drain_data_rings(&mut self, now: Instant) {
        let me = self.index;
        for from in (0..self.mesh.shards()).filter(|&s| s != me) {
            for _ in 0..RING_BUDGET {
                let Some(msg) = self.mesh.pop_data(from, self.index) else {
                    break;
                };
                self.deliver(now, &msg);
            }
        }
    }
}
