//! Detection on capture files (`netanom run --pcap`): the live pipeline's scoring stage fed by
//! the capture source instead of the kernel, on the capture's clock, with mitigation simulated
//! in memory.
//!
//! - [`datapath`]: the XDP program's work per packet (enforcement, flows, aggregates);
//! - [`driver`]: the live agent's timers in capture time (flow export, sweep, aggregate
//!   drain);
//! - [`run`]: opening everything, the replay, the end;
//! - [`summary`]: what the run did.
pub mod datapath;
pub mod driver;
pub mod run;
pub mod summary;

pub use run::{CaptureOptions, CaptureRun, run};
pub use summary::CaptureSummary;

#[cfg(test)]
mod tests;
