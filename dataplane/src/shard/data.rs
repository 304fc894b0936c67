//! The data-channel relay (issue 17, decisions D60–D63). A session created with `data` has an
//! SCTP association; what its peer sends on the channel labelled `_reliable` or `_lossy` is
//! relayed to the other data sessions of its room, stamped with its participant id, on the
//! receiver's channel of the same label. What it sends on `_input` (D87) goes only to the
//! participant its input route names (`DataSpec::input_to`: the host, while its participant is a
//! controller holding control), on that receiver's `_input` channel; with no route it is dropped,
//! counted `not_permitted`. The route changes live (`Command::UpdateData`).
//!
//! Envelopes (one per message, `docs/protocol.md`):
//! - client → server: `[1][n]` then n destinations `[len][participant id]`, then the payload;
//!   n = 0 sends to the whole room;
//! - server → client: `[1][len][sender's participant id]` then the payload.
//!
//! Off the media path by design: a message is copied into a fresh `Vec` per hop (sctp-proto
//! copies it again), one box per other shard crosses on its own bounded ring (`Mesh::push_data`),
//! and nothing here runs for a session without data channels.
//!
//! Backpressure, per receiver and never blocking anyone else: before each `send_data` the
//! receiver's channel's `buffered_amount` is compared with a cap — [`RELIABLE_CAP`] for
//! `_reliable` (the message is dropped, counted `slow_receiver`, and the receiver told once
//! through `Notification::DataBehind`); for `_lossy` and `_input`, [`lossy_over`]: over
//! [`LOSSY_CAP`] and not drained within [`LOSSY_DRAIN`] at the channel's measured drain rate
//! (dropped early, counted `behind`). A receiver is told at most once per [`NOTICE_INTERVAL`] per kind, however often
//! its buffer crosses the cap and drains (D91). Each sender has a token bucket of messages
//! (`DataSpec::max_rate`).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rtp_core::datachannel::{Backlog, ChannelConfig, ChannelId, DataError, Reliability};

use crate::proto::{DataSpec, Notification, SessionId};

use super::route::RateLimit;
use super::table::Slot;

/// Labels of the two relayed channels.
pub const RELIABLE_LABEL: &str = "_reliable";
pub const LOSSY_LABEL: &str = "_lossy";
/// Label of the input channel (unordered, no retransmissions, like `_lossy`): a controller's
/// input events to the host, relayed only along the session's input route (D87).
pub const INPUT_LABEL: &str = "_input";
/// Bytes a receiver's `_reliable` channel may hold queued or unacknowledged before relayed
/// messages for it are dropped (Chrome closes a channel at 16 MiB; LiveKit drops slow readers).
pub const RELIABLE_CAP: usize = 1 << 20;
/// Bytes a receiver's `_lossy` channel may always hold (about 100 ms of a busy input stream).
/// Beyond it a new message is dropped unless the buffer empties within [`LOSSY_DRAIN`] at the
/// rate it has been emptying: `bufferedAmount` counts bytes in flight too, and a reader that
/// keeps up over a long path has more than this in flight (see [`lossy_over`]).
pub const LOSSY_CAP: usize = 16 * 1024;
/// The longest a `_lossy` or `_input` receiver's buffer may take to empty, with the new message,
/// before the message is dropped: a round trip, a delayed SACK (up to 200 ms, RFC 9260 §6.2)
/// and ~100 ms of queue; a lossy message that would wait behind more is worth less than a fresh
/// one.
pub const LOSSY_DRAIN: Duration = Duration::from_millis(500);
/// What a `_lossy` or `_input` receiver's buffer may hold before its drain rate is known (the
/// first 100 ms of a stream: a sender's opening burst, SCTP's slow start).
pub const LOSSY_UNMEASURED_CAP: usize = 64 * 1024;
/// The least time between two `data_behind` notices of one kind to one receiver: an episode
/// ends when a send finds the buffer under half the cap, which a `_lossy` buffer (mostly bytes
/// in flight) does between two SACKs, so episodes may start several times a second (D91).
pub const NOTICE_INTERVAL: Duration = Duration::from_secs(1);
/// Messages a sender may relay per second when its spec names no rate (burst: one second's worth).
pub const DEFAULT_RATE: u32 = 1000;
/// Messages taken from one session per drain (the rest wait for the next iteration).
pub const POLL_BUDGET: usize = 64;
/// Largest message a peer may send us (our `a=max-message-size`).
pub const MAX_MESSAGE: usize = 65_536;
/// Envelope version.
pub const ENVELOPE_V1: u8 = 1;
/// Destinations one message may name.
pub const MAX_DESTINATIONS: usize = 64;

/// The relayed channel kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Reliable = 0,
    Lossy = 1,
    Input = 2,
}

/// Whether a lossy (`_lossy`, `_input`) message of `len` bytes is dropped for a receiver whose
/// channel holds `b`: over [`LOSSY_CAP`] and either over [`RELIABLE_CAP`] (the bound on any
/// receiver's buffer) or not empty within [`LOSSY_DRAIN`] at its drain rate (a reader that
/// stopped drains at 0); before the rate is known, over [`LOSSY_UNMEASURED_CAP`].
pub fn lossy_over(b: Backlog, len: usize) -> bool {
    let total = b.buffered + len;
    if total <= LOSSY_CAP {
        return false;
    }
    if total > RELIABLE_CAP {
        return true;
    }
    match b.drain_bytes_per_s {
        None => total > LOSSY_UNMEASURED_CAP,
        Some(_) => b.drain_time(len).is_none_or(|t| t > LOSSY_DRAIN),
    }
}

/// How many kinds there are (array sizes).
pub const KINDS: usize = 3;

impl Kind {
    pub const ALL: [Kind; KINDS] = [Kind::Reliable, Kind::Lossy, Kind::Input];

    pub fn of_label(label: &str) -> Option<Kind> {
        match label {
            RELIABLE_LABEL => Some(Kind::Reliable),
            LOSSY_LABEL => Some(Kind::Lossy),
            INPUT_LABEL => Some(Kind::Input),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Kind::Reliable => "reliable",
            Kind::Lossy => "lossy",
            Kind::Input => "input",
        }
    }

    /// The channel we open for this kind (`open_channels`).
    pub fn config(self) -> ChannelConfig {
        let (label, ordered, reliability) = match self {
            Kind::Reliable => (RELIABLE_LABEL, true, Reliability::Reliable),
            Kind::Lossy => (LOSSY_LABEL, false, Reliability::MaxRetransmits(0)),
            Kind::Input => (INPUT_LABEL, false, Reliability::MaxRetransmits(0)),
        };
        ChannelConfig {
            label: label.to_string(),
            protocol: String::new(),
            ordered,
            reliability,
            priority: 256,
            negotiated: None,
        }
    }
}

/// Why a relayed message was not delivered (or not relayed at all).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataDrop {
    /// The sender went over its message rate.
    RateLimited,
    /// The sender lacks `can_publish` (or, on `_input`, an input route).
    NotPermitted,
    /// The envelope did not parse.
    BadEnvelope,
    /// A receiver's `_reliable` buffer was over [`RELIABLE_CAP`].
    SlowReceiver,
    /// A receiver's `_lossy` buffer was over [`LOSSY_CAP`].
    Behind,
    /// Larger than the receiver accepts.
    TooBig,
    /// The receiver has no open channel of this kind (or its association is gone).
    NoChannel,
    /// The cross-shard data ring was full.
    RingFull,
}

impl DataDrop {
    pub const ALL: [DataDrop; 8] = [
        DataDrop::RateLimited,
        DataDrop::NotPermitted,
        DataDrop::BadEnvelope,
        DataDrop::SlowReceiver,
        DataDrop::Behind,
        DataDrop::TooBig,
        DataDrop::NoChannel,
        DataDrop::RingFull,
    ];

    pub fn name(self) -> &'static str {
        match self {
            DataDrop::RateLimited => "rate_limited",
            DataDrop::NotPermitted => "not_permitted",
            DataDrop::BadEnvelope => "bad_envelope",
            DataDrop::SlowReceiver => "slow_receiver",
            DataDrop::Behind => "behind",
            DataDrop::TooBig => "too_big",
            DataDrop::NoChannel => "no_channel",
            DataDrop::RingFull => "ring_full",
        }
    }
}

/// Per-kind relay counters of a shard.
#[derive(Debug, Default, Clone)]
pub struct DataCounters {
    /// Messages and bytes received from senders (payload bytes).
    pub rx: [(u64, u64); KINDS],
    /// Messages and bytes handed to receivers' channels.
    pub tx: [(u64, u64); KINDS],
    pub drops: [[u64; DataDrop::ALL.len()]; KINDS],
}

impl DataCounters {
    pub fn drop(&mut self, kind: Kind, why: DataDrop) {
        self.drops[kind as usize][why as usize] += 1;
    }

    pub fn dropped(&self, kind: Kind, why: DataDrop) -> u64 {
        self.drops[kind as usize][why as usize]
    }

    /// `data_{kind}_{rx,tx}_{messages,bytes}` and `data_{kind}_drop_{reason}`.
    pub fn entries(&self) -> impl Iterator<Item = (String, u64)> + '_ {
        Kind::ALL.into_iter().flat_map(move |k| {
            let i = k as usize;
            let n = k.name();
            [
                (format!("data_{n}_rx_messages"), self.rx[i].0),
                (format!("data_{n}_rx_bytes"), self.rx[i].1),
                (format!("data_{n}_tx_messages"), self.tx[i].0),
                (format!("data_{n}_tx_bytes"), self.tx[i].1),
            ]
            .into_iter()
            .chain(DataDrop::ALL.into_iter().map(move |d| {
                (
                    format!("data_{n}_drop_{}", d.name()),
                    self.drops[i][d as usize],
                )
            }))
        })
    }
}

/// A session's relay state (on its table `Entry`).
#[derive(Debug)]
pub struct DataState {
    pub room: String,
    pub participant: String,
    pub can_publish: bool,
    /// Where this session's `_input` messages go (`DataSpec::input_to`); none: dropped.
    pub input_to: Option<String>,
    pub open_channels: bool,
    /// Our channels of each kind, once open.
    pub channels: [Option<ChannelId>; KINDS],
    pub(super) rate: RateLimit,
    /// Per kind: drops for this receiver so far, whether it is behind now and told so, and
    /// when it was last told ([`NOTICE_INTERVAL`]).
    pub dropped: [u64; KINDS],
    pub behind: [bool; KINDS],
    pub told_at: [Option<Instant>; KINDS],
}

impl DataState {
    pub fn new(spec: &DataSpec) -> Self {
        let rate = spec.max_rate.unwrap_or(DEFAULT_RATE);
        Self {
            room: spec.room.clone(),
            participant: spec.participant.clone(),
            can_publish: spec.can_publish,
            input_to: spec.input_to.clone(),
            open_channels: spec.open_channels,
            channels: [None; KINDS],
            rate: RateLimit::new(rate, rate),
            dropped: [0; KINDS],
            behind: [false; KINDS],
            told_at: [None; KINDS],
        }
    }

    pub fn kind_of(&self, ch: ChannelId) -> Option<Kind> {
        Kind::ALL
            .into_iter()
            .find(|&k| self.channels[k as usize] == Some(ch))
    }
}

/// A message on its way to receivers: on this shard, or boxed on the data ring to another.
#[derive(Debug)]
pub struct DataMsg {
    pub room: String,
    pub kind: Kind,
    pub binary: bool,
    /// The sending session (not delivered back to it).
    pub from: SessionId,
    /// Destination participants; empty: the whole room.
    pub to: Vec<String>,
    /// The stamped envelope (`[1][len][sender]` + payload).
    pub bytes: Vec<u8>,
    /// When the sender's datagram was handled (relay latency).
    pub at: Instant,
}

impl DataMsg {
    /// A server message (`Command::SendData`): stamped with its `from`, from no session.
    pub fn from_server(d: crate::proto::SendData, at: Instant) -> Self {
        Self {
            kind: if d.reliable {
                Kind::Reliable
            } else {
                Kind::Lossy
            },
            binary: d.binary,
            from: SERVER_SESSION,
            bytes: stamp(&d.from, &d.payload),
            room: d.room,
            to: d.to,
            at,
        }
    }
}

/// The `from` of server messages: no session has id 0 (the control daemon counts from 1), so
/// nobody is skipped as the sender.
pub const SERVER_SESSION: SessionId = SessionId(0);

/// A client envelope, parsed: its destinations and where the payload starts.
#[derive(Debug, PartialEq, Eq)]
pub struct Inbound<'a> {
    pub to: Vec<&'a str>,
    pub payload: &'a [u8],
}

/// Parses a client → server envelope; `None` when it is malformed (counted `bad_envelope`).
pub fn parse_envelope(msg: &[u8]) -> Option<Inbound<'_>> {
    let (&ver, rest) = msg.split_first()?;
    if ver != ENVELOPE_V1 {
        return None;
    }
    let (&n, mut rest) = rest.split_first()?;
    if usize::from(n) > MAX_DESTINATIONS {
        return None;
    }
    let mut to = Vec::with_capacity(usize::from(n));
    for _ in 0..n {
        let (&len, r) = rest.split_first()?;
        let len = usize::from(len);
        if len == 0 || r.len() < len {
            return None;
        }
        to.push(std::str::from_utf8(&r[..len]).ok()?);
        rest = &r[len..];
    }
    Some(Inbound { to, payload: rest })
}

/// The server → client envelope for `payload` from `participant` (at most 128 bytes: validated
/// by `DataSpec`, so it fits the length byte).
pub fn stamp(participant: &str, payload: &[u8]) -> Vec<u8> {
    let id = participant.as_bytes();
    let mut out = Vec::with_capacity(2 + id.len() + payload.len());
    out.push(ENVELOPE_V1);
    out.push(id.len().min(255) as u8);
    out.extend_from_slice(&id[..id.len().min(255)]);
    out.extend_from_slice(payload);
    out
}

/// The data sessions of each room on this shard.
#[derive(Debug, Default)]
pub struct DataRooms {
    rooms: HashMap<String, Vec<Slot>>,
}

impl DataRooms {
    pub fn join(&mut self, room: &str, slot: Slot) {
        self.rooms.entry(room.to_string()).or_default().push(slot);
    }

    pub fn leave(&mut self, room: &str, slot: Slot) {
        if let Some(v) = self.rooms.get_mut(room) {
            v.retain(|&s| s != slot);
            if v.is_empty() {
                self.rooms.remove(room);
            }
        }
    }

    pub fn members(&self, room: &str) -> &[Slot] {
        self.rooms.get(room).map_or(&[], Vec::as_slice)
    }

    pub fn len(&self) -> usize {
        self.rooms.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rooms.is_empty()
    }
}

/// The drop reason for a `send_data` error.
pub fn drop_of(e: DataError) -> DataDrop {
    match e {
        DataError::TooBig { .. } => DataDrop::TooBig,
        DataError::Full { .. } => DataDrop::SlowReceiver,
        _ => DataDrop::NoChannel,
    }
}

/// Whether a receiver that just had a message dropped for it is told now: not while it is
/// already told for this episode, nor within [`NOTICE_INTERVAL`] of its last notice of the kind
/// (a later drop of the same stretch tells it once the interval has passed).
pub fn tell_behind(behind: bool, told_at: Option<Instant>, now: Instant) -> bool {
    !behind && told_at.is_none_or(|t| now.saturating_duration_since(t) >= NOTICE_INTERVAL)
}

/// The notice a receiver that starts falling behind causes.
pub fn behind_notice(session: SessionId, kind: Kind, dropped: u64) -> Notification {
    Notification::DataBehind {
        session,
        reliable: kind == Kind::Reliable,
        dropped,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A lossy receiver is behind when its buffer will not empty within `LOSSY_DRAIN`, not when
    /// `bufferedAmount` passes 16 KiB: over a 100 ms path a reader that keeps up has ~40 kB in
    /// flight (rtp-core `tests/datachannel_backlog.rs` measures it), which the old fixed cap
    /// dropped.
    #[test]
    fn lossy_messages_are_dropped_for_a_reader_behind_not_for_bytes_in_flight() {
        let b = |buffered, drain_bytes_per_s| Backlog {
            buffered,
            drain_bytes_per_s,
        };
        // Keeps up: 40 kB buffered at 400 kB/s empties in ~100 ms.
        assert!(!lossy_over(b(40_000, Some(400_000)), 1_000));
        // Under the cap nothing is dropped, whatever the rate.
        assert!(!lossy_over(b(10_000, Some(0)), 1_000));
        // Stopped (rate 0) or too slow (40 kB at 20 kB/s is 2 s) past the cap: dropped.
        assert!(lossy_over(b(17_000, Some(0)), 1_000));
        assert!(lossy_over(b(40_000, Some(20_000)), 1_000));
        // Before a rate is known (a stream's first 100 ms) up to 64 KiB, not more.
        assert!(!lossy_over(b(40_000, None), 1_000));
        assert!(lossy_over(b(LOSSY_UNMEASURED_CAP, None), 1));
        // The hard bound holds whatever the rate.
        assert!(lossy_over(b(RELIABLE_CAP, Some(100_000_000)), 1));
    }

    #[test]
    fn envelopes_parse_and_refuse() {
        let m = parse_envelope(&[1, 0, b'h', b'i']).expect("room-wide");
        assert!(m.to.is_empty());
        assert_eq!(m.payload, b"hi");
        let m = parse_envelope(&[1, 2, 1, b'a', 2, b'b', b'c', 9]).expect("two");
        assert_eq!(m.to, vec!["a", "bc"]);
        assert_eq!(m.payload, &[9]);
        assert_eq!(parse_envelope(&[1, 0]).expect("empty").payload, b"");
        for bad in [
            &[][..],
            &[2, 0],
            &[1],
            &[1, 1],
            &[1, 1, 0],
            &[1, 1, 3, b'a'],
            &[1, 1, 1, 0xff],
        ] {
            assert_eq!(parse_envelope(bad), None, "{bad:?}");
        }
        assert_eq!(parse_envelope(&[1, 65]), None, "too many destinations");
    }

    #[test]
    fn stamping_prefixes_the_sender() {
        assert_eq!(stamp("ab", b"x"), vec![1, 2, b'a', b'b', b'x']);
    }

    #[test]
    fn behind_notices_wait_for_the_interval() {
        let t0 = Instant::now();
        assert!(tell_behind(false, None, t0), "first episode");
        assert!(!tell_behind(true, Some(t0), t0), "same episode");
        let soon = t0 + NOTICE_INTERVAL / 2;
        assert!(
            !tell_behind(false, Some(t0), soon),
            "next episode within the interval"
        );
        assert!(
            tell_behind(false, Some(t0), t0 + NOTICE_INTERVAL),
            "after it"
        );
    }

    #[test]
    fn counters_name_every_kind_and_reason() {
        let mut c = DataCounters::default();
        c.drop(Kind::Lossy, DataDrop::Behind);
        let e: HashMap<String, u64> = c.entries().collect();
        assert_eq!(e.len(), KINDS * (4 + DataDrop::ALL.len()));
        assert_eq!(e["data_input_drop_not_permitted"], 0);
        assert_eq!(e["data_lossy_drop_behind"], 1);
        assert_eq!(e["data_reliable_drop_behind"], 0);
    }
}
