//! `netanom status`: the running agent (from its status file and pid), and the pinned lists.
use std::{fs, path::PathBuf};

use anyhow::Context as _;
use clap::Args;
use netanom_common::time::EveTime;
use serde::Serialize;

use super::args::Where;
use crate::{
    pipeline::clock::mono_now_ns,
    respond::{EnforceError, Enforcer as _, KernelTables},
    sinks::status::{AgentState, DEFAULT_STATE_DIR, InterfaceState},
    telemetry::bgp::BgpState,
};

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[arg(long)]
    pub json: bool,
    /// Directory where the running agent writes its status file.
    #[arg(long, value_name = "DIR", default_value = DEFAULT_STATE_DIR)]
    pub state_dir: PathBuf,
    #[command(flatten)]
    pub at: Where,
}

fn pid_alive(pid: u32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    pid != 0 && unsafe { libc::kill(pid as i32, 0) } == 0
        || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

#[derive(Serialize)]
struct Status {
    agent: String,
    pid: Option<u32>,
    mode: Option<String>,
    effective_mode: Option<String>,
    interfaces: Vec<InterfaceState>,
    /// XDP links still pinned (the program stays attached, enforcing blocks, without an agent).
    pinned_links: Vec<String>,
    bundle: Option<String>,
    pin_dir: String,
    blocks_active: usize,
    blocks_remembered: usize,
    allowlist_entries: usize,
    rate_limits_active: usize,
    counters: serde_json::Value,
    mitigation: serde_json::Value,
    /// What the BGP speaker announces for the running agent (`[bgp]` on).
    #[serde(skip_serializing_if = "Option::is_none")]
    bgp: Option<BgpState>,
    updated: Option<String>,
}

/// Runs `netanom status`.
pub fn run(a: &StatusArgs) -> anyhow::Result<()> {
    let state = AgentState::read(&a.state_dir);
    let running = state.as_ref().is_some_and(|s| !s.stopped && pid_alive(s.pid));
    let now = mono_now_ns();
    let (blocks, allows, limits) = match KernelTables::open(&a.at.pin_dir) {
        Ok(t) => (t.blocks()?, t.allows()?.len(), t.rate_limits()?),
        Err(EnforceError::NotPinned { .. }) => (Vec::new(), 0, Vec::new()),
        Err(e) => return Err(e).context("reading the pinned maps"),
    };
    let pinned_links: Vec<String> = fs::read_dir(&a.at.pin_dir)
        .map(|d| {
            d.filter_map(Result::ok)
                .filter_map(|e| {
                    e.file_name()
                        .to_str()?
                        .strip_prefix("link_xdp_")
                        .map(str::to_owned)
                })
                .collect()
        })
        .unwrap_or_default();
    let s = Status {
        agent: match (&state, running) {
            (_, true) => "running".into(),
            (Some(s), false) if s.stopped => "stopped".into(),
            (Some(_), false) => "not running (it did not stop cleanly)".into(),
            (None, false) => "not running".into(),
        },
        pid: running.then(|| state.as_ref().map(|s| s.pid)).flatten(),
        mode: state.as_ref().filter(|_| running).map(|s| s.mode.clone()),
        effective_mode: state
            .as_ref()
            .filter(|_| running)
            .map(|s| s.effective_mode.clone()),
        interfaces: state
            .as_ref()
            .filter(|_| running)
            .map(|s| s.interfaces.clone())
            .unwrap_or_default(),
        pinned_links,
        bundle: state.as_ref().map(|s| s.bundle.clone()),
        pin_dir: a.at.pin_dir.display().to_string(),
        blocks_active: blocks.iter().filter(|b| b.active(now)).count(),
        blocks_remembered: blocks.len(),
        allowlist_entries: allows,
        rate_limits_active: limits.iter().filter(|(_, r)| r.active(now)).count(),
        counters: state.as_ref().map(|s| s.counters.clone()).unwrap_or_default(),
        mitigation: state.as_ref().map(|s| s.mitigation.clone()).unwrap_or_default(),
        bgp: state.as_ref().filter(|_| running).and_then(|s| s.bgp.clone()),
        updated: state
            .as_ref()
            .map(|s| EveTime((s.updated_unix * 1e9) as u64).to_string()),
    };
    if a.json {
        println!("{}", serde_json::to_string_pretty(&s)?);
        return Ok(());
    }
    println!(
        "agent:        {}{}",
        s.agent,
        s.pid.map(|p| format!(" (pid {p})")).unwrap_or_default()
    );
    if let (Some(m), Some(e)) = (&s.mode, &s.effective_mode) {
        let note = if m != e { " (circuit breaker open)" } else { "" };
        println!("mode:         {e}{note}");
    }
    for i in &s.interfaces {
        println!(
            "interface:    {} (XDP {}{})",
            i.iface,
            i.xdp_mode,
            if i.egress { ", TC egress" } else { "" }
        );
    }
    if !running && !s.pinned_links.is_empty() {
        println!(
            "datapath:     still attached to {} without an agent: blocks are enforced and expire on their own",
            s.pinned_links.join(", ")
        );
    }
    if let Some(b) = &s.bundle {
        println!("bundle:       {b}");
    }
    println!("pin dir:      {}", s.pin_dir);
    println!(
        "blocks:       {} active ({} remembered), {} rate limits, {} allowlist entries",
        s.blocks_active, s.blocks_remembered, s.rate_limits_active, s.allowlist_entries
    );
    if let Some(u) = &s.updated {
        println!("updated:      {u}");
    }
    if let (true, Some(obj)) = (running, s.mitigation.as_object()) {
        let line: Vec<String> = obj.iter().map(|(k, v)| format!("{k}={v}")).collect();
        println!("mitigation:   {}", line.join(" "));
    }
    if let Some(b) = &s.bgp {
        print_bgp(b);
    }
    Ok(())
}

/// The announcer's lines: the speaker, then one line per route it announces.
fn print_bgp(b: &BgpState) {
    let excluded: Vec<String> = b
        .excluded
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(r, n)| format!("{r}={n}"))
        .collect();
    let excluded = if excluded.is_empty() {
        String::new()
    } else {
        format!("; not announced: {}", excluded.join(" "))
    };
    println!(
        "bgp:          speaker {} {}, {} routes announced{excluded}",
        b.speaker,
        b.state,
        b.announced.len()
    );
    if let Some(e) = &b.error {
        println!("              {e}");
    }
    for r in &b.announced {
        println!("  {r}");
    }
}
