//! Where exported flow records go: the live drain and the capture extractor both hand each
//! ended flow to a [`RecordSink`] (the CSV writer of `netanom features` and `--flows-out`, a
//! vector in tests).
use std::io;

use netanom_common::flow::FlowRecord;

/// A consumer of exported flow records.
pub trait RecordSink {
    fn record(&mut self, rec: &FlowRecord) -> io::Result<()>;
}

/// Collects records in memory (tests, small tools).
impl RecordSink for Vec<FlowRecord> {
    fn record(&mut self, rec: &FlowRecord) -> io::Result<()> {
        self.push(*rec);
        Ok(())
    }
}
