//! Slow scans and sweeps: the per-interval rates (ports/s, hosts/s) miss a scanner that waits
//! between probes (nmap -T2 sends one every 0.4 s, -T1 one every 15 s). Per source, the
//! distinct destination ports and hosts of the flows it started are kept over two longer
//! windows, a minute and ten minutes, each with a floor (`detection.slow_ports_1m`, ...) and a
//! learned level of its own.
//!
//! A window is two half-window buckets of sketches (the kernel's 512-bit distinct-count
//! sketches, OR-ed interval after interval): the estimate covers between a half and a whole
//! window, and costs four sketches per window and source whatever the traffic. At most
//! `detection.slow_max_sources` sources are followed (sources idle for ten minutes go first;
//! beyond that, new sources wait for room).
use std::{collections::HashMap, net::IpAddr};

use netanom_common::{
    agg::{HostKey, SKETCH_WORDS, SrcStats, sketch_estimate},
    time::{Instant, NS_PER_S},
};

use super::{
    aggregates::{Inbound, answering},
    detector::Detector,
    finding::{Finding, Subject},
    kind::Kind,
    learned::Rate,
};
use crate::features::aggregates::src_addr;

type Sketch = [u64; SKETCH_WORDS];

/// The two windows, seconds, and their names in alerts and levels.
pub const WINDOWS: [(f64, &str); 2] = [(60.0, "1m"), (600.0, "10m")];

/// One window of one source: the current and the previous half-window.
#[derive(Clone, Debug, Default)]
struct Span {
    start_ns: u64,
    ports: [Sketch; 2],
    hosts: [Sketch; 2],
}

impl Span {
    /// Adds an interval's sketches at `now_ns`, first rolling the buckets when the current
    /// one is half a window old. Returns the estimate the rolled-out bucket pair had, to learn
    /// from, when it rolled.
    fn add(&mut self, s: &SrcStats, now_ns: u64, half_ns: u64) -> Option<(f64, f64)> {
        let mut rolled = None;
        if now_ns.saturating_sub(self.start_ns) >= half_ns {
            rolled = Some(self.estimate());
            if now_ns.saturating_sub(self.start_ns) >= 2 * half_ns {
                // Silent for a whole window: nothing of before counts.
                self.ports[1] = [0; SKETCH_WORDS];
                self.hosts[1] = [0; SKETCH_WORDS];
            } else {
                self.ports[1] = self.ports[0];
                self.hosts[1] = self.hosts[0];
            }
            self.ports[0] = [0; SKETCH_WORDS];
            self.hosts[0] = [0; SKETCH_WORDS];
            self.start_ns = now_ns;
        }
        for i in 0..SKETCH_WORDS {
            self.ports[0][i] |= s.port_sketch[i];
            self.hosts[0][i] |= s.host_sketch[i];
        }
        rolled
    }

    /// Distinct (ports, hosts) over both buckets.
    fn estimate(&self) -> (f64, f64) {
        let or = |b: &[Sketch; 2]| -> Sketch { std::array::from_fn(|i| b[0][i] | b[1][i]) };
        (
            sketch_estimate(&or(&self.ports)),
            sketch_estimate(&or(&self.hosts)),
        )
    }
}

/// One source followed over both windows.
#[derive(Clone, Debug, Default)]
pub(super) struct SlowSource {
    spans: [Span; 2],
    last_ns: u64,
    reported_until_ns: u64,
}

/// The followed sources and the learned levels (per window: distinct ports, distinct hosts).
#[derive(Debug)]
pub(super) struct SlowScans {
    sources: HashMap<IpAddr, SlowSource>,
    pub(super) levels: [[Rate; 2]; 2],
}

impl Default for SlowScans {
    fn default() -> Self {
        SlowScans {
            sources: HashMap::new(),
            levels: [
                [
                    Rate::new("slow_distinct_ports_1m", 0.0),
                    Rate::new("slow_distinct_hosts_1m", 0.0),
                ],
                [
                    Rate::new("slow_distinct_ports_10m", 0.0),
                    Rate::new("slow_distinct_hosts_10m", 0.0),
                ],
            ],
        }
    }
}

impl Detector {
    /// Adds one interval of source aggregates to the long windows; sources over a window's
    /// limits go to `out`, except those `skip` names (already found this interval).
    pub(super) fn slow_findings(
        &mut self,
        src: &[(HostKey, SrcStats)],
        (skip, inbound): (&[IpAddr], &Inbound),
        learn: bool,
        now: Instant,
        out: &mut Vec<Finding>,
    ) {
        let floors = [
            [self.cfg.slow_ports_1m, self.cfg.slow_hosts_1m],
            [self.cfg.slow_ports_10m, self.cfg.slow_hosts_10m],
        ];
        let margin = self.cfg.learned_margin;
        let max = self.cfg.slow_max_sources as usize;
        for (k, s) in src.iter().filter(|(_, s)| s.flows > 0) {
            let ip = src_addr(k);
            let slow = &mut self.slow;
            if !slow.sources.contains_key(&ip) && slow.sources.len() >= max {
                let cutoff = now
                    .mono_ns
                    .saturating_sub((WINDOWS[1].0 * NS_PER_S as f64) as u64);
                slow.sources.retain(|_, v| v.last_ns >= cutoff);
                if slow.sources.len() >= max {
                    continue;
                }
            }
            let entry = slow.sources.entry(ip).or_default();
            entry.last_ns = now.mono_ns;
            // An interval in which it was answering (see `answering`) adds no hosts.
            let mut s = *s;
            if answering(inbound, ip, sketch_estimate(&s.host_sketch)) {
                s.host_sketch = [0; SKETCH_WORDS];
            }
            let mut hit = None;
            for (w, (window_s, name)) in WINDOWS.iter().enumerate() {
                let half_ns = (window_s / 2.0 * NS_PER_S as f64) as u64;
                let t = [0, 1].map(|i| slow.levels[w][i].threshold_over(floors[w][i], margin));
                // A finished half-window teaches the level, unless it was itself over it.
                if let Some((p, h)) = entry.spans[w].add(&s, now.mono_ns, half_ns)
                    && learn
                    && p <= t[0]
                    && h <= t[1]
                {
                    slow.levels[w][0].learned.observe(p);
                    slow.levels[w][1].learned.observe(h);
                }
                let (ports, hosts) = entry.spans[w].estimate();
                for (i, (n, what)) in [(ports, "ports"), (hosts, "hosts")].into_iter().enumerate() {
                    if hit.is_none() && n > t[i] {
                        hit = Some((*window_s, *name, what, n, t[i], slow.levels[w][i].name));
                    }
                }
            }
            let Some((window_s, name, what, n, t, level)) = hit else {
                continue;
            };
            if skip.contains(&ip) || entry.reported_until_ns > now.mono_ns {
                continue;
            }
            entry.reported_until_ns = now.mono_ns + (window_s * NS_PER_S as f64) as u64;
            out.push(Finding {
                kind: Kind::SlowScan,
                subject: Subject::Source(ip),
                reason: format!(
                    "{n:.0} distinct destination {what} from {ip} within the last {name} \
                     (threshold {t:.0}), below the per-second rates"
                ),
                rates: vec![(level.to_owned(), n, t)],
                flow: None,
            });
        }
    }
}
