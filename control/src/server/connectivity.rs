//! Which path each dataplane session took (issue 18, docs/connectivity.md): the selected pair
//! the dataplane reports (`ice_connected`, `selected_pair_changed`: transport, our address, the
//! peer's), kept per session until it closes. The API's participant list shows it per PC, the
//! room log gets a `connectivity` event when it changes, and `/metrics` counts sessions by
//! transport (`udp`, `tcp`, `relayed`) and ICE failures by reason.
//!
//! "Relayed" is known only from addresses: a peer address among the TURN relay IPs
//! (`[turn] relay_ips`, by default the IP literals of the `[turn] urls`) is a relay candidate;
//! an ICE-lite server never sees the client's candidate types otherwise.
//!
//! Bounded by the sessions the dataplane holds: an entry leaves with its `session_closed`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};

use std::sync::Arc;

use serde::Serialize;
use serde_json::{json, Value};
use sluice_proto::{CandidateProtocol, CloseReason, Notification, SessionId};

use super::media::Media;
use crate::lock::Locked;

/// One session's selected pair.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Selected {
    /// `udp` or `tcp` (ICE-TCP to our passive candidate).
    pub transport: &'static str,
    /// The peer's address as the dataplane sees it.
    pub remote: SocketAddr,
    /// Our address on the pair (known after a `selected_pair_changed`).
    pub local: Option<SocketAddr>,
    /// Our candidate's type: always `host` (ICE-lite), `tcptype passive` on TCP.
    pub local_type: &'static str,
    /// `relay` when `remote` is a TURN relay address, else `host_or_srflx`.
    pub remote_type: &'static str,
}

impl Selected {
    /// The metric label: `udp`, `tcp` or `relayed`.
    fn class(&self) -> &'static str {
        if self.remote_type == "relay" {
            "relayed"
        } else {
            self.transport
        }
    }
}

#[derive(Debug, Default)]
pub(crate) struct Connectivity {
    relay_ips: Vec<IpAddr>,
    selected: BTreeMap<SessionId, Selected>,
    /// ICE failures by reason: `never_connected` (closed on the ICE timeout without a valid
    /// check), `consent_lost` (connected, then silent past the consent timeout).
    failures: BTreeMap<&'static str, u64>,
}

impl Connectivity {
    pub(crate) fn new(relay_ips: Vec<IpAddr>) -> Self {
        Self {
            relay_ips,
            ..Self::default()
        }
    }

    /// Takes in a dataplane notification; returns the session's new selected pair when it
    /// changed (for the room log).
    pub(crate) fn on_notification(&mut self, n: &Notification) -> Option<(SessionId, Selected)> {
        match n {
            Notification::IceConnected {
                session,
                remote,
                transport,
            } => self.set(*session, *remote, None, *transport),
            Notification::SelectedPairChanged {
                session,
                local,
                remote,
                transport,
            } => self.set(*session, *remote, Some(*local), *transport),
            Notification::SessionClosed { session, reason } => {
                let was = self.selected.remove(session);
                if *reason == CloseReason::IceTimeout {
                    let why = if was.is_some() {
                        "consent_lost"
                    } else {
                        "never_connected"
                    };
                    *self.failures.entry(why).or_default() += 1;
                }
                None
            }
            _ => None,
        }
    }

    fn set(
        &mut self,
        session: SessionId,
        remote: SocketAddr,
        local: Option<SocketAddr>,
        transport: CandidateProtocol,
    ) -> Option<(SessionId, Selected)> {
        let relayed = self.relay_ips.contains(&remote.ip());
        let s = Selected {
            transport: transport.as_str(),
            remote,
            local: local.or_else(|| self.selected.get(&session).and_then(|s| s.local)),
            local_type: if transport == CandidateProtocol::Tcp {
                "host tcptype passive"
            } else {
                "host"
            },
            remote_type: if relayed { "relay" } else { "host_or_srflx" },
        };
        if self.selected.get(&session) == Some(&s) {
            return None;
        }
        self.selected.insert(session, s.clone());
        Some((session, s))
    }

    /// A new dataplane process holds none of the old sessions, and no `session_closed` comes
    /// for them (D39): every selected pair goes.
    pub(crate) fn dataplane_restarted(&mut self) {
        self.selected.clear();
    }

    pub(crate) fn get(&self, session: SessionId) -> Option<&Selected> {
        self.selected.get(&session)
    }

    /// `{"transport": …}` for a PC's session, `null` when not connected (yet).
    pub(crate) fn info(&self, session: Option<SessionId>) -> Value {
        match session.and_then(|s| self.get(s)) {
            Some(s) => json!(s),
            None => Value::Null,
        }
    }

    /// `sluice_sessions_by_transport` and `sluice_ice_failures_total`.
    pub(crate) fn metrics(&self, out: &mut String) {
        let mut by: BTreeMap<&'static str, u64> = [("udp", 0), ("tcp", 0), ("relayed", 0)]
            .into_iter()
            .collect();
        for s in self.selected.values() {
            *by.entry(s.class()).or_default() += 1;
        }
        let _ = writeln!(out, "# HELP sluice_sessions_by_transport Connected dataplane sessions by the transport of their selected pair.\n# TYPE sluice_sessions_by_transport gauge");
        for (t, n) in by {
            let _ = writeln!(out, "sluice_sessions_by_transport{{transport=\"{t}\"}} {n}");
        }
        let _ = writeln!(out, "# HELP sluice_ice_failures_total Sessions that ICE failed, by reason.\n# TYPE sluice_ice_failures_total counter");
        for why in ["never_connected", "consent_lost"] {
            let n = self.failures.get(why).copied().unwrap_or(0);
            let _ = writeln!(out, "sluice_ice_failures_total{{reason=\"{why}\"}} {n}");
        }
    }
}

/// The relay IPs: `[turn] relay_ips` if given, else the IP literals among the URLs' hosts.
pub(crate) fn relay_ips(urls: &[String], configured: &[IpAddr]) -> Vec<IpAddr> {
    if !configured.is_empty() {
        return configured.to_vec();
    }
    urls.iter()
        .filter_map(|u| {
            let rest = u.split_once(':')?.1;
            let host = rest.split('?').next()?;
            let host = match host.strip_prefix('[') {
                Some(v6) => v6.split(']').next()?,
                None => host.rsplit_once(':').map_or(host, |(h, _)| h),
            };
            host.parse().ok()
        })
        .collect()
}

impl super::App {
    /// A session's selected pair changed: logged, and a `connectivity` event in its room's
    /// stream (SSE, webhooks) with the participant and PC when the room still holds it.
    pub(crate) async fn connectivity_changed(self: &Arc<Self>, session: SessionId, s: Selected) {
        let room = self.session_rooms.locked().get(&session).cloned();
        tracing::info!(%session, transport = s.transport, remote = %s.remote, remote_type = s.remote_type, room = ?room, "selected pair");
        let Some(room) = room else {
            return;
        };
        let owner = self
            .in_existing_room(&room, move |ctx| {
                Box::pin(async move { Ok(owner_in(&ctx.media, session)) })
            })
            .await
            .ok()
            .flatten();
        if let Some((identity, pc)) = owner {
            let payload = json!({"identity": identity, "pc": pc, "selected": s});
            self.events
                .emit(&room, "connectivity", payload, self.now_ms());
        }
    }
}

/// Which participant and PC of a room hold `session`: (identity, `publisher`/`subscriber`).
fn owner_in(media: &Media, session: SessionId) -> Option<(String, &'static str)> {
    media.peers.iter().find_map(|(identity, p)| {
        let pc = if p.publisher.as_ref().is_some_and(|pc| pc.session == session) {
            "publisher"
        } else if p
            .subscriber
            .as_ref()
            .is_some_and(|s| s.session == Some(session))
        {
            "subscriber"
        } else {
            return None;
        };
        Some((identity.clone(), pc))
    })
}

/// `{publisher: pair|null, subscriber: pair|null}` for a participant's media (`null`: none).
pub(crate) fn of_peer(c: &Connectivity, media: &Media, identity: &str) -> Value {
    match media.peers.get(identity) {
        Some(p) => json!({
            "publisher": c.info(p.publisher.as_ref().map(|pc| pc.session)),
            "subscriber": c.info(p.subscriber.as_ref().and_then(|s| s.session)),
        }),
        None => Value::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sid(n: u64) -> SessionId {
        SessionId(n)
    }

    #[test]
    fn selected_pairs_follow_the_dataplane_and_leave_with_the_session() {
        let relay: IpAddr = "127.0.0.2".parse().unwrap();
        let mut c = Connectivity::new(vec![relay]);
        let tcp = Notification::IceConnected {
            session: sid(1),
            remote: "127.0.0.1:40000".parse().unwrap(),
            transport: CandidateProtocol::Tcp,
        };
        let (_, s) = c.on_notification(&tcp).expect("new pair");
        assert_eq!((s.transport, s.remote_type), ("tcp", "host_or_srflx"));
        assert!(c.on_notification(&tcp).is_none(), "no change, no event");
        let relayed = Notification::SelectedPairChanged {
            session: sid(2),
            local: "127.0.0.1:7882".parse().unwrap(),
            remote: "127.0.0.2:50000".parse().unwrap(),
            transport: CandidateProtocol::Udp,
        };
        c.on_notification(&relayed).expect("new pair");
        let mut m = String::new();
        c.metrics(&mut m);
        assert!(
            m.contains("sluice_sessions_by_transport{transport=\"tcp\"} 1"),
            "{m}"
        );
        assert!(
            m.contains("sluice_sessions_by_transport{transport=\"relayed\"} 1"),
            "{m}"
        );
        for (s, why) in [(1, CloseReason::IceTimeout), (3, CloseReason::IceTimeout)] {
            c.on_notification(&Notification::SessionClosed {
                session: sid(s),
                reason: why,
            });
        }
        assert!(c.get(sid(1)).is_none());
        let mut m = String::new();
        c.metrics(&mut m);
        assert!(
            m.contains("sluice_ice_failures_total{reason=\"consent_lost\"} 1"),
            "{m}"
        );
        assert!(
            m.contains("sluice_ice_failures_total{reason=\"never_connected\"} 1"),
            "{m}"
        );
        // A restarted dataplane sends no `session_closed` for what the old one held.
        assert!(c.get(sid(2)).is_some());
        c.dataplane_restarted();
        assert!(c.get(sid(2)).is_none(), "a pair outlived its dataplane");
    }

    #[test]
    fn relay_ips_from_turn_urls() {
        let urls = [
            "turns:127.0.0.2:443?transport=tcp".to_string(),
            "turn:[::1]:3478".to_string(),
            "turn:turn.example.com:3478".to_string(),
        ];
        let ips = relay_ips(&urls, &[]);
        assert_eq!(
            ips,
            vec![
                "127.0.0.2".parse::<IpAddr>().unwrap(),
                "::1".parse().unwrap()
            ]
        );
        let given = ["10.0.0.9".parse().unwrap()];
        assert_eq!(relay_ips(&urls, &given), given.to_vec());
    }
}
