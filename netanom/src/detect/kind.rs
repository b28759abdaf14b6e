//! The kinds of finding, and the signature each is alerted under (EVE `signature_id`,
//! `signature`, `category`, `severity`).
use serde::Serialize;

/// What was detected; each kind has its own signature (the alert table in the README and in
/// the EVE module's docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// Enough of a source's recent flows were anomalous.
    AnomalousFlows,
    /// One flow scored above threshold.
    FlowAnomaly,
    /// A source sends far more packets or bytes than usual.
    SourceFlood,
    /// A source sends SYNs that are not answered.
    SourceSynFlood,
    /// A source contacts many destinations or ports.
    SourceScan,
    /// A destination receives a flood (many sources, or volume).
    VictimFlood,
    /// A rate limit toward a destination.
    RateLimit,
    /// Too many new blocks: mitigation falls back to observe mode.
    CircuitBreaker,
    /// A source opens many short connections to one service (password guessing, credential
    /// stuffing).
    BruteForce,
    /// A source reaches many hosts (a ping sweep, a horizontal scan of one port).
    HostSweep,
    /// A source scans ports or hosts slowly, below the per-interval rates, over minutes.
    SlowScan,
    /// An inside host's channel to a remote peer behaves like command-and-control.
    Beacon,
}

// The response counts findings per kind in telemetry, which cannot name this enum.
const _: () = assert!(Kind::ALL.len() == crate::telemetry::counters::FINDING_KINDS);

impl Kind {
    /// Every kind, in signature id order (and declaration order: [`Kind::index`]).
    pub const ALL: [Kind; 12] = [
        Kind::AnomalousFlows,
        Kind::FlowAnomaly,
        Kind::SourceFlood,
        Kind::SourceSynFlood,
        Kind::SourceScan,
        Kind::VictimFlood,
        Kind::RateLimit,
        Kind::CircuitBreaker,
        Kind::BruteForce,
        Kind::HostSweep,
        Kind::SlowScan,
        Kind::Beacon,
    ];

    /// The kind's position in [`Kind::ALL`] (and in the response's per-kind counters).
    pub const fn index(self) -> usize {
        self as usize
    }

    /// EVE `alert.signature_id`.
    pub const fn signature_id(self) -> u32 {
        match self {
            Kind::AnomalousFlows => 9_000_001,
            Kind::FlowAnomaly => 9_000_002,
            Kind::SourceFlood => 9_000_003,
            Kind::SourceSynFlood => 9_000_004,
            Kind::SourceScan => 9_000_005,
            Kind::VictimFlood => 9_000_006,
            Kind::RateLimit => 9_000_007,
            Kind::CircuitBreaker => 9_000_008,
            Kind::BruteForce => 9_000_009,
            Kind::HostSweep => 9_000_010,
            Kind::SlowScan => 9_000_011,
            Kind::Beacon => 9_000_012,
        }
    }

    /// EVE `alert.signature`.
    pub const fn signature(self) -> &'static str {
        match self {
            Kind::AnomalousFlows => "netanom: anomalous flows from source",
            Kind::FlowAnomaly => "netanom: anomalous flow",
            Kind::SourceFlood => "netanom: flood from source",
            Kind::SourceSynFlood => "netanom: SYN flood from source",
            Kind::SourceScan => "netanom: scan from source",
            Kind::VictimFlood => "netanom: destination under flood",
            Kind::RateLimit => "netanom: rate limit toward destination",
            Kind::CircuitBreaker => "netanom: mitigation circuit breaker tripped",
            Kind::BruteForce => "netanom: password guessing against a service",
            Kind::HostSweep => "netanom: sweep of many hosts from source",
            Kind::SlowScan => "netanom: slow scan from source",
            Kind::Beacon => "netanom: command-and-control beacon from inside host",
        }
    }

    /// EVE `alert.category` (Suricata's classification names where one fits).
    pub const fn category(self) -> &'static str {
        match self {
            Kind::AnomalousFlows | Kind::FlowAnomaly => "Anomalous traffic",
            Kind::SourceFlood | Kind::SourceSynFlood | Kind::VictimFlood | Kind::RateLimit => {
                "Attempted Denial of Service"
            }
            Kind::SourceScan | Kind::HostSweep | Kind::SlowScan => "Detection of a Network Scan",
            Kind::BruteForce => "Attempted User Privilege Gain",
            Kind::Beacon => "A Network Trojan was detected",
            Kind::CircuitBreaker => "Misc activity",
        }
    }

    /// EVE `alert.severity`: 1 = high, 2 = medium, 3 = low.
    pub const fn severity(self) -> u8 {
        match self {
            Kind::SourceFlood
            | Kind::SourceSynFlood
            | Kind::VictimFlood
            | Kind::BruteForce
            | Kind::Beacon => 1,
            Kind::AnomalousFlows
            | Kind::SourceScan
            | Kind::HostSweep
            | Kind::SlowScan
            | Kind::RateLimit
            | Kind::CircuitBreaker => 2,
            Kind::FlowAnomaly => 3,
        }
    }

    /// `netanom.kind`, e.g. `"source_syn_flood"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Kind::AnomalousFlows => "anomalous_flows",
            Kind::FlowAnomaly => "flow_anomaly",
            Kind::SourceFlood => "source_flood",
            Kind::SourceSynFlood => "source_syn_flood",
            Kind::SourceScan => "source_scan",
            Kind::VictimFlood => "victim_flood",
            Kind::RateLimit => "rate_limit",
            Kind::CircuitBreaker => "circuit_breaker",
            Kind::BruteForce => "brute_force",
            Kind::HostSweep => "host_sweep",
            Kind::SlowScan => "slow_scan",
            Kind::Beacon => "beacon",
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;

    #[test]
    fn kinds_have_distinct_signatures() {
        let mut ids: Vec<_> = Kind::ALL.iter().map(|k| k.signature_id()).collect();
        ids.dedup();
        assert_eq!(ids.len(), Kind::ALL.len());
        for k in Kind::ALL {
            assert!(k.signature().starts_with("netanom: "));
            assert!((1..=3).contains(&k.severity()));
            // as_str matches the serde name.
            assert_eq!(serde_json::to_value(k).unwrap(), Value::from(k.as_str()));
        }
    }
}
