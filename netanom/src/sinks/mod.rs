//! Sinks: where the agent's output goes. Each is a consumer; none decides anything.
//!
//! - [`alerts`]: the response's alerts, as EVE JSON lines (file, standard output, memory, none);
//! - [`metrics`]: the Prometheus endpoint, fed by the telemetry snapshot;
//! - [`stats_line`]: the counter report on the terminal, fed by the same snapshot;
//! - [`status`]: the status file `netanom status` reads;
//! - [`flows_csv`]: flow records as CSV (`netanom features`, `--flows-out`).
pub mod alerts;
pub mod flows_csv;
pub mod metrics;
pub mod stats_line;
pub mod status;

pub use flows_csv::CsvSink;
