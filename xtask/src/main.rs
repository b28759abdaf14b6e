//! netanom's developer and operator commands: `cargo xtask <command>`.
//!
//! Every command but `setup` first runs the setup checks (installing only what is missing),
//! so a newcomer never has to know about setup.
mod cmd;
mod models;
mod setup;
mod tasks;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "netanom developer and operator commands")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check every prerequisite and install what is missing (idempotent).
    Setup,
    /// Build the agent with its embedded XDP program.
    Build {
        /// Build with optimizations.
        #[arg(long)]
        release: bool,
    },
    /// Build, then run the agent: `cargo xtask run -- --iface IF [netanom run flags]`.
    Run {
        /// Build with optimizations.
        #[arg(long)]
        release: bool,
        /// Arguments for `netanom run` (after `--`).
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Formatting, clippy (user crates and the eBPF crate, warnings denied), unit tests, the
    /// privileged integration tests, the `cuda` build's fallback and pytest. Needs root.
    Test,
    /// Train a model bundle in models/ (its own virtualenv, created on first use):
    /// `cargo xtask train -- --dataset nsl-kdd|kdd99|cic-ids2017 [--out DIR] [--quantile Q] [--ensemble RULE]`,
    /// `--dataset flows --input FLOWS.csv [...]` or `--dataset csv --input FILE --label-column C [...]`.
    Train {
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Evaluate and write models/reports/<dataset>.md with plots:
    /// `cargo xtask eval -- --dataset nsl-kdd|kdd99|cic-ids2017`, or `--dataset flows --bundle DIR
    /// --input FLOWS.csv --eval-list LIST.csv`.
    Eval {
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Model size sweeps (size, speed and validation quality; the choice rule; writes
    /// models/reports/<dataset>-<kind>-sweep.md): `cargo xtask sweep rf|if -- --dataset D [...]`.
    Sweep {
        /// `rf` (Random Forest) or `if` (Isolation Forest).
        kind: String,
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Performance tables, each figure beside a baseline measured in the same run; printed
    /// and written to target/bench/report.md (or --out). Needs root.
    Bench {
        /// Smaller sizes and shorter runs (a smoke run, not for quoting).
        #[arg(long)]
        quick: bool,
        /// Where to write the report.
        #[arg(long, value_name = "FILE")]
        out: Option<std::path::PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Setup => setup::run().map(|_| ()),
        Command::Build { release } => setup::ensure().and_then(|env| tasks::build(&env, release).map(|_| ())),
        Command::Run { release, args } => setup::ensure().and_then(|env| tasks::run(&env, release, &args)),
        Command::Test => setup::ensure().and_then(|env| tasks::test(&env)),
        Command::Train { args } => setup::ensure().and_then(|_| models::train(&args)),
        Command::Eval { args } => setup::ensure().and_then(|_| models::eval(&args)),
        Command::Sweep { kind, args } => setup::ensure().and_then(|_| models::sweep(&kind, &args)),
        Command::Bench { quick, out } => setup::ensure().and_then(|env| tasks::bench(&env, quick, out)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
