//! `netanom allow list|add|del`: the allowlist pinned under `--pin-dir`. Entries added here
//! are the operator's: the agent never removes them.
use anyhow::bail;
use clap::{Args, Subcommand};
use netanom_common::mitigate::Origin;
use serde::Serialize;

use super::args::{self, Where};
use crate::{
    datapath::host,
    pipeline::clock::{Clock as _, SystemClock},
    respond::{Cidr, Enforcer as _, KernelTables},
};

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
        #[arg(value_name = "CIDR", value_parser = args::parse_cidr)]
        cidr: Cidr,
    },
    /// Remove exactly this prefix from the allowlist.
    Del {
        #[arg(value_name = "CIDR", value_parser = args::parse_cidr)]
        cidr: Cidr,
    },
}

#[derive(Serialize)]
struct AllowRow {
    prefix: String,
    origin: &'static str,
    hits: u64,
}

/// Runs `netanom allow ...`.
pub fn run(a: &AllowArgs) -> anyhow::Result<()> {
    host::check_privileges()?;
    match &a.cmd {
        AllowCmd::List { json } => {
            let tables = KernelTables::open(&a.at.pin_dir)?;
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
            let mut tables = KernelTables::open_or_create(&a.at.pin_dir)?;
            tables.put_allow(cidr, Origin::Manual, SystemClock::new().now().mono_ns)?;
            println!("allowed {cidr}: never blocked");
        }
        AllowCmd::Del { cidr } => {
            let mut tables = KernelTables::open(&a.at.pin_dir)?;
            if !tables.del_allow(cidr)? {
                bail!("{cidr} is not in the allowlist (`netanom allow list` shows it)");
            }
            println!("removed {cidr} from the allowlist");
        }
    }
    Ok(())
}
