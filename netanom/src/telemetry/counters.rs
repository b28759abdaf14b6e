//! The counters of each stage, as plain data.
use std::sync::{
    Mutex,
    atomic::{AtomicBool, AtomicU64, Ordering},
};

use serde::{Serialize, Serializer, ser::SerializeMap as _};

/// Flow accounting counters: kernel events plus what the agent's drain did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct FlowCounters {
    /// Entries the kernel created in its flow table.
    pub created: u64,
    /// Flow records handed over through the ring buffer (FIN, RST, active timeout).
    pub exported_ring: u64,
    /// Flows the agent's sweep exported because they were idle (then deleted).
    pub exported_idle: u64,
    /// Live flows exported when the agent stopped.
    pub exported_flush: u64,
    /// Flow records the kernel could not queue because the ring buffer was full.
    pub export_lost: u64,
    /// Closed flows the sweep deleted after their linger time (exported when they closed).
    pub forgotten: u64,
    /// Entries in the table at the last sweep, and how many of them are live (not closed).
    pub in_table: u64,
    pub live: u64,
    /// Entries the LRU table evicted: created - exported_idle - forgotten - in_table, with
    /// `created` as it was when the last sweep started (so flows created since then are not
    /// mistaken for evicted ones). An evicted live flow was never exported.
    pub evicted: u64,
    /// Flows that could not be entered at all.
    pub insert_failed: u64,
}

/// What the drain's sweeps did, summed since the agent started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SweepTotals {
    pub exported_idle: u64,
    pub exported_flush: u64,
    pub forgotten: u64,
    /// From the latest sweep.
    pub in_table: u64,
    pub live: u64,
    /// The kernel's flows-created counter read just before the latest sweep started: the
    /// count that `in_table` and the totals above account for.
    pub created_at_sweep: u64,
}

/// The drain-to-scoring queue.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct QueueCounters {
    pub vectors_in: u64,
    pub vectors_out: u64,
    /// Times the drain found the queue full and waited (back-pressure).
    pub full_waits: u64,
}

/// What the scoring stage did with flow vectors.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ScoreCounters {
    /// Flow vectors scored.
    pub scored: u64,
    /// Vectors each model flagged, by the model's name in the bundle, then the ensemble's
    /// decisions (`ensemble`); written as a JSON object in that order.
    #[serde(serialize_with = "ser_ordered")]
    pub anomalies: Vec<(String, u64)>,
    /// Vectors refused (NaN or infinite features).
    pub rejected: u64,
    /// Channels the beacon detector follows now...
    pub channels: u64,
    /// ...and those it dropped to make room (`detection.beacon_max_channels`), since start.
    pub channels_dropped: u64,
}

fn ser_ordered<S: Serializer>(v: &[(String, u64)], s: S) -> Result<S::Ok, S::Error> {
    let mut m = s.serialize_map(Some(v.len()))?;
    for (k, n) in v {
        m.serialize_entry(k, n)?;
    }
    m.end()
}

impl ScoreCounters {
    /// The anomalies counted under `name` (0 for a name never seen).
    pub fn anomalies(&self, name: &str) -> u64 {
        self.anomalies
            .iter()
            .find(|(n, _)| n == name)
            .map_or(0, |(_, v)| *v)
    }
}

/// [`ScoreCounters`] shared between the scoring stage (which adds to them once per batch) and
/// whoever reports them. Names are kept in the order first seen, so a reloaded bundle with the
/// same models keeps its counters, and a new model's name is appended.
#[derive(Debug, Default)]
pub struct ScoreTally {
    inner: Mutex<ScoreCounters>,
}

impl ScoreTally {
    /// Adds one batch: `scored` vectors, `rejected` refused, and the anomalies per name.
    pub fn add<'a>(&self, scored: u64, rejected: u64, anomalies: impl IntoIterator<Item = (&'a str, u64)>) {
        let mut c = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        c.scored += scored;
        c.rejected += rejected;
        for (name, n) in anomalies {
            match c.anomalies.iter_mut().find(|(k, _)| k == name) {
                Some((_, v)) => *v += n,
                None => c.anomalies.push((name.to_owned(), n)),
            }
        }
    }

    /// Makes every name appear (with 0) before anything was scored.
    pub fn declare<'a>(&self, names: impl IntoIterator<Item = &'a str>) {
        self.add(0, 0, names.into_iter().map(|n| (n, 0)));
    }

    /// The beacon detector's channel table after a batch.
    pub fn set_channels(&self, followed: u64, dropped: u64) {
        let mut c = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        c.channels = followed;
        c.channels_dropped = dropped;
    }

    pub fn get(&self) -> ScoreCounters {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// How many kinds of finding the response counts apart (`crate::detect::Kind::ALL`, which
/// asserts it has this many; telemetry imports no component).
pub const FINDING_KINDS: usize = 12;

/// The response's counters: written by the scoring stage's thread, read by the drain's (for
/// the metrics and the status file).
#[derive(Debug, Default)]
pub struct ResponseCounters {
    pub blocks_added: AtomicU64,
    pub blocks_expired: AtomicU64,
    pub blocks_active: AtomicU64,
    pub would_block: AtomicU64,
    pub allowlisted: AtomicU64,
    pub rate_limits_added: AtomicU64,
    pub rate_limits_active: AtomicU64,
    pub breaker_trips: AtomicU64,
    pub breaker_open: AtomicBool,
    pub alerts: AtomicU64,
    pub alert_errors: AtomicU64,
    /// Findings handled, by kind (`Kind::index`).
    pub findings: [AtomicU64; FINDING_KINDS],
    /// The configured mode is mitigate, and the mode in force is (mitigate, breaker closed).
    pub configured_mitigate: AtomicBool,
    pub effective_mitigate: AtomicBool,
}

/// [`ResponseCounters`] read at one moment (what `netanom status` shows under `mitigation`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct ResponseTotals {
    pub blocks_active: u64,
    pub blocks_added: u64,
    pub blocks_expired: u64,
    pub would_block: u64,
    pub allowlisted: u64,
    pub rate_limits_active: u64,
    pub rate_limits_added: u64,
    pub breaker_trips: u64,
    pub breaker_open: bool,
    /// Findings handled, all kinds.
    pub findings: u64,
    /// Findings handled, by kind (`Kind::index`).
    #[serde(skip)]
    pub findings_by_kind: [u64; FINDING_KINDS],
    pub alerts: u64,
    #[serde(skip)]
    pub alert_errors: u64,
    /// `observe` or `mitigate`: configured, and in force.
    #[serde(skip)]
    pub configured_mode: &'static str,
    #[serde(skip)]
    pub effective_mode: &'static str,
}

impl Default for ResponseTotals {
    fn default() -> Self {
        ResponseCounters::default().totals()
    }
}

impl ResponseCounters {
    /// Adds 1 to one of the counters.
    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn totals(&self) -> ResponseTotals {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        ResponseTotals {
            blocks_active: l(&self.blocks_active),
            blocks_added: l(&self.blocks_added),
            blocks_expired: l(&self.blocks_expired),
            would_block: l(&self.would_block),
            allowlisted: l(&self.allowlisted),
            rate_limits_active: l(&self.rate_limits_active),
            rate_limits_added: l(&self.rate_limits_added),
            breaker_trips: l(&self.breaker_trips),
            breaker_open: self.breaker_open.load(Ordering::Relaxed),
            findings: self.findings.iter().map(l).sum(),
            findings_by_kind: std::array::from_fn(|k| l(&self.findings[k])),
            alerts: l(&self.alerts),
            alert_errors: l(&self.alert_errors),
            configured_mode: mode_name(self.configured_mitigate.load(Ordering::Relaxed)),
            effective_mode: mode_name(self.effective_mitigate.load(Ordering::Relaxed)),
        }
    }
}

fn mode_name(mitigate: bool) -> &'static str {
    if mitigate { "mitigate" } else { "observe" }
}

/// The model bundle in use, for `netanom_model_bundle_info` and the status file.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct BundleInfo {
    /// `embedded` for the default bundle, else the `--bundle` directory.
    pub origin: String,
    /// The manifest's dataset.
    pub dataset: String,
    /// The execution provider actually used (`cpu` or `cuda`).
    pub provider: String,
}

impl BundleInfo {
    /// `origin (dataset)`, as alerts and the status file name the bundle.
    pub fn label(&self) -> String {
        format!("{} ({})", self.origin, self.dataset)
    }
}

/// One interface the program is attached to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct InterfaceInfo {
    pub iface: String,
    /// `native` or `skb` (the XDP attach mode obtained).
    pub mode: String,
    /// Whether the TC egress classifier is attached too (outgoing packets accounted).
    pub egress: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn score_tally_keeps_names_in_order_and_adds_by_name() {
        let t = ScoreTally::default();
        t.declare(["autoencoder", "iforest", "ensemble"]);
        t.add(10, 1, [("iforest", 2), ("ensemble", 3)]);
        t.add(5, 0, [("sequence", 1), ("ensemble", 1)]);
        t.set_channels(7, 2);
        let c = t.get();
        assert_eq!((c.scored, c.rejected), (15, 1));
        assert_eq!(c.anomalies("ensemble"), 4);
        assert_eq!(c.anomalies("autoencoder"), 0);
        let names: Vec<&str> = c.anomalies.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["autoencoder", "iforest", "ensemble", "sequence"]);
        let j = serde_json::to_string(&c).unwrap();
        assert_eq!(
            j,
            r#"{"scored":15,"anomalies":{"autoencoder":0,"iforest":2,"ensemble":4,"sequence":1},"rejected":1,"channels":7,"channels_dropped":2}"#
        );
    }
}
