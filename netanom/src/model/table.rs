//! A bundle over a CSV file: what `netanom score` and `netanom eval` do, as library calls.
//!
//! The input CSV has a header row. The bundle's raw input columns
//! ([`super::Preprocessor::input_names`]) must be present by name, in any order; other columns
//! are passed through by `score` and ignored by `eval` (except `--label-column`). Values are
//! read as the Python pipeline reads them: surrounding whitespace is trimmed, numbers are
//! parsed as f64 and rounded to f32, categories are compared exactly (a category the bundle
//! does not know gives the all-zero one-hot block the manifest prescribes, and is counted).
//!
//! Bad input ends the command with one error naming the file, the line (1-based, the header
//! is line 1) and the column: a missing feature column, a row with the wrong number of fields,
//! an empty, non-numeric, NaN or infinite value, an empty label. `score` writes every row
//! before the bad one (scored) to its output first, so nothing already scored is lost; the
//! output then ends at the row before the reported line.
use std::{
    fs::File,
    io::{self, BufRead, BufReader, Write},
    path::{Path, PathBuf},
};

use anyhow::{Context as _, anyhow, bail};

use super::{
    Bundle, Scorer,
    csv::{self, Record},
    metrics::{self, Confusion},
};

/// Rows scored per call to ONNX Runtime by the CSV commands.
pub const CSV_BATCH: usize = 1024;

/// The label values that mean "normal" unless told otherwise.
pub fn default_normal() -> Vec<String> {
    ["normal", "normal.", "BENIGN", "0"].map(String::from).to_vec()
}

/// How label values become attack (true) / normal (false).
#[derive(Clone, Debug)]
pub struct LabelRule {
    pub positive: Vec<String>,
    pub normal: Vec<String>,
}

impl LabelRule {
    /// `Err` for an empty label.
    pub fn is_attack(&self, label: &str) -> Result<bool, &'static str> {
        let l = label.trim();
        if l.is_empty() {
            return Err("the label is empty");
        }
        if !self.positive.is_empty() {
            return Ok(self.positive.iter().any(|p| p.trim() == l));
        }
        if self.normal.iter().any(|n| n.trim().eq_ignore_ascii_case(l)) {
            return Ok(false);
        }
        Ok(!matches!(l.parse::<f64>(), Ok(x) if x == 0.0))
    }
}

/// The input CSV: header, and the bundle's raw columns located in it.
pub struct Input {
    path: PathBuf,
    reader: csv::Reader<Box<dyn BufRead>>,
    header: Vec<String>,
    /// For each bundle raw column, its index in the header.
    gather: Vec<usize>,
}

impl Input {
    /// Opens the CSV file at `path` and finds the columns `bundle` needs in its header.
    pub fn open(path: &Path, bundle: &Bundle) -> anyhow::Result<Input> {
        let shown = path.display();
        if path.is_dir() {
            bail!("{shown} is a directory; give --input the path of one CSV file");
        }
        let file = File::open(path).with_context(|| {
            format!("cannot open the input {shown}; check that it exists and that this user may read it")
        })?;
        let mut reader =
            csv::Reader::new(Box::new(BufReader::with_capacity(1 << 16, file)) as Box<dyn BufRead>);
        let mut rec = Record::default();
        if !reader.read(&mut rec).map_err(|e| anyhow!("{shown}: {e}"))? {
            bail!(
                "{shown} is empty: expected a CSV header row naming the bundle's {} feature columns, then data rows",
                bundle.preprocessor().n_inputs()
            );
        }
        let header: Vec<String> = rec.iter().map(|h| h.trim().to_owned()).collect();
        let binding = bundle
            .bind(&header)
            .map_err(|e| anyhow!("{shown}: the header lacks columns the bundle needs: {e}"))?;
        Ok(Input {
            path: path.to_path_buf(),
            reader,
            header,
            gather: binding.gather,
        })
    }

    /// Reads the next record; `Ok(false)` at the end. Checks the field count.
    fn next(&mut self, rec: &mut Record) -> anyhow::Result<bool> {
        let shown = self.path.display();
        if !self.reader.read(rec).map_err(|e| anyhow!("{shown}: {e}"))? {
            return Ok(false);
        }
        if rec.len() != self.header.len() {
            bail!(
                "{shown}: line {}: {} fields, but the header has {} columns",
                rec.line,
                rec.len(),
                self.header.len()
            );
        }
        Ok(true)
    }

    /// Appends the raw-row values of `rec` to `row`.
    fn encode(&self, bundle: &Bundle, rec: &Record, row: &mut Vec<f32>) -> anyhow::Result<bool> {
        let pre = bundle.preprocessor();
        let mut unseen = false;
        for (c, &h) in self.gather.iter().enumerate() {
            let text = rec.get(h);
            match pre.encode(c, text) {
                Ok(x) => {
                    unseen |= pre.is_categorical(c) && x == super::UNSEEN_CATEGORY;
                    row.push(x);
                }
                Err(e) => bail!(
                    "{}: line {}, column `{}`: {:?}: {e}; fix or drop the row",
                    self.path.display(),
                    rec.line,
                    self.header[h],
                    text
                ),
            }
        }
        Ok(unseen)
    }
}

/// The columns `score` appends, in order (those of the bundles' parity.csv).
pub fn output_columns<S: AsRef<str>>(models: &[S]) -> Vec<String> {
    let mut v: Vec<String> = models.iter().map(|m| format!("score_{}", m.as_ref())).collect();
    v.extend(models.iter().map(|m| format!("decision_{}", m.as_ref())));
    v.push("decision".into());
    v.push("ensemble_score".into());
    v
}

/// What `score` did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScoreSummary {
    pub rows: u64,
    pub anomalies: u64,
    pub unseen: u64,
}

/// Appends per-model scores and decisions to every row of `input` (from [`Input::open`] with
/// the same bundle), writing the rows to `out` (`dest` names it in errors). On a bad row, the rows before it are scored and
/// written, then the error names its line.
pub fn score_csv(
    bundle: Bundle,
    mut input: Input,
    out: &mut dyn Write,
    dest: &str,
) -> anyhow::Result<ScoreSummary> {
    let input_path = input.path.clone();
    let input_path = input_path.as_path();
    let wctx = || format!("cannot write the scores to {dest}");

    let models = bundle
        .manifest()
        .models
        .iter()
        .map(|m| m.name.clone())
        .collect::<Vec<_>>();
    let keep = write_header(&input, &models, out, input_path).with_context(wctx)?;

    let mut scorer = Scorer::new(bundle);
    let width = scorer.row_width();
    let mut summary = ScoreSummary::default();
    let mut recs: Vec<Record> = (0..CSV_BATCH).map(|_| Record::default()).collect();
    let mut rows: Vec<f32> = Vec::with_capacity(CSV_BATCH * width);
    let mut failure = None;
    let mut line: Vec<u8> = Vec::with_capacity(1024);
    loop {
        rows.clear();
        let mut n = 0;
        while n < CSV_BATCH {
            match input.next(&mut recs[n]) {
                Ok(false) => break,
                Ok(true) => {}
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
            if let Err(e) = input.encode(scorer.bundle(), &recs[n], &mut rows) {
                rows.truncate(n * width);
                failure = Some(e);
                break;
            }
            n += 1;
        }
        if n > 0 {
            let scores = scorer.score(&rows, n)?;
            if let Some(&(i, c)) = scores.rejected.first() {
                failure = Some(anyhow!(
                    "{}: line {}, column `{}`: the value is not finite in float32; fix or drop the row",
                    input_path.display(),
                    recs[i].line,
                    scorer.bundle().preprocessor().input_names()[c]
                ));
                // Write only the rows before it.
                n = i;
            }
            let scores = scorer.last();
            summary.unseen += scores.unseen as u64;
            write_rows(&recs[..n], &keep, scores, &mut line, out, &mut summary).with_context(wctx)?;
        }
        if failure.is_some() || n < CSV_BATCH {
            break;
        }
    }
    out.flush().with_context(wctx)?;
    if let Some(e) = failure {
        bail!(
            "{e:#} ({} row(s) before it were scored and written to {dest})",
            summary.rows
        );
    }
    log_summary(&summary, input_path, &scorer);
    Ok(summary)
}

fn log_summary(summary: &ScoreSummary, input_path: &Path, scorer: &Scorer) {
    log::info!(
        "scored {} rows of {} with {} ({} provider): {} anomalies{}",
        summary.rows,
        input_path.display(),
        scorer.bundle().origin(),
        scorer.provider(),
        summary.anomalies,
        if summary.unseen > 0 {
            format!(
                "; {} row(s) held a category the bundle does not know (scored with an all-zero one-hot block, as its manifest prescribes)",
                summary.unseen
            )
        } else {
            String::new()
        }
    );
}

/// Writes scored rows: the kept input columns, then each model's score and decision, then
/// the ensemble's decision and score.
fn write_rows(
    recs: &[Record],
    keep: &[usize],
    scores: &super::Scores,
    line: &mut Vec<u8>,
    out: &mut dyn Write,
    summary: &mut ScoreSummary,
) -> io::Result<()> {
    for (i, rec) in recs.iter().enumerate() {
        line.clear();
        let mut first = true;
        for &c in keep {
            sep(line, &mut first);
            csv::write_field(line, rec.get(c))?;
        }
        for m in &scores.model {
            sep(line, &mut first);
            write!(line, "{}", m[i])?;
        }
        for f in &scores.flagged {
            sep(line, &mut first);
            write!(line, "{}", u8::from(f[i]))?;
        }
        sep(line, &mut first);
        writeln!(line, "{},{}", u8::from(scores.anomaly[i]), scores.ensemble[i])?;
        out.write_all(line)?;
        summary.rows += 1;
        summary.anomalies += u64::from(scores.anomaly[i]);
    }
    Ok(())
}

/// Writes the output's header: the input's columns, less those named like an output column
/// (the fresh values replace them), then the output columns. Returns the input columns kept.
fn write_header(
    input: &Input,
    models: &[String],
    out: &mut dyn Write,
    input_path: &Path,
) -> io::Result<Vec<usize>> {
    // Input columns named like an output column are replaced by the fresh values.
    let outputs = output_columns(models);
    let keep: Vec<usize> = (0..input.header.len())
        .filter(|&i| !outputs.contains(&input.header[i]))
        .collect();
    if keep.len() < input.header.len() {
        log::warn!(
            "{}: the input's columns {:?} are replaced by this run's scores",
            input_path.display(),
            input
                .header
                .iter()
                .filter(|h| outputs.contains(h))
                .collect::<Vec<_>>()
        );
    }
    let mut first = true;
    for &i in &keep {
        if !first {
            out.write_all(b",")?;
        }
        first = false;
        csv::write_field(out, &input.header[i])?;
    }
    for o in &outputs {
        if !first {
            out.write_all(b",")?;
        }
        first = false;
        out.write_all(o.as_bytes())?;
    }
    out.write_all(b"\n")?;
    Ok(keep)
}

fn sep(line: &mut Vec<u8>, first: &mut bool) {
    if !*first {
        line.push(b',');
    }
    *first = false;
}

/// Metrics of one scorer (a model or the ensemble).
#[derive(Clone, Debug, PartialEq)]
pub struct EvalRow {
    pub name: String,
    /// The threshold its decisions were made at.
    pub threshold: f64,
    pub roc_auc: Option<f64>,
    pub pr_auc: Option<f64>,
    pub confusion: Confusion,
}

/// What `eval` measured.
#[derive(Clone, Debug, PartialEq)]
pub struct EvalReport {
    pub rows: usize,
    pub positives: usize,
    pub unseen: usize,
    /// The bundle's training dataset, ensemble rule and execution provider.
    pub dataset: String,
    pub rule: &'static str,
    pub provider: &'static str,
    /// The bundle's models, then the ensemble.
    pub scorers: Vec<EvalRow>,
}

impl EvalReport {
    pub fn base_rate(&self) -> f64 {
        self.positives as f64 / self.rows.max(1) as f64
    }
}

/// Metrics per model and for the ensemble of `bundle` on the CSV file `input`, whose column
/// `label_column` holds the ground truth (read with `rule`).
pub fn eval_csv(
    bundle: Bundle,
    input_path: &Path,
    label_column: &str,
    rule: &LabelRule,
) -> anyhow::Result<EvalReport> {
    let mut input = Input::open(input_path, &bundle)?;
    let shown = input_path.display().to_string();
    let label_col = input
        .header
        .iter()
        .position(|h| *h == label_column)
        .ok_or_else(|| {
            anyhow!(
                "{shown}: no column `{}` for --label-column (the header has: {})",
                label_column,
                input.header.join(", ")
            )
        })?;
    let mut scorer = Scorer::new(bundle);
    let width = scorer.row_width();
    let n_models = scorer.bundle().manifest().models.len();
    let mut labels = Vec::new();
    let mut scores: Vec<Vec<f64>> = vec![Vec::new(); n_models + 1];
    let mut flagged: Vec<Vec<bool>> = vec![Vec::new(); n_models + 1];
    let mut unseen = 0;
    let mut recs: Vec<Record> = (0..CSV_BATCH).map(|_| Record::default()).collect();
    let mut rows: Vec<f32> = Vec::with_capacity(CSV_BATCH * width);
    loop {
        rows.clear();
        let mut n = 0;
        while n < CSV_BATCH && input.next(&mut recs[n])? {
            input.encode(scorer.bundle(), &recs[n], &mut rows)?;
            let label = recs[n].get(label_col);
            labels
                .push(rule.is_attack(label).map_err(|e| {
                    anyhow!("{shown}: line {}, column `{}`: {e}", recs[n].line, label_column)
                })?);
            n += 1;
        }
        if n > 0 {
            let s = scorer.score(&rows, n)?;
            if let Some(&(i, c)) = s.rejected.first() {
                bail!(
                    "{shown}: line {}, column `{}`: the value is not finite in float32",
                    recs[i].line,
                    scorer.bundle().preprocessor().input_names()[c]
                );
            }
            unseen += s.unseen;
            for m in 0..n_models {
                scores[m].extend(s.model[m].iter().map(|&x| f64::from(x)));
                flagged[m].extend_from_slice(&s.flagged[m]);
            }
            scores[n_models].extend_from_slice(&s.ensemble);
            flagged[n_models].extend_from_slice(&s.anomaly);
        }
        if n < CSV_BATCH {
            break;
        }
    }
    if labels.is_empty() {
        bail!("{shown} has a header but no data rows; nothing to evaluate");
    }
    let bundle = scorer.bundle();
    let m = bundle.manifest();
    let mut names: Vec<(String, f64)> = m.models.iter().map(|s| (s.name.clone(), s.threshold)).collect();
    names.push((format!("ensemble ({})", m.rule.name()), m.ensemble_threshold));
    Ok(EvalReport {
        rows: labels.len(),
        positives: labels.iter().filter(|l| **l).count(),
        unseen,
        dataset: m.dataset.clone(),
        rule: m.rule.name(),
        provider: bundle.provider().name(),
        scorers: names
            .into_iter()
            .enumerate()
            .map(|(i, (name, threshold))| EvalRow {
                name,
                threshold,
                roc_auc: metrics::roc_auc(&labels, &scores[i]),
                pr_auc: metrics::average_precision(&labels, &scores[i]),
                confusion: Confusion::of(&labels, &flagged[i]),
            })
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::MODEL_NAMES;

    #[test]
    fn labels() {
        let rule = LabelRule {
            positive: vec![],
            normal: default_normal(),
        };
        for normal in [
            "normal", "Normal", "normal.", "BENIGN", "benign", "0", "0.0", " 0 ",
        ] {
            assert_eq!(rule.is_attack(normal), Ok(false), "{normal}");
        }
        for attack in ["neptune", "smurf.", "DDoS", "1", "2"] {
            assert_eq!(rule.is_attack(attack), Ok(true), "{attack}");
        }
        assert!(rule.is_attack(" ").is_err());
        let rule = LabelRule {
            positive: vec!["DDoS".into(), "1".into()],
            normal: default_normal(),
        };
        assert_eq!(rule.is_attack("DDoS"), Ok(true));
        assert_eq!(rule.is_attack("Portscan"), Ok(false));
        assert_eq!(rule.is_attack("1"), Ok(true));
    }

    #[test]
    fn output_columns_match_parity_csv() {
        assert_eq!(
            output_columns(&MODEL_NAMES),
            [
                "score_autoencoder",
                "score_iforest",
                "score_rf",
                "decision_autoencoder",
                "decision_iforest",
                "decision_rf",
                "decision",
                "ensemble_score"
            ]
        );
    }
}
