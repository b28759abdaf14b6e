//! The scoring stage: every batch from the drain (or the capture reader) through the models,
//! detection and the response, in that order. The live agent runs it on a thread of its own
//! behind the queue; a capture replay calls it directly, in capture time.
use std::{sync::Arc, time::Instant as WallInstant};

use netanom_common::{flow::FlowRecord, time::Instant};

use super::{batch::Batch, config::Config, reload::Reload, scoring};
use crate::{
    detect::{Detector, DetectorName, WindowScorer},
    features,
    model::{Scorer, SequenceModel},
    respond::{AlertContext, AlertSink, Enforcer, Responder, allowlist},
    sinks::{CsvSink, metrics::Metrics},
    telemetry::{ResponseCounters, ScoreTally},
};

/// What the response acts through and reports to.
pub struct ResponseWiring {
    pub enforcer: Box<dyn Enforcer>,
    pub alerts: Box<dyn AlertSink>,
    pub ctx: AlertContext,
    pub counters: Arc<ResponseCounters>,
}

/// Model, detector, responder, and what they report.
pub struct Stage {
    pub scorer: Scorer,
    /// The bundle's own thresholds (recalibration starts from, and falls back to, these).
    pub bundle_thresholds: Vec<f64>,
    pub detector: Detector,
    pub responder: Responder,
    pub tally: Arc<ScoreTally>,
    /// Scoring latency goes here, when metrics are served.
    pub metrics: Option<Arc<Metrics>>,
    /// `--flows-out`: every ended flow's features.
    pub flows_out: Option<CsvSink<Box<dyn std::io::Write + Send>>>,
    pub recalibrate: bool,
    /// The beacon model, when the bundle has one.
    pub sequence: Option<SequenceModel>,
    rows: Vec<f32>,
    failed_once: bool,
    /// The sequence model's failures are logged once too, apart from the flow models'.
    channels_failed_once: bool,
}

impl Stage {
    pub fn new(scorer: Scorer, detector: Detector, responder: Responder, tally: Arc<ScoreTally>) -> Stage {
        tally.declare(
            scorer
                .model_names()
                .iter()
                .map(String::as_str)
                .chain([scoring::ENSEMBLE]),
        );
        Stage {
            bundle_thresholds: scorer.thresholds().to_vec(),
            scorer,
            detector,
            responder,
            tally,
            metrics: None,
            flows_out: None,
            recalibrate: true,
            sequence: None,
            rows: Vec::new(),
            failed_once: false,
            channels_failed_once: false,
        }
    }

    /// The stage `cfg` describes (mode, mitigation, detection), starting at `now`.
    pub fn configured(
        cfg: &Config,
        scorer: Scorer,
        wiring: ResponseWiring,
        tally: Arc<ScoreTally>,
        now: Instant,
    ) -> Stage {
        let responder = Responder::new(
            cfg.agent.mode,
            cfg.mitigation.clone(),
            wiring.enforcer,
            wiring.alerts,
            wiring.ctx,
            wiring.counters,
            now,
        );
        let detector = Detector::new(cfg.detection.clone(), scorer.model_names().len());
        let mut stage = Stage::new(scorer, detector, responder, tally);
        stage.recalibrate = cfg.detection.recalibrate;
        stage
    }

    /// Handles one batch at `now`.
    pub fn consume(&mut self, batch: Batch, now: Instant) {
        match batch {
            Batch::Flows {
                records,
                features,
                dim,
            } => {
                if self.detector.config().uses(DetectorName::Models) {
                    self.score_flows(&records, &features, dim, now);
                }
                if self.detector.config().uses(DetectorName::Aggregates) {
                    let findings = self.detector.observe_connections(&records, now);
                    if !findings.is_empty() {
                        self.responder.handle(findings, now);
                        self.responder.flush();
                    }
                }
                if self.detector.config().uses(DetectorName::Beacons) {
                    self.score_channels(&records, now);
                }
                self.write_flows(&records);
            }
            Batch::Aggregates { interval_s, src, dst } => {
                if self.detector.config().uses(DetectorName::Aggregates) {
                    let findings = self.detector.observe_aggregates(interval_s, &src, &dst, now);
                    self.responder.handle(findings, now);
                }
                if let Err(e) = self.responder.maintain(now) {
                    log::error!("maintaining the blocklist failed: {e}");
                }
                scoring::recalibrate(
                    &mut self.scorer,
                    &self.detector,
                    &self.bundle_thresholds,
                    self.recalibrate,
                );
                self.responder.effective_mode(now);
                self.responder.flush();
            }
            Batch::Reload(r) => self.reload(*r, now),
        }
    }

    /// Scores a batch of flows, counts what each model flagged, and hands the scored flows to
    /// detection and its findings to the response.
    fn score_flows(&mut self, records: &[FlowRecord], features: &[f64], dim: usize, now: Instant) {
        let started = WallInstant::now();
        self.rows.clear();
        self.rows.extend(features.iter().map(|&v| v as f32));
        // (name, threshold in force) per model, then the ensemble: once per batch.
        let labels = scoring::labels(&self.scorer);
        let s = match self.scorer.score(&self.rows, records.len()) {
            Ok(s) => s,
            Err(e) => {
                if !self.failed_once {
                    log::error!(
                        "scoring {} flow vectors of width {dim} failed: {e}",
                        records.len()
                    );
                    self.failed_once = true;
                }
                return;
            }
        };
        if let Some(m) = &self.metrics {
            m.observe_scoring(started.elapsed());
        }
        scoring::count(&self.tally, &labels, s, records.len());
        let flows = scoring::scored_flows(records, features, dim, s);
        let names: Vec<&str> = features::FLOW_FEATURES.iter().map(|f| f.name).collect();
        let findings = self.detector.observe_flows(&flows, &labels, &names, now);
        if !findings.is_empty() {
            self.responder.handle(findings, now);
            self.responder.flush();
        }
    }

    /// Grows the channels of a batch's flows and has the sequence model judge them.
    fn score_channels(&mut self, records: &[FlowRecord], now: Instant) {
        let seq = self.sequence.as_mut().map(|s| s as &mut dyn WindowScorer);
        let judged = self.detector.observe_channels(records, seq, now);
        let (followed, dropped) = self.detector.channel_counts();
        self.tally.set_channels(followed as u64, dropped);
        match judged {
            Ok(findings) if !findings.is_empty() => {
                self.responder.handle(findings, now);
                self.responder.flush();
            }
            Ok(_) => {}
            Err(e) => {
                if !self.channels_failed_once {
                    log::error!("scoring channel letters with the sequence model failed: {e}");
                    self.channels_failed_once = true;
                }
            }
        }
    }

    /// `--flows-out`: a write error is logged once and writing stops there; scoring goes on.
    fn write_flows(&mut self, records: &[FlowRecord]) {
        let Some(s) = self.flows_out.as_mut() else {
            return;
        };
        let written = records
            .iter()
            .try_for_each(|r| s.record(r))
            .and_then(|()| s.flush());
        if let Err(e) = written {
            log::error!("writing the flow output failed: {e}; no further flows are written");
            self.flows_out = None;
        }
    }

    /// Takes over a validated configuration and bundle (SIGHUP); what detection learned and
    /// the blocks in force stay.
    fn reload(&mut self, r: Reload, now: Instant) {
        let Reload {
            config,
            scorer,
            sequence,
            bundle_label,
            allow,
        } = r;
        self.sequence = sequence;
        self.bundle_thresholds = scorer.thresholds().to_vec();
        self.tally.declare(
            scorer
                .model_names()
                .iter()
                .map(String::as_str)
                .chain([scoring::ENSEMBLE]),
        );
        self.scorer = scorer;
        self.detector.set_config(config.detection.clone());
        self.recalibrate = config.detection.recalibrate;
        self.responder
            .reconfigure(config.agent.mode, config.mitigation.clone(), bundle_label);
        if let Err(e) = allowlist::sync(self.responder.enforcer(), &allow, now.mono_ns) {
            log::error!("updating the allowlist failed: {e}");
        }
        scoring::recalibrate(
            &mut self.scorer,
            &self.detector,
            &self.bundle_thresholds,
            self.recalibrate,
        );
        log::info!(
            "configuration, allowlist and model bundle reloaded ({} mode)",
            config.agent.mode.name()
        );
    }
}
