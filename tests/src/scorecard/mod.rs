//! The detection scorecard behind `cargo xtask scorecard`: every capture of the corpus through
//! `netanom run --pcap` in mitigate mode, once per [`Config`], its alerts scored against the
//! manifest's labels ([`score`]), and the report ([`report`]).
pub mod alerts;
pub mod report;
pub mod run;
pub mod score;

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use anyhow::{Context, Result};

pub use run::Config;

use crate::corpus::{
    capture::{Roles, facts},
    manifest::{Entry, Manifest},
};
use report::{CaptureReport, ConfigResult, Report};

/// What to score, with what, and where the results go.
pub struct Options {
    /// The agent (a release build: the scorecard is also a throughput run).
    pub bin: PathBuf,
    /// The corpus (its manifest.toml and recorded captures).
    pub corpus_dir: PathBuf,
    /// The shared data directory, for the `shared:` captures.
    pub shared_dir: Option<PathBuf>,
    /// `report.md`, `report.json` and `alerts/` go here.
    pub out_dir: PathBuf,
    /// Only these scenarios (all when empty).
    pub only: Vec<String>,
    /// Runs at the same time.
    pub workers: usize,
}

/// Runs the scorecard and writes the report; returns it.
pub fn scorecard(o: &Options) -> Result<Report> {
    let manifest = Manifest::load(&o.corpus_dir.join("manifest.toml"))?;
    if let Some(unknown) = o.only.iter().find(|n| manifest.get(n).is_none()) {
        anyhow::bail!("no capture `{unknown}` in {}", manifest.path.display());
    }
    let chosen: Vec<&Entry> = manifest
        .entries
        .iter()
        .filter(|e| o.only.is_empty() || o.only.contains(&e.scenario))
        .collect();
    let alerts_dir = o.out_dir.join("alerts");
    std::fs::create_dir_all(&alerts_dir).with_context(|| format!("creating {}", alerts_dir.display()))?;
    let mut skipped = Vec::new();
    let mut present = Vec::new();
    for e in chosen {
        match e.path(&o.corpus_dir, o.shared_dir.as_deref()) {
            Some(p) => present.push((e, p)),
            None => skipped.push(e.scenario.clone()),
        }
    }
    let jobs: Vec<run::Job> = present
        .iter()
        .flat_map(|(e, p)| {
            Config::ALL.map(|config| run::Job {
                capture: p.clone(),
                config,
                alerts: alerts_dir.join(format!("{}.{}.json", e.scenario, config.key())),
            })
        })
        .collect();
    let mut runs = run::run_all(&o.bin, &jobs, o.workers).into_iter();
    let mut captures = Vec::new();
    for (e, path) in &present {
        let results: Vec<_> = runs.by_ref().take(Config::ALL.len()).collect();
        captures.push(capture_report(e, path, results)?);
    }
    let totals = Config::ALL
        .iter()
        .map(|c| report::totals(*c, &captures))
        .collect();
    let r = Report {
        agent: agent_version(&o.bin),
        manifest: relative(&manifest.path),
        captures,
        totals,
        skipped,
    };
    write(o, &r)?;
    Ok(r)
}

fn capture_report(e: &Entry, path: &Path, results: Vec<Result<run::Run, String>>) -> Result<CaptureReport> {
    let roles = Roles::of(e);
    let f = facts(path, &roles).with_context(|| format!("reading {}", path.display()))?;
    let subject = score::Subject {
        label: e.label,
        expected: e.expected,
        roles: &roles,
        facts: &f,
    };
    let mut by_config = BTreeMap::new();
    for (c, r) in Config::ALL.iter().zip(results) {
        let result = match r {
            Ok(run) => ConfigResult {
                score: Some(score::score(&subject, &run.alerts)),
                error: None,
                summary: run.summary,
                wall_s: run.wall_s,
            },
            Err(err) => ConfigResult {
                score: None,
                error: Some(err),
                summary: serde_json::Value::Null,
                wall_s: 0.0,
            },
        };
        by_config.insert(c.key(), result);
    }
    Ok(CaptureReport {
        entry: e.clone(),
        frames: f.frames,
        duration_s: f.duration_s(),
        attack_start_s: f
            .attack_start_ns
            .map(|t| t.saturating_sub(f.first_ns) as f64 / 1e9),
        results: by_config,
    })
}

fn agent_version(bin: &Path) -> String {
    std::process::Command::new(bin)
        .arg("--version")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "netanom".into())
}

/// `path` relative to the workspace root, when it is inside it.
fn relative(path: &Path) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let root = root.canonicalize().unwrap_or(root);
    let p = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    p.strip_prefix(&root).unwrap_or(&p).display().to_string()
}

fn write(o: &Options, r: &Report) -> Result<()> {
    let md = o.out_dir.join("report.md");
    std::fs::write(&md, report::markdown(r)).with_context(|| format!("writing {}", md.display()))?;
    let json = o.out_dir.join("report.json");
    let text = serde_json::to_string_pretty(r).context("encoding the report")?;
    std::fs::write(&json, text + "\n").with_context(|| format!("writing {}", json.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests;
