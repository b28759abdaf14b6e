//! The allowlist the agent keeps: the configured prefixes (`allowlist.prefixes`), this host's
//! own addresses and its default gateways. Entries added by hand (`netanom allow add`) are the
//! operator's and are never touched.
use std::collections::HashSet;

use netanom_common::mitigate::Origin;

use super::{
    config::AllowlistConfig,
    enforcer::{EnforceError, Enforcer},
    prefix::Cidr,
};
use crate::datapath::host;

/// What the agent wants allowlisted under `cfg`: configured prefixes (origin `Agent`), the
/// host's addresses and gateways (their own origins), each prefix once.
pub fn wanted(cfg: &AllowlistConfig) -> Vec<(Cidr, Origin)> {
    let mut out: Vec<(Cidr, Origin)> = cfg.prefixes.iter().map(|c| (*c, Origin::Agent)).collect();
    if cfg.host_addresses {
        out.extend(
            host::host_addresses()
                .into_iter()
                .map(|ip| (Cidr::host(ip), Origin::HostAddress)),
        );
    }
    if cfg.default_gateway {
        out.extend(
            host::default_gateways()
                .into_iter()
                .map(|ip| (Cidr::host(ip), Origin::Gateway)),
        );
    }
    let mut seen = HashSet::new();
    out.retain(|(c, _)| seen.insert(*c));
    out
}

/// Puts the agent's allowlist `wanted` in force: entries of the agent's origins no longer
/// wanted are removed; manual entries are left alone. Returns how many entries it wants.
pub fn sync(
    enforcer: &mut dyn Enforcer,
    wanted: &[(Cidr, Origin)],
    now_ns: u64,
) -> Result<usize, EnforceError> {
    let current = enforcer.allows()?;
    for a in &current {
        let managed = matches!(
            Origin::from_u32(a.entry.origin),
            Some(Origin::Agent | Origin::HostAddress | Origin::Gateway)
        );
        if managed && !wanted.iter().any(|(c, _)| *c == a.prefix) {
            enforcer.del_allow(&a.prefix)?;
        }
    }
    for (c, o) in wanted {
        let same = current
            .iter()
            .any(|a| a.prefix == *c && a.entry.origin == *o as u32);
        let manual = current
            .iter()
            .any(|a| a.prefix == *c && a.entry.origin == Origin::Manual as u32);
        if !same && !manual {
            enforcer.put_allow(c, *o, now_ns)?;
        }
    }
    Ok(wanted.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::respond::memory::MemoryTables;

    #[test]
    fn sync_replaces_the_agents_entries_and_keeps_manual_ones() {
        let mut t = MemoryTables::new();
        let c = |s: &str| s.parse::<Cidr>().unwrap();
        t.put_allow(&c("198.18.9.0/24"), Origin::Manual, 1).unwrap();
        t.put_allow(&c("198.18.8.0/24"), Origin::Agent, 1).unwrap();
        let wanted = [
            (c("198.18.9.0/24"), Origin::Agent),
            (c("2001:db8::53"), Origin::Gateway),
        ];
        assert_eq!(sync(&mut t, &wanted, 2).unwrap(), 2);
        let now: Vec<(String, &str)> = t
            .allows()
            .unwrap()
            .iter()
            .map(|a| (a.prefix.to_string(), a.origin()))
            .collect();
        assert_eq!(
            now,
            [
                ("198.18.9.0/24".to_owned(), "manual"),
                ("2001:db8::53/128".to_owned(), "gateway")
            ]
        );
    }
}
