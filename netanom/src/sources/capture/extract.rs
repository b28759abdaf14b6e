//! Turning a capture into flow records: every frame through the parser shared with the XDP
//! program, every IP packet through the [`FlowTable`], every exported flow to a
//! [`RecordSink`].
use std::{
    fmt::Write as _,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use netanom_common::{
    Event,
    flow::FlowTimeouts,
    parse::{self},
};

use super::{
    error::CaptureError,
    flow_table::{DEFAULT_SWEEP_INTERVAL_NS, FlowTable, TableStats},
    format::CaptureFormat,
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
    /// Set when reading stopped before the end of the file ([`CaptureError::Truncated`] or
    /// [`CaptureError::Corrupt`]); the flows of the packets before were still exported.
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
/// Malformed and non-IP frames are counted and skipped. A truncated or corrupt file stops the
/// reading but not the export: the flows of the packets read are flushed, and the error is
/// returned in [`ExtractSummary::stopped`]. Other errors (writing to the sink, an unsupported
/// link type inside a pcapng file) are returned as `Err`.
pub fn extract(
    capture: &mut Capture,
    opts: &ExtractOptions,
    sink: &mut dyn RecordSink,
) -> Result<ExtractSummary, CaptureError> {
    let started = Instant::now();
    let mut table = FlowTable::with_sweep_interval(opts.timeouts, opts.sweep_interval_ns);
    let mut sum = ExtractSummary {
        path: capture.path().to_path_buf(),
        format: capture.format(),
        packets_read: 0,
        skipped_non_ip: 0,
        skipped_malformed: [0; Event::COUNT as usize],
        out_of_order: 0,
        table: TableStats::default(),
        first_ts_ns: None,
        last_ts_ns: None,
        elapsed: Duration::ZERO,
        stopped: None,
    };
    let sink_err = |err| CaptureError::Output {
        dest: "the output".into(),
        err,
    };
    let mut now = 0u64;
    loop {
        let frame = match capture.next_frame() {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e @ (CaptureError::Truncated { .. } | CaptureError::Corrupt { .. })) => {
                sum.stopped = Some(e);
                break;
            }
            Err(e) => return Err(e),
        };
        sum.packets_read += 1;
        if sum.first_ts_ns.is_none() {
            sum.first_ts_ns = Some(frame.ts_ns);
            now = frame.ts_ns;
        }
        if frame.ts_ns < now {
            sum.out_of_order += 1;
        } else {
            now = frame.ts_ns;
        }
        let parsed = parse::parse(frame.data);
        match parsed.meta {
            Some(mut m) => {
                // The kernel sees the whole frame; a capture may hold only its first bytes.
                let wire = frame.orig_len.max(frame.data.len() as u32);
                m.frame_len = u16::try_from(wire).unwrap_or(u16::MAX);
                table.packet(&m, now, sink).map_err(sink_err)?;
            }
            None => match parsed.class.event {
                Some(e) => sum.skipped_malformed[e as usize] += 1,
                None => sum.skipped_non_ip += 1,
            },
        }
    }
    sum.last_ts_ns = sum.first_ts_ns.map(|_| now);
    table.finish(now, sink).map_err(sink_err)?;
    sum.table = *table.stats();
    sum.elapsed = started.elapsed();
    Ok(sum)
}

/// [`Capture::open`] then [`extract`].
pub fn extract_file(
    path: &Path,
    opts: &ExtractOptions,
    sink: &mut dyn RecordSink,
) -> Result<ExtractSummary, CaptureError> {
    let mut capture = Capture::open(path)?;
    extract(&mut capture, opts, sink)
}
