//! The WebSocket client registry: which signaling connection speaks for (room, identity), so
//! room logic can reach a participant or a whole room. SSE and webhooks are not here: they
//! take the event pipeline (`events.rs`).

use std::collections::HashMap;
use std::sync::Mutex;

use tokio::sync::mpsc;

use crate::signal::{LeaveReason, ServerMessage};

/// Something for one WebSocket client.
#[derive(Debug, Clone)]
pub(crate) enum ClientMsg {
    Msg(ServerMessage),
    /// Send `leave {reason}` and close.
    Close(LeaveReason),
}

#[derive(Debug, Default)]
pub(crate) struct Hub {
    clients: Mutex<HashMap<String, HashMap<String, mpsc::UnboundedSender<ClientMsg>>>>,
}

impl Hub {
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
    pub(crate) fn broadcast(&self, room: &str, except: Option<&str>, msg: &ServerMessage) {
        if let Some(r) = self.clients.lock().expect("hub lock").get(room) {
            for (identity, tx) in r {
                if Some(identity.as_str()) != except {
                    let _ = tx.send(ClientMsg::Msg(msg.clone()));
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
}
