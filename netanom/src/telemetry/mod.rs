//! Telemetry: the plain counter types every stage fills and every report reads.
//!
//! Nothing here knows a stage. The drain, the queue, the scoring stage and the response write
//! their tallies into these types; the pipeline puts them together into one [`Snapshot`] at a
//! time; and the three reports (the Prometheus metrics, the stats line, the status file) are
//! consumers of that snapshot.
pub mod bgp;
pub mod counters;
pub mod fleet;
pub mod snapshot;

pub use counters::{
    BundleInfo, FlowCounters, InterfaceInfo, QueueCounters, ResponseCounters, ResponseTotals, ScoreCounters,
    ScoreTally, SweepTotals,
};
pub use snapshot::{ProtoRow, Snapshot};
