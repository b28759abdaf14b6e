//! Prometheus metrics: what the agent counts, served at `GET /metrics`. A consumer of the
//! telemetry snapshot; it knows no stage.
//!
//! - [`registry`]: every metric, in one registry, refreshed from a snapshot;
//! - [`families`]: the metric families, grouped along the data flow;
//! - [`exposition`]: the OpenMetrics and classic text formats;
//! - [`server`]: the HTTP endpoint on its own thread;
//! - [`config`]: the `[metrics]` configuration section.
pub mod config;
pub mod exposition;
pub mod families;
pub mod registry;
pub mod server;

pub use config::MetricsConfig;
pub use families::DrainStage;
pub use registry::Metrics;
pub use server::{DEFAULT_ADDR, PATH, Server, bind};

#[cfg(test)]
mod tests;
