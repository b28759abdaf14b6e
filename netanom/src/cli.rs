//! The `netanom` command line.
use std::{net::SocketAddr, path::PathBuf, process::ExitCode, time::Duration};

use clap::{Parser, Subcommand};

use crate::{
    datapath::{LoadOptions, ModePreference},
    metrics,
    model::cli::{EvalArgs, ScoreArgs},
    offline::{self, FeaturesArgs},
    onnx,
    run::{self, RunOptions},
    stats::Format,
};

#[derive(Debug, Parser)]
#[command(
    name = "netanom",
    version,
    about = "Inline network anomaly detector for Linux gateways"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Attach to interfaces and watch their traffic (observe mode: nothing is dropped).
    Run(RunArgs),
    /// Compute flow features from a capture file (pcap or pcapng) and write them as CSV.
    Features(FeaturesArgs),
    /// Score the rows of a CSV file with a model bundle; appends per-model scores and decisions.
    Score(ScoreArgs),
    /// Evaluate a model bundle on a labelled CSV file (ROC-AUC, PR-AUC, precision, recall, F1).
    Eval(EvalArgs),
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Interface to watch; repeat for several. Default: the interface of the default route.
    #[arg(long = "iface", value_name = "IF")]
    pub ifaces: Vec<String>,
    /// XDP attach mode: auto tries native (driver) mode and falls back to skb mode.
    #[arg(long, value_enum, default_value_t = ModePreference::Auto)]
    pub xdp_mode: ModePreference,
    /// Seconds between counter reports (fractions allowed).
    #[arg(long, value_name = "SECONDS", default_value = "2", value_parser = parse_interval)]
    pub stats_interval: Duration,
    /// How counter reports are printed on stdout.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub stats_format: Format,
    /// ONNX Runtime shared library (default: searched, see README).
    #[arg(long, value_name = "PATH", env = onnx::ENV_LIB)]
    pub ort_lib: Option<PathBuf>,
    /// Mount point of the BPF filesystem.
    #[arg(long, value_name = "DIR", default_value = "/sys/fs/bpf")]
    pub bpffs: PathBuf,
    /// Do not attach the TC egress classifier (then only incoming packets are accounted).
    #[arg(long)]
    pub no_egress: bool,
    /// Flow table entries (LRU). About 424 bytes of kernel memory each.
    #[arg(long, value_name = "N", default_value_t = LoadOptions::default().flow_entries)]
    pub flow_table_size: u32,
    /// Per-source aggregate entries (LRU). About 260 bytes each.
    #[arg(long, value_name = "N", default_value_t = LoadOptions::default().src_entries)]
    pub src_table_size: u32,
    /// Per-destination aggregate entries (LRU). About 196 bytes each.
    #[arg(long, value_name = "N", default_value_t = LoadOptions::default().dst_entries)]
    pub dst_table_size: u32,
    /// Size of the ring buffer carrying ended flows to the agent (power of two; 376 bytes a record).
    #[arg(long, value_name = "BYTES", default_value_t = LoadOptions::default().export_ring_bytes)]
    pub export_ring_bytes: u32,
    /// A flow older than this is exported and continues as a new flow.
    #[arg(long, value_name = "SECONDS", default_value = "120", value_parser = parse_timeout)]
    pub active_timeout: Duration,
    /// A flow without packets for this long is exported and removed.
    #[arg(long, value_name = "SECONDS", default_value = "30", value_parser = parse_timeout)]
    pub idle_timeout: Duration,
    /// Seconds between sweeps of the flow table for idle flows.
    #[arg(long, value_name = "SECONDS", default_value = "1", value_parser = parse_interval)]
    pub sweep_interval: Duration,
    /// Seconds between drains of the per-source and per-destination aggregates.
    #[arg(long, value_name = "SECONDS", default_value = "5", value_parser = parse_interval)]
    pub aggregate_interval: Duration,
    /// Write every ended flow's features to this CSV file (the `netanom features` format).
    #[arg(long, value_name = "FILE")]
    pub flows_out: Option<PathBuf>,
    /// Model bundle directory (default: the bundle embedded in the agent, models/default).
    #[arg(long, value_name = "DIR")]
    pub bundle: Option<PathBuf>,
    /// ONNX Runtime intra-op threads per model.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub model_threads: usize,
    /// Execution provider for the models; cuda falls back to cpu with a warning when it is
    /// not compiled in (cargo feature `cuda`) or no GPU is usable.
    #[arg(long, value_enum, default_value_t = crate::model::ExecutionProvider::Cpu)]
    pub provider: crate::model::ExecutionProvider,
    /// Serve Prometheus metrics at http://ADDRESS:PORT/metrics (an IPv4 address, or an IPv6
    /// one in brackets; port 0 picks a free port).
    #[arg(
        long,
        value_name = "ADDRESS:PORT",
        default_value = metrics::DEFAULT_ADDR,
        value_parser = parse_metrics_addr
    )]
    pub metrics_addr: SocketAddr,
    /// Do not serve Prometheus metrics.
    #[arg(long, conflicts_with = "metrics_addr")]
    pub no_metrics: bool,
}

impl RunArgs {
    pub fn options(self) -> RunOptions {
        let mut load = LoadOptions {
            flow_entries: self.flow_table_size,
            src_entries: self.src_table_size,
            dst_entries: self.dst_table_size,
            export_ring_bytes: self.export_ring_bytes,
            ..LoadOptions::default()
        };
        load.timeouts.active_ns = self.active_timeout.as_nanos() as u64;
        load.timeouts.idle_ns = self.idle_timeout.as_nanos() as u64;
        RunOptions {
            ifaces: self.ifaces,
            xdp_mode: self.xdp_mode,
            egress: !self.no_egress,
            stats_interval: self.stats_interval,
            stats_format: self.stats_format,
            ort_lib: self.ort_lib,
            bpffs: self.bpffs,
            load,
            sweep_interval: self.sweep_interval,
            aggregate_interval: self.aggregate_interval,
            flows_out: self.flows_out,
            bundle: self.bundle,
            model_threads: self.model_threads.max(1),
            provider: self.provider,
            metrics_addr: (!self.no_metrics).then_some(self.metrics_addr),
        }
    }
}

fn parse_metrics_addr(s: &str) -> Result<SocketAddr, String> {
    s.parse().map_err(|_| {
        format!("`{s}` is not ADDRESS:PORT (for example 127.0.0.1:9754, 0.0.0.0:9754 or [::1]:9754)")
    })
}

fn parse_timeout(s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .parse()
        .map_err(|_| format!("`{s}` is not a number of seconds"))?;
    if !(0.001..=86_400.0).contains(&secs) {
        return Err(format!("{secs} s is out of range (0.001 to 86400)"));
    }
    Ok(Duration::from_secs_f64(secs))
}

fn parse_interval(s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .parse()
        .map_err(|_| format!("`{s}` is not a number of seconds"))?;
    if !(0.05..=3600.0).contains(&secs) {
        return Err(format!("{secs} s is out of range (0.05 to 3600)"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Entry point of the `netanom` binary: parses arguments, runs, turns errors into one
/// readable paragraph on stderr and a non-zero exit code (never a panic or a backtrace).
pub fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .format_target(false)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(a) => run::run(a.options()),
        Command::Features(a) => offline::run_features(&a).map_err(anyhow::Error::from),
        Command::Score(a) => crate::model::cli::run_score(&a).map(drop),
        Command::Eval(a) => crate::model::cli::run_eval(&a).map(drop),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("netanom: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory as _;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn interval_is_validated() {
        assert_eq!(parse_interval("0.5"), Ok(Duration::from_millis(500)));
        assert!(parse_interval("0").is_err());
        assert!(parse_interval("abc").unwrap_err().contains("abc"));
    }

    #[test]
    fn run_accepts_repeated_interfaces() {
        let cli = Cli::try_parse_from([
            "netanom",
            "run",
            "--iface",
            "a",
            "--iface",
            "b",
            "--xdp-mode",
            "skb",
        ])
        .unwrap();
        let Command::Run(a) = cli.command else {
            panic!("not the run subcommand");
        };
        assert_eq!(a.ifaces, ["a", "b"]);
        assert_eq!(a.xdp_mode, ModePreference::Skb);
        assert_eq!(
            a.options().metrics_addr,
            Some(metrics::DEFAULT_ADDR.parse().unwrap()),
            "metrics are served by default"
        );
    }

    #[test]
    fn metrics_endpoint_options() {
        let run = |args: &[&str]| {
            Cli::try_parse_from(["netanom", "run"].iter().chain(args)).map(|c| match c.command {
                Command::Run(a) => a.options().metrics_addr,
                _ => panic!("not the run subcommand"),
            })
        };
        assert_eq!(
            run(&["--metrics-addr", "[::1]:9100"]).unwrap(),
            Some("[::1]:9100".parse().unwrap())
        );
        assert_eq!(run(&["--no-metrics"]).unwrap(), None);
        let e = run(&["--metrics-addr", "localhost"]).unwrap_err().to_string();
        assert!(e.contains("not ADDRESS:PORT"), "{e}");
        assert!(run(&["--no-metrics", "--metrics-addr", "127.0.0.1:1"]).is_err());
    }
}
