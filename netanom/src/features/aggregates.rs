//! Feature vectors of the per-source and per-destination aggregates (one vector per entry
//! per drain interval). Named separately from the CICFlowMeter flow features.
use std::net::IpAddr;

use netanom_common::agg::{DstKey, DstStats, HostKey, SrcStats, sketch_estimate};

use super::identity::addr;

/// Per-source features, in vector order: (name, unit, definition).
pub const SRC_FEATURES: &[(&str, &str, &str)] = &[
    (
        "src_packets",
        "packets",
        "Packets the source sent in the interval (any flow, any direction).",
    ),
    (
        "src_bytes",
        "bytes",
        "Frame bytes the source sent in the interval.",
    ),
    ("src_flows", "flows", "Flows the source started in the interval."),
    (
        "src_syn_flows",
        "flows",
        "Flows the source started with a bare SYN.",
    ),
    (
        "src_syn_unanswered",
        "flows",
        "Bare-SYN flows the other side has not answered (half-open attempts).",
    ),
    (
        "src_distinct_dst_ports",
        "ports",
        "Estimated distinct destination ports of the flows it started (512-bit linear-counting sketch; saturates near 3,200).",
    ),
    (
        "src_distinct_dst_hosts",
        "hosts",
        "Estimated distinct destination hosts of the flows it started (same sketch).",
    ),
    (
        "src_active_s",
        "s",
        "Seconds from its first to its last packet in the interval.",
    ),
    ("src_packets_per_s", "packets/s", "src_packets / interval length."),
    ("src_flows_per_s", "flows/s", "src_flows / interval length."),
];

/// Per-destination-service features, in vector order.
pub const DST_FEATURES: &[(&str, &str, &str)] = &[
    (
        "dst_packets",
        "packets",
        "Forward-direction packets that reached the service in the interval.",
    ),
    (
        "dst_bytes",
        "bytes",
        "Forward-direction frame bytes that reached the service.",
    ),
    (
        "dst_flows",
        "flows",
        "Flows to the service that started in the interval.",
    ),
    (
        "dst_syn_flows",
        "flows",
        "Of those, flows started with a bare SYN.",
    ),
    (
        "dst_syn_unanswered",
        "flows",
        "Bare-SYN flows the service has not answered.",
    ),
    (
        "dst_distinct_srcs",
        "hosts",
        "Estimated distinct source addresses of its flows (512-bit sketch).",
    ),
    (
        "dst_active_s",
        "s",
        "Seconds from the first to the last packet in the interval.",
    ),
    ("dst_packets_per_s", "packets/s", "dst_packets / interval length."),
    ("dst_flows_per_s", "flows/s", "dst_flows / interval length."),
];

/// Features of one source over an interval of `interval_s` seconds.
pub fn src_features(s: &SrcStats, interval_s: f64) -> Vec<f64> {
    let iv = interval_s.max(1e-3);
    vec![
        s.packets as f64,
        s.bytes as f64,
        s.flows as f64,
        s.syn_flows as f64,
        s.syn_flows.saturating_sub(s.syn_answered) as f64,
        sketch_estimate(&s.port_sketch),
        sketch_estimate(&s.host_sketch),
        s.last_ns.saturating_sub(s.first_ns) as f64 / 1e9,
        s.packets as f64 / iv,
        s.flows as f64 / iv,
    ]
}

/// Features of one destination service over an interval of `interval_s` seconds.
pub fn dst_features(d: &DstStats, interval_s: f64) -> Vec<f64> {
    let iv = interval_s.max(1e-3);
    vec![
        d.packets as f64,
        d.bytes as f64,
        d.flows as f64,
        d.syn_flows as f64,
        d.syn_flows.saturating_sub(d.syn_answered) as f64,
        sketch_estimate(&d.src_sketch),
        d.last_ns.saturating_sub(d.first_ns) as f64 / 1e9,
        d.packets as f64 / iv,
        d.flows as f64 / iv,
    ]
}

/// The address of a source key.
pub fn src_addr(k: &HostKey) -> IpAddr {
    addr(k.family, &k.addr)
}

/// The address of a destination key.
pub fn dst_addr(k: &DstKey) -> IpAddr {
    addr(k.family, &k.addr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vectors_match_their_schemas() {
        assert_eq!(src_features(&SrcStats::default(), 1.0).len(), SRC_FEATURES.len());
        assert_eq!(dst_features(&DstStats::default(), 1.0).len(), DST_FEATURES.len());
    }

    #[test]
    fn features_md_documents_every_aggregate() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("FEATURES.md");
        let doc = std::fs::read_to_string(path).unwrap();
        for (name, unit, _) in SRC_FEATURES.iter().chain(DST_FEATURES) {
            let row = format!("| `{name}` | {unit} |");
            assert!(
                doc.contains(&row),
                "FEATURES.md lacks the row for {name} ({unit})"
            );
        }
    }

    #[test]
    fn addresses_round_trip() {
        assert_eq!(addr(4, &[0xc612_0001, 0, 0, 0]).to_string(), "198.18.0.1");
        assert_eq!(addr(6, &[0x2001_0db8, 0, 0, 1]).to_string(), "2001:db8::1");
        let k = HostKey {
            addr: [0xc612_0001, 0, 0, 0],
            family: 4,
            _pad: [0; 3],
        };
        assert_eq!(src_addr(&k).to_string(), "198.18.0.1");
    }

    #[test]
    fn unanswered_syns_and_rates() {
        let s = SrcStats {
            packets: 100,
            flows: 50,
            syn_flows: 40,
            syn_answered: 10,
            first_ns: 1_000_000_000,
            last_ns: 3_000_000_000,
            ..SrcStats::default()
        };
        let f = src_features(&s, 5.0);
        assert_eq!(f[4], 30.0);
        assert_eq!(f[7], 2.0);
        assert_eq!((f[8], f[9]), (20.0, 10.0));
    }
}
