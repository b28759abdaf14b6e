//! Alert sinks: where the response's alerts (`crate::respond::Alert`, encoded as EVE JSON)
//! go. Each implements `crate::respond::AlertSink`.
//!
//! - [`jsonl`]: JSON lines on a writer (a file opened for appending, standard output);
//! - [`memory`]: JSON lines in memory;
//! - [`discard`]: nowhere (counted);
//! - [`fleet`]: also to the fleet's alerts subject over NATS (`[fleet]`);
//! - [`target`]: the configured target (`agent.alerts`, `--alerts`) and the sink it opens.
pub mod discard;
pub mod fleet;
pub mod jsonl;
pub mod memory;
pub mod target;

pub use discard::Discard;
pub use fleet::FleetAlerts;
pub use jsonl::JsonLines;
pub use memory::{MemoryBuffer, memory};
pub use target::AlertTarget;

#[cfg(test)]
mod tests;
