//! The scorecard's report: per capture and configuration, totals per configuration, written
//! as Markdown (`report.md`) and JSON (`report.json`).
use std::collections::BTreeMap;

use serde::Serialize;

use super::{
    run::Config,
    score::{Score, median},
};
use crate::corpus::manifest::{Entry, Expected, Label};

/// One configuration's result on one capture.
#[derive(Clone, Debug, Serialize)]
pub struct ConfigResult {
    /// `None` when the run failed (see `error`).
    pub score: Option<Score>,
    /// Why the run failed.
    pub error: Option<String>,
    /// The agent's own summary of the run.
    pub summary: serde_json::Value,
    /// Wall-clock seconds the run took.
    pub wall_s: f64,
}

/// One capture's results.
#[derive(Clone, Debug, Serialize)]
pub struct CaptureReport {
    /// Its manifest entry.
    pub entry: Entry,
    /// Frames in the capture.
    pub frames: u64,
    /// Capture time from the first to the last frame.
    pub duration_s: f64,
    /// Seconds from the first frame to the attack's first frame.
    pub attack_start_s: Option<f64>,
    /// By [`Config::key`].
    pub results: BTreeMap<&'static str, ConfigResult>,
}

impl CaptureReport {
    fn score(&self, c: Config) -> Option<&Score> {
        self.results.get(c.key()).and_then(|r| r.score.as_ref())
    }
}

/// Totals of one configuration.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Totals {
    /// [`Config::key`].
    pub config: &'static str,
    /// Attack captures scored.
    pub attacks: usize,
    /// Attacks with an alert about them.
    pub detected: usize,
    /// Attacks that got the expected response.
    pub outcome_met: usize,
    /// Median time to the first alert, over the detected attacks.
    pub median_first_alert_s: Option<f64>,
    /// Median time to the block or rate limit, over the attacks that got one.
    pub median_block_s: Option<f64>,
    /// Summed over captures (a host counts once per capture).
    pub innocents_alerted: usize,
    /// (Likewise for blocked innocents.)
    pub innocents_blocked: usize,
    /// Blocks covering neither an attacker nor an innocent.
    pub other_blocks: usize,
    /// Benign captures scored.
    pub benign_captures: usize,
    /// Their capture time, in hours.
    pub benign_hours: f64,
    /// Alerts on them.
    pub benign_alerts: usize,
    /// Alerts per hour of benign capture time.
    pub benign_alerts_per_hour: Option<f64>,
    /// Blocks and rate limits on them.
    pub benign_blocks: usize,
    /// Attacks with no alert about them.
    pub missed: Vec<String>,
    /// Runs that failed.
    pub errors: usize,
}

/// The whole report.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// The agent's `--version`.
    pub agent: String,
    /// The manifest, relative to the workspace.
    pub manifest: String,
    /// In the manifest's order.
    pub captures: Vec<CaptureReport>,
    /// By [`Config::key`], in [`Config::ALL`]'s order.
    pub totals: Vec<Totals>,
    /// Captures not scored (shared captures without the shared directory).
    pub skipped: Vec<String>,
}

/// The totals of `c` over `captures`.
pub fn totals(c: Config, captures: &[CaptureReport]) -> Totals {
    let mut t = Totals {
        config: c.key(),
        ..Totals::default()
    };
    let (mut first, mut block) = (Vec::new(), Vec::new());
    for cap in captures {
        let Some(s) = cap.score(c) else {
            t.errors += 1;
            continue;
        };
        t.innocents_alerted += s.innocents_alerted.len();
        t.innocents_blocked += s.innocents_blocked.len();
        t.other_blocks += s.other_blocks;
        match cap.entry.label {
            Label::Benign => {
                t.benign_captures += 1;
                t.benign_hours += cap.duration_s / 3600.0;
                t.benign_alerts += s.alerts;
                t.benign_blocks += s.blocks + s.rate_limits;
            }
            Label::Attack => {
                t.attacks += 1;
                t.detected += usize::from(s.detected);
                t.outcome_met += usize::from(s.outcome_met);
                first.extend(s.first_alert_s);
                block.extend(s.block_s);
                if !s.detected {
                    t.missed.push(cap.entry.scenario.clone());
                }
            }
        }
    }
    t.median_first_alert_s = median(&first);
    t.median_block_s = median(&block);
    t.benign_alerts_per_hour = (t.benign_hours > 0.0).then(|| t.benign_alerts as f64 / t.benign_hours);
    t
}

fn secs(v: Option<f64>) -> String {
    v.map_or("—".into(), |s| format!("{s:.2} s"))
}

fn list(v: &[String]) -> String {
    if v.is_empty() { "—".into() } else { v.join(", ") }
}

fn yes(b: bool) -> &'static str {
    if b { "yes" } else { "**no**" }
}

/// The totals table (also README's summary).
pub fn totals_table(totals: &[Totals]) -> String {
    let mut s = String::from(
        "| configuration | attacks detected | expected response | median time to first alert | median time to block | innocents alerted / blocked | other blocks | benign alerts per hour | benign blocks |\n\
         |---|---|---|---|---|---|---|---|---|\n",
    );
    for (t, c) in totals.iter().zip(Config::ALL) {
        s.push_str(&format!(
            "| {} | {} / {} | {} / {} | {} | {} | {} / {} | {} | {} | {} |\n",
            c.name(),
            t.detected,
            t.attacks,
            t.outcome_met,
            t.attacks,
            secs(t.median_first_alert_s),
            secs(t.median_block_s),
            t.innocents_alerted,
            t.innocents_blocked,
            t.other_blocks,
            t.benign_alerts_per_hour.map_or("—".into(), |r| format!("{r:.1}")),
            t.benign_blocks,
        ));
    }
    s
}

/// The Markdown report.
pub fn markdown(r: &Report) -> String {
    let mut s = format!(
        "# Detection scorecard\n\n\
         `cargo xtask scorecard`: every capture of `{}` through `netanom run --pcap FILE --mode mitigate` \
         ({}), four times: with all detectors, with the aggregates only, with the models only, and \
         with the beacon detector only. Times are capture time from the attack's first frame.\n\n\
         ## Totals\n\n{}\n\
         Attacks detected: at least one alert about the attack. Expected response: the attacker \
         blocked (block_source), a rate limit toward the victim (victim_rate_limit), an alert \
         (alert_only). The medians are over the attacks that got an alert, and a block or rate \
         limit. Innocents: the hosts the manifest calls innocent, the victims, and every host of \
         a benign capture; other blocks cover neither an attacker nor an innocent (spoofed \
         sources, reflectors).\n\n{}",
        r.manifest,
        r.agent,
        totals_table(&r.totals),
        contributions(&r.captures)
    );
    s.push_str("## Missed attacks\n\n");
    for (t, c) in r.totals.iter().zip(Config::ALL) {
        if t.missed.is_empty() {
            s.push_str(&format!("- **{}** detects every attack.\n", c.name()));
        } else {
            s.push_str(&format!(
                "- **{}** misses {} of {} attacks: {}.\n",
                c.name(),
                t.missed.len(),
                t.attacks,
                t.missed.join(", ")
            ));
        }
        if t.errors > 0 {
            s.push_str(&format!("  {} runs **failed**; see below.\n", t.errors));
        }
    }
    if !r.skipped.is_empty() {
        s.push_str(&format!(
            "\nNot scored (the shared data directory is missing): {}.\n",
            r.skipped.join(", ")
        ));
    }
    s.push_str("\n## Per capture\n");
    for cap in &r.captures {
        s.push_str(&capture_section(cap));
    }
    s
}

/// The `label` captures where `pred` holds of the (aggregates only, models only) scores.
fn scenarios_where(
    captures: &[CaptureReport],
    label: Label,
    pred: impl Fn(&Score, &Score) -> bool,
) -> String {
    let names: Vec<String> = captures
        .iter()
        .filter(|c| c.entry.label == label)
        .filter(|c| match (c.score(Config::Aggregates), c.score(Config::Models)) {
            (Some(a), Some(m)) => pred(a, m),
            _ => false,
        })
        .map(|c| c.entry.scenario.clone())
        .collect();
    list(&names)
}

/// What each part adds: attacks only one of them detects, benign alerts only one raises.
fn contributions(captures: &[CaptureReport]) -> String {
    format!(
        "## What each part adds\n\n\
         - Detected by the aggregates and missed by the models: {}.\n\
         - Detected by the models and missed by the aggregates: {}.\n\
         - Benign captures alerted on by the models: {}; by the aggregates: {}.\n\n",
        scenarios_where(captures, Label::Attack, |a, m| a.detected && !m.detected),
        scenarios_where(captures, Label::Attack, |a, m| m.detected && !a.detected),
        scenarios_where(captures, Label::Benign, |_, m| m.alerts > 0),
        scenarios_where(captures, Label::Benign, |a, _| a.alerts > 0),
    )
}

fn capture_section(cap: &CaptureReport) -> String {
    let e = &cap.entry;
    let cidrs = |v: &[netanom::respond::prefix::Cidr]| -> String {
        list(&v.iter().map(ToString::to_string).collect::<Vec<_>>())
    };
    let mut s = format!(
        "\n### {} ({}, expected: {})\n\n{} — `{}`. {} frames over {:.1} s{}. Attackers {}; victims {}; innocents {}.\n\n",
        e.scenario,
        e.label,
        e.expected.name(),
        e.description,
        if e.command.is_empty() {
            "command unknown"
        } else {
            &e.command
        },
        cap.frames,
        cap.duration_s,
        cap.attack_start_s
            .map_or(String::new(), |t| format!(", attack from {t:.1} s")),
        cidrs(&e.attackers),
        cidrs(&e.victims),
        cidrs(&e.innocents),
    );
    if e.label == Label::Benign {
        s.push_str(
            "| configuration | alerts | alerts per hour | blocks | hosts alerted |\n|---|---|---|---|---|\n",
        );
    } else {
        s.push_str(
            "| configuration | detected | first alert | block | caught by | innocents alerted | innocents blocked | other blocks | alerts (false) |\n\
             |---|---|---|---|---|---|---|---|---|\n",
        );
    }
    let mut missed = Vec::new();
    for c in Config::ALL {
        let row = match cap.results.get(c.key()) {
            Some(ConfigResult { score: Some(sc), .. }) => {
                if e.label == Label::Attack && !sc.detected {
                    missed.push(c.name());
                }
                score_row(e.label, sc)
            }
            Some(ConfigResult { error: Some(err), .. }) => format!("run failed: {err} |"),
            _ => "not run |".into(),
        };
        s.push_str(&format!("| {} | {row}\n", c.name()));
    }
    if e.label == Label::Attack {
        s.push_str(&verdict(e.expected, &missed));
    }
    s
}

fn score_row(label: Label, sc: &Score) -> String {
    match label {
        Label::Benign => format!(
            "{} | {} | {} | {} |",
            sc.alerts,
            sc.alerts_per_hour.map_or("—".into(), |r| format!("{r:.1}")),
            sc.blocks + sc.rate_limits,
            list(&sc.innocents_alerted)
        ),
        Label::Attack => format!(
            "{} | {} | {} | {} | {} | {} | {} | {} ({}) |",
            yes(sc.detected),
            secs(sc.first_alert_s),
            secs(sc.block_s),
            list(&sc.kinds),
            list(&sc.innocents_alerted),
            list(&sc.innocents_blocked),
            sc.other_blocks,
            sc.alerts,
            sc.false_alerts
        ),
    }
}

fn verdict(expected: Expected, missed: &[&str]) -> String {
    match missed.len() {
        0 => String::new(),
        3 => format!(
            "\n**Missed**: no configuration raises a single alert about this attack (expected: {}).\n",
            expected.name()
        ),
        _ => format!("\n**Missed** by {}.\n", missed.join(" and ")),
    }
}
