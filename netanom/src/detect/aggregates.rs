//! Findings from one drain interval of aggregates. Each rate has a learned normal level (a
//! decaying running p99.9 of what normal entities did) and a floor; an entity exceeds it when
//! its rate is above both the floor and `learned_margin` × the learned level.
//!
//! Sources: packets/s sent in flows they started (answers to others do not count: a server
//! replying to a flood is not flooding), unanswered SYNs/s, distinct destination ports/s.
//! Destinations are judged in [`super::victims`]. While any finding is recent, nothing is
//! learned, so an attacker cannot teach the detector that the attack is normal.
use std::{collections::HashMap, net::IpAddr};

use netanom_common::{
    agg::{DstKey, DstStats, HostKey, SKETCH_WORDS, SrcStats, sketch_estimate},
    time::Instant,
};

use super::{
    detector::Detector,
    finding::{Finding, Subject},
    kind::Kind,
};
use crate::features::aggregates::{dst_addr, src_addr};

/// Fewest events (packets, ports, SYNs, sources) in one interval that can make a finding:
/// rates over a short interval are noisy, and a handful of packets is never an attack.
pub(super) const MIN_EVENTS: f64 = 32.0;
/// Shortest interval rates are computed over.
const MIN_INTERVAL_S: f64 = 0.1;

/// One source's rates over an interval (or the thresholds they are judged by).
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct SourceRates {
    /// Packets/s sent in flows it started.
    pub pps: f64,
    /// Unanswered SYNs/s.
    pub syn: f64,
    /// Distinct destination ports/s and hosts/s of the flows it started.
    pub ports: f64,
    pub hosts: f64,
}

/// The rates of entities judged normal in one interval, to learn from.
#[derive(Default)]
pub(super) struct Normal {
    pub sources: Vec<SourceRates>,
    /// Destination services, and hosts over their services: (sources/s, packets/s).
    pub services: Vec<(f64, f64)>,
    pub hosts: Vec<(f64, f64)>,
}

/// Per destination host: the estimated distinct sources whose flows reached it in the
/// interval (its services' source sketches together).
pub(super) type Inbound = HashMap<IpAddr, f64>;

fn inbound_sources(dst: &[(DstKey, DstStats)]) -> Inbound {
    let mut sketches: HashMap<IpAddr, [u64; SKETCH_WORDS]> = HashMap::new();
    for (k, d) in dst {
        let s = sketches.entry(dst_addr(k)).or_insert([0; SKETCH_WORDS]);
        for (a, b) in s.iter_mut().zip(&d.src_sketch) {
            *a |= *b;
        }
    }
    sketches
        .into_iter()
        .map(|(ip, s)| (ip, sketch_estimate(&s)))
        .collect()
}

/// Whether `ip`, which started flows to `hosts` distinct hosts, is answering rather than
/// sweeping: at least half as many sources reached it. A server that answers a spoofed flood
/// to closed ports with ICMP unreachables starts a flow to every spoofed address; a sweeper is
/// answered inside the flows it started, and nobody starts flows to it.
pub(super) fn answering(inbound: &Inbound, ip: IpAddr, hosts: f64) -> bool {
    inbound.get(&ip).is_some_and(|n| *n >= 0.5 * hosts)
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
        let inbound = inbound_sources(dst);
        let mut normal = Normal {
            sources: self.source_findings(iv, src, &inbound, &mut out),
            services: self.service_findings(iv, dst, &mut out),
            hosts: Vec::new(),
        };
        normal.hosts = self.spread_victims(iv, dst, &mut out);
        let found: Vec<std::net::IpAddr> = out
            .iter()
            .filter_map(|f| match f.subject {
                Subject::Source(ip) => Some(ip),
                Subject::Victim { .. } | Subject::Channel { .. } => None,
            })
            .collect();
        self.slow_findings(src, (&found, &inbound), !frozen, now, &mut out);
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
        inbound: &Inbound,
        out: &mut Vec<Finding>,
    ) -> Vec<SourceRates> {
        let margin = self.cfg.learned_margin;
        let t = SourceRates {
            pps: self.src_pps.threshold(margin),
            syn: self.src_syn.threshold(margin),
            ports: self.src_ports.threshold(margin),
            hosts: self.src_hosts.threshold(margin),
        };
        let mut normal = Vec::new();
        for (k, s) in src {
            let (n_syn, n_ports, n_hosts) = (
                s.syn_flows.saturating_sub(s.syn_answered) as f64,
                sketch_estimate(&s.port_sketch),
                sketch_estimate(&s.host_sketch),
            );
            // What it sent on its own initiative: answers (a victim's SYN-ACKs or RSTs to a
            // flood, a server's replies to its clients) are no flood from it.
            let r = SourceRates {
                pps: s.fwd_packets as f64 / iv,
                syn: n_syn / iv,
                ports: n_ports / iv,
                hosts: n_hosts / iv,
            };
            let ip = src_addr(k);
            let kind = if s.packets as f64 <= MIN_EVENTS {
                None
            } else if r.syn > t.syn && n_syn > MIN_EVENTS {
                Some((
                    Kind::SourceSynFlood,
                    format!(
                        "{:.0} unanswered SYNs/s from {ip} (threshold {:.0})",
                        r.syn, t.syn
                    ),
                ))
            } else if r.ports > t.ports && n_ports > MIN_EVENTS {
                Some((
                    Kind::SourceScan,
                    format!(
                        "{:.0} distinct destination ports/s from {ip} (threshold {:.0})",
                        r.ports, t.ports
                    ),
                ))
            } else if r.hosts > t.hosts && n_hosts > MIN_EVENTS && !answering(inbound, ip, n_hosts) {
                Some((
                    Kind::HostSweep,
                    format!(
                        "{:.0} distinct destination hosts/s from {ip}, {n_hosts:.0} in {iv:.1} s (threshold {:.0})",
                        r.hosts, t.hosts
                    ),
                ))
            } else if r.pps > t.pps {
                Some((
                    Kind::SourceFlood,
                    format!(
                        "{:.0} packets/s from {ip} in flows it started (threshold {:.0})",
                        r.pps, t.pps
                    ),
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
                        (self.src_pps.name.to_owned(), r.pps, t.pps),
                        (self.src_syn.name.to_owned(), r.syn, t.syn),
                        (self.src_ports.name.to_owned(), r.ports, t.ports),
                        (self.src_hosts.name.to_owned(), r.hosts, t.hosts),
                    ],
                    flow: None,
                }),
                None => normal.push(r),
            }
        }
        normal
    }

    /// Learns the rates of one interval in which nothing was found.
    fn learn(&mut self, n: &Normal) {
        for r in &n.sources {
            self.src_pps.learned.observe(r.pps);
            self.src_syn.learned.observe(r.syn);
            self.src_ports.learned.observe(r.ports);
            self.src_hosts.learned.observe(r.hosts);
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
