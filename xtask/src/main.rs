//! netanom's developer and operator commands: `cargo xtask <command>`.
//!
//! Every command but `setup` first runs the setup checks (installing only what is missing),
//! so a newcomer never has to know about setup.
mod cmd;
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
    /// Formatting, clippy (user crates and the eBPF crate, warnings denied), unit tests and
    /// the privileged integration tests. Needs root.
    Test,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Setup => setup::run().map(|_| ()),
        Command::Build { release } => setup::ensure().and_then(|env| tasks::build(&env, release).map(|_| ())),
        Command::Run { release, args } => setup::ensure().and_then(|env| tasks::run(&env, release, &args)),
        Command::Test => setup::ensure().and_then(|env| tasks::test(&env)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
