//! Every metric the agent exposes, registered in one `prometheus-client` registry.
//!
//! The families are grouped the way the data flows (traffic, flows, queue and drain, scoring,
//! response, info); each group registers its families and refreshes them from a
//! [`Snapshot`]. Labels come only from small fixed sets (protocol family and transport, parser
//! event, export path, drain stage, drop reason, response mode), from the loaded bundle's model
//! names, or from sets the operator bounds (interfaces); never an address or a port.
//!
//! **Counters are cumulative totals since the agent started.** Each mirrors a cumulative
//! source (the kernel's per-CPU counters, the drain's tallies, the stages' counters), so the
//! refresh stores the source's latest absolute value with `fetch_max`: a counter never goes
//! down between scrapes, even if a derived source (such as `evicted`) is momentarily lower than
//! a value already exposed. The histograms are observed where the work happens.
use std::time::Duration;

use prometheus_client::{encoding::text::encode, registry::Registry};

use super::{
    exposition::openmetrics_to_text,
    families::{
        BgpMetrics, DrainStage, FleetMetrics, FlowMetrics, InfoMetrics, QueueMetrics, ResponseMetrics,
        ScoringMetrics, TrafficMetrics,
    },
};
use crate::telemetry::{
    BundleInfo, InterfaceInfo, ResponseTotals, Snapshot, bgp::BgpTotals, fleet::FleetTotals,
};

/// Every metric the agent exposes, and the registry that encodes them.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    info: InfoMetrics,
    traffic: TrafficMetrics,
    flows: FlowMetrics,
    queue: QueueMetrics,
    scoring: ScoringMetrics,
    response: ResponseMetrics,
    /// Only with `[bgp]` on ([`Metrics::with_bgp`]).
    bgp: Option<BgpMetrics>,
    /// Only with `[fleet]` on ([`Metrics::with_fleet`]).
    fleet: Option<FleetMetrics>,
}

impl Metrics {
    /// Registers every metric. `flow_entries` is the flow table's size (for the fill ratio);
    /// `bundle`, when given, fills `netanom_model_bundle_info`.
    pub fn new(flow_entries: u32, bundle: Option<&BundleInfo>) -> Self {
        let mut r = Registry::with_prefix("netanom");
        let m = Self {
            info: InfoMetrics::register(&mut r),
            traffic: TrafficMetrics::register(&mut r),
            flows: FlowMetrics::register(&mut r, flow_entries),
            scoring: ScoringMetrics::register(&mut r),
            queue: QueueMetrics::register(&mut r),
            response: ResponseMetrics::register(&mut r),
            bgp: None,
            fleet: None,
            registry: r,
        };
        if let Some(b) = bundle {
            m.set_bundle(b);
        }
        m
    }

    /// Shows `bundle` in `netanom_model_bundle_info` (replacing the one shown before).
    pub fn set_bundle(&self, bundle: &BundleInfo) {
        self.info.set_bundle(bundle);
    }

    /// Records the interfaces the program is attached to (`netanom_xdp_attached_info`).
    pub fn set_attachments(&self, attachments: &[InterfaceInfo]) {
        self.info.set_attachments(attachments);
    }

    /// Refreshes the counters and gauges from a snapshot (the data the stats line shows) and
    /// the number of batches waiting in the queue.
    pub fn update(&self, s: &Snapshot, queued_batches: usize) {
        self.traffic.update(s);
        self.response.update_drops(s);
        self.flows.update(s);
        self.scoring.update(s);
        self.queue.update(s, queued_batches);
        self.info.touch(s.timestamp);
    }

    /// Refreshes the response's counters and gauges, and `netanom_mode_info` for the
    /// `configured` and `effective` modes (only the current pair is exposed).
    pub fn update_mitigation(&self, c: &ResponseTotals, configured: &'static str, effective: &'static str) {
        self.response.update(c, configured, effective);
    }

    /// Adds the BGP announcer's metrics (`[bgp]` on): without it they are not exposed at all,
    /// rather than at a misleading 0 (a speaker "down").
    pub fn with_bgp(mut self) -> Self {
        self.bgp = Some(BgpMetrics::register(&mut self.registry));
        self
    }

    /// Refreshes the BGP announcer's counters and gauges.
    pub fn update_bgp(&self, t: &BgpTotals) {
        if let Some(b) = &self.bgp {
            b.update(t);
        }
    }

    /// Adds the fleet's metrics (`[fleet]` on): without it they are not exposed at all.
    pub fn with_fleet(mut self) -> Self {
        self.fleet = Some(FleetMetrics::register(&mut self.registry));
        self
    }

    /// Refreshes the fleet's counters and gauges.
    pub fn update_fleet(&self, t: &FleetTotals) {
        if let Some(f) = &self.fleet {
            f.update(t);
        }
    }

    /// Records how long one unit of drain work took.
    pub fn observe_drain(&self, stage: DrainStage, took: Duration) {
        self.queue.observe_drain(stage, took);
    }

    /// Records how long scoring one batch took.
    pub fn observe_scoring(&self, took: Duration) {
        self.scoring.duration.observe(took.as_secs_f64());
    }

    /// The registry in the OpenMetrics text format (ends with `# EOF`).
    pub fn openmetrics(&self) -> String {
        let mut out = String::with_capacity(16 * 1024);
        // Only native-only histograms fail to encode, and there are none.
        if encode(&mut out, &self.registry).is_err() {
            out.clear();
            out.push_str("# EOF\n");
        }
        out
    }

    /// The registry in the classic Prometheus text format (version 0.0.4).
    pub fn text(&self) -> String {
        openmetrics_to_text(&self.openmetrics())
    }
}
