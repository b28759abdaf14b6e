//! The capture source: flows from a pcap or pcapng file, with the kernel's flow semantics.
//!
//! - [`reader`]: the file, frame by frame ([`pcap`], [`pcapng`], and [`format`] for what
//!   they share);
//! - [`frames`]: the frames of one or more files merged by timestamp, parsed as the XDP
//!   program parses them;
//! - [`flow_table`]: the kernel's per-packet flow code on a `HashMap` driven by the capture's
//!   timestamps, plus the agent's sweep;
//! - [`aggregates`]: the kernel's per-source and per-destination aggregates, likewise;
//! - [`extract`]: a whole file into flow records (`netanom features`);
//! - [`error`]: what can be wrong with a capture.
pub mod aggregates;
pub mod error;
pub mod extract;
pub mod flow_table;
pub mod format;
pub mod frames;
pub mod pcap;
pub mod pcapng;
pub mod reader;

pub use aggregates::AggregateTable;
pub use error::CaptureError;
pub use extract::{ExtractOptions, ExtractSummary, extract, extract_file};
pub use flow_table::{ExportCounts, FlowTable, TableStats};
pub use format::{CaptureFormat, LINKTYPE_ETHERNET};
pub use frames::{FrameCounts, FrameStream, InputSummary};
pub use reader::{Capture, Frame};

#[cfg(test)]
pub(crate) mod testing;
#[cfg(test)]
mod tests;
