//! Sources: where ended flows and aggregates come from.
//!
//! - [`live`]: the kernel's maps and export ring buffer, drained by the agent;
//! - [`capture`]: a capture file, through the same per-packet code as the kernel;
//! - [`record`]: where each exported flow record goes.
pub mod capture;
pub mod live;
pub mod record;

pub use record::RecordSink;
