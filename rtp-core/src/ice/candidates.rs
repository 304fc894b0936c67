//! The remote transport addresses that passed a connectivity check (the
//! lite agent's valid list, RFC 8445 §7.2.5.3.2, seen from the responding
//! side: each is a peer-reflexive candidate paired with our one host
//! candidate). Bounded: when full, the address checked least recently gives
//! way, except the selected one, which is only replaced by a nomination.

use std::time::Instant;

use crate::net::Remote;

/// One remembered remote address.
#[derive(Debug, Clone, Copy)]
struct Candidate {
    addr: Remote,
    last_check: Instant,
}

/// Up to `capacity` addresses, storage reserved at construction.
#[derive(Debug, Clone)]
pub(crate) struct CandidateTable {
    entries: Vec<Candidate>,
    capacity: usize,
}

impl CandidateTable {
    /// A capacity of zero is raised to one: the selected address needs a slot.
    pub(crate) fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        Self {
            entries: Vec::with_capacity(capacity),
            capacity,
        }
    }

    /// Records a valid check from `addr` at `now`. Returns true when another
    /// address (never `keep`) was evicted to make room.
    pub(crate) fn refresh(&mut self, now: Instant, addr: Remote, keep: Option<Remote>) -> bool {
        if let Some(c) = self.entries.iter_mut().find(|c| c.addr == addr) {
            c.last_check = now;
            return false;
        }
        let fresh = Candidate {
            addr,
            last_check: now,
        };
        if self.entries.len() < self.capacity {
            self.entries.push(fresh);
            return false;
        }
        let victim = self
            .entries
            .iter_mut()
            .filter(|c| Some(c.addr) != keep)
            .min_by_key(|c| c.last_check);
        match victim {
            Some(v) => {
                *v = fresh;
                true
            }
            // Capacity one and that one is `keep`: the new address is not
            // remembered, but the check is still answered.
            None => false,
        }
    }

    pub(crate) fn contains(&self, addr: Remote) -> bool {
        self.entries.iter().any(|c| c.addr == addr)
    }

    /// Forgets `addr` (its TCP connection closed); returns whether it was there.
    pub(crate) fn remove(&mut self, addr: Remote) -> bool {
        let before = self.entries.len();
        self.entries.retain(|c| c.addr != addr);
        self.entries.len() != before
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = Remote> + '_ {
        self.entries.iter().map(|c| c.addr)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn addr(port: u16) -> Remote {
        Remote::udp(std::net::SocketAddr::from(([127, 0, 0, 1], port)))
    }

    #[test]
    #[allow(clippy::disallowed_methods)] // a test needs some base instant
    fn evicts_least_recent_but_never_keep() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut t = CandidateTable::new(2);
        assert!(!t.refresh(ms(0), addr(1), None));
        assert!(!t.refresh(ms(1), addr(2), None));
        assert!(!t.refresh(ms(2), addr(1), None)); // refresh, no growth
                                                   // addr(2) is least recent but kept; addr(1) goes.
        assert!(t.refresh(ms(3), addr(3), Some(addr(2))));
        assert!(!t.contains(addr(1)));
        assert!(t.contains(addr(2)) && t.contains(addr(3)));
        // Without a keep, the least recent (addr 2) goes.
        assert!(t.refresh(ms(4), addr(4), None));
        let mut now: Vec<u16> = t.iter().map(|a| a.addr.port()).collect();
        now.sort();
        assert_eq!(now, vec![3, 4]);
    }

    #[test]
    #[allow(clippy::disallowed_methods)] // a test needs some base instant
    fn capacity_one_protects_keep() {
        let t0 = Instant::now();
        let mut t = CandidateTable::new(0);
        t.refresh(t0, addr(1), None);
        assert!(!t.refresh(t0, addr(2), Some(addr(1))));
        assert!(t.contains(addr(1)) && !t.contains(addr(2)));
    }
}
