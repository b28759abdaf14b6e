//! What `netanom run --pcap` did, for people (several lines on stderr) and for programs
//! (`--stats-format json`: one JSON object).
use std::{collections::BTreeMap, fmt, time::Duration};

use netanom_common::{Event, time::EveTime};
use serde::Serialize;

use super::datapath::DropCounts;
use crate::{
    detect::Kind,
    sources::capture::{FrameCounts, InputSummary, TableStats},
    telemetry::{ResponseTotals, ScoreCounters},
};

/// One capture file.
#[derive(Debug, Serialize)]
pub struct FileSummary {
    pub path: String,
    pub format: String,
    pub frames: u64,
    /// Why it was not read to its end, if it was not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stopped: Option<String>,
}

impl FileSummary {
    pub fn of(i: &InputSummary) -> FileSummary {
        FileSummary {
            path: i.path.display().to_string(),
            format: i.format.to_string(),
            frames: i.frames,
            stopped: i.stopped.as_ref().map(ToString::to_string),
        }
    }
}

/// Flows, as the flow table counted them.
#[derive(Debug, Serialize)]
pub struct FlowSummary {
    pub started: u64,
    /// Exported, by reason (`fin`, `rst`, `active_timeout`, `idle_timeout`, `flush`).
    pub exported: BTreeMap<&'static str, u64>,
}

/// The whole run.
#[derive(Debug, Serialize)]
pub struct CaptureSummary {
    pub files: Vec<FileSummary>,
    /// `observe` or `mitigate`.
    pub mode: &'static str,
    pub detectors: Vec<&'static str>,
    pub frames: u64,
    pub ip_packets: u64,
    pub skipped_non_ip: u64,
    /// Malformed frames, by the parser's reason.
    pub skipped_malformed: BTreeMap<&'static str, u64>,
    pub out_of_order: u64,
    /// First and last frame time (EVE format), and the time between.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last: Option<String>,
    pub capture_s: f64,
    /// Aggregate intervals drained (silent stretches of capture are skipped).
    pub intervals: u64,
    pub flows: FlowSummary,
    /// Flow vectors scored, and the anomalies of each model and of the ensemble.
    pub scoring: ScoreCounters,
    /// Findings by kind (every kind listed).
    pub findings: BTreeMap<&'static str, u64>,
    pub alerts: u64,
    pub alert_write_errors: u64,
    pub blocks: u64,
    pub rate_limits: u64,
    pub would_block: u64,
    pub allowlisted: u64,
    /// Frames the simulated mitigation dropped, and those an allowlist entry saved.
    pub dropped: DropCounts,
    pub elapsed_s: f64,
    pub packets_per_s: f64,
}

/// The parts a summary is made of.
pub struct Parts<'a> {
    pub files: &'a [InputSummary],
    pub mode: &'static str,
    pub detectors: Vec<&'static str>,
    pub frames: &'a FrameCounts,
    pub table: &'a TableStats,
    pub scoring: ScoreCounters,
    pub response: ResponseTotals,
    pub drops: DropCounts,
    pub intervals: u64,
    pub elapsed: Duration,
}

impl CaptureSummary {
    pub fn new(p: Parts<'_>) -> CaptureSummary {
        let f = p.frames;
        let x = &p.table.exported;
        let r = &p.response;
        let elapsed_s = p.elapsed.as_secs_f64();
        CaptureSummary {
            files: p.files.iter().map(FileSummary::of).collect(),
            mode: p.mode,
            detectors: p.detectors,
            frames: f.read,
            ip_packets: f.ip_packets,
            skipped_non_ip: f.non_ip,
            skipped_malformed: Event::ALL
                .iter()
                .filter(|e| f.malformed[**e as usize] > 0)
                .map(|e| (e.name(), f.malformed[*e as usize]))
                .collect(),
            out_of_order: f.out_of_order,
            first: f.first_ts_ns.map(|t| EveTime(t).to_string()),
            last: f.last_ts_ns.map(|t| EveTime(t).to_string()),
            capture_s: match (f.first_ts_ns, f.last_ts_ns) {
                (Some(a), Some(b)) => b.saturating_sub(a) as f64 / 1e9,
                _ => 0.0,
            },
            intervals: p.intervals,
            flows: FlowSummary {
                started: p.table.flows_started,
                exported: BTreeMap::from([
                    ("fin", x.fin),
                    ("rst", x.rst),
                    ("active_timeout", x.active_timeout),
                    ("idle_timeout", x.idle_timeout),
                    ("flush", x.flush),
                ]),
            },
            scoring: p.scoring,
            findings: Kind::ALL
                .iter()
                .map(|k| (k.as_str(), r.findings_by_kind[k.index()]))
                .collect(),
            alerts: r.alerts,
            alert_write_errors: r.alert_errors,
            blocks: r.blocks_added,
            rate_limits: r.rate_limits_added,
            would_block: r.would_block,
            allowlisted: r.allowlisted,
            dropped: p.drops,
            elapsed_s,
            packets_per_s: if elapsed_s > 0.0 {
                f.read as f64 / elapsed_s
            } else {
                0.0
            },
        }
    }

    /// Flows exported, every reason.
    pub fn flows_exported(&self) -> u64 {
        self.flows.exported.values().sum()
    }

    /// Findings, every kind.
    pub fn findings_total(&self) -> u64 {
        self.findings.values().sum()
    }
}

/// `name n, name n` for the non-zero entries, or `none`.
fn nonzero(m: &BTreeMap<&'static str, u64>) -> String {
    let parts: Vec<String> = m
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(k, n)| format!("{k} {n}"))
        .collect();
    if parts.is_empty() {
        "none".into()
    } else {
        parts.join(", ")
    }
}

impl fmt::Display for CaptureSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for file in &self.files {
            let stop = if file.stopped.is_some() {
                ", stopped early (see below)"
            } else {
                ""
            };
            writeln!(
                f,
                "netanom: {} ({}): {} frames{stop}",
                file.path, file.format, file.frames
            )?;
        }
        writeln!(
            f,
            "netanom: {} frames, {} IP packets, {} skipped ({} not IP, malformed: {}); {} out of order; {:.3} s of capture",
            self.frames,
            self.ip_packets,
            self.skipped_non_ip + self.skipped_malformed.values().sum::<u64>(),
            self.skipped_non_ip,
            nonzero(&self.skipped_malformed),
            self.out_of_order,
            self.capture_s
        )?;
        writeln!(
            f,
            "netanom: {} flows started, {} exported ({}); {} vectors scored, {} anomalous (ensemble)",
            self.flows.started,
            self.flows_exported(),
            nonzero(&self.flows.exported),
            self.scoring.scored,
            self.scoring.anomalies(crate::pipeline::scoring::ENSEMBLE)
        )?;
        writeln!(
            f,
            "netanom: {} findings ({}); {} alerts; {} mode: {} blocks, {} rate limits, {} would-block, {} allowlisted",
            self.findings_total(),
            nonzero(&self.findings),
            self.alerts,
            self.mode,
            self.blocks,
            self.rate_limits,
            self.would_block,
            self.allowlisted
        )?;
        write!(
            f,
            "netanom: {} frames dropped ({} blocked, {} rate-limited), {} passed as allowlisted, {} answers to dropped frames not accounted; {:.3} s, {:.0} packets/s",
            self.dropped.dropped(),
            self.dropped.blocked,
            self.dropped.rate_limited,
            self.dropped.passed_allowlisted,
            self.dropped.answers_to_dropped,
            self.elapsed_s,
            self.packets_per_s
        )
    }
}
