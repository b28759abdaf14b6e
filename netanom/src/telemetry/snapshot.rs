//! One reading of every counter: what the metrics, the stats line and the status file show.
use netanom_common::{Event, Proto, ProtoCounter};
use serde::Serialize;

use super::counters::{FlowCounters, InterfaceInfo, QueueCounters, ScoreCounters, SweepTotals};

/// Counters of one protocol class, labelled for output.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct ProtoRow {
    pub family: &'static str,
    pub transport: &'static str,
    pub packets: u64,
    pub bytes: u64,
}

/// Everything counted, at one instant.
#[derive(Clone, Debug, Serialize)]
pub struct Snapshot {
    /// Seconds since the Unix epoch.
    pub timestamp: f64,
    pub interfaces: Vec<InterfaceInfo>,
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
    /// The kernel's counters read at `unix_s` (seconds since the epoch); the flow, queue and
    /// scoring counters start empty.
    pub fn from_counters(
        unix_s: f64,
        interfaces: Vec<InterfaceInfo>,
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
            timestamp: unix_s,
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
        self.flows = FlowCounters {
            created: self.event(Event::FlowCreated),
            exported_ring: self.event(Event::FlowExported),
            exported_idle: sweep.exported_idle,
            exported_flush: sweep.exported_flush,
            export_lost: self.event(Event::ExportLost),
            forgotten: sweep.forgotten,
            in_table: sweep.in_table,
            live: sweep.live,
            evicted: sweep
                .created_at_sweep
                .saturating_sub(sweep.exported_idle + sweep.forgotten + sweep.in_table),
            insert_failed: self.event(Event::FlowInsertFailed),
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

    /// One JSON object (what `--stats-format json` prints, one per line).
    pub fn to_json(&self) -> String {
        // Serializing plain data cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// A snapshot at `at` seconds whose only traffic is `udp` (packets, bytes) of IPv4 UDP, on
/// interface `veth0` (skb mode), with 3 truncated frames and 4 blocked drops: for tests.
#[cfg(test)]
pub(crate) fn sample(at: u64, udp: (u64, u64)) -> Snapshot {
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
        at as f64,
        vec![InterfaceInfo {
            iface: "veth0".into(),
            mode: "skb".into(),
            egress: false,
        }],
        &protos,
        &[(Event::Truncated, 3), (Event::DroppedBlocked, 4)],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_has_labelled_counters_and_totals() {
        let s = sample(5, (7, 700));
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
