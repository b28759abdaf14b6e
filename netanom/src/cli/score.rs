//! `netanom score`: a bundle over the rows of a CSV file; appends per-model scores and
//! decisions.
use std::{
    fs::File,
    io::{self, BufWriter, Write},
    path::PathBuf,
};

use anyhow::{Context as _, bail};

use super::args::EngineArgs;
use crate::model::table::{Input, ScoreSummary, score_csv};

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

/// Runs `netanom score`: the output goes to `--out` (never the input) or standard output.
pub fn run(args: &ScoreArgs) -> anyhow::Result<ScoreSummary> {
    let bundle = args.engine.load()?;
    // The input is checked before the output is created: a bad input leaves no empty file.
    let input = Input::open(&args.input, &bundle)?;
    let (dest, mut out): (String, Box<dyn Write>) = match &args.out {
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
    score_csv(bundle, input, &mut out, &dest)
}
