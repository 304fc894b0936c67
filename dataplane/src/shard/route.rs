//! The shard's answers about addresses it does not own, and the bound on how often it asks.
//!
//! [`RouteCache`]: a fixed, direct-mapped table of recent answers from the shared registry for
//! source addresses no local session holds — "shard s owns it" (hand the datagram over) or
//! "nobody does" (a miss). Each answer carries the registry's generation; any registry change
//! (a session closed, an address moved) makes older answers stale, so a closed session's
//! address is never black-holed towards its old shard (security review #18). Bounded by
//! construction: a new address overwrites whatever shared its slot.
//!
//! [`RateLimit`]: a token bucket on the shard's slow path (registry lookups that the lock-free
//! filters let through), so a flood of spoofed datagrams cannot serialize the shards on the
//! registry lock (review #16). Refusals are counted (`slow_path_limited`).

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::net::SocketAddr;
use std::time::Instant;

/// Slots of the cache (a power of two).
const ROUTE_SLOTS: usize = 4096;

/// A cached answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Route {
    /// Another shard owns the address.
    Shard(u16),
    /// Nobody does.
    Nobody,
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    addr: SocketAddr,
    route: Route,
    generation: u64,
}

/// See the module docs.
#[derive(Debug)]
pub(super) struct RouteCache {
    slots: Box<[Option<Slot>]>,
    hasher: RandomState,
    occupied: usize,
}

impl RouteCache {
    pub fn new() -> Self {
        Self {
            slots: vec![None; ROUTE_SLOTS].into_boxed_slice(),
            hasher: RandomState::new(),
            occupied: 0,
        }
    }

    fn index(&self, addr: SocketAddr) -> usize {
        (self.hasher.hash_one(addr) as usize) & (ROUTE_SLOTS - 1)
    }

    /// The answer for `addr`, if one was cached at registry generation `generation`.
    pub fn get(&self, addr: SocketAddr, generation: u64) -> Option<Route> {
        match self.slots[self.index(addr)] {
            Some(s) if s.addr == addr && s.generation == generation => Some(s.route),
            _ => None,
        }
    }

    pub fn put(&mut self, addr: SocketAddr, route: Route, generation: u64) {
        let i = self.index(addr);
        if self.slots[i].is_none() {
            self.occupied += 1;
        }
        self.slots[i] = Some(Slot {
            addr,
            route,
            generation,
        });
    }

    /// Slots holding an answer (stale ones included): at most [`ROUTE_SLOTS`].
    pub fn len(&self) -> usize {
        self.occupied
    }
}

/// Token bucket: `rate` lookups per second, up to `burst` at once.
#[derive(Debug)]
pub(super) struct RateLimit {
    rate: f64,
    burst: f64,
    tokens: f64,
    at: Option<Instant>,
}

impl RateLimit {
    pub fn new(rate_per_s: u32, burst: u32) -> Self {
        Self {
            rate: f64::from(rate_per_s),
            burst: f64::from(burst),
            tokens: f64::from(burst),
            at: None,
        }
    }

    /// Takes a token at `now`; false when the bucket is empty.
    pub fn allow(&mut self, now: Instant) -> bool {
        if let Some(at) = self.at {
            let dt = now.saturating_duration_since(at).as_secs_f64();
            self.tokens = (self.tokens + dt * self.rate).min(self.burst);
        }
        self.at = Some(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn answers_expire_with_the_generation_and_the_table_is_bounded() {
        let mut c = RouteCache::new();
        let a: SocketAddr = "127.0.0.1:4000".parse().expect("addr");
        c.put(a, Route::Shard(2), 7);
        assert_eq!(c.get(a, 7), Some(Route::Shard(2)));
        assert_eq!(c.get(a, 8), None);
        for p in 0..20_000u16 {
            c.put(SocketAddr::from(([10, 0, 0, 1], p)), Route::Nobody, 8);
        }
        assert!(c.len() <= ROUTE_SLOTS);
    }

    #[test]
    fn rate_limit_refills_at_its_rate() {
        #[allow(clippy::disallowed_methods)]
        let t = Instant::now();
        let mut r = RateLimit::new(1000, 10);
        assert_eq!((0..50).filter(|_| r.allow(t)).count(), 10);
        // 5 ms at 1000/s: 5 more.
        let later = t + Duration::from_millis(5);
        assert_eq!((0..50).filter(|_| r.allow(later)).count(), 5);
    }
}
