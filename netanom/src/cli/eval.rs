//! `netanom eval`: a bundle on a labelled CSV file: ROC-AUC, PR-AUC, precision, recall, F1.
use std::path::PathBuf;

use super::args::EngineArgs;
use crate::model::table::{EvalReport, LabelRule, default_normal, eval_csv};

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

/// Runs `netanom eval`: prints the metrics and returns them.
pub fn run(args: &EvalArgs) -> anyhow::Result<EvalReport> {
    let rule = LabelRule {
        positive: args.positive.clone(),
        normal: args.normal.clone(),
    };
    let report = eval_csv(args.engine.load()?, &args.input, &args.label_column, &rule)?;
    print_report(args, &report);
    Ok(report)
}

fn print_report(args: &EvalArgs, r: &EvalReport) {
    let opt = |x: Option<f64>| x.map_or("n/a".to_owned(), |x| format!("{x:.4}"));
    println!(
        "bundle {} (dataset {}, ensemble rule {}, {} provider)",
        args.engine.bundle.display(),
        r.dataset,
        r.rule,
        r.provider
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
    for s in &r.scorers {
        let t = s.threshold;
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
