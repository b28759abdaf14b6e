//! The detector's state: the flow windows per source, the learned levels of every aggregate
//! rate and of every model's normal scores, and the freeze that stops learning while an attack
//! is in progress. What it concludes from flows is in [`super::flows`], from aggregates in
//! [`super::aggregates`].
use std::{collections::HashMap, net::IpAddr};

use netanom_common::time::{Instant, NS_PER_S};

use crate::letters;

use super::{
    channels::Channels,
    config::DetectionConfig,
    finding::FlowEvidence,
    learned::{Learned, Rate},
    moments::Moments,
    services::{Access, ServiceLevels},
    slow::SlowScans,
};

/// How long after the last finding learning stays frozen, nanoseconds.
pub const FREEZE_NS: u64 = 60 * NS_PER_S;
/// Old observations fade with this half-life, seconds.
const HALF_LIFE_S: f64 = 3600.0;
/// Decay is applied at most this often, nanoseconds.
const DECAY_EVERY_NS: u64 = 10 * NS_PER_S;

/// One source's flows within the current window.
#[derive(Clone, Debug, Default)]
pub struct Window {
    pub(super) start: Option<Instant>,
    pub(super) flows: u32,
    pub(super) anomalous: u32,
    /// The highest-ensemble anomalous flow in the window.
    pub(super) worst: Option<(f64, FlowEvidence)>,
    pub(super) reported: bool,
}

/// The detector's state.
pub struct Detector {
    pub(super) cfg: DetectionConfig,
    pub(super) windows: HashMap<IpAddr, Window>,
    pub src_pps: Rate,
    pub src_syn: Rate,
    pub src_ports: Rate,
    pub src_hosts: Rate,
    pub dst_sources: Rate,
    pub dst_pps: Rate,
    /// The destination rates summed over a host's services (floods spread over many ports).
    pub host_sources: Rate,
    pub host_pps: Rate,
    /// Per model: scores of normal flows, for online recalibration.
    pub(super) model_scores: Vec<Learned>,
    pub(super) moments: Moments,
    last_finding: Option<Instant>,
    /// When the learned levels were last decayed (the first observation starts the clock).
    last_decay: Option<Instant>,
    /// Per (source, destination, port): recent connections ([`super::services`]).
    pub(super) access: HashMap<(IpAddr, IpAddr, u16), Access>,
    pub(super) services: ServiceLevels,
    /// Sources over the long windows ([`super::slow`]).
    pub(super) slow: SlowScans,
    /// Channels and their letters ([`super::beacons`]).
    pub(super) channels: Channels,
}

impl Detector {
    /// A detector with nothing learned, for a bundle of `models` models.
    pub fn new(cfg: DetectionConfig, models: usize) -> Detector {
        let mut d = Detector {
            windows: HashMap::new(),
            src_pps: Rate::new("src_initiated_packets_per_s", 0.0),
            src_syn: Rate::new("src_syn_unanswered_per_s", 0.0),
            src_ports: Rate::new("src_distinct_dst_ports_per_s", 0.0),
            src_hosts: Rate::new("src_distinct_dst_hosts_per_s", 0.0),
            dst_sources: Rate::new("dst_distinct_srcs_per_s", 0.0),
            dst_pps: Rate::new("dst_packets_per_s", 0.0),
            host_sources: Rate::new("dst_host_distinct_srcs_per_s", 0.0),
            host_pps: Rate::new("dst_host_packets_per_s", 0.0),
            model_scores: vec![Learned::default(); models],
            moments: Moments::default(),
            last_finding: None,
            last_decay: None,
            access: HashMap::new(),
            services: ServiceLevels::default(),
            slow: SlowScans::default(),
            channels: Channels::new(cfg.beacon_max_channels as usize, letters::DEFAULT_WINDOW),
            cfg,
        };
        d.set_config(d.cfg.clone());
        d
    }

    /// The configuration in force.
    pub fn config(&self) -> &DetectionConfig {
        &self.cfg
    }

    /// Applies a (reloaded) configuration; what was learned is kept.
    pub fn set_config(&mut self, cfg: DetectionConfig) {
        self.src_pps.floor = cfg.src_pps;
        self.src_syn.floor = cfg.src_syn_rate;
        self.src_ports.floor = cfg.src_port_rate;
        self.src_hosts.floor = cfg.src_host_rate;
        self.dst_sources.floor = cfg.dst_sources;
        self.dst_pps.floor = cfg.dst_pps;
        self.host_sources.floor = cfg.dst_sources;
        self.host_pps.floor = cfg.dst_pps;
        self.cfg = cfg;
    }

    /// Whether an attack is in progress (a finding within [`FREEZE_NS`]): learning is frozen.
    pub fn frozen(&self, now: Instant) -> bool {
        self.last_finding.is_some_and(|t| now.since_ns(t) < FREEZE_NS)
    }

    pub(super) fn mark(&mut self, now: Instant) {
        self.last_finding = Some(now);
    }

    /// Old observations fade with a half-life of about an hour.
    pub(super) fn maybe_decay(&mut self, now: Instant) {
        let Some(last) = self.last_decay else {
            self.last_decay = Some(now);
            return;
        };
        if now.since_ns(last) < DECAY_EVERY_NS {
            return;
        }
        self.last_decay = Some(now);
        let f = 0.5f64.powf(now.since_s(last) / HALF_LIFE_S);
        for r in [
            &mut self.src_pps,
            &mut self.src_syn,
            &mut self.src_ports,
            &mut self.src_hosts,
            &mut self.dst_sources,
            &mut self.dst_pps,
            &mut self.host_sources,
            &mut self.host_pps,
        ] {
            r.learned.decay(f);
        }
        for l in &mut self.model_scores {
            l.decay(f);
        }
        for r in self.services.all().chain(self.slow.levels.iter_mut().flatten()) {
            r.learned.decay(f);
        }
    }

    /// Online thresholds per model (`None` where not enough normal flows were seen yet, or
    /// recalibration is off).
    pub fn recalibrated(&self) -> Vec<Option<f64>> {
        self.model_scores
            .iter()
            .map(|l| {
                self.cfg
                    .recalibrate
                    .then(|| {
                        l.quantile(
                            self.cfg.recalibrate_quantile,
                            self.cfg.recalibrate_min_samples as f64,
                        )
                    })
                    .flatten()
            })
            .collect()
    }

    /// Normal flow scores observed per model so far (decayed).
    pub fn normal_flow_samples(&self) -> f64 {
        self.model_scores.first().map_or(0.0, Learned::total)
    }
}
