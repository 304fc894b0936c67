//! The worker's TCP phase (after the UDP reap): adopt connections other workers handed over,
//! read frames (`tcp.rs`) and feed each like a datagram, bind a connection once its session
//! validated it, and tell sessions about bound connections that closed.

use std::time::Instant;

use rtp_core::net::Remote;

use crate::sys::RecvMeta;

use super::counters::Drop;
use super::tcp::CloseWhy;
use super::Shard;

impl Shard {
    pub(super) fn tcp_phase(&mut self, now: Instant) {
        let Some(tcp) = self.io.tcp.as_mut() else {
            return;
        };
        // Bounded by the queue's capacity.
        while let Some(h) = self.handoffs.pop(self.index) {
            tcp.adopt(h);
        }
        let mut frames = std::mem::take(&mut self.tcp_frames);
        tcp.poll(now, &mut self.io.pool, &mut frames);
        for &meta in &frames {
            self.counters.rx_packets += 1;
            self.counters.rx_bytes += meta.len as u64;
            self.on_datagram(now, now, meta, true);
            self.io.pool.give(meta.buf);
            let remote = meta.remote();
            let Some(tcp) = self.io.tcp.as_mut() else {
                break;
            };
            if self.table.slot_of_remote(remote).is_some() && !tcp.is_bound(meta.src) {
                tcp.bind(now, meta.src);
            }
        }
        self.tcp_frames = frames;
        let Some(tcp) = self.io.tcp.as_mut() else {
            return;
        };
        let mut closed = std::mem::take(&mut self.tcp_closed);
        tcp.take_closed(&mut closed);
        let backlog = tcp.has_backlog();
        for &peer in &closed {
            let r = Remote::tcp(peer);
            if let Some(slot) = self.table.slot_of_remote(r) {
                if let Some(e) = self.table.get_mut(slot) {
                    e.session.remote_closed(r);
                }
                self.table.forget_remote(slot, r);
                self.table.mark_dirty(slot);
            }
        }
        self.tcp_closed = closed;
        if backlog {
            // Frames wait in connection buffers: come back without sleeping.
            self.next_timer = Some(now);
        }
    }

    /// The first frame of a connection that is not bound named a session on worker `to`: the
    /// connection moves there with it.
    pub(super) fn hand_over_tcp(&mut self, meta: RecvMeta, to: usize) {
        let Some(tcp) = self.io.tcp.as_mut() else {
            return;
        };
        let frame = &self.io.pool.get(meta.buf)[meta.offset..meta.offset + meta.len];
        let Some(h) = tcp.hand_over(meta.src, frame) else {
            return;
        };
        if self.handoffs.push(to, h) {
            self.wake_peers[to] = true;
        } else {
            tcp.stats.handoff_full += 1;
            self.counters.drop(Drop::RingFull);
        }
    }

    /// The first frame of a connection that is not bound found no session (and was not handed
    /// over): the connection closes, counted.
    pub(super) fn refuse_tcp(&mut self, meta: RecvMeta) {
        if let Some(tcp) = self.io.tcp.as_mut() {
            if !tcp.is_bound(meta.src) {
                tcp.close_peer(meta.src, CloseWhy::Garbage);
            }
        }
    }

    /// Closes the TCP connections of a session that is going away.
    pub(super) fn close_tcp_of(&mut self, remotes: &[Remote]) {
        let Some(tcp) = self.io.tcp.as_mut() else {
            return;
        };
        for r in remotes.iter().filter(|r| r.is_tcp()) {
            tcp.close_peer(r.addr, CloseWhy::Session);
        }
    }
}
