//! `netanom score` and `netanom eval`: a bundle over a CSV file.
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
    io::{self, BufRead, BufReader, BufWriter, Write},
    path::{Path, PathBuf},
};

use anyhow::{Context as _, anyhow, bail};

use super::{
    Bundle, BundleOptions, ExecutionProvider, MODEL_NAMES, Scorer,
    csv::{self, Record},
    metrics::{self, Confusion},
};
use crate::onnx;

/// Rows scored per call to ONNX Runtime by the CSV commands.
pub const CSV_BATCH: usize = 1024;

/// Options shared by `score` and `eval`: the bundle and how it runs.
#[derive(Debug, Clone, clap::Args)]
pub struct EngineArgs {
    /// Model bundle directory (manifest.json, autoencoder.onnx, iforest.onnx, rf.onnx).
    #[arg(long, value_name = "DIR")]
    pub bundle: PathBuf,
    /// Intra-op threads per model (inter-op parallelism is always 1).
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub threads: u16,
    /// Execution provider; cuda falls back to the CPU, with a warning, when it is not available.
    #[arg(long, value_enum, default_value_t = ExecutionProvider::Cpu)]
    pub provider: ExecutionProvider,
    /// ONNX Runtime shared library (default: searched, see README).
    #[arg(long, value_name = "PATH", env = onnx::ENV_LIB)]
    pub ort_lib: Option<PathBuf>,
}

impl EngineArgs {
    pub fn options(&self) -> BundleOptions {
        BundleOptions {
            intra_threads: usize::from(self.threads),
            provider: self.provider,
            ort_lib: self.ort_lib.clone(),
            ..BundleOptions::default()
        }
    }
    fn load(&self) -> anyhow::Result<Bundle> {
        Ok(Bundle::load_with(&self.bundle, &self.options())?)
    }
}

/// `netanom score`.
#[derive(Debug, Clone, clap::Args)]
pub struct ScoreArgs {
    #[command(flatten)]
    pub engine: EngineArgs,
    /// Input CSV with a header row holding the bundle's raw feature columns.
    #[arg(long, value_name = "FILE")]
    pub input: PathBuf,
    /// Output CSV (default: standard output): every input column, then score_<model>,
    /// decision_<model>, decision and ensemble_score.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

/// `netanom eval`.
#[derive(Debug, Clone, clap::Args)]
pub struct EvalArgs {
    #[command(flatten)]
    pub engine: EngineArgs,
    /// Input CSV with a header row holding the bundle's raw feature columns and a label column.
    #[arg(long, value_name = "FILE")]
    pub input: PathBuf,
    /// The column holding the ground truth.
    #[arg(long, value_name = "NAME")]
    pub label_column: String,
    /// Label value(s) meaning "attack"; every other value is normal. Repeat or separate with
    /// commas. When absent, --normal decides.
    #[arg(long, value_name = "VALUE", value_delimiter = ',')]
    pub positive: Vec<String>,
    /// Label values meaning "normal" (compared case-insensitively); any other value is an
    /// attack, except a number equal to 0. Repeat or separate with commas.
    #[arg(long, value_name = "VALUE", value_delimiter = ',', default_values_t = default_normal())]
    pub normal: Vec<String>,
}

fn default_normal() -> Vec<String> {
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
struct Input {
    path: PathBuf,
    reader: csv::Reader<Box<dyn BufRead>>,
    header: Vec<String>,
    /// For each bundle raw column, its index in the header.
    gather: Vec<usize>,
}

impl Input {
    fn open(path: &Path, bundle: &Bundle) -> anyhow::Result<Input> {
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
pub fn output_columns() -> Vec<String> {
    let mut v: Vec<String> = MODEL_NAMES.iter().map(|m| format!("score_{m}")).collect();
    v.extend(MODEL_NAMES.iter().map(|m| format!("decision_{m}")));
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

/// `netanom score`: appends per-model scores and decisions to every row of the input. On a bad
/// row, the rows before it are scored and written, then the error names its line.
pub fn run_score(args: &ScoreArgs) -> anyhow::Result<ScoreSummary> {
    let bundle = args.engine.load()?;
    let mut input = Input::open(&args.input, &bundle)?;
    let (dest, out): (String, Box<dyn Write>) = match &args.out {
        Some(path) => {
            if let (Ok(a), Ok(b)) = (std::fs::canonicalize(path), std::fs::canonicalize(&args.input))
                && a == b
            {
                bail!(
                    "--out {} is the input file; write the scores to another file",
                    path.display()
                );
            }
            let file =
                File::create(path).with_context(|| format!("cannot create the output {}", path.display()))?;
            (
                path.display().to_string(),
                Box::new(BufWriter::with_capacity(1 << 16, file)),
            )
        }
        None => (
            "standard output".into(),
            Box::new(BufWriter::with_capacity(1 << 16, io::stdout().lock())),
        ),
    };
    let mut out = out;
    let wctx = || format!("cannot write the scores to {dest}");

    // Input columns named like an output column are replaced by the fresh values.
    let outputs = output_columns();
    let keep: Vec<usize> = (0..input.header.len())
        .filter(|&i| !outputs.contains(&input.header[i]))
        .collect();
    if keep.len() < input.header.len() {
        log::warn!(
            "{}: the input's columns {:?} are replaced by this run's scores",
            args.input.display(),
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
        csv::write_field(&mut out, &input.header[i]).with_context(wctx)?;
    }
    for o in &outputs {
        if !first {
            out.write_all(b",")?;
        }
        first = false;
        out.write_all(o.as_bytes()).with_context(wctx)?;
    }
    out.write_all(b"\n").with_context(wctx)?;

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
                    args.input.display(),
                    recs[i].line,
                    scorer.bundle().preprocessor().input_names()[c]
                ));
                // Write only the rows before it.
                n = i;
            }
            let scores = scorer.last();
            summary.unseen += scores.unseen as u64;
            for i in 0..n {
                line.clear();
                let mut first = true;
                for &c in &keep {
                    sep(&mut line, &mut first);
                    csv::write_field(&mut line, recs[i].get(c))?;
                }
                for m in &scores.model {
                    sep(&mut line, &mut first);
                    write!(line, "{}", m[i])?;
                }
                for f in &scores.flagged {
                    sep(&mut line, &mut first);
                    write!(line, "{}", u8::from(f[i]))?;
                }
                sep(&mut line, &mut first);
                writeln!(line, "{},{}", u8::from(scores.anomaly[i]), scores.ensemble[i])?;
                out.write_all(&line).with_context(wctx)?;
                summary.rows += 1;
                summary.anomalies += u64::from(scores.anomaly[i]);
            }
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
    log::info!(
        "scored {} rows of {} with {} ({} provider): {} anomalies{}",
        summary.rows,
        args.input.display(),
        args.engine.bundle.display(),
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
    Ok(summary)
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
    /// The three models, then the ensemble.
    pub scorers: Vec<EvalRow>,
}

impl EvalReport {
    pub fn base_rate(&self) -> f64 {
        self.positives as f64 / self.rows.max(1) as f64
    }
}

/// `netanom eval`: metrics per model and for the ensemble; prints them and returns them.
pub fn run_eval(args: &EvalArgs) -> anyhow::Result<EvalReport> {
    let bundle = args.engine.load()?;
    let mut input = Input::open(&args.input, &bundle)?;
    let shown = args.input.display().to_string();
    let label_col = input
        .header
        .iter()
        .position(|h| *h == args.label_column)
        .ok_or_else(|| {
            anyhow!(
                "{shown}: no column `{}` for --label-column (the header has: {})",
                args.label_column,
                input.header.join(", ")
            )
        })?;
    let rule = LabelRule {
        positive: args.positive.clone(),
        normal: args.normal.clone(),
    };
    let mut scorer = Scorer::new(bundle);
    let width = scorer.row_width();
    let n_models = MODEL_NAMES.len();
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
            labels.push(rule.is_attack(label).map_err(|e| {
                anyhow!(
                    "{shown}: line {}, column `{}`: {e}",
                    recs[n].line,
                    args.label_column
                )
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
    let mut names: Vec<String> = MODEL_NAMES.iter().map(|s| (*s).to_owned()).collect();
    names.push(format!("ensemble ({})", m.rule.name()));
    let report = EvalReport {
        rows: labels.len(),
        positives: labels.iter().filter(|l| **l).count(),
        unseen,
        scorers: names
            .into_iter()
            .enumerate()
            .map(|(i, name)| EvalRow {
                name,
                roc_auc: metrics::roc_auc(&labels, &scores[i]),
                pr_auc: metrics::average_precision(&labels, &scores[i]),
                confusion: Confusion::of(&labels, &flagged[i]),
            })
            .collect(),
    };
    print_report(args, bundle, &report);
    Ok(report)
}

fn print_report(args: &EvalArgs, bundle: &Bundle, r: &EvalReport) {
    let m = bundle.manifest();
    let opt = |x: Option<f64>| x.map_or("n/a".to_owned(), |x| format!("{x:.4}"));
    println!(
        "bundle {} (dataset {}, ensemble rule {}, {} provider)",
        args.engine.bundle.display(),
        m.dataset,
        m.rule.name(),
        bundle.provider()
    );
    println!(
        "input {}: {} rows, {} attacks (label column `{}`), base rate {:.4}",
        args.input.display(),
        r.rows,
        r.positives,
        args.label_column,
        r.base_rate()
    );
    if r.unseen > 0 {
        println!(
            "{} row(s) held a category the bundle does not know (scored with an all-zero one-hot block)",
            r.unseen
        );
    }
    if r.positives == 0 || r.positives == r.rows {
        println!("only one class is present: ROC-AUC is undefined (n/a)");
    }
    println!();
    println!("| model | threshold | ROC-AUC | PR-AUC | precision | recall | F1 | FPR | TP | FP | TN | FN |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (i, s) in r.scorers.iter().enumerate() {
        let t = m
            .models
            .get(i)
            .map_or(m.ensemble_threshold, |spec| spec.threshold);
        let c = &s.confusion;
        println!(
            "| {} | {t:.6} | {} | {} | {:.4} | {:.4} | {:.4} | {:.4} | {} | {} | {} | {} |",
            s.name,
            opt(s.roc_auc),
            opt(s.pr_auc),
            c.precision(),
            c.recall(),
            c.f1(),
            c.fpr(),
            c.tp,
            c.fp,
            c.tn,
            c.fn_
        );
    }
    let b = r.base_rate();
    let all_f1 = if b > 0.0 { 2.0 * b / (b + 1.0) } else { 0.0 };
    println!(
        "| flag everything (base rate) | - | 0.5000 | {b:.4} | {b:.4} | {:.4} | {all_f1:.4} | 1.0000 | {} | {} | 0 | 0 |",
        if r.positives > 0 { 1.0 } else { 0.0 },
        r.positives,
        r.rows - r.positives
    );
}

#[cfg(test)]
mod tests {
    use super::*;

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
            output_columns(),
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
