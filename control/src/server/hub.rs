//! The WebSocket client registry: which signaling connection speaks for (room, identity), so
//! room logic can reach a participant or a whole room. SSE and webhooks are not here: they
//! take the event pipeline (`events.rs`).
//!
//! Each client's queue is bounded (`limits.ws_queue`, finding #13): a client that stops
//! reading fills it, is counted (`ws_slow_reader`) and disconnected, never buffered without
//! bound; it resumes by joining again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, Notify};

use crate::limits::{Refusal, Refusals};
use crate::lock::Locked;
use crate::signal::{LeaveReason, ServerMessage};

/// Something for one WebSocket client.
#[derive(Debug, Clone)]
pub(crate) enum ClientMsg {
    Msg(ServerMessage),
    /// Send `leave {reason}` and close.
    Close(LeaveReason),
}

/// One client's queue, and the signal that ends its connection when the queue overflows.
#[derive(Debug, Clone)]
pub(crate) struct ClientTx {
    tx: mpsc::Sender<ClientMsg>,
    pub(crate) overflow: Arc<Notify>,
    /// Set once the queue overflowed (counted once per client).
    overflowed: Arc<std::sync::atomic::AtomicBool>,
}

impl ClientTx {
    /// A queue of `capacity` messages and its receiving end.
    pub(crate) fn new(capacity: usize) -> (Self, mpsc::Receiver<ClientMsg>) {
        let (tx, rx) = mpsc::channel(capacity);
        let overflow = Arc::new(Notify::new());
        let overflowed = Arc::default();
        (
            Self {
                tx,
                overflow,
                overflowed,
            },
            rx,
        )
    }

    fn same(&self, other: &Self) -> bool {
        self.tx.same_channel(&other.tx)
    }

    /// Queues `msg`; a full queue ends the connection instead.
    fn push(&self, msg: ClientMsg, refusals: &Refusals) {
        if let Err(mpsc::error::TrySendError::Full(_)) = self.tx.try_send(msg) {
            if !self
                .overflowed
                .swap(true, std::sync::atomic::Ordering::Relaxed)
            {
                refusals.count(Refusal::WsSlowReader);
                self.overflow.notify_one();
            }
        }
    }
}

#[derive(Debug)]
pub(crate) struct Hub {
    clients: Mutex<HashMap<String, HashMap<String, ClientTx>>>,
    refusals: Arc<Refusals>,
}

impl Hub {
    pub(crate) fn new(refusals: Arc<Refusals>) -> Self {
        Self {
            clients: Mutex::default(),
            refusals,
        }
    }

    pub(crate) fn is_held(&self) -> bool {
        super::held(&self.clients)
    }

    /// Registers `tx` for (room, identity); tells a client it replaced to close.
    pub(crate) fn register(&self, room: &str, identity: &str, tx: ClientTx) {
        let old = self
            .clients
            .locked()
            .entry(room.to_owned())
            .or_default()
            .insert(identity.to_owned(), tx);
        if let Some(old) = old {
            old.push(ClientMsg::Close(LeaveReason::Replaced), &self.refusals);
        }
    }

    /// Removes the client if `tx` is still the registered one (a resumed session replaced it).
    pub(crate) fn unregister(&self, room: &str, identity: &str, tx: &ClientTx) {
        let mut clients = self.clients.locked();
        if let Some(r) = clients.get_mut(room) {
            if r.get(identity).is_some_and(|t| t.same(tx)) {
                r.remove(identity);
            }
            if r.is_empty() {
                clients.remove(room);
            }
        }
    }

    /// Whether a signaling connection speaks for (room, identity) now.
    pub(crate) fn is_connected(&self, room: &str, identity: &str) -> bool {
        self.clients
            .locked()
            .get(room)
            .is_some_and(|r| r.contains_key(identity))
    }

    pub(crate) fn send_to(&self, room: &str, identity: &str, msg: ClientMsg) {
        if let Some(tx) = self
            .clients
            .locked()
            .get(room)
            .and_then(|r| r.get(identity))
        {
            tx.push(msg, &self.refusals);
        }
    }

    /// To everyone in `room` except `except`.
    pub(crate) fn broadcast(&self, room: &str, except: Option<&str>, msg: &ServerMessage) {
        if let Some(r) = self.clients.locked().get(room) {
            for (identity, tx) in r {
                if Some(identity.as_str()) != except {
                    tx.push(ClientMsg::Msg(msg.clone()), &self.refusals);
                }
            }
        }
    }

    /// Tells every client of `room` `leave {reason}` and closes it.
    pub(crate) fn close_room(&self, room: &str, reason: LeaveReason) {
        if let Some(r) = self.clients.locked().get(room) {
            for tx in r.values() {
                tx.push(ClientMsg::Close(reason), &self.refusals);
            }
        }
    }

    /// Poisons the lock: a thread panics while holding it (the test of finding #8).
    #[cfg(test)]
    pub(crate) fn poison(&self) {
        std::thread::scope(|s| {
            let _ = s
                .spawn(|| {
                    let _held = self.clients.lock();
                    panic!("poisoning the hub lock on purpose");
                })
                .join();
        });
    }

    pub(crate) fn client_count(&self) -> usize {
        self.clients.locked().values().map(HashMap::len).sum()
    }
}
