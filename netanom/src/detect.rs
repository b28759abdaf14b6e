//! Detection: turns scored flows and per-interval aggregates into findings about sources
//! (offenders) and destination services (victims).
//!
//! - Flows: a source is an offender when, within `detection.flow_window`, at least
//!   `min_anomalous_flows` of the flows it started were flagged by the ensemble and they are at
//!   least `min_anomalous_ratio` of its flows.
//! - Aggregates: each rate below has a learned normal level (a decaying running quantile,
//!   p99.9, of what normal entities did) and a floor; an entity exceeds it when its rate is
//!   above both the floor and `learned_margin` × the learned level. Sources: packets/s sent in
//!   flows they started (answers to others do not count: a server replying to a flood is not
//!   flooding), unanswered SYNs/s, distinct destination ports/s. Destination services: distinct
//!   sources/s and packets/s (floods from many, possibly spoofed, sources that each send
//!   little). Destination hosts: the same two rates over all the services of one address and
//!   protocol that were not victims themselves, for floods spread over many ports (UDP
//!   amplification: reflectors answer from one service port to random ports of the victim, so
//!   no single destination port stands out). Such a victim has no port pattern the kernel can
//!   rate-limit: it is reported, not limited.
//! - Model thresholds can be recalibrated online: per model, the same running quantile of the
//!   scores of flows judged normal replaces the bundle's threshold once enough flows were seen.
//!
//! While any finding is recent (an attack is in progress), nothing is learned, so an attacker
//! cannot teach the detector that the attack is normal.
use std::{
    collections::{HashMap, HashSet},
    net::IpAddr,
    time::{Duration, Instant},
};

use netanom_common::agg::{DstKey, DstStats, HostKey, SKETCH_WORDS, SrcStats, sketch_estimate};

use crate::{aggregates, alerts::Kind, config::DetectionConfig};

/// How long after the last finding learning stays frozen.
pub const FREEZE: Duration = Duration::from_secs(60);
/// Learned aggregate levels need this many normal observations before they count.
const MIN_AGG_SAMPLES: f64 = 200.0;
/// Fewest events (packets, ports, SYNs, sources) in one interval that can make a finding:
/// rates over a short interval are noisy, and a handful of packets is never an attack.
const MIN_EVENTS: f64 = 32.0;
/// Shortest interval rates are computed over.
const MIN_INTERVAL_S: f64 = 0.1;
/// Per-source flow windows kept at most (the oldest are dropped beyond).
const MAX_WINDOWS: usize = 200_000;

/// A running quantile over a log-binned histogram whose counts decay, so it follows recent
/// traffic. Bins: 16 per decade from 1e-6 to 1e10; values at or below 1e-6 share bin 0.
#[derive(Clone, Debug)]
pub struct Learned {
    counts: Vec<f64>,
    total: f64,
}

const BINS_PER_DECADE: f64 = 16.0;
const LOG_LO: f64 = -6.0;
const BINS: usize = 256;

impl Default for Learned {
    fn default() -> Self {
        Learned {
            counts: vec![0.0; BINS],
            total: 0.0,
        }
    }
}

impl Learned {
    fn bin(x: f64) -> usize {
        if x.is_nan() || x <= 1e-6 {
            return 0;
        }
        (((x.log10() - LOG_LO) * BINS_PER_DECADE).floor() as usize).min(BINS - 1)
    }

    pub fn observe(&mut self, x: f64) {
        if x.is_finite() {
            self.counts[Self::bin(x)] += 1.0;
            self.total += 1.0;
        }
    }

    /// Multiplies every count by `f` (0 < f ≤ 1): older observations weigh less.
    pub fn decay(&mut self, f: f64) {
        for c in &mut self.counts {
            *c *= f;
        }
        self.total *= f;
    }

    pub fn total(&self) -> f64 {
        self.total
    }

    /// The `q` quantile (the upper edge of its bin), or `None` below `min` observations.
    pub fn quantile(&self, q: f64, min: f64) -> Option<f64> {
        if self.total < min || self.total <= 0.0 {
            return None;
        }
        let target = q * self.total;
        let mut acc = 0.0;
        for (i, c) in self.counts.iter().enumerate() {
            acc += c;
            if acc >= target {
                return Some(10f64.powf(LOG_LO + (i as f64 + 1.0) / BINS_PER_DECADE));
            }
        }
        Some(10f64.powf(LOG_LO + BINS as f64 / BINS_PER_DECADE))
    }
}

/// One rate with a learned normal level and a floor.
#[derive(Clone, Debug)]
pub struct Rate {
    pub name: &'static str,
    pub floor: f64,
    pub learned: Learned,
}

impl Rate {
    fn new(name: &'static str, floor: f64) -> Rate {
        Rate {
            name,
            floor,
            learned: Learned::default(),
        }
    }

    /// The level above which a value is abnormal.
    pub fn threshold(&self, margin: f64) -> f64 {
        match self.learned.quantile(0.999, MIN_AGG_SAMPLES) {
            Some(q) => self.floor.max(margin * q),
            None => self.floor,
        }
    }
}

/// A 5-tuple and what the models said about one flow.
#[derive(Clone, Debug, PartialEq)]
pub struct FlowEvidence {
    pub src: IpAddr,
    pub src_port: u16,
    pub dst: IpAddr,
    pub dst_port: u16,
    pub proto: u8,
    /// (model name, score, threshold in force), ensemble last.
    pub scores: Vec<(String, f64, f64)>,
    /// (feature, value, contribution): the most unusual features of the flow.
    pub top_features: Vec<(String, f64, f64)>,
}

/// What detection concluded about one entity.
#[derive(Clone, Debug, PartialEq)]
pub enum Subject {
    /// A source address (an offender).
    Source(IpAddr),
    /// A destination service under a flood; `tcp_flags` is the flood's pattern (SYN for a SYN
    /// flood, 0 when unknown or not TCP).
    Victim {
        dst: IpAddr,
        port: u16,
        proto: u8,
        tcp_flags: u8,
        /// Whether the pattern is specific enough to rate-limit.
        limitable: bool,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub struct Finding {
    pub kind: Kind,
    pub subject: Subject,
    /// One line for people.
    pub reason: String,
    /// Aggregate rates of the entity (name → value), and the thresholds that applied.
    pub rates: Vec<(String, f64, f64)>,
    /// For flow-based findings: the most anomalous flow.
    pub flow: Option<FlowEvidence>,
}

#[derive(Clone, Debug, Default)]
struct Window {
    start: Option<Instant>,
    flows: u32,
    anomalous: u32,
    /// The highest-ensemble anomalous flow in the window.
    worst: Option<(f64, FlowEvidence)>,
    reported: bool,
}

/// Per-feature running mean and variance (Welford) over normal flows: how unusual a value is.
#[derive(Clone, Debug, Default)]
struct Moments {
    n: f64,
    mean: Vec<f64>,
    m2: Vec<f64>,
}

impl Moments {
    fn observe(&mut self, row: &[f64]) {
        if self.mean.len() != row.len() {
            *self = Moments {
                n: 0.0,
                mean: vec![0.0; row.len()],
                m2: vec![0.0; row.len()],
            };
        }
        self.n += 1.0;
        for (i, &x) in row.iter().enumerate() {
            if !x.is_finite() {
                continue;
            }
            let d = x - self.mean[i];
            self.mean[i] += d / self.n;
            self.m2[i] += d * (x - self.mean[i]);
        }
    }

    /// The `k` features of `row` farthest from normal, in standard deviations.
    fn top(&self, names: &[&str], row: &[f64], k: usize) -> Vec<(String, f64, f64)> {
        if self.n < 2.0 || self.mean.len() != row.len() {
            return Vec::new();
        }
        let mut z: Vec<(usize, f64)> = row
            .iter()
            .enumerate()
            .map(|(i, &x)| {
                let sd = (self.m2[i] / (self.n - 1.0)).sqrt();
                let d = (x - self.mean[i]).abs();
                (
                    i,
                    if sd > 1e-12 {
                        d / sd
                    } else if d > 1e-12 {
                        1e6
                    } else {
                        0.0
                    },
                )
            })
            .filter(|(_, z)| z.is_finite() && *z > 0.0)
            .collect();
        z.sort_by(|a, b| b.1.total_cmp(&a.1));
        z.into_iter()
            .take(k)
            .map(|(i, s)| (names.get(i).copied().unwrap_or("?").to_owned(), row[i], s))
            .collect()
    }
}

/// The detector's state.
pub struct Detector {
    cfg: DetectionConfig,
    windows: HashMap<IpAddr, Window>,
    pub src_pps: Rate,
    pub src_syn: Rate,
    pub src_ports: Rate,
    pub dst_sources: Rate,
    pub dst_pps: Rate,
    /// The destination rates summed over a host's services (floods spread over many ports).
    pub host_sources: Rate,
    pub host_pps: Rate,
    /// Per model: scores of normal flows, for online recalibration.
    model_scores: Vec<Learned>,
    moments: Moments,
    last_finding: Option<Instant>,
    last_decay: Instant,
}

/// Per-source flow rows handed to [`Detector::observe_flows`].
pub struct ScoredFlow<'a> {
    pub src: IpAddr,
    pub src_port: u16,
    pub dst: IpAddr,
    pub dst_port: u16,
    pub proto: u8,
    pub features: &'a [f64],
    /// Per model, then the ensemble: the scores, in the order of the `labels` handed to
    /// [`Detector::observe_flows`] with them.
    pub scores: Vec<f64>,
    pub ensemble: f64,
    pub anomaly: bool,
    /// The flow is an ICMP or ICMPv6 error message (see [`is_icmp_error`]): an answer to
    /// someone else's packet, not its sender's initiative. It never counts towards the
    /// sender's window (a host answering a flood to closed ports with unreachables is not an
    /// offender), nor is it learned as normal.
    pub icmp_error: bool,
}

/// Whether a flow of protocol `proto` whose first packet has ICMP type `icmp_type` is an
/// error message: destination unreachable, source quench, redirect, time exceeded, parameter
/// problem (ICMP); types below 128 (ICMPv6).
pub fn is_icmp_error(proto: u8, icmp_type: u8) -> bool {
    match proto {
        1 => matches!(icmp_type, 3 | 4 | 5 | 11 | 12),
        58 => icmp_type < 128,
        _ => false,
    }
}

impl Detector {
    pub fn new(cfg: DetectionConfig, models: usize) -> Detector {
        let mut d = Detector {
            windows: HashMap::new(),
            src_pps: Rate::new("src_initiated_packets_per_s", 0.0),
            src_syn: Rate::new("src_syn_unanswered_per_s", 0.0),
            src_ports: Rate::new("src_distinct_dst_ports_per_s", 0.0),
            dst_sources: Rate::new("dst_distinct_srcs_per_s", 0.0),
            dst_pps: Rate::new("dst_packets_per_s", 0.0),
            host_sources: Rate::new("dst_host_distinct_srcs_per_s", 0.0),
            host_pps: Rate::new("dst_host_packets_per_s", 0.0),
            model_scores: vec![Learned::default(); models],
            moments: Moments::default(),
            last_finding: None,
            last_decay: Instant::now(),
            cfg,
        };
        d.set_config(d.cfg.clone());
        d
    }

    /// Applies a (reloaded) configuration; what was learned is kept.
    pub fn set_config(&mut self, cfg: DetectionConfig) {
        self.src_pps.floor = cfg.src_pps;
        self.src_syn.floor = cfg.src_syn_rate;
        self.src_ports.floor = cfg.src_port_rate;
        self.dst_sources.floor = cfg.dst_sources;
        self.dst_pps.floor = cfg.dst_pps;
        self.host_sources.floor = cfg.dst_sources;
        self.host_pps.floor = cfg.dst_pps;
        self.cfg = cfg;
    }

    /// Whether an attack is in progress (a finding within [`FREEZE`]): learning is frozen.
    pub fn frozen(&self, now: Instant) -> bool {
        self.last_finding.is_some_and(|t| now.duration_since(t) < FREEZE)
    }

    fn mark(&mut self, now: Instant) {
        self.last_finding = Some(now);
    }

    /// Old observations fade with a half-life of about an hour.
    fn maybe_decay(&mut self, now: Instant) {
        let dt = now.duration_since(self.last_decay).as_secs_f64();
        if dt < 10.0 {
            return;
        }
        self.last_decay = now;
        let f = 0.5f64.powf(dt / 3600.0);
        for r in [
            &mut self.src_pps,
            &mut self.src_syn,
            &mut self.src_ports,
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

    /// Counts scored flows per source; returns offenders whose window crossed the limits.
    /// `labels` are (model name, threshold in force) for each entry of the flows' `scores`;
    /// `names` are the feature names of `features` (for the top contributing features).
    pub fn observe_flows(
        &mut self,
        flows: &[ScoredFlow<'_>],
        labels: &[(String, f64)],
        names: &[&str],
        now: Instant,
    ) -> Vec<Finding> {
        self.maybe_decay(now);
        let window = Duration::from_secs_f64(self.cfg.flow_window);
        let frozen = self.frozen(now);
        let mut out = Vec::new();
        for f in flows.iter().filter(|f| !f.icmp_error) {
            let w = self.windows.entry(f.src).or_default();
            if w.start.is_none_or(|s| now.duration_since(s) >= window) {
                *w = Window {
                    start: Some(now),
                    ..Window::default()
                };
            }
            w.flows += 1;
            if f.anomaly {
                w.anomalous += 1;
                if w.worst.as_ref().is_none_or(|(e, _)| f.ensemble > *e) {
                    let top = self
                        .moments
                        .top(names, f.features, crate::alerts::MAX_TOP_FEATURES);
                    w.worst = Some((
                        f.ensemble,
                        FlowEvidence {
                            src: f.src,
                            src_port: f.src_port,
                            dst: f.dst,
                            dst_port: f.dst_port,
                            proto: f.proto,
                            scores: labels
                                .iter()
                                .zip(&f.scores)
                                .map(|((n, t), s)| (n.clone(), *s, *t))
                                .collect(),
                            top_features: top,
                        },
                    ));
                }
            }
            let offending = w.anomalous >= self.cfg.min_anomalous_flows
                && f64::from(w.anomalous) >= self.cfg.min_anomalous_ratio * f64::from(w.flows);
            if offending && !w.reported {
                w.reported = true;
                out.push(Finding {
                    kind: Kind::AnomalousFlows,
                    subject: Subject::Source(f.src),
                    reason: format!(
                        "{} of {} flows from {} anomalous within {:.0} s",
                        w.anomalous, w.flows, f.src, self.cfg.flow_window
                    ),
                    rates: Vec::new(),
                    flow: w.worst.as_ref().map(|(_, e)| e.clone()),
                });
            }
            // Learn from flows judged normal: not from a source with anomalous flows in its
            // window, and not while an attack is in progress.
            if !frozen && w.anomalous == 0 {
                for (l, s) in self.model_scores.iter_mut().zip(&f.scores) {
                    l.observe(*s);
                }
                self.moments.observe(f.features);
            }
        }
        if self.windows.len() > MAX_WINDOWS {
            self.windows
                .retain(|_, w| w.start.is_some_and(|s| now.duration_since(s) < window));
        }
        if !out.is_empty() {
            self.mark(now);
        }
        out
    }

    /// Evaluates one drain interval of aggregates; returns sources and destination services
    /// over their thresholds.
    pub fn observe_aggregates(
        &mut self,
        interval_s: f64,
        src: &[(HostKey, SrcStats)],
        dst: &[(DstKey, DstStats)],
        now: Instant,
    ) -> Vec<Finding> {
        self.maybe_decay(now);
        let iv = interval_s.max(MIN_INTERVAL_S);
        let margin = self.cfg.learned_margin;
        let frozen = self.frozen(now);
        let mut out = Vec::new();
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
            let rates = vec![
                (self.src_pps.name.to_owned(), pps, t_pps),
                (self.src_syn.name.to_owned(), syn, t_syn),
                (self.src_ports.name.to_owned(), ports, t_ports),
            ];
            let ip = aggregates::src_addr(k);
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
                    rates,
                    flow: None,
                }),
                None => normal.push((pps, syn, ports)),
            }
        }
        let (t_srcs, t_dpps) = (self.dst_sources.threshold(margin), self.dst_pps.threshold(margin));
        let mut normal_dst = Vec::new();
        for (k, d) in dst {
            let n_srcs = sketch_estimate(&d.src_sketch);
            let srcs = n_srcs / iv;
            let pps = d.packets as f64 / iv;
            let ip = aggregates::dst_addr(k);
            // Many sources, or one destination flooded: a victim. A flood from one source is
            // also caught (and better stopped) at that source, so require several sources.
            let victim = is_victim(d.packets, n_srcs, (srcs, pps), (t_srcs, t_dpps));
            if !victim {
                normal_dst.push((srcs, pps));
                continue;
            }
            let syn_share = share(d.syn_flows, d.flows);
            let (tcp_flags, limitable) = match k.proto {
                6 if syn_share >= 0.5 => (0x02, true),
                6 => (0, false),
                _ => (0, true),
            };
            out.push(Finding {
                kind: Kind::VictimFlood,
                subject: Subject::Victim {
                    dst: ip,
                    port: k.port,
                    proto: k.proto,
                    tcp_flags,
                    limitable,
                },
                reason: format!(
                    "{srcs:.0} distinct sources/s and {pps:.0} packets/s to {ip} port {} (thresholds {t_srcs:.0} and {t_dpps:.0})",
                    k.port
                ),
                rates: vec![
                    (self.dst_sources.name.to_owned(), srcs, t_srcs),
                    (self.dst_pps.name.to_owned(), pps, t_dpps),
                ],
                flow: None,
            });
        }
        let normal_hosts = self.spread_victims(iv, dst, &mut out);
        if !out.is_empty() {
            self.mark(now);
        } else if !frozen {
            for (pps, syn, ports) in normal {
                self.src_pps.learned.observe(pps);
                self.src_syn.learned.observe(syn);
                self.src_ports.learned.observe(ports);
            }
            for (srcs, pps) in normal_dst {
                self.dst_sources.learned.observe(srcs);
                self.dst_pps.learned.observe(pps);
            }
            for (srcs, pps) in normal_hosts {
                self.host_sources.learned.observe(srcs);
                self.host_pps.learned.observe(pps);
            }
        }
        out
    }

    /// Floods spread over many ports of one host: sums, per destination address and protocol,
    /// the services of at least two ports that were not found victims themselves (in `out`),
    /// and adds a victim finding (port 0, not limitable) where the sum is over the host
    /// thresholds. Returns the (sources/s, packets/s) of the hosts judged normal.
    fn spread_victims(&self, iv: f64, dst: &[(DstKey, DstStats)], out: &mut Vec<Finding>) -> Vec<(f64, f64)> {
        #[derive(Default)]
        struct Host {
            packets: u64,
            flows: u64,
            syn_flows: u64,
            services: u32,
            sketch: [u64; SKETCH_WORDS],
        }
        let found: HashSet<(IpAddr, u16, u8)> = out
            .iter()
            .filter_map(|f| match f.subject {
                Subject::Victim { dst, port, proto, .. } => Some((dst, port, proto)),
                Subject::Source(_) => None,
            })
            .collect();
        // Keyed by (address, protocol); findings come in the order of `dst`.
        let mut order = Vec::new();
        let mut hosts: HashMap<(IpAddr, u8), Host> = HashMap::new();
        for (k, d) in dst {
            let ip = aggregates::dst_addr(k);
            if found.contains(&(ip, k.port, k.proto)) {
                continue;
            }
            let h = hosts.entry((ip, k.proto)).or_insert_with(|| {
                order.push((ip, k.proto));
                Host::default()
            });
            h.packets += d.packets;
            h.flows += d.flows;
            h.syn_flows += d.syn_flows;
            h.services += 1;
            for (a, b) in h.sketch.iter_mut().zip(&d.src_sketch) {
                *a |= *b;
            }
        }
        let margin = self.cfg.learned_margin;
        let (t_srcs, t_pps) = (
            self.host_sources.threshold(margin),
            self.host_pps.threshold(margin),
        );
        let mut normal = Vec::new();
        for (ip, proto) in order {
            let Some(h) = hosts.get(&(ip, proto)) else {
                continue;
            };
            if h.services < 2 {
                continue; // the same as its one service, already judged
            }
            let n_srcs = sketch_estimate(&h.sketch);
            let (srcs, pps) = (n_srcs / iv, h.packets as f64 / iv);
            let victim = is_victim(h.packets, n_srcs, (srcs, pps), (t_srcs, t_pps));
            if !victim {
                normal.push((srcs, pps));
                continue;
            }
            let syn_share = share(h.syn_flows, h.flows);
            out.push(Finding {
                kind: Kind::VictimFlood,
                subject: Subject::Victim {
                    dst: ip,
                    port: 0,
                    proto,
                    tcp_flags: if proto == 6 && syn_share >= 0.5 { 0x02 } else { 0 },
                    // The kernel's patterns name one destination port: none fits.
                    limitable: false,
                },
                reason: format!(
                    "{srcs:.0} distinct sources/s and {pps:.0} packets/s to {ip} spread over {} {} ports (thresholds {t_srcs:.0} and {t_pps:.0})",
                    h.services,
                    crate::alerts::proto_name(proto)
                ),
                rates: vec![
                    (self.host_sources.name.to_owned(), srcs, t_srcs),
                    (self.host_pps.name.to_owned(), pps, t_pps),
                ],
                flow: None,
            });
        }
        normal
    }
}

/// Whether a destination (a service, or a host over its services) is under a flood: enough
/// packets from enough sources, and a rate (sources/s, packets/s) above its threshold.
fn is_victim(packets: u64, n_srcs: f64, (srcs, pps): (f64, f64), (t_srcs, t_pps): (f64, f64)) -> bool {
    packets as f64 > MIN_EVENTS && n_srcs > MIN_EVENTS && (srcs > t_srcs || pps > t_pps)
}

/// `part / whole`, 0 when `whole` is 0.
fn share(part: u64, whole: u64) -> f64 {
    if whole > 0 {
        part as f64 / whole as f64
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use netanom_common::{agg, parse::FAMILY_V4};

    fn cfg() -> DetectionConfig {
        DetectionConfig::default()
    }

    fn host(a: [u8; 4]) -> HostKey {
        HostKey {
            addr: [u32::from_be_bytes(a), 0, 0, 0],
            family: FAMILY_V4,
            _pad: [0; 3],
        }
    }

    fn src_stats(packets: u64, syn: u64, answered: u64, ports: u16) -> SrcStats {
        let mut s = SrcStats {
            packets,
            fwd_packets: packets,
            syn_flows: syn,
            syn_answered: answered,
            ..SrcStats::default()
        };
        for p in 0..ports {
            agg::sketch_add(&mut s.port_sketch, u32::from(p));
        }
        s
    }

    #[test]
    fn learned_quantile_tracks_the_distribution() {
        let mut l = Learned::default();
        assert_eq!(l.quantile(0.5, 1.0), None);
        for i in 1..=1000 {
            l.observe(f64::from(i));
        }
        let q = l.quantile(0.5, 100.0).unwrap();
        assert!((450.0..=600.0).contains(&q), "{q}");
        let q = l.quantile(0.999, 100.0).unwrap();
        assert!((990.0..=1200.0).contains(&q), "{q}");
        l.decay(0.5);
        assert!((l.total() - 500.0).abs() < 1e-9);
        assert_eq!(l.quantile(0.5, 600.0), None);
    }

    #[test]
    fn floods_scans_and_syn_floods_are_told_apart_and_normal_sources_pass() {
        let mut d = Detector::new(cfg(), 3);
        let now = Instant::now();
        let src = [
            (host([198, 18, 0, 1]), src_stats(100, 2, 2, 2)),    // benign
            (host([198, 18, 0, 9]), src_stats(50_000, 0, 0, 1)), // UDP flood
            (host([198, 18, 0, 10]), src_stats(5_000, 2_000, 10, 1)), // SYN flood
            (host([198, 18, 0, 11]), src_stats(2_000, 500, 0, 1000)), // scan (below the SYN floor? no)
        ];
        let f = d.observe_aggregates(1.0, &src, &[], now);
        let kinds: Vec<_> = f
            .iter()
            .map(|f| match &f.subject {
                Subject::Source(ip) => (ip.to_string(), f.kind),
                _ => panic!(),
            })
            .collect();
        assert!(!kinds.iter().any(|(ip, _)| ip == "198.18.0.1"), "{kinds:?}");
        assert!(
            kinds.contains(&("198.18.0.9".into(), Kind::SourceFlood)),
            "{kinds:?}"
        );
        assert!(
            kinds.contains(&("198.18.0.10".into(), Kind::SourceSynFlood)),
            "{kinds:?}"
        );
        // 500 unanswered SYNs/s is over the SYN floor too: the SYN kind wins.
        assert!(kinds.iter().any(|(ip, _)| ip == "198.18.0.11"), "{kinds:?}");
        assert!(d.frozen(now));
    }

    #[test]
    fn learned_levels_raise_thresholds_above_the_floor() {
        let mut c = cfg();
        c.src_pps = 10.0;
        let mut d = Detector::new(c, 3);
        let t0 = Instant::now();
        // A site where normal sources send 1000 packets/s.
        let normal: Vec<_> = (0..250u8)
            .map(|i| (host([198, 18, 1, i]), src_stats(1000, 0, 0, 1)))
            .collect();
        assert!(
            !d.observe_aggregates(1.0, &normal, &[], t0).is_empty(),
            "floor only at first"
        );
        // Once learned (no attack in progress), 1000 packets/s is normal.
        let mut d = Detector::new(
            DetectionConfig {
                src_pps: 10.0,
                ..cfg()
            },
            3,
        );
        d.src_pps.learned = {
            let mut l = Learned::default();
            for _ in 0..1000 {
                l.observe(1000.0);
            }
            l
        };
        assert!(d.observe_aggregates(1.0, &normal, &[], t0).is_empty());
        assert!(d.src_pps.threshold(3.0) >= 3000.0);
    }

    #[test]
    fn spoofed_flood_is_a_victim_with_a_syn_pattern() {
        let mut d = Detector::new(cfg(), 3);
        let mut s = DstStats {
            packets: 20_000,
            flows: 5_000,
            syn_flows: 5_000,
            ..DstStats::default()
        };
        for i in 0..5_000u32 {
            agg::sketch_add(&mut s.src_sketch, i.wrapping_mul(2_654_435_761));
        }
        let k = DstKey {
            addr: [u32::from_be_bytes([198, 18, 1, 2]), 0, 0, 0],
            port: 80,
            proto: 6,
            family: FAMILY_V4,
        };
        let f = d.observe_aggregates(1.0, &[], &[(k, s)], Instant::now());
        assert_eq!(f.len(), 1);
        assert_eq!(
            f[0].subject,
            Subject::Victim {
                dst: "198.18.1.2".parse().unwrap(),
                port: 80,
                proto: 6,
                tcp_flags: 0x02,
                limitable: true
            }
        );
    }

    #[test]
    fn a_server_answering_a_flood_is_not_a_flooder() {
        let mut d = Detector::new(cfg(), 3);
        // 50,000 packets/s, all answers (RSTs to a SYN flood, replies to clients).
        let mut answering = src_stats(50_000, 0, 0, 0);
        answering.fwd_packets = 0;
        let f = d.observe_aggregates(1.0, &[(host([198, 18, 3, 2]), answering)], &[], Instant::now());
        assert!(f.is_empty(), "{f:?}");
        // The same volume on its own initiative is a flood.
        let f = d.observe_aggregates(
            1.0,
            &[(host([198, 18, 3, 2]), src_stats(50_000, 0, 0, 0))],
            &[],
            Instant::now(),
        );
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].kind, Kind::SourceFlood);
    }

    fn service(addr: [u8; 4], port: u16, proto: u8) -> DstKey {
        DstKey {
            addr: [u32::from_be_bytes(addr), 0, 0, 0],
            port,
            proto,
            family: FAMILY_V4,
        }
    }

    /// `packets` packets from `sources` distinct sources (numbered from `first`).
    fn service_stats(packets: u64, first: u32, sources: u32) -> DstStats {
        let mut s = DstStats {
            packets,
            flows: u64::from(sources),
            ..DstStats::default()
        };
        for i in first..first + sources {
            agg::sketch_add(&mut s.src_sketch, i.wrapping_mul(2_654_435_761));
        }
        s
    }

    #[test]
    fn a_flood_spread_over_many_ports_is_a_victim_without_a_pattern() {
        let mut d = Detector::new(cfg(), 3);
        let victim = [198, 18, 3, 2];
        // UDP amplification: 3,000 reflectors, one or two packets each, to 2,000 random ports.
        let mut dst: Vec<_> = (0..2_000u32)
            .map(|i| (service(victim, 1024 + i as u16, 17), service_stats(2, i * 3, 2)))
            .collect();
        // A benign service of another host, and the victim's own busy but normal TCP service.
        dst.push((service([198, 18, 1, 2], 53, 17), service_stats(40, 900_000, 10)));
        dst.push((service(victim, 8080, 6), service_stats(100, 800_000, 3)));
        let f = d.observe_aggregates(1.0, &[], &dst, Instant::now());
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].kind, Kind::VictimFlood);
        assert_eq!(
            f[0].subject,
            Subject::Victim {
                dst: "198.18.3.2".parse().unwrap(),
                port: 0,
                proto: 17,
                tcp_flags: 0,
                limitable: false
            }
        );
        assert!(
            f[0].reason.contains("spread over 2000 UDP ports"),
            "{}",
            f[0].reason
        );
        assert_eq!(f[0].rates[0].0, "dst_host_distinct_srcs_per_s");

        // A flood on one port is that service's finding (rate-limitable), not the host's
        // too; the host's other services are judged without it.
        let mut d = Detector::new(cfg(), 3);
        let dst = [
            (service(victim, 25565, 6), {
                let mut s = service_stats(20_000, 0, 5_000);
                s.syn_flows = 5_000;
                s
            }),
            (service(victim, 8080, 6), service_stats(100, 800_000, 3)),
            (service(victim, 8081, 6), service_stats(100, 800_100, 3)),
        ];
        let f = d.observe_aggregates(1.0, &[], &dst, Instant::now());
        assert_eq!(f.len(), 1, "{f:?}");
        assert!(matches!(
            f[0].subject,
            Subject::Victim {
                port: 25565,
                limitable: true,
                ..
            }
        ));
    }

    fn labels() -> Vec<(String, f64)> {
        vec![("autoencoder".into(), 1.0)]
    }

    fn flow<'a>(src: &str, anomaly: bool, features: &'a [f64]) -> ScoredFlow<'a> {
        ScoredFlow {
            src: src.parse().unwrap(),
            src_port: 1000,
            dst: "198.18.1.2".parse().unwrap(),
            dst_port: 80,
            proto: 6,
            features,
            scores: vec![if anomaly { 9.0 } else { 0.1 }],
            ensemble: if anomaly { 9.0 } else { 0.1 },
            anomaly,
            icmp_error: false,
        }
    }

    #[test]
    fn anomalous_flows_make_an_offender_once_and_a_few_do_not() {
        let mut d = Detector::new(cfg(), 1);
        let now = Instant::now();
        let x = [1.0, 2.0];
        // A benign source with an occasional false positive: 3 of 100.
        let benign: Vec<_> = (0..100).map(|i| flow("198.18.0.1", i % 33 == 0, &x)).collect();
        assert!(d.observe_flows(&benign, &labels(), &["a", "b"], now).is_empty());
        // An attacker: 20 of 20 anomalous; reported once.
        let bad: Vec<_> = (0..20).map(|_| flow("198.18.0.9", true, &x)).collect();
        let f = d.observe_flows(&bad, &labels(), &["a", "b"], now);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].subject, Subject::Source("198.18.0.9".parse().unwrap()));
        assert!(f[0].flow.is_some());
        assert!(d.observe_flows(&bad, &labels(), &["a", "b"], now).is_empty());
        assert!(d.frozen(now));
    }

    #[test]
    fn icmp_errors_are_answers_not_offences() {
        let mut d = Detector::new(cfg(), 1);
        let now = Instant::now();
        let x = [1.0, 2.0];
        // A server answering UDP to closed ports from 50 spoofed sources: 50 unreachables,
        // each its own (anomalous-looking) flow.
        let unreachables: Vec<_> = (0..50)
            .map(|_| ScoredFlow {
                proto: 1,
                icmp_error: true,
                ..flow("198.18.3.2", true, &x)
            })
            .collect();
        assert!(
            d.observe_flows(&unreachables, &labels(), &["a", "b"], now)
                .is_empty()
        );
        assert!(!d.frozen(now));
        assert!(is_icmp_error(1, 3) && is_icmp_error(1, 11) && is_icmp_error(58, 1));
        assert!(!is_icmp_error(1, 8) && !is_icmp_error(58, 128) && !is_icmp_error(17, 3));
    }

    #[test]
    fn recalibration_needs_enough_normal_flows_and_freezes_during_attacks() {
        let mut c = cfg();
        c.recalibrate_min_samples = 100;
        let mut d = Detector::new(c, 1);
        let t0 = Instant::now();
        let x = [1.0];
        let normal: Vec<_> = (0..99).map(|_| flow("198.18.0.1", false, &x)).collect();
        d.observe_flows(&normal, &labels(), &["a"], t0);
        assert_eq!(d.recalibrated(), vec![None]);
        d.observe_flows(&normal[..1], &labels(), &["a"], t0);
        let t = d.recalibrated()[0].unwrap();
        assert!((0.1..0.2).contains(&t), "{t}");
        // During an attack nothing is learned.
        let bad: Vec<_> = (0..20).map(|_| flow("198.18.0.9", true, &x)).collect();
        d.observe_flows(&bad, &labels(), &["a"], t0);
        let before = d.normal_flow_samples();
        d.observe_flows(&normal, &labels(), &["a"], t0);
        assert_eq!(d.normal_flow_samples(), before);
    }
}
