//! Fan-out of room events: to the room's WebSocket clients (translated into signaling
//! messages, docs/protocol.md), to SSE listeners and to webhook receivers. Every event gets
//! a per-room sequence number and a node-unique id (`EV_<n>`) so receivers can order and
//! de-duplicate (webhooks are delivered at least once).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Mutex;

use serde_json::{json, Value};
use tokio::sync::{broadcast, mpsc};

/// Something for one WebSocket client.
#[derive(Debug, Clone)]
pub(crate) enum ClientMsg {
    Json(Value),
    /// Send `leave {reason}` and close.
    Close(String),
}

/// One logged event, as SSE and webhooks carry it.
#[derive(Debug, Clone)]
pub(crate) struct Logged {
    /// Global order, the SSE `id:`.
    pub(crate) n: u64,
    pub(crate) room: String,
    pub(crate) body: Value,
}

#[derive(Debug)]
pub(crate) struct Hub {
    clients: Mutex<HashMap<String, HashMap<String, mpsc::UnboundedSender<ClientMsg>>>>,
    log: Mutex<Log>,
    pub(crate) sse: broadcast::Sender<Logged>,
    pub(crate) webhooks: Option<mpsc::Sender<Logged>>,
}

#[derive(Debug, Default)]
struct Log {
    n: u64,
    room_seq: BTreeMap<String, u64>,
    recent: VecDeque<Logged>,
}

/// Events kept for `Last-Event-ID` replay.
const REPLAY: usize = 1024;

impl Hub {
    pub(crate) fn new(webhooks: Option<mpsc::Sender<Logged>>) -> Self {
        Self {
            clients: Mutex::new(HashMap::new()),
            log: Mutex::new(Log::default()),
            sse: broadcast::channel(1024).0,
            webhooks,
        }
    }

    pub(crate) fn register(
        &self,
        room: &str,
        identity: &str,
        tx: mpsc::UnboundedSender<ClientMsg>,
    ) -> Option<mpsc::UnboundedSender<ClientMsg>> {
        self.clients
            .lock()
            .expect("hub lock")
            .entry(room.to_owned())
            .or_default()
            .insert(identity.to_owned(), tx)
    }

    /// Removes the client if `tx` is still the registered one (a resumed session replaced it).
    pub(crate) fn unregister(
        &self,
        room: &str,
        identity: &str,
        tx: &mpsc::UnboundedSender<ClientMsg>,
    ) {
        let mut clients = self.clients.lock().expect("hub lock");
        if let Some(r) = clients.get_mut(room) {
            if r.get(identity).is_some_and(|t| t.same_channel(tx)) {
                r.remove(identity);
            }
            if r.is_empty() {
                clients.remove(room);
            }
        }
    }

    pub(crate) fn send_to(&self, room: &str, identity: &str, msg: ClientMsg) {
        if let Some(tx) = self
            .clients
            .lock()
            .expect("hub lock")
            .get(room)
            .and_then(|r| r.get(identity))
        {
            let _ = tx.send(msg);
        }
    }

    /// To everyone in `room` except `except`.
    pub(crate) fn broadcast(&self, room: &str, except: Option<&str>, msg: &Value) {
        if let Some(r) = self.clients.lock().expect("hub lock").get(room) {
            for (identity, tx) in r {
                if Some(identity.as_str()) != except {
                    let _ = tx.send(ClientMsg::Json(msg.clone()));
                }
            }
        }
    }

    pub(crate) fn client_count(&self) -> usize {
        self.clients
            .lock()
            .expect("hub lock")
            .values()
            .map(HashMap::len)
            .sum()
    }

    /// Logs one room event for SSE and webhooks.
    pub(crate) fn log(&self, room: &str, name: &str, payload: Value, unix_ms: u64) {
        let logged = {
            let mut log = self.log.lock().expect("hub lock");
            log.n += 1;
            let seq = log.room_seq.entry(room.to_owned()).or_default();
            *seq += 1;
            let seq = *seq;
            let body = json!({
                "id": format!("EV_{}", log.n),
                "event": name,
                "room": room,
                "seq": seq,
                "created_at_ms": unix_ms,
                "payload": payload,
            });
            let logged = Logged {
                n: log.n,
                room: room.to_owned(),
                body,
            };
            log.recent.push_back(logged.clone());
            if log.recent.len() > REPLAY {
                log.recent.pop_front();
            }
            logged
        };
        let _ = self.sse.send(logged.clone());
        if let Some(w) = &self.webhooks {
            if w.try_send(logged).is_err() {
                tracing::warn!("webhook queue full; event dropped");
            }
        }
    }

    /// Logged events after `after` (for `Last-Event-ID`).
    pub(crate) fn replay(&self, after: u64) -> Vec<Logged> {
        self.log
            .lock()
            .expect("hub lock")
            .recent
            .iter()
            .filter(|l| l.n > after)
            .cloned()
            .collect()
    }
}
