//! Congestion on trunks, as the control daemon sees it (issue 16 Build 1 and 5, D108/D109):
//! the dataplane's `relay_shed` (a trunk suspended or resumed a relay for its estimate) is
//! counted, logged and handed on as a [`RelayShed`] to whoever listens
//! ([`App::relay_shed_events`]: moving the edge's subscribers of a shed layer to a lower one);
//! and every [`LINK_POLL`] the janitor asks the dataplane for each trunk's session stats, for
//! `sluice_cascade_trunk_{rtt_ms,loss_ratio,bitrate_bps,estimate_bps}{peer}`.
//!
//! Bounded: the per-peer table holds the trunks that exist (at most `MAX_TRUNKS`) and forgets a
//! peer whose trunk is gone; the shed set holds relays that exist (at most `MAX_RELAYS`); the
//! event channel keeps the latest [`EVENTS`] for a slow listener (it sees `Lagged`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sluice_proto::{Command, ReplyOk, SessionId, SubscriptionId};

use super::{TrackRef, MAX_RELAYS, MAX_TRUNKS};
use crate::server::App;

/// How often trunk link stats are read from the dataplane.
const LINK_POLL: Duration = Duration::from_secs(2);
/// `relay_shed` events a slow listener may be behind.
const EVENTS: usize = 256;

/// A relay a trunk shed or resumed, for the layer-moving logic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RelayShed {
    /// The edge the trunk leads to.
    pub(crate) edge: String,
    /// The room's track and layer relayed.
    pub(crate) track: TrackRef,
    pub(crate) subscription: SubscriptionId,
    pub(crate) shed: bool,
    pub(crate) estimate_bps: u64,
}

/// One exported value of a [`Link`].
type LinkValue = fn(&Link) -> Option<String>;

/// One trunk's link as last read.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Link {
    estimate_bps: u64,
    rtt_ms: Option<u64>,
    loss_ratio: Option<f64>,
    bitrate_bps: u64,
    /// Transport-cc's `(received, lost)` totals at the last poll.
    reported: (u64, u64),
}

/// The loss over the last poll interval: what transport-cc feedback reported lost of what it
/// reported since the previous totals (the path before repair), else the receiver reports'
/// latest fraction lost.
fn loss_ratio(
    before: Option<(u64, u64)>,
    now: (u64, u64),
    fraction_lost: Option<u8>,
) -> Option<f64> {
    let (received, lost) = match before {
        Some((r, l)) => (now.0.saturating_sub(r), now.1.saturating_sub(l)),
        None => now,
    };
    match received + lost {
        0 => fraction_lost.map(|f| f64::from(f) / 256.0),
        total => Some(lost as f64 / total as f64),
    }
}

#[derive(Debug, Default)]
struct Inner {
    links: BTreeMap<String, Link>,
    shed: BTreeSet<SubscriptionId>,
    polled: Option<Instant>,
}

/// Trunk congestion state of the cascade (in [`super::Cascade`]).
#[derive(Debug)]
pub(crate) struct TrunkCc {
    inner: Mutex<Inner>,
    sheds: AtomicU64,
    resumes: AtomicU64,
    /// Events for a relay or trunk this node no longer knows (a race with its teardown).
    unknown: AtomicU64,
    events: tokio::sync::broadcast::Sender<RelayShed>,
}

impl Default for TrunkCc {
    fn default() -> Self {
        Self {
            inner: Mutex::default(),
            sheds: AtomicU64::new(0),
            resumes: AtomicU64::new(0),
            unknown: AtomicU64::new(0),
            events: tokio::sync::broadcast::channel(EVENTS).0,
        }
    }
}

impl TrunkCc {
    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records a shed or resume of a relay on the trunk toward `peer`.
    fn record(&self, peer: &str, ev: &RelayShed) {
        let mut i = self.inner();
        if ev.shed {
            if i.shed.len() < MAX_RELAYS {
                i.shed.insert(ev.subscription);
            }
            self.sheds.fetch_add(1, Ordering::Relaxed);
        } else {
            i.shed.remove(&ev.subscription);
            self.resumes.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(l) = i.links.get_mut(peer) {
            l.estimate_bps = ev.estimate_bps;
        } else if i.links.len() < MAX_TRUNKS {
            i.links.insert(
                peer.to_owned(),
                Link {
                    estimate_bps: ev.estimate_bps,
                    ..Link::default()
                },
            );
        }
    }

    /// Whether the relay `sub` is shed now.
    pub(super) fn is_shed(&self, sub: SubscriptionId) -> bool {
        self.inner().shed.contains(&sub)
    }

    /// Keeps only what still exists: these trunks' peers and these relays.
    fn retain(&self, peers: &BTreeSet<String>, relays: &BTreeSet<SubscriptionId>) {
        let mut i = self.inner();
        i.links.retain(|p, _| peers.contains(p));
        i.shed.retain(|s| relays.contains(s));
    }

    /// The `sluice_cascade_relays_shed`, `…_relay_shed_total` and per-trunk families.
    pub(crate) fn write_metrics(&self, out: &mut String) {
        use std::fmt::Write as _;
        let i = self.inner();
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let _ = writeln!(out, "# HELP sluice_cascade_relays_shed Relays this node sends that a trunk has shed for its estimate now (D109).\n# TYPE sluice_cascade_relays_shed gauge\nsluice_cascade_relays_shed {}", i.shed.len());
        let _ = writeln!(out, "# HELP sluice_cascade_relay_shed_total Relays shed or resumed by a trunk's estimate.\n# TYPE sluice_cascade_relay_shed_total counter\nsluice_cascade_relay_shed_total{{event=\"shed\"}} {}\nsluice_cascade_relay_shed_total{{event=\"resumed\"}} {}\nsluice_cascade_relay_shed_total{{event=\"unknown_relay\"}} {}", g(&self.sheds), g(&self.resumes), g(&self.unknown));
        let families: [(&str, &str, LinkValue); 4] = [
            ("estimate_bps", "The trunk's send-side estimate toward the peer (transport-cc, D108), bits per second.", |l| Some(l.estimate_bps.to_string())),
            ("rtt_ms", "Round-trip time of the trunk from its RTCP reports, milliseconds.", |l| l.rtt_ms.map(|v| v.to_string())),
            ("loss_ratio", "Share of what the trunk sent over the last poll (2 s) that transport-cc feedback reported lost, before repair.", |l| l.loss_ratio.map(|v| format!("{v:.4}"))),
            ("bitrate_bps", "What the trunk sent over the last second, bits per second.", |l| Some(l.bitrate_bps.to_string())),
        ];
        for (name, help, value) in families {
            let _ = writeln!(out, "# HELP sluice_cascade_trunk_{name} {help}\n# TYPE sluice_cascade_trunk_{name} gauge");
            for (peer, l) in &i.links {
                if let Some(v) = value(l) {
                    let _ = writeln!(out, "sluice_cascade_trunk_{name}{{peer=\"{peer}\"}} {v}");
                }
            }
        }
    }
}

impl App {
    /// The dataplane's `relay_shed`: counted, logged, handed to [`Self::relay_shed_events`].
    pub(crate) async fn relay_shed(
        &self,
        session: SessionId,
        subscription: SubscriptionId,
        shed: bool,
        estimate_bps: u64,
    ) {
        let cc = &self.cascade.cc;
        let found = {
            let st = self.cascade.state.lock().await;
            let peer = st
                .trunks
                .iter()
                .find(|(_, t)| t.session == session)
                .map(|(p, _)| p.clone());
            let relay = st
                .relays
                .iter()
                .find(|(_, r)| r.sub == subscription)
                .map(|(k, _)| k.clone());
            peer.zip(relay)
        };
        let Some((peer, key)) = found else {
            cc.unknown.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(%session, %subscription, shed, "cascade: relay_shed for an unknown relay");
            return;
        };
        let ev = RelayShed {
            edge: key.edge,
            track: key.track,
            subscription,
            shed,
            estimate_bps,
        };
        cc.record(&peer, &ev);
        tracing::info!(
            peer, room = %ev.track.room, track = %ev.track.track, layer = ev.track.layer,
            shed, estimate_bps, "cascade: trunk {} a relay",
            if shed { "shed" } else { "resumed" }
        );
        // Nobody listening is fine.
        let _ = cc.events.send(ev);
    }

    /// Every `relay_shed` from now on (the latest [`EVENTS`] kept for a slow receiver; the
    /// edge's subscribers are moved from here, `media/shed.rs`).
    pub(crate) fn relay_shed_events(&self) -> tokio::sync::broadcast::Receiver<RelayShed> {
        self.cascade.cc.events.subscribe()
    }

    /// Which relays of `room`'s `track` to `edge`, layers 0 to `top`, are shed now: bit `l`
    /// for layer `l` (`None`: none is).
    pub(crate) async fn relays_shed(
        &self,
        room: &str,
        track: &str,
        top: u8,
        edge: &str,
    ) -> Option<u32> {
        let subs: Vec<(u8, SubscriptionId)> = {
            let st = self.cascade.state.lock().await;
            (0..=top.min(31))
                .filter_map(|layer| {
                    let key = super::state::RelayKey {
                        track: TrackRef {
                            room: room.to_owned(),
                            track: track.to_owned(),
                            layer,
                        },
                        edge: edge.to_owned(),
                    };
                    st.relays.get(&key).map(|r| (layer, r.sub))
                })
                .collect()
        };
        let i = self.cascade.cc.inner();
        let mask = subs
            .into_iter()
            .filter(|(_, s)| i.shed.contains(s))
            .fold(0u32, |m, (l, _)| m | 1 << l);
        (mask != 0).then_some(mask)
    }

    /// Every [`LINK_POLL`]: each trunk's estimate, RTT, loss and bitrate from the dataplane.
    pub(super) async fn poll_trunk_links(&self) {
        let cc = &self.cascade.cc;
        {
            let mut i = cc.inner();
            if i.polled.is_some_and(|t| t.elapsed() < LINK_POLL) {
                return;
            }
            i.polled = Some(Instant::now());
        }
        let (trunks, relays): (Vec<(String, SessionId)>, BTreeSet<SubscriptionId>) = {
            let st = self.cascade.state.lock().await;
            (
                st.trunks
                    .iter()
                    .map(|(p, t)| (p.clone(), t.session))
                    .collect(),
                st.relays.values().map(|r| r.sub).collect(),
            )
        };
        let mut links = Vec::with_capacity(trunks.len());
        for (peer, session) in &trunks {
            if let Ok(ReplyOk::SessionStats(s)) =
                self.dp(Command::SessionStats { session: *session }).await
            {
                links.push((peer.clone(), s));
            }
        }
        let peers = trunks.into_iter().map(|(p, _)| p).collect();
        cc.retain(&peers, &relays);
        let mut i = cc.inner();
        for (peer, s) in links {
            if !peers.contains(&peer) {
                continue;
            }
            let reported = (s.reported_received, s.reported_lost);
            let before = i.links.get(&peer).map(|l| l.reported);
            let link = Link {
                estimate_bps: s.estimate_bps,
                rtt_ms: s.rtt_ms,
                loss_ratio: loss_ratio(before, reported, s.fraction_lost),
                bitrate_bps: s.sent_bps,
                reported,
            };
            i.links.insert(peer, link);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(sub: u64, shed: bool) -> RelayShed {
        RelayShed {
            edge: "b".into(),
            track: TrackRef {
                room: "m".into(),
                track: "TR_1".into(),
                layer: 2,
            },
            subscription: SubscriptionId(sub),
            shed,
            estimate_bps: 1_016_000,
        }
    }

    #[test]
    fn trunk_loss_is_the_share_lost_since_the_last_poll() {
        // 1000 reported, 30 lost since the previous poll: 3 %, whatever came before.
        let r = loss_ratio(Some((5_000, 500)), (5_970, 530), Some(0)).expect("ratio");
        assert!((r - 0.03).abs() < 1e-9, "{r}");
        // Nothing new from transport-cc: the receiver reports' fraction.
        assert_eq!(loss_ratio(Some((10, 0)), (10, 0), Some(64)), Some(0.25));
        assert_eq!(loss_ratio(None, (0, 0), None), None);
        assert_eq!(loss_ratio(None, (90, 10), None), Some(0.1));
    }

    #[test]
    fn shed_relays_and_trunk_links_are_counted_exported_and_bounded() {
        let cc = TrunkCc::default();
        cc.record("b", &ev(900, true));
        cc.record("b", &ev(901, true));
        cc.record("b", &ev(901, false));
        cc.inner().links.get_mut("b").expect("link").rtt_ms = Some(41);
        let mut out = String::new();
        cc.write_metrics(&mut out);
        println!("{out}");
        for line in [
            "sluice_cascade_relays_shed 1",
            "sluice_cascade_relay_shed_total{event=\"shed\"} 2",
            "sluice_cascade_relay_shed_total{event=\"resumed\"} 1",
            "sluice_cascade_trunk_estimate_bps{peer=\"b\"} 1016000",
            "sluice_cascade_trunk_rtt_ms{peer=\"b\"} 41",
        ] {
            assert!(out.lines().any(|l| l == line), "{line} in\n{out}");
        }
        assert!(
            !out.contains("sluice_cascade_trunk_loss_ratio{"),
            "unknown loss"
        );
        // The tables hold only what exists, and at most MAX_TRUNKS peers / MAX_RELAYS relays.
        cc.retain(&BTreeSet::new(), &BTreeSet::new());
        assert!(cc.inner().links.is_empty() && cc.inner().shed.is_empty());
        for p in 0..MAX_TRUNKS + 5 {
            cc.record(&format!("n{p}"), &ev(p as u64, true));
        }
        assert_eq!(cc.inner().links.len(), MAX_TRUNKS);
        for s in 0..MAX_RELAYS as u64 + 5 {
            cc.record("n0", &ev(s, true));
        }
        assert_eq!(cc.inner().shed.len(), MAX_RELAYS);
    }
}
