//! Flow records as CSV: what `netanom features` writes, and what `--flows-out` writes for the
//! live agent, in the same format.
use std::io::{self, Write};

use netanom_common::flow::FlowRecord;

use crate::{
    features::csv::{csv_header, write_csv_row},
    sources::RecordSink,
};

/// Converts a record's timestamps (nanoseconds) to nanoseconds since the Unix epoch: the
/// identity for captures, the kernel-clock translation for the live agent.
pub type ToUnixNs = Box<dyn Fn(u64) -> u64 + Send>;

/// Writes records as CSV ([`csv_header`], [`write_csv_row`]). The header is
/// written before the first row, or by [`CsvSink::flush`] / [`CsvSink::finish`] if there is none.
pub struct CsvSink<W: Write> {
    out: W,
    to_unix_ns: ToUnixNs,
    line: String,
    header_done: bool,
    rows: u64,
}

impl<W: Write> CsvSink<W> {
    /// A sink whose records carry timestamps that `to_unix_ns` turns into Unix nanoseconds
    /// (the live agent passes its kernel-clock translation).
    pub fn new(out: W, to_unix_ns: impl Fn(u64) -> u64 + Send + 'static) -> CsvSink<W> {
        CsvSink {
            out,
            to_unix_ns: Box::new(to_unix_ns),
            line: String::with_capacity(1024),
            header_done: false,
            rows: 0,
        }
    }

    /// A sink for records whose timestamps already are Unix nanoseconds (captures).
    pub fn unix(out: W) -> CsvSink<W> {
        CsvSink::new(out, |ns| ns)
    }

    fn header(&mut self) -> io::Result<()> {
        if !self.header_done {
            self.out.write_all(csv_header().as_bytes())?;
            self.out.write_all(b"\n")?;
            self.header_done = true;
        }
        Ok(())
    }

    /// Writes one row (and the header first, if this is the first row).
    pub fn record(&mut self, rec: &FlowRecord) -> io::Result<()> {
        self.header()?;
        self.line.clear();
        write_csv_row(&mut self.line, rec, &*self.to_unix_ns)
            .map_err(|_| io::Error::other("formatting a CSV row"))?;
        self.line.push('\n');
        self.out.write_all(self.line.as_bytes())?;
        self.rows += 1;
        Ok(())
    }

    /// Writes the header if no row did yet, and flushes the writer.
    pub fn flush(&mut self) -> io::Result<()> {
        self.header()?;
        self.out.flush()
    }

    /// Rows written so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// [`CsvSink::flush`], then hands back the writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.flush()?;
        Ok(self.out)
    }
}

impl<W: Write> RecordSink for CsvSink<W> {
    fn record(&mut self, rec: &FlowRecord) -> io::Result<()> {
        CsvSink::record(self, rec)
    }
}

#[cfg(test)]
mod tests {
    use netanom_common::{
        flow::{FlowTimeouts, FlowValue},
        parse,
    };

    use super::*;
    use crate::{
        features::csv::csv_row,
        sources::capture::{FlowTable, testing::*},
    };

    #[test]
    fn csv_sink_translates_clocks_and_always_writes_a_header() {
        let mut empty = CsvSink::unix(Vec::new());
        empty.flush().unwrap();
        assert_eq!(
            String::from_utf8(empty.finish().unwrap()).unwrap(),
            csv_header() + "\n"
        );
        // The live agent's records carry the kernel clock: the sink translates it.
        let mut table = FlowTable::new(FlowTimeouts::DEFAULT);
        let mut recs = Vec::new();
        let m = parse::parse(&udp(CLI, 1, SRV, 2, 5)[..]).meta.unwrap();
        table.packet(&m, 5_000_000_000, &mut recs).unwrap();
        table.finish(5_000_000_000, &mut recs).unwrap();
        let mut sink = CsvSink::new(Vec::new(), |mono| mono + T0 * 1_000_000_000);
        let dyn_sink: &mut dyn RecordSink = &mut sink;
        dyn_sink.record(&recs[0]).unwrap();
        assert_eq!(sink.rows(), 1);
        let text = String::from_utf8(sink.finish().unwrap()).unwrap();
        let row = text.lines().nth(1).unwrap();
        assert!(row.contains(",2023-11-14 22:13:25.000000,"), "{row}");
        assert_eq!(
            row,
            csv_row(&FlowRecord {
                value: FlowValue {
                    first_ns: recs[0].value.first_ns + T0 * 1_000_000_000,
                    ..recs[0].value
                },
                ..recs[0]
            })
        );
    }
}
