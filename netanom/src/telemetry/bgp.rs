//! The BGP announcer's counters and state: written by its speaker thread and its decision
//! sink, read by the metrics and the status file.
use std::sync::{
    Mutex,
    atomic::{AtomicBool, AtomicU64, Ordering},
};

use serde::{Deserialize, Serialize};

/// Kinds of route (the `kind` label), indexed like `bgp::RouteKind`.
pub const ROUTE_KINDS: [&str; 2] = ["blackhole", "flowspec"];
/// Why a block or rate limit in force is not announced (the `reason` label), indexed like
/// `bgp::Exclusion`.
pub const EXCLUSIONS: [&str; 4] = ["allowlisted", "protected", "prefix_length", "cap"];
/// Why a call to the speaker failed (the `reason` label), indexed like `bgp::ErrorKind`.
pub const SPEAKER_ERRORS: [&str; 3] = ["unreachable", "refused", "timeout"];

/// One route the speaker announces, as `netanom status` lists it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnnouncedRoute {
    /// `blackhole` or `flowspec`.
    pub kind: String,
    /// The prefix (blackhole) or what the FlowSpec rule matches.
    pub route: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_hop: Option<String>,
    /// The FlowSpec action (rate limit or discard).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    pub communities: Vec<String>,
}

impl std::fmt::Display for AnnouncedRoute {
    /// One line, as the log and `netanom status` show it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.kind, self.route)?;
        if let Some(nh) = &self.next_hop {
            write!(f, " next hop {nh}")?;
        }
        if let Some(a) = &self.action {
            write!(f, " then {a}")?;
        }
        if !self.communities.is_empty() {
            write!(f, " communities {}", self.communities.join(" "))?;
        }
        Ok(())
    }
}

/// Where the announcer stands, for the status file.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BgpState {
    /// The speaker's API address.
    pub speaker: String,
    /// `connecting`, `up`, or the failure (`unreachable`, `refused`, `timeout`).
    pub state: String,
    /// The last failure, while the speaker is not up.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// What the speaker announces for netanom, as last read from it.
    pub announced: Vec<AnnouncedRoute>,
    /// Blocks and rate limits in force that are not announced, by reason ([`EXCLUSIONS`]).
    pub excluded: Vec<(String, u64)>,
}

/// The announcer's counters.
#[derive(Debug, Default)]
pub struct BgpCounters {
    /// The last exchange with the speaker succeeded.
    pub speaker_up: AtomicBool,
    /// Routes the speaker announces for netanom, by kind ([`ROUTE_KINDS`]).
    pub announced: [AtomicU64; 2],
    /// Routes added (or replaced) on the speaker, by kind.
    pub announcements: [AtomicU64; 2],
    /// Routes withdrawn from the speaker, by kind.
    pub withdrawals: [AtomicU64; 2],
    /// Blocks and rate limits in force not announced, by reason ([`EXCLUSIONS`]), now.
    pub excluded: [AtomicU64; 4],
    /// Failed calls to the speaker, by reason ([`SPEAKER_ERRORS`]).
    pub errors: [AtomicU64; 3],
    /// Decisions that would have exceeded `bgp.max_routes` (each tripped the breaker).
    pub cap_hits: AtomicU64,
    pub state: Mutex<BgpState>,
}

/// [`BgpCounters`] read at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BgpTotals {
    pub speaker_up: bool,
    pub announced: [u64; 2],
    pub announcements: [u64; 2],
    pub withdrawals: [u64; 2],
    pub excluded: [u64; 4],
    pub errors: [u64; 3],
    pub cap_hits: u64,
}

impl BgpCounters {
    pub fn totals(&self) -> BgpTotals {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        BgpTotals {
            speaker_up: self.speaker_up.load(Ordering::Relaxed),
            announced: self.announced.each_ref().map(l),
            announcements: self.announcements.each_ref().map(l),
            withdrawals: self.withdrawals.each_ref().map(l),
            excluded: self.excluded.each_ref().map(l),
            errors: self.errors.each_ref().map(l),
            cap_hits: l(&self.cap_hits),
        }
    }

    /// The state for the status file, with the exclusions counted now.
    pub fn state(&self) -> BgpState {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let t = self.totals();
        s.excluded = EXCLUSIONS
            .iter()
            .zip(t.excluded)
            .map(|(n, v)| ((*n).to_owned(), v))
            .collect();
        s
    }

    /// Replaces the state (the speaker thread, after each exchange).
    pub fn set_state(&self, s: BgpState) {
        *self.state.lock().unwrap_or_else(|e| e.into_inner()) = s;
    }
}
