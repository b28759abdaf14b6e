//! Findings from scored flows: a source is an offender when, within `detection.flow_window`,
//! at least `min_anomalous_flows` of the flows it started were flagged by the ensemble and
//! they are at least `min_anomalous_ratio` of its flows. Flows judged normal teach the online
//! thresholds and the per-feature moments.
use std::{collections::HashSet, net::IpAddr};

use netanom_common::time::{Instant, secs_to_ns};

use super::{
    detector::{Detector, Window},
    finding::{Finding, FlowEvidence, MAX_TOP_FEATURES, Subject},
    kind::Kind,
};

/// Per-source flow windows kept at most (the oldest are dropped beyond).
const MAX_WINDOWS: usize = 200_000;

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
        let window_ns = secs_to_ns(self.cfg.flow_window);
        let frozen = self.frozen(now);
        let mut out = Vec::new();
        // Judged once the whole batch is counted, so that the order in which a batch's flows
        // come (the kernel's hash order live, time order on a capture) cannot change whether
        // a source crosses the limits.
        let (mut touched, mut seen): (Vec<IpAddr>, HashSet<IpAddr>) = Default::default();
        for f in flows.iter().filter(|f| !f.icmp_error) {
            let evidence =
                |m: &Self| flow_evidence(f, labels, m.moments.top(names, f.features, MAX_TOP_FEATURES));
            let w = self.windows.entry(f.src).or_default();
            if w.start.is_none_or(|s| now.since_ns(s) >= window_ns) {
                *w = Window {
                    start: Some(now),
                    ..Window::default()
                };
            }
            w.flows += 1;
            let worse = f.anomaly && w.worst.as_ref().is_none_or(|(e, _)| f.ensemble > *e);
            if f.anomaly {
                w.anomalous += 1;
            }
            if worse {
                let e = evidence(self);
                let w = self.windows.get_mut(&f.src).expect("entered above");
                w.worst = Some((f.ensemble, e));
            }
            if seen.insert(f.src) {
                touched.push(f.src);
            }
            // Learn from flows judged normal: not from a source with anomalous flows in its
            // window, and not while an attack is in progress.
            let clean = self.windows.get(&f.src).is_some_and(|w| w.anomalous == 0);
            if !frozen && clean {
                for (l, s) in self.model_scores.iter_mut().zip(&f.scores) {
                    l.observe(*s);
                }
                self.moments.observe(f.features);
            }
        }
        out.extend(touched.into_iter().filter_map(|src| self.offence(src)));
        if self.windows.len() > MAX_WINDOWS {
            self.windows
                .retain(|_, w| w.start.is_some_and(|s| now.since_ns(s) < window_ns));
        }
        if !out.is_empty() {
            self.mark(now);
        }
        out
    }

    /// The finding about `src` the first time its window crosses both limits.
    fn offence(&mut self, src: IpAddr) -> Option<Finding> {
        let (min_flows, min_ratio, window_s) = (
            self.cfg.min_anomalous_flows,
            self.cfg.min_anomalous_ratio,
            self.cfg.flow_window,
        );
        let w = self.windows.get_mut(&src)?;
        let offending = w.anomalous >= min_flows && f64::from(w.anomalous) >= min_ratio * f64::from(w.flows);
        if !offending || w.reported {
            return None;
        }
        w.reported = true;
        Some(Finding {
            kind: Kind::AnomalousFlows,
            subject: Subject::Source(src),
            reason: format!(
                "{} of {} flows from {src} anomalous within {window_s:.0} s",
                w.anomalous, w.flows
            ),
            rates: Vec::new(),
            flow: w.worst.as_ref().map(|(_, e)| e.clone()),
        })
    }
}

/// The evidence an alert shows about flow `f`: its 5-tuple, each model's score beside the
/// threshold in force, and its most unusual features.
fn flow_evidence(f: &ScoredFlow<'_>, labels: &[(String, f64)], top: Vec<(String, f64, f64)>) -> FlowEvidence {
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
    }
}
