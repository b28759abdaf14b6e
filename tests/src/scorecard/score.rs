//! Scoring one run's alerts against a capture's labels.
//!
//! - An alert is **about the attack** when its source is an attacker, or its destination is a
//!   victim and its source is not innocent (a victim alert names no single source; a spoofed
//!   source is no innocent host). Every other alert is a false alert.
//! - **Detected**: at least one alert about the attack. **Time to first alert**: from the
//!   attack's first frame ([`Facts::attack_start_ns`]) to the first such alert, in capture time.
//! - **Mitigation**: an enforced (`blocked`) block whose prefix covers an attacker, or an
//!   enforced rate limit toward a victim; **time to block** is to the first of them.
//! - **Expected outcome met**: `block_source` — an attacker blocked; `victim_rate_limit` — a
//!   rate limit toward a victim; `alert_only` — detected; `none` (benign) — no alert at all.
//! - **Innocents**: the hosts named innocent and the victims (a flooded server must not be
//!   blocked either); in a benign capture every host is. Alerted: an alert's source; blocked:
//!   covered by an enforced block. Blocks covering neither an attacker nor an innocent (spoofed
//!   sources, reflectors) are counted apart.
//! - **Benign captures**: alerts per hour of capture time, and blocks; the goal is zero.
use std::{collections::BTreeSet, net::IpAddr};

use netanom::respond::prefix::Cidr;
use serde::Serialize;

use super::alerts::Alert;
use crate::corpus::{
    capture::{Facts, Roles},
    manifest::{Expected, Label},
};

/// What is scored: a capture's labels and facts.
pub struct Subject<'a> {
    /// Benign or attack.
    pub label: Label,
    /// What the detector should do.
    pub expected: Expected,
    /// Who is who.
    pub roles: &'a Roles,
    /// The capture's time span and the attack's first frame.
    pub facts: &'a Facts,
}

/// The score of one run on one capture.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Score {
    /// Every alert of the run.
    pub alerts: usize,
    /// At least one alert about the attack.
    pub detected: bool,
    /// The expected response happened (see the module documentation).
    pub outcome_met: bool,
    /// Seconds from the attack's first frame to the first alert about it.
    pub first_alert_s: Option<f64>,
    /// Seconds from the attack's first frame to the first block of an attacker or rate limit
    /// toward a victim.
    pub block_s: Option<f64>,
    /// Finding kinds of the alerts about the attack, sorted.
    pub kinds: Vec<String>,
    /// Alerts not about the attack.
    pub false_alerts: usize,
    /// Innocent hosts that were the source of an alert, or covered by a block.
    pub innocents_alerted: Vec<String>,
    /// (Innocents covered by a block.)
    pub innocents_blocked: Vec<String>,
    /// Enforced blocks covering neither an attacker nor an innocent.
    pub other_blocks: usize,
    /// Enforced source blocks and rate limits.
    pub blocks: usize,
    /// (Enforced rate limits.)
    pub rate_limits: usize,
    /// Benign captures: alerts per hour of capture time.
    pub alerts_per_hour: Option<f64>,
}

/// Whether `a` is about the attack described by `roles`.
pub fn about_attack(roles: &Roles, a: &Alert) -> bool {
    roles.is_attacker(a.src) || (roles.is_victim(a.dest) && !roles.is_innocent(a.src))
}

fn overlaps_any(p: &Cidr, set: &[Cidr]) -> bool {
    set.iter().any(|c| c.overlaps(p))
}

/// The enforced mitigation of the attack in `a`, if it is one.
fn mitigates(roles: &Roles, a: &Alert) -> bool {
    a.enforced()
        && (a.block.is_some_and(|b| overlaps_any(&b, &roles.attackers))
            || a.rate_limit.is_some_and(|ip| roles.is_victim(ip)))
}

fn secs_after(start: Option<u64>, ts: Option<u64>) -> Option<f64> {
    Some((ts? as i128 - start? as i128) as f64 / 1e9)
}

/// Scores `alerts` (in any order) against `s`.
pub fn score(s: &Subject, alerts: &[Alert]) -> Score {
    let benign = s.label == Label::Benign;
    let about = |a: &Alert| !benign && about_attack(s.roles, a);
    let attack: Vec<&Alert> = alerts.iter().filter(|a| about(a)).collect();
    let start = s.facts.attack_start_ns;
    let first = attack.iter().map(|a| a.ts_ns).min();
    let mitigated = alerts
        .iter()
        .filter(|a| !benign && mitigates(s.roles, a))
        .map(|a| a.ts_ns)
        .min();
    let kinds: BTreeSet<String> = attack.iter().map(|a| a.kind.clone()).collect();
    let blocks: Vec<Cidr> = alerts
        .iter()
        .filter(|a| a.enforced())
        .filter_map(|a| a.block)
        .collect();
    let (innocents_alerted, innocents_blocked, other_blocks) = innocents(s, alerts, &blocks);
    let outcome_met = match s.expected {
        Expected::BlockSource => alerts
            .iter()
            .any(|a| a.enforced() && a.block.is_some_and(|b| overlaps_any(&b, &s.roles.attackers))),
        Expected::VictimRateLimit => alerts
            .iter()
            .any(|a| a.enforced() && a.rate_limit.is_some_and(|ip| s.roles.is_victim(ip))),
        Expected::AlertOnly => first.is_some(),
        Expected::None => alerts.is_empty(),
    };
    let hours = s.facts.duration_s() / 3600.0;
    Score {
        alerts: alerts.len(),
        detected: first.is_some(),
        outcome_met,
        first_alert_s: secs_after(start, first),
        block_s: secs_after(start, mitigated),
        kinds: kinds.into_iter().collect(),
        false_alerts: alerts.len() - attack.len(),
        innocents_alerted,
        innocents_blocked,
        other_blocks,
        blocks: blocks.len(),
        rate_limits: alerts
            .iter()
            .filter(|a| a.enforced() && a.rate_limit.is_some())
            .count(),
        alerts_per_hour: (benign && hours > 0.0).then(|| alerts.len() as f64 / hours),
    }
}

/// (innocents alerted, innocents blocked, other blocks).
fn innocents(s: &Subject, alerts: &[Alert], blocks: &[Cidr]) -> (Vec<String>, Vec<String>, usize) {
    if s.label == Label::Benign {
        // Every host of a benign capture is innocent.
        let alerted: BTreeSet<IpAddr> = alerts
            .iter()
            .map(|a| a.src)
            .filter(|ip| !ip.is_unspecified())
            .collect();
        let blocked: BTreeSet<Cidr> = blocks.iter().copied().collect();
        return (
            alerted.iter().map(IpAddr::to_string).collect(),
            blocked.iter().map(Cidr::to_string).collect(),
            0,
        );
    }
    let alerted: BTreeSet<IpAddr> = alerts
        .iter()
        .map(|a| a.src)
        .filter(|ip| s.roles.is_innocent(*ip))
        .collect();
    let protected: Vec<Cidr> = s
        .roles
        .innocents
        .iter()
        .chain(&s.roles.victims)
        .copied()
        .collect();
    let blocked: BTreeSet<Cidr> = protected
        .iter()
        .copied()
        .filter(|c| blocks.iter().any(|b| b.overlaps(c)))
        .collect();
    let other = blocks
        .iter()
        .filter(|b| !overlaps_any(b, &s.roles.attackers) && !overlaps_any(b, &protected))
        .count();
    (
        alerted.iter().map(IpAddr::to_string).collect(),
        blocked.iter().map(Cidr::to_string).collect(),
        other,
    )
}

/// The median of `v` (the mean of the middle two for an even count); `None` when empty.
pub fn median(v: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}
