//! Findings from one drain interval of aggregates. Each rate has a learned normal level (a
//! decaying running p99.9 of what normal entities did) and a floor; an entity exceeds it when
//! its rate is above both the floor and `learned_margin` × the learned level.
//!
//! Sources: packets/s sent in flows they started (answers to others do not count: a server
//! replying to a flood is not flooding), unanswered SYNs/s, distinct destination ports/s.
//! Destinations are judged in [`super::victims`]. While any finding is recent, nothing is
//! learned, so an attacker cannot teach the detector that the attack is normal.
use netanom_common::{
    agg::{DstKey, DstStats, HostKey, SrcStats, sketch_estimate},
    time::Instant,
};

use super::{
    detector::Detector,
    finding::{Finding, Subject},
    kind::Kind,
};
use crate::features::aggregates::src_addr;

/// Fewest events (packets, ports, SYNs, sources) in one interval that can make a finding:
/// rates over a short interval are noisy, and a handful of packets is never an attack.
pub(super) const MIN_EVENTS: f64 = 32.0;
/// Shortest interval rates are computed over.
const MIN_INTERVAL_S: f64 = 0.1;

/// The rates of entities judged normal in one interval, to learn from.
#[derive(Default)]
pub(super) struct Normal {
    /// Sources: (packets/s, unanswered SYNs/s, distinct ports/s).
    pub sources: Vec<(f64, f64, f64)>,
    /// Destination services, and hosts over their services: (sources/s, packets/s).
    pub services: Vec<(f64, f64)>,
    pub hosts: Vec<(f64, f64)>,
}

impl Detector {
    /// Evaluates one drain interval of `interval_s` seconds of aggregates; returns sources and
    /// destinations over their thresholds.
    pub fn observe_aggregates(
        &mut self,
        interval_s: f64,
        src: &[(HostKey, SrcStats)],
        dst: &[(DstKey, DstStats)],
        now: Instant,
    ) -> Vec<Finding> {
        self.maybe_decay(now);
        let iv = interval_s.max(MIN_INTERVAL_S);
        let frozen = self.frozen(now);
        let mut out = Vec::new();
        let mut normal = Normal {
            sources: self.source_findings(iv, src, &mut out),
            services: self.service_findings(iv, dst, &mut out),
            hosts: Vec::new(),
        };
        normal.hosts = self.spread_victims(iv, dst, &mut out);
        if !out.is_empty() {
            self.mark(now);
        } else if !frozen {
            self.learn(&normal);
        }
        out
    }

    /// Sources over a threshold go to `out`; returns the rates of the others.
    fn source_findings(
        &self,
        iv: f64,
        src: &[(HostKey, SrcStats)],
        out: &mut Vec<Finding>,
    ) -> Vec<(f64, f64, f64)> {
        let margin = self.cfg.learned_margin;
        let (t_pps, t_syn, t_ports) = (
            self.src_pps.threshold(margin),
            self.src_syn.threshold(margin),
            self.src_ports.threshold(margin),
        );
        let mut normal = Vec::new();
        for (k, s) in src {
            let (n_syn, n_ports) = (
                s.syn_flows.saturating_sub(s.syn_answered) as f64,
                sketch_estimate(&s.port_sketch),
            );
            // What it sent on its own initiative: answers (a victim's SYN-ACKs or RSTs to a
            // flood, a server's replies to its clients) are no flood from it.
            let pps = s.fwd_packets as f64 / iv;
            let syn = n_syn / iv;
            let ports = n_ports / iv;
            let ip = src_addr(k);
            let kind = if s.packets as f64 <= MIN_EVENTS {
                None
            } else if syn > t_syn && n_syn > MIN_EVENTS {
                Some((
                    Kind::SourceSynFlood,
                    format!("{syn:.0} unanswered SYNs/s from {ip} (threshold {t_syn:.0})"),
                ))
            } else if ports > t_ports && n_ports > MIN_EVENTS {
                Some((
                    Kind::SourceScan,
                    format!("{ports:.0} distinct destination ports/s from {ip} (threshold {t_ports:.0})"),
                ))
            } else if pps > t_pps {
                Some((
                    Kind::SourceFlood,
                    format!("{pps:.0} packets/s from {ip} in flows it started (threshold {t_pps:.0})"),
                ))
            } else {
                None
            };
            match kind {
                Some((kind, reason)) => out.push(Finding {
                    kind,
                    subject: Subject::Source(ip),
                    reason,
                    rates: vec![
                        (self.src_pps.name.to_owned(), pps, t_pps),
                        (self.src_syn.name.to_owned(), syn, t_syn),
                        (self.src_ports.name.to_owned(), ports, t_ports),
                    ],
                    flow: None,
                }),
                None => normal.push((pps, syn, ports)),
            }
        }
        normal
    }

    /// Learns the rates of one interval in which nothing was found.
    fn learn(&mut self, n: &Normal) {
        for &(pps, syn, ports) in &n.sources {
            self.src_pps.learned.observe(pps);
            self.src_syn.learned.observe(syn);
            self.src_ports.learned.observe(ports);
        }
        for &(srcs, pps) in &n.services {
            self.dst_sources.learned.observe(srcs);
            self.dst_pps.learned.observe(pps);
        }
        for &(srcs, pps) in &n.hosts {
            self.host_sources.learned.observe(srcs);
            self.host_pps.learned.observe(pps);
        }
    }
}
