//! The in-memory enforcer: the same lists as the pinned kernel maps, held by the agent itself.
//! Detection on a capture file enforces its simulated mitigation here, and the response's
//! unit tests run on it without privileges. A privileged test proves that the kernel tables
//! behave the same.
use std::collections::{BTreeMap, HashMap};

use netanom_common::mitigate::{self, AllowEntry, BlockEntry, Origin, PatternKey, RateLimit};

use super::{
    enforcer::{Allow, Block, EnforceError, Enforcer},
    prefix::Cidr,
};

/// Blocks, allows and rate limits in memory, with the kernel maps' capacities.
#[derive(Clone, Debug, Default)]
pub struct MemoryTables {
    blocks: BTreeMap<Cidr, BlockEntry>,
    allows: BTreeMap<Cidr, AllowEntry>,
    rate_limits: HashMap<PatternKey, RateLimit>,
}

impl MemoryTables {
    pub fn new() -> MemoryTables {
        MemoryTables::default()
    }
}

impl Enforcer for MemoryTables {
    fn blocks(&self) -> Result<Vec<Block>, EnforceError> {
        Ok(self
            .blocks
            .iter()
            .map(|(prefix, entry)| Block {
                prefix: *prefix,
                entry: *entry,
            })
            .collect())
    }

    fn put_block(&mut self, prefix: &Cidr, entry: &BlockEntry) -> Result<(), EnforceError> {
        let family = |c: &Cidr| c.is_v4();
        let same_family = self.blocks.keys().filter(|c| family(c) == prefix.is_v4()).count();
        if !self.blocks.contains_key(prefix) && same_family >= mitigate::BLOCK_ENTRIES as usize {
            return Err(EnforceError::Full {
                capacity: mitigate::BLOCK_ENTRIES,
                family: if prefix.is_v4() { "IPv4" } else { "IPv6" },
            });
        }
        self.blocks.insert(*prefix, *entry);
        Ok(())
    }

    fn del_block(&mut self, prefix: &Cidr) -> Result<bool, EnforceError> {
        Ok(self.blocks.remove(prefix).is_some())
    }

    fn allows(&self) -> Result<Vec<Allow>, EnforceError> {
        Ok(self
            .allows
            .iter()
            .map(|(prefix, entry)| Allow {
                prefix: *prefix,
                entry: *entry,
            })
            .collect())
    }

    fn put_allow(&mut self, prefix: &Cidr, origin: Origin, now_ns: u64) -> Result<(), EnforceError> {
        let hits = self.allows.get(prefix).map_or(0, |a| a.hits);
        self.allows.insert(
            *prefix,
            AllowEntry {
                added_ns: now_ns,
                hits,
                origin: origin as u32,
                _pad: 0,
            },
        );
        Ok(())
    }

    fn del_allow(&mut self, prefix: &Cidr) -> Result<bool, EnforceError> {
        Ok(self.allows.remove(prefix).is_some())
    }

    fn rate_limits(&self) -> Result<Vec<(PatternKey, RateLimit)>, EnforceError> {
        Ok(self.rate_limits.iter().map(|(k, v)| (*k, *v)).collect())
    }

    fn put_rate_limit(&mut self, key: &PatternKey, limit: &RateLimit) -> Result<(), EnforceError> {
        self.rate_limits.insert(*key, *limit);
        Ok(())
    }

    fn del_rate_limit(&mut self, key: &PatternKey) -> Result<bool, EnforceError> {
        Ok(self.rate_limits.remove(key).is_some())
    }

    fn sweep(&mut self, now_ns: u64, keep_ns: u64) -> Result<(usize, usize), EnforceError> {
        let before = (self.blocks.len(), self.rate_limits.len());
        self.blocks
            .retain(|_, e| e.expires_ns == 0 || e.expires_ns.saturating_add(keep_ns) > now_ns);
        self.rate_limits.retain(|_, r| r.active(now_ns));
        Ok((before.0 - self.blocks.len(), before.1 - self.rate_limits.len()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::respond::enforcer::reason_bytes;

    fn entry(expires_ns: u64) -> BlockEntry {
        BlockEntry {
            expires_ns,
            added_ns: 0,
            packets: 0,
            bytes: 0,
            ttl_s: 1,
            strikes: 1,
            origin: Origin::Agent as u32,
            _pad: 0,
            reason: reason_bytes("test"),
        }
    }

    #[test]
    fn lists_behave_like_the_kernel_maps() {
        let mut t = MemoryTables::new();
        let v6: Cidr = "2001:db8::1".parse().unwrap();
        let v4: Cidr = "198.18.0.9".parse().unwrap();
        t.put_block(&v6, &entry(100)).unwrap();
        t.put_block(&v4, &entry(0)).unwrap();
        let order: Vec<Cidr> = t.blocks().unwrap().iter().map(|b| b.prefix).collect();
        assert_eq!(order, [v4, v6], "IPv4 first");
        assert_eq!(t.block_entry(&v6).unwrap(), Some(entry(100)));
        // Expired blocks are kept `keep_ns` longer (they remember strikes); never-expiring
        // ones stay.
        assert_eq!(t.sweep(150, 100).unwrap(), (0, 0));
        assert_eq!(t.sweep(200, 100).unwrap(), (1, 0));
        assert!(t.del_block(&v4).unwrap() && !t.del_block(&v4).unwrap());
        let net: Cidr = "198.18.0.0/15".parse().unwrap();
        t.put_allow(&net, Origin::Manual, 5).unwrap();
        t.put_allow(&v4, Origin::Agent, 6).unwrap();
        assert_eq!(t.allowed_by("198.18.0.9".parse().unwrap()).unwrap(), Some(v4));
        assert_eq!(t.allowed_by("198.19.1.1".parse().unwrap()).unwrap(), Some(net));
        assert_eq!(t.allowed_by("2001:db8::1".parse().unwrap()).unwrap(), None);
    }
}
