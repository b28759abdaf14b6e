//! `netanom-scorecard [--only NAME]... [--out DIR]`: the detection scorecard (see
//! `netanom_lab::scorecard`). `$NETANOM_BIN` is the agent (`cargo xtask scorecard` builds it
//! in release mode); the report goes to target/scorecard/ unless `--out` says otherwise.
use std::{path::PathBuf, process::ExitCode};

use netanom_lab::scorecard::{Options, report, scorecard};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let lab = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let root = lab.parent().map_or(lab.clone(), PathBuf::from);
    let mut o = Options {
        bin: netanom_lab::agent_bin(),
        corpus_dir: netanom_lab::corpus::corpus_dir(),
        shared_dir: netanom_lab::shared_dir(),
        out_dir: root.join("target").join("scorecard"),
        only: Vec::new(),
        workers: std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    let mut it = args.into_iter();
    while let Some(a) = it.next() {
        match (a.as_str(), it.next()) {
            ("--only", Some(v)) => o.only.push(v),
            ("--out", Some(v)) => o.out_dir = PathBuf::from(v),
            _ => {
                eprintln!("usage: netanom-scorecard [--only SCENARIO]... [--out DIR]");
                return ExitCode::from(2);
            }
        }
    }
    match scorecard(&o) {
        Ok(r) => {
            print!("{}", report::totals_table(&r.totals));
            println!("report: {}", o.out_dir.join("report.md").display());
            let errors: usize = r.totals.iter().map(|t| t.errors).sum();
            if errors > 0 {
                eprintln!("scorecard: {errors} runs failed; the report says which and why");
                return ExitCode::FAILURE;
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("scorecard: {e:#}");
            ExitCode::FAILURE
        }
    }
}
