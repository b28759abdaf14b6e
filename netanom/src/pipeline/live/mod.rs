//! The live pipeline: the kernel datapath, drained into batches, through the queue to the
//! scoring stage on its own thread; reports from one telemetry snapshot at a time.
//!
//! - [`run`]: start-up checks, loading and attaching, the threads;
//! - [`watch`]: the event loop (signals, ring buffer, sweep, aggregates, reports);
//! - [`drain`]: ended flows and aggregates into batches;
//! - [`report`]: snapshots for the metrics, the stats line and the status file;
//! - [`interfaces`]: interfaces that disappear and come back;
//! - [`options`]: what the pipeline was asked to do.
pub mod drain;
pub mod interfaces;
pub mod options;
pub mod report;
pub mod run;
pub mod watch;

pub use options::LiveOptions;
pub use run::run;

/// The live pipeline's state on the drain's side.
pub struct Live {
    pub opts: LiveOptions,
    pub drain: drain::DrainState,
    pub reports: report::Reports,
    pub ifaces: interfaces::Interfaces,
}
