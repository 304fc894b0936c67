//! What the cascade holds (trunks, relays it sends, relays it ingests, edge viewers) and its
//! metrics. Everything here is bounded by `MAX_TRUNKS` / `MAX_RELAYS` at insertion.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sluice_proto::{SessionId, SubscriptionId, TrackId};

use super::{RelaySpec, TrackRef};
use crate::server::error::ApiError;

/// The tables [`State::admit`] bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Table {
    Trunks,
    Relays,
    Ingests,
    Viewers,
}

/// The cascade's state and counters (one per node, in `App`).
#[derive(Debug, Default)]
pub(crate) struct Cascade {
    /// One lock for the whole table: setups are rare and short; it is never held across a
    /// request to another node (only across this node's own dataplane requests).
    pub(super) state: tokio::sync::Mutex<State>,
    pub(crate) metrics: Metrics,
    /// Remote subscriber sessions, both sides (`remote.rs`).
    pub(crate) remote: super::remote::Remote,
    /// Trunk congestion: shed relays, link stats (`trunk_cc.rs`).
    pub(super) cc: super::trunk_cc::TrunkCc,
}

#[derive(Debug, Default)]
pub(crate) struct Metrics {
    pub(crate) trunks: AtomicU64,
    pub(crate) relays: AtomicU64,
    pub(crate) ingests: AtomicU64,
    pub(crate) relay_setups: AtomicU64,
    pub(crate) relay_acquires: AtomicU64,
    pub(crate) relay_failures: AtomicU64,
    pub(crate) trunks_closed_idle: AtomicU64,
    pub(crate) trunks_closed_peer_lost: AtomicU64,
    pub(crate) trunks_closed_rekey: AtomicU64,
    /// Torn down after the dataplane's `trunk_silent`.
    pub(crate) trunks_closed_silent: AtomicU64,
    pub(crate) trunks_closed_other: AtomicU64,
    /// Set-ups refused because a table was full.
    pub(crate) limit_refusals: AtomicU64,
}

/// A trunk session toward one peer node.
#[derive(Debug, Clone)]
pub(crate) struct Trunk {
    pub(crate) session: SessionId,
    pub(crate) epoch: u64,
    /// The peer's boot id when the trunk was made: another boot means it restarted.
    pub(crate) boot: String,
    idle_since: Option<Instant>,
    /// When this side was set up.
    pub(super) made: Instant,
    /// Trunks toward this peer that went silent soon after their set-up, in a row (the
    /// re-establishment's backoff, `silence.rs`).
    pub(super) silent_streak: u32,
}

impl Trunk {
    pub(super) fn new(session: SessionId, epoch: u64, boot: String) -> Self {
        Self {
            session,
            epoch,
            boot,
            idle_since: None,
            made: Instant::now(),
            silent_streak: 0,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct RelayKey {
    pub(super) track: TrackRef,
    pub(super) edge: String,
}

/// A relay this node sends (`relay_track`), with its users on the edge.
#[derive(Debug)]
pub(super) struct Relay {
    pub(super) sub: SubscriptionId,
    pub(super) track: TrackId,
    pub(super) spec: RelaySpec,
    pub(super) users: u32,
    pub(super) idle_since: Option<Instant>,
}

impl Relay {
    pub(super) fn new(sub: SubscriptionId, track: TrackId, spec: RelaySpec) -> Self {
        Self {
            sub,
            track,
            spec,
            users: 1,
            idle_since: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct IngestKey {
    pub(super) home: String,
    pub(super) track: TrackRef,
}

/// A relay this node ingests: a track of its trunk session toward `home`.
#[derive(Debug)]
pub(super) struct Ingest {
    pub(super) track: TrackId,
    pub(super) spec: RelaySpec,
    pub(super) users: u32,
    pub(super) idle_since: Option<Instant>,
}

impl Ingest {
    pub(super) fn new(track: TrackId, spec: RelaySpec) -> Self {
        Self {
            track,
            spec,
            users: 1,
            idle_since: None,
        }
    }
}

/// A plain-RTP session on this edge subscribed to an ingested relay (`/internal/cascade/viewers`).
#[derive(Debug, Clone)]
pub(super) struct Viewer {
    pub(super) home: String,
    pub(super) track: TrackRef,
    pub(super) subscription: SubscriptionId,
    /// The SSRC the viewer gets the track with (kept when its relay is given back).
    pub(super) ssrc: u32,
    /// Its relay went with a trunk (`silence.rs` gives it back once the trunk is up again).
    pub(super) lost: bool,
}

#[derive(Debug, Default)]
pub(crate) struct State {
    /// By peer node id.
    pub(super) trunks: HashMap<String, Trunk>,
    pub(super) relays: HashMap<RelayKey, Relay>,
    pub(super) ingests: HashMap<IngestKey, Ingest>,
    pub(super) viewers: HashMap<SessionId, Viewer>,
    /// Peers whose silent trunk is being set up again (at most `MAX_TRUNKS`).
    pub(super) reconnecting: HashSet<String>,
}

impl State {
    /// `Ok` when `table` has room for one more entry under `max`; else `too_large` naming the
    /// request's field.
    pub(super) fn admit(&self, table: Table, max: usize) -> Result<(), ApiError> {
        let (len, field, what) = match table {
            Table::Trunks => (self.trunks.len(), "node", "trunk"),
            Table::Relays => (self.relays.len(), "track", "relay"),
            Table::Ingests => (self.ingests.len(), "track", "ingest"),
            Table::Viewers => (self.viewers.len(), "session", "viewer"),
        };
        if len < max {
            Ok(())
        } else {
            Err(
                ApiError::new("too_large", format!("{what} limit ({max}) reached"))
                    .with_field(field),
            )
        }
    }

    /// Forgets what rode the trunk toward `peer` (its session is closed: the dataplane dropped
    /// the relays and ingested tracks with it).
    pub(super) fn forget_peer(&mut self, peer: &str) {
        self.relays.retain(|k, _| k.edge != peer);
        self.ingests.retain(|k, _| k.home != peer);
        for v in self.viewers.values_mut().filter(|v| v.home == peer) {
            v.lost = true;
        }
    }

    /// Takes out the relays and ingests idle for `grace`, and names the trunks that carried
    /// nothing for `grace` (the caller closes them).
    pub(super) fn expired(
        &mut self,
        now: Instant,
        grace: Duration,
    ) -> (Vec<SubscriptionId>, Vec<TrackId>, Vec<String>) {
        let old = |since: Option<Instant>| since.is_some_and(|t| now.duration_since(t) >= grace);
        let relays: Vec<SubscriptionId> = self
            .relays
            .iter()
            .filter(|(_, r)| old(r.idle_since))
            .map(|(_, r)| r.sub)
            .collect();
        self.relays.retain(|_, r| !old(r.idle_since));
        let ingests: Vec<TrackId> = self
            .ingests
            .iter()
            .filter(|(_, i)| old(i.idle_since))
            .map(|(_, i)| i.track)
            .collect();
        self.ingests.retain(|_, i| !old(i.idle_since));
        let mut idle = Vec::new();
        for (peer, t) in &mut self.trunks {
            let used = self.relays.keys().any(|k| &k.edge == peer)
                || self.ingests.keys().any(|k| &k.home == peer);
            if used {
                t.idle_since = None;
            } else if old(t.idle_since) {
                idle.push(peer.clone());
            } else if t.idle_since.is_none() {
                t.idle_since = Some(now);
            }
        }
        (relays, ingests, idle)
    }
}

impl Cascade {
    /// [`State::admit`], refusals counted.
    pub(super) fn admit(&self, st: &State, table: Table, max: usize) -> Result<(), ApiError> {
        st.admit(table, max).inspect_err(|_| {
            self.metrics.limit_refusals.fetch_add(1, Ordering::Relaxed);
        })
    }

    pub(super) fn publish_gauges(&self, st: &State) {
        let m = &self.metrics;
        m.trunks.store(st.trunks.len() as u64, Ordering::Relaxed);
        m.relays.store(st.relays.len() as u64, Ordering::Relaxed);
        m.ingests.store(st.ingests.len() as u64, Ordering::Relaxed);
    }

    pub(super) fn count_teardown(&self, why: &str) {
        let m = &self.metrics;
        match why {
            "idle" => &m.trunks_closed_idle,
            "peer_lost" | "peer_reset" => &m.trunks_closed_peer_lost,
            "rekey" => &m.trunks_closed_rekey,
            "silent" => &m.trunks_closed_silent,
            _ => &m.trunks_closed_other,
        }
        .fetch_add(1, Ordering::Relaxed);
    }

    /// The `sluice_cascade_*` families of `/metrics`.
    pub(crate) fn write_metrics(&self, out: &mut String) {
        use std::fmt::Write as _;
        let m = &self.metrics;
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let _ = writeln!(out, "# HELP sluice_cascade_trunks Trunk sessions toward other nodes.\n# TYPE sluice_cascade_trunks gauge\nsluice_cascade_trunks {}", g(&m.trunks));
        let _ = writeln!(out, "# HELP sluice_cascade_relays Track layers relayed, by direction (out: sent to an edge; in: ingested from a home).\n# TYPE sluice_cascade_relays gauge\nsluice_cascade_relays{{direction=\"out\"}} {}\nsluice_cascade_relays{{direction=\"in\"}} {}", g(&m.relays), g(&m.ingests));
        let _ = writeln!(out, "# HELP sluice_cascade_relay_setups_total Relays opened (relay_track sent).\n# TYPE sluice_cascade_relay_setups_total counter\nsluice_cascade_relay_setups_total {}", g(&m.relay_setups));
        let _ = writeln!(out, "# HELP sluice_cascade_relay_acquires_total Relay requests answered (a new relay or one more user).\n# TYPE sluice_cascade_relay_acquires_total counter\nsluice_cascade_relay_acquires_total {}", g(&m.relay_acquires));
        let _ = writeln!(out, "# HELP sluice_cascade_relay_failures_total Relay requests that failed.\n# TYPE sluice_cascade_relay_failures_total counter\nsluice_cascade_relay_failures_total {}", g(&m.relay_failures));
        let _ = writeln!(out, "# HELP sluice_cascade_limit_refusals_total Trunk, relay, ingest or viewer set-ups refused at their table's bound.\n# TYPE sluice_cascade_limit_refusals_total counter\nsluice_cascade_limit_refusals_total {}", g(&m.limit_refusals));
        self.cc.write_metrics(out);
        let _ = writeln!(out, "# HELP sluice_cascade_trunks_closed_total Trunks closed, by reason.\n# TYPE sluice_cascade_trunks_closed_total counter");
        for (r, a) in [
            ("idle", &m.trunks_closed_idle),
            ("peer_lost", &m.trunks_closed_peer_lost),
            ("rekey", &m.trunks_closed_rekey),
            ("silent", &m.trunks_closed_silent),
            ("other", &m.trunks_closed_other),
        ] {
            let _ = writeln!(
                out,
                "sluice_cascade_trunks_closed_total{{reason=\"{r}\"}} {}",
                g(a)
            );
        }
        self.remote.write_metrics(out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_table_refuses_past_its_bound_naming_the_field() {
        let mut st = State::default();
        for i in 0..2 {
            st.trunks
                .insert(format!("n{i}"), Trunk::new(SessionId(i), 1, "b".into()));
            st.viewers.insert(
                SessionId(i),
                Viewer {
                    home: "a".into(),
                    track: TrackRef {
                        room: "m".into(),
                        track: "TR_1".into(),
                        layer: 0,
                    },
                    subscription: SubscriptionId(i),
                    ssrc: 1,
                    lost: false,
                },
            );
        }
        assert!(st.admit(Table::Trunks, 3).is_ok());
        let e = st.admit(Table::Trunks, 2).unwrap_err();
        assert_eq!((e.code, e.field.as_deref()), ("too_large", Some("node")));
        let e = st.admit(Table::Viewers, 2).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("session"));
        assert!(st.admit(Table::Relays, 1).is_ok());
        assert_eq!(
            st.admit(Table::Relays, 0).unwrap_err().field.as_deref(),
            Some("track")
        );
        assert_eq!(
            st.admit(Table::Ingests, 0).unwrap_err().field.as_deref(),
            Some("track")
        );
    }
    use sluice_proto::{Codec, MediaKind, Source};

    fn spec() -> RelaySpec {
        RelaySpec {
            ssrc: 1,
            rtx_ssrc: None,
            kind: MediaKind::Audio,
            codec: Codec {
                name: "opus".into(),
                payload_type: 111,
                clock_rate: 48_000,
                rtx_payload_type: None,
            },
            e2ee: false,
            source: Source::Microphone,
            epoch: 1,
        }
    }

    #[test]
    fn relays_and_trunks_expire_only_after_the_grace_period() {
        let mut st = State::default();
        let t0 = Instant::now();
        let grace = Duration::from_secs(5);
        st.trunks
            .insert("b".into(), Trunk::new(SessionId(1), 1, "boot".into()));
        let key = RelayKey {
            track: TrackRef {
                room: "m".into(),
                track: "TR_1".into(),
                layer: 0,
            },
            edge: "b".into(),
        };
        let mut r = Relay::new(SubscriptionId(2), TrackId(3), spec());
        r.users = 0;
        r.idle_since = Some(t0);
        st.relays.insert(key, r);
        let (relays, _, idle) = st.expired(t0 + Duration::from_secs(4), grace);
        assert!(relays.is_empty() && idle.is_empty());
        let (relays, _, idle) = st.expired(t0 + Duration::from_secs(5), grace);
        assert_eq!(relays, vec![SubscriptionId(2)]);
        assert!(idle.is_empty(), "the trunk's own grace starts now");
        let (_, _, idle) = st.expired(t0 + Duration::from_secs(9), grace);
        assert!(idle.is_empty());
        let (_, _, idle) = st.expired(t0 + Duration::from_secs(10), grace);
        assert_eq!(idle, vec!["b".to_owned()]);
    }
}
