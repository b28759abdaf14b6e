//! `[datapath]`: the XDP program and its maps.
use serde::{Deserialize, Serialize};

/// Which XDP attach modes to try.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModePreference {
    /// Native (driver) mode, falling back to generic (skb) mode where the driver lacks it.
    #[default]
    Auto,
    /// Native mode only.
    Native,
    /// Generic (skb) mode only.
    Skb,
}

/// `[datapath]`: the XDP program and its maps.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatapathConfig {
    pub xdp_mode: ModePreference,
    /// Attach the TC egress classifier too.
    pub egress: bool,
    pub flow_table_size: u32,
    pub src_table_size: u32,
    pub dst_table_size: u32,
    /// A power of two, 4096 to 1 GiB.
    pub export_ring_bytes: u32,
    /// Seconds (0.001 to 86400).
    pub active_timeout: f64,
    /// Seconds (0.001 to 86400).
    pub idle_timeout: f64,
    /// Seconds (0.05 to 3600).
    pub sweep_interval: f64,
    /// Seconds (0.05 to 3600).
    pub aggregate_interval: f64,
}

impl DatapathConfig {
    /// The flow timeouts (the linger of closed flows is fixed), in nanoseconds.
    pub fn timeouts(&self) -> netanom_common::flow::FlowTimeouts {
        let ns = |s: f64| crate::pipeline::config::secs(s).as_nanos() as u64;
        netanom_common::flow::FlowTimeouts {
            active_ns: ns(self.active_timeout),
            idle_ns: ns(self.idle_timeout),
            ..netanom_common::flow::FlowTimeouts::DEFAULT
        }
    }
}

impl Default for DatapathConfig {
    fn default() -> Self {
        Self {
            xdp_mode: ModePreference::Auto,
            egress: true,
            flow_table_size: 262_144,
            src_table_size: 65_536,
            dst_table_size: 65_536,
            export_ring_bytes: 4 << 20,
            active_timeout: 120.0,
            idle_timeout: 30.0,
            sweep_interval: 1.0,
            aggregate_interval: 0.5,
        }
    }
}
