//! `netanom fleet status|tail`: the fleet as the running agent sees it (its status file), and
//! the fleet's alerts followed live from NATS.
use std::{io::Write as _, path::PathBuf};

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};

use crate::{
    fleet::client,
    pipeline::config::Config,
    sinks::status::{AgentState, DEFAULT_STATE_DIR},
    telemetry::fleet::FleetState,
};

#[derive(Debug, Args)]
pub struct FleetArgs {
    #[command(subcommand)]
    pub cmd: FleetCmd,
}

#[derive(Debug, Subcommand)]
pub enum FleetCmd {
    /// The connection, the peers seen (heartbeats), their last decision and its lag.
    Status {
        #[arg(long)]
        json: bool,
        /// Directory where the running agent writes its status file.
        #[arg(long, value_name = "DIR", default_value = DEFAULT_STATE_DIR)]
        state_dir: PathBuf,
    },
    /// Follows every gateway's alerts (the alerts stream), one line each; Ctrl-C stops.
    Tail {
        /// The EVE JSON objects as published (with `host`: the gateway).
        #[arg(long)]
        json: bool,
        /// The configuration file whose [fleet] says where NATS is.
        #[arg(long, value_name = "FILE", default_value = "/etc/netanom/netanom.toml")]
        config: PathBuf,
        /// From the stream's first alert (a week is kept), not only new ones.
        #[arg(long)]
        all: bool,
        /// Stop after this many alerts.
        #[arg(long, value_name = "N")]
        count: Option<u64>,
    },
}

pub fn run(a: &FleetArgs) -> anyhow::Result<()> {
    match &a.cmd {
        FleetCmd::Status { json, state_dir } => status(*json, state_dir),
        FleetCmd::Tail {
            json,
            config,
            all,
            count,
        } => tail(*json, config, *all, *count),
    }
}

fn status(json: bool, dir: &std::path::Path) -> anyhow::Result<()> {
    let Some(state) = AgentState::read(dir) else {
        bail!(
            "no agent status in {}: is `netanom run` running (with --state-dir {})?",
            dir.display(),
            dir.display()
        );
    };
    let Some(f) = state.fleet.filter(|_| !state.stopped) else {
        bail!("the agent does not run with [fleet] enabled = true (or it stopped)");
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&f)?);
        return Ok(());
    }
    print_status(&f, state.updated_unix);
    Ok(())
}

fn print_status(f: &FleetState, now: f64) {
    let err = f.error.as_deref().map(|e| format!(" ({e})")).unwrap_or_default();
    println!("gateway:      {} on {}", f.gateway, f.servers.join(", "));
    println!("connection:   {}{err}", f.connection);
    println!(
        "replayed:     {}; {} active blocks from the fleet",
        if f.replayed { "yes" } else { "not yet" },
        f.remote_blocks
    );
    if f.peers.is_empty() {
        println!("peers:        none seen yet");
        return;
    }
    println!(
        "{:<24} {:>10}  {:<36} {:>8}  outcome",
        "peer", "heartbeat", "last decision", "lag"
    );
    for p in &f.peers {
        let hb = p
            .heartbeat_at
            .map_or("never".to_owned(), |t| format!("{:.0}s ago", (now - t).max(0.0)));
        let lag = p.lag_s.map_or("-".to_owned(), |l| format!("{l:.2}s"));
        println!(
            "{:<24} {:>10}  {:<36} {:>8}  {}",
            p.gateway,
            hb,
            p.last_decision.as_deref().unwrap_or("-"),
            lag,
            p.outcome.as_deref().unwrap_or("-")
        );
    }
}

fn tail(json: bool, config: &std::path::Path, all: bool, count: Option<u64>) -> anyhow::Result<()> {
    let cfg = Config::load(config)?;
    cfg.validate()?;
    let subjects = cfg.fleet.subjects();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let mut seen = 0u64;
    let mut out = std::io::stdout().lock();
    let each = |subject: &str, payload: &[u8]| {
        let gw = subjects.gateway_of("alerts", subject).unwrap_or("?");
        let line = if json {
            String::from_utf8_lossy(payload).into_owned()
        } else {
            summary(gw, payload)
        };
        seen += 1;
        let ok = writeln!(out, "{line}").and_then(|()| out.flush()).is_ok();
        ok && count.is_none_or(|c| seen < c)
    };
    rt.block_on(client::follow_alerts(&cfg.fleet, all, each))?;
    Ok(())
}

/// One alert in a line: gateway, time, action, signature, source and destination.
fn summary(gateway: &str, payload: &[u8]) -> String {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(payload) else {
        return format!("{gateway} (unreadable alert: {} bytes)", payload.len());
    };
    let s = |k: &str| v[k].as_str().unwrap_or("-").to_owned();
    format!(
        "{gateway:<16} {} {:<12} {} {} -> {}",
        s("timestamp"),
        v["alert"]["action"].as_str().unwrap_or("-"),
        v["alert"]["signature"].as_str().unwrap_or("-"),
        s("src_ip"),
        s("dest_ip"),
    )
}
