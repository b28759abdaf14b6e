//! `netanom-corpus [--only NAME]...`: records the corpus scenarios (all, or the named ones)
//! into tests/corpus/ and writes their manifest entries; then checks the whole corpus against
//! the manifest. Run by `cargo xtask corpus`, which installs the tools first. Needs root.
use std::process::ExitCode;

use netanom_lab::corpus::{self, check, manifest::Manifest, scenarios::SCENARIOS};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut only = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match (a.as_str(), it.clone().next()) {
            ("--only", Some(name)) => {
                only.push(name.clone());
                it.next();
            }
            _ => {
                eprintln!(
                    "usage: netanom-corpus [--only SCENARIO]...\nscenarios: {}",
                    names()
                );
                return ExitCode::from(2);
            }
        }
    }
    if let Some(bad) = only.iter().find(|n| corpus::scenarios::scenario(n).is_none()) {
        eprintln!(
            "netanom-corpus: no scenario `{bad}`; the scenarios are: {}",
            names()
        );
        return ExitCode::from(2);
    }
    if !netanom_lab::require_root() {
        eprintln!("netanom-corpus: recording creates network namespaces: run it as root");
        return ExitCode::FAILURE;
    }
    let dir = corpus::corpus_dir();
    let mut failed = 0;
    for s in SCENARIOS
        .iter()
        .filter(|s| only.is_empty() || only.iter().any(|n| n == s.name))
    {
        println!("recording {} ...", s.name);
        match corpus::record::record(s, &dir) {
            Ok(r) => println!(
                "  {}: {} frames over {:.1} s, {} bytes (took {:.0} s)",
                r.file.display(),
                r.frames,
                r.duration_s,
                r.bytes,
                r.seconds_taken
            ),
            Err(e) => {
                failed += 1;
                eprintln!("  {}: FAILED: {e:#}", s.name);
            }
        }
    }
    let verdict = Manifest::load(&dir.join("manifest.toml"))
        .map(|m| check::check(&m, &dir, netanom_lab::shared_dir().as_deref()));
    match verdict {
        Ok(c) if c.problems.is_empty() && failed == 0 => {
            println!("corpus: {} captures match the manifest", c.checked);
            ExitCode::SUCCESS
        }
        Ok(c) => {
            for p in &c.problems {
                eprintln!("corpus: {p}");
            }
            eprintln!("corpus: {failed} scenarios failed, {} problems", c.problems.len());
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("corpus: {e}");
            ExitCode::FAILURE
        }
    }
}

fn names() -> String {
    SCENARIOS.iter().map(|s| s.name).collect::<Vec<_>>().join(", ")
}
