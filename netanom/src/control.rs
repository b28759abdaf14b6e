//! `netanom block|allow|status`: the operator's hands on the pinned maps, with or without a
//! running agent, and the agent's status file that `status` reads.
use std::{
    fs,
    io::Write as _,
    path::{Path, PathBuf},
};

use anyhow::Context as _;
use clap::{Args, Subcommand};
use netanom_common::{mitigate::Origin, names};
use serde::{Deserialize, Serialize};

use crate::{
    alerts,
    cidr::Cidr,
    drain,
    tables::{Tables, reason_bytes},
};

/// Options every control command takes.
#[derive(Debug, Clone, Args)]
pub struct Where {
    /// Directory where the agent pins its blocklist, allowlist and rate limits.
    #[arg(long, value_name = "DIR", default_value = names::PIN_DIR, global = true)]
    pub pin_dir: PathBuf,
}

#[derive(Debug, Args)]
pub struct BlockArgs {
    #[command(subcommand)]
    pub cmd: BlockCmd,
    #[command(flatten)]
    pub at: Where,
}

#[derive(Debug, Subcommand)]
pub enum BlockCmd {
    /// List blocks (active ones; --all adds those expired but remembered for escalation).
    List {
        #[arg(long)]
        json: bool,
        #[arg(long)]
        all: bool,
    },
    /// Block a source prefix (IPv4 or IPv6; a bare address blocks just that host).
    Add {
        #[arg(value_name = "CIDR", value_parser = parse_cidr)]
        cidr: Cidr,
        /// Seconds until the block lapses (enforced by the kernel); without it the block stays
        /// until `netanom block del`.
        #[arg(long, value_name = "SECONDS", value_parser = parse_ttl)]
        ttl: Option<u32>,
        /// Why (shown by `block list`; up to 48 bytes kept).
        #[arg(long, value_name = "TEXT", default_value = "manual")]
        reason: String,
        /// Block even a prefix that contains this host's own address or default gateway.
        #[arg(long)]
        force: bool,
    },
    /// Remove the block on exactly this prefix.
    Del {
        #[arg(value_name = "CIDR", value_parser = parse_cidr)]
        cidr: Cidr,
    },
}

#[derive(Debug, Args)]
pub struct AllowArgs {
    #[command(subcommand)]
    pub cmd: AllowCmd,
    #[command(flatten)]
    pub at: Where,
}

#[derive(Debug, Subcommand)]
pub enum AllowCmd {
    /// List the allowlist (manual entries, configured prefixes, host addresses, gateways).
    List {
        #[arg(long)]
        json: bool,
    },
    /// Never block this prefix, whatever the model says.
    Add {
        #[arg(value_name = "CIDR", value_parser = parse_cidr)]
        cidr: Cidr,
    },
    /// Remove exactly this prefix from the allowlist.
    Del {
        #[arg(value_name = "CIDR", value_parser = parse_cidr)]
        cidr: Cidr,
    },
}

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

pub const DEFAULT_STATE_DIR: &str = "/run/netanom";
pub const STATE_FILE: &str = "status.json";

fn parse_cidr(s: &str) -> Result<Cidr, String> {
    s.parse::<Cidr>().map_err(|e| e.to_string())
}

fn parse_ttl(s: &str) -> Result<u32, String> {
    let v: f64 = s
        .parse()
        .map_err(|_| format!("`{s}` is not a number of seconds"))?;
    if !(1.0..=31_536_000.0).contains(&v) {
        return Err(format!("{v} s is out of range (1 to 31536000, a year)"));
    }
    Ok(v.round() as u32)
}

/// Shortest prefixes `block add` accepts: anything wider would cut off a large part of the
/// Internet by mistake.
const MIN_BLOCK_LEN_V4: u8 = 8;
const MIN_BLOCK_LEN_V6: u8 = 16;

/// What the agent writes to `<state_dir>/status.json` while it runs.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct AgentState {
    pub pid: u32,
    pub version: String,
    pub started_unix: f64,
    pub updated_unix: f64,
    /// Configured mode, and the mode in force (observe while the circuit breaker is open).
    pub mode: String,
    pub effective_mode: String,
    pub config: Option<String>,
    pub interfaces: Vec<InterfaceState>,
    pub bundle: String,
    pub pin_dir: String,
    /// The stats snapshot (as `--stats-format json` prints it).
    pub counters: serde_json::Value,
    pub mitigation: serde_json::Value,
    /// Set when the agent stopped cleanly.
    pub stopped: bool,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct InterfaceState {
    pub iface: String,
    /// native, skb, or down (the interface disappeared; reattached when it returns).
    pub xdp_mode: String,
    pub egress: bool,
}

impl AgentState {
    /// Writes the state atomically (temporary file, then rename).
    pub fn write(&self, dir: &Path) -> std::io::Result<()> {
        fs::create_dir_all(dir)?;
        let tmp = dir.join(format!(".{STATE_FILE}.{}", std::process::id()));
        let mut f = fs::File::create(&tmp)?;
        f.write_all(serde_json::to_string_pretty(self).unwrap_or_default().as_bytes())?;
        f.write_all(b"\n")?;
        drop(f);
        fs::rename(tmp, dir.join(STATE_FILE))
    }

    pub fn read(dir: &Path) -> Option<AgentState> {
        let text = fs::read_to_string(dir.join(STATE_FILE)).ok()?;
        serde_json::from_str(&text).ok()
    }
}

fn pid_alive(pid: u32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    pid != 0 && unsafe { libc::kill(pid as i32, 0) } == 0
        || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

#[derive(Serialize)]
struct BlockRow {
    prefix: String,
    active: bool,
    /// Seconds until expiry (negative: expired that long ago); null: never expires.
    expires_in_s: Option<f64>,
    expires: Option<String>,
    added: String,
    ttl_s: u32,
    strikes: u32,
    origin: &'static str,
    reason: String,
    dropped_packets: u64,
    dropped_bytes: u64,
}

fn block_rows(tables: &Tables, all: bool) -> anyhow::Result<Vec<BlockRow>> {
    let now = drain::mono_now_ns();
    let clock = drain::Clock::now();
    Ok(tables
        .blocks()?
        .into_iter()
        .filter(|b| all || b.active(now))
        .map(|b| {
            let e = &b.entry;
            let ts = |mono: u64| alerts::format_timestamp(clock.unix_ns(mono));
            BlockRow {
                prefix: b.prefix.to_string(),
                active: b.active(now),
                expires_in_s: (e.expires_ns != 0).then(|| (e.expires_ns as f64 - now as f64) / 1e9),
                expires: (e.expires_ns != 0).then(|| ts(e.expires_ns)),
                added: ts(e.added_ns),
                ttl_s: e.ttl_s,
                strikes: e.strikes,
                origin: b.origin(),
                reason: b.reason(),
                dropped_packets: e.packets,
                dropped_bytes: e.bytes,
            }
        })
        .collect())
}

#[derive(Serialize)]
struct AllowRow {
    prefix: String,
    origin: &'static str,
    hits: u64,
}

/// Refuses a block that would cut this host off: its own addresses, its gateways.
fn lockout_check(cidr: &Cidr) -> anyhow::Result<()> {
    let own = crate::sys::host_addresses();
    let gw = crate::sys::default_gateways();
    let hit = own
        .iter()
        .map(|ip| (ip, "one of this host's addresses"))
        .chain(gw.iter().map(|ip| (ip, "this host's default gateway")))
        .find(|(ip, _)| cidr.contains(**ip));
    if let Some((ip, what)) = hit {
        anyhow::bail!(
            "refusing to block {cidr}: it contains {ip}, {what}, and blocking it could lock you \
             out. Block a narrower prefix, or pass --force if you are sure."
        );
    }
    Ok(())
}

pub fn run_block(a: &BlockArgs) -> anyhow::Result<()> {
    crate::sys::check_privileges()?;
    match &a.cmd {
        BlockCmd::List { json, all } => {
            let tables = Tables::open(&a.at.pin_dir)?;
            let rows = block_rows(&tables, *all)?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else if rows.is_empty() {
                println!("no active blocks");
            } else {
                println!(
                    "{:<43} {:>7} {:>10} {:>7} {:>8} {:>12}  reason",
                    "prefix", "origin", "expires_in", "strikes", "ttl_s", "dropped"
                );
                for r in rows {
                    let exp = r.expires_in_s.map_or("never".to_owned(), |s| {
                        if s >= 0.0 {
                            format!("{s:.0}s")
                        } else {
                            "expired".into()
                        }
                    });
                    println!(
                        "{:<43} {:>7} {:>10} {:>7} {:>8} {:>12}  {}",
                        r.prefix, r.origin, exp, r.strikes, r.ttl_s, r.dropped_packets, r.reason
                    );
                }
            }
        }
        BlockCmd::Add {
            cidr,
            ttl,
            reason,
            force,
        } => {
            let min = if cidr.is_v4() {
                MIN_BLOCK_LEN_V4
            } else {
                MIN_BLOCK_LEN_V6
            };
            if cidr.len() < min {
                anyhow::bail!(
                    "refusing to block {cidr}: prefixes shorter than /{min} are too wide to block \
                     by hand. Block narrower prefixes."
                );
            }
            if !force {
                lockout_check(cidr)?;
            }
            let mut tables = Tables::open_or_create(&a.at.pin_dir)?;
            if let Some(allow) = tables.allowed_by(cidr.addr())? {
                eprintln!(
                    "netanom: note: {cidr} is covered by the allowlist entry {allow}, which takes \
                     precedence: its traffic is not dropped while that entry exists."
                );
            }
            let now = drain::mono_now_ns();
            let old = tables.block_entry(cidr)?;
            let entry = netanom_common::mitigate::BlockEntry {
                expires_ns: ttl.map_or(0, |t| now + u64::from(t) * 1_000_000_000),
                added_ns: now,
                packets: old.map_or(0, |e| e.packets),
                bytes: old.map_or(0, |e| e.bytes),
                ttl_s: ttl.unwrap_or(0),
                strikes: old.map_or(1, |e| e.strikes.max(1)),
                origin: Origin::Manual as u32,
                _pad: 0,
                reason: reason_bytes(reason),
            };
            tables.put_block(cidr, &entry)?;
            match ttl {
                Some(t) => println!("blocked {cidr} for {t} s"),
                None => println!("blocked {cidr} until `netanom block del {cidr}`"),
            }
        }
        BlockCmd::Del { cidr } => {
            let mut tables = Tables::open(&a.at.pin_dir)?;
            if tables.del_block(cidr)? {
                println!("unblocked {cidr}");
            } else {
                anyhow::bail!(
                    "{cidr} is not in the blocklist (`netanom block list --all` shows every entry; \
                     the prefix must match exactly)"
                );
            }
        }
    }
    Ok(())
}

pub fn run_allow(a: &AllowArgs) -> anyhow::Result<()> {
    crate::sys::check_privileges()?;
    match &a.cmd {
        AllowCmd::List { json } => {
            let tables = Tables::open(&a.at.pin_dir)?;
            let rows: Vec<AllowRow> = tables
                .allows()?
                .iter()
                .map(|x| AllowRow {
                    prefix: x.prefix.to_string(),
                    origin: x.origin(),
                    hits: x.entry.hits,
                })
                .collect();
            if *json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else if rows.is_empty() {
                println!("the allowlist is empty");
            } else {
                println!("{:<43} {:>12} {:>12}", "prefix", "origin", "hits");
                for r in rows {
                    println!("{:<43} {:>12} {:>12}", r.prefix, r.origin, r.hits);
                }
            }
        }
        AllowCmd::Add { cidr } => {
            let mut tables = Tables::open_or_create(&a.at.pin_dir)?;
            tables.put_allow(cidr, Origin::Manual, drain::mono_now_ns())?;
            println!("allowed {cidr}: never blocked");
        }
        AllowCmd::Del { cidr } => {
            let mut tables = Tables::open(&a.at.pin_dir)?;
            if tables.del_allow(cidr)? {
                println!("removed {cidr} from the allowlist");
            } else {
                anyhow::bail!("{cidr} is not in the allowlist (`netanom allow list` shows it)");
            }
        }
    }
    Ok(())
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
    updated: Option<String>,
}

pub fn run_status(a: &StatusArgs) -> anyhow::Result<()> {
    let state = AgentState::read(&a.state_dir);
    let running = state.as_ref().is_some_and(|s| !s.stopped && pid_alive(s.pid));
    let now = drain::mono_now_ns();
    let (blocks, allows, limits) = match Tables::open(&a.at.pin_dir) {
        Ok(t) => (t.blocks()?, t.allows()?.len(), t.rate_limits()?),
        Err(crate::tables::TablesError::NotPinned { .. }) => (Vec::new(), 0, Vec::new()),
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
        updated: state
            .as_ref()
            .map(|s| alerts::format_timestamp((s.updated_unix * 1e9) as u64)),
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
    Ok(())
}
