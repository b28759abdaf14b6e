//! The `netanom` command: its subcommands, and the entry point that turns any error into one
//! readable paragraph on stderr and a non-zero exit code.
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use super::{allow, block, eval, features, fleet, run, score, status};

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
    Run(Box<run::RunArgs>),
    /// Show, add or remove blocks in the pinned blocklist (with or without a running agent).
    Block(block::BlockArgs),
    /// Show, add or remove allowlist entries (never blocked, whatever the model says).
    Allow(allow::AllowArgs),
    /// The agent's mode, interfaces, model bundle, counters and blocks.
    Status(status::StatusArgs),
    /// The fleet (gateways sharing decisions and alerts over NATS): status, alerts.
    Fleet(fleet::FleetArgs),
    /// Compute flow features from a capture file (pcap or pcapng) and write them as CSV.
    Features(features::FeaturesArgs),
    /// Score the rows of a CSV file with a model bundle; appends per-model scores and decisions.
    Score(score::ScoreArgs),
    /// Evaluate a model bundle on a labelled CSV file (ROC-AUC, PR-AUC, precision, recall, F1).
    Eval(eval::EvalArgs),
}

/// Entry point of the `netanom` binary: parses arguments, runs, turns errors into one
/// readable paragraph on stderr and a non-zero exit code (never a panic or a backtrace).
pub fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .format_target(false)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(a) => run::run(*a),
        Command::Block(a) => block::run(&a),
        Command::Allow(a) => allow::run(&a),
        Command::Status(a) => status::run(&a),
        Command::Fleet(a) => fleet::run(&a),
        Command::Features(a) => features::run(&a).map_err(anyhow::Error::from),
        Command::Score(a) => score::run(&a).map(drop),
        Command::Eval(a) => eval::run(&a).map(drop),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("netanom: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
