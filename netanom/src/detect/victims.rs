//! Destinations under a flood (victims). Destination services: distinct sources/s and
//! packets/s (floods from many, possibly spoofed, sources that each send little). Destination
//! hosts: the same two rates over all the services of one address and protocol that were not
//! victims themselves, for floods spread over many ports (UDP amplification: reflectors answer
//! from one service port to random ports of the victim, so no single destination port stands
//! out). Such a victim has no port pattern the kernel can rate-limit: it is reported, not
//! limited.
use std::{
    collections::{HashMap, HashSet},
    net::IpAddr,
};

use netanom_common::agg::{DstKey, DstStats, SKETCH_WORDS, sketch_estimate};

use super::{
    aggregates::MIN_EVENTS,
    detector::Detector,
    finding::{Finding, Subject},
    kind::Kind,
};
use crate::features::{aggregates::dst_addr, proto_name};

impl Detector {
    /// Destination services over a threshold go to `out`; returns the (sources/s, packets/s)
    /// of the others.
    pub(super) fn service_findings(
        &self,
        iv: f64,
        dst: &[(DstKey, DstStats)],
        out: &mut Vec<Finding>,
    ) -> Vec<(f64, f64)> {
        let margin = self.cfg.learned_margin;
        let (t_srcs, t_dpps) = (self.dst_sources.threshold(margin), self.dst_pps.threshold(margin));
        let mut normal = Vec::new();
        for (k, d) in dst {
            let n_srcs = sketch_estimate(&d.src_sketch);
            let srcs = n_srcs / iv;
            let pps = d.packets as f64 / iv;
            let ip = dst_addr(k);
            // Many sources, or one destination flooded: a victim. A flood from one source is
            // also caught (and better stopped) at that source, so require several sources.
            if !is_victim(d.packets, n_srcs, (srcs, pps), (t_srcs, t_dpps)) {
                normal.push((srcs, pps));
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
        normal
    }

    /// Floods spread over many ports of one host: sums, per destination address and protocol,
    /// the services of at least two ports that were not found victims themselves (in `out`),
    /// and adds a victim finding (port 0, not limitable) where the sum is over the host
    /// thresholds. Returns the (sources/s, packets/s) of the hosts judged normal.
    pub(super) fn spread_victims(
        &self,
        iv: f64,
        dst: &[(DstKey, DstStats)],
        out: &mut Vec<Finding>,
    ) -> Vec<(f64, f64)> {
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
                Subject::Source(_) | Subject::Channel { .. } => None,
            })
            .collect();
        // Keyed by (address, protocol); findings come in the order of `dst`.
        let mut order = Vec::new();
        let mut hosts: HashMap<(IpAddr, u8), Host> = HashMap::new();
        for (k, d) in dst {
            let ip = dst_addr(k);
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
                    proto_name(proto)
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
