//! Turning a capture into flow records: every frame through the parser shared with the XDP
//! program, every IP packet through the [`FlowTable`], every exported flow to a
//! [`RecordSink`].
use std::{
    fmt::Write as _,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use netanom_common::{Event, flow::FlowTimeouts};

use super::{
    error::CaptureError,
    flow_table::{DEFAULT_SWEEP_INTERVAL_NS, FlowTable, TableStats},
    format::CaptureFormat,
    frames::FrameStream,
    reader::Capture,
};
use crate::sources::record::RecordSink;

/// How to turn packets into flows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExtractOptions {
    pub timeouts: FlowTimeouts,
    /// Capture time between sweeps of the table.
    pub sweep_interval_ns: u64,
}

impl Default for ExtractOptions {
    fn default() -> Self {
        ExtractOptions {
            timeouts: FlowTimeouts::DEFAULT,
            sweep_interval_ns: DEFAULT_SWEEP_INTERVAL_NS,
        }
    }
}

/// What [`extract`] did.
#[derive(Debug)]
pub struct ExtractSummary {
    pub path: PathBuf,
    pub format: CaptureFormat,
    /// Frames read from the file.
    pub packets_read: u64,
    /// Frames that are not IP (ARP, MPLS, LLDP, ...).
    pub skipped_non_ip: u64,
    /// Malformed frames, by parser [`Event`] (indexed by its discriminant).
    pub skipped_malformed: [u64; Event::COUNT as usize],
    /// Frames whose timestamp was earlier than the previous one's (accounted at the previous
    /// one's time).
    pub out_of_order: u64,
    /// The flow table's counters; `table.packets` is the IP packets accounted.
    pub table: TableStats,
    /// First and last timestamp seen, nanoseconds since the Unix epoch.
    pub first_ts_ns: Option<u64>,
    pub last_ts_ns: Option<u64>,
    /// Wall-clock time spent.
    pub elapsed: Duration,
    /// Set when reading stopped before the end of the file ([`CaptureError::Truncated`],
    /// [`CaptureError::Corrupt`], a read error); the flows of the packets before were still
    /// exported.
    pub stopped: Option<CaptureError>,
}

impl ExtractSummary {
    pub fn malformed(&self) -> u64 {
        self.skipped_malformed.iter().sum()
    }

    /// One line for people: counts, skips by reason, exports by reason, speed.
    pub fn line(&self) -> String {
        let mut s = format!(
            "{} ({}): {} packets read, {} IP packets accounted, {} skipped ({} not IP, {} malformed",
            self.path.display(),
            self.format,
            self.packets_read,
            self.table.packets,
            self.skipped_non_ip + self.malformed(),
            self.skipped_non_ip,
            self.malformed()
        );
        for e in Event::ALL {
            let n = self.skipped_malformed[e as usize];
            if n > 0 {
                let _ = write!(s, ", {} {n}", e.name());
            }
        }
        let x = &self.table.exported;
        let _ = write!(
            s,
            "); {} flows exported (fin {}, rst {}, active_timeout {}, idle_timeout {}, flush {}); \
             {} packets absorbed by closed flows",
            x.total(),
            x.fin,
            x.rst,
            x.active_timeout,
            x.idle_timeout,
            x.flush,
            self.table.absorbed
        );
        if self.out_of_order > 0 {
            let _ = write!(s, "; {} out-of-order timestamps", self.out_of_order);
        }
        let secs = self.elapsed.as_secs_f64();
        let _ = write!(s, "; {secs:.3} s");
        if secs > 0.0 {
            let _ = write!(s, " ({:.0} packets/s)", self.packets_read as f64 / secs);
        }
        if self.stopped.is_some() {
            s.push_str("; stopped early, see the error below");
        }
        s
    }
}

/// Reads every frame of `capture`, accounts its IP packets, and exports flows to `sink`.
///
/// Malformed and non-IP frames are counted and skipped. A file that cannot be read to its end
/// (truncated, corrupt, a read error) stops the reading but not the export: the flows of the
/// packets read are flushed, and the error is returned in [`ExtractSummary::stopped`]. An
/// error writing to the sink is returned as `Err`.
pub fn extract(
    capture: Capture,
    opts: &ExtractOptions,
    sink: &mut dyn RecordSink,
) -> Result<ExtractSummary, CaptureError> {
    let started = Instant::now();
    let (path, format) = (capture.path().to_path_buf(), capture.format());
    let mut table = FlowTable::with_sweep_interval(opts.timeouts, opts.sweep_interval_ns);
    let sink_err = |err| CaptureError::Output {
        dest: "the output".into(),
        err,
    };
    let mut frames = FrameStream::new(vec![capture]);
    while let Some((m, now)) = frames.next_packet() {
        table.packet(&m, now, sink).map_err(sink_err)?;
    }
    table.finish(frames.now_ns(), sink).map_err(sink_err)?;
    let c = *frames.counts();
    let stopped = frames.finish().pop().and_then(|i| i.stopped);
    Ok(ExtractSummary {
        path,
        format,
        packets_read: c.read,
        skipped_non_ip: c.non_ip,
        skipped_malformed: c.malformed,
        out_of_order: c.out_of_order,
        table: *table.stats(),
        first_ts_ns: c.first_ts_ns,
        last_ts_ns: c.last_ts_ns,
        elapsed: started.elapsed(),
        stopped,
    })
}

/// [`Capture::open`] then [`extract`].
pub fn extract_file(
    path: &Path,
    opts: &ExtractOptions,
    sink: &mut dyn RecordSink,
) -> Result<ExtractSummary, CaptureError> {
    extract(Capture::open(path)?, opts, sink)
}
