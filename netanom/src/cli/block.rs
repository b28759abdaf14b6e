//! `netanom block list|add|del`: the blocklist pinned under `--pin-dir`, with or without a
//! running agent.
use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};
use netanom_common::mitigate::{BlockEntry, Origin};
use serde::Serialize;

use super::args::{self, Where};
use crate::{
    datapath::host,
    fleet::{
        apply::gateway_of_reason,
        client,
        message::Action,
        publisher::{self, manual_msg},
    },
    pipeline::clock::{Clock as _, SystemClock},
    pipeline::config::Config,
    respond::{Cidr, Enforcer as _, KernelTables, enforcer::NewBlock},
};

#[derive(Debug, Args)]
pub struct BlockArgs {
    #[command(subcommand)]
    pub cmd: BlockCmd,
    #[command(flatten)]
    pub at: Where,
    /// The configuration file whose [fleet] says where NATS is (with --fleet).
    #[arg(
        long,
        value_name = "FILE",
        default_value = "/etc/netanom/netanom.toml",
        global = true
    )]
    pub config: std::path::PathBuf,
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
        #[arg(value_name = "CIDR", value_parser = args::parse_cidr)]
        cidr: Cidr,
        /// Seconds until the block lapses (enforced by the kernel); without it the block stays
        /// until `netanom block del`.
        #[arg(long, value_name = "SECONDS", value_parser = args::parse_ttl)]
        ttl: Option<u32>,
        /// Why (shown by `block list`; up to 48 bytes kept).
        #[arg(long, value_name = "TEXT", default_value = "manual")]
        reason: String,
        /// Block even a prefix that contains this host's own address or default gateway.
        #[arg(long)]
        force: bool,
        /// Also publish the block to the fleet (needs --ttl, and [fleet] in --config): every
        /// other gateway applies it through its own rails.
        #[arg(long, requires = "ttl")]
        fleet: bool,
    },
    /// Remove the block on exactly this prefix.
    Del {
        #[arg(value_name = "CIDR", value_parser = args::parse_cidr)]
        cidr: Cidr,
        /// Also publish the unblock to the fleet: the other gateways remove the block they
        /// applied from the fleet on this prefix (never one of their own).
        #[arg(long)]
        fleet: bool,
    },
}

/// Shortest prefixes `block add` accepts: anything wider would cut off a large part of the
/// Internet by mistake.
const MIN_BLOCK_LEN_V4: u8 = 8;
const MIN_BLOCK_LEN_V6: u8 = 16;

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
    /// The gateway a block applied from the fleet came from.
    gateway: Option<String>,
    reason: String,
    dropped_packets: u64,
    dropped_bytes: u64,
}

fn block_rows(tables: &KernelTables, all: bool) -> anyhow::Result<Vec<BlockRow>> {
    let clock = SystemClock::new();
    let now = clock.now().mono_ns;
    Ok(tables
        .blocks()?
        .into_iter()
        .filter(|b| all || b.active(now))
        .map(|b| {
            let e = &b.entry;
            let ts = |mono: u64| netanom_common::time::EveTime(clock.unix_ns(mono)).to_string();
            BlockRow {
                prefix: b.prefix.to_string(),
                active: b.active(now),
                expires_in_s: (e.expires_ns != 0).then(|| (e.expires_ns as f64 - now as f64) / 1e9),
                expires: (e.expires_ns != 0).then(|| ts(e.expires_ns)),
                added: ts(e.added_ns),
                ttl_s: e.ttl_s,
                strikes: e.strikes,
                origin: b.origin(),
                gateway: (e.origin == Origin::Fleet as u32)
                    .then(|| b.reason())
                    .and_then(|r| gateway_of_reason(&r).map(str::to_owned)),
                reason: b.reason(),
                dropped_packets: e.packets,
                dropped_bytes: e.bytes,
            }
        })
        .collect())
}

/// Refuses a block that would cut this host off: its own addresses, its gateways.
fn lockout_check(cidr: &Cidr) -> anyhow::Result<()> {
    let own = host::host_addresses();
    let gw = host::default_gateways();
    let hit = own
        .iter()
        .map(|ip| (ip, "one of this host's addresses"))
        .chain(gw.iter().map(|ip| (ip, "this host's default gateway")))
        .find(|(ip, _)| cidr.contains(**ip));
    if let Some((ip, what)) = hit {
        bail!(
            "refusing to block {cidr}: it contains {ip}, {what}, and blocking it could lock you \
             out. Block a narrower prefix, or pass --force if you are sure."
        );
    }
    Ok(())
}

/// Runs `netanom block ...`.
pub fn run(a: &BlockArgs) -> anyhow::Result<()> {
    host::check_privileges()?;
    match &a.cmd {
        BlockCmd::List { json, all } => list(a, *json, *all),
        BlockCmd::Add {
            cidr,
            ttl,
            reason,
            force,
            fleet,
        } => {
            let entry = add(a, cidr, *ttl, reason, *force)?;
            if *fleet {
                publish(a, Action::Block, *cidr, Some(&entry))?;
            }
            Ok(())
        }
        BlockCmd::Del { cidr, fleet } => {
            let mut tables = KernelTables::open(&a.at.pin_dir)?;
            let had = tables.del_block(cidr)?;
            if !had && !fleet {
                bail!(
                    "{cidr} is not in the blocklist (`netanom block list --all` shows every entry; \
                     the prefix must match exactly)"
                );
            }
            tables.sync_counts()?;
            if had {
                println!("unblocked {cidr}");
            }
            if *fleet {
                publish(a, Action::Unblock, *cidr, None)?;
            }
            Ok(())
        }
    }
}

/// Publishes an operator's block or unblock to the fleet (`--fleet`).
fn publish(a: &BlockArgs, action: Action, cidr: Cidr, entry: Option<&BlockEntry>) -> anyhow::Result<()> {
    let cfg = Config::load(&a.config)?;
    cfg.validate()?;
    let f = &cfg.fleet;
    if !f.enabled {
        bail!(
            "{} has no [fleet] with enabled = true: nothing was published (the change is in force \
             on this gateway)",
            a.config.display()
        );
    }
    let m = &cfg.mitigation;
    let max_age = m.max_block_ttl.max(m.rate_limit_ttl).max(m.block_ttl) + 60.0;
    if let Some(e) = entry
        && f64::from(e.ttl_s) > max_age
    {
        bail!(
            "--ttl {} is longer than the fleet's stream keeps decisions ({max_age:.0} s: \
             mitigation.max_block_ttl + 60): the block is in force here, and was not published",
            e.ttl_s
        );
    }
    let origin = publisher::Origin {
        gateway: f.gateway(),
        bundle: String::new(),
        subjects: f.subjects(),
        boot_ns: 0,
    };
    let now = SystemClock::new().now();
    let msg = manual_msg(&origin, action, cidr, entry, now);
    client::publish_now(f, std::time::Duration::from_secs_f64(max_age), &msg)
        .context("the change is in force on this gateway, but was not published to the fleet")?;
    println!(
        "published the {} of {cidr} to the fleet as {}",
        action.name(),
        origin.gateway
    );
    Ok(())
}

fn list(a: &BlockArgs, json: bool, all: bool) -> anyhow::Result<()> {
    let tables = KernelTables::open(&a.at.pin_dir)?;
    let rows = block_rows(&tables, all)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    if rows.is_empty() {
        println!("no active blocks");
        return Ok(());
    }
    println!(
        "{:<43} {:>7} {:>16} {:>10} {:>7} {:>8} {:>12}  reason",
        "prefix", "origin", "gateway", "expires_in", "strikes", "ttl_s", "dropped"
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
            "{:<43} {:>7} {:>16} {:>10} {:>7} {:>8} {:>12}  {}",
            r.prefix,
            r.origin,
            r.gateway.as_deref().unwrap_or("-"),
            exp,
            r.strikes,
            r.ttl_s,
            r.dropped_packets,
            r.reason
        );
    }
    Ok(())
}

fn add(
    a: &BlockArgs,
    cidr: &Cidr,
    ttl: Option<u32>,
    reason: &str,
    force: bool,
) -> anyhow::Result<BlockEntry> {
    let min = if cidr.is_v4() {
        MIN_BLOCK_LEN_V4
    } else {
        MIN_BLOCK_LEN_V6
    };
    if cidr.len() < min {
        bail!(
            "refusing to block {cidr}: prefixes shorter than /{min} are too wide to block \
             by hand. Block narrower prefixes."
        );
    }
    if !force {
        lockout_check(cidr)?;
    }
    let mut tables = KernelTables::open_or_create(&a.at.pin_dir)?;
    if let Some(allow) = tables.allowed_by(cidr.addr())? {
        eprintln!(
            "netanom: note: {cidr} is covered by the allowlist entry {allow}, which takes \
             precedence: its traffic is not dropped while that entry exists."
        );
    }
    let now = SystemClock::new().now().mono_ns;
    let old = tables.block_entry(cidr)?;
    let entry = NewBlock {
        now_ns: now,
        ttl: std::time::Duration::from_secs(ttl.map_or(0, u64::from)),
        strikes: old.map_or(1, |e| e.strikes.max(1)),
        origin: Origin::Manual,
        reason,
    }
    .entry(old);
    tables.put_block(cidr, &entry)?;
    match ttl {
        Some(t) => println!("blocked {cidr} for {t} s"),
        None => println!("blocked {cidr} until `netanom block del {cidr}`"),
    }
    Ok(entry)
}
