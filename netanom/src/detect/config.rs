//! `[detection]`: when a source is an offender, and online threshold recalibration.
use serde::{Deserialize, Serialize};

/// `[detection]`: when a source is an offender, and online threshold recalibration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DetectionConfig {
    /// What makes findings: the flow models, the per-source and per-destination aggregates.
    /// Turning one off is for measuring what the other adds (`cargo xtask scorecard`), or for
    /// silencing one while it is investigated.
    pub detectors: Vec<DetectorName>,
    /// Seconds over which a source's anomalous flows are counted (1 to 3600).
    pub flow_window: f64,
    /// A source is an offender when at least this many of its flows in the window are
    /// anomalous...
    pub min_anomalous_flows: u32,
    /// ...and they are at least this fraction of its flows (0 to 1).
    pub min_anomalous_ratio: f64,
    /// Floor, packets per second from one source.
    pub src_pps: f64,
    /// Floor, unanswered SYNs per second from one source.
    pub src_syn_rate: f64,
    /// Floor, distinct destination ports per second from one source.
    pub src_port_rate: f64,
    /// Floor, distinct destination hosts per second from one source (ping sweeps,
    /// horizontal scans).
    pub src_host_rate: f64,
    /// Floors of the slow-scan windows: distinct destination ports and hosts of the flows one
    /// source started within the last minute and ten minutes.
    pub slow_ports_1m: f64,
    pub slow_hosts_1m: f64,
    pub slow_ports_10m: f64,
    pub slow_hosts_10m: f64,
    /// Sources followed over the slow-scan windows at most.
    pub slow_max_sources: u32,
    /// Password guessing: the fast window, seconds, and the short, small connections to one
    /// service within it that make a finding...
    pub brute_window: f64,
    pub brute_min_connections: u32,
    /// ...or as few as this many when at least four were open at once (a tool's parallel
    /// tasks)...
    pub brute_parallel_connections: u32,
    /// ...and the slow window, seconds, with its own floor.
    pub brute_slow_window: f64,
    pub brute_slow_min_connections: u32,
    /// A connection is short when it ended within this many seconds...
    pub brute_short: f64,
    /// ...and small with at most this much payload, both ways, bytes.
    pub brute_small_bytes: u64,
    /// Short, small connections must be at least this share of the source's connections to
    /// the service (0 to 1).
    pub brute_min_share: f64,
    /// (Source, service) pairs followed at most.
    pub brute_max_pairs: u32,
    /// Beacons: a channel is judged once it has this many flows (the sequence model scores
    /// younger channels poorly: a handful of letters fits many a normal channel)...
    pub beacon_min_flows: u32,
    /// ...and is a beacon above this sequence model score (0 to 1). Unset: the bundle's
    /// operating point at the 95 % quantile of its validation normal channels.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub beacon_threshold: Option<f64>,
    /// The periodicity rule: a channel is a beacon when the median gap between its newest
    /// flows' starts is at least this many seconds...
    pub beacon_min_period: f64,
    /// ...the gaps' dispersion (MAD / median) at most this...
    pub beacon_max_gap_dispersion: f64,
    /// ...and the flow sizes' dispersion at most this.
    pub beacon_max_size_dispersion: f64,
    /// Channels followed at most; the least recently grown is dropped first.
    pub beacon_max_channels: u32,
    /// In mitigate mode, block a beacon's remote peer as a source, which cuts the channel at
    /// the gateway. Off: beacons are alerted on only (the inside host is never blocked: it is
    /// a victim, and blocking it would cut its user off).
    pub block_beacon_peers: bool,
    /// Floor, distinct sources per second hitting one destination service.
    pub dst_sources: f64,
    /// Floor, packets per second to one destination service.
    pub dst_pps: f64,
    /// An aggregate must exceed its learned normal level times this (>= 1).
    pub learned_margin: f64,
    pub recalibrate: bool,
    /// Quantile of recent normal scores used as the online threshold (0.5 to below 1).
    pub recalibrate_quantile: f64,
    /// Normal flow scores needed before an online threshold replaces the bundle's (>= 100).
    pub recalibrate_min_samples: u64,
}

/// One source of findings (`detection.detectors`, `--detectors`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum DetectorName {
    /// The flow models: `anomalous_flows` and `flow_anomaly` findings. Off, flows are not
    /// scored at all.
    Models,
    /// Counting rules with learned levels: `source_flood`, `source_syn_flood`, `source_scan`,
    /// `host_sweep`, `slow_scan` and `victim_flood` from the aggregates (and the rate limits
    /// they lead to), `brute_force` from ended connections.
    Aggregates,
    /// The sequence model over each channel's behavioural letters: `beacon` findings. Needs
    /// a bundle with a sequence part (the embedded one has it).
    Beacons,
}

impl DetectorName {
    /// Every detector, in documentation order.
    pub const ALL: [DetectorName; 3] = [
        DetectorName::Models,
        DetectorName::Aggregates,
        DetectorName::Beacons,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            DetectorName::Models => "models",
            DetectorName::Aggregates => "aggregates",
            DetectorName::Beacons => "beacons",
        }
    }
}

impl DetectionConfig {
    /// Whether `d` is on.
    pub fn uses(&self, d: DetectorName) -> bool {
        self.detectors.contains(&d)
    }
}

impl Default for DetectionConfig {
    fn default() -> Self {
        Self {
            detectors: DetectorName::ALL.to_vec(),
            flow_window: 10.0,
            min_anomalous_flows: 10,
            min_anomalous_ratio: 0.5,
            src_pps: 2000.0,
            src_syn_rate: 200.0,
            src_port_rate: 100.0,
            src_host_rate: 50.0,
            slow_ports_1m: 30.0,
            slow_hosts_1m: 100.0,
            slow_ports_10m: 60.0,
            slow_hosts_10m: 250.0,
            slow_max_sources: 20_000,
            brute_window: 30.0,
            brute_min_connections: 10,
            brute_parallel_connections: 4,
            brute_slow_window: 300.0,
            brute_slow_min_connections: 30,
            brute_short: 15.0,
            brute_small_bytes: 16_384,
            brute_min_share: 0.8,
            brute_max_pairs: 20_000,
            beacon_min_flows: 10,
            beacon_threshold: None,
            beacon_min_period: 2.0,
            beacon_max_gap_dispersion: 0.2,
            beacon_max_size_dispersion: 0.1,
            beacon_max_channels: 50_000,
            block_beacon_peers: false,
            dst_sources: 200.0,
            dst_pps: 5000.0,
            learned_margin: 3.0,
            recalibrate: true,
            recalibrate_quantile: 0.999,
            recalibrate_min_samples: 5000,
        }
    }
}
