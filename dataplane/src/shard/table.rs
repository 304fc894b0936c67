//! `SessionTable`: the sessions a shard owns and every map that finds one — by id, by remote,
//! by local ICE ufrag — plus the two work lists of the drain phase (sessions touched this
//! iteration; sessions with paced media ready). One `insert`, one `remove` and one
//! `register_remote` keep the maps consistent, so no other code edits them.
//!
//! A remote is entered for a session only when the session says the address passed an
//! authenticated ICE check (`Session::is_validated`), never for an indication, a refused check
//! or a datagram that merely named the session's ufrag (security review #4); a session keeps at
//! most [`MAX_REMOTES`] of them — the ICE agent's candidate table — and an address the agent
//! evicted leaves the maps with it.
//!
//! Room for what comes next: a [`Remote`] is a UDP address today; ICE-TCP (issue 18) adds
//! `Remote::Tcp(conn)` for a connection on this shard's TCP listener, found through the same
//! `by_remote` map. Data channels (issue 17) hang off the `Entry` (`data`) like tracks do.

use std::collections::hash_map::Entry as MapEntry;
use std::collections::{HashMap, VecDeque};
use std::time::Instant;

use rtp_core::session::Session;

use super::data::DataState;
use crate::pool::BufId;
use crate::proto::{SessionId, SubscriptionId, TrackId};

/// Index of a session in the table.
pub(super) type Slot = u32;

/// Remote addresses a session may hold in the demux maps: rtp-core's ICE candidate table size.
pub(super) const MAX_REMOTES: usize = 8;

/// Where a session's datagrams come from: a UDP address or a TCP connection's peer.
pub(super) use rtp_core::net::Remote;

/// One session on this shard.
#[derive(Debug)]
pub(super) struct Entry {
    pub id: SessionId,
    pub session: Session<BufId>,
    /// UpId index → the track it carries.
    pub ups: Vec<Option<TrackId>>,
    /// DownId index → the track and subscription it forwards.
    pub downs: Vec<Option<(TrackId, SubscriptionId)>>,
    /// Remotes entered in `by_remote` for this session, at most [`MAX_REMOTES`].
    pub remotes: Vec<Remote>,
    /// The local ICE ufrag (WebRTC sessions).
    pub ufrag: Option<String>,
    pub priority: u8,
    /// In `dirty`: to drain this iteration.
    dirty: bool,
    /// In `ready`: its pacer may have media to send now.
    ready: bool,
    /// In `audio`: an audio copy was queued in its pacer since the last drain.
    audio: bool,
    /// Data-channel relay state (sessions created with `data`).
    pub data: Option<Box<DataState>>,
}

impl Entry {
    pub fn new(id: SessionId, session: Session<BufId>, priority: u8) -> Self {
        Self {
            id,
            session,
            ups: Vec::new(),
            downs: Vec::new(),
            remotes: Vec::with_capacity(MAX_REMOTES + 1),
            ufrag: None,
            priority,
            dirty: false,
            ready: false,
            audio: false,
            data: None,
        }
    }
}

/// See the module docs.
#[derive(Debug, Default)]
pub(super) struct SessionTable {
    slots: Vec<Option<Entry>>,
    free: Vec<Slot>,
    by_id: HashMap<SessionId, Slot>,
    by_remote: HashMap<Remote, Slot>,
    by_ufrag: HashMap<String, Slot>,
    /// Sessions touched this iteration, in order (drained with priority: control and audio).
    dirty: Vec<Slot>,
    /// Sessions whose pacer may hold sendable media, served round-robin.
    ready: VecDeque<Slot>,
    /// Sessions that got an audio copy (and nothing else to drain): their audio goes before
    /// anyone's video, without polling their control queues.
    audio: Vec<Slot>,
    /// Per slot, `session.poll_timeout()` as of the session's last drain: the timer scan
    /// ([`SessionTable::due`]) reads these instead of asking every session each time. Kept
    /// apart from the entries, 16 bytes a slot: an `Entry` is ~19 KB, so a scan of the
    /// entries' own field touched a cache line and a page per session (1.6 % of the worker at
    /// 2,000 audio subscribers, growing with the square of the room).
    deadlines: Vec<Option<Instant>>,
}

impl SessionTable {
    pub fn with_capacity(sessions: usize) -> Self {
        Self {
            dirty: Vec::with_capacity(sessions),
            ready: VecDeque::with_capacity(sessions),
            audio: Vec::with_capacity(sessions),
            ..Self::default()
        }
    }

    pub fn get(&self, slot: Slot) -> Option<&Entry> {
        self.slots.get(slot as usize)?.as_ref()
    }

    pub fn get_mut(&mut self, slot: Slot) -> Option<&mut Entry> {
        self.slots.get_mut(slot as usize)?.as_mut()
    }

    pub fn slot_of(&self, id: SessionId) -> Option<Slot> {
        self.by_id.get(&id).copied()
    }

    pub fn slot_of_remote(&self, r: Remote) -> Option<Slot> {
        self.by_remote.get(&r).copied()
    }

    pub fn slot_of_ufrag(&self, ufrag: &str) -> Option<Slot> {
        self.by_ufrag.get(ufrag).copied()
    }

    pub fn contains(&self, id: SessionId) -> bool {
        self.by_id.contains_key(&id)
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Map sizes for the stats snapshot: sessions, remotes, ufrags.
    pub fn sizes(&self) -> [usize; 3] {
        [self.by_id.len(), self.by_remote.len(), self.by_ufrag.len()]
    }

    /// Enters `entry` with its id, its ufrag (WebRTC) and `remote` (a plain-RTP session's
    /// configured peer). The caller checked the id is new.
    pub fn insert(
        &mut self,
        mut entry: Entry,
        ufrag: Option<String>,
        remote: Option<Remote>,
    ) -> Slot {
        let slot = match self.free.pop() {
            Some(s) => s,
            None => {
                self.slots.push(None);
                self.deadlines.push(None);
                (self.slots.len() - 1) as Slot
            }
        };
        self.deadlines[slot as usize] = None;
        self.by_id.insert(entry.id, slot);
        if let Some(u) = ufrag {
            self.by_ufrag.insert(u.clone(), slot);
            entry.ufrag = Some(u);
        }
        if let Some(r) = remote {
            self.by_remote.insert(r, slot);
            entry.remotes.push(r);
        }
        self.slots[slot as usize] = Some(entry);
        self.mark_dirty(slot);
        slot
    }

    /// Takes the session in `slot` out of every map and work list.
    pub fn remove(&mut self, slot: Slot) -> Option<Entry> {
        let entry = self.slots.get_mut(slot as usize)?.take()?;
        self.deadlines[slot as usize] = None;
        self.free.push(slot);
        self.by_id.remove(&entry.id);
        for r in &entry.remotes {
            if self.by_remote.get(r) == Some(&slot) {
                self.by_remote.remove(r);
            }
        }
        if let Some(u) = &entry.ufrag {
            if self.by_ufrag.get(u) == Some(&slot) {
                self.by_ufrag.remove(u);
            }
        }
        self.dirty.retain(|&s| s != slot);
        self.ready.retain(|&s| s != slot);
        self.audio.retain(|&s| s != slot);
        Some(entry)
    }

    /// Replaces the session's ufrag (ICE restart); returns the old one.
    pub fn set_ufrag(&mut self, slot: Slot, ufrag: String) -> Option<String> {
        let entry = self.slots.get_mut(slot as usize)?.as_mut()?;
        let old = entry.ufrag.replace(ufrag.clone());
        if let Some(o) = &old {
            if self.by_ufrag.get(o) == Some(&slot) {
                self.by_ufrag.remove(o);
            }
        }
        self.by_ufrag.insert(ufrag, slot);
        old
    }

    /// Enters `r` for the session in `slot` if the session validated it (an authenticated ICE
    /// check) and it is not entered yet, and drops the remotes the session no longer validates
    /// (evicted from its candidate table), oldest first, down to [`MAX_REMOTES`]. `on_change`
    /// hears each `(remote, added)`, so the caller can tell the shared registry. Returns whether
    /// `r` was added.
    pub fn register_remote(
        &mut self,
        slot: Slot,
        r: Remote,
        mut on_change: impl FnMut(Remote, bool),
    ) -> bool {
        let Some(entry) = self.slots.get_mut(slot as usize).and_then(Option::as_mut) else {
            return false;
        };
        if !entry.session.is_validated(r) {
            return false;
        }
        match self.by_remote.entry(r) {
            MapEntry::Occupied(o) if *o.get() == slot => return false,
            // Another session of this shard held the address (a NAT mapping reused): the
            // authenticated check moves it here.
            MapEntry::Occupied(mut o) => {
                let old = *o.get();
                o.insert(slot);
                if let Some(e) = self.slots.get_mut(old as usize).and_then(Option::as_mut) {
                    e.remotes.retain(|&x| x != r);
                }
            }
            MapEntry::Vacant(v) => {
                v.insert(slot);
            }
        }
        let Some(entry) = self.slots.get_mut(slot as usize).and_then(Option::as_mut) else {
            return false;
        };
        entry.remotes.push(r);
        on_change(r, true);
        let mut i = 0;
        while i < entry.remotes.len() {
            let stale = !entry.session.is_validated(entry.remotes[i]);
            let over = entry.remotes.len() > MAX_REMOTES && i == 0;
            if stale || over {
                let gone = entry.remotes.remove(i);
                if self.by_remote.get(&gone) == Some(&slot) {
                    self.by_remote.remove(&gone);
                }
                on_change(gone, false);
            } else {
                i += 1;
            }
        }
        true
    }

    /// Takes `r` out of the maps of the session in `slot` (a TCP connection that closed).
    pub fn forget_remote(&mut self, slot: Slot, r: Remote) {
        if self.by_remote.get(&r) == Some(&slot) {
            self.by_remote.remove(&r);
        }
        if let Some(e) = self.slots.get_mut(slot as usize).and_then(Option::as_mut) {
            e.remotes.retain(|&x| x != r);
        }
    }

    /// Caches `deadline` (the session's `poll_timeout()`) for the timer scan.
    pub fn set_deadline(&mut self, slot: Slot, deadline: Option<Instant>) {
        if let Some(d) = self.deadlines.get_mut(slot as usize) {
            *d = deadline;
        }
    }

    /// The sessions whose cached deadline is at or before `now`, into `due` (cleared first);
    /// returns the earliest deadline of the others.
    pub fn due(&self, now: Instant, due: &mut Vec<Slot>) -> Option<Instant> {
        due.clear();
        let mut next: Option<Instant> = None;
        for (slot, d) in self.deadlines.iter().enumerate() {
            match *d {
                Some(t) if t <= now => due.push(slot as Slot),
                t => next = super::min_opt(next, t),
            }
        }
        next
    }

    /// Queues the session for this iteration's drain (once).
    pub fn mark_dirty(&mut self, slot: Slot) {
        if let Some(e) = self.slots.get_mut(slot as usize).and_then(Option::as_mut) {
            if !e.dirty {
                e.dirty = true;
                self.dirty.push(slot);
            }
        }
    }

    /// The dirty list, taken (the caller gives back what it did not finish).
    pub fn take_dirty(&mut self, into: &mut Vec<Slot>) {
        into.clear();
        std::mem::swap(into, &mut self.dirty);
        for &s in into.iter() {
            if let Some(e) = self.slots.get_mut(s as usize).and_then(Option::as_mut) {
                e.dirty = false;
            }
        }
    }

    /// Whether any session waits for its drain.
    pub fn has_dirty(&self) -> bool {
        !self.dirty.is_empty() || !self.audio.is_empty()
    }

    /// The session got an audio copy: drain its audio before anyone's video.
    pub fn mark_audio(&mut self, slot: Slot) {
        if let Some(e) = self.slots.get_mut(slot as usize).and_then(Option::as_mut) {
            if !e.audio {
                e.audio = true;
                self.audio.push(slot);
            }
        }
    }

    /// The audio list, taken.
    pub fn take_audio(&mut self, into: &mut Vec<Slot>) {
        into.clear();
        std::mem::swap(into, &mut self.audio);
        for &s in into.iter() {
            if let Some(e) = self.slots.get_mut(s as usize).and_then(Option::as_mut) {
                e.audio = false;
            }
        }
    }

    /// Puts the session at the back of the round-robin queue of sessions with media to send.
    pub fn mark_ready(&mut self, slot: Slot) {
        if let Some(e) = self.slots.get_mut(slot as usize).and_then(Option::as_mut) {
            if !e.ready {
                e.ready = true;
                self.ready.push_back(slot);
            }
        }
    }

    /// The next session of the round-robin queue (it leaves the queue).
    pub fn pop_ready(&mut self) -> Option<Slot> {
        while let Some(s) = self.ready.pop_front() {
            if let Some(e) = self.slots.get_mut(s as usize).and_then(Option::as_mut) {
                e.ready = false;
                return Some(s);
            }
        }
        None
    }

    pub fn has_ready(&self) -> bool {
        !self.ready.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Entry> {
        self.slots.iter().flatten()
    }

    /// All slots in use (shutdown).
    pub fn slots_in_use(&self) -> Vec<Slot> {
        self.by_id.values().copied().collect()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use rtp_core::dtls::DtlsCert;
    use rtp_core::session::{SessionConfig, SessionMode};

    use super::*;

    fn entry(id: u64, cert: &DtlsCert, now: Instant) -> Entry {
        let mode = SessionMode::PlainRtp {
            remote: "127.0.0.1:5000".parse().expect("addr"),
        };
        let session = Session::new(now, SessionConfig::new(mode), cert).expect("session");
        Entry::new(SessionId(id), session, 1)
    }

    /// The timer scan reads the cached deadlines: the due ones, the earliest of the rest, and
    /// nothing of a removed session (nor of the next one in its slot until it is drained).
    #[test]
    #[allow(clippy::disallowed_methods)] // a test needs some base instant
    fn the_timer_scan_finds_the_due_and_the_next() {
        let now = Instant::now();
        let cert = DtlsCert::generate(std::time::SystemTime::now()).expect("cert");
        let ms = Duration::from_millis;
        let mut t = SessionTable::with_capacity(4);
        let slots: Vec<Slot> = (0..4)
            .map(|i| t.insert(entry(i, &cert, now), None, None))
            .collect();
        let mut due = vec![99];
        assert_eq!(t.due(now, &mut due), None, "no deadline cached yet");
        assert!(due.is_empty());
        t.set_deadline(slots[0], Some(now - ms(1)));
        t.set_deadline(slots[1], Some(now + ms(30)));
        t.set_deadline(slots[2], Some(now));
        t.set_deadline(slots[3], Some(now + ms(10)));
        assert_eq!(t.due(now, &mut due), Some(now + ms(10)));
        assert_eq!(due, vec![slots[0], slots[2]]);
        t.remove(slots[3]);
        assert_eq!(t.due(now, &mut due), Some(now + ms(30)));
        let again = t.insert(entry(9, &cert, now), None, None);
        assert_eq!(again, slots[3], "the freed slot is reused");
        assert_eq!(t.due(now + ms(40), &mut due), None);
        assert_eq!(
            due,
            vec![slots[0], slots[1], slots[2]],
            "not the new session's"
        );
    }
}
