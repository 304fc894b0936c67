//! Server-sent events hub: per-room streams with a bounded buffer per
//! subscriber and `Last-Event-ID` replay from a bounded per-room backlog
//! (WHATWG HTML "Server-sent events": the `id:` field is the room's `seq`).
//!
//! A subscriber that falls a whole buffer behind is not silently skipped
//! ahead: it turns *lagged*, [`SseHub::poll`] says so, the HTTP layer closes
//! the stream, and the client's automatic reconnect sends `Last-Event-ID`,
//! which replays what the backlog still holds and reports any gap.

use std::collections::{BTreeMap, HashMap, VecDeque};

use super::envelope::EventEnvelope;

/// Sizes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseConfig {
    /// Events kept per room for replay.
    pub backlog_per_room: usize,
    /// Events buffered per subscriber before it is lagged.
    pub subscriber_buffer: usize,
    pub max_subscribers: usize,
}

/// Opaque handle for one SSE stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SubscriberId(u64);

/// A new stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    pub id: SubscriberId,
    /// Seqs `(first, last)` the replay could not supply (aged out of the backlog).
    pub missed: Option<(u64, u64)>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SseError {
    #[error("Last-Event-ID must be a decimal sequence number")]
    InvalidLastEventId,
    #[error("too many event-stream subscribers")]
    TooManySubscribers,
    #[error("unknown subscriber")]
    UnknownSubscriber,
    /// The subscriber fell behind; close the stream, the client resumes
    /// from `last_seq` with `Last-Event-ID`.
    #[error("subscriber lagged behind after seq {last_seq}")]
    Lagged { last_seq: u64 },
}

/// All SSE subscribers and room backlogs.
#[derive(Debug)]
pub struct SseHub {
    config: SseConfig,
    backlogs: HashMap<String, VecDeque<EventEnvelope>>,
    subscribers: BTreeMap<SubscriberId, Subscriber>,
    next_id: u64,
}

#[derive(Debug)]
struct Subscriber {
    room: String,
    buffer: VecDeque<EventEnvelope>,
    /// Seq of the last event accepted into the buffer.
    last_seq: u64,
    lagged: bool,
}

impl SseHub {
    pub fn new(config: SseConfig) -> Self {
        SseHub {
            config,
            backlogs: HashMap::new(),
            subscribers: BTreeMap::new(),
            next_id: 0,
        }
    }

    /// Opens a stream on `room`, replaying events after `last_event_id`
    /// (the `Last-Event-ID` header) if given.
    pub fn subscribe(
        &mut self,
        room: &str,
        last_event_id: Option<&str>,
    ) -> Result<Subscription, SseError> {
        let after = last_event_id
            .map(|v| {
                v.trim()
                    .parse::<u64>()
                    .map_err(|_| SseError::InvalidLastEventId)
            })
            .transpose()?;
        if self.subscribers.len() >= self.config.max_subscribers {
            return Err(SseError::TooManySubscribers);
        }
        let mut sub = Subscriber {
            room: room.to_owned(),
            buffer: VecDeque::with_capacity(self.config.subscriber_buffer.min(64)),
            last_seq: after.unwrap_or(0),
            lagged: false,
        };
        let mut missed = None;
        if let (Some(after), Some(backlog)) = (after, self.backlogs.get(room)) {
            let replay: Vec<&EventEnvelope> = backlog.iter().filter(|e| e.seq > after).collect();
            let skip = replay.len().saturating_sub(self.config.subscriber_buffer);
            let first_available = replay.get(skip).map(|e| e.seq);
            if let Some(first) = first_available.filter(|&f| f > after + 1) {
                missed = Some((after + 1, first - 1));
            }
            for e in &replay[skip..] {
                sub.last_seq = e.seq;
                sub.buffer.push_back((*e).clone());
            }
        }
        self.next_id += 1;
        let id = SubscriberId(self.next_id);
        self.subscribers.insert(id, sub);
        Ok(Subscription { id, missed })
    }

    pub fn unsubscribe(&mut self, id: SubscriberId) {
        self.subscribers.remove(&id);
    }

    /// Records `envelope` in its room's backlog and hands it to that room's subscribers.
    pub fn publish(&mut self, envelope: &EventEnvelope) {
        let backlog = self.backlogs.entry(envelope.room.clone()).or_default();
        if backlog.len() >= self.config.backlog_per_room {
            backlog.pop_front();
        }
        backlog.push_back(envelope.clone());
        for sub in self.subscribers.values_mut() {
            if sub.room != envelope.room || sub.lagged || envelope.seq <= sub.last_seq {
                continue;
            }
            if sub.buffer.len() >= self.config.subscriber_buffer {
                sub.lagged = true;
                continue;
            }
            sub.last_seq = envelope.seq;
            sub.buffer.push_back(envelope.clone());
        }
    }

    /// The next event for `id`; once its buffer is drained after lagging,
    /// `Err(Lagged)`.
    pub fn poll(&mut self, id: SubscriberId) -> Result<Option<EventEnvelope>, SseError> {
        let sub = self
            .subscribers
            .get_mut(&id)
            .ok_or(SseError::UnknownSubscriber)?;
        match sub.buffer.pop_front() {
            Some(e) => Ok(Some(e)),
            None if sub.lagged => Err(SseError::Lagged {
                last_seq: sub.last_seq,
            }),
            None => Ok(None),
        }
    }

    /// Frees a room's backlog (call some time after the room is deleted, so
    /// late reconnects can still replay `room_deleted`).
    pub fn forget_room(&mut self, room: &str) {
        self.backlogs.remove(room);
    }

    pub fn subscriber_count(&self) -> usize {
        self.subscribers.len()
    }
}

/// One event in `text/event-stream` form. The JSON has no newlines, so one
/// `data:` line suffices.
pub fn format_event(envelope: &EventEnvelope) -> String {
    let json = serde_json::to_string(envelope).expect("envelopes always serialize");
    format!(
        "id: {}\nevent: {}\ndata: {json}\n\n",
        envelope.seq, envelope.kind
    )
}

impl Default for SseConfig {
    fn default() -> Self {
        SseConfig {
            backlog_per_room: 256,
            subscriber_buffer: 256,
            max_subscribers: 1024,
        }
    }
}
