//! The cluster's counters and gauges (`/metrics`, docs/cluster.md "Metrics").

use std::sync::atomic::{AtomicU64, Ordering};

use super::Cluster;

/// Counters and gauges for `/metrics`.
#[derive(Debug, Default)]
pub struct Metrics {
    pub nodes: AtomicU64,
    pub placements_local: AtomicU64,
    pub placements_remote: AtomicU64,
    pub placements_new: AtomicU64,
    pub placements_failover: AtomicU64,
    pub placements_unavailable: AtomicU64,
    pub redirects_ws: AtomicU64,
    pub redirects_http: AtomicU64,
    pub forwards: AtomicU64,
    pub forward_errors: AtomicU64,
    pub rooms_unhomed: AtomicU64,
    pub fenced: AtomicU64,
    pub rooms_reasserted: AtomicU64,
    pub reassert_lost: AtomicU64,
    pub redis_errors: AtomicU64,
    pub lease_renew_us: AtomicU64,
    pub lease_renew_failures: AtomicU64,
    pub events_published: AtomicU64,
    pub events_received: AtomicU64,
    pub events_dropped: AtomicU64,
    /// Requests whose load balancer region header was not a valid region.
    pub region_header_invalid: AtomicU64,
}

impl Cluster {
    /// `/metrics` lines.
    pub fn render_metrics(&self, out: &mut String) {
        use std::fmt::Write as _;
        let m = &self.metrics;
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let _ = writeln!(out, "# HELP sluice_cluster_nodes Live nodes seen at the last sweep.\n# TYPE sluice_cluster_nodes gauge\nsluice_cluster_nodes {}", g(&m.nodes));
        let _ = writeln!(out, "# HELP sluice_cluster_serving This node holds its lease and is not fenced.\n# TYPE sluice_cluster_serving gauge\nsluice_cluster_serving {}", u8::from(self.is_serving()));
        let _ = writeln!(out, "# HELP sluice_cluster_home_rooms Rooms this node is home of.\n# TYPE sluice_cluster_home_rooms gauge\nsluice_cluster_home_rooms {}", self.home_count());
        let _ = writeln!(out, "# HELP sluice_cluster_placements_total Placement answers by result.\n# TYPE sluice_cluster_placements_total counter");
        for (r, a) in [
            ("local", &m.placements_local),
            ("remote", &m.placements_remote),
            ("new", &m.placements_new),
            ("failover", &m.placements_failover),
            ("unavailable", &m.placements_unavailable),
        ] {
            let _ = writeln!(
                out,
                "sluice_cluster_placements_total{{result=\"{r}\"}} {}",
                g(a)
            );
        }
        let _ = writeln!(out, "# HELP sluice_cluster_redirects_total Requests sent to the room's home node.\n# TYPE sluice_cluster_redirects_total counter");
        let _ = writeln!(
            out,
            "sluice_cluster_redirects_total{{kind=\"ws\"}} {}",
            g(&m.redirects_ws)
        );
        let _ = writeln!(
            out,
            "sluice_cluster_redirects_total{{kind=\"http\"}} {}",
            g(&m.redirects_http)
        );
        let _ = writeln!(
            out,
            "sluice_cluster_redirects_total{{kind=\"forward\"}} {}",
            g(&m.forwards)
        );
        for (name, help, a) in [
            (
                "forward_errors_total",
                "Admin API forwards that failed.",
                &m.forward_errors,
            ),
            (
                "failovers_total",
                "Rooms un-homed because their node's lease expired.",
                &m.rooms_unhomed,
            ),
            (
                "fenced_total",
                "Times this node lost its lease (fenced until it registered again and re-claimed its rooms).",
                &m.fenced,
            ),
            (
                "rooms_reasserted_total",
                "Rooms re-claimed by this node after it lost its lease.",
                &m.rooms_reasserted,
            ),
            (
                "reassert_lost_total",
                "Rooms given up after a lost lease: another live node held them (their clients reconnect).",
                &m.reassert_lost,
            ),
            (
                "redis_errors_total",
                "Redis calls that failed.",
                &m.redis_errors,
            ),
            (
                "lease_renew_failures_total",
                "Lease renewals that failed.",
                &m.lease_renew_failures,
            ),
            (
                "events_published_total",
                "Events published to the other nodes.",
                &m.events_published,
            ),
            (
                "events_received_total",
                "Events received from the other nodes.",
                &m.events_received,
            ),
            (
                "events_dropped_total",
                "Cluster events dropped (queue full, oversized, malformed).",
                &m.events_dropped,
            ),
            (
                "region_header_invalid_total",
                "Requests whose cluster.region_header value was not a region (ignored).",
                &m.region_header_invalid,
            ),
        ] {
            let _ = writeln!(out, "# HELP sluice_cluster_{name} {help}\n# TYPE sluice_cluster_{name} counter\nsluice_cluster_{name} {}", g(a));
        }
        let d = *self.dataplane.lock().expect("dataplane load lock");
        let _ = writeln!(out, "# HELP sluice_cluster_load_pressure This node's load share as published for placement: the busiest shard's share of its core, 1 when saturated.\n# TYPE sluice_cluster_load_pressure gauge\nsluice_cluster_load_pressure {:.3}", d.pressure as f64 / 1000.0);
        let _ = writeln!(out, "# HELP sluice_cluster_capacity_pps Packets per second this node would move with every shard busy, measured (0: too idle to tell).\n# TYPE sluice_cluster_capacity_pps gauge\nsluice_cluster_capacity_pps {}", d.capacity_pps);
        let _ = writeln!(out, "# HELP sluice_cluster_lease_renew_seconds Latency of the last lease renewal.\n# TYPE sluice_cluster_lease_renew_seconds gauge\nsluice_cluster_lease_renew_seconds {:.6}", g(&m.lease_renew_us) as f64 / 1e6);
    }
}
