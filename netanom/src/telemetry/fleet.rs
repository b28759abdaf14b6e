//! The fleet's counters and state: written by its thread and its decision and alert sinks,
//! read by the metrics and the status file.
use std::sync::{
    Mutex,
    atomic::{AtomicBool, AtomicU64, Ordering},
};

use serde::{Deserialize, Serialize};

/// What a decision does (the `action` label), indexed like `fleet::message::Action`.
pub const ACTIONS: [&str; 3] = ["block", "unblock", "rate_limit"];
/// Why another gateway's decision was not applied (the `reason` label), indexed like
/// `fleet::apply::Ignored`.
pub const IGNORED: [&str; 10] = [
    "own",
    "untrusted",
    "expired",
    "duplicate",
    "allowlisted",
    "protected",
    "too_wide",
    "cap",
    "observe",
    "apply_remote_off",
];
/// Why a message was refused (the `reason` label): unreadable, another version, claiming
/// another gateway than its subject's, dated too far ahead (clock skew).
pub const REJECTIONS: [&str; 4] = ["malformed", "version", "unauthenticated", "skew"];

/// A peer seen on the fleet, as `netanom fleet status` lists it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Peer {
    pub gateway: String,
    /// Unix seconds of its last heartbeat (this host's clock), if one came.
    #[serde(default)]
    pub heartbeat_at: Option<f64>,
    /// Its last decision received: `block 198.18.2.66/32`, ...
    #[serde(default)]
    pub last_decision: Option<String>,
    /// When it decided it (its clock), Unix seconds.
    #[serde(default)]
    pub last_decision_at: Option<f64>,
    /// Seconds from its decision to its arrival here (clock skew included).
    #[serde(default)]
    pub lag_s: Option<f64>,
    /// What became of it here: `applied`, or why not.
    #[serde(default)]
    pub outcome: Option<String>,
}

/// Where the fleet stands, for the status file.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FleetState {
    pub gateway: String,
    pub servers: Vec<String>,
    /// `connecting`, `connected` or `disconnected`.
    pub connection: String,
    /// The last failure, while not connected (or a stream not usable).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The stream has been replayed up to where it stood at start-up.
    pub replayed: bool,
    /// Active blocks applied from the fleet.
    pub remote_blocks: u64,
    pub peers: Vec<Peer>,
}

/// The fleet's counters.
#[derive(Debug, Default)]
pub struct FleetCounters {
    pub connected: AtomicBool,
    pub reconnects: AtomicU64,
    /// Decisions published (acknowledged by JetStream), by action ([`ACTIONS`]).
    pub published: [AtomicU64; 3],
    /// Other gateways' decisions applied here, by action.
    pub applied: [AtomicU64; 3],
    /// Other gateways' decisions not applied, by reason ([`IGNORED`]).
    pub ignored: [AtomicU64; 10],
    /// Messages refused, by reason ([`REJECTIONS`]).
    pub rejected: [AtomicU64; 4],
    pub alerts_published: AtomicU64,
    /// Messages waiting to be published, now.
    pub queued: AtomicU64,
    /// Messages dropped because the outbound queue was full.
    pub overflow: AtomicU64,
    pub state: Mutex<FleetState>,
}

/// [`FleetCounters`] read at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FleetTotals {
    pub connected: bool,
    pub reconnects: u64,
    pub published: [u64; 3],
    pub applied: [u64; 3],
    pub ignored: [u64; 10],
    pub rejected: [u64; 4],
    pub alerts_published: u64,
    pub queued: u64,
    pub overflow: u64,
}

impl FleetCounters {
    pub fn totals(&self) -> FleetTotals {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        FleetTotals {
            connected: self.connected.load(Ordering::Relaxed),
            reconnects: l(&self.reconnects),
            published: self.published.each_ref().map(l),
            applied: self.applied.each_ref().map(l),
            ignored: self.ignored.each_ref().map(l),
            rejected: self.rejected.each_ref().map(l),
            alerts_published: l(&self.alerts_published),
            queued: l(&self.queued),
            overflow: l(&self.overflow),
        }
    }

    pub fn bump(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// The state for the status file.
    pub fn state(&self) -> FleetState {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Changes the state (the fleet's thread).
    pub fn update(&self, f: impl FnOnce(&mut FleetState)) {
        f(&mut self.state.lock().unwrap_or_else(|e| e.into_inner()));
    }
}
