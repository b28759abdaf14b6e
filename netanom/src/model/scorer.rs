//! Batched scoring: raw rows → per-model scores and decisions, ensemble score and decision.
//!
//! Arithmetic follows the manifest's contract: the graphs give float32 scores;
//! r_m = f64(score_m) / threshold_m, model m flags the row when r_m > 1.0; the ensemble score E
//! (any: max r; majority: k-th largest r, k = floor(m/2) + 1; weighted: Σ w_m r_m, left to right
//! in f64) flags the row when E > 1.0.
use ort::value::TensorRef;

use super::{
    ModelError,
    bundle::{Binding, Bundle, ExecutionProvider},
    manifest::EnsembleRule,
};

/// The result of one [`Scorer::score`] call, `n` rows. Buffers are reused by the next call.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Scores {
    /// Per model (manifest order: autoencoder, iforest, rf), one score per row; NaN for
    /// rejected rows.
    pub model: Vec<Vec<f32>>,
    /// Per model, whether it flags the row (score / threshold > 1); false for rejected rows.
    pub flagged: Vec<Vec<bool>>,
    /// The continuous ensemble score E per row; NaN for rejected rows.
    pub ensemble: Vec<f64>,
    /// The ensemble decision per row (E > 1); false for rejected rows.
    pub anomaly: Vec<bool>,
    /// Rows refused because of NaN/±inf: (row index in the batch, raw column index).
    pub rejected: Vec<(usize, usize)>,
    /// Rows (scored) that held a category the bundle does not know.
    pub unseen: usize,
}

impl Scores {
    /// Number of rows.
    pub fn len(&self) -> usize {
        self.anomaly.len()
    }
    pub fn is_empty(&self) -> bool {
        self.anomaly.is_empty()
    }
    /// Whether row `i` was scored (not rejected).
    pub fn is_scored(&self, i: usize) -> bool {
        self.rejected.binary_search_by_key(&i, |(r, _)| *r).is_err()
    }
    fn reset(&mut self, models: usize, n: usize) {
        self.model.resize_with(models, Vec::new);
        self.flagged.resize_with(models, Vec::new);
        for v in &mut self.model {
            v.clear();
            v.resize(n, f32::NAN);
        }
        for v in &mut self.flagged {
            v.clear();
            v.resize(n, false);
        }
        self.ensemble.clear();
        self.ensemble.resize(n, f64::NAN);
        self.anomaly.clear();
        self.anomaly.resize(n, false);
        self.rejected.clear();
        self.unseen = 0;
    }
}

/// Scores batches of rows with a [`Bundle`]. Not `Sync`: one scorer per thread.
pub struct Scorer {
    bundle: Bundle,
    binding: Option<Binding>,
    /// Model-input matrix of the accepted rows, row-major.
    input: Vec<f32>,
    /// Batch index of each accepted row.
    accepted: Vec<usize>,
    /// One model's outputs for the accepted rows.
    out: Vec<f32>,
    scores: Scores,
    thresholds: Vec<f64>,
    weights: Vec<f64>,
    ratios: Vec<f64>,
    rows_total: u64,
    rejected_total: u64,
}

impl Bundle {
    /// A scorer over this bundle's raw column order.
    pub fn scorer(self) -> Scorer {
        Scorer::new(self)
    }
}

impl Scorer {
    /// A scorer taking rows in the bundle's raw column order
    /// ([`super::Preprocessor::input_names`]).
    pub fn new(bundle: Bundle) -> Scorer {
        let m = &bundle.manifest().models;
        let thresholds = m.iter().map(|m| m.threshold).collect();
        let weights = bundle.manifest().weights.clone();
        let n_models = m.len();
        Scorer {
            bundle,
            binding: None,
            input: Vec::new(),
            accepted: Vec::new(),
            out: Vec::new(),
            scores: Scores::default(),
            thresholds,
            weights,
            ratios: vec![0.0; n_models],
            rows_total: 0,
            rejected_total: 0,
        }
    }

    /// A scorer taking rows in the caller's order, as bound by [`Bundle::bind`].
    pub fn with_binding(bundle: Bundle, binding: Binding) -> Result<Scorer, ModelError> {
        let mut s = Scorer::new(bundle);
        s.set_binding(Some(binding))?;
        Ok(s)
    }

    /// Sets (or, with `None`, removes) the binding used by the next calls.
    pub fn set_binding(&mut self, binding: Option<Binding>) -> Result<(), ModelError> {
        if let Some(b) = &binding {
            let n = self.bundle.preprocessor().n_inputs();
            if b.gather.len() != n || b.gather.iter().any(|g| *g >= b.width) {
                return Err(ModelError::Bind {
                    dataset: self.bundle.manifest().dataset.clone(),
                    missing: Vec::new(),
                    unexpected: vec![format!(
                        "(a binding made for another bundle: {} columns of {}, this bundle has {n})",
                        b.gather.len(),
                        b.width
                    )],
                });
            }
        }
        self.binding = binding.filter(|b| !b.is_identity());
        Ok(())
    }

    pub fn bundle(&self) -> &Bundle {
        &self.bundle
    }

    /// The execution provider the models run on.
    pub fn provider(&self) -> ExecutionProvider {
        self.bundle.provider()
    }

    /// Values per input row: the binding's width, or the bundle's raw column count.
    pub fn row_width(&self) -> usize {
        self.binding
            .as_ref()
            .map_or(self.bundle.preprocessor().n_inputs(), |b| b.width)
    }

    /// Rows given to [`Self::score`] so far.
    pub fn rows_total(&self) -> u64 {
        self.rows_total
    }

    /// Rows refused (NaN/±inf) so far.
    pub fn rejected_total(&self) -> u64 {
        self.rejected_total
    }

    /// Builds the model-input matrix of `n` row-major raw rows and returns it (accepted rows
    /// only; see [`Scores::rejected`] semantics). This is the Rust-side preprocessing alone.
    pub fn preprocess(&mut self, rows: &[f32], n: usize) -> Result<&[f32], ModelError> {
        self.prepare(rows, n)?;
        Ok(&self.input)
    }

    fn prepare(&mut self, rows: &[f32], n: usize) -> Result<(), ModelError> {
        let width = self.row_width();
        if rows.len() != n * width {
            return Err(ModelError::Shape {
                got: rows.len(),
                n,
                width,
            });
        }
        let pre = self.bundle.preprocessor();
        let f = pre.n_features();
        let n_models = self.bundle.manifest().models.len();
        self.scores.reset(n_models, n);
        self.input.resize(n * f, 0.0);
        self.accepted.clear();
        let mut k = 0;
        for i in 0..n {
            let row = &rows[i * width..(i + 1) * width];
            let dst = &mut self.input[k * f..(k + 1) * f];
            let res = match &self.binding {
                None => pre.transform(|c| row[c], dst),
                Some(b) => pre.transform(|c| row[b.gather[c]], dst),
            };
            match res {
                Ok(unseen) => {
                    self.scores.unseen += usize::from(unseen);
                    self.accepted.push(i);
                    k += 1;
                }
                Err(c) => self.scores.rejected.push((i, c)),
            }
        }
        self.input.truncate(k * f);
        self.rows_total += n as u64;
        self.rejected_total += self.scores.rejected.len() as u64;
        Ok(())
    }

    /// Runs model `mi` on the accepted rows into `self.out`.
    fn run_model(&mut self, mi: usize) -> Result<(), ModelError> {
        let k = self.accepted.len();
        let f = self.bundle.preprocessor().n_features();
        let spec = &self.bundle.manifest.models[mi];
        let err = |e: ort::Error| ModelError::Inference {
            model: spec.name.clone(),
            detail: e.to_string(),
        };
        let tensor = TensorRef::from_array_view(([k, f], &self.input[..])).map_err(err)?;
        let session = &mut self.bundle.sessions[mi];
        let outputs = session.run(ort::inputs![tensor]).map_err(err)?;
        let value = outputs.get(&spec.output).ok_or_else(|| ModelError::Inference {
            model: spec.name.clone(),
            detail: format!("no output `{}`", spec.output),
        })?;
        let (_, data) = value.try_extract_tensor::<f32>().map_err(err)?;
        if data.len() != k {
            return Err(ModelError::Inference {
                model: spec.name.clone(),
                detail: format!("{} scores for {k} rows", data.len()),
            });
        }
        self.out.clear();
        self.out.extend_from_slice(data);
        Ok(())
    }

    /// Scores `n` row-major rows of [`Self::row_width`] values each. Rows with NaN/±inf are
    /// refused (see [`Scores::rejected`]); the others are scored. The result borrows the
    /// scorer's buffers, which the next call reuses.
    pub fn score(&mut self, rows: &[f32], n: usize) -> Result<&Scores, ModelError> {
        self.prepare(rows, n)?;
        if !self.accepted.is_empty() {
            let n_models = self.thresholds.len();
            for mi in 0..n_models {
                self.run_model(mi)?;
                let t = self.thresholds[mi];
                let (scores, flagged) = (&mut self.scores.model[mi], &mut self.scores.flagged[mi]);
                for (&i, &s) in self.accepted.iter().zip(&self.out) {
                    scores[i] = s;
                    flagged[i] = f64::from(s) / t > 1.0;
                }
            }
            let rule = self.bundle.manifest().rule;
            let limit = self.bundle.manifest().ensemble_threshold;
            for &i in &self.accepted {
                for (mi, r) in self.ratios.iter_mut().enumerate() {
                    *r = f64::from(self.scores.model[mi][i]) / self.thresholds[mi];
                }
                let e = ensemble(rule, &mut self.ratios, &self.weights);
                self.scores.ensemble[i] = e;
                self.scores.anomaly[i] = e > limit;
            }
        }
        Ok(&self.scores)
    }

    /// Scores `n` rows with model `mi` alone (manifest order) and returns its scores for the
    /// accepted rows (for benchmarks and diagnostics).
    pub fn score_model(&mut self, mi: usize, rows: &[f32], n: usize) -> Result<&[f32], ModelError> {
        self.prepare(rows, n)?;
        if self.accepted.is_empty() {
            self.out.clear();
        } else {
            self.run_model(mi)?;
        }
        Ok(&self.out)
    }

    /// The per-model thresholds in force (manifest order).
    pub fn thresholds(&self) -> &[f64] {
        &self.thresholds
    }

    /// Replaces the per-model thresholds (online recalibration); values that are not finite
    /// and positive keep the current threshold.
    pub fn set_thresholds(&mut self, t: &[f64]) {
        for (cur, new) in self.thresholds.iter_mut().zip(t) {
            if new.is_finite() && *new > 0.0 {
                *cur = *new;
            }
        }
    }

    /// Model names in manifest order.
    pub fn model_names(&self) -> Vec<String> {
        self.bundle
            .manifest()
            .models
            .iter()
            .map(|m| m.name.clone())
            .collect()
    }

    /// The scores of the last [`Self::score`] call.
    pub fn last(&self) -> &Scores {
        &self.scores
    }
}

/// The ensemble score E of the normalised scores `r` (reordered in place for `majority`).
pub fn ensemble(rule: EnsembleRule, r: &mut [f64], weights: &[f64]) -> f64 {
    match rule {
        EnsembleRule::Any => r.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        EnsembleRule::Majority => {
            let k = r.len() / 2 + 1;
            r.sort_unstable_by(|a, b| b.total_cmp(a));
            r[k - 1]
        }
        EnsembleRule::Weighted => {
            // Left to right from 0.0, as the contract says (no fused multiply-add).
            let mut e = 0.0;
            for (w, x) in weights.iter().zip(r.iter()) {
                e += w * x;
            }
            e
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ensemble_rules() {
        let w = [0.25, 0.25, 0.5];
        assert_eq!(ensemble(EnsembleRule::Any, &mut [0.5, 2.0, 0.9], &w), 2.0);
        assert_eq!(ensemble(EnsembleRule::Majority, &mut [0.5, 2.0, 0.9], &w), 0.9);
        assert_eq!(ensemble(EnsembleRule::Majority, &mut [1.5, 2.0, 0.9], &w), 1.5);
        assert_eq!(ensemble(EnsembleRule::Weighted, &mut [0.5, 2.0, 1.0], &w), 1.125);
        // Two of three models flagging is a majority; one is not.
        assert!(ensemble(EnsembleRule::Majority, &mut [1.1, 1.2, 0.1], &w) > 1.0);
        assert!(ensemble(EnsembleRule::Majority, &mut [1.1, 0.2, 0.1], &w) <= 1.0);
    }
}
