//! The `netanom` command line.
use std::{path::PathBuf, process::ExitCode, time::Duration};

use clap::{Parser, Subcommand};

use crate::{
    datapath::ModePreference,
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
        Command::Run(a) => run::run(RunOptions {
            ifaces: a.ifaces,
            xdp_mode: a.xdp_mode,
            stats_interval: a.stats_interval,
            stats_format: a.stats_format,
            ort_lib: a.ort_lib,
            bpffs: a.bpffs,
        }),
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
        let Command::Run(a) = cli.command;
        assert_eq!(a.ifaces, ["a", "b"]);
        assert_eq!(a.xdp_mode, ModePreference::Skb);
    }
}
