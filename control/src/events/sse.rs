//! Server-sent events hub: streams of one room (`?room=R`) or of every room, a bounded buffer
//! per subscriber, and `Last-Event-ID` replay from bounded backlogs (WHATWG HTML "Server-sent
//! events"). A room stream's `id:` is the room's `seq`; the all-rooms stream's is the node-wide
//! event number `n`. Both are persisted with the state, so neither repeats after a restart.
//!
//! A subscriber that falls a whole buffer behind is not silently skipped ahead: it turns
//! *lagged*, [`SseHub::poll`] says so once its buffer is drained, the HTTP layer closes the
//! stream, and the client's automatic reconnect sends `Last-Event-ID`, which replays what the
//! backlog still holds and reports any gap ([`Subscription::missed`]).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use super::envelope::EventEnvelope;

/// Sizes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseConfig {
    /// Events kept per room for replay.
    pub backlog_per_room: usize,
    /// Events kept for the all-rooms stream's replay.
    pub backlog_all: usize,
    /// Events buffered per subscriber before it is lagged.
    pub subscriber_buffer: usize,
    pub max_subscribers: usize,
    /// Room backlogs kept at most; the oldest deleted rooms' go first, then the oldest rooms'.
    pub max_room_backlogs: usize,
}

/// Opaque handle for one SSE stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SubscriberId(u64);

/// A new stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    pub id: SubscriberId,
    /// Ids `(first, last)` the replay could not supply (aged out of the backlog).
    pub missed: Option<(u64, u64)>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SseError {
    #[error("Last-Event-ID must be a decimal event id")]
    InvalidLastEventId,
    #[error("too many event-stream subscribers")]
    TooManySubscribers,
    #[error("unknown subscriber")]
    UnknownSubscriber,
    /// The subscriber fell behind; close the stream, the client resumes from `last_id` with
    /// `Last-Event-ID`.
    #[error("subscriber lagged behind after id {last_id}")]
    Lagged { last_id: u64 },
}

/// All SSE subscribers and backlogs.
#[derive(Debug)]
pub struct SseHub {
    config: SseConfig,
    rooms: HashMap<String, RoomBacklog>,
    all: VecDeque<Arc<EventEnvelope>>,
    subscribers: BTreeMap<SubscriberId, Subscriber>,
    next_id: u64,
}

#[derive(Debug, Default)]
struct RoomBacklog {
    events: VecDeque<Arc<EventEnvelope>>,
    /// The room was deleted (its backlog goes first when there are too many).
    deleted: bool,
    /// Node-wide number of its last event, to find the oldest backlog.
    last_n: u64,
}

#[derive(Debug)]
struct Subscriber {
    /// `None`: every room.
    room: Option<String>,
    buffer: VecDeque<Arc<EventEnvelope>>,
    /// Id (seq or n) of the last event accepted into the buffer.
    last_id: u64,
    lagged: bool,
}

impl Subscriber {
    fn id_of(&self, e: &EventEnvelope) -> u64 {
        if self.room.is_some() {
            e.seq
        } else {
            e.n
        }
    }
}

impl SseHub {
    pub fn new(config: SseConfig) -> Self {
        SseHub {
            config,
            rooms: HashMap::new(),
            all: VecDeque::new(),
            subscribers: BTreeMap::new(),
            next_id: 0,
        }
    }

    /// Opens a stream on `room` (every room when `None`), replaying events after
    /// `last_event_id` (the `Last-Event-ID` header) if given.
    pub fn subscribe(
        &mut self,
        room: Option<&str>,
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
            room: room.map(str::to_owned),
            buffer: VecDeque::with_capacity(self.config.subscriber_buffer.min(64)),
            last_id: after.unwrap_or(0),
            lagged: false,
        };
        let mut missed = None;
        if let Some(after) = after {
            let backlog = match room {
                Some(r) => self.rooms.get(r).map(|b| &b.events),
                None => Some(&self.all),
            };
            let replay: Vec<&Arc<EventEnvelope>> = backlog
                .into_iter()
                .flatten()
                .filter(|e| sub.id_of(e) > after)
                .collect();
            let skip = replay.len().saturating_sub(self.config.subscriber_buffer);
            if let Some(first) = replay.get(skip).map(|e| sub.id_of(e)) {
                if first > after + 1 {
                    missed = Some((after + 1, first - 1));
                }
            }
            for e in &replay[skip..] {
                sub.last_id = sub.id_of(e);
                sub.buffer.push_back(Arc::clone(e));
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

    /// Records `envelope` in the backlogs and hands it to its subscribers. Events of one room
    /// arrive in `seq` order, all events in `n` order.
    pub fn publish(&mut self, envelope: &EventEnvelope) {
        let e = Arc::new(envelope.clone());
        if self.all.len() >= self.config.backlog_all {
            self.all.pop_front();
        }
        self.all.push_back(Arc::clone(&e));
        if !self.rooms.contains_key(&e.room) && self.rooms.len() >= self.config.max_room_backlogs {
            self.evict_backlog();
        }
        let backlog = self.rooms.entry(e.room.clone()).or_default();
        if backlog.events.len() >= self.config.backlog_per_room {
            backlog.events.pop_front();
        }
        backlog.events.push_back(Arc::clone(&e));
        backlog.last_n = e.n;
        backlog.deleted = e.kind == "room_deleted";
        for sub in self.subscribers.values_mut() {
            if sub.lagged || sub.room.as_ref().is_some_and(|r| *r != e.room) {
                continue;
            }
            let id = sub.id_of(&e);
            if id <= sub.last_id {
                continue;
            }
            if sub.buffer.len() >= self.config.subscriber_buffer {
                sub.lagged = true;
                continue;
            }
            sub.last_id = id;
            sub.buffer.push_back(Arc::clone(&e));
        }
    }

    /// The next event for `id`; once its buffer is drained after lagging, `Err(Lagged)`.
    pub fn poll(&mut self, id: SubscriberId) -> Result<Option<Arc<EventEnvelope>>, SseError> {
        let sub = self
            .subscribers
            .get_mut(&id)
            .ok_or(SseError::UnknownSubscriber)?;
        match sub.buffer.pop_front() {
            Some(e) => Ok(Some(e)),
            None if sub.lagged => Err(SseError::Lagged {
                last_id: sub.last_id,
            }),
            None => Ok(None),
        }
    }

    /// The `id:` a subscriber's stream gives `envelope`.
    pub fn event_id(&self, sub: SubscriberId, envelope: &EventEnvelope) -> u64 {
        match self.subscribers.get(&sub) {
            Some(s) => s.id_of(envelope),
            None => envelope.n,
        }
    }

    pub fn subscriber_count(&self) -> usize {
        self.subscribers.len()
    }

    /// Drops one room backlog: a deleted room's first, else the one idle longest.
    fn evict_backlog(&mut self) {
        let victim = self
            .rooms
            .iter()
            .min_by_key(|(_, b)| (!b.deleted, b.last_n))
            .map(|(r, _)| r.clone());
        if let Some(r) = victim {
            self.rooms.remove(&r);
        }
    }
}

/// One event in `text/event-stream` form with the given `id:`. The JSON has no newlines, so
/// one `data:` line suffices.
pub fn format_event(id: u64, envelope: &EventEnvelope) -> String {
    let json = serde_json::to_string(envelope).expect("envelopes always serialize");
    format!("id: {id}\nevent: {}\ndata: {json}\n\n", envelope.kind)
}

impl Default for SseConfig {
    fn default() -> Self {
        SseConfig {
            backlog_per_room: 256,
            backlog_all: 1024,
            subscriber_buffer: 256,
            max_subscribers: 256,
            max_room_backlogs: 4096,
        }
    }
}
