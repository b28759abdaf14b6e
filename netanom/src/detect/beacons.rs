//! Command-and-control beacons: every ended TCP or UDP flow grows its channel's behavioural
//! letters ([`super::channels`]); a channel that grew in a batch and has at least
//! `detection.beacon_min_flows` flows is judged twice: its newest window is scored by the
//! sequence model, through [`WindowScorer`] (detection does not know how), and its newest
//! flows by the periodicity rule ([`super::periodicity`]). A channel over the model's
//! threshold, or regular enough, is a beacon: the inside host is the likely infected machine,
//! the peer its controller. Each channel is reported once.
//!
//! A channel is scored by the model once per batch however many flows it gained in it, and
//! once it is older only when it grew by an eighth since its last scoring: a busy channel (a
//! host's DNS queries to its resolver, thousands of flows) then costs a few dozen model runs
//! in all, not one per batch. The periodicity rule, cheap, looks at every growth.
//! Flows cut off by the agent's stop or a capture's end are left out: their size and duration
//! are not the flow's.
use netanom_common::{
    flow::{EndReason, FlowRecord},
    parse::{IPPROTO_TCP, IPPROTO_UDP},
    time::{Instant, NS_PER_S},
};

use super::{
    channels::{Channel, ChannelKey},
    detector::Detector,
    finding::{Finding, FlowEvidence, Subject},
    kind::Kind,
    periodicity::Regularity,
};
use crate::{features::identity::FlowIdentity, letters};

/// How detection has a channel's window scored: the sequence model, or a stand-in in tests.
pub trait WindowScorer {
    /// One P(C&C) per window of model indices ([`letters::SymbolWindow::indices_into`]).
    fn score_windows(&mut self, windows: &[&[i64]]) -> Result<Vec<f32>, String>;
    /// Characters of a window at most (the model's).
    fn max_len(&self) -> usize;
    /// The threshold the model's part recommends, when the configuration sets none.
    fn default_threshold(&self) -> f64;
}

/// Letters shown in a finding's reason at most (the newest).
const REASON_LETTERS: usize = 40;

impl Detector {
    /// Grows the channels of `records`' flows and judges the ones that grew: the sequence
    /// model through `scorer` (when the bundle has one) and the periodicity rule. A scoring
    /// failure is returned as an error; the channels keep their flows.
    pub fn observe_channels(
        &mut self,
        records: &[FlowRecord],
        scorer: Option<&mut dyn WindowScorer>,
        now: Instant,
    ) -> Result<Vec<Finding>, String> {
        let max_len = scorer.as_ref().map_or(letters::DEFAULT_WINDOW, |s| s.max_len());
        self.channels
            .set_bounds(self.cfg.beacon_max_channels as usize, max_len);
        let grown = self.grow_channels(records);
        if grown.is_empty() {
            return Ok(Vec::new());
        }
        // The model's turn comes when a channel grew by an eighth since it last scored it.
        let due: Vec<ChannelKey> = grown
            .iter()
            .copied()
            .filter(|k| self.channels.get(k).is_some_and(Channel::due))
            .collect();
        let (scores, threshold) = match scorer {
            Some(s) if !due.is_empty() => {
                let t = self.cfg.beacon_threshold.unwrap_or_else(|| s.default_threshold());
                (self.score_channels(&due, s)?, t)
            }
            _ => (Vec::new(), f64::INFINITY),
        };
        for k in &due {
            if let Some(c) = self.channels.get_mut(k) {
                c.scored();
            }
        }
        let mut out = Vec::new();
        for key in &grown {
            let score = due
                .binary_search(key)
                .ok()
                .and_then(|i| scores.get(i))
                .map(|s| f64::from(*s));
            if let Some(f) = self.judge_channel(key, score, threshold) {
                out.push(f);
            }
        }
        if !out.is_empty() {
            self.mark(now);
        }
        Ok(out)
    }

    /// Adds the batch's flows to their channels in start order (live batches come in hash
    /// order); returns the channels that grew, are old enough and not yet reported.
    fn grow_channels(&mut self, records: &[FlowRecord]) -> Vec<ChannelKey> {
        let mut flows: Vec<(ChannelKey, letters::Flow, u64, u16)> =
            records.iter().filter_map(channel_flow).collect();
        flows.sort_by(|a, b| a.2.cmp(&b.2).then(a.0.cmp(&b.0)));
        let mut grown: Vec<ChannelKey> = Vec::with_capacity(flows.len());
        for (key, flow, start_ns, src_port) in flows {
            self.channels.push(key, &flow, start_ns, src_port);
            grown.push(key);
        }
        grown.sort();
        grown.dedup();
        let min = u64::from(self.cfg.beacon_min_flows.max(1));
        grown.retain(|k| {
            self.channels
                .get(k)
                .is_some_and(|c| !c.reported && c.flows() >= min)
        });
        grown
    }

    /// The sequence model's score of each channel's newest window.
    fn score_channels(&self, keys: &[ChannelKey], scorer: &mut dyn WindowScorer) -> Result<Vec<f32>, String> {
        let windows: Vec<Vec<i64>> = keys
            .iter()
            .filter_map(|k| self.channels.get(k))
            .map(|c| {
                let mut w = Vec::with_capacity(c.window().len());
                c.window().indices_into(&mut w);
                w
            })
            .collect();
        let refs: Vec<&[i64]> = windows.iter().map(Vec::as_slice).collect();
        let scores = scorer.score_windows(&refs)?;
        if scores.len() != keys.len() {
            return Err(format!("{} scores for {} channels", scores.len(), keys.len()));
        }
        Ok(scores)
    }

    /// The finding about `key`, when the model's `score` is over `threshold` or its flows are
    /// regular enough; the channel is then reported (once).
    fn judge_channel(&mut self, key: &ChannelKey, score: Option<f64>, threshold: f64) -> Option<Finding> {
        let cfg = &self.cfg;
        let c = self.channels.get(key)?;
        let measured = c.recent().regularity();
        log::debug!(
            "channel {key:?}: {} flows, sequence score {score:?}, regularity {measured:?}",
            c.flows()
        );
        let regular = measured.filter(|r| {
            r.period_s >= cfg.beacon_min_period
                && r.gap_dispersion <= cfg.beacon_max_gap_dispersion
                && r.size_dispersion <= cfg.beacon_max_size_dispersion
        });
        let model_hit = score.is_some_and(|s| s > threshold);
        if !model_hit && regular.is_none() {
            return None;
        }
        let evidence = Evidence {
            score,
            threshold,
            model_hit,
            regular,
            min_flows: u64::from(cfg.beacon_min_flows),
            block_peer: cfg.block_beacon_peers,
        };
        let c = self.channels.get_mut(key)?;
        c.reported = true;
        Some(beacon_finding(key, c, &evidence))
    }

    /// Channels followed now, and dropped to make room since the start.
    pub fn channel_counts(&self) -> (usize, u64) {
        (self.channels.len(), self.channels.dropped)
    }
}

/// What made a channel a beacon.
struct Evidence {
    score: Option<f64>,
    threshold: f64,
    model_hit: bool,
    regular: Option<Regularity>,
    min_flows: u64,
    block_peer: bool,
}

/// The channel and letters input of one ended TCP or UDP flow (`None` for other protocols
/// and for flows cut off by a stop or a capture's end).
fn channel_flow(r: &FlowRecord) -> Option<(ChannelKey, letters::Flow, u64, u16)> {
    let id = FlowIdentity::of_record(r);
    if !matches!(id.protocol, IPPROTO_TCP | IPPROTO_UDP) || id.reason == Some(EndReason::Flush) {
        return None;
    }
    let v = &r.value;
    let key = ChannelKey {
        inside: id.src_ip,
        peer: id.dst_ip,
        port: id.dst_port,
        proto: id.protocol,
    };
    let flow = letters::Flow {
        start: v.first_ns as f64 / NS_PER_S as f64,
        duration: v.last_ns.saturating_sub(v.first_ns) as f64 / NS_PER_S as f64,
        bytes: v.fwd.frame_bytes + v.bwd.frame_bytes,
    };
    Some((key, flow, v.first_ns, id.src_port))
}

/// The beacon finding about channel `key`, with its evidence: the flows, their period, the
/// newest letters, the model's score beside its threshold and the regularity beside its
/// limits.
fn beacon_finding(key: &ChannelKey, c: &Channel, e: &Evidence) -> Finding {
    let flows = c.flows();
    let text = c.window().text();
    let tail = &text[text.len().saturating_sub(REASON_LETTERS)..];
    let mut why = Vec::new();
    if let Some(r) = e.regular {
        why.push(format!(
            "regular: one flow every {:.1} s (gap dispersion {:.2}), sizes alike (dispersion {:.2})",
            r.period_s, r.gap_dispersion, r.size_dispersion
        ));
    }
    match e.score {
        Some(s) if e.model_hit => why.push(format!("sequence model score {s:.3} > {:.3}", e.threshold)),
        Some(s) => why.push(format!("sequence model score {s:.3}")),
        None => {}
    }
    let reason = format!(
        "inside host {} (likely infected) beacons to {} port {}/{}: {flows} flows, letters \
         ...{tail}; {}",
        key.inside,
        key.peer,
        key.port,
        crate::features::identity::proto_name(key.proto).to_ascii_lowercase(),
        why.join("; "),
    );
    let mut rates = vec![("channel_flows".into(), flows as f64, e.min_flows as f64)];
    if let Some(r) = e.regular {
        rates.push(("channel_period_s".into(), r.period_s, 0.0));
        rates.push(("channel_gap_dispersion".into(), r.gap_dispersion, 0.0));
        rates.push(("channel_size_dispersion".into(), r.size_dispersion, 0.0));
    }
    Finding {
        kind: Kind::Beacon,
        subject: Subject::Channel {
            inside: key.inside,
            peer: key.peer,
            port: key.port,
            proto: key.proto,
            block_peer: e.block_peer,
        },
        reason,
        rates,
        flow: Some(FlowEvidence {
            src: key.inside,
            src_port: c.last_src_port,
            dst: key.peer,
            dst_port: key.port,
            proto: key.proto,
            scores: e
                .score
                .map(|s| ("sequence".to_owned(), s, e.threshold))
                .into_iter()
                .collect(),
            top_features: Vec::new(),
        }),
    }
}
