//! Section 7: Detection on a capture file: `netanom run --pcap` end to end, models included, on one
//! core, beside `netanom features` (the flow table alone) on the same capture.
use std::{
    os::unix::process::CommandExt as _,
    path::Path,
    process::{Command, Stdio},
    time::Instant,
};

use anyhow::{Context as _, bail};
use netanom_lab::{TempDir, synthetic};
use serde_json::Value;

use crate::{
    agent::agent_bin,
    report::{Report, median},
};

const NOTE: &str = "A synthetic gateway capture (`netanom_lab::synthetic`: clients' TLS-like \
    TCP sessions, one in five over IPv6, DNS lookups, a 100,000-frame UDP flood and a \
    10,000-port SYN scan) replayed by the release binary pinned to one CPU, median of three \
    runs. *Baseline*: `netanom features` on the same file (parsing and the flow table, CSV to \
    /dev/null). *run --pcap*: the whole detector (flow table, aggregates, feature vectors, the \
    embedded bundle's three models, detection, the response), alerts to a file. *packets/s* \
    is frames over the command's wall time, start-up (ONNX Runtime, the bundle) included; \
    *in-loop* excludes it (the summary's `elapsed_s`). Target: at least 300,000 packets/s.";

/// One configuration measured: (label, extra arguments of `netanom run --pcap`).
const RUNS: [(&str, &[&str]); 5] = [
    ("run --pcap, observe", &["--mode", "observe"]),
    ("run --pcap, mitigate", &["--mode", "mitigate"]),
    (
        "run --pcap, aggregates only (no models)",
        &["--mode", "mitigate", "--detectors", "aggregates"],
    ),
    (
        "run --pcap, without the beacon detector",
        &["--mode", "mitigate", "--detectors", "models,aggregates"],
    ),
    (
        "run --pcap, beacon detector only",
        &["--mode", "mitigate", "--detectors", "beacons"],
    ),
];

pub(crate) fn offline(r: &mut Report, quick: bool) -> anyhow::Result<()> {
    r.section(
        "Detection on a capture file (`netanom run --pcap`, one core)",
        NOTE,
    );
    let dir = TempDir::new("bench-offline");
    let pcap = dir.path("mixed.pcap");
    let w = synthetic::write_mixed(&pcap, if quick { 10_000 } else { 40_000 })?;
    r.line(format!(
        "Capture: {} frames over {:.0} s of capture time ({:.1} MB).",
        w.frames,
        w.duration_s,
        std::fs::metadata(&pcap)?.len() as f64 / 1e6
    ));
    r.line(String::new());
    r.line("| command | wall s | packets/s | in-loop packets/s | flows | vectors scored | alerts | frames dropped | vs baseline |".into());
    r.line("|---|---:|---:|---:|---:|---:|---:|---:|---:|".into());
    let trials = 3;
    let walls: Vec<f64> = (0..trials)
        .map(|_| features_wall(&pcap))
        .collect::<anyhow::Result<_>>()?;
    let base = median(walls);
    let frames = w.frames as f64;
    r.line(format!(
        "| `netanom features` (baseline) | {base:.2} | {:.0} | | | | | | 1.00× |",
        frames / base
    ));
    for (label, extra) in RUNS {
        let mut runs = Vec::new();
        for i in 0..trials {
            runs.push(run_pcap(&pcap, &dir.path(&format!("alerts-{i}.jsonl")), extra)?);
        }
        runs.sort_by(|a, b| a.0.total_cmp(&b.0));
        let (wall, s) = &runs[runs.len() / 2];
        let n = |k: &str| s[k].as_u64().unwrap_or(0);
        r.line(format!(
            "| `{label}` | {wall:.2} | {:.0} | {:.0} | {} | {} | {} | {} | {:.2}× |",
            frames / wall,
            s["packets_per_s"].as_f64().unwrap_or(0.0),
            s["flows"]["exported"]
                .as_object()
                .map_or(0, |m| m.values().filter_map(Value::as_u64).sum()),
            s["scoring"]["scored"].as_u64().unwrap_or(0),
            n("alerts"),
            s["dropped"]["blocked"].as_u64().unwrap_or(0)
                + s["dropped"]["rate_limited"].as_u64().unwrap_or(0),
            base / wall
        ));
    }
    Ok(())
}

/// A command for the agent binary, pinned to the CPU this process runs on.
fn pinned(args: &[&str]) -> Command {
    let mut c = Command::new(agent_bin());
    c.args(args).stdin(Stdio::null()).env("RUST_LOG", "warn");
    // SAFETY: sched_setaffinity on the child between fork and exec; no allocation.
    unsafe {
        c.pre_exec(|| {
            let cpu = libc::sched_getcpu().max(0) as usize;
            let mut one: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(cpu, &mut one);
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &one);
            Ok(())
        });
    }
    c
}

/// Wall seconds of `netanom features` on `pcap`.
fn features_wall(pcap: &Path) -> anyhow::Result<f64> {
    let t = Instant::now();
    let out = pinned(&[
        "features",
        "--pcap",
        &pcap.to_string_lossy(),
        "--out",
        "/dev/null",
    ])
    .stdout(Stdio::null())
    .output()
    .context("running netanom features")?;
    if !out.status.success() {
        bail!(
            "netanom features failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(t.elapsed().as_secs_f64())
}

/// Wall seconds of `netanom run --pcap` on `pcap`, and its JSON summary.
fn run_pcap(pcap: &Path, alerts: &Path, extra: &[&str]) -> anyhow::Result<(f64, Value)> {
    let _ = std::fs::remove_file(alerts);
    let (p, a) = (pcap.to_string_lossy(), alerts.to_string_lossy());
    let mut args = vec!["run", "--pcap", &p, "--alerts", &a, "--stats-format", "json"];
    args.extend_from_slice(extra);
    let t = Instant::now();
    let out = pinned(&args).output().context("running netanom run --pcap")?;
    let wall = t.elapsed().as_secs_f64();
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        bail!("netanom run --pcap failed: {stderr}");
    }
    let last = stderr
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .context("no JSON summary")?;
    Ok((wall, serde_json::from_str(last)?))
}
