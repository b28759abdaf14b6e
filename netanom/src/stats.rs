//! Counter snapshots read from the kernel, and how the agent shows them.
use std::{
    fmt::Write as _,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use netanom_common::{Event, Proto, ProtoCounter};
use serde::Serialize;

use crate::datapath::{Attachment, Datapath, DatapathError};

/// How counters are printed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// An aligned table for people, with rates since the previous one.
    #[default]
    Table,
    /// One JSON object per line, for scripts and tests.
    Json,
}

/// Counters of one protocol class, labelled for output.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct ProtoRow {
    pub family: &'static str,
    pub transport: &'static str,
    pub packets: u64,
    pub bytes: u64,
}

/// Flow accounting counters: kernel events plus what the agent's drain did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct FlowCounters {
    /// Entries the kernel created in its flow table.
    pub created: u64,
    /// Flow records handed over through the ring buffer (FIN, RST, active timeout).
    pub exported_ring: u64,
    /// Flows the agent's sweep exported because they were idle (then deleted).
    pub exported_idle: u64,
    /// Live flows exported when the agent stopped.
    pub exported_flush: u64,
    /// Flow records the kernel could not queue because the ring buffer was full.
    pub export_lost: u64,
    /// Closed flows the sweep deleted after their linger time (exported when they closed).
    pub forgotten: u64,
    /// Entries in the table at the last sweep, and how many of them are live (not closed).
    pub in_table: u64,
    pub live: u64,
    /// Entries the LRU table evicted: created - exported_idle - forgotten - in_table, with
    /// `created` as it was when the last sweep started (so flows created since then are not
    /// mistaken for evicted ones). An evicted live flow was never exported.
    pub evicted: u64,
    /// Flows that could not be entered at all.
    pub insert_failed: u64,
}

/// What the drain's sweeps did, summed since the agent started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SweepTotals {
    pub exported_idle: u64,
    pub exported_flush: u64,
    pub forgotten: u64,
    /// From the latest sweep.
    pub in_table: u64,
    pub live: u64,
    /// The kernel's flows-created counter read just before the latest sweep started: the
    /// count that `in_table` and the totals above account for.
    pub created_at_sweep: u64,
}

/// The drain-to-scoring queue.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct QueueCounters {
    pub vectors_in: u64,
    pub vectors_out: u64,
    /// Times the drain found the queue full and waited (back-pressure).
    pub full_waits: u64,
}

/// What the scoring stage did with flow vectors.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ScoreCounters {
    /// Flow vectors scored.
    pub scored: u64,
    /// Vectors each model flagged (autoencoder, Isolation Forest, Random Forest) and the
    /// ensemble's decisions.
    pub anomalies_autoencoder: u64,
    pub anomalies_iforest: u64,
    pub anomalies_rf: u64,
    pub anomalies_ensemble: u64,
    /// Vectors refused (NaN or infinite features).
    pub rejected: u64,
}

/// Everything the kernel counted, at one instant.
#[derive(Clone, Debug, Serialize)]
pub struct Snapshot {
    /// Seconds since the Unix epoch.
    pub timestamp: f64,
    pub interfaces: Vec<Attachment>,
    pub protocols: Vec<ProtoRow>,
    /// Every kernel event by name: parser events (truncated frames, bad headers, VLAN-tagged
    /// frames, ...), flow accounting, and the response's drops (`dropped_blocked`,
    /// `dropped_rate_limited`, `passed_allowlisted`).
    pub events: Vec<(&'static str, u64)>,
    pub total_packets: u64,
    pub total_bytes: u64,
    pub flows: FlowCounters,
    pub queue: QueueCounters,
    pub scoring: ScoreCounters,
}

impl Snapshot {
    pub fn read(dp: &Datapath) -> Result<Self, DatapathError> {
        Ok(Self::from_counters(
            SystemTime::now(),
            dp.attachments().to_vec(),
            &dp.proto_counters()?,
            &dp.event_counters()?,
        ))
    }

    pub fn from_counters(
        at: SystemTime,
        interfaces: Vec<Attachment>,
        protos: &[(Proto, ProtoCounter)],
        events: &[(Event, u64)],
    ) -> Self {
        let protocols: Vec<ProtoRow> = protos
            .iter()
            .map(|(p, c)| ProtoRow {
                family: p.family(),
                transport: p.transport(),
                packets: c.packets,
                bytes: c.bytes,
            })
            .collect();
        Self {
            timestamp: at.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs_f64(),
            total_packets: protocols.iter().map(|r| r.packets).sum(),
            total_bytes: protocols.iter().map(|r| r.bytes).sum(),
            interfaces,
            protocols,
            events: events.iter().map(|(e, n)| (e.name(), *n)).collect(),
            flows: FlowCounters::default(),
            queue: QueueCounters::default(),
            scoring: ScoreCounters::default(),
        }
    }

    /// The count of one kernel event (0 if the snapshot does not have it).
    pub fn event(&self, e: Event) -> u64 {
        self.events
            .iter()
            .find(|(n, _)| *n == e.name())
            .map_or(0, |(_, v)| *v)
    }

    /// Fills in the flow counters from the kernel's events and the drain's own tallies.
    pub fn with_flows(mut self, sweep: &SweepTotals, queue: QueueCounters) -> Self {
        let ev = |name: &str| {
            self.events
                .iter()
                .find(|(n, _)| *n == name)
                .map_or(0, |(_, v)| *v)
        };
        let created = ev(Event::FlowCreated.name());
        self.flows = FlowCounters {
            created,
            exported_ring: ev(Event::FlowExported.name()),
            exported_idle: sweep.exported_idle,
            exported_flush: sweep.exported_flush,
            export_lost: ev(Event::ExportLost.name()),
            forgotten: sweep.forgotten,
            in_table: sweep.in_table,
            live: sweep.live,
            evicted: sweep
                .created_at_sweep
                .saturating_sub(sweep.exported_idle + sweep.forgotten + sweep.in_table),
            insert_failed: ev(Event::FlowInsertFailed.name()),
        };
        self.queue = queue;
        self
    }

    /// Counters of one class by its labels, e.g. `("ipv6", "icmp")`.
    pub fn get(&self, family: &str, transport: &str) -> Option<&ProtoRow> {
        self.protocols
            .iter()
            .find(|r| r.family == family && r.transport == transport)
    }

    pub fn to_json(&self) -> String {
        // Serializing plain data cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Aligned table; rates are computed against `prev` when given.
    pub fn to_table(&self, prev: Option<&Snapshot>) -> String {
        let elapsed = prev
            .map(|p| Duration::from_secs_f64((self.timestamp - p.timestamp).max(0.0)))
            .filter(|d| !d.is_zero());
        let ifaces: Vec<String> = self
            .interfaces
            .iter()
            .map(|a| format!("{} (xdp {})", a.iface, a.mode))
            .collect();
        let mut out = String::new();
        let _ = writeln!(out, "netanom observing {}", ifaces.join(", "));
        let _ = writeln!(
            out,
            "{:<6} {:<6} {:>14} {:>16} {:>12} {:>14}",
            "family", "proto", "packets", "bytes", "pkt/s", "bit/s"
        );
        for row in &self.protocols {
            let (pps, bps) = match (elapsed, prev.and_then(|p| p.get(row.family, row.transport))) {
                (Some(d), Some(p)) => (
                    row.packets.saturating_sub(p.packets) as f64 / d.as_secs_f64(),
                    row.bytes.saturating_sub(p.bytes) as f64 * 8.0 / d.as_secs_f64(),
                ),
                _ => (0.0, 0.0),
            };
            let _ = writeln!(
                out,
                "{:<6} {:<6} {:>14} {:>16} {:>12.1} {:>14}",
                row.family,
                row.transport,
                row.packets,
                row.bytes,
                pps,
                human_bits(bps)
            );
        }
        let _ = writeln!(
            out,
            "{:<13} {:>14} {:>16}",
            "total", self.total_packets, self.total_bytes
        );
        let events: Vec<String> = self
            .events
            .iter()
            .filter(|(n, _)| Event::ALL.iter().any(|e| e.name() == *n && e.is_parser_event()))
            .map(|(n, v)| format!("{n}={v}"))
            .collect();
        let _ = writeln!(out, "parser events: {}", events.join(" "));
        let _ = writeln!(
            out,
            "dropped: blocklist={} rate_limit={} passed_allowlisted={}",
            self.event(Event::DroppedBlocked),
            self.event(Event::DroppedRateLimited),
            self.event(Event::PassedAllowlisted)
        );
        let f = &self.flows;
        let _ = writeln!(
            out,
            "flows: live={} in_table={} created={} exported: ring={} idle={} flush={} lost={} evicted={} insert_failed={}",
            f.live,
            f.in_table,
            f.created,
            f.exported_ring,
            f.exported_idle,
            f.exported_flush,
            f.export_lost,
            f.evicted,
            f.insert_failed
        );
        let m = &self.scoring;
        let _ = writeln!(
            out,
            "scoring: flows={} anomalies: autoencoder={} iforest={} rf={} ensemble={} rejected={}",
            m.scored,
            m.anomalies_autoencoder,
            m.anomalies_iforest,
            m.anomalies_rf,
            m.anomalies_ensemble,
            m.rejected
        );
        let q = &self.queue;
        let _ = writeln!(
            out,
            "queue: vectors in={} out={} full_waits={}",
            q.vectors_in, q.vectors_out, q.full_waits
        );
        out
    }
}

fn human_bits(bps: f64) -> String {
    const UNITS: [&str; 5] = ["", "k", "M", "G", "T"];
    let mut v = bps;
    let mut u = 0;
    while v >= 1000.0 && u + 1 < UNITS.len() {
        v /= 1000.0;
        u += 1;
    }
    format!("{v:.1}{}", UNITS[u])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datapath::AttachMode;

    fn snap(at: u64, udp: (u64, u64)) -> Snapshot {
        let protos: Vec<(Proto, ProtoCounter)> = Proto::ALL
            .iter()
            .map(|&p| {
                let c = if p == Proto::Ipv4Udp {
                    ProtoCounter {
                        packets: udp.0,
                        bytes: udp.1,
                    }
                } else {
                    ProtoCounter::default()
                };
                (p, c)
            })
            .collect();
        Snapshot::from_counters(
            UNIX_EPOCH + Duration::from_secs(at),
            vec![Attachment {
                iface: "veth0".into(),
                mode: AttachMode::Skb,
                egress: false,
            }],
            &protos,
            &[(Event::Truncated, 3), (Event::DroppedBlocked, 4)],
        )
    }

    #[test]
    fn table_shows_rates_since_previous_snapshot() {
        let a = snap(100, (10, 1000));
        let b = snap(102, (30, 5000));
        let t = b.to_table(Some(&a));
        let udp = t.lines().find(|l| l.starts_with("ipv4   udp")).unwrap();
        // 20 packets and 4000 bytes over 2 s: 10 pkt/s, 16 kbit/s.
        assert!(udp.contains("10.0") && udp.contains("16.0k"), "{udp}");
        assert!(t.contains("veth0 (xdp skb)") && t.contains("truncated=3"), "{t}");
        assert!(
            t.contains("dropped: blocklist=4 rate_limit=0 passed_allowlisted=0"),
            "{t}"
        );
        assert!(!t.contains("dropped_blocked"), "not a parser event: {t}");
    }

    #[test]
    fn json_has_labelled_counters_and_totals() {
        let s = snap(5, (7, 700));
        let v: serde_json::Value = serde_json::from_str(&s.to_json()).unwrap();
        assert_eq!(v["total_packets"], 7);
        assert_eq!(v["interfaces"][0]["mode"], "skb");
        let udp = v["protocols"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["transport"] == "udp" && r["family"] == "ipv4")
            .unwrap();
        assert_eq!(
            (udp["packets"].as_u64(), udp["bytes"].as_u64()),
            (Some(7), Some(700))
        );
    }
}
