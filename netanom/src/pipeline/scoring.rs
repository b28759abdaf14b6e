//! The scoring stage's model half: the bundle loaded and bound to the live flow schema, each
//! batch of flow vectors scored, the counts per model (by the bundle's own model names), and
//! the thresholds recalibrated online from what detection learned.
use std::path::Path;

use netanom_common::flow::{EndReason, FlowRecord};

use super::config::Config;
use crate::{
    detect::{Detector, ScoredFlow, WindowScorer, is_icmp_error},
    features::{self, FlowIdentity},
    model::{self, Bundle, BundleOptions, ExecutionProvider, Scorer, Scores, SequenceModel},
    telemetry::{BundleInfo, ScoreTally},
};

/// Which bundle, and how it runs.
#[derive(Clone, Debug)]
pub struct BundleChoice<'a> {
    /// `None`: the embedded default bundle.
    pub dir: Option<&'a Path>,
    pub ort_lib: Option<&'a Path>,
    pub threads: usize,
    pub provider: ExecutionProvider,
}

impl<'a> BundleChoice<'a> {
    /// The bundle `cfg` names (`agent.bundle`, `agent.ort_lib`, ...).
    pub fn of(cfg: &'a Config) -> BundleChoice<'a> {
        let a = &cfg.agent;
        BundleChoice {
            dir: a.bundle.as_deref(),
            ort_lib: a.ort_lib.as_deref(),
            threads: a.model_threads,
            provider: a.provider,
        }
    }
}

/// Loads the bundle (embedded default unless a directory is given) and binds it to the live
/// flow schema: a bundle wanting a feature the agent does not produce is refused, naming it.
/// Also returns what `netanom_model_bundle_info` says about it.
pub fn load_scorer(choice: &BundleChoice<'_>) -> anyhow::Result<(Scorer, BundleInfo)> {
    let environment = model::environment(choice.ort_lib)?;
    let bopts = BundleOptions {
        intra_threads: choice.threads.max(1),
        provider: choice.provider,
        environment: Some(environment),
        ..BundleOptions::default()
    };
    let bundle = match choice.dir {
        Some(dir) => Bundle::load_with(dir, &bopts)?,
        None => model::embedded::load(&bopts)?,
    };
    let names: Vec<&str> = features::FLOW_FEATURES.iter().map(|f| f.name).collect();
    let binding = bundle.bind(&names).map_err(|e| {
        anyhow::anyhow!(
            "{e}. The live agent produces only the flow features listed in netanom/FEATURES.md, \
             so `netanom run` needs a bundle trained on them: the embedded default (omit \
             --bundle), or one made by `cargo xtask train -- --dataset cic-ids2017`"
        )
    })?;
    let m = bundle.manifest();
    log::info!(
        "model bundle: {} ({} dataset, {} of the {} flow features, {} execution provider)",
        bundle.origin(),
        m.dataset,
        binding.gather.len(),
        names.len(),
        bundle.provider()
    );
    let info = BundleInfo {
        origin: choice
            .dir
            .map_or_else(|| "embedded".to_owned(), |d| d.display().to_string()),
        dataset: m.dataset.clone(),
        provider: bundle.provider().name().to_owned(),
    };
    Ok((Scorer::with_binding(bundle, binding)?, info))
}

/// The bundle's sequence part (the beacon model): the embedded one, or the one in the bundle
/// directory; `None`, with a note, when that bundle has none (beacons are then not detected).
pub fn load_sequence(choice: &BundleChoice<'_>) -> anyhow::Result<Option<SequenceModel>> {
    let bopts = BundleOptions {
        environment: Some(model::environment(choice.ort_lib)?),
        ..BundleOptions::default()
    };
    let part = match choice.dir {
        Some(dir) => SequenceModel::load(dir, &bopts)?,
        None => Some(model::embedded::load_sequence(&bopts)?),
    };
    match &part {
        Some(p) => log::info!(
            "sequence model: {} (beacons judged from {} flows per channel)",
            p.origin(),
            p.spec.min_flows
        ),
        None => log::info!("the model bundle has no sequence part (sequence.json): beacons are not detected"),
    }
    Ok(part)
}

/// Detection has channel windows scored by the sequence model.
impl WindowScorer for SequenceModel {
    fn score_windows(&mut self, windows: &[&[i64]]) -> Result<Vec<f32>, String> {
        self.score(windows).map_err(|e| e.to_string())
    }

    fn max_len(&self) -> usize {
        self.spec.max_len
    }

    fn default_threshold(&self) -> f64 {
        self.spec.default_threshold()
    }
}

/// The label the ensemble's counts and scores go under.
pub const ENSEMBLE: &str = "ensemble";

/// (model name, threshold in force) per model of the scorer, then the ensemble's: the labels
/// of each flow's scores.
pub fn labels(scorer: &Scorer) -> Vec<(String, f64)> {
    let mut labels: Vec<(String, f64)> = scorer
        .model_names()
        .into_iter()
        .zip(scorer.thresholds().iter().copied())
        .collect();
    labels.push((ENSEMBLE.into(), scorer.bundle().manifest().ensemble_threshold));
    labels
}

/// Adds one scored batch to the tally: vectors scored and refused, anomalies per model (by
/// the bundle's names) and of the ensemble.
pub fn count(tally: &ScoreTally, labels: &[(String, f64)], s: &Scores, n: usize) {
    let per_model = labels
        .iter()
        .zip(&s.flagged)
        .map(|((name, _), flags)| (name.as_str(), flags.iter().filter(|f| **f).count() as u64));
    let ensemble = s.anomaly.iter().filter(|f| **f).count() as u64;
    tally.add(
        n as u64,
        s.rejected.len() as u64,
        per_model.chain(std::iter::once((ENSEMBLE, ensemble))),
    );
}

/// The scored flows of a batch, as detection reads them (rows that were not scored are left
/// out).
pub fn scored_flows<'a>(
    records: &[FlowRecord],
    features: &'a [f64],
    dim: usize,
    s: &Scores,
) -> Vec<ScoredFlow<'a>> {
    let mut flows = Vec::with_capacity(records.len());
    for (i, r) in records.iter().enumerate() {
        // A flow cut off by the agent's stop or the end of a capture is scored and counted,
        // but not judged: it is incomplete (no end, its last gaps unknown), and the flow
        // models take such truncated flows for anomalies.
        if !s.is_scored(i) || r.reason == EndReason::Flush as u32 {
            continue;
        }
        let id = FlowIdentity::new(&r.key, &r.value, None);
        let mut scores: Vec<f64> = s.model.iter().map(|m| f64::from(m[i])).collect();
        scores.push(s.ensemble[i]);
        flows.push(ScoredFlow {
            src: id.src_ip,
            src_port: id.src_port,
            dst: id.dst_ip,
            dst_port: id.dst_port,
            proto: id.protocol,
            features: &features[i * dim..(i + 1) * dim],
            scores,
            ensemble: s.ensemble[i],
            anomaly: s.anomaly[i],
            icmp_error: is_icmp_error(id.protocol, r.value.icmp_type),
        });
    }
    flows
}

/// Applies the online thresholds (or the bundle's, `bundle_thresholds`, when recalibration
/// is off or has not seen enough normal flows).
pub fn recalibrate(scorer: &mut Scorer, detector: &Detector, bundle_thresholds: &[f64], on: bool) {
    let learned = if on {
        detector.recalibrated()
    } else {
        vec![None; bundle_thresholds.len()]
    };
    let wanted: Vec<f64> = bundle_thresholds
        .iter()
        .zip(learned.iter().chain(std::iter::repeat(&None)))
        .map(|(b, l)| l.unwrap_or(*b))
        .collect();
    let names = scorer.model_names();
    for ((cur, new), name) in scorer.thresholds().iter().zip(&wanted).zip(&names) {
        if (new / cur - 1.0).abs() > 0.1 {
            log::info!(
                "{name} threshold {cur:.6} -> {new:.6} ({})",
                if learned.iter().any(Option::is_some) {
                    "recalibrated on recent normal traffic"
                } else {
                    "the bundle's"
                }
            );
        }
    }
    scorer.set_thresholds(&wanted);
}
