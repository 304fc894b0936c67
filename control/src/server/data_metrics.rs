//! The dataplane's data-channel relay counters (issue 17, D60–D63) as their own `/metrics`
//! families. They arrive in each worker's `StatsSnapshot` `dropped` map as
//! `data_{kind}_{rx,tx}_{messages,bytes}` and `data_{kind}_drop_{reason}`
//! (`dataplane/src/shard/data.rs`), which `sluice_worker_dropped_total` leaves out: they count
//! messages, not packets.

use std::collections::BTreeMap;
use std::fmt::Write;

use sluice_proto::Counters;

/// Whether a `dropped` key is a data-relay counter (exported here, not as a packet drop).
pub(super) fn is_data_counter(key: &str) -> bool {
    key.starts_with("data_")
}

/// `sluice_data_messages_total`, `sluice_data_bytes_total` (labels worker, kind, direction) and
/// `sluice_data_messages_dropped_total` (labels worker, kind, reason).
pub(super) fn write_metrics(out: &mut String, stats: &BTreeMap<u16, Counters>) {
    let mut moved = Vec::new();
    let mut drops = Vec::new();
    for (w, c) in stats {
        for (k, v) in c.dropped.iter().filter(|(k, _)| is_data_counter(k)) {
            let Some((kind, rest)) = k["data_".len()..].split_once('_') else {
                continue;
            };
            if let Some(reason) = rest.strip_prefix("drop_") {
                drops.push((*w, kind, reason, *v));
            } else if let Some((dir, unit)) = rest.split_once('_') {
                moved.push((*w, kind, dir, unit, *v));
            }
        }
    }
    if moved.is_empty() && drops.is_empty() {
        return;
    }
    for (unit, help) in [
        ("messages", "Data-channel messages the relay received from senders (direction rx) and handed to receivers (tx), per worker and channel kind (reliable, lossy)."),
        ("bytes", "Payload bytes of those messages."),
    ] {
        let _ = writeln!(out, "# HELP sluice_data_{unit}_total {help}\n# TYPE sluice_data_{unit}_total counter");
        for (w, kind, dir, _, v) in moved.iter().filter(|m| m.3 == unit) {
            let _ = writeln!(
                out,
                "sluice_data_{unit}_total{{worker=\"{w}\",kind=\"{kind}\",direction=\"{dir}\"}} {v}"
            );
        }
    }
    let _ = writeln!(out, "# HELP sluice_data_messages_dropped_total Data-channel messages not relayed (rate_limited, not_permitted, bad_envelope) or not delivered to one receiver (slow_receiver, behind, too_big, no_channel, ring_full), per worker and kind.\n# TYPE sluice_data_messages_dropped_total counter");
    for (w, kind, reason, v) in &drops {
        let _ = writeln!(
            out,
            "sluice_data_messages_dropped_total{{worker=\"{w}\",kind=\"{kind}\",reason=\"{reason}\"}} {v}"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_counters_become_their_own_families() {
        let mut c = Counters::default();
        c.dropped.insert("data_reliable_rx_messages".into(), 3);
        c.dropped.insert("data_lossy_tx_bytes".into(), 40);
        c.dropped.insert("data_lossy_drop_not_permitted".into(), 2);
        c.dropped.insert("srtp_auth".into(), 9);
        let mut out = String::new();
        write_metrics(&mut out, &BTreeMap::from([(1, c)]));
        assert!(out.contains(
            "sluice_data_messages_total{worker=\"1\",kind=\"reliable\",direction=\"rx\"} 3\n"
        ));
        assert!(out.contains(
            "sluice_data_bytes_total{worker=\"1\",kind=\"lossy\",direction=\"tx\"} 40\n"
        ));
        assert!(out.contains("sluice_data_messages_dropped_total{worker=\"1\",kind=\"lossy\",reason=\"not_permitted\"} 2\n"));
        assert!(!out.contains("srtp_auth"));
        assert!(is_data_counter("data_lossy_drop_behind") && !is_data_counter("dtls_failed"));
    }
}
