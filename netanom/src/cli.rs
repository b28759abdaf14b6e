//! The `netanom` command line.
use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::ExitCode,
    time::Duration,
};

use clap::{Parser, Subcommand};

use crate::{
    config::{Config, ConfigError, Mode},
    control,
    datapath::ModePreference,
    model::cli::{EvalArgs, ScoreArgs},
    offline::{self, FeaturesArgs},
    onnx, run,
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
    /// Attach to interfaces, score their traffic, alert, and (in mitigate mode) block.
    Run(Box<RunArgs>),
    /// Show, add or remove blocks in the pinned blocklist (with or without a running agent).
    Block(control::BlockArgs),
    /// Show, add or remove allowlist entries (never blocked, whatever the model says).
    Allow(control::AllowArgs),
    /// The agent's mode, interfaces, model bundle, counters and blocks.
    Status(control::StatusArgs),
    /// Compute flow features from a capture file (pcap or pcapng) and write them as CSV.
    Features(FeaturesArgs),
    /// Score the rows of a CSV file with a model bundle; appends per-model scores and decisions.
    Score(ScoreArgs),
    /// Evaluate a model bundle on a labelled CSV file (ROC-AUC, PR-AUC, precision, recall, F1).
    Eval(EvalArgs),
}

/// `netanom run`'s flags. Each overrides the configuration file's key of the same meaning
/// (README.md, Configuration); without `--config`, the defaults apply.
#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// TOML configuration file (see README.md and deploy/netanom.toml).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
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
    #[arg(long, value_name = "SECONDS", value_parser = parse_interval)]
    pub stats_interval: Option<Duration>,
    /// How counter reports are printed (on stdout, or on stderr when alerts go to stdout).
    /// [default: table]
    #[arg(long, value_enum)]
    pub stats_format: Option<Format>,
    /// ONNX Runtime shared library (default: searched, see README).
    #[arg(long, value_name = "PATH", env = onnx::ENV_LIB)]
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
    #[arg(long, value_name = "SECONDS", value_parser = parse_timeout)]
    pub active_timeout: Option<Duration>,
    /// A flow without packets for this long is exported and removed. [default: 30]
    #[arg(long, value_name = "SECONDS", value_parser = parse_timeout)]
    pub idle_timeout: Option<Duration>,
    /// Seconds between sweeps of the flow table for idle flows. [default: 1]
    #[arg(long, value_name = "SECONDS", value_parser = parse_interval)]
    pub sweep_interval: Option<Duration>,
    /// Seconds between drains (and scoring) of the per-source and per-destination aggregates.
    /// [default: 0.5]
    #[arg(long, value_name = "SECONDS", value_parser = parse_interval)]
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
    pub provider: Option<crate::model::ExecutionProvider>,
    /// Serve Prometheus metrics at http://ADDRESS:PORT/metrics (an IPv4 address, or an IPv6
    /// one in brackets; port 0 picks a free port). [default: 127.0.0.1:9754]
    #[arg(long, value_name = "ADDRESS:PORT", value_parser = parse_metrics_addr)]
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
            a.alerts = s.parse().unwrap_or_default();
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
        Command::Run(a) => a
            .config()
            .map_err(anyhow::Error::from)
            .and_then(|cfg| run::run(run::RunOptions::new(cfg, *a))),
        Command::Block(a) => control::run_block(&a),
        Command::Allow(a) => control::run_allow(&a),
        Command::Status(a) => control::run_status(&a),
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
    use crate::metrics;
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
        let cfg = a.config().unwrap();
        assert_eq!(cfg.datapath.xdp_mode, ModePreference::Skb);
        assert_eq!(cfg.agent.interfaces, ["a", "b"]);
        assert!(cfg.metrics.enabled, "metrics are served by default");
        assert_eq!(cfg.metrics.addr, metrics::DEFAULT_ADDR.parse().unwrap());
    }

    #[test]
    fn flags_override_the_config_file() {
        let dir = std::env::temp_dir().join(format!("netanom-cli-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("c.toml");
        std::fs::write(
            &file,
            "[agent]\nmode = \"mitigate\"\nstats_interval = 5\n[datapath]\nidle_timeout = 7\n",
        )
        .unwrap();
        let f = file.to_str().unwrap();
        let cfg = |extra: &[&str]| {
            let cli = Cli::try_parse_from(["netanom", "run", "--config", f].iter().chain(extra)).unwrap();
            match cli.command {
                Command::Run(a) => a.config(),
                _ => panic!("not run"),
            }
        };
        let c = cfg(&[]).unwrap();
        assert_eq!(c.agent.mode, Mode::Mitigate);
        assert_eq!(c.agent.stats_interval, 5.0);
        assert_eq!(c.datapath.idle_timeout, 7.0);
        let c = cfg(&["--mode", "observe", "--idle-timeout", "9", "--alerts", ""]).unwrap();
        assert_eq!(c.agent.mode, Mode::Observe);
        assert_eq!(c.datapath.idle_timeout, 9.0);
        assert_eq!(
            c.agent.stats_interval, 5.0,
            "not given on the command line: the file's"
        );
        std::fs::write(&file, "[agent]\nmode = \"mitigate\"\nbogus = 1\n").unwrap();
        let e = cfg(&[]).unwrap_err().to_string();
        assert!(e.contains(":3:") && e.contains("bogus"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn control_commands_parse() {
        let c = Cli::try_parse_from([
            "netanom",
            "block",
            "add",
            "198.18.0.9/32",
            "--ttl",
            "60",
            "--reason",
            "x",
        ])
        .unwrap();
        assert!(matches!(c.command, Command::Block(_)));
        let e = Cli::try_parse_from(["netanom", "block", "add", "198.18.0.9/33"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("prefix length"), "{e}");
        let e = Cli::try_parse_from(["netanom", "allow", "add", "10.0.0.1/8"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("did you mean 10.0.0.0/8"), "{e}");
        assert!(Cli::try_parse_from(["netanom", "status", "--json"]).is_ok());
        assert!(
            Cli::try_parse_from(["netanom", "block", "list", "--json", "--pin-dir", "/sys/fs/bpf/x"]).is_ok()
        );
    }

    #[test]
    fn metrics_endpoint_options() {
        let run = |args: &[&str]| {
            Cli::try_parse_from(["netanom", "run"].iter().chain(args)).map(|c| match c.command {
                Command::Run(a) => {
                    let c = a.config().unwrap();
                    c.metrics.enabled.then_some(c.metrics.addr)
                }
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
