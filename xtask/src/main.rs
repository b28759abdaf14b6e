//! netanom's developer and operator commands: `cargo xtask <command>`.
//!
//! Every command but `setup` first runs the setup checks (installing only what is missing),
//! so a newcomer never has to know about setup.
mod cmd;
mod container;
mod corpus;
mod deploy;
mod models;
mod setup;
mod tasks;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use setup::Scope;

#[derive(Parser)]
#[command(name = "cargo xtask", about = "netanom developer and operator commands")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check every prerequisite and install what is missing (idempotent).
    Setup {
        /// Only what building the agent needs (no test tools, no CUDA library, no bpffs): the
        /// container image's build stage runs this.
        #[arg(long, conflicts_with = "container")]
        build_only: bool,
        /// Also the container tools (podman, buildah, mmdebstrap) for `test --container`.
        #[arg(long)]
        container: bool,
        /// Also the corpus recorder's tools (nmap, hydra, hping3, openssh-server, vsftpd,
        /// tcpdump, dnsmasq, dig, curl, openssl) for `cargo xtask corpus`; their services are
        /// not started on the host.
        #[arg(long, conflicts_with = "build_only")]
        corpus: bool,
    },
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
    /// privileged integration tests, the deployment files' checks, the `cuda` build's
    /// fallback and pytest. Needs root.
    Test {
        /// Also build the container image (deploy/container/Containerfile) and run the agent
        /// from its filesystem in the lab (slow: a release build inside the image).
        #[arg(long)]
        container: bool,
    },
    /// Build the container image (deploy/container/Containerfile) with podman, offline: the
    /// Debian base and the build stage's Rust image are made locally when missing.
    Image,
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
        /// Only these sections, comma-separated (xdp, cores, veth, drain, scoring, mitigation,
        /// loop, offline).
        #[arg(long, value_name = "NAMES")]
        only: Option<String>,
    },
    /// Re-record the labelled captures of tests/corpus/ with real tools in the namespace lab
    /// (nmap, hydra, hping3, curl, ssh, dig against sshd, vsftpd, an HTTP mirror, dnsmasq and
    /// an HTTPS C2 server) and write their manifest entries. Installs the tools first
    /// (`setup --corpus`). Needs root.
    Corpus {
        /// Only this scenario (repeatable).
        #[arg(long, value_name = "SCENARIO")]
        only: Vec<String>,
    },
    /// The detection scorecard: every capture of tests/corpus/manifest.toml through `netanom
    /// run --pcap` in mitigate mode with all detectors, the aggregates only and the models
    /// only; writes target/scorecard/report.md and report.json.
    Scorecard {
        /// Only this capture (repeatable).
        #[arg(long, value_name = "SCENARIO")]
        only: Vec<String>,
        /// Where to write the report (default target/scorecard).
        #[arg(long, value_name = "DIR")]
        out: Option<std::path::PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Setup {
            build_only,
            container,
            corpus,
        } => {
            let scope = match (build_only, container) {
                (true, _) => Scope::BUILD,
                (false, true) => Scope::CONTAINER,
                (false, false) => Scope::DEV,
            };
            setup::run(if corpus { scope.with_corpus() } else { scope }).map(|_| ())
        }
        Command::Build { release } => {
            setup::ensure(Scope::BUILD).and_then(|env| tasks::build(&env, release).map(|_| ()))
        }
        Command::Run { release, args } => {
            setup::ensure(Scope::DEV).and_then(|env| tasks::run(&env, release, &args))
        }
        Command::Test { container } => {
            let scope = if container { Scope::CONTAINER } else { Scope::DEV };
            setup::ensure(scope).and_then(|env| tasks::test(&env, container))
        }
        Command::Image => setup::ensure(Scope::CONTAINER).and_then(|_| container::image().map(|_| ())),
        Command::Train { args } => setup::ensure(Scope::DEV).and_then(|_| models::train(&args)),
        Command::Eval { args } => setup::ensure(Scope::DEV).and_then(|_| models::eval(&args)),
        Command::Sweep { kind, args } => setup::ensure(Scope::DEV).and_then(|_| models::sweep(&kind, &args)),
        Command::Bench { quick, out, only } => {
            setup::ensure(Scope::DEV).and_then(|env| tasks::bench(&env, quick, out, only))
        }
        Command::Corpus { only } => setup::ensure(Scope::CORPUS).and_then(|_| corpus::record(&only)),
        Command::Scorecard { only, out } => {
            setup::ensure(Scope::BUILD).and_then(|env| corpus::scorecard(&env, &only, out))
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
