//! The registry every shard and the control thread share: WebRTC sessions not placed on a shard
//! yet (by local ICE ufrag), where each placed session lives, which shard owns each placed
//! session's ufrag (so a check that lands on another shard is handed over), and which shard
//! owns each validated remote address.
//!
//! Placement: with one shared media port the kernel's SO_REUSEPORT hash decides which shard sees
//! a peer's packets, so a WebRTC session waits here under its local ICE ufrag until a shard
//! receives a Binding request for it **whose MESSAGE-INTEGRITY verifies with the session's
//! password** ([`RegistryGuard::claim`], under the lock); a forged or failed check claims
//! nothing (security review #17).
//!
//! The maps sit behind one `Mutex`, touched only on slow paths. A shard never takes it for a
//! datagram the registry cannot know: two counting filters (ufrags, addresses), read without the
//! lock, answer "certainly not here" for random ufrags and unknown sources, and the shard's own
//! rate limit bounds the lookups the filters let through (review #16). Every change bumps
//! [`SharedRegistry::generation`], which the shards' route caches compare to drop stale answers
//! (review #18). All mutation goes through [`RegistryGuard`]'s methods, so the maps and the
//! filters never disagree.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use crate::proto::{CreateSession, SessionId};

use super::msg::ShardCmd;

/// Counters per filter (a power of two): with two positions per key and n keys, a key that is
/// not there passes with probability about (2n / FILTER_SLOTS)²: 0.1 % at 1,000 live sessions.
const FILTER_SLOTS: usize = 1 << 16;

/// A session waiting for its first authenticated check.
#[derive(Debug)]
pub struct PendingSession {
    pub spec: CreateSession,
    /// Commands for it that arrived before it was placed, applied in order by the claimer.
    pub queued: Vec<ShardCmd>,
}

/// What a shard learns about a ufrag it does not hold ([`RegistryGuard::claim`]).
#[derive(Debug)]
pub enum Claim {
    /// A pending session, claimed by this shard: build it.
    Claimed(Box<PendingSession>),
    /// A pending session, but the check did not authenticate with its password.
    Refused,
    /// A placed session on this shard (hand the datagram over).
    Elsewhere(u16),
    /// Nobody's.
    Unknown,
}

/// The maps; see the module docs. Fields are private: [`RegistryGuard`] keeps them and the
/// filters consistent.
#[derive(Debug, Default)]
pub struct Registry {
    /// Local ICE ufrag → pending session id.
    by_ufrag: HashMap<String, SessionId>,
    pending: HashMap<SessionId, PendingSession>,
    /// Where each placed session lives.
    placed: HashMap<SessionId, u16>,
    /// Local ICE ufrag of each placed WebRTC session → its shard.
    ufrag_routes: HashMap<String, u16>,
    /// Remote addresses and the shard their session lives on, so a shard that receives such a
    /// datagram (by the kernel's SO_REUSEPORT choice) hands it over. Plain-RTP remotes are
    /// entered by the control thread when it places the session; WebRTC remotes by the owning
    /// shard once a check from them authenticated. The kernel's choice is not stable per
    /// remote: with `SO_INCOMING_CPU` it follows the CPU the packet was processed on, which on
    /// loopback is the sender's current CPU.
    remotes: HashMap<SocketAddr, u16>,
}

/// The registry with its lock, lock-free filters and change counter.
#[derive(Debug)]
pub struct SharedRegistry {
    inner: Mutex<Registry>,
    generation: AtomicU64,
    ufrags: KeyFilter,
    addrs: KeyFilter,
    hasher: RandomState,
}

impl Default for SharedRegistry {
    fn default() -> Self {
        Self {
            inner: Mutex::default(),
            generation: AtomicU64::new(1),
            ufrags: KeyFilter::new(),
            addrs: KeyFilter::new(),
            hasher: RandomState::new(),
        }
    }
}

impl SharedRegistry {
    /// Takes the lock. A poisoned lock means a thread panicked while holding it, which ends the
    /// process (the binary's panic hook); tests keep going with the data as it is.
    pub fn lock(&self) -> RegistryGuard<'_> {
        RegistryGuard {
            reg: self.inner.lock().unwrap_or_else(|e| e.into_inner()),
            shared: self,
        }
    }

    /// Changes so far; a shard's cached answer from an older generation may be stale.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// False when no pending or placed session has this local ufrag (no lock, no allocation).
    pub fn may_know_ufrag(&self, ufrag: &[u8]) -> bool {
        self.ufrags.may_contain(self.hasher.hash_one(ufrag))
    }

    /// False when no shard registered this remote address (no lock, no allocation).
    pub fn may_know_remote(&self, addr: SocketAddr) -> bool {
        self.addrs.may_contain(self.hasher.hash_one(addr))
    }

    fn hash<K: Hash + ?Sized>(&self, k: &K) -> u64 {
        self.hasher.hash_one(k)
    }
}

/// The locked registry.
#[derive(Debug)]
pub struct RegistryGuard<'a> {
    reg: MutexGuard<'a, Registry>,
    shared: &'a SharedRegistry,
}

impl RegistryGuard<'_> {
    fn bump(&self) {
        self.shared.generation.fetch_add(1, Ordering::AcqRel);
    }

    fn ufrag_in(&self, ufrag: &str) {
        self.shared.ufrags.add(self.shared.hash(ufrag.as_bytes()));
    }

    fn ufrag_out(&self, ufrag: &str) {
        self.shared
            .ufrags
            .remove(self.shared.hash(ufrag.as_bytes()));
    }

    /// Registers a WebRTC session to be claimed by its first authenticated check.
    pub fn add_pending(&mut self, spec: CreateSession) {
        let (id, ufrag) = (spec.session, spec.ice.ufrag.clone());
        self.ufrag_in(&ufrag);
        if let Some(old) = self.reg.by_ufrag.insert(ufrag, id) {
            // The control thread refuses duplicate ufrags; keep the filter exact anyway.
            self.reg.pending.remove(&old);
            self.ufrag_out(&spec.ice.ufrag);
        }
        self.reg.pending.insert(
            id,
            PendingSession {
                spec,
                queued: Vec::new(),
            },
        );
        self.bump();
    }

    /// Forgets a pending session (closed before any shard claimed it).
    pub fn remove_pending(&mut self, id: SessionId) -> Option<PendingSession> {
        let p = self.reg.pending.remove(&id)?;
        if self.reg.by_ufrag.remove(&p.spec.ice.ufrag).is_some() {
            self.ufrag_out(&p.spec.ice.ufrag);
        }
        self.bump();
        Some(p)
    }

    /// The pending session `id`, to queue a command for its claimer.
    pub fn pending_mut(&mut self, id: SessionId) -> Option<&mut PendingSession> {
        self.reg.pending.get_mut(&id)
    }

    /// Replaces a pending session's spec (re-keying its ufrag); false if it is not pending.
    pub fn amend_pending(&mut self, id: SessionId, spec: CreateSession) -> bool {
        let Some(p) = self.reg.pending.get_mut(&id) else {
            return false;
        };
        let old = std::mem::replace(&mut p.spec, spec);
        let new_ufrag = p.spec.ice.ufrag.clone();
        if self.reg.by_ufrag.remove(&old.ice.ufrag).is_some() {
            self.ufrag_out(&old.ice.ufrag);
        }
        self.ufrag_in(&new_ufrag);
        self.reg.by_ufrag.insert(new_ufrag, id);
        self.bump();
        true
    }

    /// Claims the pending session with local ufrag `ufrag` for `shard` when `authentic` says the
    /// check verifies with its password; otherwise says where the ufrag lives, if anywhere.
    pub fn claim(
        &mut self,
        ufrag: &str,
        shard: u16,
        authentic: impl FnOnce(&CreateSession) -> bool,
    ) -> Claim {
        if let Some(&id) = self.reg.by_ufrag.get(ufrag) {
            let ok = self
                .reg
                .pending
                .get(&id)
                .is_some_and(|p| authentic(&p.spec));
            if !ok {
                return Claim::Refused;
            }
            self.reg.by_ufrag.remove(ufrag);
            self.ufrag_out(ufrag);
            let Some(p) = self.reg.pending.remove(&id) else {
                return Claim::Unknown;
            };
            self.reg.placed.insert(id, shard);
            self.route_ufrag(ufrag, shard);
            return Claim::Claimed(Box::new(p));
        }
        match self.reg.ufrag_routes.get(ufrag) {
            Some(&s) => Claim::Elsewhere(s),
            None => Claim::Unknown,
        }
    }

    /// Records where a session lives.
    pub fn place(&mut self, id: SessionId, shard: u16) {
        self.reg.placed.insert(id, shard);
        self.bump();
    }

    /// Forgets where a session lives (it closed).
    pub fn unplace(&mut self, id: SessionId) {
        self.reg.placed.remove(&id);
        self.bump();
    }

    /// Where a placed session lives.
    pub fn placed(&self, id: SessionId) -> Option<u16> {
        self.reg.placed.get(&id).copied()
    }

    /// `ufrag` (a placed WebRTC session's local ufrag) belongs to `shard`.
    pub fn route_ufrag(&mut self, ufrag: &str, shard: u16) {
        if self
            .reg
            .ufrag_routes
            .insert(ufrag.to_owned(), shard)
            .is_none()
        {
            self.ufrag_in(ufrag);
        }
        self.bump();
    }

    /// Drops `ufrag`'s route if it still points at `shard`.
    pub fn unroute_ufrag(&mut self, ufrag: &str, shard: u16) {
        if self.reg.ufrag_routes.get(ufrag) == Some(&shard) {
            self.reg.ufrag_routes.remove(ufrag);
            self.ufrag_out(ufrag);
            self.bump();
        }
    }

    /// Datagrams from `addr` belong to `shard`.
    pub fn set_remote(&mut self, addr: SocketAddr, shard: u16) {
        if self.reg.remotes.insert(addr, shard).is_none() {
            self.shared.addrs.add(self.shared.hash(&addr));
        }
        self.bump();
    }

    /// Forgets `addr` when it points at `shard` (or at anyone, with `None`).
    pub fn remove_remote(&mut self, addr: SocketAddr, shard: Option<u16>) {
        let owned = self.reg.remotes.get(&addr).copied();
        if owned.is_some() && (shard.is_none() || owned == shard) {
            self.reg.remotes.remove(&addr);
            self.shared.addrs.remove(self.shared.hash(&addr));
            self.bump();
        }
    }

    /// The shard owning `addr`.
    pub fn remote(&self, addr: SocketAddr) -> Option<u16> {
        self.reg.remotes.get(&addr).copied()
    }

    /// Entries per map, for the stats snapshot: pending, placed, ufrag routes, remotes.
    pub fn sizes(&self) -> [usize; 4] {
        [
            self.reg.pending.len(),
            self.reg.placed.len(),
            self.reg.ufrag_routes.len(),
            self.reg.remotes.len(),
        ]
    }
}

/// A counting filter (two positions per key). Written only under the registry lock, so
/// load-then-store is race-free among writers; readers load without it. A counter that reaches
/// `u16::MAX` stays there (never decremented), which can only cost false "maybe" answers.
#[derive(Debug)]
struct KeyFilter {
    counts: Box<[AtomicU16]>,
}

impl KeyFilter {
    fn new() -> Self {
        Self {
            counts: (0..FILTER_SLOTS).map(|_| AtomicU16::new(0)).collect(),
        }
    }

    fn slots(h: u64) -> [usize; 2] {
        let mask = (FILTER_SLOTS - 1) as u64;
        [(h & mask) as usize, ((h >> 32) & mask) as usize]
    }

    fn add(&self, h: u64) {
        for i in Self::slots(h) {
            let c = &self.counts[i];
            let v = c.load(Ordering::Relaxed);
            if v < u16::MAX {
                c.store(v + 1, Ordering::Release);
            }
        }
    }

    fn remove(&self, h: u64) {
        for i in Self::slots(h) {
            let c = &self.counts[i];
            let v = c.load(Ordering::Relaxed);
            if v > 0 && v < u16::MAX {
                c.store(v - 1, Ordering::Release);
            }
        }
    }

    fn may_contain(&self, h: u64) -> bool {
        Self::slots(h)
            .iter()
            .all(|&i| self.counts[i].load(Ordering::Acquire) > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{DtlsRole, IceParams, Quality, TransportMode};

    fn spec(id: u64, ufrag: &str) -> CreateSession {
        CreateSession {
            session: SessionId(id),
            ice: IceParams {
                ufrag: ufrag.into(),
                pwd: "0123456789abcdefghijklmn".into(),
                remote_ufrag: None,
                remote_pwd: None,
            },
            remote_fingerprint: None,
            dtls_role: DtlsRole::Server,
            shard_hint: None,
            mode: TransportMode::Webrtc {},
            data: None,
            quality: Quality {
                max_bitrate_bps: 1_000_000,
                priority: 1,
            },
        }
    }

    #[test]
    fn filters_follow_the_maps() {
        let r = SharedRegistry::default();
        assert!(!r.may_know_ufrag(b"abcd"));
        let g0 = r.generation();
        r.lock().add_pending(spec(1, "abcd"));
        assert!(r.may_know_ufrag(b"abcd"));
        assert!(r.generation() > g0);
        // A refused check claims nothing.
        assert!(matches!(
            r.lock().claim("abcd", 1, |_| false),
            Claim::Refused
        ));
        assert!(matches!(
            r.lock().claim("abcd", 1, |_| true),
            Claim::Claimed(_)
        ));
        // Placed: the ufrag now routes to shard 1, still in the filter.
        assert!(r.may_know_ufrag(b"abcd"));
        assert!(matches!(
            r.lock().claim("abcd", 0, |_| true),
            Claim::Elsewhere(1)
        ));
        r.lock().unroute_ufrag("abcd", 1);
        assert!(!r.may_know_ufrag(b"abcd"));
        assert!(matches!(
            r.lock().claim("abcd", 0, |_| true),
            Claim::Unknown
        ));

        let a: SocketAddr = "127.0.0.1:5000".parse().expect("addr");
        assert!(!r.may_know_remote(a));
        r.lock().set_remote(a, 1);
        assert!(r.may_know_remote(a));
        r.lock().remove_remote(a, Some(0));
        assert_eq!(r.lock().remote(a), Some(1));
        r.lock().remove_remote(a, Some(1));
        assert!(!r.may_know_remote(a));
        assert_eq!(r.lock().sizes(), [0, 1, 0, 0]);
    }

    #[test]
    fn random_keys_rarely_pass_the_filter() {
        let r = SharedRegistry::default();
        for i in 0..1000 {
            r.lock().add_pending(spec(i, &format!("live{i}")));
        }
        let passed = (0..100_000)
            .filter(|i| r.may_know_ufrag(format!("rnd{i}").as_bytes()))
            .count();
        // ≈ (2000 / 65536)² ≈ 0.1 %.
        assert!(passed < 500, "{passed} of 100,000 random ufrags passed");
    }
}
