//! `netanom run --pcap`: every check first (the captures open, the bundle loads, the outputs
//! can be written), then the replay, then the end of the capture handled as a live agent
//! handles its stop. Whatever stops a file early, what was read before is scored and its
//! alerts written.
use std::{
    fs::File,
    io::{self, BufWriter},
    path::PathBuf,
    sync::Arc,
    time::Instant as WallInstant,
};

use anyhow::Context as _;
use netanom_common::{mitigate::Origin, time::Instant};

use super::{
    datapath::CaptureDatapath,
    driver::Driver,
    summary::{CaptureSummary, Parts},
};
use crate::{
    pipeline::{
        config::{Config, secs},
        scoring::{BundleChoice, load_scorer, load_sequence},
        stage::{ResponseWiring, Stage},
    },
    respond::{AlertContext, SharedTables, allowlist},
    sinks::CsvSink,
    sources::capture::{Capture, CaptureError, FlowTable, FrameStream},
    telemetry::{ResponseCounters, ScoreTally},
};

/// What to run over which captures.
pub struct CaptureOptions {
    /// The whole configuration (file and flags). Interfaces, pins, the state directory and
    /// metrics have no meaning offline and are not used.
    pub config: Config,
    /// Captures, merged by timestamp.
    pub files: Vec<PathBuf>,
}

/// A finished run: what it did, and the files that could not be read to their end.
pub struct CaptureRun {
    pub summary: CaptureSummary,
    pub stopped: Vec<CaptureError>,
}

/// Runs the pipeline over the captures. Errors before the replay (a capture that cannot be
/// opened, a bundle that does not load, an output that cannot be written) come back as `Err`
/// with nothing done; a file stopped early is in [`CaptureRun::stopped`].
pub fn run(opts: &CaptureOptions) -> anyhow::Result<CaptureRun> {
    let cfg = &opts.config;
    let captures = opts
        .files
        .iter()
        .map(|p| Capture::open(p))
        .collect::<Result<Vec<_>, _>>()?;
    let (scorer, bundle) = load_scorer(&BundleChoice::of(cfg))?;
    let sequence = load_sequence(&BundleChoice::of(cfg))?;
    let flows_out = match &cfg.agent.flows_out {
        Some(p) => Some(
            File::create(p).with_context(|| format!("cannot create the flow output file {}", p.display()))?,
        ),
        None => None,
    };
    let alerts = cfg.agent.alerts.open()?;
    let started = WallInstant::now();
    let mut frames = FrameStream::new(captures);
    let start = Instant::capture(frames.peek_ts_ns().unwrap_or(0));
    let tables = SharedTables::new();
    allowlist::sync(&mut tables.clone(), &allowlisted(cfg), start.mono_ns)?;
    let counters = Arc::new(ResponseCounters::default());
    let tally = Arc::new(ScoreTally::default());
    let wiring = ResponseWiring {
        enforcer: Box::new(tables.clone()),
        alerts,
        ctx: AlertContext {
            in_iface: None,
            mode: cfg.agent.mode,
            bundle: bundle.label(),
        },
        counters: counters.clone(),
    };
    let mut stage = Stage::configured(cfg, scorer, wiring, tally.clone(), start);
    stage.sequence = sequence;
    stage.flows_out = flows_out.map(|f| {
        let w: Box<dyn io::Write + Send> = Box::new(BufWriter::new(f));
        CsvSink::unix(w)
    });
    let mut driver = Driver::new(
        CaptureDatapath::new(flow_table(cfg), tables),
        stage,
        secs(cfg.datapath.aggregate_interval).as_nanos() as u64,
    );
    replay(&mut frames, &mut driver)?;
    let counts = *frames.counts();
    let mut inputs = frames.finish();
    let summary = CaptureSummary::new(Parts {
        files: &inputs,
        mode: cfg.agent.mode.name(),
        detectors: cfg.detection.detectors.iter().map(|d| d.name()).collect(),
        frames: &counts,
        table: driver.datapath.flows.stats(),
        scoring: tally.get(),
        response: counters.totals(),
        drops: driver.datapath.drops,
        intervals: driver.ticks,
        elapsed: started.elapsed(),
    });
    let stopped = inputs.iter_mut().filter_map(|i| i.stopped.take()).collect();
    Ok(CaptureRun { summary, stopped })
}

/// Every packet through the driver, then the end of the capture.
fn replay(frames: &mut FrameStream, driver: &mut Driver) -> anyhow::Result<()> {
    // The flow table's sink is memory: it cannot fail, but the error type says it could.
    let lost = |e: io::Error| anyhow::anyhow!("handing ended flows to the scoring stage failed: {e}");
    while let Some((m, now)) = frames.next_packet() {
        driver.packet(&m, now).map_err(lost)?;
    }
    driver.finish(frames.now_ns()).map_err(lost)?;
    driver.stage.responder.flush();
    Ok(())
}

/// The flow table with the configured timeouts and sweep interval.
fn flow_table(cfg: &Config) -> FlowTable {
    let d = &cfg.datapath;
    FlowTable::with_sweep_interval(d.timeouts(), secs(d.sweep_interval).as_nanos() as u64)
}

/// The configured prefixes. This host's own addresses and gateways (`allowlist.host_addresses`,
/// `default_gateway`) belong to the machine running the replay, not to the capture's network.
fn allowlisted(cfg: &Config) -> Vec<(crate::respond::Cidr, Origin)> {
    cfg.allowlist
        .prefixes
        .iter()
        .map(|c| (*c, Origin::Agent))
        .collect()
}
