//! Running the agent on a capture: `netanom run --pcap FILE --mode mitigate --detectors D
//! --alerts OUT --stats-format json`, once per configuration.
use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::Mutex,
    time::Instant,
};

use serde::Serialize;
use serde_json::Value;

use super::alerts::{Alert, parse_lines};

/// What detects, in one run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Config {
    /// Models, aggregates and beacons: the agent as shipped.
    All,
    /// Baseline without the models (nor the beacon detector).
    Aggregates,
    /// Baseline without the aggregates (nor the beacon detector).
    Models,
    /// The beacon detector alone (sequence model and periodicity rule).
    Beacons,
}

impl Config {
    /// Every configuration, in the report's order.
    pub const ALL: [Config; 4] = [Config::All, Config::Aggregates, Config::Models, Config::Beacons];

    /// `--detectors`.
    pub fn detectors(self) -> &'static str {
        match self {
            Config::All => "models,aggregates,beacons",
            Config::Aggregates => "aggregates",
            Config::Models => "models",
            Config::Beacons => "beacons",
        }
    }

    /// The name in the report.
    pub fn name(self) -> &'static str {
        match self {
            Config::All => "all (models + aggregates + beacons)",
            Config::Aggregates => "aggregates only",
            Config::Models => "models only",
            Config::Beacons => "beacons only",
        }
    }

    /// Short name, for file names and JSON keys.
    pub fn key(self) -> &'static str {
        match self {
            Config::All => "all",
            Config::Aggregates => "aggregates",
            Config::Models => "models",
            Config::Beacons => "beacons",
        }
    }
}

/// One run's outcome.
#[derive(Clone, Debug)]
pub struct Run {
    /// The alerts it wrote.
    pub alerts: Vec<Alert>,
    /// The agent's summary (`--stats-format json`, stderr's last line).
    pub summary: Value,
    /// Wall-clock seconds it took.
    pub wall_s: f64,
}

/// One run to do.
pub struct Job {
    /// The capture file.
    pub capture: PathBuf,
    /// What detects.
    pub config: Config,
    /// Where its alerts go.
    pub alerts: PathBuf,
}

/// Runs `bin` on one capture.
pub fn run_one(bin: &Path, job: &Job) -> Result<Run, String> {
    let _ = std::fs::remove_file(&job.alerts);
    let t = Instant::now();
    let out = Command::new(bin)
        .args(["run", "--pcap"])
        .arg(&job.capture)
        .args([
            "--mode",
            "mitigate",
            "--detectors",
            job.config.detectors(),
            "--stats-format",
            "json",
            "--alerts",
        ])
        .arg(&job.alerts)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
    let wall_s = t.elapsed().as_secs_f64();
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        let tail: Vec<&str> = stderr.lines().rev().take(5).collect();
        return Err(format!(
            "`netanom run --pcap {} --detectors {}` failed ({}): {}",
            job.capture.display(),
            job.config.detectors(),
            out.status,
            tail.into_iter().rev().collect::<Vec<_>>().join(" / ")
        ));
    }
    let summary = stderr
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))
        .and_then(|l| serde_json::from_str(l).ok())
        .ok_or_else(|| format!("no JSON summary on stderr's last lines: {}", stderr.trim()))?;
    let text = std::fs::read_to_string(&job.alerts).unwrap_or_default();
    let alerts = parse_lines(&text).map_err(|e| format!("{}: {e}", job.alerts.display()))?;
    Ok(Run {
        alerts,
        summary,
        wall_s,
    })
}

/// Runs every job on `workers` threads; results in the jobs' order.
pub fn run_all(bin: &Path, jobs: &[Job], workers: usize) -> Vec<Result<Run, String>> {
    let next = Mutex::new(0usize);
    let results: Mutex<Vec<Option<Result<Run, String>>>> = Mutex::new(vec![None; jobs.len()]);
    std::thread::scope(|s| {
        for _ in 0..workers.max(1) {
            s.spawn(|| {
                loop {
                    let i = {
                        let mut n = next.lock().unwrap_or_else(|p| p.into_inner());
                        let i = *n;
                        *n += 1;
                        i
                    };
                    let Some(job) = jobs.get(i) else { break };
                    let r = run_one(bin, job);
                    results.lock().unwrap_or_else(|p| p.into_inner())[i] = Some(r);
                }
            });
        }
    });
    results
        .into_inner()
        .unwrap_or_else(|p| p.into_inner())
        .into_iter()
        .map(|r| r.unwrap_or_else(|| Err("not run".into())))
        .collect()
}
