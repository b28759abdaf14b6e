//! `netanom run`: its flags, put over the configuration file, then the live pipeline.
use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use super::args;
use crate::{
    datapath::ModePreference,
    detect::DetectorName,
    model::{ExecutionProvider, runtime},
    pipeline::{
        self,
        config::{Config, ConfigError},
    },
    respond::Mode,
    sinks::stats_line::Format,
};

/// Runs the agent until SIGINT or SIGTERM (see [`pipeline::live`]). SIGHUP re-reads the
/// configuration file with these flags over it. With `--pcap`, runs the same pipeline over
/// the captures instead (see [`pipeline::capture`]).
pub fn run(args: RunArgs) -> anyhow::Result<()> {
    if !args.pcap.is_empty() {
        return run_captures(&args);
    }
    let cfg = args.config()?;
    let config_path = args.config.clone();
    let mut opts = pipeline::live::LiveOptions::of(cfg);
    opts.config_path = config_path;
    opts.source = Some(Box::new(move || Ok(args.config()?)));
    pipeline::live::run(opts)
}

/// `netanom run --pcap`: the summary on stderr (one JSON object with `--stats-format json`),
/// then an error for a capture that could not be read to its end, after everything read
/// before it was scored and its alerts written.
fn run_captures(args: &RunArgs) -> anyhow::Result<()> {
    let config = args.config()?;
    let json = config.agent.stats_format == Format::Json;
    let done = pipeline::capture::run(&pipeline::capture::CaptureOptions {
        config,
        files: args.pcap.clone(),
    })?;
    if json {
        eprintln!("{}", serde_json::to_string(&done.summary)?);
    } else {
        eprintln!("{}", done.summary);
    }
    let more = done.stopped.len().saturating_sub(1);
    match done.stopped.into_iter().next() {
        None => Ok(()),
        Some(e) if more > 0 => Err(anyhow::anyhow!(
            "{e} ({more} more files stopped early, see above)"
        )),
        Some(e) => Err(e.into()),
    }
}

/// `netanom run`'s flags. Each overrides the configuration file's key of the same meaning
/// (README.md, Configuration); without `--config`, the defaults apply.
#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// TOML configuration file (see README.md and deploy/netanom.toml).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Run the detector over this capture file (pcap or pcapng, Ethernet) instead of live
    /// traffic, in capture time, mitigation simulated; repeat for several files, merged by
    /// timestamp. Alerts as live; a summary on stderr.
    #[arg(
        long,
        value_name = "FILE",
        conflicts_with_all = [
            "ifaces", "xdp_mode", "bpffs", "pin_dir", "state_dir", "no_egress", "flow_table_size",
            "src_table_size", "dst_table_size", "export_ring_bytes", "stats_interval",
            "metrics_addr", "no_metrics",
        ]
    )]
    pub pcap: Vec<PathBuf>,
    /// What makes findings, comma-separated: models (anomalous flows), aggregates (floods,
    /// SYN floods, scans, victims). [default: models,aggregates]
    #[arg(long, value_enum, value_delimiter = ',', value_name = "LIST")]
    pub detectors: Vec<DetectorName>,
    /// Interface to watch; repeat for several. Default: the interface of the default route.
    #[arg(long = "iface", value_name = "IF")]
    pub ifaces: Vec<String>,
    /// observe: alerts and would-block counts, nothing dropped. mitigate: blocks offenders and
    /// rate-limits floods in the kernel. [default: observe]
    #[arg(long, value_enum)]
    pub mode: Option<Mode>,
    /// Where alerts go (EVE JSON lines): a file (appended), `-` for stdout, `` for none.
    /// [default: -]
    #[arg(long, value_name = "PATH|-")]
    pub alerts: Option<String>,
    /// XDP attach mode: auto tries native (driver) mode and falls back to skb mode. [default: auto]
    #[arg(long, value_enum)]
    pub xdp_mode: Option<ModePreference>,
    /// Seconds between counter reports (fractions allowed). [default: 2]
    #[arg(long, value_name = "SECONDS", value_parser = args::parse_interval)]
    pub stats_interval: Option<Duration>,
    /// How counter reports are printed (on stdout, or on stderr when alerts go to stdout).
    /// [default: table]
    #[arg(long, value_enum)]
    pub stats_format: Option<Format>,
    /// ONNX Runtime shared library (default: searched, see README).
    #[arg(long, value_name = "PATH", env = runtime::ENV_LIB)]
    pub ort_lib: Option<PathBuf>,
    /// Mount point of the BPF filesystem. [default: /sys/fs/bpf]
    #[arg(long, value_name = "DIR")]
    pub bpffs: Option<PathBuf>,
    /// Where blocks, allows and rate limits are pinned (under the BPF filesystem).
    /// [default: /sys/fs/bpf/netanom]
    #[arg(long, value_name = "DIR")]
    pub pin_dir: Option<PathBuf>,
    /// Where the agent writes its status file for `netanom status`. [default: /run/netanom]
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Do not attach the TC egress classifier (then only incoming packets are accounted).
    #[arg(long)]
    pub no_egress: bool,
    /// Flow table entries (LRU). About 424 bytes of kernel memory each. [default: 262144]
    #[arg(long, value_name = "N")]
    pub flow_table_size: Option<u32>,
    /// Per-source aggregate entries (LRU). About 260 bytes each. [default: 65536]
    #[arg(long, value_name = "N")]
    pub src_table_size: Option<u32>,
    /// Per-destination aggregate entries (LRU). About 196 bytes each. [default: 65536]
    #[arg(long, value_name = "N")]
    pub dst_table_size: Option<u32>,
    /// Size of the ring buffer carrying ended flows to the agent (power of two; 408 bytes a
    /// record). [default: 4194304]
    #[arg(long, value_name = "BYTES")]
    pub export_ring_bytes: Option<u32>,
    /// A flow older than this is exported and continues as a new flow. [default: 120]
    #[arg(long, value_name = "SECONDS", value_parser = args::parse_timeout)]
    pub active_timeout: Option<Duration>,
    /// A flow without packets for this long is exported and removed. [default: 30]
    #[arg(long, value_name = "SECONDS", value_parser = args::parse_timeout)]
    pub idle_timeout: Option<Duration>,
    /// Seconds between sweeps of the flow table for idle flows. [default: 1]
    #[arg(long, value_name = "SECONDS", value_parser = args::parse_interval)]
    pub sweep_interval: Option<Duration>,
    /// Seconds between drains (and scoring) of the per-source and per-destination aggregates.
    /// [default: 0.5]
    #[arg(long, value_name = "SECONDS", value_parser = args::parse_interval)]
    pub aggregate_interval: Option<Duration>,
    /// Write every ended flow's features to this CSV file (the `netanom features` format).
    #[arg(long, value_name = "FILE")]
    pub flows_out: Option<PathBuf>,
    /// Model bundle directory (default: the bundle embedded in the agent, models/default).
    #[arg(long, value_name = "DIR")]
    pub bundle: Option<PathBuf>,
    /// ONNX Runtime intra-op threads per model. [default: 1]
    #[arg(long, value_name = "N")]
    pub model_threads: Option<usize>,
    /// Execution provider for the models; cuda falls back to cpu with a warning when it is
    /// not compiled in (cargo feature `cuda`) or no GPU is usable. [default: cpu]
    #[arg(long, value_enum)]
    pub provider: Option<ExecutionProvider>,
    /// Serve Prometheus metrics at http://ADDRESS:PORT/metrics (an IPv4 address, or an IPv6
    /// one in brackets; port 0 picks a free port). [default: 127.0.0.1:9754]
    #[arg(long, value_name = "ADDRESS:PORT", value_parser = args::parse_metrics_addr)]
    pub metrics_addr: Option<SocketAddr>,
    /// Do not serve Prometheus metrics.
    #[arg(long, conflicts_with = "metrics_addr")]
    pub no_metrics: bool,
}

impl RunArgs {
    /// The configuration: the file (if any), then these flags over it, validated.
    pub fn config(&self) -> Result<Config, ConfigError> {
        let mut cfg = match &self.config {
            Some(p) => Config::load(p)?,
            None => Config::default(),
        };
        self.apply(&mut cfg);
        cfg.validate()?;
        Ok(cfg)
    }

    /// Puts the flags that were given over `cfg`.
    pub fn apply(&self, cfg: &mut Config) {
        let a = &mut cfg.agent;
        if !self.ifaces.is_empty() {
            a.interfaces = self.ifaces.clone();
        }
        set(&mut a.mode, self.mode);
        if let Some(s) = &self.alerts {
            a.alerts = s.parse().unwrap_or_else(|never| match never {});
        }
        set(
            &mut a.stats_interval,
            self.stats_interval.map(|d| d.as_secs_f64()),
        );
        set(&mut a.stats_format, self.stats_format);
        if self.ort_lib.is_some() {
            a.ort_lib = self.ort_lib.clone();
        }
        if let Some(b) = &self.bpffs {
            // The default pin directory follows a moved BPF filesystem.
            if a.pin_dir == Path::new(netanom_common::names::PIN_DIR) {
                a.pin_dir = b.join("netanom");
            }
            a.bpffs = b.clone();
        }
        set(&mut a.pin_dir, self.pin_dir.clone());
        set(&mut a.state_dir, self.state_dir.clone());
        if self.flows_out.is_some() {
            a.flows_out = self.flows_out.clone();
        }
        if self.bundle.is_some() {
            a.bundle = self.bundle.clone();
        }
        set(&mut a.model_threads, self.model_threads);
        set(&mut a.provider, self.provider);
        let d = &mut cfg.datapath;
        set(&mut d.xdp_mode, self.xdp_mode);
        if self.no_egress {
            d.egress = false;
        }
        set(&mut d.flow_table_size, self.flow_table_size);
        set(&mut d.src_table_size, self.src_table_size);
        set(&mut d.dst_table_size, self.dst_table_size);
        set(&mut d.export_ring_bytes, self.export_ring_bytes);
        set(
            &mut d.active_timeout,
            self.active_timeout.map(|d| d.as_secs_f64()),
        );
        set(&mut d.idle_timeout, self.idle_timeout.map(|d| d.as_secs_f64()));
        set(
            &mut d.sweep_interval,
            self.sweep_interval.map(|d| d.as_secs_f64()),
        );
        set(
            &mut d.aggregate_interval,
            self.aggregate_interval.map(|d| d.as_secs_f64()),
        );
        if !self.detectors.is_empty() {
            cfg.detection.detectors = self.detectors.clone();
        }
        set(&mut cfg.metrics.addr, self.metrics_addr);
        if self.no_metrics {
            cfg.metrics.enabled = false;
        }
    }
}

fn set<T>(slot: &mut T, v: Option<T>) {
    if let Some(v) = v {
        *slot = v;
    }
}
